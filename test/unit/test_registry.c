/*
 * Unit tests of lib/registry: Meridio's semantics over a real store file.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <malloc.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registry.h"
#include "store.h"
#include "testutil.h"

#define NS 1000000000LL
#define T0 (1700000000LL * NS)

static char dir[PATH_MAX];		/* this test's private directory */
static char path[PATH_MAX + 16];	/* dir/registry.db */
static char err[256];			/* error buffer of the call under test */

static struct reg_params
params(void)
{
	struct reg_params prm = { .trench = "default",
	    .node_refresh_ns = 60 * NS };

	prm.fam[0].enabled = true;
	cr_assert_eq(pfx_parse("169.255.0.0/16", &prm.fam[0].prefix, err,
	    sizeof(err)), 0);
	prm.fam[0].conduit_len = 20;
	prm.fam[0].node_len = 24;
	prm.fam[1].enabled = true;
	cr_assert_eq(pfx_parse("fd00::/48", &prm.fam[1].prefix, err,
	    sizeof(err)), 0);
	prm.fam[1].conduit_len = 56;
	prm.fam[1].node_len = 64;
	return prm;
}

struct problems {
	int n;
	char last[256];
};

static void
on_problem(void *arg, const char *id, const char *what)
{
	struct problems *pr = arg;

	if (pr == NULL)
		return;
	pr->n++;
	snprintf(pr->last, sizeof(pr->last), "%s: %s", id, what);
}

static struct store *
open_store(void)
{
	struct store *store = NULL;

	cr_assert_eq(store_open(&store, path, 0, err, sizeof(err)), 0, "%s",
	    err);
	return store;
}

static struct reg *
open_reg(struct store *store, const struct reg_params *prm, struct problems *pr)
{
	struct reg *reg = NULL;
	int rc = reg_open(&reg, store, prm, on_problem, pr, err, sizeof(err));

	cr_assert_eq(rc, REG_OK, "reg_open: %d %s", rc, err);
	return reg;
}

/*
 * The fixture: each test starts with a store on a file of its own (st),
 * the usual parameters (p) and no registry yet (g); what is still open at
 * the end is closed here.
 */
static struct store *st;
static struct reg_params p;
static struct reg *g;

static void
setup(void)
{
	testutil_mkdtemp(dir, sizeof(dir), NULL, "reg");
	snprintf(path, sizeof(path), "%s/registry.db", dir);
	st = open_store();
	p = params();
	g = NULL;
}

static void
teardown(void)
{
	reg_close(g);
	g = NULL;
	store_close(st);
	st = NULL;
	testutil_rmtree(dir);
}

TestSuite(registry, .init = setup, .fini = teardown);

/* reg_begin and reg_commit of g, asserted. */
static void
begin(void)
{
	cr_assert_eq(reg_begin(g, err, sizeof(err)), REG_OK, "%s", err);
}

static void
commit(void)
{
	cr_assert_eq(reg_commit(g, err, sizeof(err)), REG_OK, "%s", err);
}

/* Opens g with the parameters p and adds the conduits listed (up to a
 * NULL) in one batch at T0. */
static void
open_with(const char *conduit, ...)
{
	va_list ap;

	g = open_reg(st, &p, NULL);
	begin();
	va_start(ap, conduit);
	for (; conduit != NULL; conduit = va_arg(ap, const char *))
		cr_assert_eq(reg_add_conduit(g, conduit, T0, err, sizeof(err)),
		    REG_OK, "%s: %s", conduit, err);
	va_end(ap);
	commit();
}

/* Allocates in a batch of its own; returns the result. */
static struct reg_result
alloc_res(int fam, const char *c, const char *n, const char *name,
    int64_t now)
{
	struct reg_result res;
	int rc;

	begin();
	rc = reg_allocate(g, fam, c, n, name, now, &res, err, sizeof(err));
	cr_assert_eq(rc, REG_OK, "allocate %s/%s/%s: %d %s", c, n, name, rc,
	    err);
	commit();
	return res;
}

/* alloc_res, asserting that it gave want ("addr/len"). */
static void
assert_alloc(int fam, const char *c, const char *n, const char *name,
    int64_t now, const char *want)
{
	struct reg_result res = alloc_res(fam, c, n, name, now);
	char got[80];

	snprintf(got, sizeof(got), "%s/%u", res.address, res.prefix_len);
	cr_assert_str_eq(got, want, "allocate %s/%s/%s", c, n, name);
}

static void
release1(int fam, const char *c, const char *n, const char *name)
{
	begin();
	cr_assert_eq(reg_release(g, fam, c, n, name, T0, err, sizeof(err)),
	    REG_OK, "%s", err);
	commit();
}

/* Counts rows on disk, and finds one id. */
struct rows {
	int n;
	const char *want;
	bool found;
	char cidr[64];
	int64_t updated;
	bool expirable;
};

static int
count_row(void *arg, const struct store_row *row)
{
	struct rows *r = arg;

	r->n++;
	if (r->want != NULL && strcmp(row->id, r->want) == 0) {
		r->found = true;
		snprintf(r->cidr, sizeof(r->cidr), "%s", row->cidr);
		r->updated = row->updated_at;
		r->expirable = row->expirable;
	}
	return 0;
}

static struct rows
disk_rows(struct store *store, const char *want)
{
	struct rows r = { .want = want };

	cr_assert_eq(store_load(store, count_row, &r, err, sizeof(err)), 0,
	    "%s", err);
	return r;
}

/* Asserts that each row listed (up to a NULL) is on disk, or is not. */
static void
assert_on_disk(bool want, const char *id, ...)
{
	va_list ap;

	va_start(ap, id);
	for (; id != NULL; id = va_arg(ap, const char *))
		cr_assert_eq(disk_rows(st, id).found, want, "row %s %s", id,
		    want ? "missing" : "still there");
	va_end(ap);
}

