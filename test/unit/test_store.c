/*
 * test_store.c - the sqlite store: Meridio's schema and rows, the lock,
 * refusals that leave files untouched, failed commits, time text.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "gotext.h"
#include "store.h"
#include "testutil.h"

/* 2024-03-01 10:00:00 UTC in seconds since the epoch. */
#define T2024 1709287200LL
#define NS 1000000000LL

static char tdir[PATH_MAX];	/* this test's private directory */
static char dbpath[PATH_MAX + 32];	/* tdir/registry.db */
static char err[512];		/* error buffer handed to the store */
static struct store *st;	/* the store under test, closed at teardown */

/* ---- helpers ------------------------------------------------------------ */

/* A copy of one loaded row. */
struct trow {
	char id[128], name[64], cidr[64], parent[128];
	int64_t updated_at;
	bool expirable;
	long seq, parent_seq;
};

/* Every loaded row, in load order. */
struct rows {
	struct trow *v;
	size_t n, cap;
};

static int
collect(void *arg, const struct store_row *r)
{
	struct rows *rs = arg;

	if (rs->n == rs->cap) {
		rs->cap = rs->cap ? rs->cap * 2 : 64;
		rs->v = realloc(rs->v, rs->cap * sizeof(*rs->v));
		cr_assert_not_null(rs->v);
	}
	struct trow *t = &rs->v[rs->n++];
	snprintf(t->id, sizeof(t->id), "%s", r->id);
	snprintf(t->name, sizeof(t->name), "%s", r->name);
	snprintf(t->cidr, sizeof(t->cidr), "%s", r->cidr);
	snprintf(t->parent, sizeof(t->parent), "%s", r->parent_id);
	t->updated_at = r->updated_at;
	t->expirable = r->expirable;
	t->seq = r->seq;
	t->parent_seq = r->parent_seq;
	return 0;
}

/* The rows of the latest load_all (freed by the next one or teardown). */
static struct rows loaded;

static struct rows
load_all(void)
{
	free(loaded.v);
	loaded = (struct rows){ 0 };
	cr_assert_eq(store_load(st, collect, &loaded, err, sizeof(err)), 0,
	    "load: %s", err);
	return loaded;
}

/* The fixture: a private directory for dbpath, removed afterwards. */
static void
setup(void)
{
	testutil_mkdtemp(tdir, sizeof(tdir), NULL, "store");
	snprintf(dbpath, sizeof(dbpath), "%s/registry.db", tdir);
}

static void
teardown(void)
{
	free(loaded.v);
	loaded = (struct rows){ 0 };
	store_close(st);
	st = NULL;
	testutil_rmtree(tdir);
}

TestSuite(store, .init = setup, .fini = teardown);

static size_t
index_of(const struct rows *rs, const char *id)
{
	for (size_t i = 0; i < rs->n; i++)
		if (strcmp(rs->v[i].id, id) == 0)
			return i;
	return SIZE_MAX;
}

static const struct trow *
find(const struct rows *rs, const char *id)
{
	size_t i = index_of(rs, id);

	return i < rs->n ? &rs->v[i] : NULL;
}

static struct store *
open_ok(int flags)
{
	struct store *s = NULL;

	cr_assert_eq(store_open(&s, dbpath, flags, err, sizeof(err)), 0,
	    "open %s: %s", dbpath, err);
	cr_assert_not_null(s);
	return s;
}

/* store_begin and store_commit on st, asserted. */
static void
begin(void)
{
	cr_assert_eq(store_begin(st, err, sizeof(err)), 0, "%s", err);
}

static void
commit(void)
{
	cr_assert_eq(store_commit(st, err, sizeof(err)), 0, "%s", err);
}

/* Closes st before the test ends. */
static void
close_store(void)
{
	store_close(st);
	st = NULL;
}

static void
insert_ok(const char *id, const char *name, const char *cidr,
    const char *parent, int64_t t, bool exp)
{
	struct store_row r = TEST_ROW(id, name, cidr, parent, t, exp);

	cr_assert_eq(store_insert(st, &r, err, sizeof(err)), 0, "insert %s: %s",
	    id, err);
}

/* insert_ok in a transaction of its own. */
static void
put_ok(const char *id, const char *name, const char *cidr,
    const char *parent, int64_t t, bool exp)
{
	begin();
	insert_ok(id, name, cidr, parent, t, exp);
	commit();
}

/* Reads a whole file; *len gets its size. */
static unsigned char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf;
	long n;

	cr_assert_not_null(f, "open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* Asserts that the database file holds exactly the blen bytes before. */
static void
assert_same_bytes(const void *before, size_t blen)
{
	size_t alen;
	unsigned char *after = slurp(dbpath, &alen);

	cr_assert(alen == blen && memcmp(before, after, blen) == 0,
	    "%s: bytes changed", dbpath);
	free(after);
}

static void
write_file(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");

	cr_assert_not_null(f);
	cr_assert_eq(fwrite(buf, 1, len, f), len);
	fclose(f);
}

static bool
exists(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0;
}

/* Asserts that no sqlite side file appeared next to dbpath. */
static void
assert_no_side_files(void)
{
	static const char *const sfx[] = { "-wal", "-shm", "-journal" };
	char p[PATH_MAX + 64];

	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s%s", dbpath, sfx[i]);
		cr_assert(!exists(p), "%s was created", p);
	}
}

/* Asserts that store_open of dbpath with flags fails with a message that
 * names dbpath and contains why, and that it changed neither the file (or
 * made one) nor its directory. */
static void
assert_refused(int flags, const char *why)
{
	size_t len = 0;
	unsigned char *before = exists(dbpath) ? slurp(dbpath, &len) : NULL;

	cr_assert_eq(store_open(&st, dbpath, flags, err, sizeof(err)), -1);
	cr_assert_null(st);
	cr_assert(strstr(err, dbpath) && strstr(err, why), "got: %s", err);
	if (before != NULL)
		assert_same_bytes(before, len);
	else
		cr_assert(!exists(dbpath), "%s was created", dbpath);
	free(before);
	assert_no_side_files();
}

/* A plain sqlite connection, as Meridio's driver would have. */
static sqlite3 *
raw_open(const char *path)
{
	sqlite3 *db = NULL;

	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	return db;
}

static void
raw_exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;

	cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, &msg), SQLITE_OK,
	    "%s: %s", sql, msg ? msg : "?");
}

/* Runs sql on dbpath with a connection of its own. */
static void
raw_sql(const char *sql)
{
	sqlite3 *db = raw_open(dbpath);

	raw_exec(db, sql);
	sqlite3_close(db);
}

/* First column of the first row of sql, as text, into buf ("" if none). */
static void
raw_text(sqlite3 *db, const char *sql, char *buf, size_t len)
{
	sqlite3_stmt *s = NULL;

	cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK,
	    "%s: %s", sql, sqlite3_errmsg(db));
	buf[0] = '\0';
	if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
		snprintf(buf, len, "%s", sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
}

/* Asserts that the first value sql gives (see raw_text) is want. */
static void
assert_raw(sqlite3 *db, const char *sql, const char *want)
{
	char buf[1024];

	raw_text(db, sql, buf, sizeof(buf));
	cr_assert_str_eq(buf, want, "%s", sql);
}

/* Meridio's DDL exactly as gorm issues it. */
static const char meridio_table[] =
    "CREATE TABLE `prefixes` (`id` text,`name` text,`cidr` text,"
    "`parent_id` text,`updated_at` datetime,`expirable` numeric DEFAULT false,"
    "PRIMARY KEY (`id`),CONSTRAINT `fk_prefixes_parent` FOREIGN KEY "
    "(`parent_id`) REFERENCES `prefixes`(`id`))";
static const char *const meridio_indexes[] = {
	"CREATE INDEX `idx_prefixes_expirable` ON `prefixes`(`expirable`)",
	"CREATE INDEX `idx_prefixes_updated_at` ON `prefixes`(`updated_at`)",
	"CREATE UNIQUE INDEX `idx_parent_id_cidr` ON `prefixes`(`cidr`,`parent_id`)",
	"CREATE INDEX `idx_prefixes_parent_id` ON `prefixes`(`parent_id`)",
	"CREATE INDEX `idx_prefixes_name` ON `prefixes`(`name`)",
};

