/*
 * slab.h - equal-sized small objects from 16 KiB blocks.
 *
 * One slab class per 8-byte step of object size, from SLAB_MIN to
 * SLAB_MAX bytes. A slot costs its size rounded up to 8 bytes, where
 * malloc adds an 8-byte header and rounds up to 16. Freed slots go on
 * their slab's free list and are handed out again first; a slab left
 * empty goes back to malloc at once, so memory follows the live objects,
 * not their peak. Not thread-safe.
 */
#ifndef IPAM_SLAB_H
#define IPAM_SLAB_H

#include <stddef.h>

/* Size step between classes, and the smallest and largest slot. */
#define SLAB_STEP 8
#define SLAB_MIN 16
#define SLAB_MAX 512

/* Number of slab classes. */
#define SLAB_NCLASS ((SLAB_MAX - SLAB_MIN) / SLAB_STEP + 1)

struct slab;

/* A set of slabs; all zero is an empty set. */
struct slab_set {
	struct slab *room[SLAB_NCLASS];	/* per class: slabs with a free slot */
	struct slab **all;		/* every slab, by address (to find a
					 * slot's slab when it is freed) */
	size_t n, cap;			/* entries of all, and its capacity */
};

/* The class of an object of size bytes, or -1 when it is larger than
 * SLAB_MAX (malloc serves it). */
int slab_class(size_t size);

/* A slot of class cls (8-byte aligned, not zeroed), or NULL. */
void *slab_get(struct slab_set *sl, unsigned cls);

/* Gives back slot p, which slab_get of sl returned. */
void slab_put(struct slab_set *sl, void *p);

/* Frees every slab (the slots given out with them). */
void slab_free_all(struct slab_set *sl);

#endif