/* Runs garbage collection at now in a batch of its own; returns how many
 * records it reaped. */
static size_t
gc1(int64_t now, int64_t threshold)
{
	size_t reaped;

	begin();
	cr_assert_eq(reg_gc(g, now, threshold, &reaped, err, sizeof(err)),
	    REG_OK, "%s", err);
	commit();
	return reaped;
}

/* Asserts that row id is on disk with cidr and, unless exp < 0, that its
 * expirable column is exp. */
static void
assert_row(const char *id, const char *cidr, int exp)
{
	struct rows r = disk_rows(st, id);

	cr_assert(r.found, "row %s missing", id);
	cr_assert_str_eq(r.cidr, cidr, "row %s", id);
	if (exp >= 0)
		cr_assert_eq(r.expirable, exp, "row %s expirable", id);
}

/* Closes the registry and writes rows to the file in one commit, behind
 * its back. */
static void
insert_rows(const struct store_row *rows, size_t n)
{
	reg_close(g);
	g = NULL;
	cr_assert_eq(store_begin(st, err, sizeof(err)), 0, "%s", err);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(store_insert(st, &rows[i], err, sizeof(err)), 0,
		    "%s: %s", rows[i].id, err);
	cr_assert_eq(store_commit(st, err, sizeof(err)), 0, "%s", err);
}

/* Closes the registry and the store, runs sql (unless NULL) on the file
 * with a connection of its own (as Meridio or an operator would write),
 * and opens the store again. */
static void
reopen_store(const char *sql)
{
	sqlite3 *db = NULL;

	reg_close(g);
	g = NULL;
	store_close(st);
	if (sql != NULL) {
		cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
		cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL),
		    SQLITE_OK, "%s", sqlite3_errmsg(db));
		sqlite3_close(db);
	}
	st = open_store();
}

/* The problem kinds reg_check reported, each followed by a space. */
struct found {
	int n;
	char kinds[256];
};

static void
on_found(void *arg, const struct reg_problem *pb)
{
	struct found *f = arg;

	f->n++;
	strncat(f->kinds, pb->kind, sizeof(f->kinds) - strlen(f->kinds) - 2);
	strcat(f->kinds, " ");
}

/* Asserts that reg_check of g reports exactly kinds ("" for none). */
static void
assert_check(int64_t now, int64_t threshold, const char *kinds)
{
	struct found f = { 0 };

	cr_assert_eq(reg_check(g, now, threshold, on_found, &f), (size_t)f.n);
	cr_assert_str_eq(f.kinds, kinds);
}

Test(registry, new_file_gets_trench_records)
{
	g = open_reg(st, &p, NULL);
	assert_row("default-0", "169.255.0.0/16", 0);
	assert_row("default-1", "fd00::/48", -1);
	cr_assert_eq(disk_rows(st, NULL).n, 2);
	cr_assert_eq(reg_count(g), 2);
}

Test(registry, first_fit_both_families)
{
	open_with("conduit-a", "conduit-b", NULL);
	assert_alloc(PFX_V4, "conduit-a", "w1", "x", T0, "169.255.0.1/24");
	assert_alloc(PFX_V4, "conduit-a", "w1", "y", T0, "169.255.0.2/24");
	assert_alloc(PFX_V4, "conduit-a", "w2", "x", T0, "169.255.1.1/24");
	assert_alloc(PFX_V4, "conduit-b", "w1", "x", T0, "169.255.16.1/24");
	assert_alloc(PFX_V6, "conduit-a", "w1", "x", T0, "fd00::1/64");
	assert_alloc(PFX_V6, "conduit-a", "w2", "x", T0, "fd00:0:0:1::1/64");
	assert_alloc(PFX_V6, "conduit-b", "w1", "x", T0, "fd00:0:0:100::1/64");
	/* Meridio's ids and child cidrs. */
	assert_row("y-w1-conduit-a-default-0", "169.255.0.2/32", 1);
	assert_row("x-w1-conduit-b-default-1", "fd00:0:0:100::1/128", -1);
	assert_row("w2-conduit-a-default-0", "169.255.1.0/24", 1);
	assert_row("conduit-b-default-0", "169.255.16.0/20", 0);
}

Test(registry, allocate_is_idempotent_and_refreshes)
{
	open_with("c", NULL);
	assert_alloc(PFX_V4, "c", "n", "x", T0, "169.255.0.1/24");
	assert_alloc(PFX_V4, "c", "n", "x", T0 + 5 * NS, "169.255.0.1/24");
	cr_assert_eq(disk_rows(st, "x-n-c-default-0").updated, T0 + 5 * NS);
	/* The node refresh is damped to node_refresh_ns. */
	cr_assert_eq(disk_rows(st, "n-c-default-0").updated, T0);
	alloc_res(PFX_V4, "c", "n", "x", T0 + 61 * NS);
	cr_assert_eq(disk_rows(st, "n-c-default-0").updated, T0 + 61 * NS);
	cr_assert_eq(reg_count_children(g), 1);
}

Test(registry, release_then_lowest_reused)
{
	int before;

	open_with("c", NULL);
	alloc_res(PFX_V4, "c", "n", "a", T0);
	alloc_res(PFX_V4, "c", "n", "b", T0);
	alloc_res(PFX_V4, "c", "n", "c", T0);
	release1(PFX_V4, "c", "n", "b");
	assert_on_disk(false, "b-n-c-default-0", NULL);
	assert_alloc(PFX_V4, "c", "n", "d", T0, "169.255.0.2/24");
	assert_alloc(PFX_V4, "c", "n", "e", T0, "169.255.0.4/24");
	/* Unknown levels: success, nothing created. */
	before = disk_rows(st, NULL).n;
	release1(PFX_V4, "c", "n", "nobody");
	release1(PFX_V4, "c", "nonode", "a");
	release1(PFX_V4, "noconduit", "n", "a");
	cr_assert_eq(disk_rows(st, NULL).n, before);
}

