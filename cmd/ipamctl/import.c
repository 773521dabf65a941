/*
 * import.c - `ipamctl import FILE --data-source PATH`: an export file
 * (CTL_EXPORT_FORMAT) into the sqlite file of a stopped instance.
 *
 * lib/store opens the file with its exclusive lock: if a daemon still has
 * it, the open fails and nothing happens. Every record is checked as the
 * registry checks rows at load, against the file's other records and the
 * rows already there: Meridio's ids, canonical cidrs, the parent present
 * (earlier in the file or already stored), the child inside its parent,
 * no overlap between siblings, no id that exists with other contents. A
 * record identical to a stored row is skipped. Only when all of it holds
 * are the new rows inserted, in file order, in one transaction: nothing
 * is ever half applied.
 */
#include "ctl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "pfx.h"
#include "gotext.h"
#include "store.h"

#define CTL_MAX_REPORTED 50		/* problems printed before "..." */

/* One record, from the file or already stored. */
struct ctl_row {
	char *id;			/* Meridio's id */
	char *name;			/* record name */
	char *cidr;			/* prefix text */
	char *parent_id;		/* "" for a trench record */
	int64_t updated_at;		/* ns since the epoch, 0 = NULL */
	bool expirable;			/* GC may reap it */
	struct pfx p;			/* cidr parsed (imported rows) */
	bool parsed;			/* p is valid */
	bool imported;			/* from the file (else stored) */
	bool skip;			/* identical to a stored row */
	size_t pos;			/* index in the file / the table */
};

/* Every row, and the state of the checks. */
struct ctl_import {
	struct ctl_row *v;		/* rows */
	size_t n, cap;			/* used and allocated */
	size_t problems;		/* problems found */
	const char *file;		/* for messages */
};

/* Reports one problem (the first CTL_MAX_REPORTED) on stderr. */
static void __attribute__((format(printf, 2, 3)))
ctl_problem(struct ctl_import *im, const char *fmt, ...)
{
	va_list ap;

	if (im->problems++ < CTL_MAX_REPORTED) {
		fprintf(stderr, "ipamctl: import: %s: ", im->file);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	} else if (im->problems == CTL_MAX_REPORTED + 1) {
		fprintf(stderr, "ipamctl: import: %s: more problems not "
		    "listed\n", im->file);
	}
}

static void
ctl_row_free(struct ctl_row *r)
{
	free(r->id);
	free(r->name);
	free(r->cidr);
	free(r->parent_id);
}

/* Appends a copy of the strings as a new row; NULL on out of memory. */
static struct ctl_row *
ctl_row_add(struct ctl_import *im, const char *id, const char *name,
    const char *cidr, const char *parent_id)
{
	struct ctl_row *r;

	if (im->n == im->cap) {
		size_t cap = im->cap != 0 ? im->cap * 2 : 256;
		struct ctl_row *v = realloc(im->v, cap * sizeof(*v));

		if (v == NULL)
			return NULL;
		im->v = v;
		im->cap = cap;
	}
	r = &im->v[im->n];
	memset(r, 0, sizeof(*r));
	r->id = strdup(id);
	r->name = strdup(name);
	r->cidr = strdup(cidr);
	r->parent_id = strdup(parent_id);
	if (r->id == NULL || r->name == NULL || r->cidr == NULL ||
	    r->parent_id == NULL) {
		ctl_row_free(r);
		return NULL;
	}
	r->pos = im->n++;
	return r;
}

/* store_load callback: keeps every stored row. */
static int
ctl_load_row(void *arg, const struct store_row *row)
{
	struct ctl_import *im = arg;
	struct ctl_row *r;

	r = ctl_row_add(im, row->id, row->name, row->cidr, row->parent_id);
	if (r == NULL)
		return 1;
	r->updated_at = row->updated_at;
	r->expirable = row->expirable;
	r->parsed = pfx_parse(row->cidr, &r->p, NULL, 0) == 0;
	return 0;
}

