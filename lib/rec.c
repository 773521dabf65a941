/*
 * rec.c - a record of the registry in memory: one block holding the
 * record, its name and, for a parent, its children by address and by
 * name; see regint.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "regint.h"

/* Smallest name table. */
#define REC_NAMES_MIN 8

/* Builds the id of r, a child of parent (NULL for a trench record):
 * "<name>-<parent id>", into buf. */
void
rec_id(const struct rec *r, const struct rec *parent, char *buf, size_t len)
{
	size_t n = 0;
	const struct rec *q;

	buf[0] = '\0';
	for (q = r; q != NULL && n < len; q = q == r ? parent : rec_up(q)) {
		int w = snprintf(buf + n, len - n, "%s%s", q == r ? "" : "-",
		    q->name);
		if (w < 0)
			break;
		n += (size_t)w;
	}
}

/* Builds the id of a trench, conduit or node record (its parent_id column
 * for the records below it) into buf; "" for NULL (a trench's parent). */
void
rec_parent_id(const struct rec *parent, char *buf, size_t len)
{
	if (parent == NULL)
		buf[0] = '\0';
	else
		rec_id(parent, rec_up(parent), buf, len);
}

/* 64-bit FNV-1a of a name, finished with a multiply-xorshift mix. */
static uint64_t
rec_names_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 32;
	return h;
}

/* Home slot of hash h in a table of cap slots (multiply-shift range). */
static uint32_t
rec_names_home(uint64_t h, uint32_t cap)
{
	return (uint32_t)(((h >> 32) * (uint64_t)cap) >> 32);
}

/* The record of a non-empty slot. */
static struct rec *
rec_names_rec(uintptr_t v)
{
	return (struct rec *)(v & ~REC_TAG_MASK);
}

/* The child called name, or NULL. */
static struct rec *
rec_names_get(const struct rec_names *t, const char *name)
{
	uint64_t h;
	uint32_t i;
	uintptr_t tag;

	if (t->cap == 0)
		return NULL;
	h = rec_names_hash(name);
	tag = (uintptr_t)h & REC_TAG_MASK;
	for (i = rec_names_home(h, t->cap); t->slot[i] != 0;
	    i = i + 1 == t->cap ? 0 : i + 1)
		if ((t->slot[i] & REC_TAG_MASK) == tag &&
		    strcmp(rec_names_rec(t->slot[i])->name, name) == 0)
			return rec_names_rec(t->slot[i]);
	return NULL;
}

/* Puts r in the first empty slot of its probe sequence (room is known). */
static void
rec_names_place(uintptr_t *slot, uint32_t cap, struct rec *r)
{
	uint64_t h = rec_names_hash(r->name);
	uint32_t i;

	for (i = rec_names_home(h, cap); slot[i] != 0; i = i + 1 == cap ? 0 : i
	    + 1)
		;
	slot[i] = (uintptr_t)r | ((uintptr_t)h & REC_TAG_MASK);
}

/* Moves every child into a new table of cap slots. Unchanged on failure. */
static int
rec_names_resize(struct rec_names *t, uint32_t cap)
{
	uintptr_t *slot;
	uint32_t i;

	if ((slot = calloc(cap, sizeof(*slot))) == NULL)
		return -1;
	for (i = 0; i < t->cap; i++)
		if (t->slot[i] != 0)
			rec_names_place(slot, cap, rec_names_rec(t->slot[i]));
	free(t->slot);
	t->slot = slot;
	t->cap = cap;
	return 0;
}

/*
 * Makes room for one more child: the table grows by half when it would
 * pass 3/4 full (by half, not double: 8 bytes a slot is most of what a
 * name costs). Called before anything changes, so a failure changes
 * nothing.
 */
static int
rec_names_room(struct rec_names *t)
{
	uint64_t cap;

	if (((uint64_t)t->used + 1) * 4 <= (uint64_t)t->cap * 3)
		return 0;
	cap = t->cap != 0 ? (uint64_t)t->cap + t->cap / 2 : REC_NAMES_MIN;
	if (cap > UINT32_MAX)
		return -1;
	return rec_names_resize(t, (uint32_t)cap);
}

/* Adds r; rec_names_room must have succeeded just before. */
static void
rec_names_put(struct rec_names *t, struct rec *r)
{
	rec_names_place(t->slot, t->cap, r);
	t->used++;
}

/*
 * Removes r. Linear probing without tombstones: every later entry of the
 * same cluster whose home slot does not lie cyclically in (hole, itself]
 * moves back into the hole. A table left under 1/4 full shrinks (when that
 * fails it simply stays large), so release churn keeps it bounded.
 */
static void
rec_names_del(struct rec_names *t, const struct rec *r)
{
	uint32_t i, j, home, cap = t->cap;
	const struct rec *k;

	for (i = rec_names_home(rec_names_hash(r->name), cap);
	    rec_names_rec(t->slot[i]) != r; i = i + 1 == cap ? 0 : i + 1)
		;
	for (j = i + 1 == cap ? 0 : i + 1; t->slot[j] != 0;
	    j = j + 1 == cap ? 0 : j + 1) {
		k = rec_names_rec(t->slot[j]);
		home = rec_names_home(rec_names_hash(k->name), cap);
		if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
			continue;
		t->slot[i] = t->slot[j];
		i = j;
	}
	t->slot[i] = 0;
	t->used--;
	if (t->used == 0) {
		free(t->slot);
		t->slot = NULL;
		t->cap = 0;
	} else if (cap > REC_NAMES_MIN && (uint64_t)t->used * 4 < cap) {
		(void)rec_names_resize(t, t->used * 2 > REC_NAMES_MIN ?
		    t->used * 2 : REC_NAMES_MIN);
	}
}

