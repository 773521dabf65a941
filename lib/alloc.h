/*
 * alloc.h - the allocator index of one parent prefix.
 *
 * An alloc_pool holds the occupied blocks (children) of one parent prefix in
 * an ordered tree (libbsd sys/tree.h) keyed by address, and its free runs in
 * a second tree augmented so that the lowest free aligned block of any
 * length is found in O(log n), also after removals in the middle. Children
 * may have different lengths. Addresses can be reserved (a node prefix
 * reserves its first and last address): they are never handed out and do
 * not count as children.
 *
 * First-fit is the contract: alloc_pool_find returns the lowest block of the
 * wanted length that is aligned, inside the parent, and overlaps no child and
 * no reserved address - the same answer as Meridio's IPAM.
 *
 * Children are the caller's: it embeds a struct alloc_node in each of its
 * records and links it with alloc_pool_link. A child costs the pool no
 * allocation of its own, and the node holds the child's prefix, so the
 * record needs no copy of it. The pool never frees a child. No logging, no
 * exit; errors are return codes.
 */
#ifndef IPAM_ALLOC_H
#define IPAM_ALLOC_H

#include <stdbool.h>
#include <stddef.h>

#include <stdint.h>
#include <sys/tree.h>

#include "pfx.h"

struct alloc_pool;

/* An address aligned to 8 bytes, not 16: a node packs into records that
 * come 8-byte aligned (the registry's slabs) without padding. */
typedef pfx_addr alloc_addr __attribute__((aligned(8)));

/*
 * One occupied block, embedded in the caller's record for alloc_pool_link.
 * Set its prefix with alloc_node_init and read it with alloc_node_pfx; every
 * other field belongs to the pool while the node is linked.
 */
struct alloc_node {
	RB_ENTRY(alloc_node) an_entry;	/* link in the pool's block tree */
	alloc_addr an_addr;		/* first address of the block */
	uint8_t an_len;			/* prefix length */
	uint8_t an_family;		/* PFX_V4 or PFX_V6 */
	uint8_t an_kind;		/* alloc.c's: who owns the node */
	uint8_t an_user[2];		/* the owner's; the pool never touches
					 * them (they fill padding) */
};

enum {
	ALLOC_OK = 0,
	ALLOC_ENOMEM = -1,	/* out of memory */
	ALLOC_EOUTSIDE = -2,	/* block not inside the parent / wrong family */
	ALLOC_EOVERLAP = -3,	/* block overlaps a child or reserved address */
	ALLOC_ENOSPACE = -4,	/* no free block of that length */
	ALLOC_EINVAL = -6,	/* length not longer than the parent's */
};

/* New empty pool for the children of parent. NULL on out of memory. */
struct alloc_pool *alloc_pool_new(const struct pfx *parent);

/*
 * Frees the pool (not the callers' records). Nodes still linked with
 * alloc_pool_link must be valid (their links are read) and stay their
 * owners'. Accepts NULL.
 */
void alloc_pool_free(struct alloc_pool *pool);

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

/* The linked node of the child block equal to p, or NULL. */
void *alloc_pool_lookup(const struct alloc_pool *pool, const struct pfx *p);

/* Sets the prefix of a node that is not linked. */
void alloc_node_init(struct alloc_node *n, const struct pfx *p);

/* The prefix of a node. */
struct pfx alloc_node_pfx(const struct alloc_node *n);

/*
 * Links the caller's node as a child block (its prefix from
 * alloc_node_init). ALLOC_EOUTSIDE, ALLOC_EINVAL or ALLOC_EOVERLAP (nothing
 * changed) when it does not fit; the node must not be linked anywhere.
 */
int alloc_pool_link(struct alloc_pool *pool, struct alloc_node *n);

/*
 * Unlinks a node linked with alloc_pool_link; the caller still owns it.
 * ALLOC_ENOMEM (nothing changed) when the free run it leaves behind cannot
 * be allocated.
 */
int alloc_pool_unlink(struct alloc_pool *pool, struct alloc_node *n);

/*
 * The linked nodes in address order: the lowest, and the
 * one after n; NULL at the end. Unlinking the current node is allowed when
 * its successor was taken before; a node linked meanwhile may be missed.
 */
struct alloc_node *alloc_pool_first(const struct alloc_pool *pool);
struct alloc_node *alloc_pool_next(const struct alloc_pool *pool,
    const struct alloc_node *n);

/*
 * Addresses not reserved in the parent, saturated at SIZE_MAX: the usable
 * capacity for single-address children.
 */
size_t alloc_pool_usable(const struct alloc_pool *pool);

/*
 * Calls fn for each child (data: its node) in address order until fn
 * returns non-zero, which is then returned. The pool must not change during
 * the walk.
 */
int alloc_pool_walk(const struct alloc_pool *pool,
    int (*fn)(void *arg, const struct pfx *p, void *data), void *arg);

#endif
