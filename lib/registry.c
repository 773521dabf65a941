/*
 * registry.c - Meridio's IPAM tree in memory, written through to the store.
 *
 * Every record is a struct rec. A parent keeps its children twice: in an
 * alloc_pool by address (to find free blocks) and in a hash table by name
 * (to find a child by name). Ids are not stored: "<name>-<parent id>" is
 * rebuilt when the store needs it.
 *
 * Memory per record (most records are addresses: 100k of them cost ~300
 * bytes of heap each before this layout, ~120 now): one block per record.
 * The record embeds its alloc_node, which is both its prefix and its link
 * in the parent's pool (the pool allocates nothing per child and keeps no
 * by-address hash), its name is stored inline, and what only a parent
 * needs (pool, children by name) sits in a struct rec_ext allocated in
 * front of the records that are parents. Leaf records come from slabs
 * (below). The name index is an open-addressing table of tagged pointers
 * (8 bytes a slot, at most 3/4 full) instead of a tree link (32 bytes) in
 * every child.
 *
 * Batches: every change made between reg_begin and reg_commit appends an
 * undo entry. A removed subtree is only detached (kept whole, out of its
 * parent) until the commit succeeds; then it is freed. On rollback the undo
 * log is replayed backwards, so memory returns to what the file holds.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bounds.h"
#include "errbuf.h"
#include "gotime.h"
#include "alloc.h"
#include "registry.h"

enum rec_level {
	LVL_TRENCH = 0,
	LVL_CONDUIT,
	LVL_NODE,
	LVL_CHILD,
	LVL_COOL,	/* a released address cooling down (not a record) */
};

/*
 * A record. It does not point at its parent: every path to an address
 * record comes from its parent, which is passed along (parents keep theirs
 * in their rec_ext), and 8 bytes are a tenth of an address record.
 */
struct rec {
	struct alloc_node node;		/* the record's prefix, and its link in
					 * the parent's pool (first member) */
	int64_t updated_at;		/* ns since the epoch; 0 = NULL */
	char name[];			/* record name, NUL-terminated */
};

/* The record's level (enum rec_level) and whether GC may reap it, kept in
 * the node's owner bytes: a struct rec then has no padding at all. */
#define REC_LEVEL(r) ((r)->node.an_user[0])
#define REC_EXPIRABLE(r) ((r)->node.an_user[1])

/*
 * Children by name: open addressing with linear probing, at most 3/4 full.
 * A slot is a record pointer whose low 3 bits (zero: records are 8-byte
 * aligned) hold 3 bits of the name's hash, so that most probes of other
 * names are rejected without reading their record.
 */
struct rec_names {
	uintptr_t *slot;		/* cap slots, 0 = empty */
	uint32_t cap;			/* slots; 0 before the first child */
	uint32_t used;			/* children */
};

/* What only a parent record (trench, conduit, node) has. It is allocated
 * in the same block, right before the struct rec. */
struct rec_ext {
	struct rec_names kids;		/* children by name */
	struct alloc_pool *pool;	/* children by address */
	struct rec *parent;		/* NULL for a trench record */
	uint32_t ncool;			/* cooling addresses in pool */
};

/* Room taken by a rec_ext in front of a parent record (keeps alignment). */
#define REC_EXT_SIZE ((sizeof(struct rec_ext) + _Alignof(struct rec) - 1) & \
    ~(_Alignof(struct rec) - 1))

/* Tag bits of a name table slot (records are 8-byte aligned). */
#define REC_TAG_MASK ((uintptr_t)7)

/* Smallest name table. */
#define REC_NAMES_MIN 8

_Static_assert(offsetof(struct rec, node) == 0,
    "a pool's node pointer is its record");
_Static_assert(_Alignof(struct rec) > REC_TAG_MASK,
    "name table tags need 8-byte aligned records");

/* The parent part of a trench, conduit or node record. */
static struct rec_ext *
rec_ext(const struct rec *r)
{
	return (struct rec_ext *)((char *)(uintptr_t)r - REC_EXT_SIZE);
}

/* The parent of a trench, conduit or node record (NULL for a trench). */
static struct rec *
rec_up(const struct rec *r)
{
	return rec_ext(r)->parent;
}

/* The record's prefix. */
static struct pfx
rec_cidr(const struct rec *r)
{
	return alloc_node_pfx(&r->node);
}

/*
 * Leaf records (addresses and cooling placeholders, most of the memory)
 * come from slabs: 16 KiB blocks cut into equal slots, one slab class per
 * 8-byte step of record size. A slot costs its size rounded up to 8 bytes,
 * where malloc adds an 8-byte header and rounds up to 16 (a bench record
 * of 102 bytes: 104 instead of 112). Freed slots go on their slab's free
 * list and are handed out again first; a slab left empty goes back to
 * malloc at once, so memory follows the live records, not their peak.
 */

/* Bytes of one slab: a 16 KiB malloc chunk with glibc's header. */
#define SLAB_BYTES (16384 - 16)

/* Size step between slab classes. */
#define SLAB_STEP 8

/* Smallest record (empty name) and largest one that a slab holds; larger
 * ones (names of more than ~420 bytes) are malloc'd. */
#define SLAB_MINREC ((offsetof(struct rec, name) + 1 + SLAB_STEP - 1) / \
    SLAB_STEP * SLAB_STEP)
#define SLAB_MAXREC 512

/* Number of slab classes. */
#define SLAB_NCLASS ((SLAB_MAXREC - SLAB_MINREC) / SLAB_STEP + 1)

/* One slab. */
struct slab {
	struct slab *next, *prev;	/* in its class's list of slabs with a
					 * free slot */
	void *free;			/* freed slots, linked through their
					 * first word */
	uint32_t live;			/* slots in use */
	uint32_t fresh;			/* slots from here on never used */
	uint32_t cls;			/* slab class */
	uint32_t nslots;		/* slots in mem */
	char mem[];			/* the slots */
};

/* The slabs of one registry. */
struct rec_slabs {
	struct slab *room[SLAB_NCLASS];	/* per class: slabs with a free slot */
	struct slab **all;		/* every slab, by address (to find a
					 * slot's slab when it is freed) */
	size_t n, cap;			/* entries of all, and its capacity */
};

enum undo_kind {
	UNDO_INSERT,	/* rec was attached: detach and free it */
	UNDO_DETACH,	/* rec was detached: attach it again */
	UNDO_TOUCH,	/* rec's timestamp changed: restore it */
	UNDO_COOL,	/* rec is the newest cooling entry: drop it */
};

struct undo {
	enum undo_kind kind;	/* what to undo */
	struct rec *rec;	/* the record concerned */
	struct rec *parent;	/* its parent (INSERT, DETACH) */
	int64_t updated_at;	/* UNDO_TOUCH: the old value */
	bool expirable;		/* UNDO_TOUCH: the old value */
};

