/*
 * registry.c - Meridio's IPAM tree in memory, written through to the store.
 *
 * The records and their memory are in rec.c, reg_open (loading from the
 * store) in regload.c, the operators' walk and audit (reg_walk,
 * reg_check) in regaudit.c; this file has Meridio's semantics (allocate,
 * release, conduits, garbage collection), the release cooldown and the
 * batches.
 *
 * Batches: every change made between reg_begin and reg_commit appends an
 * undo entry. A removed subtree is only detached (kept whole, out of its
 * parent) until the commit succeeds; then it is freed. On rollback the undo
 * log is replayed backwards, so memory returns to what the file holds.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounds.h"
#include "errbuf.h"
#include "regint.h"
#include "registry.h"

/* ---- changes, on disk and in memory ------------------------------------ */

static int
reg_undo_push(struct reg *g, enum undo_kind kind, struct rec *r,
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

/*
 * Creates record name under parent at the lowest free block of length len,
 * on disk and in memory, inside the open batch.
 */
static int
reg_create(struct reg *g, struct rec *parent, const char *name, unsigned len,
    bool expirable, int64_t now, struct rec **out, char *err, size_t errlen)
{
	struct pfx block, pp;
	struct rec *r;
	struct store_row row;
	char id[BOUNDS_ID_MAX], pid[BOUNDS_ID_MAX], cidr[PFX_STRLEN],
	    ptxt[PFX_STRLEN];
	int rc;

	rc = alloc_pool_find(rec_ext(parent)->pool, len, &block);
	if (rc == ALLOC_ENOSPACE || rc == ALLOC_EINVAL) {
		pp = rec_cidr(parent);
		pfx_format(&pp, ptxt);
		errbuf_set(err, errlen, "%s: no free /%u left in %s",
		    parent->name, len, ptxt);
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
	rec_id(r, parent, id, sizeof(id));
	rec_parent_id(parent, pid, sizeof(pid));
	pfx_format(&block, cidr);
	row = (struct store_row){ .id = id, .name = r->name, .cidr = cidr,
	    .parent_id = pid, .updated_at = now, .expirable = expirable };
	if (store_insert(g->st, &row, err, errlen) != 0) {
		rec_free_tree(g, r);
		return REG_ESTORE;
	}
	if (rec_attach(g, parent, r) != ALLOC_OK || reg_undo_push(g,
	    UNDO_INSERT, r, parent) != 0) {
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
reg_touch(struct reg *g, struct rec *parent, struct rec *r, int64_t now,
    char *err, size_t errlen)
{
	char id[BOUNDS_ID_MAX];

	rec_id(r, parent, id, sizeof(id));
	if (reg_undo_push(g, UNDO_TOUCH, r, parent) != 0) {
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
reg_store_delete(struct reg *g, struct rec *parent, struct rec *r, char *err,
    size_t errlen)
{
	struct rec *k;
	char id[BOUNDS_ID_MAX];
	uint32_t i;

	for (i = 0; REC_LEVEL(r) < LVL_CHILD &&
	    (k = rec_names_next(&rec_ext(r)->kids, &i)) != NULL;)
		if (reg_store_delete(g, r, k, err, errlen) != 0)
			return -1;
	rec_id(r, parent, id, sizeof(id));
	return store_delete(g->st, id, err, errlen);
}

/* Removes r, a child of parent, with its subtree, on disk now and in
 * memory at commit. */
static int
reg_remove(struct reg *g, struct rec *parent, struct rec *r, char *err,
    size_t errlen)
{
	if (reg_store_delete(g, parent, r, err, errlen) != 0)
		return REG_ESTORE;
	if (reg_undo_push(g, UNDO_DETACH, r, parent) != 0) {
		errbuf_set(err, errlen, "out of memory");
		return REG_ESTORE;
	}
	rec_detach(g, parent, r);
	return REG_OK;
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
	slab_free_all(&g->slabs);
	free(g->undo);
	free(g->trench);
	free(g);
}

/* ---- release cooldown --------------------------------------------------- */

/* Takes a cooling placeholder out of its node's pool (if the node lives). */
static void
reg_cool_unlink(struct reg_cool *e)
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
reg_cool_start(struct reg *g, struct rec *node, struct rec *k, int64_t now,
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
	if (reg_undo_push(g, UNDO_COOL, c, node) != 0) {
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
		reg_cool_unlink(e);
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
			reg_cool_unlink(&g->cool[g->cool_n]);
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
	fi = reg_fam_index(family);
	if (!g->p.fam[fi].enabled || g->root[fi] == NULL) {
		errbuf_set(err, errlen, "IPv%d is not served by this instance",
		    family);
		return REG_EFAMILY;
	}
	*root = g->root[fi];
	return REG_OK;
}

static int
reg_need_batch(struct reg *g, char *err, size_t errlen)
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

	if ((rc = reg_need_batch(g, err, errlen)) != REG_OK ||
	    (rc = reg_root(g, family, &root, err, errlen)) != REG_OK)
		return rc;
	if (name[0] == '\0' || node[0] == '\0' || conduit[0] == '\0') {
		errbuf_set(err, errlen, "empty conduit, node or child name");
		return REG_EINVAL;
	}
	fi = reg_fam_index(family);
	if ((c = rec_find(root, conduit)) == NULL) {
		errbuf_set(err, errlen, "conduit %s not found in trench %s",
		    conduit, g->trench);
		return REG_ENOCONDUIT;
	}
	if ((n = rec_find(c, node)) == NULL) {
		rc = reg_create(g, c, node, g->p.fam[fi].node_len, true, now,
		    &n, err, errlen);
		if (rc != REG_OK)
			return rc;
	} else if (now - n->updated_at >= g->p.node_refresh_ns) {
		if ((rc = reg_touch(g, c, n, now, err, errlen)) != REG_OK)
			return rc;
	}
	res->created = false;
	if ((k = rec_find(n, name)) != NULL) {
		/* a renewal refreshes updated_at - unless it was refreshed
		 * less than child_refresh_ns ago (IPAM_RENEWAL_REFRESH) */
		if ((g->p.child_refresh_ns <= 0 ||
		    now - k->updated_at >= g->p.child_refresh_ns) &&
		    (rc = reg_touch(g, n, k, now, err, errlen)) != REG_OK)
			return rc;
	} else {
		rc = reg_create(g, n, name, pfx_family_bits(family),
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

	if ((rc = reg_need_batch(g, err, errlen)) != REG_OK ||
	    (rc = reg_root(g, family, &root, err, errlen)) != REG_OK)
		return rc;
	n = rec_find(rec_find(root, conduit), node);
	if ((k = rec_find(n, name)) == NULL)
		return REG_OK;
	if ((rc = reg_remove(g, n, k, err, errlen)) != REG_OK)
		return rc;
	return reg_cool_start(g, n, k, now, err, errlen);
}

int
reg_add_conduit(struct reg *g, const char *conduit, int64_t now, char *err,
    size_t errlen)
{
	struct rec *c;
	int fi, rc;

	if ((rc = reg_need_batch(g, err, errlen)) != REG_OK)
		return rc;
	if (conduit[0] == '\0') {
		errbuf_set(err, errlen, "empty conduit name");
		return REG_EINVAL;
	}
	for (fi = 0; fi < 2; fi++) {
		if (!g->p.fam[fi].enabled || g->root[fi] == NULL ||
		    rec_find(g->root[fi], conduit) != NULL)
			continue;
		rc = reg_create(g, g->root[fi], conduit,
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

	if ((rc = reg_need_batch(g, err, errlen)) != REG_OK)
		return rc;
	for (fi = 0; fi < 2; fi++) {
		if ((c = rec_find(g->root[fi], conduit)) == NULL)
			continue;
		if ((rc = reg_remove(g, g->root[fi], c, err, errlen)) != REG_OK)
			return rc;
	}
	return REG_OK;
}

bool
reg_has_conduit(const struct reg *g, int family, const char *conduit)
{
	if (family != PFX_V4 && family != PFX_V6)
		return false;
	return rec_find(g->root[reg_fam_index(family)], conduit) != NULL;
}

/* Collects the GC victims below r (not descending into a victim). */
static int
reg_gc_walk(struct reg *g, struct rec *r, int64_t limit, int64_t threshold,
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
			if ((rc = reg_remove(g, r, k, err, errlen)) != REG_OK ||
			    (rc = reg_cool_start(g, r, k, limit + threshold,
			    err, errlen)) != REG_OK)
				return rc;
			*reaped += nrec;
			nrec = nchild = 0;
		} else if (REC_LEVEL(k) < LVL_CHILD &&
		    (rc = reg_gc_walk(g, k, limit, threshold, reaped, err,
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
	if ((rc = reg_need_batch(g, err, errlen)) != REG_OK)
		return rc;
	for (fi = 0; fi < 2; fi++) {
		if (g->root[fi] == NULL)
			continue;
		rc = reg_gc_walk(g, g->root[fi], now - threshold_ns,
		    threshold_ns, reaped, err, errlen);
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
