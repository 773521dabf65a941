/*
 * regaudit.c - the operators' view of the registry: every record walked
 * parents first (reg_walk), and an audit of the index and of what garbage
 * collection would reap (reg_check).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bounds.h"
#include "gotext.h"
#include "regint.h"

/* How many child blocks r can hold: a node its addresses but two, a trench
 * or conduit the blocks of the configured length below it. */
static size_t
regaudit_usable(const struct reg *g, const struct rec *r)
{
	unsigned len, shift;
	int fi = reg_fam_index(r->node.an_family);

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

struct regaudit_walk_ctx {
	struct reg *g;				/* the registry */
	const char *conduit, *node;		/* filters, NULL = none */
	int (*fn)(void *, const struct reg_record *); /* the caller's */
	void *arg;				/* its argument */
	struct rec *parent;			/* parent of the pool walked */
};

static int regaudit_walk_rec(struct regaudit_walk_ctx *w, struct rec *r, struct
    rec *parent);

/* alloc_pool_walk callback: children in address order. */
static int
regaudit_walk_child(void *arg, const struct pfx *p, void *data)
{
	struct regaudit_walk_ctx *w = arg;
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
	return regaudit_walk_rec(w, k, w->parent);
}

/* Shows r, a child of parent (NULL: a trench record), then its children. */
static int
regaudit_walk_rec(struct regaudit_walk_ctx *w, struct rec *r, struct rec
    *parent)
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
	    .usable = regaudit_usable(w->g, r) };
	if ((rc = w->fn(w->arg, &rec)) != 0)
		return rc;
	if (REC_LEVEL(r) >= LVL_CHILD)
		return 0;
	saved = w->parent;
	w->parent = r;
	rc = alloc_pool_walk(rec_ext(r)->pool, regaudit_walk_child, w);
	w->parent = saved;
	return rc;
}

/* See registry.h. */
int
reg_walk(struct reg *g, const char *conduit, const char *node,
    int (*fn)(void *arg, const struct reg_record *rec), void *arg)
{
	struct regaudit_walk_ctx w = { g, conduit && *conduit ? conduit : NULL,
	    node && *node ? node : NULL, fn, arg, NULL };
	int fi, rc;

	for (fi = 0; fi < 2; fi++)
		if (g->root[fi] != NULL &&
		    (rc = regaudit_walk_rec(&w, g->root[fi], NULL)) != 0)
			return rc;
	return 0;
}

struct regaudit_check_ctx {
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
regaudit_report(struct regaudit_check_ctx *c, const struct rec *r,
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

static void regaudit_check_rec(struct regaudit_check_ctx *c, const struct rec
    *r, const struct rec *parent);

/* Siblings come in address order: each must start after the previous. */
static int
regaudit_check_child(void *arg, const struct pfx *p, void *data)
{
	struct regaudit_check_ctx *c = arg;
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
		regaudit_report(c, who, whose, "outside",
		    "%s is not inside its parent %s", a, b);
	}
	if (REC_LEVEL(k) != LVL_COOL && rec_find(parent, k->name) != k)
		regaudit_report(c, k, parent, "index", "missing from its "
		    "parent's name index");
	if (prev != NULL &&
	    (pv = rec_cidr(prev), pfx_first(p) <= pfx_last(&pv))) {
		pfx_format(p, a);
		pfx_format(&pv, b);
		regaudit_report(c, who, whose, "overlap",
		    "%s overlaps its sibling %s", a, b);
	}
	if (REC_LEVEL(k) != LVL_COOL) {
		regaudit_check_rec(c, k, parent);
		c->parent = parent;
	}
	c->prev = k;
	return 0;
}

/* Audits r, a child of parent (NULL: a trench record), and below it. */
static void
regaudit_check_rec(struct regaudit_check_ctx *c, const struct rec *r, const
    struct rec *parent)
{
	char t[GOTEXT_TIME_STRLEN];
	struct rec_ext *x;
	struct rec *k;
	struct pfx kp;
	uint32_t i;

	if (c->limit != 0 && REC_EXPIRABLE(r) && r->updated_at != 0 &&
	    r->updated_at < c->limit && strcmp(r->name, REG_BRIDGE_NAME) != 0) {
		gotext_format_time(r->updated_at, t);
		regaudit_report(c, r, parent, "stale",
		    "not refreshed since %s: "
		    "garbage collection would reap it", t);
	}
	if (REC_LEVEL(r) >= LVL_CHILD)
		return;
	x = rec_ext(r);
	for (i = 0; (k = rec_names_next(&x->kids, &i)) != NULL;) {
		kp = rec_cidr(k);
		if (alloc_pool_lookup(x->pool, &kp) != k)
			regaudit_report(c, k, r, "index", "missing from its "
			    "parent's address index");
	}
	c->parent = r;
	c->prev = NULL;
	(void)alloc_pool_walk(x->pool, regaudit_check_child, c);
}

/* See registry.h: the rows left out at load, then the tree. */
size_t
reg_check(struct reg *g, int64_t now, int64_t threshold_ns,
    void (*fn)(void *arg, const struct reg_problem *p), void *arg)
{
	struct regaudit_check_ctx c = { .g = g, .fn = fn, .arg = arg };
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
			regaudit_check_rec(&c, g->root[fi], NULL);
	return c.n;
}