struct reg {
	struct store *st;		/* the file (not owned) */
	struct reg_params p;		/* what we serve (trench name copied) */
	char *trench;			/* owned copy of p.trench */
	struct rec *root[2];		/* our trench record per family, or NULL */
	struct rec **foreign;		/* trench records of other trenches */
	size_t nforeign;		/* entries in foreign */
	struct undo *undo;		/* undo log of the open batch */
	size_t nundo, capundo;		/* its length and capacity */
	bool in_batch;			/* between reg_begin and commit/rollback */
	size_t nrec;			/* attached records */
	size_t nchild;			/* attached child (address) records */
	/* Cooling addresses, oldest first: entries [cool_head, cool_n) of
	 * cool. The cooldown is the same for all, so expiry follows order. */
	struct reg_cool *cool;		/* LVL_COOL placeholders */
	size_t cool_head, cool_n, cool_cap;
	struct reg_loadprob *probs;	/* rows left out at load */
	size_t nprobs;			/* entries in probs */
	struct rec_slabs slabs;		/* leaf records' memory */
	bool closing;			/* reg_close is freeing everything */
};

/* A cooling address: its placeholder record in a node's pool. */
struct reg_cool {
	struct rec *rec;		/* the LVL_COOL placeholder */
	struct rec *node;		/* its node; NULL once the node is
					 * freed (the entry is dead) */
};

/* A row left out at load, kept for reg_check. */
struct reg_loadprob {
	char *id;			/* the row's id */
	const char *kind;		/* static string */
	char *what;			/* the problem */
};

static int
fam_index(int family)
{
	return family == PFX_V6 ? 1 : 0;
}

/* Builds the id of r, a child of parent (NULL for a trench record):
 * "<name>-<parent id>", into buf. */
static void
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
static void
rec_parent_id(const struct rec *parent, char *buf, size_t len)
{
	if (parent == NULL)
		buf[0] = '\0';
	else
		rec_id(parent, rec_up(parent), buf, len);
}

/* ---- children by name ------------------------------------------------ */

/* 64-bit FNV-1a of a name, finished with a multiply-xorshift mix. */
static uint64_t
names_hash(const char *s)
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
names_home(uint64_t h, uint32_t cap)
{
	return (uint32_t)(((h >> 32) * (uint64_t)cap) >> 32);
}

/* The record of a non-empty slot. */
static struct rec *
names_rec(uintptr_t v)
{
	return (struct rec *)(v & ~REC_TAG_MASK);
}

/* The child called name, or NULL. */
static struct rec *
names_get(const struct rec_names *t, const char *name)
{
	uint64_t h;
	uint32_t i;
	uintptr_t tag;

	if (t->cap == 0)
		return NULL;
	h = names_hash(name);
	tag = (uintptr_t)h & REC_TAG_MASK;
	for (i = names_home(h, t->cap); t->slot[i] != 0;
	    i = i + 1 == t->cap ? 0 : i + 1)
		if ((t->slot[i] & REC_TAG_MASK) == tag &&
		    strcmp(names_rec(t->slot[i])->name, name) == 0)
			return names_rec(t->slot[i]);
	return NULL;
}

/* Puts r in the first empty slot of its probe sequence (room is known). */
static void
names_place(uintptr_t *slot, uint32_t cap, struct rec *r)
{
	uint64_t h = names_hash(r->name);
	uint32_t i;

	for (i = names_home(h, cap); slot[i] != 0; i = i + 1 == cap ? 0 : i + 1)
		;
	slot[i] = (uintptr_t)r | ((uintptr_t)h & REC_TAG_MASK);
}