Test(registry, unknown_conduit_and_family)
{
	struct reg_result res;

	p.fam[1].enabled = false;
	g = open_reg(st, &p, NULL);
	begin();
	cr_assert_eq(reg_allocate(g, PFX_V4, "nope", "n", "x", T0, &res, err,
	    sizeof(err)), REG_ENOCONDUIT);
	cr_assert(strstr(err, "nope") != NULL, "%s", err);
	cr_assert_eq(reg_allocate(g, PFX_V6, "nope", "n", "x", T0, &res, err,
	    sizeof(err)), REG_EFAMILY);
	cr_assert_eq(reg_allocate(g, 5, "nope", "n", "x", T0, &res, err,
	    sizeof(err)), REG_EINVAL);
	commit();
	assert_on_disk(false, "default-1", NULL);
}

Test(registry, node_exhausted_names_prefix)
{
	struct reg_result res;
	char name[16], want[32];

	p.fam[0].node_len = 29;	/* 8 addresses, 6 usable */
	open_with("c", NULL);
	for (int i = 0; i < 6; i++) {
		snprintf(name, sizeof(name), "k%d", i);
		snprintf(want, sizeof(want), "169.255.0.%d/29", i + 1);
		assert_alloc(PFX_V4, "c", "n", name, T0, want);
	}
	begin();
	cr_assert_eq(reg_allocate(g, PFX_V4, "c", "n", "k6", T0, &res, err,
	    sizeof(err)), REG_EXHAUSTED);
	cr_assert(strstr(err, "169.255.0.0/29") != NULL, "%s", err);
	reg_rollback(g);
}

Test(registry, rollback_undoes_memory_and_disk)
{
	struct reg_result res;
	size_t n;

	open_with("c", NULL);
	alloc_res(PFX_V4, "c", "n", "keep", T0);
	n = reg_count(g);
	begin();
	cr_assert_eq(reg_allocate(g, PFX_V4, "c", "n2", "x", T0, &res, err,
	    sizeof(err)), REG_OK);
	cr_assert_eq(reg_release(g, PFX_V4, "c", "n", "keep", T0, err,
	    sizeof(err)), REG_OK);
	cr_assert_eq(reg_allocate(g, PFX_V4, "c", "n", "y", T0, &res, err,
	    sizeof(err)), REG_OK);
	cr_assert_str_eq(res.address, "169.255.0.1");
	cr_assert_eq(reg_remove_conduit(g, "c", err, sizeof(err)), REG_OK);
	reg_rollback(g);
	cr_assert_eq(reg_count(g), n);
	cr_assert(reg_has_conduit(g, PFX_V4, "c"));
	/* keep still owns .1, y gets .2, n2 does not exist. */
	assert_alloc(PFX_V4, "c", "n", "keep", T0, "169.255.0.1/24");
	assert_alloc(PFX_V4, "c", "n", "y", T0, "169.255.0.2/24");
	assert_on_disk(false, "n2-c-default-0", NULL);
	assert_alloc(PFX_V4, "c", "n2", "x", T0, "169.255.1.1/24");
}

Test(registry, reopen_keeps_everything)
{
	struct problems pr = { 0 };
	size_t n;

	open_with("a", "b", NULL);
	alloc_res(PFX_V4, "a", "n", "x", T0);
	alloc_res(PFX_V4, "b", "n", "y", T0);
	alloc_res(PFX_V6, "b", "n", "y", T0);
	alloc_res(PFX_V6, "b", "n", "bridge", T0);
	n = reg_count(g);
	reopen_store(NULL);
	g = open_reg(st, &p, &pr);
	cr_assert_eq(pr.n, 0, "%s", pr.last);
	cr_assert_eq(reg_count(g), n);
	assert_alloc(PFX_V6, "b", "n", "y", T0, "fd00:0:0:100::1/64");
	assert_alloc(PFX_V6, "b", "n", "bridge", T0, "fd00:0:0:100::2/64");
	assert_alloc(PFX_V4, "b", "n", "z", T0, "169.255.16.2/24");
	cr_assert_not(disk_rows(st, "bridge-n-b-default-1").expirable);
}

Test(registry, conduit_remove_and_readd)
{
	open_with("a", "b", NULL);
	alloc_res(PFX_V4, "a", "n", "x", T0);
	begin();
	cr_assert_eq(reg_remove_conduit(g, "a", err, sizeof(err)), REG_OK);
	commit();
	cr_assert_not(reg_has_conduit(g, PFX_V4, "a"));
	cr_assert_not(reg_has_conduit(g, PFX_V6, "a"));
	assert_on_disk(false, "x-n-a-default-0", "n-a-default-0",
	    "a-default-1", NULL);
	begin();
	cr_assert_eq(reg_add_conduit(g, "a", T0, err, sizeof(err)), REG_OK);
	commit();
	cr_assert_str_eq(disk_rows(st, "a-default-0").cidr, "169.255.0.0/20");
	cr_assert_str_eq(disk_rows(st, "b-default-0").cidr, "169.255.16.0/20");
}

