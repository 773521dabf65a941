/*
 * Unit tests of lib/walbuf: a commit's WAL frames reach the file in a few
 * large writes instead of two per page, nothing is lost or reordered, and
 * a failed write still fails the commit (and only it).
 *
 * The writes are counted (and failed on demand) below sqlite, by replacing
 * the unix VFS's pwrite system call with xSetSystemCall, the hook sqlite's
 * own test suite uses; it is put back after each test.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <sqlite3.h>

#include "walbuf.h"

#define TEST_VFS "test-walbuf"

static char tdir[256];
static char tpath[300];
static sqlite3_vfs *unixvfs;
static sqlite3_syscall_ptr real_pwrite, real_pwrite64;
static atomic_long nwrites;		/* pwrite calls seen */
static atomic_bool fail_writes;		/* fail them with ENOSPC */
static atomic_size_t max_write;		/* largest pwrite seen */

/* Counts one pwrite of n bytes; -1 (ENOSPC) when writes are to fail. */
static int
note_write(size_t n)
{
	size_t m = atomic_load(&max_write);

	atomic_fetch_add(&nwrites, 1);
	while (n > m && !atomic_compare_exchange_weak(&max_write, &m, n))
		;
	if (atomic_load(&fail_writes)) {
		errno = ENOSPC;
		return -1;
	}
	return 0;
}

typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);

/* What the unix VFS calls instead of pwrite and pwrite64. */
static ssize_t
count_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	return note_write(n) < 0 ? -1 :
	    ((pwrite_fn)real_pwrite)(fd, buf, n, off);
}

static ssize_t
count_pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	return note_write(n) < 0 ? -1 :
	    ((pwrite_fn)real_pwrite64)(fd, buf, n, off);
}

static void
setup(void)
{
	const char *base = getenv("IPAM_TEST_TMP");
	char err[128];

	snprintf(tdir, sizeof(tdir), "%s/walbuf.XXXXXX",
	    base != NULL ? base : "/tmp");
	cr_assert_not_null(mkdtemp(tdir));
	snprintf(tpath, sizeof(tpath), "%s/t.db", tdir);
	cr_assert_eq(walbuf_register(TEST_VFS, NULL, err, sizeof(err)), 0,
	    "%s", err);
	unixvfs = sqlite3_vfs_find("unix");
	cr_assert_not_null(unixvfs);
	real_pwrite = unixvfs->xGetSystemCall(unixvfs, "pwrite");
	real_pwrite64 = unixvfs->xGetSystemCall(unixvfs, "pwrite64");
	if (real_pwrite != NULL)
		unixvfs->xSetSystemCall(unixvfs, "pwrite",
		    (sqlite3_syscall_ptr)count_pwrite);
	if (real_pwrite64 != NULL)
		unixvfs->xSetSystemCall(unixvfs, "pwrite64",
		    (sqlite3_syscall_ptr)count_pwrite64);
	atomic_store(&nwrites, 0);
	atomic_store(&max_write, 0);
	atomic_store(&fail_writes, false);
}

static void
teardown(void)
{
	char cmd[400];

	unixvfs->xSetSystemCall(unixvfs, NULL, NULL);	/* all back */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tdir);
	(void)system(cmd);
}

TestSuite(walbuf, .init = setup, .fini = teardown);

/* Opens tpath through vfs (NULL = default) in WAL, synchronous=FULL, with
 * automatic checkpoints off so that a commit writes only the WAL. */
static sqlite3 *
open_db(const char *vfs)
{
	sqlite3 *db = NULL;

	cr_assert_eq(sqlite3_open_v2(tpath, &db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE, vfs), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, "PRAGMA journal_mode=WAL;"
	    "PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=0;"
	    "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT);"
	    "CREATE INDEX IF NOT EXISTS t_v ON t(v);", NULL, NULL, NULL),
	    SQLITE_OK, "%s", sqlite3_errmsg(db));
	return db;
}

/* Inserts rows [from, from + n) in one transaction; returns sqlite's
 * result of the COMMIT. Values are long and random-ish so that the index
 * touches many pages. */
static int
insert_rows(sqlite3 *db, int from, int n)
{
	sqlite3_stmt *s;
	char v[200];
	int rc;

	cr_assert_eq(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(db, "INSERT INTO t VALUES (?1, ?2)",
	    -1, &s, NULL), SQLITE_OK);
	for (int i = from; i < from + n; i++) {
		snprintf(v, sizeof(v), "%08x-%0160d", (unsigned)i * 2654435761u,
		    i);
		sqlite3_bind_int(s, 1, i);
		sqlite3_bind_text(s, 2, v, -1, SQLITE_TRANSIENT);
		cr_assert_eq(sqlite3_step(s), SQLITE_DONE);
		sqlite3_reset(s);
	}
	sqlite3_finalize(s);
	rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

static long
count_rows(sqlite3 *db)
{
	sqlite3_stmt *s;
	long n;

	cr_assert_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &s,
	    NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
	n = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return n;
}

static void
assert_intact(sqlite3 *db)
{
	sqlite3_stmt *s;

	cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s,
	    NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
	cr_assert_str_eq((const char *)sqlite3_column_text(s, 0), "ok");
	sqlite3_finalize(s);
}

/* Frames in the WAL now, from a passive checkpoint's report. */
static int
wal_frames(sqlite3 *db)
{
	int log = -1, ckpt = -1;

	sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log,
	    &ckpt);
	return log;
}