/* Asserts that sqlite keeps each of Meridio's indexes with its exact text. */
static void
assert_meridio_indexes(sqlite3 *db)
{
	char q[256];

	for (size_t i = 0; i < 5; i++) {
		const char *name = strchr(meridio_indexes[i], '`') + 1;
		int n = (int)(strchr(name, '`') - name);

		snprintf(q, sizeof(q), "SELECT sql FROM sqlite_master WHERE "
		    "type='index' AND name='%.*s'", n, name);
		assert_raw(db, q, meridio_indexes[i]);
	}
}

/*
 * Builds dbpath as Meridio's IPAM leaves it (rollback journal, the gorm
 * DDL, rows in go-sqlite3's text), children inserted before their parents
 * so that load order cannot come from insertion order. skip_index names an
 * index left out, or NULL.
 */
static void
build_meridio_db(const char *skip_index)
{
	sqlite3 *db = raw_open(dbpath);

	raw_exec(db, meridio_table);
	for (size_t i = 0; i < 5; i++)
		if (skip_index == NULL || strstr(meridio_indexes[i],
		    skip_index) == NULL)
			raw_exec(db, meridio_indexes[i]);
	raw_exec(db,
	    "INSERT INTO `prefixes` VALUES"
	    "('proxy-a-worker-1-load-balancer-default-0','proxy-a',"
	    " '169.255.0.1/32','worker-1-load-balancer-default-0',"
	    " '2024-03-01 10:00:00.5+00:00',1),"
	    "('bridge-worker-1-load-balancer-default-0','bridge',"
	    " '169.255.0.2/32','worker-1-load-balancer-default-0',"
	    " '2024-03-01 10:00:00+00:00',0),"
	    "('proxy-a-worker-1-load-balancer-default-1','proxy-a',"
	    " 'fd00::1/128','worker-1-load-balancer-default-1',"
	    " '2024-03-01 10:00:00.000000001+00:00',1),"
	    "('bridge-worker-1-load-balancer-default-1','bridge',"
	    " 'fd00::2/128','worker-1-load-balancer-default-1',"
	    " '2024-03-01T10:00:00Z',0),"
	    "('worker-1-load-balancer-default-0','worker-1','169.255.0.0/24',"
	    " 'load-balancer-default-0','2024-03-01 12:00:00.25+02:00',1),"
	    "('worker-1-load-balancer-default-1','worker-1','fd00::/64',"
	    " 'load-balancer-default-1','2024-03-01 10:00:00.999999999+00:00',1),"
	    "('load-balancer-default-0','load-balancer','169.255.0.0/20',"
	    " 'default-0','2024-03-01 10:00:00+00:00',0),"
	    "('load-balancer-default-1','load-balancer','fd00::/56',"
	    " 'default-1','2024-03-01 10:00:00+00:00',0),"
	    "('default-0','default-0','169.255.0.0/16','',"
	    " '2024-03-01 10:00:00.123456789+00:00',0),"
	    "('default-1','default-1','fd00::/48','',"
	    " '2024-03-01 10:00:00+00:00',0)");
	cr_assert_eq(sqlite3_close(db), SQLITE_OK);
}

/* Asserts every row's parent came earlier (or is the root ''). */
static void
assert_parents_first(const struct rows *rs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (rs->v[i].parent[0] == '\0')
			continue;
		size_t p = index_of(rs, rs->v[i].parent);
		cr_assert(p < i, "%s (at %zu) before its parent %s (at %zu)",
		    rs->v[i].id, i, rs->v[i].parent, p);
	}
}

/* Commits n rows (ids and cidrs numbered from first) in one transaction. */
static int
commit_rows(int first, int n)
{
	char id[32], cidr[32];

	if (store_begin(st, err, sizeof(err)) < 0)
		return -1;
	for (int i = first; i < first + n; i++) {
		struct store_row r = TEST_ROW(id, id, cidr, "", T2024 * NS,
		    true);

		snprintf(id, sizeof(id), "row-%d", i);
		snprintf(cidr, sizeof(cidr), "10.%d.%d.%d/32", (i >> 16) & 255,
		    (i >> 8) & 255, i & 255);
		if (store_insert(st, &r, err, sizeof(err)) < 0) {
			store_rollback(st);
			return -1;
		}
	}
	return store_commit(st, err, sizeof(err));
}

static off_t
file_size(const char *suffix)
{
	char p[PATH_MAX + 64];
	struct stat sb;

	snprintf(p, sizeof(p), "%s%s", dbpath, suffix);
	return stat(p, &sb) == 0 ? sb.st_size : 0;
}

/* Sets the soft RLIMIT_FSIZE of this (test) process; writes past it fail
 * with EFBIG instead of raising SIGXFSZ. */
static void
limit_fsize(rlim_t soft)
{
	struct rlimit rl;

	signal(SIGXFSZ, SIG_IGN);
	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
	rl.rlim_cur = soft;
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0, "%s", strerror(errno));
}

/* ---- schema and round trips --------------------------------------------- */

Test(store, new_file_has_meridio_schema_text)
{
	sqlite3 *db;

	st = open_ok(0);
	close_store();
	db = raw_open(dbpath);
	assert_raw(db, "SELECT sql FROM sqlite_master WHERE name='prefixes'",
	    meridio_table);
	assert_meridio_indexes(db);
	assert_raw(db, "PRAGMA journal_mode", "wal");
	sqlite3_close(db);
}

Test(store, round_trip_every_field)
{
	int64_t t = T2024 * NS + 123456789;
	struct rows rs;
	const struct trow *r;

	st = open_ok(0);
	begin();
	insert_ok("default-0", "default-0", "169.255.0.0/16", "", t, false);
	insert_ok("c-default-0", "c", "169.255.16.0/20", "default-0", 0, false);
	insert_ok("n-c-default-0", "n", "169.255.16.0/24", "c-default-0",
	    -1, true);
	commit();
	rs = load_all();
	cr_assert_eq(rs.n, 3);
	r = find(&rs, "default-0");
	cr_assert_not_null(r);
	cr_assert_str_eq(r->name, "default-0");
	cr_assert_str_eq(r->cidr, "169.255.0.0/16");
	cr_assert_str_eq(r->parent, "");
	cr_assert_eq(r->updated_at, t);
	cr_assert(!r->expirable);
	r = find(&rs, "c-default-0");
	cr_assert_eq(r->updated_at, 0);
	cr_assert_str_eq(r->parent, "default-0");
	r = find(&rs, "n-c-default-0");
	cr_assert_eq(r->updated_at, -1);
	cr_assert(r->expirable);
	cr_assert_str_eq(r->cidr, "169.255.16.0/24");
	close_store();

	/* and on disk exactly as go-sqlite3 and gorm write them */
	sqlite3 *db = raw_open(dbpath);

	assert_raw(db, "SELECT updated_at FROM prefixes WHERE id='default-0'",
	    "2024-03-01 10:00:00.123456789+00:00");
	assert_raw(db, "SELECT typeof(updated_at) FROM prefixes WHERE "
	    "id='c-default-0'", "null");
	assert_raw(db, "SELECT typeof(expirable)||expirable FROM prefixes "
	    "WHERE id='n-c-default-0'", "integer1");
	assert_raw(db, "SELECT typeof(parent_id)||'['||parent_id||']' FROM "
	    "prefixes WHERE id='default-0'", "text[]");
	sqlite3_close(db);
}

/* Kind of a row in many_rows_one_transaction: 0 trench, 1 conduit, 2 node. */
static int
kind_order(void *arg, const struct store_row *r)
{
	int *last = arg;
	int kind = r->parent_id[0] == '\0' ? 0 : r->name[0] == 'c' ? 1 : 2;

	cr_assert_geq(kind, *last, "%s came after a deeper row", r->id);
	*last = kind;
	last[1]++;
	return 0;
}