Test(registry, gc_reaps_stale_keeps_bridge_and_fresh)
{
	p.node_refresh_ns = 1 * NS;
	open_with("c", NULL);
	alloc_res(PFX_V4, "c", "n", "old", T0);
	alloc_res(PFX_V4, "c", "n", "bridge", T0);
	alloc_res(PFX_V4, "c", "n", "fresh", T0 + 100 * NS);
	alloc_res(PFX_V4, "c", "stale", "x", T0);
	/* "old", and node "stale" with its child. */
	cr_assert_eq(gc1(T0 + 110 * NS, 50 * NS), 3);
	assert_on_disk(false, "old-n-c-default-0", "x-stale-c-default-0",
	    "stale-c-default-0", NULL);
	assert_on_disk(true, "bridge-n-c-default-0", "fresh-n-c-default-0",
	    "n-c-default-0", "c-default-0", NULL);
	assert_alloc(PFX_V4, "c", "n", "new", T0 + 110 * NS, "169.255.0.1/24");
}

Test(registry, stored_prefix_mismatch_refused)
{
	int n;

	g = open_reg(st, &p, NULL);
	reg_close(g);
	n = disk_rows(st, NULL).n;
	cr_assert_eq(pfx_parse("10.0.0.0/16", &p.fam[0].prefix, err,
	    sizeof(err)), 0);
	g = NULL;
	cr_assert_eq(reg_open(&g, st, &p, NULL, NULL, err, sizeof(err)),
	    REG_EMISMATCH);
	cr_assert_null(g);
	cr_assert(strstr(err, "169.255.0.0/16") != NULL, "%s", err);
	cr_assert(strstr(err, "10.0.0.0/16") != NULL, "%s", err);
	cr_assert_eq(disk_rows(st, NULL).n, n);
	cr_assert_str_eq(disk_rows(st, "default-0").cidr, "169.255.0.0/16");
}

Test(registry, load_problems_reported_rows_untouched)
{
	struct problems pr = { 0 };
	struct store_row rows[] = {
		TEST_ROW("c-default-0", "c", "169.255.0.0/20",
		    "default-0", T0, false),
		TEST_ROW("n-c-default-0", "n", "169.255.0.0/24",
		    "c-default-0", T0, true),
		TEST_ROW("x-n-c-default-0", "x", "169.255.0.1/32",
		    "n-c-default-0", T0, true),
		/* overlaps x */
		TEST_ROW("y-n-c-default-0", "y", "169.255.0.0/30",
		    "n-c-default-0", T0, true),
		/* outside its parent */
		TEST_ROW("z-n-c-default-0", "z", "169.255.9.1/32",
		    "n-c-default-0", T0, true),
		/* orphan */
		TEST_ROW("o-gone-default-0", "o", "169.255.3.0/24",
		    "gone-default-0", T0, true),
	};
	int n;

	g = open_reg(st, &p, NULL);
	insert_rows(rows, sizeof(rows) / sizeof(rows[0]));
	n = disk_rows(st, NULL).n;
	g = open_reg(st, &p, &pr);
	cr_assert_eq(pr.n, 3, "problems: %d, last %s", pr.n, pr.last);
	cr_assert_eq(disk_rows(st, NULL).n, n);
	/* x keeps .1; the next child gets .2 */
	assert_alloc(PFX_V4, "c", "n", "x", T0, "169.255.0.1/24");
	assert_alloc(PFX_V4, "c", "n", "w", T0, "169.255.0.2/24");
}

Test(registry, release_cooldown_keeps_address_unused)
{
	p.release_cooldown_ns = 10 * NS;
	open_with("c", NULL);
	alloc_res(PFX_V4, "c", "n", "a", T0);
	alloc_res(PFX_V4, "c", "n", "b", T0);
	alloc_res(PFX_V4, "c", "n", "c", T0);
	release1(PFX_V4, "c", "n", "b");
	cr_assert_eq(reg_count_cooling(g), 1);
	assert_alloc(PFX_V4, "c", "n", "d", T0, "169.255.0.4/24");
	cr_assert_eq(reg_expire_cooldowns(g, T0 + 9 * NS), 0);
	assert_alloc(PFX_V4, "c", "n", "e", T0, "169.255.0.5/24");
	cr_assert_eq(reg_expire_cooldowns(g, T0 + 10 * NS), 1);
	cr_assert_eq(reg_count_cooling(g), 0);
	assert_alloc(PFX_V4, "c", "n", "f", T0, "169.255.0.2/24");
}

Test(registry, release_cooldown_survives_its_node_being_reaped)
{
	p.release_cooldown_ns = 10 * NS;
	p.node_refresh_ns = NS;
	open_with("c", NULL);
	alloc_res(PFX_V4, "c", "n", "a", T0);
	alloc_res(PFX_V4, "c", "n", "b", T0);
	release1(PFX_V4, "c", "n", "a");
	cr_assert_eq(gc1(T0 + 100 * NS, 50 * NS), 2);
	cr_assert_eq(reg_expire_cooldowns(g, T0 + 20 * NS), 1);
	assert_alloc(PFX_V4, "c", "n", "a", T0 + 100 * NS, "169.255.0.1/24");
}

struct seen {
	int n;
	char lines[16][160];
};

static int
on_record(void *arg, const struct reg_record *r)
{
	struct seen *s = arg;
	char cidr[PFX_STRLEN];

	pfx_format(&r->cidr, cidr);
	if (s->n < 16)
		snprintf(s->lines[s->n], sizeof(s->lines[0]), "%u %s %s %s %zu/%zu",
		    r->level, r->id, r->parent_id[0] ? r->parent_id : "-", cidr,
		    r->children, r->usable);
	s->n++;
	return 0;
}

