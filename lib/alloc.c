/*
 * alloc.c - first-fit allocator index of one parent prefix.
 *
 * A pool keeps two structures:
 *
 *  - the occupied blocks (children and reserved addresses) in a libbsd
 *    red-black tree by address, for walks in address order; a block is a
 *    struct alloc_node, either the caller's own (alloc_pool_link) or one
 *    the pool allocates for a reserved address;
 *  - the free runs (maximal ranges of addresses inside the parent that no
 *    block covers) in a second red-black tree by start address.
 *
 * Every free run knows its "order": the largest k such that an aligned block
 * of 2^k addresses lies entirely inside the run. A run that holds an aligned
 * block of 2^k addresses also holds one of every smaller power of two (a half
 * of it), so "a block of host length k fits" is exactly "order >= k". Each
 * node also keeps the largest order in its subtree. The lowest free aligned
 * block of host length k is then found by one descent to the leftmost run
 * whose order is >= k, and starts at that run's start rounded up to the
 * block size: O(log n), whatever the mix of child lengths.
 *
 * Keeping the subtree maximum right: libbsd calls RB_AUGMENT on the nodes a
 * rotation touches and on the splice point of a removal, but does not walk
 * up to the root after an insert. So a run enters and leaves the tree
 * "neutral" (order -1, which changes no maximum), and its real order is set,
 * or cleared, by walking its path towards the root ourselves. Every rotation
 * then recomputes nodes from correct children.
 *
 * Each free run also remembers the block right below its start. A new block
 * carved out of a run has that block as its predecessor in address order, so
 * it is linked into the block tree beside it and rebalanced, without a
 * descent from the root; a removed block finds its predecessor with RB_PREV.
 * The only descents left per operation are in the free-run tree, and a
 * block does not point back at the run above it (8 bytes in each of the
 * registry's records): a removed block finds its neighbouring runs from the
 * lowest run when it lies below every run (first-fit churn), else with one
 * descent among the runs.
 */
#include "alloc.h"

#include <stdint.h>
#include <stdlib.h>

#include "rbtree.h"

/* Who owns a block (alloc_node.an_kind). */
enum alloc_kind {
	ALLOC_KIND_LINKED = 1,	/* the caller's node (alloc_pool_link) */
	ALLOC_KIND_RESERVED,	/* the pool's node of a reserved address */
};

RB_HEAD(alloc_block_tree, alloc_node);

/* A maximal run of free addresses, inclusive at both ends. */
struct alloc_free {
	RB_ENTRY(alloc_free) entry;	/* link in the free-run tree */
	pfx_addr start;			/* first free address (the key) */
	pfx_addr end;			/* last free address */
	struct alloc_node *below;	/* block ending at start - 1; NULL
					 * when the run starts the parent;
					 * then below->above is this run */
	int16_t order;			/* largest aligned 2^order block
					 * inside the run; -1 while the
					 * node is entering or leaving */
	int16_t max;			/* largest order in this subtree */
};

RB_HEAD(alloc_free_tree, alloc_free);

struct alloc_pool {
	struct pfx parent;		/* the prefix being divided */
	struct alloc_block_tree blocks;	/* children and reserved, by address */
	struct alloc_free_tree free;	/* free runs by start address */
	struct alloc_free *first;	/* lowest free run, or NULL */
	size_t nreserved;		/* blocks that are reserved */
};

/*
 * Orders blocks by first address. Blocks never overlap, so the address alone
 * identifies one. A plain inline comparison: it runs at every tree level.
 */
static int
alloc_block_cmp(const struct alloc_node *a, const struct alloc_node *b)
{
	if (a->an_addr != b->an_addr)
		return a->an_addr < b->an_addr ? -1 : 1;
	return 0;
}

/* Orders free runs by their first address; runs never overlap. */
static int
alloc_free_cmp(const struct alloc_free *a, const struct alloc_free *b)
{
	if (a->start != b->start)
		return a->start < b->start ? -1 : 1;
	return 0;
}

