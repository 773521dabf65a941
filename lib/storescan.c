/*
 * storescan.c - the load scan: every row of `prefixes` read once into an
 * arena, an id index over them, and the tree order (parents first;
 * orphans, cycles and rows too deep last) in which store_load hands them
 * out. The one place that resolves a row's parent_id.
 */
#include "errbuf.h"
#include "gotext.h"
#include "storeint.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* Deepest row delivered in place: deeper ones come last, as orphans. */
#define STORESCAN_MAX_DEPTH 64

/* A row of the load scan; its text lives in the scan's arena. */
struct storescan_row {
	size_t id, name, cidr, parent;	/* arena offsets of the columns */
	size_t idlen, parentlen;	/* bytes of id and parent_id */
	size_t bad;			/* arena offset of updated_at's text
					 * when it is not a time, else 0 */
	int64_t updated_at;		/* parsed updated_at */
	uint32_t up;			/* parent's row index + 1, 0 = none */
	uint32_t seq;			/* place in the walk */
	int16_t depth;			/* see STORESCAN_DEPTH_* */
	uint8_t idtype, parenttype;	/* sqlite type of id and parent_id */
	bool expirable;			/* the expirable column */
};

/* Depths below 0 while ordering: not yet known, or no root within
 * STORESCAN_MAX_DEPTH levels (orphans, deep rows and cycles: delivered
 * last). */
#define STORESCAN_DEPTH_UNKNOWN (-1)
#define STORESCAN_DEPTH_ORPHAN (STORESCAN_MAX_DEPTH + 1)

/* All rows of one load, in rowid order, and an id index over them. */
struct storescan {
	struct storescan_row *v;		/* rows */
	size_t n, cap;			/* used and allocated rows */
	char *arena;			/* NUL-terminated column texts */
	size_t alen, acap;		/* used and allocated bytes */
	uint32_t *slot;			/* id hash: row index + 1, 0 = empty */
	size_t nslot;			/* a power of two, >= 2n */
};

/* Reads a boolean column as go-sqlite3 does: a number, or text as Go's
 * strconv.ParseBool reads it (anything else is false). */
static bool
storescan_bool(sqlite3_stmt *s, int col)
{
	bool b = false;

	switch (sqlite3_column_type(s, col)) {
	case SQLITE_INTEGER:
		return sqlite3_column_int64(s, col) != 0;
	case SQLITE_FLOAT:
		return sqlite3_column_double(s, col) != 0.0;
	case SQLITE_TEXT:
		return gotext_parse_bool((const char *)sqlite3_column_text(s,
		    col), &b) == 0 && b;
	default:
		return false;
	}
}

/*
 * Reads updated_at as go-sqlite3 does for a datetime column: text in one of
 * its formats, or an integer (seconds, or milliseconds when beyond 1e12).
 * NULL and Go's zero time (what gorm writes for an unset time) are 0, "no
 * time", which garbage collection skips as Meridio's does. Text times that
 * int64 ns cannot hold keep their side of now: before 1678 become 1 (long
 * ago), after 2262 INT64_MAX (never old). Returns 0 or -1 for a value Go
 * would not read as a time.
 */
static int
storescan_time(sqlite3_stmt *s, int col, int64_t *ns)
{
	const char *t;
	int64_t v, secs, frac;

	switch (sqlite3_column_type(s, col)) {
	case SQLITE_NULL:
		*ns = 0;
		return 0;
	case SQLITE_TEXT:
		t = (const char *)sqlite3_column_text(s, col);
		if (gotext_parse_time_secs(t, &secs, &frac) < 0)
			return -1;
		if (secs == GOTEXT_ZERO_S && frac == 0)
			*ns = 0;
		else if (gotext_parse_time(t, ns) < 0)
			*ns = secs < 0 ? 1 : INT64_MAX;
		return 0;
	case SQLITE_INTEGER:
		v = sqlite3_column_int64(s, col);
		if (v > 1000000000000LL || v < -1000000000000LL) {
			if (__builtin_mul_overflow(v, 1000000, ns))
				return -1;
		} else {
			*ns = v * 1000000000;
		}
		return 0;
	default:
		return -1;
	}
}

/* Frees a scan. Accepts NULL. */
void
storescan_free(struct storescan *sc)
{
	if (sc == NULL)
		return;
	free(sc->slot);
	free(sc->v);
	free(sc->arena);
	free(sc);
}

/* Copies len bytes (plus a NUL) into the arena; SIZE_MAX on no memory.
 * Offset 0 is never returned for a copy (the arena starts with a NUL). */