Test(registry, walk_lists_parents_first_in_address_order)
{
	struct seen s = { 0 };

	p.fam[1].enabled = false;
	open_with("a", "b", NULL);
	alloc_res(PFX_V4, "a", "n", "z", T0);
	alloc_res(PFX_V4, "a", "n", "y", T0);
	alloc_res(PFX_V4, "b", "m", "x", T0);
	cr_assert_eq(reg_walk(g, NULL, NULL, on_record, &s), 0);
	cr_assert_eq(s.n, 8);
	cr_assert_str_eq(s.lines[0], "0 default-0 - 169.255.0.0/16 2/16");
	cr_assert_str_eq(s.lines[1], "1 a-default-0 default-0 169.255.0.0/20 1/16");
	cr_assert_str_eq(s.lines[2], "2 n-a-default-0 a-default-0 169.255.0.0/24 2/254");
	cr_assert_str_eq(s.lines[3], "3 z-n-a-default-0 n-a-default-0 169.255.0.1/32 0/0");
	cr_assert_str_eq(s.lines[4], "3 y-n-a-default-0 n-a-default-0 169.255.0.2/32 0/0");
	cr_assert_str_eq(s.lines[5], "1 b-default-0 default-0 169.255.16.0/20 1/16");
	memset(&s, 0, sizeof(s));
	cr_assert_eq(reg_walk(g, "b", NULL, on_record, &s), 0);
	cr_assert_eq(s.n, 4);
	cr_assert_str_eq(s.lines[1], "1 b-default-0 default-0 169.255.16.0/20 1/16");
	cr_assert_str_eq(s.lines[3], "3 x-m-b-default-0 m-b-default-0 169.255.16.1/32 0/0");
	memset(&s, 0, sizeof(s));
	cr_assert_eq(reg_walk(g, "a", "nope", on_record, &s), 0);
	cr_assert_eq(s.n, 2);
}

Test(registry, check_reports_load_problems_and_stale_records)
{
	struct store_row orphan = TEST_ROW("o-gone-default-0", "o",
	    "169.255.3.0/24", "gone-default-0", T0, true);

	open_with("c", NULL);
	alloc_res(PFX_V4, "c", "n", "old", T0);
	alloc_res(PFX_V4, "c", "n", "bridge", T0);
	assert_check(T0 + 10 * NS, 50 * NS, "");
	insert_rows(&orphan, 1);
	g = open_reg(st, &p, NULL);
	/* The node and "old" are stale; "bridge" never is. */
	assert_check(T0 + 100 * NS, 50 * NS, "orphan stale stale ");
	assert_check(T0 + 100 * NS, 0, "orphan ");
}

/*
 * Rows the load leaves out, each with its problem, while the address
 * beside them loads: one stored below an address record (only a node can
 * hold addresses) is an orphan, ids that are not "<name>-<parent id>"
 * are bad-id.
 */
Test(registry, malformed_rows_are_left_out)
{
	struct store_row rows[] = {
		TEST_ROW("u-x-n-c-default-0", "u", "169.255.0.1/32",
		    "x-n-c-default-0", T0, true),
		TEST_ROW("y-n-c-default-0x", "y", "169.255.0.9/32",
		    "n-c-default-0", T0, true),
		TEST_ROW("y-n-c-default", "y", "169.255.0.8/32",
		    "n-c-default-0", T0, true),
	};

	open_with("c", NULL);
	alloc_res(PFX_V4, "c", "n", "x", T0);
	insert_rows(rows, 3);
	g = open_reg(st, &p, NULL);
	cr_assert_eq(reg_count_children(g), 1);
	assert_check(T0, 0, "bad-id bad-id orphan ");
}

/* ---- record layout ------------------------------------------------------ */

/*
 * Names are stored inline in their records: very long names and names that
 * are prefixes of one another (or share a long prefix) are distinct
 * children, each found again by its exact name, also after a reload.
 */
Test(registry, long_names_and_shared_prefixes)
{
	static char names[40][520], addr[40][PFX_ADDRSTRLEN];
	struct reg_result res;
	int i, n = 0;

	for (i = 0; i < 10; i++) {		/* x, xx, ..., 10 x */
		memset(names[n], 'x', (size_t)i + 1);
		names[n++][i + 1] = '\0';
	}
	for (i = 0; i < 30; i++) {		/* 500 chars, last one differs */
		memset(names[n], 'p', 499);
		names[n][499] = (char)('A' + i);
		names[n++][500] = '\0';
	}
	open_with("c", NULL);
	for (i = 0; i < n; i++) {
		res = alloc_res(PFX_V6, "c", "node", names[i], T0);
		cr_assert(res.created, "%d", i);
		snprintf(addr[i], sizeof(addr[i]), "%s", res.address);
	}
	cr_assert_str_eq(addr[0], "fd00::1");
	cr_assert_str_eq(addr[39], "fd00::28");
	for (i = 0; i < n; i++) {
		res = alloc_res(PFX_V6, "c", "node", names[i], T0);
		cr_assert(!res.created, "%d", i);
		cr_assert_str_eq(res.address, addr[i], "%d", i);
	}
	release1(PFX_V6, "c", "node", "xxx");
	release1(PFX_V6, "c", "node", names[20]);
	cr_assert_eq(reg_count_children(g), (size_t)n - 2);
	reg_close(g);
	g = open_reg(st, &p, NULL);
	cr_assert_eq(reg_count_children(g), (size_t)n - 2);
	for (i = 0; i < n; i++) {
		res = alloc_res(PFX_V6, "c", "node", names[i], T0);
		if (i == 2 || i == 20) {
			cr_assert(res.created, "%d", i);
			continue;
		}
		cr_assert(!res.created, "%d", i);
		cr_assert_str_eq(res.address, addr[i], "%d", i);
	}
	assert_check(T0, 0, "");
}


