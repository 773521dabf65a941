/*
 * alloc.c - first-fit allocator index of one parent prefix.
 *
 * Two libbsd red-black trees per pool:
 *
 *  - the children (and, in a second tree of the same type, the reserved
 *    addresses), keyed by prefix, for lookup, walks and counting;
 *  - the free runs: maximal ranges of addresses inside the parent that no
 *    child and no reserved address covers, keyed by start address.
 *
 * Every free run knows its "order": the largest k such that an aligned block
 * of 2^k addresses lies entirely inside the run. If a run holds an aligned
 * block of 2^k addresses it also holds one of every smaller power of two (a
 * half of it), so "a block of host length k fits" is exactly "order >= k".
 * Each node also keeps the largest order in its subtree. The lowest free
 * aligned block of host length k is then found by one descent to the
 * leftmost run whose order is >= k, and starts at that run's start rounded
 * up to the block size: O(log n), whatever the mix of child lengths.
 *
 * Keeping the subtree maximum right: libbsd calls RB_AUGMENT on the nodes a
 * rotation touches and on the splice point of a removal, but does not walk
 * up to the root after an insert (and not always after a remove). So a node
 * enters and leaves the tree "neutral" (order -1, which changes no maximum),
 * and its real order is set, or cleared, by walking its path to the root
 * ourselves. Every rotation then recomputes nodes from correct children.
 */
#include "alloc.h"

#include <stdint.h>
#include <stdlib.h>

#include <sys/tree.h>

/* An occupied block: a child, or a reserved address (a /bits block). */
struct alloc_child {
	RB_ENTRY(alloc_child) entry;	/* link in children or reserved */
	struct pfx p;			/* the block */
	void *data;			/* caller's record; NULL if reserved */
};

RB_HEAD(alloc_child_tree, alloc_child);

/* A maximal run of free addresses, inclusive at both ends. */
struct alloc_free {
	RB_ENTRY(alloc_free) entry;	/* link in the free-run tree */
	pfx_addr start;			/* first free address (the key) */
	pfx_addr end;			/* last free address */
	int16_t order;			/* largest aligned 2^order block
					 * inside the run; -1 while the
					 * node is entering or leaving */
	int16_t max;			/* largest order in this subtree */
};

RB_HEAD(alloc_free_tree, alloc_free);

struct alloc_pool {
	struct pfx parent;		/* the prefix being divided */
	struct alloc_child_tree children; /* children by address */
	struct alloc_child_tree reserved; /* reserved addresses */
	struct alloc_free_tree free;	/* free runs by start address */
	size_t nchildren;		/* entries in children */
	size_t nreserved;		/* entries in reserved */
};