/* Recomputes the subtree maximum of one free-run node from its children. */
static void
alloc_free_augment(struct alloc_free *f)
{
	struct alloc_free *l = RB_LEFT(f, entry), *r = RB_RIGHT(f, entry);
	int16_t m = f->order;

	if (l != NULL && l->max > m)
		m = l->max;
	if (r != NULL && r->max > m)
		m = r->max;
	f->max = m;
}

/* The block tree needs no augmentation: generate it with the no-op hook. */
RB_GENERATE_STATIC(alloc_block_tree, alloc_node, an_entry, alloc_block_cmp)

#undef RB_AUGMENT
#define RB_AUGMENT(x) alloc_free_augment(x)
RB_GENERATE_STATIC(alloc_free_tree, alloc_free, entry, alloc_free_cmp)
#undef RB_AUGMENT

/* ---- block tree -------------------------------------------------------- */

/* Last address of a block. */
static pfx_addr
alloc_node_last(const struct alloc_node *n)
{
	unsigned host = (n->an_family == PFX_V4 ? 32u : 128u) - n->an_len;

	if (host >= 128)
		return ~(pfx_addr)0;
	return n->an_addr | (((pfx_addr)1 << host) - 1);
}

/*
 * Links b into the block tree right after pred (NULL: before every block)
 * and rebalances. b is the first block above pred, so it goes in pred's
 * empty right link, or else in the empty left link of pred's successor:
 * no descent from the root, and the rebalancing is libbsd's own.
 */
static void
alloc_block_link(struct alloc_pool *pool, struct alloc_node *b,
    struct alloc_node *pred)
{
	struct alloc_node *parent;

	if (pred == NULL) {
		parent = RB_MIN(alloc_block_tree, &pool->blocks);
		RB_SET(b, parent, an_entry);
		if (parent == NULL)
			RB_ROOT(&pool->blocks) = b;
		else
			RB_LEFT(parent, an_entry) = b;
	} else if (RB_RIGHT(pred, an_entry) == NULL) {
		RB_SET(b, pred, an_entry);
		RB_RIGHT(pred, an_entry) = b;
	} else {
		parent = RB_RIGHT(pred, an_entry);
		while (RB_LEFT(parent, an_entry) != NULL)
			parent = RB_LEFT(parent, an_entry);
		RB_SET(b, parent, an_entry);
		RB_LEFT(parent, an_entry) = b;
	}
	alloc_block_tree_RB_INSERT_COLOR(&pool->blocks, b);
}

/* The block starting at address a, or NULL. */
static struct alloc_node *
alloc_node_get(const struct alloc_pool *pool, pfx_addr a)
{
	struct alloc_node key;

	key.an_addr = a;
	return RB_FIND(alloc_block_tree,
	    (struct alloc_block_tree *)&pool->blocks, &key);
}

/* ---- free runs --------------------------------------------------------- */

/* Index of the highest set bit of a non-zero 128-bit value. */
static unsigned
alloc_high_bit(pfx_addr v)
{
	uint64_t hi = (uint64_t)(v >> 64), lo = (uint64_t)v;

	if (hi != 0)
		return 127 - (unsigned)__builtin_clzll(hi);
	return 63 - (unsigned)__builtin_clzll(lo);
}

/*
 * The largest k such that an aligned block of 2^k addresses lies inside
 * [x, e]. Let b be the highest bit where x and e differ and m = e with bits
 * below b cleared: m is aligned to 2^b and x < m <= e. No block of 2^b or
 * less crosses m, so the best block either ends at m - 1 (at most m - x
 * addresses) or starts at m (at most e - m + 1); a block of 2^(b+1) fits
 * only when the run is exactly that aligned block.
 */
static int16_t
alloc_run_order(pfx_addr x, pfx_addr e)
{
	pfx_addr m, lo, hi, half;
	unsigned b;

	if (x == e)
		return 0;
	b = alloc_high_bit(x ^ e);
	m = (e >> b) << b;
	lo = m - x;
	hi = e - m + 1;
	half = (pfx_addr)1 << b;
	if (lo == half && hi == half)
		return (int16_t)(b + 1);
	return (int16_t)alloc_high_bit(lo > hi ? lo : hi);
}