/* A string member of o, NULL if absent or not a string. */
static const char *
ctl_json_str(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/*
 * Reads one record of the file into a row, checking what concerns it
 * alone: field types, canonical cidr, Meridio's id, the time format.
 * Returns 0, -1 on out of memory (problems are counted, not returned).
 */
static int
ctl_read_record(struct ctl_import *im, json_object *o, size_t i)
{
	const char *id, *name, *cidr, *parent;
	json_object *t, *e;
	struct ctl_row *r;
	char canon[PFX_STRLEN], perr[128], want[1024];
	struct pfx p;

	id = ctl_json_str(o, "id");
	name = ctl_json_str(o, "name");
	cidr = ctl_json_str(o, "cidr");
	parent = ctl_json_str(o, "parent_id");
	if (!json_object_is_type(o, json_type_object) || id == NULL ||
	    name == NULL || cidr == NULL || parent == NULL ||
	    !json_object_object_get_ex(o, "updated_at", &t) ||
	    !json_object_object_get_ex(o, "expirable", &e) ||
	    !json_object_is_type(e, json_type_boolean) ||
	    (t != NULL && !json_object_is_type(t, json_type_string))) {
		ctl_problem(im, "record %zu: expected id, name, cidr, "
		    "parent_id (strings), updated_at (string or null) and "
		    "expirable (boolean)", i);
		return 0;
	}
	if (id[0] == '\0' || name[0] == '\0') {
		ctl_problem(im, "record %zu: empty id or name", i);
		return 0;
	}
	if (pfx_parse(cidr, &p, perr, sizeof(perr)) < 0) {
		ctl_problem(im, "record %s: bad cidr: %s", id, perr);
		return 0;
	}
	pfx_format(&p, canon);
	if (strcmp(canon, cidr) != 0) {
		ctl_problem(im, "record %s: cidr not canonical (%s)", id,
		    canon);
		return 0;
	}
	snprintf(want, sizeof(want), "%s%s%s", name, parent[0] != '\0' ?
	    "-" : "", parent);
	if (strcmp(want, id) != 0) {
		ctl_problem(im, "record %s: id is not Meridio's (%s)", id,
		    want);
		return 0;
	}
	r = ctl_row_add(im, id, name, cidr, parent);
	if (r == NULL)
		return -1;
	r->imported = true;
	r->p = p;
	r->parsed = true;
	r->expirable = json_object_get_boolean(e);
	if (t != NULL && gotext_parse_time(json_object_get_string(t),
	    &r->updated_at) < 0)
		ctl_problem(im, "record %s: updated_at \"%s\" is not a time",
		    id, json_object_get_string(t));
	return 0;
}

static int
ctl_cmp_id(const void *x, const void *y)
{
	const struct ctl_row *const *a = x, *const *b = y;
	int c = strcmp((*a)->id, (*b)->id);

	if (c != 0)
		return c;
	/* stored rows before imported ones, then file order */
	if ((*a)->imported != (*b)->imported)
		return (*a)->imported ? 1 : -1;
	return (*a)->pos < (*b)->pos ? -1 : (*a)->pos > (*b)->pos;
}

static int
ctl_cmp_sibling(const void *x, const void *y)
{
	const struct ctl_row *const *a = x, *const *b = y;
	int c = strcmp((*a)->parent_id, (*b)->parent_id);

	return c != 0 ? c : pfx_cmp(&(*a)->p, &(*b)->p);
}

/* True if two rows hold the same record. */
static bool
ctl_same(const struct ctl_row *a, const struct ctl_row *b)
{
	return strcmp(a->name, b->name) == 0 && strcmp(a->cidr, b->cidr) == 0 &&
	    strcmp(a->parent_id, b->parent_id) == 0;
}

/* The row with this id (stored first), or NULL: by is sorted by id. */
static struct ctl_row *
ctl_find(struct ctl_row **by, size_t n, const char *id)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(by[mid]->id, id);

		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && strcmp(by[lo]->id, id) == 0 ? by[lo] : NULL;
}

/*
 * The checks across rows: ids unique (an identical stored row makes the
 * imported one a skip), parents present and earlier, children inside
 * them, siblings disjoint. Returns 0 or -1 on out of memory.
 */
