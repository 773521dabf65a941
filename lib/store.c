/*
 * store.c - Meridio's `prefixes` table in sqlite, behind an exclusive lock.
 *
 * Opening order matters, because a refused file must stay byte-for-byte as
 * it was: stat (refuse a file this process already holds), open a lock fd,
 * flock(LOCK_EX|LOCK_NB), check the 100-byte sqlite header ourselves, check
 * the directory is writable, and only then hand the path to sqlite, which
 * first only reads (schema check). The lock fd stays open until after
 * sqlite3_close: closing any fd of a file drops the process's POSIX locks on
 * it, sqlite's included, so it is never closed early.
 *
 * An existing file is switched to WAL and given its missing indexes on the
 * first store_begin, not at open, so that a caller who refuses the file after
 * store_load (e.g. prefix mismatch) leaves it unchanged on disk.
 *
 * Checkpoints run in a thread of their own (storeckpt.c) rather than
 * inside the committing call, as sqlite does by default, where each one
 * would stall a commit. The other jobs have files of their own: the lock
 * and the checks before sqlite sees the file (storelock.c), the schema
 * and migration (storeschema.c), the load scan (storescan.c). Their shared state is struct store
 * (storeint.h).
 */
#include "errbuf.h"
#include "gotext.h"
#include "now.h"
#include "store.h"
#include "storeint.h"
#include "walbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <pthread.h>
#include <unistd.h>

#include <sqlite3.h>

/* The VFS of durable stores: sqlite's default, WAL writes gathered. */
#define STORE_VFS "ipam-walbuf"

/* Stores open in this process (the db worker has one; not thread-safe). */
static struct store *store_list;

static void store_write_failed(struct store *st);

/* Text of each kept statement, indexed by enum store_stmt_id. The load
 * query is one scan of the table in rowid (insertion) order: store_load
 * orders the rows by depth itself, much faster than a recursive query
 * with a sort. */
static const char *const store_sql[STORE_ST_COUNT] = {
	[STORE_ST_INSERT] = "INSERT INTO `prefixes` (`id`,`name`,`cidr`,"
	    "`parent_id`,`updated_at`,`expirable`) VALUES (?1,?2,?3,?4,?5,?6)",
	[STORE_ST_TOUCH] = "UPDATE `prefixes` SET `updated_at`=?2,"
	    "`expirable`=?3 WHERE `id`=?1",
	/* A renewal: expirable already holds the value, and leaving it out
	 * of SET spares sqlite rewriting its index entry. */
	[STORE_ST_TOUCH_TIME] = "UPDATE `prefixes` SET `updated_at`=?2 "
	    "WHERE `id`=?1 AND `expirable`=?3",
	[STORE_ST_DELETE] = "DELETE FROM `prefixes` WHERE `id`=?1",
	[STORE_ST_LOAD] = "SELECT `id`, `name`, `cidr`, `parent_id`,"
	    " `updated_at`, `expirable` FROM `prefixes` ORDER BY rowid",
	[STORE_ST_BEGIN] = "BEGIN IMMEDIATE",
	[STORE_ST_COMMIT] = "COMMIT",
	[STORE_ST_ROLLBACK] = "ROLLBACK",
};

/* Sets the connection's durability and foreign key handling. */
static int
store_pragmas(struct store *st, int flags, char *err, size_t errlen)
{
	const char *sync = (flags & STORE_SYNC_NORMAL) ?
	    "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL";
	int64_t pgsz = 0;

	/* The page cache: 512 KiB instead of sqlite's 2 MiB. The registry
	 * keeps every record in memory, so the store only reads at load and
	 * for index pages while writing; a miss is a pread from the OS page
	 * cache (BENCHMARKS.md has the measurements). */
	if (storeschema_exec(st, sync, "set synchronous", err, errlen) < 0 ||
	    storeschema_exec(st, "PRAGMA cache_size=-512", "set cache_size",
	    err, errlen) < 0 || storeschema_exec(st, "PRAGMA foreign_keys=OFF",
	    "set foreign_keys", err, errlen) < 0)
		return -1;
	if (storeschema_query_int(st->db, st->path, "PRAGMA page_size", NULL,
	    &pgsz, err, errlen) < 0)
		return -1;
	st->pgsz = pgsz > 0 ? (int)pgsz : 4096;
	/* A WAL that grew (a burst, a full disk) shrinks back once it
	 * restarts, so that it leaves room on a small volume. */
	if (storeckpt_wal_limit(st, err, errlen) < 0)
		return -1;
	st->sync_normal = (flags & STORE_SYNC_NORMAL) != 0;
	/* Replaces sqlite's own checkpoint-on-commit (see the top). */
	sqlite3_wal_hook(st->db, storeckpt_hook, st);
	return 0;
}