/*
 * The heap figures below come from glibc's mallinfo2, which does not see
 * AddressSanitizer's allocator: those tests are not built under it.
 */
#ifndef __SANITIZE_ADDRESS__

/* Heap in use outside sqlite's own allocations. */
static size_t
reg_heap(void)
{
	return mallinfo2().uordblks - (size_t)sqlite3_memory_used();
}

/*
 * Checkpoints and empties the WAL from a connection of its own, so that
 * the store's checkpointer thread has nothing to do: its connection
 * allocates whenever the scheduler lets it run, moving reg_heap.
 */
static void
wal_reset(void)
{
	sqlite3 *db = NULL;

	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_wal_checkpoint_v2(db, NULL,
	    SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL), SQLITE_OK, "%s",
	    sqlite3_errmsg(db));
	sqlite3_close(db);
}

/*
 * Fills node "n" with count children named child-name-<i>, 100 a batch,
 * their addresses into addrs; with addrs NULL releases them instead.
 * Checked once at the end, not per call: every criterion assertion is a
 * message to the runner, and its buffers moved the heap figures of the
 * test below by kilobytes depending on how soon the runner read them.
 */
static void
fill_node(struct reg *reg, int count, char addrs[][PFX_ADDRSTRLEN])
{
	struct reg_result res = { .created = true };
	char name[64];
	int i, bad = -1;

	for (i = 0; i < count && bad < 0; i++) {
		if (i % 100 == 0 && reg_begin(reg, err, sizeof(err)) != REG_OK)
			bad = i;
		snprintf(name, sizeof(name), "child-name-%010d", i);
		if (bad < 0 && (addrs == NULL ? reg_release(reg, PFX_V6, "c",
		    "n", name, T0, err, sizeof(err)) : reg_allocate(reg,
		    PFX_V6, "c", "n", name, T0, &res, err, sizeof(err))) !=
		    REG_OK)
			bad = i;
		if (bad < 0 && !res.created)
			bad = i;
		if (bad < 0 && addrs != NULL)
			snprintf(addrs[i], PFX_ADDRSTRLEN, "%s", res.address);
		if (bad < 0 && (i % 100 == 99 || i == count - 1) &&
		    reg_commit(reg, err, sizeof(err)) != REG_OK)
			bad = i;
	}
	cr_assert_eq(bad, -1, "%s child %d: %s", addrs ? "allocating" :
	    "releasing", bad, err);
}

/*
 * Writes (fills and empties node "n") until the store has started its
 * checkpointer thread, whose connection's allocations would otherwise land
 * in the middle of a heap measurement.
 */
static void
warm_checkpointer(struct reg *reg)
{
	static char scratch[2000][PFX_ADDRSTRLEN];
	int base = testutil_threads();

	for (int i = 0; i < 20 && testutil_threads() == base; i++) {
		fill_node(reg, 2000, scratch);
		fill_node(reg, 2000, NULL);
	}
	cr_assert_gt(testutil_threads(), base, "no checkpointer thread");
}

/*
 * What an address record costs, and that release and re-allocation reuse
 * the memory: 2000 children in one node, released and allocated again
 * 18 times, each fill getting the same addresses (first fit). The first
 * 13 cycles warm up the undo log, sqlite's cache and glibc's tcache (up to
 * 7 freed chunks per size, counted as in use); after them the heap after
 * each fill and each release stays where cycle 13 left it (a byte per
 * record and cycle would show within the four checked). A child costs at
 * most 144 bytes of heap (the record with its name and its name table
 * slot).
 */
Test(registry, release_and_reallocate_keep_the_heap_bounded,
    .timeout = 120)
{
	static char first[2000][PFX_ADDRSTRLEN], again[2000][PFX_ADDRSTRLEN];
	size_t empty0, full0, empty, full;
	int cycle;

	open_with("c", NULL);
	/* the node itself, so that the figures below are its children only */
	alloc_res(PFX_V6, "c", "n", "seed", T0);
	warm_checkpointer(g);
	wal_reset();
	empty0 = reg_heap();
	fill_node(g, 2000, first);
	full0 = reg_heap();
	cr_assert_leq((full0 - empty0) / 2000, 144, "%zu bytes per child",
	    (full0 - empty0) / 2000);
	for (cycle = 0; cycle < 18; cycle++) {
		wal_reset();
		fill_node(g, 2000, NULL);
		cr_assert_eq(reg_count_children(g), 1);
		empty = reg_heap();
		if (cycle == 13)
			empty0 = empty;
		cr_assert(cycle <= 13 || empty <= empty0 + 4096,
		    "cycle %d: %zu > %zu", cycle, empty, empty0);
		fill_node(g, 2000, again);
		full = reg_heap();
		if (cycle == 13)
			full0 = full;
		cr_assert(cycle <= 13 || full <= full0 + 4096,
		    "cycle %d: %zu > %zu", cycle, full, full0);
		for (int i = 0; i < 2000; i++)
			if (strcmp(again[i], first[i]) != 0)
				cr_assert_fail("cycle %d, child %d: %s, was %s",
				    cycle, i, again[i], first[i]);
	}
	cr_assert_leq(full0 - empty0, 2000 * 144);
}

/* Allocates (or, with release set, releases) the names of lengths 1, 1 +
 * step, ... up to 440 ("n" repeated) in node "n", in one batch. */
static void
every_length(bool release, int step, char addrs[][PFX_ADDRSTRLEN])
{
	struct reg_result res;
	char name[448];
	int len, rc;

	begin();
	for (len = 1; len <= 440; len += step) {
		memset(name, 'n', (size_t)len);
		name[len] = '\0';
		if (release) {
			rc = reg_release(g, PFX_V6, "c", "n", name, T0, err,
			    sizeof(err));
		} else {
			rc = reg_allocate(g, PFX_V6, "c", "n", name, T0, &res,
			    err, sizeof(err));
			if (rc == REG_OK && addrs != NULL)
				snprintf(addrs[len - 1], PFX_ADDRSTRLEN, "%s",
				    res.address);
		}
		cr_assert_eq(rc, REG_OK, "%d: %s", len, err);
	}
	commit();
}