/* Orders occupied blocks by address, then length (pfx_cmp). */
static int
alloc_child_cmp(const struct alloc_child *a, const struct alloc_child *b)
{
	return pfx_cmp(&a->p, &b->p);
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

/*
 * libbsd's RB_GENERATE_STATIC marks its functions __unused, which libbsd
 * leaves undefined (it clashes with Linux struct members); define it only
 * around the two expansions so that unused tree functions do not warn.
 */
#define __unused __attribute__((__unused__))

/* The child tree needs no augmentation: generate it with the no-op hook. */
RB_GENERATE_STATIC(alloc_child_tree, alloc_child, entry, alloc_child_cmp)

#undef RB_AUGMENT
#define RB_AUGMENT(x) alloc_free_augment(x)
RB_GENERATE_STATIC(alloc_free_tree, alloc_free, entry, alloc_free_cmp)
#undef RB_AUGMENT
#undef __unused

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

/* Recomputes the subtree maxima from f up to the root. O(log n). */
static void
alloc_free_fixup(struct alloc_free *f)
{
	for (; f != NULL; f = RB_PARENT(f, entry))
		alloc_free_augment(f);
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
    pfx_addr start, pfx_addr end)
{
	f->start = start;
	f->end = end;
	f->order = -1;
	f->max = -1;
	RB_INSERT(alloc_free_tree, &pool->free, f);
	alloc_free_set(f, start, end);
}

/* Unlinks and frees a run, clearing its order along its path first. */
static void
alloc_free_unlink(struct alloc_pool *pool, struct alloc_free *f)
{
	f->order = -1;
	alloc_free_fixup(f);
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

/* The run with the least start >= a, or NULL. */
static struct alloc_free *
alloc_free_ceil(const struct alloc_pool *pool, pfx_addr a)
{
	struct alloc_free *n = RB_ROOT(&pool->free), *best = NULL;

	while (n != NULL) {
		if (n->start >= a) {
			best = n;
			n = RB_LEFT(n, entry);
		} else {
			n = RB_RIGHT(n, entry);
		}
	}
	return best;
}

/*
 * Takes [a, b] out of the free run f that contains it. spare is a node for
 * the upper remainder when the run splits in two; returns true if it was
 * used (the caller frees it otherwise).
 */
static bool
alloc_free_carve(struct alloc_pool *pool, struct alloc_free *f, pfx_addr a,
    pfx_addr b, struct alloc_free *spare)
{
	pfx_addr end = f->end;

	if (a == f->start && b == end) {
		alloc_free_unlink(pool, f);
		return false;
	}
	if (a == f->start) {
		/* the start moves up but stays below the next run: the key
		 * order is unchanged, so the node is updated in place */
		alloc_free_set(f, b + 1, end);
		return false;
	}
	alloc_free_set(f, f->start, a - 1);
	if (b == end)
		return false;
	alloc_free_link(pool, spare, b + 1, end);
	return true;
}

/*
 * The free runs right next to the occupied range [a, b]: *prev ends at
 * a - 1, *next starts at b + 1; either is NULL if there is none.
 */
static void
alloc_free_neighbours(const struct alloc_pool *pool, pfx_addr a, pfx_addr b,
    struct alloc_free **prev, struct alloc_free **next)
{
	struct alloc_free *f;

	*prev = NULL;
	*next = NULL;
	if (a > 0) {
		f = alloc_free_floor(pool, a - 1);
		if (f != NULL && f->end == a - 1)
			*prev = f;
	}
	if (b != ~(pfx_addr)0) {
		f = alloc_free_ceil(pool, b + 1);
		if (f != NULL && f->start == b + 1)
			*next = f;
	}
}

/*
 * Gives the occupied range [a, b] back to the free runs, merged with its
 * neighbours. spare is used (and true returned) only when there is neither
 * neighbour: the caller allocates it beforehand so that nothing can fail
 * half-way.
 */
static bool
alloc_free_release(struct alloc_pool *pool, pfx_addr a, pfx_addr b,
    struct alloc_free *spare)
{
	struct alloc_free *prev, *next;

	alloc_free_neighbours(pool, a, b, &prev, &next);
	if (prev != NULL && next != NULL) {
		pfx_addr end = next->end;

		alloc_free_unlink(pool, next);
		alloc_free_set(prev, prev->start, end);
	} else if (prev != NULL) {
		alloc_free_set(prev, prev->start, b);
	} else if (next != NULL) {
		alloc_free_set(next, a, next->end);
	} else {
		alloc_free_link(pool, spare, a, b);
		return true;
	}
	return false;
}

/* Frees a child subtree without rebalancing (the pool is going away). */
static void
alloc_child_destroy(struct alloc_child *c)
{
	if (c == NULL)
		return;
	alloc_child_destroy(RB_LEFT(c, entry));
	alloc_child_destroy(RB_RIGHT(c, entry));
	free(c);
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
	RB_INIT(&pool->children);
	RB_INIT(&pool->reserved);
	RB_INIT(&pool->free);
	alloc_free_link(pool, f, pfx_first(&pool->parent),
	    pfx_last(&pool->parent));
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
	alloc_child_destroy(RB_ROOT(&pool->children));
	alloc_child_destroy(RB_ROOT(&pool->reserved));
	alloc_free_destroy(RB_ROOT(&pool->free));
	free(pool);
}

const struct pfx *
alloc_pool_parent(const struct alloc_pool *pool)
{
	return &pool->parent;
}

/*
 * Marks one address as never to be handed out. Reserving an address twice
 * is harmless (ALLOC_OK); reserving one a child covers is ALLOC_EOVERLAP.
 */
int
alloc_pool_reserve(struct alloc_pool *pool, pfx_addr addr)
{
	unsigned bits = pfx_family_bits(pool->parent.family);
	struct alloc_child key, *r;
	struct alloc_free *f, *spare = NULL;

	key.p = pfx_make(pool->parent.family, addr, bits);
	if (key.p.addr != addr || !pfx_contains(&pool->parent, &key.p))
		return ALLOC_EOUTSIDE;
	if (RB_FIND(alloc_child_tree, &pool->reserved, &key) != NULL)
		return ALLOC_OK;
	f = alloc_free_floor(pool, addr);
	if (f == NULL || f->end < addr)
		return ALLOC_EOVERLAP;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return ALLOC_ENOMEM;
	if (addr != f->start && addr != f->end) {
		spare = malloc(sizeof(*spare));
		if (spare == NULL) {
			free(r);
			return ALLOC_ENOMEM;
		}
	}
	r->p = key.p;
	RB_INSERT(alloc_child_tree, &pool->reserved, r);
	pool->nreserved++;
	if (!alloc_free_carve(pool, f, addr, addr, spare))
		free(spare);
	return ALLOC_OK;
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
alloc_pool_insert(struct alloc_pool *pool, const struct pfx *p, void *data)
{
	unsigned bits = pfx_family_bits(pool->parent.family);
	struct alloc_free *f, *spare = NULL;
	struct alloc_child *c;
	pfx_addr a, b;

	if (p->family != pool->parent.family)
		return ALLOC_EOUTSIDE;
	if (p->len > bits || (p->addr & ~pfx_mask(p->family, p->len)) != 0)
		return ALLOC_EINVAL;
	if (!pfx_contains(&pool->parent, p))
		return ALLOC_EOUTSIDE;
	if (p->len == pool->parent.len)
		return ALLOC_EINVAL;
	a = pfx_first(p);
	b = pfx_last(p);
	f = alloc_free_floor(pool, a);
	if (f == NULL || f->end < b)
		return ALLOC_EOVERLAP;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return ALLOC_ENOMEM;
	if (a != f->start && b != f->end) {
		spare = malloc(sizeof(*spare));
		if (spare == NULL) {
			free(c);
			return ALLOC_ENOMEM;
		}
	}
	c->p = *p;
	c->data = data;
	RB_INSERT(alloc_child_tree, &pool->children, c);
	pool->nchildren++;
	if (!alloc_free_carve(pool, f, a, b, spare))
		free(spare);
	return ALLOC_OK;
}

int
alloc_pool_remove(struct alloc_pool *pool, const struct pfx *p)
{
	struct alloc_child key, *c;
	struct alloc_free *prev, *next, *spare = NULL;
	pfx_addr a, b;

	key.p = *p;
	c = RB_FIND(alloc_child_tree, &pool->children, &key);
	if (c == NULL)
		return ALLOC_ENOENT;
	a = pfx_first(&c->p);
	b = pfx_last(&c->p);
	alloc_free_neighbours(pool, a, b, &prev, &next);
	if (prev == NULL && next == NULL) {
		spare = malloc(sizeof(*spare));
		if (spare == NULL)
			return ALLOC_ENOMEM;
	}
	RB_REMOVE(alloc_child_tree, &pool->children, c);
	pool->nchildren--;
	free(c);
	if (!alloc_free_release(pool, a, b, spare))
		free(spare);
	return ALLOC_OK;
}

void *
alloc_pool_lookup(const struct alloc_pool *pool, const struct pfx *p)
{
	struct alloc_child key, *c;

	key.p = *p;
	c = RB_FIND(alloc_child_tree,
	    (struct alloc_child_tree *)&pool->children, &key);
	return c != NULL ? c->data : NULL;
}

size_t
alloc_pool_count(const struct alloc_pool *pool)
{
	return pool->nchildren;
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

int
alloc_pool_walk(const struct alloc_pool *pool,
    int (*fn)(void *arg, const struct pfx *p, void *data), void *arg)
{
	struct alloc_child *c;
	int rc;

	RB_FOREACH(c, alloc_child_tree,
	    (struct alloc_child_tree *)&pool->children) {
		rc = fn(arg, &c->p, c->data);
		if (rc != 0)
			return rc;
	}
	return 0;
}