/* Prepares the statements kept for the store's lifetime (the table must
 * exist by then). */
static int
store_prepare(struct store *st, char *err, size_t errlen)
{
	for (int i = 0; i < STORE_ST_COUNT; i++) {
		if (sqlite3_prepare_v3(st->db, store_sql[i], -1,
		    SQLITE_PREPARE_PERSISTENT, &st->stmt[i], NULL) !=
		    SQLITE_OK) {
			errbuf_set(err, errlen, "%s: prepare: %s", st->path,
			    sqlite3_errmsg(st->db));
			return -1;
		}
	}
	return 0;
}

/* Refuses a path whose file this process already holds open: opening and
 * closing a second fd on it would drop sqlite's POSIX locks. Entries
 * inherited through fork belong to the parent and hold no lock here. */
static int
store_check_not_open_here(const char *path, char *err, size_t errlen)
{
	struct stat sb;

	if (stat(path, &sb) < 0)
		return 0;	/* open() below will tell */
	for (struct store *s = store_list; s != NULL; s = s->next) {
		if (s->pid == getpid() && s->dev == sb.st_dev &&
		    s->ino == sb.st_ino) {
			errbuf_set(err, errlen, "%s: already open in this "
			    "process (pid %ld)", path, (long)getpid());
			return -1;
		}
	}
	return 0;
}

/*
 * Releases what st holds: the checkpointer, sqlite, then the lock fd (kept
 * open until after sqlite3_close, see the top). A file that a failed open
 * created (rm) is removed before the lock is dropped.
 */
