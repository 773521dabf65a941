/*
 * alloc.h - the allocator index of one parent prefix.
 *
 * An alloc_pool holds the occupied blocks (children) of one parent prefix in
 * an ordered tree (libbsd sys/tree.h) keyed by address, and its free runs in
 * a second tree augmented so that the lowest free aligned block of any
 * length is found in O(log n), also after removals in the middle; lookup and
 * remove of a known child are O(1) (hash by address). Children may have
 * different lengths. Addresses can be reserved (a node prefix reserves its
 * first and last address): they are never handed out and do not count as
 * children.
 *
 * First-fit is the contract: alloc_pool_find returns the lowest block of the
 * wanted length that is aligned, inside the parent, and overlaps no child and
 * no reserved address - the same answer as Meridio's IPAM.
 *
 * The pool stores an opaque pointer per child (the caller's record) and never
 * frees it. No logging, no exit; errors are return codes.
 */
#ifndef IPAM_ALLOC_H
#define IPAM_ALLOC_H

#include <stdbool.h>
#include <stddef.h>

#include "prefix.h"

struct alloc_pool;

enum {
	ALLOC_OK = 0,
	ALLOC_ENOMEM = -1,	/* out of memory */
	ALLOC_EOUTSIDE = -2,	/* block not inside the parent / wrong family */
	ALLOC_EOVERLAP = -3,	/* block overlaps a child or reserved address */
	ALLOC_ENOSPACE = -4,	/* no free block of that length */
	ALLOC_ENOENT = -5,	/* no such child */
	ALLOC_EINVAL = -6,	/* length not longer than the parent's */
};

/* New empty pool for the children of parent. NULL on out of memory. */
struct alloc_pool *alloc_pool_new(const struct pfx *parent);

/* Frees the pool (not the callers' records). Accepts NULL. */
void alloc_pool_free(struct alloc_pool *pool);

/* The parent prefix. */
const struct pfx *alloc_pool_parent(const struct alloc_pool *pool);

/*
 * Reserves one address (e.g. the first and last of a node prefix): it is
 * never returned by alloc_pool_find. Returns ALLOC_OK or an error.
 */
int alloc_pool_reserve(struct alloc_pool *pool, pfx_addr addr);

/*
 * Finds the lowest free aligned block of length len. Does not insert it.
 * Returns ALLOC_OK and sets *out, ALLOC_ENOSPACE, or ALLOC_EINVAL.
 */
int alloc_pool_find(const struct alloc_pool *pool, unsigned len,
    struct pfx *out);

/*
 * Inserts child block p owned by data. Returns ALLOC_EOUTSIDE or
 * ALLOC_EOVERLAP (nothing changed) when it does not fit.
 */
int alloc_pool_insert(struct alloc_pool *pool, const struct pfx *p,
    void *data);

/* Removes the child block equal to p. ALLOC_ENOENT if there is none. */
int alloc_pool_remove(struct alloc_pool *pool, const struct pfx *p);

/* The data of the child block equal to p, or NULL. */
void *alloc_pool_lookup(const struct alloc_pool *pool, const struct pfx *p);

/* Number of children (reserved addresses not counted). */
size_t alloc_pool_count(const struct alloc_pool *pool);

/*
 * Addresses not reserved in the parent, saturated at SIZE_MAX: the usable
 * capacity for single-address children.
 */
size_t alloc_pool_usable(const struct alloc_pool *pool);

/*
 * Calls fn for each child in address order until fn returns non-zero, which
 * is then returned. The pool must not change during the walk.
 */
int alloc_pool_walk(const struct alloc_pool *pool,
    int (*fn)(void *arg, const struct pfx *p, void *data), void *arg);

#endif