/*
 * Records of every size class (names of 1 to 440 bytes, the longest past
 * the slabs, in malloc): released in part and in full and allocated again,
 * each name gets its first-fit address back, the index stays consistent,
 * and once everything is released the heap is back where it was before
 * the fill (empty slabs are returned, name tables freed).
 */
Test(registry, records_of_every_size_reuse_their_memory)
{
	static char first[440][PFX_ADDRSTRLEN], again[440][PFX_ADDRSTRLEN];
	size_t before, after;
	int i;

	open_with("c", NULL);
	alloc_res(PFX_V6, "c", "n", "seed", T0);
	warm_checkpointer(g);
	/* a first round grows the undo log and fills glibc's tcache */
	every_length(false, 1, first);
	every_length(true, 1, NULL);
	before = reg_heap();
	every_length(false, 1, again);
	for (i = 0; i < 440; i++)
		cr_assert_str_eq(again[i], first[i], "length %d", i + 1);
	cr_assert_eq(reg_count_children(g), 441);
	every_length(true, 2, NULL);		/* odd lengths */
	cr_assert_eq(reg_count_children(g), 441 - 220);
	every_length(false, 1, again);
	for (i = 0; i < 440; i++)
		cr_assert_str_eq(again[i], first[i], "length %d", i + 1);
	assert_check(T0, 0, "");
	every_length(true, 1, NULL);
	cr_assert_eq(reg_count_children(g), 1);
	after = reg_heap();
	cr_assert_leq(after, before + 16384, "%zu bytes kept", after - before);
	every_length(false, 1, again);
	for (i = 0; i < 440; i++)
		cr_assert_str_eq(again[i], first[i], "length %d", i + 1);
}

#endif /* !__SANITIZE_ADDRESS__ */

/* Renews every child k<i> of node n whose i is not a multiple of 3 at
 * now, and asserts it kept its address addr[i]. */
static void
assert_survivors(char addr[300][PFX_ADDRSTRLEN], int64_t now)
{
	struct reg_result res;
	char name[32];

	for (int i = 0; i < 300; i++) {
		if (i % 3 == 0)
			continue;
		snprintf(name, sizeof(name), "k%d", i);
		res = alloc_res(PFX_V6, "c", "n", name, now);
		cr_assert(!res.created && strcmp(res.address, addr[i]) == 0,
		    "%s", name);
	}
}

/*
 * GC in a node of 300 children, a third of them stale, with the release
 * cooldown on: the victims go (their addresses cool), the others stay
 * findable at their addresses. Then a batch releasing all the rest is
 * rolled back: every child is back, and nothing is left inconsistent.
 */
Test(registry, gc_and_rollback_in_a_large_node)
{
	static char addr[300][PFX_ADDRSTRLEN];
	struct seen w = { 0 };
	struct reg_result res;
	char name[32];
	int i;

	p.release_cooldown_ns = 10 * NS;
	open_with("c", NULL);
	for (i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "k%d", i);
		res = alloc_res(PFX_V6, "c", "n", name,
		    i % 3 == 0 ? T0 : T0 + 90 * NS);
		snprintf(addr[i], sizeof(addr[i]), "%s", res.address);
	}
	cr_assert_eq(gc1(T0 + 100 * NS, 50 * NS), 100);
	cr_assert_eq(reg_count_cooling(g), 100);
	cr_assert_eq(reg_count_children(g), 200);
	assert_check(T0 + 100 * NS, 0, "");
	/* every survivor where it was; the victims' addresses stay unused */
	assert_survivors(addr, T0 + 95 * NS);
	assert_alloc(PFX_V6, "c", "n", "new", T0 + 95 * NS, "fd00::12d/64");
	/* release everything in one batch, then roll it back */
	begin();
	for (i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "k%d", i);
		cr_assert_eq(reg_release(g, PFX_V6, "c", "n", name,
		    T0 + 96 * NS, err, sizeof(err)), REG_OK);
	}
	cr_assert_eq(reg_release(g, PFX_V6, "c", "n", "new", T0 + 96 * NS,
	    err, sizeof(err)), REG_OK);
	cr_assert_eq(reg_count_children(g), 0);
	reg_rollback(g);
	cr_assert_eq(reg_count_children(g), 201);
	cr_assert_eq(reg_count_cooling(g), 100);
	cr_assert_eq(reg_walk(g, NULL, NULL, on_record, &w), 0);
	cr_assert_eq(w.n, 2 + 2 + 1 + 201);
	cr_assert_str_eq(w.lines[4], "2 n-c-default-1 c-default-1 fd00::/64 "
	    "201/18446744073709551614");
	assert_check(T0 + 100 * NS, 0, "");
	assert_survivors(addr, T0 + 97 * NS);
	cr_assert_eq(reg_expire_cooldowns(g, T0 + 200 * NS), 100);
	assert_alloc(PFX_V6, "c", "n", "newer", T0 + 200 * NS, "fd00::1/64");
}