static void
store_free(struct store *st, const char *rm)
{
	storeckpt_stop(st);
	storescan_free(st->prefetch);
	for (int i = 0; i < STORE_ST_COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	/* The last connection to close checkpoints and removes the WAL at
	 * the path: not when the path holds another file now. */
	if (st->keep_path)
		sqlite3_db_config(st->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1,
		    NULL);
	sqlite3_close(st->db);
	if (rm != NULL)
		unlink(rm);
	if (st->lockfd >= 0)
		close(st->lockfd);
	pthread_cond_destroy(&st->ck_cv);
	pthread_mutex_destroy(&st->ck_mu);
	pthread_mutex_destroy(&st->ck_run_mu);
	free(st->path);
	free(st);
}

/* A quick_check run by store_verify's helper thread. */
struct store_qc {
	const char *path;		/* the file */
	int rc;				/* 0; -1 with err set; 1 = not run */
	int64_t n;			/* problems found */
	char err[512];			/* why it failed */
};

/* Counts the problems quick_check finds. */
#define STORE_QC_SQL "SELECT count(*) FROM pragma_quick_check " \
	"WHERE quick_check<>'ok'"

/* The helper thread: quick_check on a connection of its own. */
static void *
store_verify_main(void *arg)
{
	struct store_qc *q = arg;
	sqlite3 *db = NULL;

	if (sqlite3_open_v2(q->path, &db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_NOMUTEX, NULL) == SQLITE_OK) {
		sqlite3_busy_timeout(db, STORE_BUSY_MS);
		q->rc = storeschema_query_int(db, q->path, STORE_QC_SQL,
		    NULL, &q->n, q->err, sizeof(q->err));
	}
	sqlite3_close(db);
	return NULL;
}

/*
 * Looks for damaged pages at open, so that a damaged file is refused for
 * good: found later by the load, they would look like a passing storage
 * error and the worker would be restarted until the supervisor gave up.
 * quick_check reads the whole file: it runs in a helper thread while this
 * thread reads the rows for the first store_load, on another core. Where
 * no thread or connection can be had, it runs here. Only reads. Returns 0
 * or -1 with err set.
 */
static int
store_verify(struct store *st, char *err, size_t errlen)
{
	struct store_qc q = { .path = st->path, .rc = 1 };
	char ignored[8];
	pthread_t t;
	bool threaded;

	threaded = pthread_create(&t, NULL, store_verify_main, &q) == 0;
	if (storescan_read(st->stmt[STORE_ST_LOAD], st->path, &st->prefetch,
	    ignored, sizeof(ignored)) != 0) {
		/* store_load reads again and reports the error. */
		storescan_free(st->prefetch);
		st->prefetch = NULL;
	}
	if (threaded)
		pthread_join(t, NULL);
	if (q.rc == 1)
		q.rc = storeschema_query_int(st->db, st->path,
		    STORE_QC_SQL, NULL, &q.n, q.err, sizeof(q.err));
	if (q.rc != 0) {
		errbuf_set(err, errlen, "%s", q.err);
		return -1;
	}
	if (q.n != 0) {
		errbuf_set(err, errlen, "%s: damaged (sqlite quick_check found "
		    "%lld problems); left untouched", st->path,
		    (long long)q.n);
		return -1;
	}
	return 0;
}

int
store_open(struct store **out, const char *path, int flags, char *err,
    size_t errlen)
{
	return store_open_locked(out, path, -1, flags, err, errlen);
}

/*
 * Takes the lock of path for a process that does not open the database
 * (the supervisor, for its whole life). See store.h.
 */
int
store_lock_file(const char *path, int flags, int *fd, bool *created,
    long *holder, char *err, size_t errlen)
{
	int lfd, rc;

	*fd = -1;
	*holder = 0;
	lfd = storelock_open(path, flags, created, err, errlen);
	if (lfd < 0)
		return -1;
	if ((rc = storelock_take(lfd, path, holder, err, errlen)) == 0) {
		*fd = lfd;
		return 0;
	}
	if (*created)
		unlink(path);
	*created = false;
	close(lfd);
	return rc;
}

/*
 * Opens the store: see the comment at the top of this file for the order
 * of the steps and why. A file this call created is removed again when
 * opening fails, so a failed open leaves the directory as it was. With
 * lockfd >= 0 (a descriptor of path that our parent locked) that one is
 * the lock, once it is checked to still be the file at path.
 */
int
store_open_locked(struct store **out, const char *path, int lockfd,
    int flags, char *err, size_t errlen)
{
	struct store *st;
	struct stat sb;
	char dir[PATH_MAX];
	bool created = false, create = false;
	long holder;

	*out = NULL;
	if (path == NULL || *path == '\0') {
		errbuf_set(err, errlen, "store: empty database path");
		return -1;
	}
	if (store_check_not_open_here(path, err, errlen) < 0)
		return -1;
	st = calloc(1, sizeof(*st));
	if (st == NULL || (st->path = strdup(path)) == NULL) {
		errbuf_set(err, errlen, "%s: out of memory", path);
		free(st);
		return -1;
	}
	pthread_mutex_init(&st->ck_mu, NULL);
	pthread_mutex_init(&st->ck_run_mu, NULL);
	pthread_cond_init(&st->ck_cv, NULL);
	if (lockfd >= 0) {
		struct stat lb;

		st->lockfd = lockfd;
		if (fstat(lockfd, &lb) < 0 || stat(path, &sb) < 0 ||
		    lb.st_dev != sb.st_dev || lb.st_ino != sb.st_ino) {
			errbuf_set(err, errlen, "%s: not the file that was "
			    "locked at start (removed or replaced since)",
			    path);
			goto fail;
		}
	} else {
		st->lockfd = storelock_open(path, flags, &created, err,
		    errlen);
	}
	if (st->lockfd < 0)
		goto fail;
	if (storelock_take(st->lockfd, path, &holder, err, errlen) != 0)
		goto fail;
	if (fstat(st->lockfd, &sb) < 0) {
		errbuf_set(err, errlen, "%s: cannot stat: %s", path,
		    strerror(errno));
		goto fail;
	}
	if (!S_ISREG(sb.st_mode)) {
		errbuf_set(err, errlen, "%s: not a regular file", path);
		goto fail;
	}
	st->pid = getpid();
	st->dev = sb.st_dev;
	st->ino = sb.st_ino;
	if (storelock_check_header(st->lockfd, path, sb.st_size, err, errlen) <
	    0)
		goto fail;
	storelock_dirname(path, dir, sizeof(dir));
	if (access(dir, W_OK | X_OK) < 0) {
		errbuf_set(err, errlen, "%s: directory %s is not writable (the "
		    "WAL journal lives there): %s", path, dir, strerror(errno));
		goto fail;
	}
	/* Durable commits gather their WAL frames into one write (walbuf.h);
	 * NORMAL publishes commits unsynced, so it keeps the plain VFS. */
	if (!(flags & STORE_SYNC_NORMAL) && walbuf_register(STORE_VFS, NULL,
	    err, errlen) < 0)
		goto fail;
	if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
	    (flags & STORE_SYNC_NORMAL) ? NULL : STORE_VFS) != SQLITE_OK) {
		errbuf_set(err, errlen, "%s: cannot open: %s", path,
		    st->db != NULL ? sqlite3_errmsg(st->db) : "out of memory");
		goto fail;
	}
	if (sqlite3_db_readonly(st->db, "main") == 1) {
		errbuf_set(err, errlen, "%s: opened read-only", path);
		goto fail;
	}
	sqlite3_busy_timeout(st->db, STORE_BUSY_MS);
	if (storeschema_check(st, &create, err, errlen) < 0)
		goto fail;
	if (store_pragmas(st, flags, err, errlen) < 0)
		goto fail;
	if (!create && storeschema_migrate(st, now_ns(CLOCK_REALTIME), err,
	    errlen) < 0)
		goto fail;
	if (create) {
		if (storeschema_setup(st, true, err, errlen) < 0)
			goto fail;
	} else {
		/* existing file: WAL and missing indexes on the first write,
		 * unless it already is in WAL mode with every index */
		if (sb.st_size >= 100) {
			unsigned char v[2];

			if (pread(st->lockfd, v, 2, 18) != 2 || v[0] != 2 ||
			    v[1] != 2)
				st->upgrade = true;
		}
	}
	if (store_prepare(st, err, errlen) < 0)
		goto fail;
	if (!create && store_verify(st, err, errlen) < 0)
		goto fail;
	st->next = store_list;
	store_list = st;
	*out = st;
	return 0;