static int
ctl_check_rows(struct ctl_import *im)
{
	struct ctl_row **by;
	size_t n = im->n, k = 0;

	by = calloc(n + 1, sizeof(*by));
	if (by == NULL)
		return -1;
	for (size_t i = 0; i < n; i++)
		by[i] = &im->v[i];
	qsort(by, n, sizeof(*by), ctl_cmp_id);
	for (size_t i = 1; i < n; i++) {
		struct ctl_row *a = by[i - 1], *b = by[i];

		if (strcmp(a->id, b->id) != 0 || !b->imported)
			continue;
		if (!a->imported && ctl_same(a, b))
			b->skip = true;
		else if (!a->imported)
			ctl_problem(im, "record %s: conflicts with the stored "
			    "row of that id (%s)", b->id, a->cidr);
		else
			ctl_problem(im, "record %s: twice in the file", b->id);
	}
	for (size_t i = 0; i < n; i++) {
		struct ctl_row *r = &im->v[i], *p;

		if (!r->imported || r->skip || r->parent_id[0] == '\0')
			continue;
		p = ctl_find(by, n, r->parent_id);
		if (p == NULL || (p->imported && p->pos > r->pos)) {
			ctl_problem(im, "record %s: parent %s is neither stored "
			    "nor earlier in the file", r->id, r->parent_id);
			continue;
		}
		if (p->parsed && !pfx_contains(&p->p, &r->p))
			ctl_problem(im, "record %s: %s is outside its parent",
			    r->id, r->cidr);
	}
	/* siblings: sorted by parent then address, an overlap is adjacent */
	for (size_t i = 0; i < n; i++)
		if (im->v[i].parsed && !im->v[i].skip)
			by[k++] = &im->v[i];
	qsort(by, k, sizeof(*by), ctl_cmp_sibling);
	for (size_t i = 1; i < k; i++) {
		struct ctl_row *a = by[i - 1], *b = by[i];

		if (strcmp(a->parent_id, b->parent_id) != 0 ||
		    (!a->imported && !b->imported) ||
		    a->p.family != b->p.family || !pfx_overlaps(&a->p, &b->p))
			continue;
		ctl_problem(im, "record %s overlaps its sibling %s",
		    b->imported ? b->id : a->id, b->imported ? a->id : b->id);
	}
	free(by);
	return 0;
}

/* Inserts the new rows in file order, in one transaction. */
static int
ctl_write(struct ctl_import *im, struct store *st, size_t *added)
{
	char err[512];

	*added = 0;
	if (store_begin(st, err, sizeof(err)) < 0)
		goto fail;
	for (size_t i = 0; i < im->n; i++) {
		struct ctl_row *r = &im->v[i];
		struct store_row row = {
			.id = r->id, .name = r->name, .cidr = r->cidr,
			.parent_id = r->parent_id, .updated_at = r->updated_at,
			.expirable = r->expirable,
		};

		if (!r->imported || r->skip)
			continue;
		if (store_insert(st, &row, err, sizeof(err)) < 0) {
			store_rollback(st);
			goto fail;
		}
		(*added)++;
	}
	if (store_commit(st, err, sizeof(err)) < 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "ipamctl: import: %s: nothing imported: %s\n",
	    im->file, err);
	return -1;
}

int
ctl_import(const char *file, const char *data_source)
{
	struct ctl_import im = { .file = file };
	struct store *st = NULL;
	json_object *doc, *recs;
	const char *fmt;
	char err[512];
	size_t stored, added = 0;
	int rc = CTL_RPC;

	doc = json_object_from_file(file);
	if (doc == NULL) {
		fprintf(stderr, "ipamctl: import: %s: not a JSON file: %s\n",
		    file, json_util_get_last_err());
		return CTL_RPC;
	}
	fmt = ctl_json_str(doc, "format");
	if (fmt == NULL || strcmp(fmt, CTL_EXPORT_FORMAT) != 0 ||
	    !json_object_object_get_ex(doc, "records", &recs) ||
	    !json_object_is_type(recs, json_type_array)) {
		fprintf(stderr, "ipamctl: import: %s: not an export file "
		    "(\"format\": \"%s\" and a \"records\" array expected)\n",
		    file, CTL_EXPORT_FORMAT);
		goto out_json;
	}
	if (store_open(&st, data_source, 0, err, sizeof(err)) < 0) {
		fprintf(stderr, "ipamctl: import: %s (import needs the "
		    "instance stopped)\n", err);
		goto out_json;
	}
	if (store_load(st, ctl_load_row, &im, err, sizeof(err)) != 0) {
		fprintf(stderr, "ipamctl: import: %s: cannot read: %s\n",
		    data_source, err);
		goto out_store;
	}
	stored = im.n;
	for (size_t i = 0; i < json_object_array_length(recs); i++)
		if (ctl_read_record(&im, json_object_array_get_idx(recs, i),
		    i) < 0)
			goto out_oom;
	if (ctl_check_rows(&im) < 0)
		goto out_oom;
	if (im.problems > 0) {
		fprintf(stderr, "ipamctl: import: %zu problem%s: nothing "
		    "imported\n", im.problems, im.problems > 1 ? "s" : "");
		goto out_store;
	}
	if (ctl_write(&im, st, &added) < 0)
		goto out_store;
	printf("imported %zu records into %s (%zu already there)\n", added,
	    data_source, im.n - stored - added);
	rc = CTL_OK;
	goto out_store;
out_oom:
	fprintf(stderr, "ipamctl: import: out of memory: nothing imported\n");
out_store:
	store_close(st);
	for (size_t i = 0; i < im.n; i++)
		ctl_row_free(&im.v[i]);
	free(im.v);
out_json:
	json_object_put(doc);
	return rc;
}
