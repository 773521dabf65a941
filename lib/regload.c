/*
 * regload.c - reg_open: the registry built from the store's rows, each row
 * checked and placed under its parent (found by store_load's parent_seq),
 * what cannot be placed reported and kept for reg_check, and the trench
 * records the configuration asks for created.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounds.h"
#include "errbuf.h"
#include "now.h"
#include "regint.h"

struct regload_ctx {
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
regload_problem(struct regload_ctx *lc, const char *id, const char *kind,
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
regload_remember(struct regload_ctx *lc, long seq, struct rec *r)
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
regload_root(struct regload_ctx *lc, const struct store_row *row,
    const struct pfx *cidr)
{
	struct reg *g = lc->g;
	char want[2][BOUNDS_ID_MAX], have[PFX_STRLEN], conf[PFX_STRLEN];
	struct rec *r, **fv;
	int fi = reg_fam_index(cidr->family);

	snprintf(want[0], sizeof(want[0]), "%s-0", g->trench);
	snprintf(want[1], sizeof(want[1]), "%s-1", g->trench);
	if (strcmp(row->id, row->name) != 0) {
		regload_problem(lc, row->id, "bad-id",
		    "trench record id differs from its name \"%s\"",
		    row->name);
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
			errbuf_set(lc->err, lc->errlen,
			    "stored trench prefix %s "
			    "(record %s) differs from the configured %s "
			    "(IPAM_PREFIX_IPV%c); refusing to start, nothing "
			    "changed", have, row->id, conf, fi ? '6' : '4');
			rec_free_tree(g, r);
			lc->status = REG_EMISMATCH;
			return 1;
		}
		g->root[fi] = r;
	} else if (strcmp(row->id, want[1 - fi]) == 0) {
		regload_problem(lc, row->id, "bad-cidr",
		    "trench record of the wrong family (%s)", row->cidr);
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
	return regload_remember(lc, row->seq, r);
}

/* True if row->id is "<name>-<parent_id>" and short enough for rec_id. */
static bool
regload_id_ok(const struct store_row *row)
{
	size_t n = strlen(row->name);

	return strncmp(row->id, row->name, n) == 0 && row->id[n] == '-' &&
	    strcmp(row->id + n + 1, row->parent_id) == 0 &&
	    strlen(row->id) < BOUNDS_ID_MAX;
}

/* store_load callback: one row, parents before children. */
static int
regload_row(void *arg, const struct store_row *row)
{
	struct regload_ctx *lc = arg;
	struct pfx cidr, pc;
	struct rec *r, *up = NULL;
	char perr[128], id[BOUNDS_ID_MAX];
	int rc;

	if (pfx_parse(row->cidr, &cidr, perr, sizeof(perr)) != 0) {
		regload_problem(lc, row->id, "bad-cidr", "unparsable cidr: %s",
		    perr);
		return 0;
	}
	if (row->parent_id[0] == '\0') {
		rc = regload_root(lc, row, &cidr);
		goto done;
	}
	if (row->parent_seq >= 0 && (size_t)row->parent_seq < lc->nseq)
		up = lc->byseq[row->parent_seq];
	if (up == NULL) {
		regload_problem(lc, row->id, "orphan",
		    "orphan: parent %s not found, "
		    "not loaded, or an address record", row->parent_id);
		return 0;
	}
	pc = rec_cidr(up);
	if (cidr.family != pc.family || !pfx_contains(&pc, &cidr) ||
	    cidr.len <= pc.len) {
		regload_problem(lc, row->id, "outside",
		    "%s is not inside its parent %s", row->cidr,
		    row->parent_id);
		return 0;
	}
	if ((r = rec_new(lc->g, row->name, &cidr, REC_LEVEL(up) + 1)) == NULL)
		return -1;
	r->updated_at = row->updated_at;
	REC_EXPIRABLE(r) = row->expirable;
	/* The parent's id is row->parent_id (store_load matched it), so the
	 * id must be "<name>-<parent_id>": checked in place, which is much
	 * cheaper than building it with rec_id (snprintf per level). */
	if (!regload_id_ok(row)) {
		rec_id(r, up, id, sizeof(id));
		regload_problem(lc, row->id, "bad-id",
		    "id is not \"<name>-<parent id>\" (expected %s)", id);
		rec_free_tree(lc->g, r);
		return 0;
	}
	if ((rc = rec_attach(lc->g, up, r)) != ALLOC_OK) {
		regload_problem(lc, row->id, "overlap", rc == ALLOC_EOVERLAP ?
		    "%s overlaps a sibling (or a reserved address, or its "
		    "name is taken) under %s" : "%s cannot be placed under %s",
		    row->cidr, row->parent_id);
		rec_free_tree(lc->g, r);
		return 0;
	}
	/* Only records that can be parents are remembered: an address
	 * record never is one. */
	rc = REC_LEVEL(r) < LVL_CHILD ? regload_remember(lc, row->seq, r) : 0;
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
regload_roots(struct reg *g, int64_t now, char *err, size_t errlen)
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

/*
 * See registry.h. Builds the records of every row of the store, parents
 * first; a row that cannot be placed is reported (problem, and kept for
 * reg_check) and left on disk. Then creates the trench records that the
 * configuration asks for and the file lacks.
 */
int
reg_open(struct reg **out, struct store *st, const struct reg_params *p,
    reg_problem_fn problem, void *arg, char *err, size_t errlen)
{
	struct regload_ctx lc = { .problem = problem, .arg = arg,
	    .err = err, .errlen = errlen, .status = REG_OK };
	struct reg *g;
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
	rc = store_load(st, regload_row, &lc, err, errlen);
	free(lc.byseq);
	if (rc != 0)
		rc = lc.status != REG_OK ? lc.status :
		    rc == STORE_EROW ? REG_EDATA : REG_ESTORE;
	else
		rc = regload_roots(g, now_ns(CLOCK_REALTIME), err, errlen);
	if (rc != REG_OK) {
		reg_close(g);
		return rc;
	}
	*out = g;
	return REG_OK;
}