Test(store, many_rows_one_transaction)
{
	char id[128], name[32], parent[64], cidr[64];
	int state[2] = { 0, 0 };	/* last kind, rows seen */

	st = open_ok(STORE_SYNC_NORMAL);
	begin();
	/* nodes first, then conduits, then the trench */
	for (int c = 0; c < 100; c++) {
		for (int n = 0; n < 199; n++) {
			snprintf(name, sizeof(name), "n%d", n);
			snprintf(parent, sizeof(parent), "c%d-default-0", c);
			snprintf(id, sizeof(id), "%s-%s", name, parent);
			snprintf(cidr, sizeof(cidr), "10.%d.%d.0/24", c, n);
			insert_ok(id, name, cidr, parent, T2024 * NS, true);
		}
	}
	for (int c = 0; c < 100; c++) {
		snprintf(name, sizeof(name), "c%d", c);
		snprintf(id, sizeof(id), "%s-default-0", name);
		snprintf(cidr, sizeof(cidr), "10.%d.0.0/16", c);
		insert_ok(id, name, cidr, "default-0", T2024 * NS, false);
	}
	insert_ok("default-0", "default-0", "10.0.0.0/8", "", T2024 * NS,
	    false);
	commit();
	cr_assert_eq(store_commit_count(st), 1);
	cr_assert_eq(store_load(st, kind_order, state, err, sizeof(err)), 0);
	cr_assert_eq(state[1], 1 + 100 + 100 * 199);
}

/* A rollback and a close with a transaction open both leave nothing,
 * and the store is usable again after a rollback. */
Test(store, rollback_and_close_leave_nothing)
{
	st = open_ok(0);
	begin();
	insert_ok("default-0", "default-0", "169.255.0.0/16", "", 1, false);
	insert_ok("c-default-0", "c", "169.255.0.0/20", "default-0", 1, false);
	store_rollback(st);
	cr_assert_eq(store_commit_count(st), 0);
	cr_assert_eq(load_all().n, 0);
	begin();
	commit();
	begin();
	insert_ok("default-0", "default-0", "169.255.0.0/16", "", 1, false);
	close_store();
	st = open_ok(0);
	cr_assert_eq(load_all().n, 0);
}