/* Commits 400 rows on db after restarting its WAL; *frames gets
 * the frames the commit wrote. Returns the pwrite calls it took. */
static long
measured_commit(sqlite3 *db, int *frames)
{
	long before, writes;

	cr_assert_eq(insert_rows(db, 0, 10), SQLITE_OK);
	cr_assert_eq(sqlite3_wal_checkpoint_v2(db, NULL,
	    SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL), SQLITE_OK);
	before = atomic_load(&nwrites);
	cr_assert_eq(insert_rows(db, 1000, 400), SQLITE_OK);
	writes = atomic_load(&nwrites) - before;
	*frames = wal_frames(db);	/* a checkpoint: writes of its own */
	return writes;
}

Test(walbuf, a_commit_goes_out_in_few_writes)
{
	sqlite3 *db = open_db(TEST_VFS);
	int frames;
	long writes = measured_commit(db, &frames);

	cr_assert_gt(frames, 20, "the commit wrote %d frames", frames);
	/* (frames * (4096 + 24) + 32) bytes in pieces of 120-124 KiB: the
	 * most gathered at a time is one piece */
	cr_assert_leq(writes, 1 + (frames * 4120L + 32) / (120 * 1024) + 1,
	    "%ld writes for %d frames", writes, frames);
	cr_assert_leq(atomic_load(&max_write), 124 * 1024);
	cr_assert_geq(atomic_load(&max_write), 120 * 1024);
	cr_assert_eq(count_rows(db), 410);
	sqlite3_close(db);
}

Test(walbuf, the_plain_vfs_writes_each_frame_twice)
{
	/* what the first test guards against, seen with the same counter */
	sqlite3 *db = open_db(NULL);
	int frames;
	long writes = measured_commit(db, &frames);

	cr_assert_geq(writes, 2L * frames, "%ld writes for %d frames", writes,
	    frames);
	sqlite3_close(db);
}

Test(walbuf, other_connections_see_every_commit)
{
	sqlite3 *w = open_db(TEST_VFS);
	sqlite3 *r = NULL;

	cr_assert_eq(sqlite3_open_v2(tpath, &r, SQLITE_OPEN_READONLY, NULL),
	    SQLITE_OK);
	for (int i = 0; i < 20; i++) {
		cr_assert_eq(insert_rows(w, i * 50, 50), SQLITE_OK);
		cr_assert_eq(count_rows(r), (i + 1) * 50L);
	}
	assert_intact(r);
	sqlite3_close(r);
	sqlite3_close(w);
}

Test(walbuf, a_failed_write_fails_only_its_commit)
{
	sqlite3 *db = open_db(TEST_VFS);
	sqlite3 *r = NULL;
	int rc;

	cr_assert_eq(insert_rows(db, 0, 100), SQLITE_OK);
	atomic_store(&fail_writes, true);
	rc = insert_rows(db, 100, 100);
	atomic_store(&fail_writes, false);
	cr_assert_eq(rc & 0xff, SQLITE_FULL, "commit gave %d (%s)", rc,
	    sqlite3_errstr(rc));
	cr_assert_eq(count_rows(db), 100);
	/* the connection goes on, and a new one agrees */
	cr_assert_eq(insert_rows(db, 200, 100), SQLITE_OK);
	cr_assert_eq(count_rows(db), 200);
	cr_assert_eq(sqlite3_open_v2(tpath, &r, SQLITE_OPEN_READONLY, NULL),
	    SQLITE_OK);
	cr_assert_eq(count_rows(r), 200);
	assert_intact(r);
	sqlite3_close(r);
	sqlite3_close(db);
}

Test(walbuf, a_transaction_larger_than_the_cache_reads_back_its_frames)
{
	/* a tiny cache makes sqlite spill pages into the WAL mid-transaction
	 * and read them back (and rewrite frames in place): the gathered
	 * bytes must be on disk before any read */
	sqlite3 *db = open_db(TEST_VFS);

	cr_assert_eq(sqlite3_exec(db, "PRAGMA cache_size=10", NULL, NULL,
	    NULL), SQLITE_OK);
	cr_assert_eq(insert_rows(db, 0, 3000), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, "UPDATE t SET v = v || 'x' WHERE k % 7 = 0",
	    NULL, NULL, NULL), SQLITE_OK);
	cr_assert_eq(count_rows(db), 3000);
	assert_intact(db);
	sqlite3_close(db);
}

Test(walbuf, everything_is_in_the_file_after_close)
{
	sqlite3 *db = open_db(TEST_VFS);

	cr_assert_eq(insert_rows(db, 0, 500), SQLITE_OK);
	cr_assert_eq(insert_rows(db, 500, 1), SQLITE_OK);
	sqlite3_close(db);
	cr_assert_eq(sqlite3_open_v2(tpath, &db, SQLITE_OPEN_READONLY, NULL),
	    SQLITE_OK);
	cr_assert_eq(count_rows(db), 501);
	assert_intact(db);
	sqlite3_close(db);
}

Test(walbuf, registering_twice_is_harmless_and_bad_names_are_refused)
{
	char err[128] = "";

	cr_assert_eq(walbuf_register(TEST_VFS, NULL, err, sizeof(err)), 0);
	cr_assert_not_null(sqlite3_vfs_find(TEST_VFS));
	cr_assert_eq(walbuf_register("x", "no-such-vfs", err, sizeof(err)),
	    -1);
	cr_assert_not_null(strstr(err, "no-such-vfs"), "%s", err);
	cr_assert_eq(walbuf_register(NULL, NULL, err, sizeof(err)), -1);
}