/*
 * Recomputes the subtree maxima from f towards the root, O(log n). A node
 * whose maximum comes out unchanged leaves every ancestor unchanged too, so
 * the walk stops there.
 */
static void
alloc_free_fixup(struct alloc_free *f)
{
	int16_t old;

	for (; f != NULL; f = RB_PARENT(f, entry)) {
		old = f->max;
		alloc_free_augment(f);
		if (f->max == old)
			break;
	}
}

/* Makes blk the block right below run f. */
static void
alloc_free_set_below(struct alloc_free *f, struct alloc_node *blk)
{
	f->below = blk;
}

/*
 * Sets the bounds of a linked run and refreshes the maxima. The caller keeps
 * the key order: a new start never passes a neighbouring run.
 */
static void
alloc_free_set(struct alloc_free *f, pfx_addr start, pfx_addr end)
{
	f->start = start;
	f->end = end;
	f->order = alloc_run_order(start, end);
	alloc_free_fixup(f);
}

/* Links a new run [start, end] (neutral first, see the top of the file). */
static void
alloc_free_link(struct alloc_pool *pool, struct alloc_free *f,
    pfx_addr start, pfx_addr end, struct alloc_node *below)
{
	f->start = start;
	f->end = end;
	f->below = NULL;
	f->order = -1;
	f->max = -1;
	if (pool->first != NULL && start < pool->first->start) {
		/* a new lowest run (a release below every other run, the
		 * usual first-fit churn) goes into the empty left link of
		 * the old lowest: no descent */
		RB_SET(f, pool->first, entry);
		RB_LEFT(pool->first, entry) = f;
		alloc_free_tree_RB_INSERT_COLOR(&pool->free, f);
	} else {
		RB_INSERT(alloc_free_tree, &pool->free, f);
	}
	alloc_free_set_below(f, below);
	if (pool->first == NULL || start < pool->first->start)
		pool->first = f;
	alloc_free_set(f, start, end);
}

/* Unlinks and frees a run, clearing its order along its path first. */
static void
alloc_free_unlink(struct alloc_pool *pool, struct alloc_free *f)
{
	f->order = -1;
	alloc_free_fixup(f);
	if (pool->first == f)
		pool->first = RB_NEXT(alloc_free_tree, &pool->free, f);
	alloc_free_set_below(f, NULL);
	RB_REMOVE(alloc_free_tree, &pool->free, f);
	free(f);
}

/* The run with the greatest start <= a, or NULL. */
static struct alloc_free *
alloc_free_floor(const struct alloc_pool *pool, pfx_addr a)
{
	struct alloc_free *n = RB_ROOT(&pool->free), *best = NULL;

	while (n != NULL) {
		if (n->start <= a) {
			best = n;
			n = RB_RIGHT(n, entry);
		} else {
			n = RB_LEFT(n, entry);
		}
	}
	return best;
}

/*
 * Takes block b = [a, b->last] out of the free run f that contains it.
 * spare is a node for the upper remainder when the run splits in two;
 * returns true if it was used (the caller frees it otherwise).
 */
static bool
alloc_free_carve(struct alloc_pool *pool, struct alloc_free *f,
    struct alloc_node *blk, struct alloc_free *spare)
{
	pfx_addr a = blk->an_addr, b = alloc_node_last(blk);
	pfx_addr end = f->end;

	if (a == f->start && b == end) {
		alloc_free_unlink(pool, f);
		return false;
	}
	if (a == f->start) {
		/* the start moves up but stays below the next run: the key
		 * order is unchanged, so the node is updated in place */
		alloc_free_set_below(f, blk);
		alloc_free_set(f, b + 1, end);
		return false;
	}
	alloc_free_set(f, f->start, a - 1);
	if (b == end)
		return false;
	alloc_free_link(pool, spare, b + 1, end, blk);
	return true;
}