static size_t
storescan_arena_add(struct storescan *sc, const void *p, size_t len)
{
	size_t off;

	if (sc->alen + len + 1 > sc->acap) {
		size_t cap = sc->acap ? sc->acap : 1 << 16;
		char *a;
		while (cap < sc->alen + len + 1)
			cap *= 2;
		if ((a = realloc(sc->arena, cap)) == NULL)
			return SIZE_MAX;
		sc->arena = a;
		sc->acap = cap;
	}
	off = sc->alen;
	if (len > 0)
		memcpy(sc->arena + off, p, len);
	sc->arena[off + len] = '\0';
	sc->alen += len + 1;
	return off;
}

/* Copies column col's text (NULL as "") into the arena. */
static size_t
storescan_arena_col(struct storescan *sc, sqlite3_stmt *s, int col, size_t *len)
{
	const unsigned char *t = sqlite3_column_text(s, col);
	size_t n = t != NULL ? (size_t)sqlite3_column_bytes(s, col) : 0;

	if (len != NULL)
		*len = n;
	return storescan_arena_add(sc, t != NULL ? (const char *)t : "", n);
}

/* FNV-1a over a key's type and bytes. */
static size_t
storescan_hash(int type, const char *p, size_t len)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)type;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (unsigned char)p[i];
		h *= 1099511628211ULL;
	}
	return (size_t)h;
}

/*
 * Builds the id index. sqlite matches parent_id = id only between values
 * of one type (text or blob) with the same bytes; NULL and '' ids can
 * never be a parent (a '' parent_id means a trench row), so they are left
 * out. Returns 0 or -1 on no memory.
 */
static int
storescan_index(struct storescan *sc)
{
	size_t i, j, mask;

	sc->nslot = 16;
	while (sc->nslot < 2 * sc->n)
		sc->nslot *= 2;
	if ((sc->slot = calloc(sc->nslot, sizeof(*sc->slot))) == NULL)
		return -1;
	mask = sc->nslot - 1;
	for (i = 0; i < sc->n; i++) {
		const struct storescan_row *r = &sc->v[i];
		if (r->idtype == SQLITE_NULL || r->idlen == 0)
			continue;
		j = storescan_hash(r->idtype, sc->arena + r->id, r->idlen) &
		    mask;
		while (sc->slot[j] != 0)
			j = (j + 1) & mask;
		sc->slot[j] = (uint32_t)i + 1;
	}
	return 0;
}

/* The row whose id equals row r's parent_id, or -1. */
static ssize_t
storescan_parent(const struct storescan *sc, const struct storescan_row *r)
{
	const char *p = sc->arena + r->parent;
	size_t mask = sc->nslot - 1, j;

	j = storescan_hash(r->parenttype, p, r->parentlen) & mask;
	for (; sc->slot[j] != 0; j = (j + 1) & mask) {
		const struct storescan_row *q = &sc->v[sc->slot[j] - 1];
		if (q->idtype == r->parenttype && q->idlen == r->parentlen &&
		    memcmp(sc->arena + q->id, p, r->parentlen) == 0)
			return (ssize_t)(sc->slot[j] - 1);
	}
	return -1;
}

/*
 * Sets the depth of row i as the recursive walk from the trench rows
 * would: 0 for a trench row (parent_id '' or NULL), the parent's plus one
 * up to STORESCAN_MAX_DEPTH, else STORESCAN_DEPTH_ORPHAN (no parent, too
 * deep, or a cycle). Walks up at most STORESCAN_MAX_DEPTH + 1 links, then
 * fills in the depths of the rows it passed; notes each parent found.
 */
static void
storescan_depth(struct storescan *sc, size_t i)
{
	size_t path[STORESCAN_MAX_DEPTH + 2];
	size_t n = 0, cur = i;
	int base;
	ssize_t p;

	for (;;) {
		struct storescan_row *r = &sc->v[cur];
		if (r->depth != STORESCAN_DEPTH_UNKNOWN) {
			base = r->depth;
			break;
		}
		if (r->parenttype == SQLITE_NULL || (r->parenttype ==
		    SQLITE_TEXT && r->parentlen == 0)) {
			r->depth = 0;
			base = 0;
			break;
		}
		path[n++] = cur;
		if (n > STORESCAN_MAX_DEPTH) {
			/* The root, if any, is too far: too deep. */
			sc->v[i].depth = STORESCAN_DEPTH_ORPHAN;
			return;
		}
		if ((p = storescan_parent(sc, r)) < 0) {
			/* cur is an orphan, and so is all below it. */
			for (size_t k = 0; k < n; k++)
				sc->v[path[k]].depth = STORESCAN_DEPTH_ORPHAN;
			return;
		}
		r->up = (uint32_t)p + 1;
		cur = (size_t)p;
	}
	while (n > 0) {
		cur = path[--n];
		if (base != STORESCAN_DEPTH_ORPHAN && base <
		    STORESCAN_MAX_DEPTH)
			base++;
		else
			base = STORESCAN_DEPTH_ORPHAN;
		sc->v[cur].depth = (int16_t)base;
	}
}