/* Moves every child into a new table of cap slots. Unchanged on failure. */
static int
names_resize(struct rec_names *t, uint32_t cap)
{
	uintptr_t *slot;
	uint32_t i;

	if ((slot = calloc(cap, sizeof(*slot))) == NULL)
		return -1;
	for (i = 0; i < t->cap; i++)
		if (t->slot[i] != 0)
			names_place(slot, cap, names_rec(t->slot[i]));
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
names_room(struct rec_names *t)
{
	uint64_t cap;

	if (((uint64_t)t->used + 1) * 4 <= (uint64_t)t->cap * 3)
		return 0;
	cap = t->cap != 0 ? (uint64_t)t->cap + t->cap / 2 : REC_NAMES_MIN;
	if (cap > UINT32_MAX)
		return -1;
	return names_resize(t, (uint32_t)cap);
}

/* Adds r; names_room must have succeeded just before. */
static void
names_put(struct rec_names *t, struct rec *r)
{
	names_place(t->slot, t->cap, r);
	t->used++;
}

/*
 * Removes r. Linear probing without tombstones: every later entry of the
 * same cluster whose home slot does not lie cyclically in (hole, itself]
 * moves back into the hole. A table left under 1/4 full shrinks (when that
 * fails it simply stays large), so release churn keeps it bounded.
 */
static void
names_del(struct rec_names *t, const struct rec *r)
{
	uint32_t i, j, home, cap = t->cap;

	for (i = names_home(names_hash(r->name), cap);
	    names_rec(t->slot[i]) != r; i = i + 1 == cap ? 0 : i + 1)
		;
	for (j = i + 1 == cap ? 0 : i + 1; t->slot[j] != 0;
	    j = j + 1 == cap ? 0 : j + 1) {
		home = names_home(names_hash(names_rec(t->slot[j])->name), cap);
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
		(void)names_resize(t, t->used * 2 > REC_NAMES_MIN ?
		    t->used * 2 : REC_NAMES_MIN);
	}
}

/* The child after slot *i (advancing *i), in table order, or NULL. */
static struct rec *
names_next(const struct rec_names *t, uint32_t *i)
{
	for (; *i < t->cap; (*i)++)
		if (t->slot[*i] != 0)
			return names_rec(t->slot[(*i)++]);
	return NULL;
}

/* ---- leaf record slabs -------------------------------------------------- */

/* Slot size of a class. */
static size_t
slab_slot(unsigned cls)
{
	return SLAB_MINREC + (size_t)cls * SLAB_STEP;
}

/* The class of a record of size bytes, or -1 when malloc serves it. */
static int
slab_class(size_t size)
{
	if (size > SLAB_MAXREC)
		return -1;
	if (size < SLAB_MINREC)
		size = SLAB_MINREC;
	return (int)((size - SLAB_MINREC + SLAB_STEP - 1) / SLAB_STEP);
}

/* Puts s at the head of its class's list of slabs with room. */
static void
slab_room_add(struct rec_slabs *sl, struct slab *s)
{
	s->prev = NULL;
	s->next = sl->room[s->cls];
	if (s->next != NULL)
		s->next->prev = s;
	sl->room[s->cls] = s;
}

/* Takes s out of its class's list of slabs with room. */
static void
slab_room_del(struct rec_slabs *sl, struct slab *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		sl->room[s->cls] = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
}

/* How many slabs start at or below address p (binary search). */
static size_t
slab_upper(const struct rec_slabs *sl, const void *p)
{
	size_t lo = 0, hi = sl->n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if ((uintptr_t)sl->all[mid] <= (uintptr_t)p)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* A new empty slab of class cls, listed everywhere. NULL on no memory. */
static struct slab *
slab_new(struct rec_slabs *sl, unsigned cls)
{
	struct slab *s, **v;
	size_t i, cap;

	if (sl->n == sl->cap) {
		cap = sl->cap != 0 ? sl->cap * 2 : 16;
		if ((v = realloc(sl->all, cap * sizeof(*v))) == NULL)
			return NULL;
		sl->all = v;
		sl->cap = cap;
	}
	if ((s = malloc(SLAB_BYTES)) == NULL)
		return NULL;
	s->free = NULL;
	s->live = s->fresh = 0;
	s->cls = cls;
	s->nslots = (uint32_t)((SLAB_BYTES - offsetof(struct slab, mem)) /
	    slab_slot(cls));
	i = slab_upper(sl, s);
	memmove(&sl->all[i + 1], &sl->all[i], (sl->n - i) * sizeof(*sl->all));
	sl->all[i] = s;
	sl->n++;
	slab_room_add(sl, s);
	return s;
}

/* A slot of class cls, or NULL. */
static void *
slab_get(struct rec_slabs *sl, unsigned cls)
{
	struct slab *s = sl->room[cls];
	void *p;

	if (s == NULL && (s = slab_new(sl, cls)) == NULL)
		return NULL;
	if (s->free != NULL) {
		p = s->free;
		memcpy(&s->free, p, sizeof(s->free));
	} else {
		p = s->mem + (size_t)s->fresh++ * slab_slot(cls);
	}
	if (++s->live == s->nslots)
		slab_room_del(sl, s);
	return p;
}

/* Gives slot p back; an empty slab goes back to malloc. */
static void
slab_put(struct rec_slabs *sl, void *p)
{
	size_t i = slab_upper(sl, p);
	struct slab *s = sl->all[i - 1];

	if (s->live == s->nslots)
		slab_room_add(sl, s);
	memcpy(p, &s->free, sizeof(s->free));
	s->free = p;
	if (--s->live > 0)
		return;
	slab_room_del(sl, s);
	memmove(&sl->all[i - 1], &sl->all[i], (sl->n - i) * sizeof(*sl->all));
	sl->n--;
	free(s);
}

/* Frees every slab. */
static void
slab_free_all(struct rec_slabs *sl)
{
	size_t i;

	for (i = 0; i < sl->n; i++)
		free(sl->all[i]);
	free(sl->all);
	memset(sl, 0, sizeof(*sl));
}

/* ---- records ----------------------------------------------------------- */

/*
 * A new record, not linked anywhere: one allocation holding the rec_ext
 * (parents only), the record and its name; a slab slot for a leaf.
 */
static struct rec *
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
static void
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
	for (j = 0; (k = names_next(&x->kids, &j)) != NULL;)
		rec_free_tree(g, k);
	free(x->kids.slot);
	rec_mem_free(g, r);
}

/* Counts r's subtree: all records and leaf children. */
static void
rec_count_tree(struct rec *r, size_t *nrec, size_t *nchild)
{
	struct rec *k;
	uint32_t i;

	(*nrec)++;
	if (REC_LEVEL(r) == LVL_CHILD)
		(*nchild)++;
	if (REC_LEVEL(r) >= LVL_CHILD)
		return;
	for (i = 0; (k = names_next(&rec_ext(r)->kids, &i)) != NULL;)
		rec_count_tree(k, nrec, nchild);
}

/* Links r under parent (pool and name table). Returns an ALLOC_* code. */
static int
rec_attach(struct reg *g, struct rec *parent, struct rec *r)
{
	struct rec_ext *x = rec_ext(parent);
	size_t nrec = 0, nchild = 0;
	int rc;

	if (names_get(&x->kids, r->name) != NULL)
		return ALLOC_EOVERLAP;
	if (names_room(&x->kids) != 0)
		return ALLOC_ENOMEM;
	if ((rc = alloc_pool_link(x->pool, &r->node)) != ALLOC_OK)
		return rc;
	names_put(&x->kids, r);
	if (REC_LEVEL(r) < LVL_CHILD)
		rec_ext(r)->parent = parent;
	rec_count_tree(r, &nrec, &nchild);
	g->nrec += nrec;
	g->nchild += nchild;
	return ALLOC_OK;
}

/* Unlinks r from its parent; r keeps its subtree. */
static void
rec_detach(struct reg *g, struct rec *parent, struct rec *r)
{
	size_t nrec = 0, nchild = 0;

	(void)alloc_pool_unlink(rec_ext(parent)->pool, &r->node);
	names_del(&rec_ext(parent)->kids, r);
	rec_count_tree(r, &nrec, &nchild);
	g->nrec -= nrec;
	g->nchild -= nchild;
}

/* The child called name of parent (NULL: none), or NULL. */
static struct rec *
rec_find(const struct rec *parent, const char *name)
{
	if (parent == NULL || REC_LEVEL(parent) >= LVL_CHILD)
		return NULL;
	return names_get(&rec_ext(parent)->kids, name);
}

static int
undo_push(struct reg *g, enum undo_kind kind, struct rec *r,
    struct rec *parent)
{
	if (g->nundo == g->capundo) {
		size_t cap = g->capundo ? g->capundo * 2 : 64;
		struct undo *u = realloc(g->undo, cap * sizeof(*u));
		if (u == NULL)
			return -1;
		g->undo = u;
		g->capundo = cap;
	}
	g->undo[g->nundo++] = (struct undo){ kind, r, parent, r->updated_at,
	    REC_EXPIRABLE(r) };
	return 0;
}

static int
store_row_of(const struct rec *r, const struct rec *parent, char *id,
    char *pid, char *cidr, struct store_row *row)
{
	struct pfx p = rec_cidr(r);

	rec_id(r, parent, id, BOUNDS_ID_MAX);
	rec_parent_id(parent, pid, BOUNDS_ID_MAX);
	pfx_format(&p, cidr);
	*row = (struct store_row){ .id = id, .name = r->name, .cidr = cidr,
	    .parent_id = pid, .updated_at = r->updated_at,
	    .expirable = REC_EXPIRABLE(r) };
	return 0;
}

/*
 * Creates record name under parent at the lowest free block of length len,
 * on disk and in memory, inside the open batch.
 */
static int
rec_create(struct reg *g, struct rec *parent, const char *name, unsigned len,
    bool expirable, int64_t now, struct rec **out, char *err, size_t errlen)
{
	struct pfx block, pp;
	struct rec *r;
	struct store_row row;
	char id[BOUNDS_ID_MAX], pid[BOUNDS_ID_MAX], cidr[PFX_STRLEN], ptxt[PFX_STRLEN];
	int rc;

	rc = alloc_pool_find(rec_ext(parent)->pool, len, &block);
	if (rc == ALLOC_ENOSPACE || rc == ALLOC_EINVAL) {
		pp = rec_cidr(parent);
		pfx_format(&pp, ptxt);
		errbuf_set(err, errlen, "%s: no free /%u left in %s", parent->name,
		    len, ptxt);
		return REG_EXHAUSTED;
	}
	if (rc != ALLOC_OK) {
		errbuf_set(err, errlen, "allocator failed (%d)", rc);
		return REG_ENOMEM;
	}
	if ((r = rec_new(g, name, &block, REC_LEVEL(parent) + 1)) == NULL) {
		errbuf_set(err, errlen, "out of memory");
		return REG_ENOMEM;
	}
	r->updated_at = now;
	REC_EXPIRABLE(r) = expirable;
	store_row_of(r, parent, id, pid, cidr, &row);
	if (store_insert(g->st, &row, err, errlen) != 0) {
		rec_free_tree(g, r);
		return REG_ESTORE;
	}
	if (rec_attach(g, parent, r) != ALLOC_OK || undo_push(g, UNDO_INSERT,
	    r, parent) != 0) {
		/* The row is in the transaction: the caller must roll back. */
		errbuf_set(err, errlen, "out of memory");
		rec_free_tree(g, r);
		return REG_ESTORE;
	}
	*out = r;
	return REG_OK;
}

/* Refreshes r's updated_at (r a child of parent) on disk and in memory,
 * inside the batch. */
static int
rec_touch(struct reg *g, struct rec *parent, struct rec *r, int64_t now,
    char *err, size_t errlen)
{
	char id[BOUNDS_ID_MAX];

	rec_id(r, parent, id, sizeof(id));
	if (undo_push(g, UNDO_TOUCH, r, parent) != 0) {
		errbuf_set(err, errlen, "out of memory");
		return REG_ENOMEM;
	}
	if (store_touch(g->st, id, now, REC_EXPIRABLE(r), err, errlen) != 0)
		return REG_ESTORE;
	r->updated_at = now;
	return REG_OK;
}

/* Deletes the rows of r's subtree (r a child of parent), children before
 * parents. */
static int
rec_store_delete(struct reg *g, struct rec *parent, struct rec *r, char *err,
    size_t errlen)
{
	struct rec *k;
	char id[BOUNDS_ID_MAX];
	uint32_t i;

	for (i = 0; REC_LEVEL(r) < LVL_CHILD &&
	    (k = names_next(&rec_ext(r)->kids, &i)) != NULL;)
		if (rec_store_delete(g, r, k, err, errlen) != 0)
			return -1;
	rec_id(r, parent, id, sizeof(id));
	return store_delete(g->st, id, err, errlen);
}

/* Removes r, a child of parent, with its subtree, on disk now and in
 * memory at commit. */
static int
rec_remove(struct reg *g, struct rec *parent, struct rec *r, char *err,
    size_t errlen)
{
	if (rec_store_delete(g, parent, r, err, errlen) != 0)
		return REG_ESTORE;
	if (undo_push(g, UNDO_DETACH, r, parent) != 0) {
		errbuf_set(err, errlen, "out of memory");
		return REG_ESTORE;
	}
	rec_detach(g, parent, r);
	return REG_OK;
}

/* ---- loading ---------------------------------------------------------- */

struct load_ctx {
	struct reg *g;			/* registry being built */
	struct rec **byseq;		/* kept parent records by the seq of
					 * their row (store_row.seq), or NULL */
	size_t nseq;			/* entries of byseq */
	reg_problem_fn problem;		/* where problems go */
	void *arg;			/* its argument */
	char *err;			/* the caller's error buffer */
	size_t errlen;			/* its size */
	int status;			/* first fatal error, REG_OK if none */
};

/* Reports a row left out, and keeps it for reg_check. */
static void
load_problem(struct load_ctx *lc, const char *id, const char *kind,
    const char *fmt, ...)
{
	struct reg *g = lc->g;
	struct reg_loadprob *pv;
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (lc->problem != NULL)
		lc->problem(lc->arg, id, what);
	pv = realloc(g->probs, (g->nprobs + 1) * sizeof(*pv));
	if (pv == NULL)
		return;
	g->probs = pv;
	pv[g->nprobs].kind = kind;
	pv[g->nprobs].id = strdup(id);
	pv[g->nprobs].what = strdup(what);
	if (pv[g->nprobs].id == NULL || pv[g->nprobs].what == NULL) {
		free(pv[g->nprobs].id);
		free(pv[g->nprobs].what);
		return;
	}
	g->nprobs++;
}

/* Notes r as the record of row seq, for the rows below it. */
static int
load_remember(struct load_ctx *lc, long seq, struct rec *r)
{
	struct rec **v;
	size_t cap;

	if ((size_t)seq >= lc->nseq) {
		cap = lc->nseq ? lc->nseq * 2 : 1024;
		while (cap <= (size_t)seq)
			cap *= 2;
		if ((v = realloc(lc->byseq, cap * sizeof(*v))) == NULL)
			return -1;
		memset(v + lc->nseq, 0, (cap - lc->nseq) * sizeof(*v));
		lc->byseq = v;
		lc->nseq = cap;
	}
	lc->byseq[seq] = r;
	return 0;
}

/* Loads one trench record (parent_id ''). */
static int
load_root(struct load_ctx *lc, const struct store_row *row,
    const struct pfx *cidr)
{
	struct reg *g = lc->g;
	char want[2][BOUNDS_ID_MAX], have[PFX_STRLEN], conf[PFX_STRLEN];
	struct rec *r, **fv;
	int fi = fam_index(cidr->family);

	snprintf(want[0], sizeof(want[0]), "%s-0", g->trench);
	snprintf(want[1], sizeof(want[1]), "%s-1", g->trench);
	if (strcmp(row->id, row->name) != 0) {
		load_problem(lc, row->id, "bad-id", "trench record id differs from its "
		    "name \"%s\"", row->name);
		return 0;
	}
	if ((r = rec_new(g, row->name, cidr, LVL_TRENCH)) == NULL)
		return -1;
	r->updated_at = row->updated_at;
	REC_EXPIRABLE(r) = row->expirable;
	if (strcmp(row->id, want[fi]) == 0 && g->root[fi] == NULL) {
		if (g->p.fam[fi].enabled &&
		    !pfx_equal(cidr, &g->p.fam[fi].prefix)) {
			pfx_format(cidr, have);
			pfx_format(&g->p.fam[fi].prefix, conf);
			errbuf_set(lc->err, lc->errlen, "stored trench prefix %s "
			    "(record %s) differs from the configured %s "
			    "(IPAM_PREFIX_IPV%c); refusing to start, nothing "
			    "changed", have, row->id, conf, fi ? '6' : '4');
			rec_free_tree(g, r);
			lc->status = REG_EMISMATCH;
			return 1;
		}
		g->root[fi] = r;
	} else if (strcmp(row->id, want[1 - fi]) == 0) {
		load_problem(lc, row->id, "bad-cidr", "trench record of the wrong family "
		    "(%s)", row->cidr);
		rec_free_tree(g, r);
		return 0;
	} else {
		fv = realloc(g->foreign, (g->nforeign + 1) * sizeof(*fv));
		if (fv == NULL) {
			rec_free_tree(g, r);
			return -1;
		}
		g->foreign = fv;
		g->foreign[g->nforeign++] = r;
	}
	g->nrec++;
	return load_remember(lc, row->seq, r);
}

/* True if row->id is "<name>-<parent_id>" and short enough for rec_id. */
static bool
load_id_ok(const struct store_row *row)
{
	size_t n = strlen(row->name);

	return strncmp(row->id, row->name, n) == 0 && row->id[n] == '-' &&
	    strcmp(row->id + n + 1, row->parent_id) == 0 &&
	    strlen(row->id) < BOUNDS_ID_MAX;
}

/* store_load callback: one row, parents before children. */
static int
load_row(void *arg, const struct store_row *row)
{
	struct load_ctx *lc = arg;
	struct pfx cidr, pc;
	struct rec *r, *up = NULL;
	char perr[128], id[BOUNDS_ID_MAX];
	int rc;

	if (pfx_parse(row->cidr, &cidr, perr, sizeof(perr)) != 0) {
		load_problem(lc, row->id, "bad-cidr", "unparsable cidr: %s", perr);
		return 0;
	}
	if (row->parent_id[0] == '\0') {
		rc = load_root(lc, row, &cidr);
		goto done;
	}
	if (row->parent_seq >= 0 && (size_t)row->parent_seq < lc->nseq)
		up = lc->byseq[row->parent_seq];
	if (up == NULL) {
		load_problem(lc, row->id, "orphan", "orphan: parent %s not found, "
		    "not loaded, or an address record", row->parent_id);
		return 0;
	}
	pc = rec_cidr(up);
	if (cidr.family != pc.family || !pfx_contains(&pc, &cidr) ||
	    cidr.len <= pc.len) {
		load_problem(lc, row->id, "outside", "%s is not inside its parent %s",
		    row->cidr, row->parent_id);
		return 0;
	}
	if ((r = rec_new(lc->g, row->name, &cidr, REC_LEVEL(up) + 1)) == NULL)
		return -1;
	r->updated_at = row->updated_at;
	REC_EXPIRABLE(r) = row->expirable;
	/* The parent's id is row->parent_id (the map's key), so the id must
	 * be "<name>-<parent_id>": checked in place, since building it with
	 * rec_id (snprintf per level) was 10% of loading (perf). */
	if (!load_id_ok(row)) {
		rec_id(r, up, id, sizeof(id));
		load_problem(lc, row->id, "bad-id", "id is not \"<name>-<parent id>\" "
		    "(expected %s)", id);
		rec_free_tree(lc->g, r);
		return 0;
	}
	if ((rc = rec_attach(lc->g, up, r)) != ALLOC_OK) {
		load_problem(lc, row->id, "overlap", rc == ALLOC_EOVERLAP ?
		    "%s overlaps a sibling (or a reserved address, or its "
		    "name is taken) under %s" : "%s cannot be placed under %s",
		    row->cidr, row->parent_id);
		rec_free_tree(lc->g, r);
		return 0;
	}
	/* Only records that can be parents are remembered: an address
	 * record never is one. */
	rc = REC_LEVEL(r) < LVL_CHILD ? load_remember(lc, row->seq, r) : 0;
done:
	if (rc < 0) {
		errbuf_set(lc->err, lc->errlen, "out of memory while loading");
		lc->status = REG_ENOMEM;
		return 1;
	}
	return rc;
}

/* Creates the trench record of each served family that has none. */
static int
reg_create_roots(struct reg *g, int64_t now, char *err, size_t errlen)
{
	char id[BOUNDS_ID_MAX], cidr[PFX_STRLEN];
	struct store_row row;
	bool need = false;
	int fi;

	for (fi = 0; fi < 2; fi++)
		need |= g->p.fam[fi].enabled && g->root[fi] == NULL;
	if (!need)
		return REG_OK;
	if (store_begin(g->st, err, errlen) != 0)
		return REG_ESTORE;
	for (fi = 0; fi < 2; fi++) {
		if (!g->p.fam[fi].enabled || g->root[fi] != NULL)
			continue;
		snprintf(id, sizeof(id), "%s-%d", g->trench, fi);
		pfx_format(&g->p.fam[fi].prefix, cidr);
		row = (struct store_row){ .id = id, .name = id, .cidr = cidr,
		    .parent_id = "", .updated_at = now, .expirable = false };
		if (store_insert(g->st, &row, err, errlen) != 0)
			goto fail;
	}
	if (store_commit(g->st, err, errlen) != 0)
		return REG_ESTORE;
	for (fi = 0; fi < 2; fi++) {
		if (!g->p.fam[fi].enabled || g->root[fi] != NULL)
			continue;
		snprintf(id, sizeof(id), "%s-%d", g->trench, fi);
		g->root[fi] = rec_new(g, id, &g->p.fam[fi].prefix, LVL_TRENCH);
		if (g->root[fi] == NULL) {
			errbuf_set(err, errlen, "out of memory");
			return REG_ENOMEM;
		}
		g->root[fi]->updated_at = now;
		g->nrec++;
	}
	return REG_OK;
fail:
	store_rollback(g->st);
	return REG_ESTORE;
}

int
reg_open(struct reg **out, struct store *st, const struct reg_params *p,
    reg_problem_fn problem, void *arg, char *err, size_t errlen)
{
	struct load_ctx lc = { .problem = problem, .arg = arg, .err = err,
	    .errlen = errlen, .status = REG_OK };
	struct reg *g;
	struct timespec ts;
	int rc;

	*out = NULL;
	if (p->trench == NULL || p->trench[0] == '\0') {
		errbuf_set(err, errlen, "empty trench name");
		return REG_EINVAL;
	}
	if ((g = calloc(1, sizeof(*g))) == NULL ||
	    (g->trench = strdup(p->trench)) == NULL) {
		free(g);
		errbuf_set(err, errlen, "out of memory");
		return REG_ENOMEM;
	}
	g->st = st;
	g->p = *p;
	g->p.trench = g->trench;
	lc.g = g;
	rc = store_load(st, load_row, &lc, err, errlen);
	free(lc.byseq);
	if (rc != 0) {
		rc = lc.status != REG_OK ? lc.status :
		    rc == STORE_EROW ? REG_EDATA : REG_ESTORE;
		goto fail;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	rc = reg_create_roots(g, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec,
	    err, errlen);
	if (rc != REG_OK)
		goto fail;
	*out = g;
	return REG_OK;
fail:
	reg_close(g);
	return rc;
}

void
reg_close(struct reg *g)
{
	size_t i;

	if (g == NULL)
		return;
	if (g->in_batch)
		reg_rollback(g);
	for (i = 0; i < g->nprobs; i++) {
		free(g->probs[i].id);
		free(g->probs[i].what);
	}
	free(g->probs);
	/* The trees go first: their pools read the links of the cooling
	 * entries, which die with the pools and need no unlinking. */
	g->closing = true;
	rec_free_tree(g, g->root[0]);
	rec_free_tree(g, g->root[1]);
	for (i = 0; i < g->nforeign; i++)
		rec_free_tree(g, g->foreign[i]);
	free(g->foreign);
	for (i = g->cool_head; i < g->cool_n; i++)
		rec_free_tree(g, g->cool[i].rec);
	free(g->cool);
	g->cool = NULL;
	g->cool_head = g->cool_n = 0;
	slab_free_all(&g->slabs);
	free(g->undo);
	free(g->trench);
	free(g);
}

/* ---- release cooldown --------------------------------------------------- */

/* Takes a cooling placeholder out of its node's pool (if the node lives). */
static void
cool_unlink(struct reg_cool *e)
{
	if (e->node == NULL)
		return;
	(void)alloc_pool_unlink(rec_ext(e->node)->pool, &e->rec->node);
	rec_ext(e->node)->ncool--;
	e->node = NULL;
}

/*
 * Keeps the address of child k (just removed) out of use until now plus
 * the cooldown: a placeholder takes its place in the node's pool.
 */
static int
cool_start(struct reg *g, struct rec *node, struct rec *k, int64_t now,
    char *err, size_t errlen)
{
	struct reg_cool *v;
	struct rec *c;
	struct pfx zero = rec_cidr(k);

	if (g->p.release_cooldown_ns <= 0 || REC_LEVEL(k) != LVL_CHILD)
		return REG_OK;
	if (g->cool_n == g->cool_cap) {
		if (g->cool_head > 0) {
			memmove(g->cool, g->cool + g->cool_head,
			    (g->cool_n - g->cool_head) * sizeof(*g->cool));
			g->cool_n -= g->cool_head;
			g->cool_head = 0;
		}
		if (g->cool_n == g->cool_cap) {
			size_t cap = g->cool_cap ? g->cool_cap * 2 : 64;
			if ((v = realloc(g->cool, cap * sizeof(*v))) == NULL)
				goto nomem;
			g->cool = v;
			g->cool_cap = cap;
		}
	}
	if ((c = rec_new(g, "", &zero, LVL_COOL)) == NULL)
		goto nomem;
	c->updated_at = now + g->p.release_cooldown_ns;
	if (alloc_pool_link(rec_ext(node)->pool, &c->node) != ALLOC_OK) {
		rec_free_tree(g, c);
		goto nomem;
	}
	rec_ext(node)->ncool++;
	g->cool[g->cool_n++] = (struct reg_cool){ c, node };
	if (undo_push(g, UNDO_COOL, c, node) != 0) {
		/* Unreachable in practice (the log grew for the detach);
		 * keep the entry: it expires like the others. */
		goto nomem;
	}
	return REG_OK;
nomem:
	errbuf_set(err, errlen, "out of memory");
	return REG_ESTORE;
}

size_t
reg_expire_cooldowns(struct reg *g, int64_t now)
{
	size_t n = 0;

	if (g->in_batch)
		return 0;
	while (g->cool_head < g->cool_n &&
	    g->cool[g->cool_head].rec->updated_at <= now) {
		struct reg_cool *e = &g->cool[g->cool_head++];
		cool_unlink(e);
		rec_free_tree(g, e->rec);
		n++;
	}
	if (g->cool_head == g->cool_n)
		g->cool_head = g->cool_n = 0;
	return n;
}

size_t
reg_count_cooling(const struct reg *g)
{
	return g->cool_n - g->cool_head;
}

/* ---- batches ---------------------------------------------------------- */

int
reg_begin(struct reg *g, char *err, size_t errlen)
{
	if (g->in_batch) {
		errbuf_set(err, errlen, "batch already open");
		return REG_EINVAL;
	}
	if (store_begin(g->st, err, errlen) != 0)
		return REG_ESTORE;
	g->in_batch = true;
	g->nundo = 0;
	return REG_OK;
}

/* Replays the undo log backwards: memory returns to the last commit. */
static void
reg_undo(struct reg *g)
{
	while (g->nundo > 0) {
		struct undo *u = &g->undo[--g->nundo];

		switch (u->kind) {
		case UNDO_INSERT:
			rec_detach(g, u->parent, u->rec);
			rec_free_tree(g, u->rec);
			break;
		case UNDO_DETACH:
			/* Its old place is free again: undo is LIFO. */
			(void)rec_attach(g, u->parent, u->rec);
			break;
		case UNDO_TOUCH:
			u->rec->updated_at = u->updated_at;
			REC_EXPIRABLE(u->rec) = u->expirable;
			break;
		case UNDO_COOL:
			/* Pushed in this batch: it is the newest entry. */
			g->cool_n--;
			cool_unlink(&g->cool[g->cool_n]);
			rec_free_tree(g, u->rec);
			break;
		}
	}
}

int
reg_commit(struct reg *g, char *err, size_t errlen)
{
	size_t i;

	if (!g->in_batch) {
		errbuf_set(err, errlen, "no open batch");
		return REG_EINVAL;
	}
	g->in_batch = false;
	if (store_commit(g->st, err, errlen) != 0) {
		reg_undo(g);
		return REG_ESTORE;
	}
	for (i = 0; i < g->nundo; i++)
		if (g->undo[i].kind == UNDO_DETACH)
			rec_free_tree(g, g->undo[i].rec);
	g->nundo = 0;
	return REG_OK;
}

void
reg_rollback(struct reg *g)
{
	if (!g->in_batch)
		return;
	g->in_batch = false;
	store_rollback(g->st);
	reg_undo(g);
}

/* ---- operations ------------------------------------------------------- */

/* The trench record of family, or an error. */
static int
reg_root(struct reg *g, int family, struct rec **root, char *err,
    size_t errlen)
{
	int fi;

	if (family != PFX_V4 && family != PFX_V6) {
		errbuf_set(err, errlen, "unknown IP family %d", family);
		return REG_EINVAL;
	}
	fi = fam_index(family);
	if (!g->p.fam[fi].enabled || g->root[fi] == NULL) {
		errbuf_set(err, errlen, "IPv%d is not served by this instance",
		    family);
		return REG_EFAMILY;
	}
	*root = g->root[fi];
	return REG_OK;
}

static int
need_batch(struct reg *g, char *err, size_t errlen)
{
	if (g->in_batch)
		return REG_OK;
	errbuf_set(err, errlen, "no open batch");
	return REG_EINVAL;
}

int
reg_allocate(struct reg *g, int family, const char *conduit, const char *node,
    const char *name, int64_t now, struct reg_result *res, char *err,
    size_t errlen)
{
	struct rec *root, *c, *n, *k;
	int fi, rc;

	if ((rc = need_batch(g, err, errlen)) != REG_OK ||
	    (rc = reg_root(g, family, &root, err, errlen)) != REG_OK)
		return rc;
	if (name[0] == '\0' || node[0] == '\0' || conduit[0] == '\0') {
		errbuf_set(err, errlen, "empty conduit, node or child name");
		return REG_EINVAL;
	}
	fi = fam_index(family);
	if ((c = rec_find(root, conduit)) == NULL) {
		errbuf_set(err, errlen, "conduit %s not found in trench %s",
		    conduit, g->trench);
		return REG_ENOCONDUIT;
	}
	if ((n = rec_find(c, node)) == NULL) {
		rc = rec_create(g, c, node, g->p.fam[fi].node_len, true, now,
		    &n, err, errlen);
		if (rc != REG_OK)
			return rc;
	} else if (now - n->updated_at >= g->p.node_refresh_ns) {
		if ((rc = rec_touch(g, c, n, now, err, errlen)) != REG_OK)
			return rc;
	}
	res->created = false;
	if ((k = rec_find(n, name)) != NULL) {
		/* a renewal refreshes updated_at - unless it was refreshed
		 * less than child_refresh_ns ago (IPAM_RENEWAL_REFRESH) */
		if ((g->p.child_refresh_ns <= 0 ||
		    now - k->updated_at >= g->p.child_refresh_ns) &&
		    (rc = rec_touch(g, n, k, now, err, errlen)) != REG_OK)
			return rc;
	} else {
		rc = rec_create(g, n, name, pfx_family_bits(family),
		    strcmp(name, REG_BRIDGE_NAME) != 0, now, &k, err, errlen);
		if (rc != REG_OK)
			return rc;
		res->created = true;
	}
	pfx_format_addr(family, k->node.an_addr, res->address);
	res->prefix_len = n->node.an_len;
	return REG_OK;
}

int
reg_release(struct reg *g, int family, const char *conduit, const char *node,
    const char *name, int64_t now, char *err, size_t errlen)
{
	struct rec *root, *n, *k;
	int rc;

	if ((rc = need_batch(g, err, errlen)) != REG_OK ||
	    (rc = reg_root(g, family, &root, err, errlen)) != REG_OK)
		return rc;
	n = rec_find(rec_find(root, conduit), node);
	if ((k = rec_find(n, name)) == NULL)
		return REG_OK;
	if ((rc = rec_remove(g, n, k, err, errlen)) != REG_OK)
		return rc;
	return cool_start(g, n, k, now, err, errlen);
}

int
reg_add_conduit(struct reg *g, const char *conduit, int64_t now, char *err,
    size_t errlen)
{
	struct rec *c;
	int fi, rc;

	if ((rc = need_batch(g, err, errlen)) != REG_OK)
		return rc;
	if (conduit[0] == '\0') {
		errbuf_set(err, errlen, "empty conduit name");
		return REG_EINVAL;
	}
	for (fi = 0; fi < 2; fi++) {
		if (!g->p.fam[fi].enabled || g->root[fi] == NULL ||
		    rec_find(g->root[fi], conduit) != NULL)
			continue;
		rc = rec_create(g, g->root[fi], conduit,
		    g->p.fam[fi].conduit_len, false, now, &c, err, errlen);
		if (rc != REG_OK)
			return rc;
	}
	return REG_OK;
}

int
reg_remove_conduit(struct reg *g, const char *conduit, char *err,
    size_t errlen)
{
	struct rec *c;
	int fi, rc;

	if ((rc = need_batch(g, err, errlen)) != REG_OK)
		return rc;
	for (fi = 0; fi < 2; fi++) {
		if ((c = rec_find(g->root[fi], conduit)) == NULL)
			continue;
		if ((rc = rec_remove(g, g->root[fi], c, err, errlen)) != REG_OK)
			return rc;
	}
	return REG_OK;
}

bool
reg_has_conduit(const struct reg *g, int family, const char *conduit)
{
	if (family != PFX_V4 && family != PFX_V6)
		return false;
	return rec_find(g->root[fam_index(family)], conduit) != NULL;
}

/* Collects the GC victims below r (not descending into a victim). */
static int
gc_walk(struct reg *g, struct rec *r, int64_t limit, int64_t threshold,
    size_t *reaped, char *err, size_t errlen)
{
	struct alloc_pool *pool = rec_ext(r)->pool;
	struct alloc_node *n, *next;
	size_t nrec = 0, nchild = 0;
	struct rec *k;
	int rc;

	/* In address order through the pool: a victim leaves the name table
	 * (which may shrink) but the pool only gains its placeholder, right
	 * where the victim was, before next. */
	for (n = alloc_pool_first(pool); n != NULL; n = next) {
		next = alloc_pool_next(pool, n);
		k = (struct rec *)n;
		if (REC_LEVEL(k) == LVL_COOL)
			continue;
		if (REC_EXPIRABLE(k) && k->updated_at != 0 &&
		    k->updated_at < limit &&
		    strcmp(k->name, REG_BRIDGE_NAME) != 0) {
			rec_count_tree(k, &nrec, &nchild);
			if ((rc = rec_remove(g, r, k, err, errlen)) != REG_OK ||
			    (rc = cool_start(g, r, k, limit + threshold, err,
			    errlen)) != REG_OK)
				return rc;
			*reaped += nrec;
			nrec = nchild = 0;
		} else if (REC_LEVEL(k) < LVL_CHILD &&
		    (rc = gc_walk(g, k, limit, threshold, reaped, err,
		    errlen)) != REG_OK) {
			return rc;
		}
	}
	return REG_OK;
}

int
reg_gc(struct reg *g, int64_t now, int64_t threshold_ns, size_t *reaped,
    char *err, size_t errlen)
{
	int fi, rc;

	*reaped = 0;
	if ((rc = need_batch(g, err, errlen)) != REG_OK)
		return rc;
	for (fi = 0; fi < 2; fi++) {
		if (g->root[fi] == NULL)
			continue;
		rc = gc_walk(g, g->root[fi], now - threshold_ns, threshold_ns,
		    reaped, err, errlen);
		if (rc != REG_OK)
			return rc;
	}
	return REG_OK;
}

size_t
reg_count(const struct reg *g)
{
	return g->nrec;
}

size_t
reg_count_children(const struct reg *g)
{
	return g->nchild;
}

/* ---- operators' view ---------------------------------------------------- */

/* How many child blocks r can hold: a node its addresses but two, a trench
 * or conduit the blocks of the configured length below it. */
static size_t
rec_usable(const struct reg *g, const struct rec *r)
{
	unsigned len, shift;
	int fi = fam_index(r->node.an_family);

	if (REC_LEVEL(r) == LVL_NODE)
		return alloc_pool_usable(rec_ext(r)->pool);
	if (REC_LEVEL(r) == LVL_TRENCH)
		len = g->p.fam[fi].conduit_len;
	else if (REC_LEVEL(r) == LVL_CONDUIT)
		len = g->p.fam[fi].node_len;
	else
		return 0;
	if (len <= r->node.an_len)
		return 0;
	shift = len - r->node.an_len;
	return shift >= sizeof(size_t) * 8 ? SIZE_MAX : (size_t)1 << shift;
}

struct walk_ctx {
	struct reg *g;				/* the registry */
	const char *conduit, *node;		/* filters, NULL = none */
	int (*fn)(void *, const struct reg_record *); /* the caller's */
	void *arg;				/* its argument */
	struct rec *parent;			/* parent of the pool walked */
};

static int walk_rec(struct walk_ctx *w, struct rec *r, struct rec *parent);

/* alloc_pool_walk callback: children in address order. */
static int
walk_child(void *arg, const struct pfx *p, void *data)
{
	struct walk_ctx *w = arg;
	struct rec *k = data;

	(void)p;
	if (k == NULL || REC_LEVEL(k) == LVL_COOL)
		return 0;
	if (REC_LEVEL(k) == LVL_CONDUIT && w->conduit != NULL &&
	    strcmp(k->name, w->conduit) != 0)
		return 0;
	if (REC_LEVEL(k) == LVL_NODE && w->node != NULL &&
	    strcmp(k->name, w->node) != 0)
		return 0;
	return walk_rec(w, k, w->parent);
}

/* Shows r, a child of parent (NULL: a trench record), then its children. */
static int
walk_rec(struct walk_ctx *w, struct rec *r, struct rec *parent)
{
	char id[BOUNDS_ID_MAX], pid[BOUNDS_ID_MAX];
	struct reg_record rec;
	struct rec *saved;
	size_t n = 0;
	int rc;

	rec_id(r, parent, id, sizeof(id));
	rec_parent_id(parent, pid, sizeof(pid));
	if (REC_LEVEL(r) < LVL_CHILD)
		n = rec_ext(r)->kids.used;
	rec = (struct reg_record){ .id = id, .name = r->name, .parent_id = pid,
	    .cidr = rec_cidr(r), .updated_at = r->updated_at,
	    .expirable = REC_EXPIRABLE(r), .level = REC_LEVEL(r), .children = n,
	    .usable = rec_usable(w->g, r) };
	if ((rc = w->fn(w->arg, &rec)) != 0)
		return rc;
	if (REC_LEVEL(r) >= LVL_CHILD)
		return 0;
	saved = w->parent;
	w->parent = r;
	rc = alloc_pool_walk(rec_ext(r)->pool, walk_child, w);
	w->parent = saved;
	return rc;
}

int
reg_walk(struct reg *g, const char *conduit, const char *node,
    int (*fn)(void *arg, const struct reg_record *rec), void *arg)
{
	struct walk_ctx w = { g, conduit && *conduit ? conduit : NULL,
	    node && *node ? node : NULL, fn, arg, NULL };
	int fi, rc;

	for (fi = 0; fi < 2; fi++)
		if (g->root[fi] != NULL &&
		    (rc = walk_rec(&w, g->root[fi], NULL)) != 0)
			return rc;
	return 0;
}

struct check_ctx {
	struct reg *g;				/* the registry */
	int64_t limit;				/* stale before this; 0 = off */
	void (*fn)(void *, const struct reg_problem *); /* the caller's */
	void *arg;				/* its argument */
	size_t n;				/* problems found */
	const struct rec *prev;			/* previous sibling in order */
	const struct rec *parent;		/* parent of the walk */
};

/* Reports a problem of r, a child of parent (NULL: a trench record). */
static void
check_report(struct check_ctx *c, const struct rec *r,
    const struct rec *parent, const char *kind, const char *fmt, ...)
{
	char id[BOUNDS_ID_MAX], what[512];
	struct reg_problem p = { id, kind, what };
	va_list ap;

	rec_id(r, parent, id, sizeof(id));
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	c->n++;
	if (c->fn != NULL)
		c->fn(c->arg, &p);
}

static void check_rec(struct check_ctx *c, const struct rec *r,
    const struct rec *parent);

/* Siblings come in address order: each must start after the previous. */
static int
check_child(void *arg, const struct pfx *p, void *data)
{
	struct check_ctx *c = arg;
	const struct rec *k = data, *parent = c->parent, *prev = c->prev;
	const struct rec *who = k, *whose = parent;
	char a[PFX_STRLEN], b[PFX_STRLEN];
	struct pfx pp, pv;

	if (k == NULL)
		return 0;
	if (REC_LEVEL(k) == LVL_COOL) {		/* reported as its node */
		who = parent;
		whose = rec_up(parent);
	}
	pp = rec_cidr(parent);
	if (!pfx_contains(&pp, p) ||
	    (REC_LEVEL(k) < LVL_CHILD && rec_up(k) != parent)) {
		pfx_format(p, a);
		pfx_format(&pp, b);
		check_report(c, who, whose, "outside",
		    "%s is not inside its parent %s", a, b);
	}
	if (REC_LEVEL(k) != LVL_COOL && rec_find(parent, k->name) != k)
		check_report(c, k, parent, "index", "missing from its "
		    "parent's name index");
	if (prev != NULL &&
	    (pv = rec_cidr(prev), pfx_first(p) <= pfx_last(&pv))) {
		pfx_format(p, a);
		pfx_format(&pv, b);
		check_report(c, who, whose, "overlap",
		    "%s overlaps its sibling %s", a, b);
	}
	c->prev = k;
	if (REC_LEVEL(k) != LVL_COOL) {
		check_rec(c, k, parent);
		c->parent = parent;
	}
	c->prev = k;
	return 0;
}

/* Audits r, a child of parent (NULL: a trench record), and below it. */
static void
check_rec(struct check_ctx *c, const struct rec *r, const struct rec *parent)
{
	char t[GOTIME_STRLEN];
	struct rec_ext *x;
	struct rec *k;
	struct pfx kp;
	uint32_t i;

	if (c->limit != 0 && REC_EXPIRABLE(r) && r->updated_at != 0 &&
	    r->updated_at < c->limit && strcmp(r->name, REG_BRIDGE_NAME) != 0) {
		gotime_format(r->updated_at, t);
		check_report(c, r, parent, "stale", "not refreshed since %s: "
		    "garbage collection would reap it", t);
	}
	if (REC_LEVEL(r) >= LVL_CHILD)
		return;
	x = rec_ext(r);
	for (i = 0; (k = names_next(&x->kids, &i)) != NULL;) {
		kp = rec_cidr(k);
		if (alloc_pool_lookup(x->pool, &kp) != k)
			check_report(c, k, r, "index", "missing from its "
			    "parent's address index");
	}
	c->parent = r;
	c->prev = NULL;
	(void)alloc_pool_walk(x->pool, check_child, c);
}

size_t
reg_check(struct reg *g, int64_t now, int64_t threshold_ns,
    void (*fn)(void *arg, const struct reg_problem *p), void *arg)
{
	struct check_ctx c = { .g = g, .fn = fn, .arg = arg };
	size_t i;
	int fi;

	for (i = 0; i < g->nprobs; i++) {
		struct reg_problem p = { g->probs[i].id, g->probs[i].kind,
		    g->probs[i].what };
		c.n++;
		if (fn != NULL)
			fn(arg, &p);
	}
	c.limit = threshold_ns > 0 ? now - threshold_ns : 0;
	for (fi = 0; fi < 2; fi++)
		if (g->root[fi] != NULL)
			check_rec(&c, g->root[fi], NULL);
	return c.n;
}

grpc_status_code
reg_grpc_status(int rc)
{
	switch (rc) {
	case REG_OK:
		return GRPC_STATUS_OK;
	case REG_EINVAL:
		return GRPC_STATUS_INVALID_ARGUMENT;
	case REG_EFAMILY:
		return GRPC_STATUS_FAILED_PRECONDITION;
	case REG_ETRENCH:
	case REG_ENOCONDUIT:
		return GRPC_STATUS_NOT_FOUND;
	case REG_EXHAUSTED:
		return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case REG_ESTORE:
		return GRPC_STATUS_UNAVAILABLE;
	default:
		return GRPC_STATUS_INTERNAL;
	}
}