/*
 * The free runs right next to block c: *prev ends just below it, *next
 * starts just above it; either is NULL if there is none. When the lowest
 * run starts above c (first-fit churn gives back the lowest block) it is
 * the only candidate, and no descent is needed; otherwise the run below c
 * is the one with the greatest start under c's address (one descent), and
 * the one above follows it. A run starting at 0 cannot follow another, so
 * the wrap of c's last address + 1 at the top of the space matches none.
 */
static void
alloc_free_neighbours(const struct alloc_pool *pool,
    const struct alloc_node *c, struct alloc_free **prev,
    struct alloc_free **next)
{
	pfx_addr after = alloc_node_last(c) + 1;
	struct alloc_free *f = pool->first;

	*prev = *next = NULL;
	if (f == NULL)
		return;
	if (f->start > c->an_addr) {
		if (f->start == after)
			*next = f;
		return;
	}
	f = alloc_free_floor(pool, c->an_addr);
	if (f->end + 1 == c->an_addr)
		*prev = f;
	f = RB_NEXT(alloc_free_tree, (struct alloc_free_tree *)&pool->free, f);
	if (f != NULL && f->start == after)
		*next = f;
}

/*
 * Gives the range [a, b] of a block being removed back to the free runs,
 * merged with its neighbours prev and next (from alloc_free_neighbours).
 * pred is the block below it. spare is used (and true returned) only when
 * there is neither neighbour: the caller allocates it beforehand so that
 * nothing can fail half-way.
 */
static bool
alloc_free_release(struct alloc_pool *pool, pfx_addr a, pfx_addr b,
    struct alloc_free *prev, struct alloc_free *next,
    struct alloc_node *pred, struct alloc_free *spare)
{
	if (prev != NULL && next != NULL) {
		pfx_addr end = next->end;

		alloc_free_unlink(pool, next);
		alloc_free_set(prev, prev->start, end);
	} else if (prev != NULL) {
		alloc_free_set(prev, prev->start, b);
	} else if (next != NULL) {
		alloc_free_set_below(next, pred);
		alloc_free_set(next, a, next->end);
	} else {
		alloc_free_link(pool, spare, a, b, pred);
		return true;
	}
	return false;
}

/* ---- pool -------------------------------------------------------------- */

/* Frees the pool's reserved blocks of a subtree without rebalancing (the
 * pool is going away); linked nodes are their owners'. */
static void
alloc_block_destroy(struct alloc_node *b)
{
	if (b == NULL)
		return;
	alloc_block_destroy(RB_LEFT(b, an_entry));
	alloc_block_destroy(RB_RIGHT(b, an_entry));
	if (b->an_kind != ALLOC_KIND_LINKED)
		free(b);
}

/* Frees a free-run subtree without rebalancing. */
static void
alloc_free_destroy(struct alloc_free *f)
{
	if (f == NULL)
		return;
	alloc_free_destroy(RB_LEFT(f, entry));
	alloc_free_destroy(RB_RIGHT(f, entry));
	free(f);
}

/*
 * Links block blk (its prefix, and an_kind, set by the caller), which the
 * caller has checked to lie inside the parent. All memory is taken first,
 * so an error leaves the pool as it was.
 */
static int
alloc_occupy(struct alloc_pool *pool, struct alloc_node *blk)
{
	pfx_addr a = blk->an_addr, b = alloc_node_last(blk);
	struct alloc_free *f, *spare = NULL;

	/* first fits mostly land in the lowest run: skip the descent */
	f = pool->first;
	if (f == NULL || f->start > a || f->end < a)
		f = alloc_free_floor(pool, a);
	if (f == NULL || f->end < b)
		return ALLOC_EOVERLAP;
	if (a != f->start && b != f->end) {
		spare = malloc(sizeof(*spare));
		if (spare == NULL)
			return ALLOC_ENOMEM;
	}
	/* the free addresses below a in f lie above f->below, so that block
	 * is the new one's predecessor */
	alloc_block_link(pool, blk, f->below);
	if (blk->an_kind == ALLOC_KIND_RESERVED)
		pool->nreserved++;
	if (!alloc_free_carve(pool, f, blk, spare))
		free(spare);
	return ALLOC_OK;
}