fail:
	store_free(st, created ? path : NULL);
	return -1;
}

/*
 * Checks that the files this store writes are still the ones at its path:
 * the database file (still linked, the same inode at the path, never
 * smaller than before), and its -wal and -shm (the same inode as when
 * first seen). A few stat calls: cheap enough for every batch. Returns 0,
 * or -1 with err naming the file and what happened; then store_close
 * leaves what now lies at the path alone, except that a file whose WAL
 * alone was removed is still checkpointed (which keeps what that WAL held).
 */
int
store_check_files(struct store *st, char *err, size_t errlen)
{
	static const char *const sfx[2] = { "-wal", "-shm" };
	char side[PATH_MAX];
	struct stat sb, pb;

	if (fstat(st->lockfd, &sb) < 0) {
		errbuf_set(err, errlen, "%s: cannot stat: %s", st->path,
		    strerror(errno));
		return -1;
	}
	if (sb.st_nlink == 0 || stat(st->path, &pb) < 0 ||
	    pb.st_dev != sb.st_dev || pb.st_ino != sb.st_ino) {
		errbuf_set(err, errlen, "%s: the database file was removed or "
		    "replaced while in use", st->path);
		st->keep_path = true;
		return -1;
	}
	if (sb.st_size < st->size_seen) {
		errbuf_set(err, errlen, "%s: the database file was truncated "
		    "while in use (%lld bytes, was %lld)", st->path,
		    (long long)sb.st_size, (long long)st->size_seen);
		st->keep_path = true;
		return -1;
	}
	st->size_seen = sb.st_size;
	for (int i = 0; i < 2; i++) {
		snprintf(side, sizeof(side), "%s%s", st->path, sfx[i]);
		if (stat(side, &pb) < 0) {
			if (errno == ENOENT && st->side_ino[i] == 0)
				continue;	/* not made yet */
			errbuf_set(err, errlen, "%s: removed while in use: %s",
			    side, strerror(errno));
			return -1;
		}
		if (st->side_ino[i] == 0) {
			st->side_dev[i] = pb.st_dev;
			st->side_ino[i] = pb.st_ino;
		} else if (pb.st_dev != st->side_dev[i] ||
		    pb.st_ino != st->side_ino[i]) {
			errbuf_set(err, errlen, "%s: replaced by another file "
			    "while in use", side);
			st->keep_path = true;
			return -1;
		}
	}
	return 0;
}