/*
 * Reads every row s returns (id, name, cidr, parent_id, updated_at,
 * expirable), in rowid order, then resets s. Returns 0, or -1 with err set
 * (path names the file); *out is to be freed either way.
 */
int
storescan_read(sqlite3_stmt *s, const char *path, struct storescan **out,
    char *err, size_t errlen)
{
	struct storescan *sc;
	struct storescan_row *r;
	int rc, ret = -1;

	if ((*out = sc = calloc(1, sizeof(*sc))) == NULL ||
	    storescan_arena_add(sc, "", 0) == SIZE_MAX)
		goto nomem;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (sc->n == sc->cap) {
			size_t cap = sc->cap ? sc->cap * 2 : 1024;
			struct storescan_row *v;
			if (cap > UINT32_MAX - 1 ||
			    (v = realloc(sc->v, cap * sizeof(*v))) == NULL)
				goto nomem;
			sc->v = v;
			sc->cap = cap;
		}
		r = &sc->v[sc->n];
		memset(r, 0, sizeof(*r));
		r->depth = STORESCAN_DEPTH_UNKNOWN;
		r->idtype = (uint8_t)sqlite3_column_type(s, 0);
		r->parenttype = (uint8_t)sqlite3_column_type(s, 3);
		r->id = storescan_arena_col(sc, s, 0, &r->idlen);
		r->name = storescan_arena_col(sc, s, 1, NULL);
		r->cidr = storescan_arena_col(sc, s, 2, NULL);
		r->parent = storescan_arena_col(sc, s, 3, &r->parentlen);
		r->expirable = storescan_bool(s, 5);
		if (storescan_time(s, 4, &r->updated_at) < 0 &&
		    (r->bad = storescan_arena_col(sc, s, 4, NULL)) == 0)
			r->bad = SIZE_MAX;
		if (r->id == SIZE_MAX || r->name == SIZE_MAX ||
		    r->cidr == SIZE_MAX || r->parent == SIZE_MAX ||
		    r->bad == SIZE_MAX)
			goto nomem;
		sc->n++;
	}
	if (rc != SQLITE_DONE) {
		errbuf_set(err, errlen, "%s: load: %s", path,
		    sqlite3_errmsg(sqlite3_db_handle(s)));
		goto out;
	}
	ret = 0;
	goto out;
nomem:
	errbuf_set(err, errlen, "%s: load: out of memory", path);
out:
	sqlite3_reset(s);
	return ret;
}

/*
 * Walks every row, parents before children: depths computed in memory,
 * then rows by depth and within one depth in rowid order; orphans (and
 * rows too deep, or in a cycle) last. Each row carries its place in the
 * walk and its parent's, so that the caller finds a parent without an id
 * index of its own. A row whose updated_at is not a time stops the walk
 * with an error naming it, when its turn comes: the caller refuses rather
 * than guess.
 */
int
storescan_walk(struct storescan *sc, const char *path,
    int (*fn)(void *arg, const struct store_row *row), void *arg,
    char *err, size_t errlen)
{
	struct store_row row;
	size_t count[STORESCAN_DEPTH_ORPHAN + 2] = { 0 }, *order = NULL, i;
	int ret = -1, d;

	if (storescan_index(sc) != 0 ||
	    (order = malloc((sc->n + 1) * sizeof(*order))) == NULL) {
		errbuf_set(err, errlen, "%s: load: out of memory", path);
		goto out;
	}
	/* A stable counting sort by depth keeps rowid order within a depth. */
	for (i = 0; i < sc->n; i++) {
		storescan_depth(sc, i);
		count[sc->v[i].depth + 1]++;
	}
	for (d = 1; d <= STORESCAN_DEPTH_ORPHAN + 1; d++)
		count[d] += count[d - 1];
	for (i = 0; i < sc->n; i++) {
		sc->v[i].seq = (uint32_t)count[sc->v[i].depth];
		order[count[sc->v[i].depth]++] = i;
	}
	ret = 0;
	for (i = 0; i < sc->n && ret == 0; i++) {
		const struct storescan_row *r = &sc->v[order[i]];
		row.id = sc->arena + r->id;
		row.name = sc->arena + r->name;
		row.cidr = sc->arena + r->cidr;
		row.parent_id = sc->arena + r->parent;
		row.updated_at = r->updated_at;
		row.expirable = r->expirable;
		row.seq = (long)i;
		row.parent_seq = r->depth > 0 && r->depth !=
		    STORESCAN_DEPTH_ORPHAN ? (long)sc->v[r->up - 1].seq : -1;
		if (r->bad != 0) {
			errbuf_set(err, errlen, "%s: row %s: column updated_at "
			    "\"%s\" is not a time", path, row.id,
			    sc->arena + r->bad);
			ret = STORE_EROW;
			break;
		}
		ret = fn(arg, &row);
	}
out:
	free(order);
	return ret;
}