/* Checks that child p can be a block of pool (not yet that it is free). */
static int
alloc_child_ok(const struct alloc_pool *pool, const struct pfx *p)
{
	unsigned bits = pfx_family_bits(pool->parent.family);

	if (p->family != pool->parent.family)
		return ALLOC_EOUTSIDE;
	if (p->len > bits || (p->addr & ~pfx_mask(p->family, p->len)) != 0)
		return ALLOC_EINVAL;
	if (!pfx_contains(&pool->parent, p))
		return ALLOC_EOUTSIDE;
	if (p->len == pool->parent.len)
		return ALLOC_EINVAL;
	return ALLOC_OK;
}

void
alloc_node_init(struct alloc_node *n, const struct pfx *p)
{
	n->an_addr = p->addr;
	n->an_len = p->len;
	n->an_family = p->family;
	n->an_kind = 0;
}

struct pfx
alloc_node_pfx(const struct alloc_node *n)
{
	return (struct pfx){ .addr = n->an_addr, .len = n->an_len,
	    .family = n->an_family };
}

struct alloc_pool *
alloc_pool_new(const struct pfx *parent)
{
	struct alloc_pool *pool;
	struct alloc_free *f;

	pool = calloc(1, sizeof(*pool));
	if (pool == NULL)
		goto fail;
	f = calloc(1, sizeof(*f));
	if (f == NULL)
		goto fail_pool;
	pool->parent = pfx_make(parent->family, parent->addr, parent->len);
	RB_INIT(&pool->blocks);
	RB_INIT(&pool->free);
	alloc_free_link(pool, f, pfx_first(&pool->parent),
	    pfx_last(&pool->parent), NULL);
	return pool;

fail_pool:
	free(pool);
fail:
	return NULL;
}

void
alloc_pool_free(struct alloc_pool *pool)
{
	if (pool == NULL)
		return;
	alloc_block_destroy(RB_ROOT(&pool->blocks));
	alloc_free_destroy(RB_ROOT(&pool->free));
	free(pool);
}

/*
 * Marks one address as never to be handed out. Reserving an address twice
 * is harmless (ALLOC_OK); reserving one a child covers is ALLOC_EOVERLAP.
 */
int
alloc_pool_reserve(struct alloc_pool *pool, pfx_addr addr)
{
	unsigned bits = pfx_family_bits(pool->parent.family);
	struct alloc_node *b;
	struct pfx p;
	int rc;

	p = pfx_make(pool->parent.family, addr, bits);
	if (p.addr != addr || !pfx_contains(&pool->parent, &p))
		return ALLOC_EOUTSIDE;
	b = alloc_node_get(pool, addr);
	if (b != NULL && b->an_kind == ALLOC_KIND_RESERVED)
		return ALLOC_OK;
	b = calloc(1, sizeof(*b));
	if (b == NULL)
		return ALLOC_ENOMEM;
	alloc_node_init(b, &p);
	b->an_kind = ALLOC_KIND_RESERVED;
	rc = alloc_occupy(pool, b);
	if (rc != ALLOC_OK)
		free(b);
	return rc;
}

/*
 * One descent to the leftmost free run whose order is at least the wanted
 * block's host length; the block starts at that run's start rounded up.
 */
int
alloc_pool_find(const struct alloc_pool *pool, unsigned len, struct pfx *out)
{
	unsigned bits = pfx_family_bits(pool->parent.family);
	struct alloc_free *n = RB_ROOT(&pool->free), *l;
	int16_t k;

	if (len <= pool->parent.len || len > bits)
		return ALLOC_EINVAL;
	k = (int16_t)(bits - len);
	if (n == NULL || n->max < k)
		return ALLOC_ENOSPACE;
	/* the lowest run answers whenever the block fits in it, as a single
	 * address always does; otherwise descend */
	if (pool->first->order >= k)
		n = pool->first;
	else
		while (n != NULL) {
			l = RB_LEFT(n, entry);
			if (l != NULL && l->max >= k)
				n = l;
			else if (n->order >= k)
				break;
			else
				n = RB_RIGHT(n, entry);
		}
	/* n == NULL or a failed align_up would mean broken maxima */
	if (n == NULL)
		return ALLOC_ENOSPACE;
	if (!pfx_align_up(pool->parent.family, n->start, len, out))
		return ALLOC_ENOSPACE;
	return ALLOC_OK;
}