/* Rolls back any open transaction, releases sqlite, then the lock. */
void
store_close(struct store *st)
{
	struct store **pp;

	if (st == NULL)
		return;
	st->mig_pending = false;	/* never written: dropped */
	store_rollback(st);
	for (pp = &store_list; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == st) {
			*pp = st->next;
			break;
		}
	}
	store_free(st, NULL);
}

/* Walks the rows in tree order (storescan.c); the rows read at open serve
 * the first load (no write since). */
int
store_load(struct store *st, int (*fn)(void *arg, const struct store_row *row),
    void *arg, char *err, size_t errlen)
{
	struct storescan *sc = st->prefetch;
	int ret = -1;

	st->prefetch = NULL;
	if (sc != NULL || storescan_read(st->stmt[STORE_ST_LOAD], st->path,
	    &sc, err, errlen) == 0)
		ret = storescan_walk(sc, st->path, fn, arg, err, errlen);
	storescan_free(sc);
	return ret;
}

/*
 * Starts a write transaction. The first one on an existing file first
 * switches it to WAL and adds missing indexes (see the top of the file).
 */
int
store_begin(struct store *st, char *err, size_t errlen)
{
	sqlite3_stmt *s = st->stmt[STORE_ST_BEGIN];
	int rc;

	if (st->in_txn) {
		errbuf_set(err, errlen, "%s: begin: a transaction is already "
		    "open", st->path);
		return -1;
	}
	/* Rows read at open would not show what this batch writes. */
	storescan_free(st->prefetch);
	st->prefetch = NULL;
	if (storeschema_mig_commit(st, err, errlen) < 0)
		return -1;
	if (st->upgrade && storeschema_setup(st, false, err, errlen) < 0)
		return -1;
	if (storeckpt_wal_limit(st, err, errlen) < 0)
		return -1;
	rc = sqlite3_step(s);
	if (rc != SQLITE_DONE) {
		errbuf_set(err, errlen, "%s: begin: %s", st->path,
		    sqlite3_errmsg(st->db));
		sqlite3_reset(s);
		return -1;
	}
	sqlite3_reset(s);
	st->in_txn = true;
	return 0;
}

/*
 * Checks a write may go ahead: inside store_begin/commit, and the
 * transaction not silently rolled back by sqlite after an I/O error (then
 * a write would autocommit on its own and break the batch).
 */
static int
store_check_txn(struct store *st, const char *what, char *err, size_t errlen)
{
	if (!st->in_txn) {
		errbuf_set(err, errlen, "%s: %s outside a transaction",
		    st->path, what);
		return -1;
	}
	if (sqlite3_get_autocommit(st->db)) {
		errbuf_set(err, errlen, "%s: %s: the transaction was rolled "
		    "back after an earlier error", st->path, what);
		return -1;
	}
	return 0;
}