Test(store, touch_and_delete)
{
	struct rows rs;

	st = open_ok(0);
	begin();
	insert_ok("default-0", "default-0", "169.255.0.0/16", "", 5, false);
	insert_ok("n-default-0", "n", "169.255.0.0/24", "default-0", 5, false);
	commit();

	begin();
	cr_assert_eq(store_touch(st, "n-default-0", T2024 * NS + 7, true, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_eq(store_touch(st, "absent", 1, true, err, sizeof(err)), -1);
	cr_assert(strstr(err, "absent") && strstr(err, "no such row"), "%s",
	    err);
	cr_assert_eq(store_delete(st, "never-there", err, sizeof(err)), 0);
	cr_assert_eq(store_delete(st, "default-0", err, sizeof(err)), 0);
	commit();
	cr_assert_eq(store_commit_count(st), 2);

	rs = load_all();
	cr_assert_eq(rs.n, 1);
	cr_assert_str_eq(rs.v[0].id, "n-default-0");
	cr_assert_eq(rs.v[0].updated_at, T2024 * NS + 7);
	cr_assert(rs.v[0].expirable);
}

Test(store, writes_need_a_transaction)
{
	struct store_row r = TEST_ROW("a", "a", "10.0.0.0/8", "", 1, false);

	st = open_ok(0);
	cr_assert_eq(store_insert(st, &r, err, sizeof(err)), -1);
	cr_assert(strstr(err, "outside a transaction"), "%s", err);
	cr_assert_eq(store_touch(st, "a", 1, false, err, sizeof(err)), -1);
	cr_assert_eq(store_delete(st, "a", err, sizeof(err)), -1);
	cr_assert_eq(store_commit(st, err, sizeof(err)), -1);
	begin();
	cr_assert_eq(store_begin(st, err, sizeof(err)), -1);
	cr_assert(strstr(err, "already open"), "%s", err);
	store_rollback(st);
	cr_assert_eq(load_all().n, 0);
}

Test(store, duplicate_id_fails_alone)
{
	struct store_row dup = TEST_ROW("default-0", "x", "10.0.0.0/8", "", 1,
	    false);
	struct rows rs;

	st = open_ok(0);
	begin();
	insert_ok("default-0", "default-0", "169.255.0.0/16", "", 1, false);
	cr_assert_eq(store_insert(st, &dup, err, sizeof(err)), -1);
	cr_assert(strstr(err, "default-0") && strstr(err, dbpath), "%s", err);
	/* same cidr under the same parent: Meridio's unique index */
	struct store_row twin = TEST_ROW("b", "b", "169.255.0.0/16", "", 1,
	    false);
	cr_assert_eq(store_insert(st, &twin, err, sizeof(err)), -1);
	commit();
	rs = load_all();
	cr_assert_eq(rs.n, 1);
	cr_assert_str_eq(rs.v[0].name, "default-0");
}

/* ---- Meridio's own files ------------------------------------------------ */

Test(store, opens_meridio_database)
{
	struct rows rs;
	const struct trow *r;
	unsigned char *before, *after;
	size_t blen, alen;

	build_meridio_db(NULL);
	before = slurp(dbpath, &blen);
	st = open_ok(STORE_NO_CREATE);
	cr_assert_eq(store_commit_count(st), 0);
	rs = load_all();
	cr_assert_eq(rs.n, 10);
	assert_parents_first(&rs, rs.n);
	cr_assert_eq(rs.v[0].parent[0], '\0');
	cr_assert_eq(rs.v[1].parent[0], '\0');

	r = find(&rs, "default-0");
	cr_assert_str_eq(r->cidr, "169.255.0.0/16");
	cr_assert_eq(r->updated_at, T2024 * NS + 123456789);
	r = find(&rs, "default-1");
	cr_assert_str_eq(r->cidr, "fd00::/48");
	cr_assert_eq(r->updated_at, T2024 * NS);
	r = find(&rs, "worker-1-load-balancer-default-0");
	cr_assert_str_eq(r->name, "worker-1");
	cr_assert_str_eq(r->parent, "load-balancer-default-0");
	cr_assert_eq(r->updated_at, T2024 * NS + 250000000, "+02:00 offset");
	cr_assert(r->expirable);
	r = find(&rs, "worker-1-load-balancer-default-1");
	cr_assert_eq(r->updated_at, T2024 * NS + 999999999);
	r = find(&rs, "bridge-worker-1-load-balancer-default-0");
	cr_assert_str_eq(r->name, "bridge");
	cr_assert_str_eq(r->cidr, "169.255.0.2/32");
	cr_assert(!r->expirable);
	r = find(&rs, "bridge-worker-1-load-balancer-default-1");
	cr_assert_eq(r->updated_at, T2024 * NS, "T and Z variant");
	r = find(&rs, "proxy-a-worker-1-load-balancer-default-1");
	cr_assert_str_eq(r->cidr, "fd00::1/128");
	cr_assert_eq(r->updated_at, T2024 * NS + 1);
	cr_assert(r->expirable);
	r = find(&rs, "proxy-a-worker-1-load-balancer-default-0");
	cr_assert_eq(r->updated_at, T2024 * NS + 500000000);
	close_store();

	/* reading alone changed nothing on disk */
	assert_same_bytes(before, blen);

	/* the first write turns it into WAL; Meridio's rows stay */
	st = open_ok(0);
	put_ok("proxy-b-worker-1-load-balancer-default-0", "proxy-b",
	    "169.255.0.3/32", "worker-1-load-balancer-default-0", T2024 * NS,
	    true);
	cr_assert_eq(load_all().n, 11);
	close_store();
	after = slurp(dbpath, &alen);
	cr_assert_eq(after[18], 2, "WAL write version");
	cr_assert_eq(after[19], 2, "WAL read version");
	free(after);
	free(before);
}

Test(store, adds_missing_index_on_first_write)
{
	sqlite3 *db;

	build_meridio_db("idx_prefixes_name");
	st = open_ok(0);
	begin();
	commit();
	close_store();
	db = raw_open(dbpath);
	assert_raw(db, "SELECT sql FROM sqlite_master WHERE "
	    "name='idx_prefixes_name'", meridio_indexes[4]);
	assert_raw(db, "SELECT count(*) FROM prefixes", "10");
	sqlite3_close(db);
}

Test(store, orphans_come_last)
{
	struct rows rs;

	build_meridio_db(NULL);
	raw_sql("INSERT INTO prefixes VALUES "
	    "('x-gone-default-0','x','169.255.1.1/32','gone-default-0',NULL,1),"
	    "('y-x-gone-default-0','y','169.255.1.2/32','x-gone-default-0',"
	    " NULL,1),"
	    "('c2-default-0','c2','169.255.16.0/20','default-0',NULL,0)");
	st = open_ok(0);
	rs = load_all();
	cr_assert_eq(rs.n, 13);
	cr_assert_geq(index_of(&rs, "x-gone-default-0"), 11);
	cr_assert_geq(index_of(&rs, "y-x-gone-default-0"), 11);
	assert_parents_first(&rs, 11);
	cr_assert_lt(index_of(&rs, "c2-default-0"), 11);
}

/* An updated_at that is not a time stops the load with the row and the
 * value named. */
Test(store, bad_updated_at_stops_load)
{
	struct rows rs = { 0 };

	build_meridio_db(NULL);
	raw_sql("UPDATE prefixes SET updated_at='yesterday' WHERE "
	    "id='load-balancer-default-0'");
	st = open_ok(0);
	cr_assert_eq(store_load(st, collect, &rs, err, sizeof(err)),
	    STORE_EROW);
	cr_assert(strstr(err, "load-balancer-default-0") &&
	    strstr(err, "updated_at") && strstr(err, "yesterday"), "%s", err);
	free(rs.v);
}

/*
 * Integers in updated_at are seconds, or milliseconds when that big. Go's
 * zero time (as go-sqlite3 writes it, or in its other forms) and NULL load
 * as "no time" (0); times Go reads that int64 nanoseconds cannot hold are
 * clamped: before 1678 to 1 ns (long ago), after 2262 to the largest value
 * (never old).
 */
Test(store, updated_at_forms_load)
{
	static const struct {
		const char *id, *sql;
		int64_t want;
	} cases[] = {
		{ "proxy-a-worker-1-load-balancer-default-0", "1709287200",
		    T2024 * NS },
		{ "proxy-a-worker-1-load-balancer-default-1", "1709287200123",
		    T2024 * NS + 123000000 },
		{ "default-0", "'0001-01-01 00:00:00+00:00'", 0 },
		{ "default-1", "NULL", 0 },
		{ "load-balancer-default-0", "'0001-01-01T00:00:00Z'", 0 },
		{ "load-balancer-default-1", "'0001-01-01 00:00:00'", 0 },
		{ "worker-1-load-balancer-default-0",
		    "'1500-06-01 10:00:00+00:00'", 1 },
		{ "worker-1-load-balancer-default-1",
		    "'0001-01-01 00:00:00.5+00:00'", 1 },
		{ "bridge-worker-1-load-balancer-default-0",
		    "'3000-01-01 00:00:00+00:00'", INT64_MAX },
		{ "bridge-worker-1-load-balancer-default-1",
		    "'9999-12-31 23:59:59.999999999+00:00'", INT64_MAX },
	};
	struct rows rs;
	sqlite3 *db;
	char sql[256];
	size_t i;

	build_meridio_db(NULL);
	db = raw_open(dbpath);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(sql, sizeof(sql), "UPDATE prefixes SET updated_at=%s "
		    "WHERE id='%s'", cases[i].sql, cases[i].id);
		raw_exec(db, sql);
	}
	sqlite3_close(db);
	st = open_ok(0);
	rs = load_all();
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(find(&rs, cases[i].id)->updated_at, cases[i].want,
		    "%s: %s gave %" PRId64, cases[i].id, cases[i].sql,
		    find(&rs, cases[i].id)->updated_at);
}

/* A callback's non-zero value stops the walk and comes back. */
static int
stop_at_two(void *arg, const struct store_row *r)
{
	int *n = arg;

	return ++*n == 2 ? 42 : 0;
}

Test(store, load_callback_stops_walk)
{
	int n = 0;

	build_meridio_db(NULL);
	st = open_ok(0);
	cr_assert_eq(store_load(st, stop_at_two, &n, err, sizeof(err)), 42);
	cr_assert_eq(n, 2);
	n = 0;
	cr_assert_eq(store_load(st, stop_at_two, &n, err, sizeof(err)), 42,
	    "the walk restarts from the top");
}

/* ---- the lock ----------------------------------------------------------- */

/* Result of an open attempted by a child process. */
struct child_open {
	int rc;			/* store_open's return */
	double secs;		/* how long it took */
	char err[400];		/* its message */
};

/*
 * Runs store_open of dbpath in a child process; with drop set the child
 * runs as nobody (as root it would ignore permission bits).
 */
static struct child_open
open_in_child(bool drop)
{
	struct child_open res = { 0 };
	int fds[2], status;
	pid_t pid;

	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct store *s = NULL;
		struct timespec a, b;

		close(fds[0]);
		if (drop && geteuid() == 0 && (setgroups(0, NULL) != 0 ||
		    setgid(65534) != 0 || setuid(65534) != 0))
			_exit(3);
		clock_gettime(CLOCK_MONOTONIC, &a);
		res.rc = store_open(&s, dbpath, 0, res.err, sizeof(res.err));
		clock_gettime(CLOCK_MONOTONIC, &b);
		res.secs = (double)(b.tv_sec - a.tv_sec) +
		    (double)(b.tv_nsec - a.tv_nsec) / 1e9;
		store_close(s);
		_exit(write(fds[1], &res, sizeof(res)) == sizeof(res) ? 0 : 1);
	}
	close(fds[1]);
	cr_assert_eq(read(fds[0], &res, sizeof(res)), (ssize_t)sizeof(res));
	close(fds[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "child status %d", status);
	return res;
}

Test(store, second_process_refused_at_once)
{
	struct child_open res;
	char want[128];

	st = open_ok(0);
	put_ok("default-0", "default-0", "169.255.0.0/16", "", 1, false);

	res = open_in_child(false);
	cr_assert_eq(res.rc, -1);
	snprintf(want, sizeof(want), "in use by another meridio-ipam (pid %ld)",
	    (long)getpid());
	cr_assert(strstr(res.err, want) && strstr(res.err, dbpath),
	    "got: %s", res.err);
	cr_log_info("refused in %.6f s", res.secs);

	/* the holder is unharmed */
	put_ok("default-1", "default-1", "fd00::/48", "", 1, false);
	cr_assert_eq(load_all().n, 2);
	close_store();

	/* closing released the lock */
	res = open_in_child(false);
	cr_assert_eq(res.rc, 0, "%s", res.err);
}

/* The lock is taken before sqlite sees the file: an empty file locked by
 * another process stays empty (no schema written), and the refusal names
 * the holder. */
Test(store, locked_file_left_alone)
{
	int ready[2], done[2], status;
	char want[128], c;
	pid_t pid;

	write_file(dbpath, "", 0);
	cr_assert_eq(pipe(ready), 0);
	cr_assert_eq(pipe(done), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open(dbpath, O_RDWR);

		close(ready[0]);
		close(done[1]);
		if (fd < 0 || flock(fd, LOCK_EX) < 0)
			_exit(1);
		if (write(ready[1], "r", 1) != 1)
			_exit(2);
		/* hold the lock until the parent is done (or gone) */
		_exit(read(done[0], &c, 1) >= 0 ? 0 : 3);
	}
	close(ready[1]);
	close(done[0]);
	cr_assert_eq(read(ready[0], &c, 1), 1);
	snprintf(want, sizeof(want), "in use by another meridio-ipam (pid %ld)",
	    (long)pid);
	assert_refused(0, want);
	close(done[1]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(ready[0]);

	/* once released, the same empty file becomes a store */
	st = open_ok(0);
	close_store();
	cr_assert_gt(file_size(""), 0);
}

Test(store, second_open_in_same_process_refused)
{
	struct store *st2 = NULL;

	st = open_ok(0);
	cr_assert_eq(store_open(&st2, dbpath, 0, err, sizeof(err)), -1);
	cr_assert_null(st2);
	cr_assert(strstr(err, "already open"), "%s", err);
	put_ok("default-0", "default-0", "169.255.0.0/16", "", 1, false);
	cr_assert_eq(load_all().n, 1);
}

/* ---- refusals that leave the file alone --------------------------------- */

/* Writes content to dbpath and asserts that open refuses it (see
 * assert_refused). */
static void
assert_refused_untouched(const void *content, size_t len, const char *why)
{
	write_file(dbpath, content, len);
	assert_refused(0, why);
}

Test(store, garbage_file_refused_untouched)
{
	unsigned char buf[8192];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 37 + 11);
	assert_refused_untouched(buf, sizeof(buf), "not an sqlite database");
	assert_refused_untouched("hello", 5, "not an sqlite database");
	/* the magic, then garbage */
	memcpy(buf, "SQLite format 3", 16);
	assert_refused_untouched(buf, sizeof(buf), "not an sqlite database");
}

Test(store, corrupt_database_refused_untouched)
{
	unsigned char *db;
	size_t len;

	build_meridio_db(NULL);
	db = slurp(dbpath, &len);
	/* keep the 100-byte header, wreck the rest of page 1 (the schema) */
	for (size_t i = 100; i < 4096 && i < len; i++)
		db[i] = (unsigned char)(i * 13 + 7);
	assert_refused_untouched(db, len, "not a usable sqlite database");
	free(db);
}

Test(store, foreign_schema_refused_untouched)
{
	raw_sql("CREATE TABLE other (a text)");
	assert_refused(0, "has no table `prefixes`");

	unlink(dbpath);
	raw_sql("CREATE TABLE `prefixes` (`id` text,`name` text,"
	    "`parent_id` text,`updated_at` datetime,`expirable` numeric,"
	    "PRIMARY KEY (`id`))");
	assert_refused(0, "no column `cidr`");
}

/* ---- older Meridio files ------------------------------------------------- */

/* The table of Meridio releases before garbage collection, as gorm made it
 * from the model (id, name, cidr, parent_id; no index). */
static const char old_meridio_table[] =
    "CREATE TABLE `prefixes` (`id` text,`name` text,`cidr` text,"
    "`parent_id` text,PRIMARY KEY (`id`),CONSTRAINT `fk_prefixes_parent` "
    "FOREIGN KEY (`parent_id`) REFERENCES `prefixes`(`id`))";

/* Builds dbpath as an older Meridio left it: trench, conduit, two nodes
 * with connections and bridges, and a conduit of a second trench. */
static void
build_old_meridio_db(void)
{
	sqlite3 *db = raw_open(dbpath);

	raw_exec(db, old_meridio_table);
	raw_exec(db,
	    "INSERT INTO `prefixes` VALUES"
	    "('default-0','default-0','169.255.0.0/16',''),"
	    "('lb-default-0','lb','169.255.0.0/20','default-0'),"
	    "('w1-lb-default-0','w1','169.255.0.0/24','lb-default-0'),"
	    "('w2-lb-default-0','w2','169.255.1.0/24','lb-default-0'),"
	    "('c1-w1-lb-default-0','c1','169.255.0.1/32','w1-lb-default-0'),"
	    "('c2-w1-lb-default-0','c2','169.255.0.3/32','w1-lb-default-0'),"
	    "('bridge-w1-lb-default-0','bridge','169.255.0.2/32',"
	    " 'w1-lb-default-0'),"
	    "('c3-w2-lb-default-0','c3','169.255.1.1/32','w2-lb-default-0'),"
	    "('bridge-w2-lb-default-0','bridge','169.255.1.2/32',"
	    " 'w2-lb-default-0'),"
	    "('other-0','other-0','10.0.0.0/16',''),"
	    "('lb-other-0','lb','10.0.0.0/20','other-0')");
	cr_assert_eq(sqlite3_close(db), SQLITE_OK);
}

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

/*
 * An older file opens as Meridio's start-up leaves it: the two columns and
 * five indexes added, then nodes and their non-bridge children made
 * expirable with updated_at now; trench, conduit and bridge records keep
 * NULL. Nothing is written before the first store_begin.
 */
Test(store, migrates_older_meridio_schema)
{
	static const char *const marked[] = { "w1-lb-default-0",
	    "w2-lb-default-0", "c1-w1-lb-default-0", "c2-w1-lb-default-0",
	    "c3-w2-lb-default-0" };
	static const char *const kept[] = { "default-0", "lb-default-0",
	    "bridge-w1-lb-default-0", "bridge-w2-lb-default-0", "other-0",
	    "lb-other-0" };
	struct store_migration m;
	unsigned char *before;
	size_t blen, i;
	struct rows rs;
	int64_t t0, t1, t;
	sqlite3 *db;
	char buf[512];

	build_old_meridio_db();
	before = slurp(dbpath, &blen);
	t0 = now_ns();
	st = open_ok(STORE_NO_CREATE);
	t1 = now_ns();
	cr_assert(store_migration(st, &m), "no migration reported");
	cr_assert_eq(m.columns, 2);
	cr_assert_eq(m.indexes, 5);
	cr_assert_eq(m.nodes, 2);
	cr_assert_eq(m.children, 3);
	rs = load_all();
	cr_assert_eq(rs.n, 11);
	for (i = 0; i < sizeof(marked) / sizeof(marked[0]); i++) {
		const struct trow *r = find(&rs, marked[i]);
		cr_assert(r->expirable, "%s not expirable", marked[i]);
		cr_assert(r->updated_at >= t0 && r->updated_at <= t1,
		    "%s: updated_at %" PRId64 " not now", marked[i],
		    r->updated_at);
	}
	for (i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
		const struct trow *r = find(&rs, kept[i]);
		cr_assert(!r->expirable, "%s expirable", kept[i]);
		cr_assert_eq(r->updated_at, 0, "%s has a time", kept[i]);
	}
	close_store();

	/* opened and loaded only: every byte as it was */
	assert_same_bytes(before, blen);
	free(before);
	assert_no_side_files();

	/* store_upgrade writes it: Meridio's schema and values */
	t0 = now_ns();
	st = open_ok(0);
	t1 = now_ns();
	cr_assert(store_migration(st, &m));
	cr_assert_eq(store_upgrade(st, err, sizeof(err)), 0, "%s", err);
	close_store();
	st = open_ok(0);
	cr_assert(!store_migration(st, &m), "migrated twice");
	close_store();
	db = raw_open(dbpath);
	assert_raw(db, "SELECT group_concat(name, ',') FROM "
	    "pragma_table_info('prefixes')",
	    "id,name,cidr,parent_id,updated_at,expirable");
	assert_raw(db, "SELECT type || ' ' || coalesce(dflt_value, '-') FROM "
	    "pragma_table_info('prefixes') WHERE name='expirable'",
	    "numeric false");
	assert_raw(db, "SELECT type FROM pragma_table_info('prefixes') WHERE "
	    "name='updated_at'", "datetime");
	assert_meridio_indexes(db);
	raw_text(db, "SELECT updated_at FROM prefixes WHERE "
	    "id='c1-w1-lb-default-0'", buf, sizeof(buf));
	cr_assert_eq(gotext_parse_time(buf, &t), 0, "\"%s\"", buf);
	cr_assert(t >= t0 && t <= t1);
	assert_raw(db, "SELECT count(*) FROM prefixes WHERE expirable=1", "5");
	assert_raw(db, "SELECT count(*) FROM prefixes WHERE updated_at IS NULL "
	    "AND expirable=0", "6");
	sqlite3_close(db);
}

/*
 * A file of the first releases with garbage collection (children
 * expirable, nodes not) gets its nodes marked, as Meridio's migrate()
 * does at every start; the children keep their time.
 */
Test(store, migration_marks_nodes_of_gc_era_file)
{
	struct store_migration m;
	struct rows rs;

	build_meridio_db(NULL);
	raw_sql("UPDATE prefixes SET expirable=0 WHERE name='worker-1'");
	st = open_ok(0);
	cr_assert(store_migration(st, &m));
	cr_assert_eq(m.columns, 0);
	cr_assert_eq(m.indexes, 0);
	cr_assert_eq(m.nodes, 2);
	cr_assert_eq(m.children, 0);
	rs = load_all();
	cr_assert(find(&rs, "worker-1-load-balancer-default-0")->expirable);
	cr_assert_gt(find(&rs, "worker-1-load-balancer-default-0")->updated_at,
	    T2024 * NS + 999999999);
	cr_assert_eq(find(&rs, "proxy-a-worker-1-load-balancer-default-0")
	    ->updated_at, T2024 * NS + 500000000);
}

/* A current file has nothing to migrate, and opening it only reads: a
 * foreign writer's lock (the sqlite3 shell's) does not stand in the way. */
Test(store, current_file_needs_no_migration)
{
	struct store_migration m = { .columns = 9 };
	sqlite3 *db;

	build_meridio_db(NULL);
	db = raw_open(dbpath);
	raw_exec(db, "BEGIN IMMEDIATE");
	st = open_ok(0);
	raw_exec(db, "ROLLBACK");
	sqlite3_close(db);
	cr_assert(!store_migration(st, &m));
	cr_assert_eq(m.columns, 0, "*m not cleared");
	cr_assert_eq(store_upgrade(st, err, sizeof(err)), 0, "%s", err);
	close_store();
	st = open_ok(0);
	cr_assert(!store_migration(st, &m));
}

/* Rows that break Meridio's unique index stop the migration (gorm's
 * AutoMigrate fails the same way): refused, the file untouched. */
Test(store, migration_refused_on_duplicate_cidr)
{
	build_old_meridio_db();
	raw_sql("INSERT INTO prefixes VALUES ('c9-w1-lb-default-0','c9',"
	    "'169.255.0.1/32','w1-lb-default-0')");
	assert_refused(0, "prefixes.cidr");
	cr_assert(strstr(err, "UNIQUE") && strstr(err, "left untouched"),
	    "got: %s", err);
}

Test(store, missing_directory_or_file)
{
	char p[PATH_MAX + 32], dir[PATH_MAX + 16];

	snprintf(dir, sizeof(dir), "%s/nope", tdir);
	snprintf(p, sizeof(p), "%s/registry.db", dir);
	cr_assert_eq(store_open(&st, p, 0, err, sizeof(err)), -1);
	cr_assert(strstr(err, p) && strstr(err, "directory") &&
	    strstr(err, "does not exist"), "%s", err);
	cr_assert(!exists(dir));

	assert_refused(STORE_NO_CREATE, "does not exist");
	cr_assert_eq(store_open(&st, "", 0, err, sizeof(err)), -1);
}

Test(store, read_only_directory_refused)
{
	struct stat root;
	struct child_open res;
	unsigned char *before;
	size_t blen;

	/* nobody must be able to reach the directory: use /tmp; and run
	 * programs at all (not so in a chroot unpacked into a 0700 dir) */
	if (stat("/", &root) == 0 && !(root.st_mode & S_IXOTH))
		cr_skip_test("/ is mode %o here: no other user can run a "
		    "program", (unsigned)(root.st_mode & 07777));
	teardown();
	testutil_mkdtemp(tdir, sizeof(tdir), "/tmp", "store");
	snprintf(dbpath, sizeof(dbpath), "%s/registry.db", tdir);
	st = open_ok(0);
	put_ok("default-0", "default-0", "169.255.0.0/16", "", 1, false);
	close_store();
	before = slurp(dbpath, &blen);

	/* the file is writable, its directory is not: no room for -wal */
	cr_assert_eq(chmod(dbpath, 0666), 0);
	cr_assert_eq(chmod(tdir, 0555), 0);
	res = open_in_child(true);
	cr_assert_eq(res.rc, -1);
	cr_assert(strstr(res.err, dbpath) && strstr(res.err, "not writable"),
	    "%s", res.err);
	assert_same_bytes(before, blen);
	assert_no_side_files();

	/* a read-only file is refused as well */
	cr_assert_eq(chmod(dbpath, 0444), 0);
	cr_assert_eq(chmod(tdir, 0755), 0);
	res = open_in_child(true);
	cr_assert_eq(res.rc, -1);
	cr_assert(strstr(res.err, dbpath) && strstr(res.err, "cannot open for "
	    "writing"), "%s", res.err);
	assert_same_bytes(before, blen);
	assert_no_side_files();

	/* and a new file in a read-only directory */
	unlink(dbpath);
	cr_assert_eq(chmod(tdir, 0555), 0);
	res = open_in_child(true);
	cr_assert_eq(res.rc, -1);
	cr_assert(strstr(res.err, dbpath) && strstr(res.err,
	    "Permission denied"), "%s", res.err);
	cr_assert(!exists(dbpath));
	free(before);
}

/* ---- disk full ---------------------------------------------------------- */

/*
 * Limited by RLIMIT_FSIZE (SIGXFSZ ignored, so writes fail with EFBIG,
 * which sqlite reports as SQLITE_FULL): a big batch fails to commit, the
 * earlier rows still load, and once room is back the same store commits
 * again.
 */
Test(store, disk_full_commit_fails_and_keeps_data)
{
	char id[64], name[300];
	struct rows rs;
	bool failed = false;

	st = open_ok(0);
	cr_assert_eq(commit_rows(0, 10), 0, "%s", err);
	limit_fsize(64 * 1024);
	begin();
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	for (int i = 0; i < 2000 && !failed; i++) {
		struct store_row r = TEST_ROW(id, name, id, "default-0", 1,
		    true);

		snprintf(id, sizeof(id), "big-%d", i);
		/* a cache spill may hit the limit before the commit */
		failed = store_insert(st, &r, err, sizeof(err)) < 0;
	}
	if (!failed)
		cr_assert_eq(store_commit(st, err, sizeof(err)), -1,
		    "the whole batch fit: the limit did nothing");
	/* EFBIG is "disk I/O error" to sqlite, ENOSPC "disk is full" */
	cr_assert(strstr(err, "disk") != NULL, "%s", err);
	if (failed)
		cr_assert_eq(store_commit(st, err, sizeof(err)), -1);
	cr_assert_eq(load_all().n, 10);
	limit_fsize(RLIM_INFINITY);
	put_ok("after", "after", "10.9.9.9/32", "default-0", 1, true);
	cr_assert_eq(store_commit_count(st), 2);
	close_store();

	st = open_ok(0);
	rs = load_all();
	cr_assert_eq(rs.n, 11);
	cr_assert_not_null(find(&rs, "after"));
	cr_assert_null(find(&rs, "big-0"));
}

/* ---- load order against the recursive query it replaced ----------------- */

/* The recursive query store_load ran before it ordered rows itself: rows
 * by depth from the trench rows, then rowid; the unreached ones last. */
static const char oracle_sql[] =
    "WITH RECURSIVE tree(depth, rid, id) AS ("
    " SELECT 0, rowid, id FROM prefixes"
    "  WHERE parent_id = '' OR parent_id IS NULL"
    " UNION ALL"
    " SELECT t.depth + 1, p.rowid, p.id"
    "  FROM tree t JOIN prefixes p ON p.parent_id = t.id"
    "  WHERE p.parent_id <> '' AND t.depth < 64)"
    " SELECT depth, rid, id FROM tree"
    " UNION ALL"
    " SELECT 65, rowid, id FROM prefixes"
    "  WHERE rowid NOT IN (SELECT rid FROM tree)"
    " ORDER BY 1, 2";

/*
 * A tangle of rows inserted in an order unrelated to the tree: forward
 * references, NULL and '' parents, missing parents, a cycle with a child,
 * and a chain deeper than the depth bound. store_load must give exactly
 * the order of the recursive query, and point every row within the bound
 * at its parent's place in the walk (-1 for trench rows and the rest).
 */
Test(store, load_order_matches_recursive_query)
{
	struct rows rs;
	sqlite3 *db;
	sqlite3_stmt *s;
	char sql[512], parent[64];
	size_t n = 0;
	unsigned seed = 12345;
	int i;

	build_meridio_db(NULL);
	db = raw_open(dbpath);
	raw_exec(db, "BEGIN");
	for (i = 0; i < 600; i++) {
		seed = seed * 1103515245 + 12345;
		switch ((seed >> 16) % 10) {
		case 0:
			snprintf(parent, sizeof(parent), "NULL");
			break;
		case 1:
			snprintf(parent, sizeof(parent), "''");
			break;
		case 2:
			snprintf(parent, sizeof(parent), "'gone%d'", i);
			break;
		default:
			snprintf(parent, sizeof(parent), "'r%u'",
			    (seed >> 8) % 600);
			break;
		}
		snprintf(sql, sizeof(sql), "INSERT INTO prefixes VALUES "
		    "('r%d','n','10.%d.%d.1/32',%s,NULL,1)", i, i / 256,
		    i % 256, parent);
		raw_exec(db, sql);
	}
	/* A chain of 80 below a trench row, inserted bottom-up. */
	for (i = 79; i >= 0; i--) {
		snprintf(parent, sizeof(parent), "d%d", i - 1);
		snprintf(sql, sizeof(sql), "INSERT INTO prefixes VALUES "
		    "('d%d','d','10.200.%d.1/32','%s',NULL,0)", i, i,
		    i ? parent : "");
		raw_exec(db, sql);
	}
	raw_exec(db, "INSERT INTO prefixes VALUES "
	    "('ca','c','10.201.0.1/32','cb',NULL,1),"
	    "('cb','c','10.201.0.2/32','ca',NULL,1),"
	    "('cc','c','10.201.0.3/32','cb',NULL,1)");
	raw_exec(db, "COMMIT");

	st = open_ok(0);
	rs = load_all();
	cr_assert_eq(sqlite3_prepare_v2(db, oracle_sql, -1, &s, NULL),
	    SQLITE_OK, "%s", sqlite3_errmsg(db));
	while (sqlite3_step(s) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(s, 2);
		cr_assert_lt(n, rs.n, "store_load gave fewer rows");
		int depth = sqlite3_column_int(s, 0);
		const struct trow *r = &rs.v[n];

		cr_assert_str_eq(r->id, id ? id : "", "row %zu", n);
		cr_assert_eq(r->seq, (long)n);
		if (depth == 0 || depth > 64) {
			cr_assert_eq(r->parent_seq, -1, "row %s", r->id);
		} else {
			cr_assert(r->parent_seq >= 0 && r->parent_seq <
			    (long)n, "row %s: parent at %ld", r->id,
			    r->parent_seq);
			cr_assert_str_eq(rs.v[r->parent_seq].id, r->parent);
		}
		n++;
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	cr_assert_eq(n, rs.n);
	cr_assert_eq(n, 10 + 600 + 80 + 3);
	/* The bound is real: d65.. and the cycle come after everything. */
	cr_assert_gt(index_of(&rs, "d65"), index_of(&rs, "d64"));
	cr_assert_geq(index_of(&rs, "cc"), rs.n - 200);
}

/* ---- checkpoints in the background ---------------------------------------- */

/* mxFrame (frames in the WAL) and nBackfill (frames copied back) from the
 * wal-index file, as sqlite lays it out (native byte order). */
static void
wal_index(uint32_t *mx, uint32_t *backfill)
{
	char p[PATH_MAX + 40];
	unsigned char h[100];
	int fd;

	snprintf(p, sizeof(p), "%s-shm", dbpath);
	fd = open(p, O_RDONLY);
	cr_assert_geq(fd, 0, "%s: %s", p, strerror(errno));
	cr_assert_eq(pread(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
	close(fd);
	memcpy(mx, h + 16, 4);
	memcpy(backfill, h + 96, 4);
}

/*
 * Commits leave the WAL to a thread of the store's own: a commit that
 * leaves more than 1 MiB of frames (STORE_CKPT_MIN_BYTES) starts it, it copies
 * the frames back while nothing commits, and store_close stops it and
 * removes the WAL.
 */
Test(store, checkpoints_run_in_a_thread)
{
	uint32_t mx = 0, done = 0;
	char wal[PATH_MAX + 40];
	int i, rows, base;

	st = open_ok(0);
	base = testutil_threads();
	/* 1 MiB of 4 KiB pages: STORE_CKPT_MIN_BYTES */
	for (i = 0; i < 20000 && mx < 256; i++) {
		cr_assert_eq(testutil_threads(), base,
		    "a thread before 256 frames");
		cr_assert_eq(commit_rows(i, 1), 0, "%s", err);
		wal_index(&mx, &done);
	}
	rows = i;
	cr_assert_geq(mx, 256, "the WAL never reached 256 frames");
	cr_assert_eq(testutil_threads(), base + 1);
	for (i = 0; i < 500 && done < mx; i++) {
		usleep(10000);
		wal_index(&mx, &done);
	}
	cr_assert_eq(done, mx, "only %u of %u frames copied back", done, mx);
	close_store();
	cr_assert_eq(testutil_threads(), base);
	snprintf(wal, sizeof(wal), "%s-wal", dbpath);
	cr_assert(!exists(wal), "the WAL outlived the store");
	st = open_ok(0);
	cr_assert_eq(load_all().n, (size_t)rows);
}

/* The rows store_open reads ahead (while quick_check runs) serve the first
 * load only if nothing was written in between. */
Test(store, load_after_a_write_sees_the_write)
{
	struct rows rs;

	build_meridio_db(NULL);
	st = open_ok(STORE_NO_CREATE);
	put_ok("late-default-0", "late", "169.255.32.0/20", "default-0",
	    T2024 * NS, false);
	rs = load_all();
	cr_assert_eq(rs.n, 11);
	cr_assert_not_null(find(&rs, "late-default-0"));
	/* and a second load reads the file again */
	cr_assert_eq(load_all().n, 11);
}

Test(store, renewal_touch_keeps_expirable_and_normalises_foreign_values)
{
	struct rows rs;
	sqlite3 *raw;

	/* rows as another writer could leave them: expirable as text */
	st = open_ok(0);
	begin();
	insert_ok("a-x", "a", "fd00::1/128", "x", 5, true);
	insert_ok("b-x", "b", "fd00::2/128", "x", 5, false);
	insert_ok("c-x", "c", "fd00::3/128", "x", 5, true);
	commit();
	close_store();
	raw_sql("UPDATE prefixes SET expirable='true' WHERE id='c-x'");

	st = open_ok(STORE_NO_CREATE);
	begin();
	/* renewals: same expirable, new time */
	cr_assert_eq(store_touch(st, "a-x", T2024 * NS + 1, true, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_eq(store_touch(st, "b-x", T2024 * NS + 2, false, err,
	    sizeof(err)), 0, "%s", err);
	/* stored as text: rewritten as go-sqlite3 writes a bool */
	cr_assert_eq(store_touch(st, "c-x", T2024 * NS + 3, true, err,
	    sizeof(err)), 0, "%s", err);
	commit();
	rs = load_all();
	cr_assert_eq(rs.n, 3);
	cr_assert_eq(find(&rs, "a-x")->updated_at, T2024 * NS + 1);
	cr_assert(find(&rs, "a-x")->expirable);
	cr_assert_eq(find(&rs, "b-x")->updated_at, T2024 * NS + 2);
	cr_assert(!find(&rs, "b-x")->expirable);
	cr_assert_eq(find(&rs, "c-x")->updated_at, T2024 * NS + 3);
	cr_assert(find(&rs, "c-x")->expirable);
	close_store();
	raw = raw_open(dbpath);
	assert_raw(raw, "SELECT typeof(expirable) || expirable FROM prefixes "
	    "WHERE id='c-x'", "integer1");
	assert_raw(raw, "PRAGMA integrity_check", "ok");
	sqlite3_close(raw);
}

/* ---- WAL size and checkpoint failures ----------------------------------- */

/*
 * Small commits keep coming: the WAL stays a few MiB beside a small file
 * instead of growing to tens of MiB before its first checkpoint. It is
 * rewritten from its start after each checkpoint, not truncated and grown
 * again (every commit of a growing file costs more): once it reached
 * 2 MiB it stays at least that big.
 */
Test(store, wal_stays_small_and_is_reused_under_steady_commits)
{
	struct store_health h;
	off_t wal, most = 0, reached = 0, low = -1;

	st = open_ok(STORE_SYNC_NORMAL);
	for (int i = 0; i < 1500; i++) {
		cr_assert_eq(commit_rows(i * 4, 4), 0, "commit %d: %s", i, err);
		wal = file_size("-wal");
		if (wal > most)
			most = wal;
		if (wal >= (2 << 20))
			reached = wal;
		else if (reached && (low < 0 || wal < low))
			low = wal;
	}
	store_health(st, &h);
	cr_log_info("largest WAL %lld bytes, file %lld bytes, %llu "
	    "checkpoints", (long long)most, (long long)file_size(""),
	    (unsigned long long)h.ckpt_runs);
	cr_assert_lt(most, 6 << 20, "WAL grew to %lld bytes", (long long)most);
	cr_assert_gt(file_size(""), 1 << 20, "nothing was checkpointed");
	cr_assert_gt(reached, 0, "the WAL never reached 2 MiB");
	cr_assert_eq(low, -1, "the WAL shrank to %lld bytes after reaching "
	    "2 MiB", (long long)low);
}

/* A checkpoint that cannot grow the file (RLIMIT_FSIZE below what it
 * needs) is counted with its error, and the condition clears once one
 * succeeds again. Commits themselves still fit (the WAL is small). */
Test(store, failed_checkpoints_are_counted)
{
	struct store_health h;
	int next = 0;

	st = open_ok(STORE_SYNC_NORMAL);
	cr_assert_eq(commit_rows(next, 20000), 0, "%s", err);
	next += 20000;
	cr_assert_eq(store_checkpoint(st, err, sizeof(err)), 0, "%s", err);
	store_health(st, &h);
	cr_assert_eq(h.ckpt_failures, 0);
	cr_assert_not(h.ckpt_failing);
	limit_fsize((rlim_t)file_size(""));
	/* Commits until a checkpoint (the store's own, by size) failed. */
	for (int i = 0; i < 2000; i++) {
		cr_assert_eq(commit_rows(next, 20), 0, "commit %d: %s", i, err);
		next += 20;
		store_health(st, &h);
		if (h.ckpt_failures > 0)
			break;
		usleep(1000);
	}
	cr_assert_gt(h.ckpt_failures, 0, "no checkpoint failed; WAL %lld "
	    "bytes", (long long)file_size("-wal"));
	cr_assert(h.ckpt_failing);
	cr_assert(strstr(h.ckpt_error, "checkpoint") != NULL, "%s",
	    h.ckpt_error);
	cr_assert(strstr(h.ckpt_error, dbpath) != NULL, "%s", h.ckpt_error);
	cr_assert_eq(store_checkpoint(st, err, sizeof(err)), -1);
	cr_assert(strstr(err, "checkpoint") != NULL, "%s", err);
	limit_fsize(RLIM_INFINITY);
	cr_assert_eq(store_checkpoint(st, err, sizeof(err)), 0, "%s", err);
	store_health(st, &h);
	cr_assert_not(h.ckpt_failing);
	cr_assert_str_empty(h.ckpt_error);
	cr_assert_gt(h.ckpt_failures, 0);
}

/* A commit that fails for room is counted and makes the store copy the
 * WAL back at once, so that the next commit can reuse the WAL's space. */
Test(store, commit_failed_for_room_checkpoints)
{
	struct store_health h;

	st = open_ok(STORE_SYNC_NORMAL);
	cr_assert_eq(commit_rows(0, 2000), 0, "%s", err);
	store_health(st, &h);
	cr_assert_eq(h.commit_failures, 0);
	limit_fsize((rlim_t)(file_size("-wal") + 4096));
	cr_assert_eq(commit_rows(2000, 20000), -1, "a commit past the "
	    "limit succeeded");
	store_health(st, &h);
	cr_assert_eq(h.commit_failures, 1);
	cr_assert_geq(h.ckpt_runs, 1, "no checkpoint after the failure");
	/* The WAL was copied back: a small commit now restarts it. */
	cr_assert_eq(commit_rows(50000, 10), 0, "%s", err);
}

/* ---- the lock held on behalf of another process ------------------------- */

/* store_lock_file creates and locks the file without writing a byte;
 * another process is refused with the holder's pid; the descriptor,
 * handed to store_open_locked, is the store's lock; a second
 * store_lock_file meanwhile answers 1 (held). */
Test(store, lock_file_then_open_locked)
{
	struct child_open res;
	struct stat sb;
	bool created = false, c2;
	long holder = -1, h2;
	int fd = -1, fd2;
	char want[128];

	cr_assert_eq(store_lock_file(dbpath, 0, &fd, &created, &holder, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert(created);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	cr_assert_eq(stat(dbpath, &sb), 0);
	cr_assert_eq(sb.st_size, 0);
	res = open_in_child(false);
	cr_assert_eq(res.rc, -1);
	snprintf(want, sizeof(want), "in use by another meridio-ipam (pid %ld)",
	    (long)getpid());
	cr_assert(strstr(res.err, want) != NULL, "got: %s", res.err);
	cr_assert_eq(store_lock_file(dbpath, 0, &fd2, &c2, &h2, err,
	    sizeof(err)), 1, "%s", err);
	cr_assert_eq(h2, (long)getpid());
	cr_assert_not(c2);
	cr_assert_eq(fd2, -1);
	/* the holder's own descriptor opens the database */
	cr_assert_eq(store_open_locked(&st, dbpath, dup(fd), 0, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_eq(commit_rows(0, 3), 0, "%s", err);
	close_store();
	/* still locked: fd is open */
	res = open_in_child(false);
	cr_assert_eq(res.rc, -1);
	close(fd);
	res = open_in_child(false);
	cr_assert_eq(res.rc, 0, "%s", res.err);
}

/* A descriptor of a file that was replaced at the path since it was
 * locked is refused, and the new file is left alone. */
Test(store, open_locked_refuses_a_replaced_file)
{
	char moved[PATH_MAX + 40];
	bool created;
	long holder;
	int fd;

	cr_assert_eq(store_lock_file(dbpath, 0, &fd, &created, &holder, err,
	    sizeof(err)), 0, "%s", err);
	snprintf(moved, sizeof(moved), "%s.old", dbpath);
	cr_assert_eq(rename(dbpath, moved), 0);
	close(open(dbpath, O_CREAT | O_WRONLY, 0644));
	cr_assert_eq(store_open_locked(&st, dbpath, fd, 0, err, sizeof(err)),
	    -1);
	cr_assert(strstr(err, "not the file that was locked") != NULL, "%s",
	    err);
	cr_assert_null(st);
	cr_assert_eq(file_size(""), 0);
}

/* ---- the files at the path ---------------------------------------------- */

/* store_check_files passes while the files are the store's, and names the
 * file once one is removed or the database shrinks. */
Test(store, check_files_sees_removal_and_truncation)
{
	char p[PATH_MAX + 40];

	st = open_ok(0);
	cr_assert_eq(commit_rows(0, 50), 0, "%s", err);
	cr_assert_eq(store_check_files(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(store_check_files(st, err, sizeof(err)), 0, "%s", err);
	snprintf(p, sizeof(p), "%s-wal", dbpath);
	cr_assert_eq(unlink(p), 0);
	cr_assert_eq(store_check_files(st, err, sizeof(err)), -1);
	cr_assert(strstr(err, p) != NULL && strstr(err, "removed"), "%s", err);
	close_store();

	st = open_ok(0);
	cr_assert_eq(commit_rows(100, 50), 0, "%s", err);
	cr_assert_eq(store_checkpoint(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(store_check_files(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(truncate(dbpath, 0), 0);
	cr_assert_eq(store_check_files(st, err, sizeof(err)), -1);
	cr_assert(strstr(err, "truncated") != NULL, "%s", err);
	close_store();
	/* the store left the truncated file alone at close */
	cr_assert_eq(file_size(""), 0);
}

/* A foreign reader (the sqlite3 shell in a long query) holds a snapshot:
 * the writer's own checkpoints past the hard WAL size cannot finish, but
 * they must not make a commit wait for the reader. */
Test(store, foreign_reader_does_not_stall_commits)
{
	struct timespec a, b;
	double worst = 0, t;
	sqlite3 *rd = NULL;
	sqlite3_stmt *s = NULL;

	st = open_ok(STORE_SYNC_NORMAL);
	cr_assert_eq(commit_rows(0, 10), 0, "%s", err);
	cr_assert_eq(sqlite3_open(dbpath, &rd), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(rd, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(rd, "SELECT count(*) FROM prefixes",
	    -1, &s, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
	for (int i = 0; i < 600; i++) {
		clock_gettime(CLOCK_MONOTONIC, &a);
		cr_assert_eq(commit_rows(100 + i * 10, 10), 0, "%s", err);
		clock_gettime(CLOCK_MONOTONIC, &b);
		t = (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) /
		    1e9;
		if (t > worst)
			worst = t;
	}
	cr_log_info("slowest commit %.3f s, WAL %lld bytes", worst,
	    (long long)file_size("-wal"));
	cr_assert_gt(file_size("-wal"), 5 << 20, "the WAL never passed the "
	    "writer's checkpoint size");
	cr_assert_lt(worst, 1.0, "a commit waited %.3f s for the reader",
	    worst);
	sqlite3_finalize(s);
	sqlite3_exec(rd, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(rd);
}