Test(registry, renewal_refresh_damps_child_writes)
{
	uint64_t commits;

	/* default (Meridio): every renewal writes */
	open_with("c", NULL);
	alloc_res(PFX_V4, "c", "n", "k", T0);
	alloc_res(PFX_V4, "c", "n", "k", T0 + 1 * NS);
	cr_assert_eq(disk_rows(st, "k-n-c-default-0").updated, T0 + 1 * NS);
	reg_close(g);

	/* damped: a renewal within child_refresh_ns of the last write
	 * writes nothing and keeps the address; a later one writes */
	p.child_refresh_ns = 10 * NS;
	g = open_reg(st, &p, NULL);
	commits = store_commit_count(st);
	assert_alloc(PFX_V4, "c", "n", "k", T0 + 5 * NS, "169.255.0.1/24");
	cr_assert_eq(disk_rows(st, "k-n-c-default-0").updated, T0 + 1 * NS);
	assert_alloc(PFX_V4, "c", "n", "k", T0 + 10 * NS, "169.255.0.1/24");
	cr_assert_eq(disk_rows(st, "k-n-c-default-0").updated, T0 + 1 * NS);
	assert_alloc(PFX_V4, "c", "n", "k", T0 + 11 * NS, "169.255.0.1/24");
	cr_assert_eq(disk_rows(st, "k-n-c-default-0").updated, T0 + 11 * NS);
	/* a new child is written at once whatever the damping */
	alloc_res(PFX_V4, "c", "n", "other", T0 + 12 * NS);
	assert_on_disk(true, "other-n-c-default-0", NULL);
	cr_assert_geq(store_commit_count(st), commits + 2);
}

/*
 * Go's zero time and NULL are times Meridio writes: the records load, and
 * garbage collection leaves them alone, as Meridio's does (it skips NULL
 * and zero updated_at); a renewal gives them a time again.
 */
Test(registry, zero_and_null_times_load_and_are_never_reaped)
{
	open_with("c", NULL);
	alloc_res(PFX_V4, "c", "n", "zero", T0);
	alloc_res(PFX_V4, "c", "n", "null", T0);
	alloc_res(PFX_V4, "c", "m", "x", T0);
	reopen_store("UPDATE prefixes SET updated_at="
	    "'0001-01-01 00:00:00+00:00' WHERE id IN "
	    "('zero-n-c-default-0', 'n-c-default-0');"
	    "UPDATE prefixes SET updated_at=NULL WHERE id='null-n-c-default-0';"
	    "UPDATE prefixes SET updated_at='0001-01-01T00:00:00Z' WHERE "
	    "id='m-c-default-0'");
	g = open_reg(st, &p, NULL);
	cr_assert_eq(disk_rows(st, "zero-n-c-default-0").updated, 0);
	cr_assert_eq(gc1(T0 + 1000 * NS, 50 * NS), 1,
	    "only x (stale, below a zero-time node)");
	assert_on_disk(true, "zero-n-c-default-0", "null-n-c-default-0",
	    "m-c-default-0", NULL);
	assert_on_disk(false, "x-m-c-default-0", NULL);
	/* the same addresses, and a time again */
	assert_alloc(PFX_V4, "c", "n", "zero", T0 + 1000 * NS,
	    "169.255.0.1/24");
	cr_assert_eq(disk_rows(st, "zero-n-c-default-0").updated,
	    T0 + 1000 * NS);
	cr_assert_eq(disk_rows(st, "n-c-default-0").updated, T0 + 1000 * NS,
	    "a node without a time is refreshed at once");
}

/* A row whose updated_at is not a time is a data error (a restart cannot
 * help): REG_EDATA, with the row id and the column named. */
Test(registry, unreadable_row_is_a_data_error)
{
	open_with("c", NULL);
	alloc_res(PFX_V4, "c", "n", "x", T0);
	reopen_store("UPDATE prefixes SET updated_at='last tuesday' WHERE "
	    "id='x-n-c-default-0'");
	cr_assert_eq(reg_open(&g, st, &p, NULL, NULL, err, sizeof(err)),
	    REG_EDATA);
	cr_assert_null(g);
	cr_assert(strstr(err, "x-n-c-default-0") && strstr(err, "updated_at") &&
	    strstr(err, "last tuesday"), "%s", err);
}

/* Every registry result maps to the gRPC status its comment names; the
 * results without a client meaning, and unknown values, are INTERNAL. */
Test(registry, grpc_status_of_each_result)
{
	static const struct {
		int rc;
		grpc_status_code want;
	} t[] = {
		{ REG_OK, GRPC_STATUS_OK },
		{ REG_EINVAL, GRPC_STATUS_INVALID_ARGUMENT },
		{ REG_EFAMILY, GRPC_STATUS_FAILED_PRECONDITION },
		{ REG_ETRENCH, GRPC_STATUS_NOT_FOUND },
		{ REG_ENOCONDUIT, GRPC_STATUS_NOT_FOUND },
		{ REG_EXHAUSTED, GRPC_STATUS_RESOURCE_EXHAUSTED },
		{ REG_ESTORE, GRPC_STATUS_UNAVAILABLE },
		{ REG_EMISMATCH, GRPC_STATUS_INTERNAL },
		{ REG_ENOMEM, GRPC_STATUS_INTERNAL },
		{ REG_EDATA, GRPC_STATUS_INTERNAL },
		{ -100, GRPC_STATUS_INTERNAL },
		{ 1, GRPC_STATUS_INTERNAL },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		cr_expect_eq(reg_grpc_status(t[i].rc), t[i].want,
		    "result %d: got %d, want %d", t[i].rc,
		    (int)reg_grpc_status(t[i].rc), (int)t[i].want);
	/* The numbers on the wire are gRPC's (ipamd.v1 Reply.code). */
	cr_expect_eq(reg_grpc_status(REG_EINVAL), 3);
	cr_expect_eq(reg_grpc_status(REG_ENOCONDUIT), 5);
	cr_expect_eq(reg_grpc_status(REG_ESTORE), 14);
}