/* Steps a bound write statement; on failure copies sqlite's message. */
static int
store_step_write(struct store *st, sqlite3_stmt *s, const char *what,
    const char *id, char *err, size_t errlen)
{
	int rc = sqlite3_step(s);

	if (rc != SQLITE_DONE) {
		errbuf_set(err, errlen, "%s: %s %s: %s", st->path, what, id,
		    sqlite3_errmsg(st->db));
		store_write_failed(st);
	}
	sqlite3_clear_bindings(s);
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Binds updated_at: go-sqlite3 text, NULL for 0. */
static void
store_bind_time(sqlite3_stmt *s, int idx, int64_t ns)
{
	char buf[GOTEXT_TIME_STRLEN];

	if (ns == 0) {
		sqlite3_bind_null(s, idx);
		return;
	}
	gotext_format_time(ns, buf);
	sqlite3_bind_text(s, idx, buf, -1, SQLITE_TRANSIENT);
}

/* Inserts one row inside the open transaction. */
int
store_insert(struct store *st, const struct store_row *row, char *err,
    size_t errlen)
{
	sqlite3_stmt *s = st->stmt[STORE_ST_INSERT];

	if (row->id == NULL || row->name == NULL || row->cidr == NULL) {
		errbuf_set(err, errlen, "%s: insert: id, name and cidr are "
		    "required", st->path);
		return -1;
	}
	if (store_check_txn(st, "insert", err, errlen) < 0)
		return -1;
	sqlite3_bind_text(s, 1, row->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, row->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, row->cidr, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, row->parent_id != NULL ? row->parent_id : "",
	    -1, SQLITE_STATIC);
	store_bind_time(s, 5, row->updated_at);
	sqlite3_bind_int(s, 6, row->expirable ? 1 : 0);
	return store_step_write(st, s, "insert", row->id, err, errlen);
}

/*
 * Sets updated_at and expirable of an existing row; a missing id is an
 * error (the caller's memory and the file disagree). Usually only the
 * time changes (a renewal): then the first statement leaves
 * idx_prefixes_expirable alone, one random index page less to write per
 * renewal. Otherwise (another expirable, or stored another way, e.g. as
 * text) the full one.
 */
int
store_touch(struct store *st, const char *id, int64_t updated_at,
    bool expirable, char *err, size_t errlen)
{
	static const enum store_stmt_id which[2] = { STORE_ST_TOUCH_TIME,
	    STORE_ST_TOUCH };
	sqlite3_stmt *s;

	if (store_check_txn(st, "touch", err, errlen) < 0)
		return -1;
	for (int i = 0; i < 2; i++) {
		s = st->stmt[which[i]];
		sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
		store_bind_time(s, 2, updated_at);
		sqlite3_bind_int(s, 3, expirable ? 1 : 0);
		if (store_step_write(st, s, "touch", id, err, errlen) < 0)
			return -1;
		if (sqlite3_changes(st->db) == 1)
			return 0;
	}
	errbuf_set(err, errlen, "%s: touch %s: no such row", st->path, id);
	return -1;
}

/* Deletes one row (not its children). */
int
store_delete(struct store *st, const char *id, char *err, size_t errlen)
{
	sqlite3_stmt *s = st->stmt[STORE_ST_DELETE];

	if (store_check_txn(st, "delete", err, errlen) < 0)
		return -1;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	return store_step_write(st, s, "delete", id, err, errlen);
}

/* An sqlite result that means the volume is full or a file hit its size
 * limit (EFBIG: RLIMIT_FSIZE), not some other I/O failure. */
static bool
store_for_space(int xrc)
{
	return (xrc & 0xff) == SQLITE_FULL || xrc == SQLITE_IOERR_WRITE ||
	    xrc == SQLITE_IOERR_FSYNC || xrc == SQLITE_IOERR_SHMSIZE ||
	    xrc == SQLITE_IOERR_TRUNCATE;
}

/* Notes that a write or the commit of this transaction failed: its end
 * (the rollback) counts it, and checkpoints when it failed for room. */
static void
store_write_failed(struct store *st)
{
	int xrc = sqlite3_extended_errcode(st->db);

	st->txn_failed = true;
	if (store_for_space(xrc))
		st->txn_no_room = true;
}

/*
 * Commits. On failure (disk full, I/O error) the transaction is rolled
 * back so that the file keeps the last committed state and the store can
 * begin again.
 */
int
store_commit(struct store *st, char *err, size_t errlen)
{
	sqlite3_stmt *s = st->stmt[STORE_ST_COMMIT];
	int rc;

	if (store_check_txn(st, "commit", err, errlen) < 0) {
		store_rollback(st);
		return -1;
	}
	rc = sqlite3_step(s);
	if (rc != SQLITE_DONE)
		errbuf_set(err, errlen, "%s: commit: %s", st->path,
		    sqlite3_errmsg(st->db));
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		store_write_failed(st);
		store_rollback(st);
		return -1;
	}
	st->in_txn = false;
	st->commits++;
	return 0;
}