/* The child after slot *i (advancing *i), in table order, or NULL. */
struct rec *
rec_names_next(const struct rec_names *t, uint32_t *i)
{
	for (; *i < t->cap; (*i)++)
		if (t->slot[*i] != 0)
			return rec_names_rec(t->slot[(*i)++]);
	return NULL;
}

/*
 * A new record, not linked anywhere: one allocation holding the rec_ext
 * (parents only), the record and its name; a slab slot for a leaf.
 */
struct rec *
rec_new(struct reg *g, const char *name, const struct pfx *cidr, int level)
{
	size_t nlen = strlen(name) + 1;
	size_t ext = level < LVL_CHILD ? REC_EXT_SIZE : 0;
	size_t head = ext + offsetof(struct rec, name);
	int cls = level >= LVL_CHILD ? slab_class(head + nlen) : -1;
	struct rec_ext *x;
	struct rec *r;
	char *m;

	m = cls >= 0 ? slab_get(&g->slabs, (unsigned)cls) : malloc(head + nlen);
	if (m == NULL)
		return NULL;
	memset(m, 0, head);
	r = (struct rec *)(m + ext);
	memcpy(r->name, name, nlen);
	alloc_node_init(&r->node, cidr);
	REC_LEVEL(r) = (uint8_t)level;
	if (level >= LVL_CHILD)
		return r;
	x = rec_ext(r);
	if ((x->pool = alloc_pool_new(cidr)) == NULL)
		goto fail;
	/* A node never hands out its first and last address. */
	if (level == LVL_NODE &&
	    (alloc_pool_reserve(x->pool, pfx_first(cidr)) != ALLOC_OK ||
	    alloc_pool_reserve(x->pool, pfx_last(cidr)) != ALLOC_OK))
		goto fail;
	return r;
fail:
	alloc_pool_free(x->pool);
	free(m);
	return NULL;
}

/* Frees the memory of r (with its rec_ext when r is a parent). */
static void
rec_mem_free(struct reg *g, struct rec *r)
{
	size_t size = offsetof(struct rec, name) + strlen(r->name) + 1;

	if (REC_LEVEL(r) < LVL_CHILD)
		free((char *)r - REC_EXT_SIZE);
	else if (slab_class(size) >= 0)
		slab_put(&g->slabs, r);
	else
		free(r);
}

/*
 * Frees r and everything below it. Cooling entries inside a freed node
 * are marked dead (parent NULL): they expire without touching it; while
 * closing they are not looked for (reg_close frees them after the trees).
 * The pool is freed before the children: it reads their links.
 */
void
rec_free_tree(struct reg *g, struct rec *r)
{
	struct rec_ext *x;
	struct rec *k;
	uint32_t j;
	size_t i;

	if (r == NULL)
		return;
	if (REC_LEVEL(r) >= LVL_CHILD) {
		rec_mem_free(g, r);
		return;
	}
	x = rec_ext(r);
	for (i = g->cool_head; x->ncool > 0 && !g->closing && i < g->cool_n;
	    i++) {
		if (g->cool[i].node == r) {
			g->cool[i].node = NULL;
			x->ncool--;
		}
	}
	alloc_pool_free(x->pool);
	for (j = 0; (k = rec_names_next(&x->kids, &j)) != NULL;)
		rec_free_tree(g, k);
	free(x->kids.slot);
	rec_mem_free(g, r);
}

/* Counts r's subtree: all records and leaf children. */
void
rec_count_tree(struct rec *r, size_t *nrec, size_t *nchild)
{
	struct rec *k;
	uint32_t i;

	(*nrec)++;
	if (REC_LEVEL(r) == LVL_CHILD)
		(*nchild)++;
	if (REC_LEVEL(r) >= LVL_CHILD)
		return;
	for (i = 0; (k = rec_names_next(&rec_ext(r)->kids, &i)) != NULL;)
		rec_count_tree(k, nrec, nchild);
}

/* Links r under parent (pool and name table). Returns an ALLOC_* code. */
int
rec_attach(struct reg *g, struct rec *parent, struct rec *r)
{
	struct rec_ext *x = rec_ext(parent);
	size_t nrec = 0, nchild = 0;
	int rc;

	if (rec_names_get(&x->kids, r->name) != NULL)
		return ALLOC_EOVERLAP;
	if (rec_names_room(&x->kids) != 0)
		return ALLOC_ENOMEM;
	if ((rc = alloc_pool_link(x->pool, &r->node)) != ALLOC_OK)
		return rc;
	rec_names_put(&x->kids, r);
	if (REC_LEVEL(r) < LVL_CHILD)
		rec_ext(r)->parent = parent;
	rec_count_tree(r, &nrec, &nchild);
	g->nrec += nrec;
	g->nchild += nchild;
	return ALLOC_OK;
}

/* Unlinks r from its parent; r keeps its subtree. */
void
rec_detach(struct reg *g, struct rec *parent, struct rec *r)
{
	size_t nrec = 0, nchild = 0;

	(void)alloc_pool_unlink(rec_ext(parent)->pool, &r->node);
	rec_names_del(&rec_ext(parent)->kids, r);
	rec_count_tree(r, &nrec, &nchild);
	g->nrec -= nrec;
	g->nchild -= nchild;
}

/* The child called name of parent (NULL: none), or NULL. */
struct rec *
rec_find(const struct rec *parent, const char *name)
{
	if (parent == NULL || REC_LEVEL(parent) >= LVL_CHILD)
		return NULL;
	return rec_names_get(&rec_ext(parent)->kids, name);
}