int
alloc_pool_link(struct alloc_pool *pool, struct alloc_node *n)
{
	struct pfx p = alloc_node_pfx(n);
	int rc;

	if ((rc = alloc_child_ok(pool, &p)) != ALLOC_OK)
		return rc;
	n->an_kind = ALLOC_KIND_LINKED;
	return alloc_occupy(pool, n);
}

/* Takes the node out of the tree and gives its addresses back to the free
 * runs; the caller still owns it. */
int
alloc_pool_unlink(struct alloc_pool *pool, struct alloc_node *c)
{
	struct alloc_free *prev, *next, *spare = NULL;
	struct alloc_node *pred;
	pfx_addr a = c->an_addr, b = alloc_node_last(c);

	pred = RB_PREV(alloc_block_tree, &pool->blocks, c);
	alloc_free_neighbours(pool, c, &prev, &next);
	if (prev == NULL && next == NULL) {
		spare = malloc(sizeof(*spare));
		if (spare == NULL)
			return ALLOC_ENOMEM;
	}
	RB_REMOVE(alloc_block_tree, &pool->blocks, c);
	if (!alloc_free_release(pool, a, b, prev, next, pred, spare))
		free(spare);
	return ALLOC_OK;
}

/* The child (not a reserved address) exactly equal to p, or NULL. */
void *
alloc_pool_lookup(const struct alloc_pool *pool, const struct pfx *p)
{
	struct alloc_node *b;

	if (p->family != pool->parent.family)
		return NULL;
	b = alloc_node_get(pool, p->addr);
	if (b == NULL || b->an_kind == ALLOC_KIND_RESERVED ||
	    b->an_len != p->len)
		return NULL;
	return b;
}

/* Skips reserved blocks from b on: the next linked node or NULL. */
static struct alloc_node *
alloc_linked_from(const struct alloc_pool *pool, struct alloc_node *b)
{
	while (b != NULL && b->an_kind != ALLOC_KIND_LINKED)
		b = RB_NEXT(alloc_block_tree,
		    (struct alloc_block_tree *)&pool->blocks, b);
	return b;
}

struct alloc_node *
alloc_pool_first(const struct alloc_pool *pool)
{
	return alloc_linked_from(pool, RB_MIN(alloc_block_tree,
	    (struct alloc_block_tree *)&pool->blocks));
}

struct alloc_node *
alloc_pool_next(const struct alloc_pool *pool, const struct alloc_node *n)
{
	return alloc_linked_from(pool, RB_NEXT(alloc_block_tree,
	    (struct alloc_block_tree *)&pool->blocks, (struct alloc_node *)n));
}

size_t
alloc_pool_usable(const struct alloc_pool *pool)
{
	unsigned host = pfx_family_bits(pool->parent.family) - pool->parent.len;
	pfx_addr size, usable;

	if (host >= 128)
		return SIZE_MAX;
	size = (pfx_addr)1 << host;
	usable = size - pool->nreserved;
	return usable > SIZE_MAX ? SIZE_MAX : (size_t)usable;
}

/* Children in address order; reserved addresses are skipped. */
int
alloc_pool_walk(const struct alloc_pool *pool,
    int (*fn)(void *arg, const struct pfx *p, void *data), void *arg)
{
	struct alloc_node *b;
	struct pfx p;
	int rc;

	RB_FOREACH(b, alloc_block_tree,
	    (struct alloc_block_tree *)&pool->blocks) {
		if (b->an_kind == ALLOC_KIND_RESERVED)
			continue;
		p = alloc_node_pfx(b);
		rc = fn(arg, &p, b);
		if (rc != 0)
			return rc;
	}
	return 0;
}