/* Fills h with the store's failure counters (any thread may run a
 * checkpoint, so they are read under its lock). */
void
store_health(struct store *st, struct store_health *h)
{
	memset(h, 0, sizeof(*h));
	h->commits = st->commits;
	h->commit_failures = st->commit_failures;
	pthread_mutex_lock(&st->ck_mu);
	h->ckpt_runs = st->ck_runs;
	h->ckpt_failures = st->ck_failures;
	h->ckpt_failing = st->ck_failing;
	if (st->ck_failing)
		snprintf(h->ckpt_error, sizeof(h->ckpt_error), "%s",
		    st->ck_error);
	pthread_mutex_unlock(&st->ck_mu);
}

/* Runs a checkpoint now (RESTART, outside a transaction). */
int
store_checkpoint(struct store *st, char *err, size_t errlen)
{
	if (st->in_txn) {
		errbuf_set(err, errlen, "%s: checkpoint inside a transaction",
		    st->path);
		return -1;
	}
	if (storeckpt_run(st, st->db, SQLITE_CHECKPOINT_RESTART) < 0) {
		pthread_mutex_lock(&st->ck_mu);
		errbuf_set(err, errlen, "%s", st->ck_error);
		pthread_mutex_unlock(&st->ck_mu);
		return -1;
	}
	return 0;
}

/* Rolls back whatever is open; a no-op outside a transaction. A
 * migration held since store_open stays (store_close drops it). */
void
store_rollback(struct store *st)
{
	sqlite3_stmt *s;

	if (st == NULL)
		return;
	/* An open store has its statements: store_open prepares them. */
	if (!sqlite3_get_autocommit(st->db) && !st->mig_pending) {
		s = st->stmt[STORE_ST_ROLLBACK];
		sqlite3_step(s);
		sqlite3_reset(s);
	}
	st->in_txn = false;
	if (st->txn_failed)
		st->commit_failures++;
	/* Out of room: copying the WAL back lets the next transaction
	 * rewrite the WAL's space instead of growing it, and is how the
	 * store recovers by itself once room returns. */
	if (st->txn_no_room)
		(void)storeckpt_run(st, st->db, SQLITE_CHECKPOINT_RESTART);
	st->txn_failed = st->txn_no_room = false;
}

bool
store_migration(const struct store *st, struct store_migration *m)
{
	if (!st->mig_found) {
		memset(m, 0, sizeof(*m));
		return false;
	}
	*m = st->mig;
	return true;
}

int
store_upgrade(struct store *st, char *err, size_t errlen)
{
	if (store_begin(st, err, errlen) < 0)
		return -1;
	return store_commit(st, err, errlen);
}

uint64_t
store_commit_count(const struct store *st)
{
	return st->commits;
}
