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
 * Checkpoints (copying the WAL back into the file) run in a thread of their
 * own with its own connection, woken by a commit that leaves the WAL past
 * STORE_CKPT_FRAMES: run inside the committing call, as sqlite does by
 * default, each one stalled a commit for tens of milliseconds and doubled
 * the reads and writes of a batch (perf: p99 of an allocation 80 ms with,
 * 24 ms without). A commit checkpoints by itself only when the WAL grows
 * past STORE_CKPT_HARD_FRAMES anyway (the thread is behind or failed).
 */
#include "errbuf.h"
#include "gotime.h"
#include "store.h"
#include "storescan.h"
#include "walbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

/* How long sqlite waits for a lock held by a foreign reader (e.g. the
 * sqlite3 shell). Our own second instances never get that far: flock. */
#define STORE_BUSY_MS 5000

/* WAL frames after a commit that wake the checkpointer, and the size past
 * which the committing connection checkpoints itself (what is left: the
 * thread did most of it). Under steady writes the thread seldom catches up
 * with the writer, so the WAL cycles up to the hard size. Waking it at
 * 10000 rather than 1000 frames lets one pass copy a hot page once instead
 * of ten times: db worker CPU per new allocation 68 -> 49 us, allocate-new
 * at concurrency 64 10.6k -> 13.5k/s (paired runs). The WAL must also stay
 * small beside the file on a small volume, so both limits are in bytes and
 * scale with the database: the checkpointer wakes when the WAL passes half
 * the file's size (at least STORE_CKPT_MIN_BYTES, at most the 10000 frames of
 * 4 KiB pages above), and the writer checkpoints past four times that.
 * journal_size_limit truncates a WAL that grew past that hard size back
 * to it when it restarts; it follows the file's growth (re-set at a begin
 * once it is off by half or more). A smaller one truncated the WAL at each
 * restart, and every commit then grew the file again: a quarter fewer
 * allocations a second in bench-ab. */
#define STORE_CKPT_MIN_BYTES (1LL << 20)
#define STORE_CKPT_MAX_BYTES (10000LL * 4096)
#define STORE_CKPT_HARD_FACTOR 4

/* The VFS of durable stores: sqlite's default, WAL writes gathered. */
#define STORE_VFS "ipam-walbuf"

/* The prepared statements a store keeps for its lifetime. */
enum store_stmt_id {
	STORE_ST_INSERT,
	STORE_ST_TOUCH,
	STORE_ST_TOUCH_TIME,
	STORE_ST_DELETE,
	STORE_ST_LOAD,
	STORE_ST_BEGIN,
	STORE_ST_COMMIT,
	STORE_ST_ROLLBACK,
	STORE_ST_COUNT,
};

struct store {
	sqlite3 *db;			/* the connection */
	sqlite3_stmt *stmt[STORE_ST_COUNT]; /* prepared at open, kept */
	int lockfd;			/* fd holding flock(LOCK_EX); -1 none */
	pid_t pid;			/* process that opened it (not a fork) */
	dev_t dev;			/* device of the locked file */
	ino_t ino;			/* inode of the locked file */
	char *path;			/* path as given, for messages */
	bool in_txn;			/* between store_begin and its end */
	bool upgrade;			/* WAL + indexes still to do (1st begin) */
	uint64_t commits;		/* successful store_commit calls */
	struct store *next;		/* next open store of this process */
	bool sync_normal;		/* STORE_SYNC_NORMAL was asked for */
	pthread_mutex_t ck_mu;		/* guards ck_want and ck_stop */
	pthread_cond_t ck_cv;		/* wakes the checkpointer */
	pthread_mutex_t ck_run_mu;	/* held while a checkpoint runs */
	pthread_t ck_thread;		/* the checkpointer, if ck_started */
	bool ck_started;		/* the checkpointer runs */
	bool ck_want;			/* a commit asks for a checkpoint */
	bool ck_stop;			/* store_close asks it to return */
	int pgsz;			/* page size, for WAL bytes */
	uint64_t ck_runs;		/* checkpoints tried (ck_mu) */
	uint64_t ck_failures;		/* of those, failed (ck_mu) */
	bool ck_failing;		/* the latest one failed (ck_mu) */
	char ck_error[256];		/* why it failed (ck_mu) */
	uint64_t commit_failures;	/* transactions a failed write ended */
	off_t size_seen;		/* largest file size store_check_files
					 * saw (the file never shrinks) */
	dev_t side_dev[2];		/* -wal, -shm: device once seen */
	ino_t side_ino[2];		/* ... and inode; 0 = not seen yet */
	long long wal_limit;		/* journal_size_limit set; 0 none */
	bool keep_path;			/* the path is not ours any more: do
					 * not checkpoint into it at close */
	bool txn_failed;		/* a write of this transaction failed */
	bool txn_no_room;		/* ... for want of room */
	struct storescan *prefetch;	/* rows read while quick_check ran,
					 * for the first store_load; NULL */
	unsigned add_cols;		/* bits of store_added_columns the
					 * file lacks */
	bool mig_found;			/* store_open found a migration */
	bool mig_pending;		/* ... held in an open transaction */
	struct store_migration mig;	/* what it does */
};

/* Stores open in this process (the db worker has one; not thread-safe). */
static struct store *store_list;

static void store_write_failed(struct store *st);


/* Meridio's table, as gorm writes it. */
static const char store_ddl_table[] =
    "CREATE TABLE `prefixes` (`id` text,`name` text,`cidr` text,"
    "`parent_id` text,`updated_at` datetime,`expirable` numeric DEFAULT false,"
    "PRIMARY KEY (`id`),CONSTRAINT `fk_prefixes_parent` FOREIGN KEY "
    "(`parent_id`) REFERENCES `prefixes`(`id`))";

/* Meridio's indexes. sqlite drops "IF NOT EXISTS" from the text it keeps in
 * sqlite_master, so a new file reads exactly as one gorm made. */
static const char store_ddl_indexes[] =
    "CREATE INDEX IF NOT EXISTS `idx_prefixes_expirable` ON `prefixes`(`expirable`);"
    "CREATE INDEX IF NOT EXISTS `idx_prefixes_updated_at` ON `prefixes`(`updated_at`);"
    "CREATE UNIQUE INDEX IF NOT EXISTS `idx_parent_id_cidr` ON `prefixes`(`cidr`,`parent_id`);"
    "CREATE INDEX IF NOT EXISTS `idx_prefixes_parent_id` ON `prefixes`(`parent_id`);"
    "CREATE INDEX IF NOT EXISTS `idx_prefixes_name` ON `prefixes`(`name`);";

/* Index names, to tell whether an existing file lacks any. */
static const char *const store_index_names[] = {
	"idx_prefixes_expirable", "idx_prefixes_updated_at",
	"idx_parent_id_cidr", "idx_prefixes_parent_id", "idx_prefixes_name",
};

/* Columns the table must have. */
static const char *const store_columns[] = {
	"id", "name", "cidr", "parent_id",
};

/* Columns that Meridio releases before garbage collection lacked, and how
 * gorm's AutoMigrate adds them. */
static const struct {
	const char *name;
	const char *ddl;
} store_added_columns[] = {
	{ "updated_at", "ALTER TABLE `prefixes` ADD `updated_at` datetime" },
	{ "expirable", "ALTER TABLE `prefixes` ADD `expirable` numeric "
	    "DEFAULT false" },
};

/* The node records (below a conduit, below a trench) as Meridio's
 * migrate() finds them. */
#define STORE_NODE_IDS "SELECT `id` FROM `prefixes` WHERE `parent_id` IN " \
	"(SELECT `id` FROM `prefixes` WHERE `parent_id` IN " \
	"(SELECT `id` FROM `prefixes` WHERE `parent_id` = ''))"

/* Meridio's migrate(): a node's children other than bridges, then the
 * nodes, made expirable unless they are; gorm sets updated_at (?1) too. */
#define STORE_MIG_CHILDREN "`parent_id` IN (" STORE_NODE_IDS ") AND " \
	"`name` != 'bridge' AND (`expirable` IS NULL OR `expirable` = false)"
#define STORE_MIG_NODES "`id` IN (" STORE_NODE_IDS ") AND " \
	"(`expirable` IS NULL OR `expirable` = false)"
static const char store_mig_children[] = "UPDATE `prefixes` SET "
    "`expirable`=1,`updated_at`=?1 WHERE " STORE_MIG_CHILDREN;
static const char store_mig_nodes[] = "UPDATE `prefixes` SET "
    "`expirable`=1,`updated_at`=?1 WHERE " STORE_MIG_NODES;
/* How many rows those would change: a file without any opens without a
 * write lock. */
static const char store_mig_count[] = "SELECT (SELECT count(*) FROM "
    "`prefixes` WHERE " STORE_MIG_CHILDREN ") + (SELECT count(*) FROM "
    "`prefixes` WHERE " STORE_MIG_NODES ")";

/* Text of each kept statement, indexed by enum store_stmt_id. The load
 * query is one scan of the table in rowid (insertion) order: store_load
 * orders the rows by depth itself, which is ~8x faster than a recursive
 * query with a sort (30 ms instead of 280 ms for 70k rows). */
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

/* Writes the directory part of path into buf ("." when there is none). */
static void
store_dirname(const char *path, char *buf, size_t len)
{
	const char *slash = strrchr(path, '/');
	size_t n;

	if (slash == NULL) {
		snprintf(buf, len, ".");
		return;
	}
	n = (size_t)(slash - path);
	if (n == 0)
		n = 1;		/* "/file" lives in "/" */
	if (n >= len)
		n = len - 1;
	memcpy(buf, path, n);
	buf[n] = '\0';
}

/*
 * Finds the pid holding a flock on (dev, ino) in /proc/locks, so that the
 * refusal can name it. Returns the pid, or 0 when it cannot be told (no
 * /proc, a pid from another namespace, ...).
 */
static long
store_lock_holder(dev_t dev, ino_t ino)
{
	char line[256];
	FILE *f;
	long found = 0;

	f = fopen("/proc/locks", "re");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		char type[16];
		long pid;
		unsigned maj, min;
		unsigned long long inode;

		if (strstr(line, "->") != NULL)
			continue;	/* a waiter, not a holder */
		if (sscanf(line, "%*d: %15s %*s %*s %ld %x:%x:%llu", type,
		    &pid, &maj, &min, &inode) != 5)
			continue;
		if (strcmp(type, "FLOCK") != 0 || pid <= 0)
			continue;
		if (maj == major(dev) && min == minor(dev) &&
		    inode == (unsigned long long)ino) {
			found = pid;
			break;
		}
	}
	fclose(f);
	return found;
}

/*
 * Checks the first 100 bytes of a non-empty file the way sqlite would read
 * them (magic, page size, format versions, payload fractions), so that a
 * file that is not a database never reaches sqlite, which might otherwise
 * create -wal/-shm files next to it. An empty file is a valid new database.
 */
static int
store_check_header(int fd, const char *path, off_t size, char *err,
    size_t errlen)
{
	static const char magic[16] = "SQLite format 3";
	unsigned char h[100];
	unsigned pgsz;
	ssize_t n;

	if (size == 0)
		return 0;
	if (size < (off_t)sizeof(h))
		goto notdb;
	n = pread(fd, h, sizeof(h), 0);
	if (n < 0) {
		errbuf_set(err, errlen, "%s: cannot read: %s", path,
		    strerror(errno));
		return -1;
	}
	if (n != (ssize_t)sizeof(h) || memcmp(h, magic, sizeof(magic)) != 0)
		goto notdb;
	pgsz = (unsigned)h[16] << 8 | h[17];
	if (pgsz == 1)
		pgsz = 65536;
	if (pgsz < 512 || (pgsz & (pgsz - 1)) != 0)
		goto notdb;
	if (h[18] < 1 || h[18] > 2 || h[19] < 1 || h[19] > 2)
		goto notdb;
	if (h[21] != 64 || h[22] != 32 || h[23] != 32)
		goto notdb;
	return 0;
notdb:
	errbuf_set(err, errlen, "%s: not an sqlite database (bad header); "
	    "left untouched", path);
	return -1;
}

/*
 * Says why path could not be opened read-write or created (errno e), naming
 * what is wrong rather than repeating strerror: the directory missing or
 * not a directory, a file system that is read-only or takes no new files
 * (/proc, /sys), the file or directory not writable by this uid.
 */
static void
store_explain_open(const char *path, int e, char *err, size_t errlen)
{
	char dir[PATH_MAX], up[PATH_MAX], child[PATH_MAX];
	struct stat sb;
	bool exists = stat(path, &sb) == 0;

	store_dirname(path, dir, sizeof(dir));
	if (e == EISDIR || (exists && S_ISDIR(sb.st_mode))) {
		errbuf_set(err, errlen, "%s: is a directory, not a database "
		    "file", path);
	} else if (e == ENOENT || e == ENOTDIR) {
		/* the nearest ancestor that exists tells which case it is */
		snprintf(up, sizeof(up), "%s", dir);
		while (stat(up, &sb) != 0 && strcmp(up, "/") != 0 &&
		    strcmp(up, ".") != 0) {
			snprintf(child, sizeof(child), "%s", up);
			store_dirname(child, up, sizeof(up));
		}
		if (stat(up, &sb) == 0 && !S_ISDIR(sb.st_mode))
			errbuf_set(err, errlen, "%s: cannot create: %s is not "
			    "a directory", path, up);
		else if (strcmp(up, dir) != 0)
			errbuf_set(err, errlen, "%s: cannot create: directory "
			    "%s does not exist", path, dir);
		else
			errbuf_set(err, errlen, "%s: cannot create: directory "
			    "%s exists but takes no new files (a virtual file "
			    "system such as /proc or /sys?)", path, dir);
	} else if (e == EROFS) {
		errbuf_set(err, errlen, "%s: cannot %s: %s is on a read-only "
		    "file system", path, exists ? "open for writing" :
		    "create", exists ? "the file" : dir);
	} else if ((e == EACCES || e == EPERM) && exists) {
		errbuf_set(err, errlen, "%s: cannot open for writing: the file "
		    "(owner uid %u, mode %04o) is not writable by uid %u: %s",
		    path, (unsigned)sb.st_uid, (unsigned)(sb.st_mode & 07777),
		    (unsigned)geteuid(), strerror(e));
	} else if ((e == EACCES || e == EPERM) && stat(dir, &sb) == 0) {
		errbuf_set(err, errlen, "%s: cannot create: directory %s "
		    "(owner uid %u, mode %04o) is not writable by uid %u: %s",
		    path, dir, (unsigned)sb.st_uid,
		    (unsigned)(sb.st_mode & 07777), (unsigned)geteuid(),
		    strerror(e));
	} else {
		errbuf_set(err, errlen, "%s: cannot open: %s", path,
		    strerror(e));
	}
}

/*
 * Opens path read-write for the lock, creating it (O_EXCL) when it is
 * missing and creation is allowed. Sets *created when this call made the
 * file. Returns the fd or -1 with err set.
 */
static int
store_open_lockfd(const char *path, int flags, bool *created, char *err,
    size_t errlen)
{
	int fd;

	*created = false;
	for (int tries = 0; tries < 3; tries++) {
		fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
		if (fd >= 0)
			return fd;
		if (errno != ENOENT)
			break;
		if (flags & STORE_NO_CREATE) {
			errbuf_set(err, errlen, "%s: does not exist", path);
			return -1;
		}
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC |
		    O_NOCTTY, 0644);
		if (fd >= 0) {
			*created = true;
			return fd;
		}
		if (errno != EEXIST)
			break;
		/* created by someone else meanwhile: open that one */
	}
	store_explain_open(path, errno, err, errlen);
	return -1;
}

/* Runs one statement of SQL text that returns no rows we need. */
static int
store_exec(struct store *st, const char *sql, const char *what, char *err,
    size_t errlen)
{
	if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
		errbuf_set(err, errlen, "%s: %s: %s", st->path, what,
		    sqlite3_errmsg(st->db));
		return -1;
	}
	return 0;
}

/*
 * Runs a query returning one integer (count(*) and the like) into *val.
 * Returns 0 or -1 with err set.
 */
static int
store_query_int(struct store *st, const char *sql, const char *arg,
    int64_t *val, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	int rc;

	rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	if (arg != NULL)
		sqlite3_bind_text(s, 1, arg, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW)
		goto fail;
	*val = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return 0;
fail:
	if ((rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT)
		errbuf_set(err, errlen, "%s: not a usable sqlite database (%s); "
		    "left untouched", st->path, sqlite3_errmsg(st->db));
	else
		errbuf_set(err, errlen, "%s: cannot read schema: %s", st->path,
		    sqlite3_errmsg(st->db));
	sqlite3_finalize(s);
	return -1;
}

/*
 * Checks the schema of an existing database without writing anything.
 * Sets *create when the database is empty (no table at all) and the schema
 * must be made; sets st->upgrade when one of Meridio's indexes is missing.
 * Refuses a database with other tables but no `prefixes`, or a
 * `prefixes` lacking a column or keyed on something else than `id`.
 */
static int
store_check_schema(struct store *st, bool *create, char *err, size_t errlen)
{
	int64_t n;
	size_t i;

	*create = false;
	if (store_query_int(st, "SELECT count(*) FROM sqlite_master "
	    "WHERE type='table' AND name='prefixes'", NULL, &n, err,
	    errlen) < 0)
		return -1;
	if (n == 0) {
		if (store_query_int(st, "SELECT count(*) FROM sqlite_master",
		    NULL, &n, err, errlen) < 0)
			return -1;
		if (n != 0) {
			errbuf_set(err, errlen, "%s: has no table `prefixes` "
			    "(not a Meridio IPAM database?); left untouched",
			    st->path);
			return -1;
		}
		*create = true;
		return 0;
	}
	for (i = 0; i < sizeof(store_columns) / sizeof(store_columns[0]);
	    i++) {
		if (store_query_int(st, "SELECT count(*) FROM "
		    "pragma_table_info('prefixes') WHERE name=?1",
		    store_columns[i], &n, err, errlen) < 0)
			return -1;
		if (n == 0) {
			errbuf_set(err, errlen, "%s: table `prefixes` has no "
			    "column `%s` (not a Meridio IPAM database?); left "
			    "untouched", st->path, store_columns[i]);
			return -1;
		}
	}
	if (store_query_int(st, "SELECT count(*) FROM "
	    "pragma_table_info('prefixes') WHERE pk>0 AND name<>?1", "id", &n,
	    err, errlen) < 0)
		return -1;
	if (n != 0) {
		errbuf_set(err, errlen, "%s: table `prefixes` has another primary "
		    "key than `id`; left untouched", st->path);
		return -1;
	}
	for (i = 0; i < sizeof(store_added_columns) /
	    sizeof(store_added_columns[0]); i++) {
		if (store_query_int(st, "SELECT count(*) FROM "
		    "pragma_table_info('prefixes') WHERE name=?1",
		    store_added_columns[i].name, &n, err, errlen) < 0)
			return -1;
		if (n == 0)
			st->add_cols |= 1u << i;
	}
	/* Damaged pages are looked for by store_open (store_verify). */
	for (i = 0; i < sizeof(store_index_names) /
	    sizeof(store_index_names[0]); i++) {
		if (store_query_int(st, "SELECT count(*) FROM sqlite_master "
		    "WHERE type='index' AND name=?1", store_index_names[i], &n,
		    err, errlen) < 0)
			return -1;
		if (n == 0) {
			st->upgrade = true;
			st->mig.indexes++;
		}
	}
	return 0;
}

/* Runs one of the migrate() updates with updated_at = now; adds the rows
 * it changed to *count. */
static int
store_mig_update(struct store *st, const char *sql, int64_t now,
    int64_t *count, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	char t[GOTIME_STRLEN];

	gotime_format(now, t);
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK ||
	    (sqlite3_bind_text(s, 1, t, -1, SQLITE_STATIC), 0) ||
	    sqlite3_step(s) != SQLITE_DONE) {
		errbuf_set(err, errlen, "%s: migrate: %s; left untouched",
		    st->path, sqlite3_errmsg(st->db));
		sqlite3_finalize(s);
		return -1;
	}
	*count += sqlite3_changes(st->db);
	sqlite3_finalize(s);
	return 0;
}

/*
 * Brings an older Meridio file to the current schema as Meridio's start-up
 * does (see struct store_migration), in one transaction that stays open:
 * store_begin commits it, store_close rolls it back. A file without
 * anything to do is only read, and nothing is reported. Dirty pages are kept in memory until the commit (cache_spill off), so
 * that readers (store_verify's quick_check) are never locked out.
 */
static int
store_migrate(struct store *st, int64_t now, char *err, size_t errlen)
{
	int64_t n;
	size_t i;

	if (st->add_cols == 0) {
		if (store_query_int(st, store_mig_count, NULL, &n, err,
		    errlen) < 0)
			return -1;
		if (n == 0)
			return 0;
	}
	if (store_exec(st, "PRAGMA cache_spill=OFF", "set cache_spill", err,
	    errlen) < 0 ||
	    store_exec(st, "BEGIN IMMEDIATE", "begin migration", err,
	    errlen) < 0)
		return -1;
	for (i = 0; i < sizeof(store_added_columns) /
	    sizeof(store_added_columns[0]); i++) {
		if (!(st->add_cols & (1u << i)))
			continue;
		if (store_exec(st, store_added_columns[i].ddl, "migrate: add "
		    "column", err, errlen) < 0)
			goto rollback;
		st->mig.columns++;
	}
	if (st->mig.columns > 0) {
		if (store_exec(st, store_ddl_indexes, "migrate: create indexes",
		    err, errlen) < 0)
			goto rollback;
	}
	if (store_mig_update(st, store_mig_children, now, &st->mig.children,
	    err, errlen) < 0 ||
	    store_mig_update(st, store_mig_nodes, now, &st->mig.nodes, err,
	    errlen) < 0)
		goto rollback;
	if (st->mig.columns == 0)
		st->mig.indexes = 0;	/* those come with the WAL switch */
	st->mig_found = true;
	st->mig_pending = true;
	return 0;
rollback:
	/* "migrate: create indexes: UNIQUE constraint failed" and the
	 * like: the file is refused as it is */
	if (strstr(err, "left untouched") == NULL) {
		char why[512];

		snprintf(why, sizeof(why), "%s", err);
		errbuf_set(err, errlen, "%s; left untouched", why);
	}
	sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

/* Commits a migration held open since store_open. */
static int
store_mig_commit(struct store *st, char *err, size_t errlen)
{
	if (!st->mig_pending)
		return 0;
	if (store_exec(st, "COMMIT", "commit migration", err, errlen) < 0) {
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
		st->mig_pending = false;
		return -1;
	}
	st->mig_pending = false;
	return store_exec(st, "PRAGMA cache_spill=ON", "set cache_spill", err,
	    errlen);
}

/*
 * Switches the file to WAL and adds Meridio's missing indexes (and, for a
 * new file, the table). Runs outside any transaction.
 */
static int
store_setup(struct store *st, bool create, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	const char *mode;
	bool wal;

	if (sqlite3_prepare_v2(st->db, "PRAGMA journal_mode=WAL", -1, &s,
	    NULL) != SQLITE_OK || sqlite3_step(s) != SQLITE_ROW) {
		errbuf_set(err, errlen, "%s: cannot switch to WAL: %s",
		    st->path, sqlite3_errmsg(st->db));
		sqlite3_finalize(s);
		return -1;
	}
	mode = (const char *)sqlite3_column_text(s, 0);
	wal = mode != NULL && strcmp(mode, "wal") == 0;
	sqlite3_finalize(s);
	if (!wal) {
		errbuf_set(err, errlen, "%s: cannot switch to WAL journal",
		    st->path);
		return -1;
	}
	if (store_exec(st, "BEGIN IMMEDIATE", "begin", err, errlen) < 0)
		return -1;
	if (create && store_exec(st, store_ddl_table, "create table", err,
	    errlen) < 0)
		goto rollback;
	if (store_exec(st, store_ddl_indexes, "create indexes", err,
	    errlen) < 0)
		goto rollback;
	if (store_exec(st, "COMMIT", "commit schema", err, errlen) < 0)
		goto rollback;
	st->upgrade = false;
	return 0;
rollback:
	if (!sqlite3_get_autocommit(st->db))
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

/*
 * Runs one checkpoint on db (the writer's connection or the
 * checkpointer's) and notes how it went, for store_health. The
 * checkpointer runs PASSIVE ones (never waiting for, nor blocking, the
 * writer); the writer runs RESTART ones, which wait for the checkpointer's
 * pass to end and leave the WAL to be rewritten from its start, so that it
 * stops growing even when the thread never catches up.
 */
static int
store_ckpt_run(struct store *st, sqlite3 *db, int mode)
{
	int rc;

	/* sqlite answers BUSY at once, without waiting, to a checkpoint
	 * while another runs: take turns here instead. A RESTART would also
	 * wait (busy timeout) for a foreign reader, e.g. the sqlite3 shell,
	 * inside a commit: it does not wait, and then only copies what it
	 * can, as PASSIVE does. */
	pthread_mutex_lock(&st->ck_run_mu);
	if (mode != SQLITE_CHECKPOINT_PASSIVE)
		sqlite3_busy_timeout(db, 0);
	rc = sqlite3_wal_checkpoint_v2(db, NULL, mode, NULL, NULL);
	if (mode != SQLITE_CHECKPOINT_PASSIVE)
		sqlite3_busy_timeout(db, STORE_BUSY_MS);
	pthread_mutex_unlock(&st->ck_run_mu);

	pthread_mutex_lock(&st->ck_mu);
	st->ck_runs++;
	if (rc == SQLITE_BUSY) {
		/* another connection was in the way: nothing failed */
	} else if (rc == SQLITE_OK) {
		st->ck_failing = false;
		st->ck_error[0] = '\0';
	} else {
		st->ck_failures++;
		st->ck_failing = true;
		snprintf(st->ck_error, sizeof(st->ck_error), "%s: checkpoint: "
		    "%s", st->path, sqlite3_errmsg(db));
	}
	pthread_mutex_unlock(&st->ck_mu);
	return rc == SQLITE_OK || rc == SQLITE_BUSY ? 0 : -1;
}

/*
 * The checkpointer thread: its own connection to the file, one PASSIVE
 * checkpoint each time a commit asks for one (PASSIVE never waits for, nor
 * blocks, the writer). If the connection cannot be opened, the thread only
 * waits to be stopped and commits checkpoint by themselves at the hard
 * limit. A failure is noted (store_health) and the next commit past the
 * limit tries again.
 */
static void *
store_ckpt_main(void *arg)
{
	struct store *st = arg;
	sqlite3 *db = NULL;

	if (sqlite3_open_v2(st->path, &db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		sqlite3_close(db);
		db = NULL;
	} else if (sqlite3_exec(db, st->sync_normal ?
	    "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL", NULL,
	    NULL, NULL) != SQLITE_OK) {
		sqlite3_close(db);
		db = NULL;
	}
	pthread_mutex_lock(&st->ck_mu);
	for (;;) {
		while (!st->ck_want && !st->ck_stop)
			pthread_cond_wait(&st->ck_cv, &st->ck_mu);
		if (st->ck_stop)
			break;
		st->ck_want = false;
		pthread_mutex_unlock(&st->ck_mu);
		if (db != NULL)
			(void)store_ckpt_run(st, db,
			    SQLITE_CHECKPOINT_PASSIVE);
		pthread_mutex_lock(&st->ck_mu);
	}
	pthread_mutex_unlock(&st->ck_mu);
	sqlite3_close(db);
	return NULL;
}

/* The WAL size that wakes the checkpointer (see STORE_CKPT_MIN_BYTES). */
static long long
store_ckpt_soft(struct store *st)
{
	struct stat sb;
	long long soft;

	soft = fstat(st->lockfd, &sb) == 0 ? (long long)sb.st_size / 2 : 0;
	if (soft < STORE_CKPT_MIN_BYTES)
		soft = STORE_CKPT_MIN_BYTES;
	if (soft > STORE_CKPT_MAX_BYTES)
		soft = STORE_CKPT_MAX_BYTES;
	return soft;
}

/* Sets journal_size_limit to the hard WAL size when it is off by half or
 * more (outside a transaction). */
static int
store_wal_limit(struct store *st, char *err, size_t errlen)
{
	long long want = store_ckpt_soft(st) * STORE_CKPT_HARD_FACTOR;
	char sql[64];

	if (st->wal_limit != 0 && want < st->wal_limit * 3 / 2 &&
	    want > st->wal_limit / 2)
		return 0;
	snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit=%lld", want);
	if (store_exec(st, sql, "set journal_size_limit", err, errlen) < 0)
		return -1;
	st->wal_limit = want;
	return 0;
}

/*
 * sqlite's WAL hook, called after each commit with the frames now in the
 * WAL: wakes the checkpointer (started on first need) when the WAL passes
 * its size limit (see STORE_CKPT_MIN_BYTES); checkpoints here past
 * STORE_CKPT_HARD_FACTOR times that or when no thread can be started.
 */
static int
store_wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
	struct store *st = arg;
	long long wal = (long long)frames * st->pgsz, soft;

	(void)name;
	if (wal < STORE_CKPT_MIN_BYTES)
		return SQLITE_OK;
	soft = store_ckpt_soft(st);
	if (wal < soft)
		return SQLITE_OK;
	if (!st->ck_started && pthread_create(&st->ck_thread, NULL,
	    store_ckpt_main, st) == 0)
		st->ck_started = true;
	if (wal >= soft * STORE_CKPT_HARD_FACTOR || !st->ck_started) {
		(void)store_ckpt_run(st, db, SQLITE_CHECKPOINT_RESTART);
		return SQLITE_OK;
	}
	pthread_mutex_lock(&st->ck_mu);
	st->ck_want = true;
	pthread_cond_signal(&st->ck_cv);
	pthread_mutex_unlock(&st->ck_mu);
	return SQLITE_OK;
}

/* Stops the checkpointer (before the writer closes: the last connection
 * to close checkpoints and removes the WAL). */
static void
store_ckpt_stop(struct store *st)
{
	if (!st->ck_started)
		return;
	pthread_mutex_lock(&st->ck_mu);
	st->ck_stop = true;
	pthread_cond_signal(&st->ck_cv);
	pthread_mutex_unlock(&st->ck_mu);
	pthread_join(st->ck_thread, NULL);
	st->ck_started = false;
}

/* Sets the connection's durability and foreign key handling. */
static int
store_pragmas(struct store *st, int flags, char *err, size_t errlen)
{
	const char *sync = (flags & STORE_SYNC_NORMAL) ?
	    "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL";
	int64_t pgsz = 0;

	/* The page cache: 512 KiB instead of sqlite's 2 MiB. The registry
	 * keeps every record in memory, so the store only reads at load and
	 * for index pages while writing; paired runs at concurrency 64 with
	 * 1, 2, 4, 8 and 16 MiB gave the same db worker CPU per allocation
	 * (27-31 us): a miss is a pread from the OS page cache. 512 KiB
	 * against 1 MiB: 0.3 more preads and 0.5 more WAL writes (a batch's
	 * dirty pages spill) per new allocation, 0.4-1.0 us more CPU of 35,
	 * and 0.5 MiB less resident memory. */
	if (store_exec(st, sync, "set synchronous", err, errlen) < 0 ||
	    store_exec(st, "PRAGMA cache_size=-512", "set cache_size", err,
	    errlen) < 0 ||
	    store_exec(st, "PRAGMA foreign_keys=OFF", "set foreign_keys", err,
	    errlen) < 0)
		return -1;
	if (store_query_int(st, "PRAGMA page_size", NULL, &pgsz, err,
	    errlen) < 0)
		return -1;
	st->pgsz = pgsz > 0 ? (int)pgsz : 4096;
	/* A WAL that grew (a burst, a full disk) shrinks back once it
	 * restarts, so that it leaves room on a small volume. */
	if (store_wal_limit(st, err, errlen) < 0)
		return -1;
	st->sync_normal = (flags & STORE_SYNC_NORMAL) != 0;
	/* Replaces sqlite's own checkpoint-on-commit (see the top). */
	sqlite3_wal_hook(st->db, store_wal_hook, st);
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

/* A quick_check run by store_verify's helper thread. */
struct store_qc {
	const char *path;		/* the file */
	int rc;				/* 0; -1 with err set; 1 = not run */
	int64_t n;			/* problems found */
	char err[512];			/* why it failed */
};

/* Counts the problems quick_check finds in db into *n. Returns 0, or -1
 * with err set as store_query_int sets it. */
static int
store_quick_check(sqlite3 *db, const char *path, int64_t *n, char *err,
    size_t errlen)
{
	sqlite3_stmt *s = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM pragma_quick_check "
	    "WHERE quick_check<>'ok'", -1, &s, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		*n = sqlite3_column_int64(s, 0);
		sqlite3_finalize(s);
		return 0;
	}
	if ((rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT)
		errbuf_set(err, errlen, "%s: not a usable sqlite database (%s); "
		    "left untouched", path, sqlite3_errmsg(db));
	else
		errbuf_set(err, errlen, "%s: cannot read schema: %s", path,
		    sqlite3_errmsg(db));
	sqlite3_finalize(s);
	return -1;
}

/* The helper thread: quick_check on a connection of its own. */
static void *
store_qc_main(void *arg)
{
	struct store_qc *q = arg;
	sqlite3 *db = NULL;

	if (sqlite3_open_v2(q->path, &db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_NOMUTEX, NULL) == SQLITE_OK) {
		sqlite3_busy_timeout(db, STORE_BUSY_MS);
		q->rc = store_quick_check(db, q->path, &q->n, q->err,
		    sizeof(q->err));
	}
	sqlite3_close(db);
	return NULL;
}

/*
 * Looks for damaged pages at open, so that a damaged file is refused for
 * good: found later by the load, they looked like a passing storage error
 * and the worker was restarted until the supervisor gave up. quick_check
 * reads the whole file (~30 ms for 100k rows, 15 % of a start): it runs
 * in a helper thread while this thread reads the rows for the first
 * store_load (~60 ms), on the other core. Where no thread or connection
 * can be had, it runs here. Only reads. Returns 0 or -1 with err set.
 */
static int
store_verify(struct store *st, char *err, size_t errlen)
{
	struct store_qc q = { .path = st->path, .rc = 1 };
	char ignored[8];
	pthread_t t;
	bool threaded;

	threaded = pthread_create(&t, NULL, store_qc_main, &q) == 0;
	if (storescan_read(st->stmt[STORE_ST_LOAD], st->path, &st->prefetch,
	    ignored, sizeof(ignored)) != 0) {
		/* store_load reads again and reports the error. */
		storescan_free(st->prefetch);
		st->prefetch = NULL;
	}
	if (threaded)
		pthread_join(t, NULL);
	if (q.rc == 1)
		q.rc = store_quick_check(st->db, st->path, &q.n, q.err,
		    sizeof(q.err));
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
	struct stat sb;
	int lfd, e;

	*fd = -1;
	*holder = 0;
	lfd = store_open_lockfd(path, flags, created, err, errlen);
	if (lfd < 0)
		return -1;
	if (flock(lfd, LOCK_EX | LOCK_NB) == 0) {
		*fd = lfd;
		return 0;
	}
	e = errno;
	if (e != EWOULDBLOCK) {
		errbuf_set(err, errlen, "%s: cannot lock: %s", path,
		    strerror(e));
	} else {
		if (fstat(lfd, &sb) == 0)
			*holder = store_lock_holder(sb.st_dev, sb.st_ino);
		if (*holder > 0)
			errbuf_set(err, errlen, "%s: in use by another "
			    "meridio-ipam (pid %ld)", path, *holder);
		else
			errbuf_set(err, errlen, "%s: locked by another "
			    "process", path);
	}
	if (*created)
		unlink(path);
	*created = false;
	close(lfd);
	return e == EWOULDBLOCK ? 1 : -1;
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
		st->lockfd = store_open_lockfd(path, flags, &created, err,
		    errlen);
	}
	if (st->lockfd < 0)
		goto fail;
	if (flock(st->lockfd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK) {
			errbuf_set(err, errlen, "%s: cannot lock: %s", path,
			    strerror(errno));
			goto fail;
		}
		holder = fstat(st->lockfd, &sb) == 0 ?
		    store_lock_holder(sb.st_dev, sb.st_ino) : 0;
		if (holder > 0)
			errbuf_set(err, errlen, "%s: in use by another "
			    "meridio-ipam (pid %ld)", path, holder);
		else
			errbuf_set(err, errlen, "%s: locked by another process",
			    path);
		goto fail;
	}
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
	if (store_check_header(st->lockfd, path, sb.st_size, err, errlen) < 0)
		goto fail;
	store_dirname(path, dir, sizeof(dir));
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
	if (store_check_schema(st, &create, err, errlen) < 0)
		goto fail;
	if (store_pragmas(st, flags, err, errlen) < 0)
		goto fail;
	if (!create) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		if (store_migrate(st, (int64_t)ts.tv_sec * 1000000000 +
		    ts.tv_nsec, err, errlen) < 0)
			goto fail;
	}
	if (create) {
		if (store_setup(st, true, err, errlen) < 0)
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
	store_ckpt_stop(st);
	storescan_free(st->prefetch);
	for (int i = 0; i < STORE_ST_COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	sqlite3_close(st->db);
	if (created)
		unlink(path);
	if (st->lockfd >= 0)
		close(st->lockfd);
	pthread_cond_destroy(&st->ck_cv);
	pthread_mutex_destroy(&st->ck_mu);
	pthread_mutex_destroy(&st->ck_run_mu);
	free(st->path);
	free(st);
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
	store_ckpt_stop(st);
	storescan_free(st->prefetch);
	for (int i = 0; i < STORE_ST_COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	/* The last connection to close checkpoints and removes the WAL at
	 * the path: not when the path holds another file now. */
	if (st->keep_path)
		sqlite3_db_config(st->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1,
		    NULL);
	sqlite3_close(st->db);
	if (st->lockfd >= 0)
		close(st->lockfd);
	pthread_cond_destroy(&st->ck_cv);
	pthread_mutex_destroy(&st->ck_mu);
	pthread_mutex_destroy(&st->ck_run_mu);
	free(st->path);
	free(st);
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
	if (store_mig_commit(st, err, errlen) < 0)
		return -1;
	if (st->upgrade && store_setup(st, false, err, errlen) < 0)
		return -1;
	if (store_wal_limit(st, err, errlen) < 0)
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
	char buf[GOTIME_STRLEN];

	if (ns == 0) {
		sqlite3_bind_null(s, idx);
		return;
	}
	gotime_format(ns, buf);
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

/* Sets updated_at and expirable of an existing row; a missing id is an
 * error (the caller's memory and the file disagree). */
int
store_touch(struct store *st, const char *id, int64_t updated_at,
    bool expirable, char *err, size_t errlen)
{
	sqlite3_stmt *s = st->stmt[STORE_ST_TOUCH_TIME];

	if (store_check_txn(st, "touch", err, errlen) < 0)
		return -1;
	/* Usually only the time changes (a renewal): then idx_prefixes_
	 * expirable is left alone, one random index page less to write
	 * per renewal. Otherwise (another expirable, or stored another
	 * way, e.g. as text) the full statement below. */
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	store_bind_time(s, 2, updated_at);
	sqlite3_bind_int(s, 3, expirable ? 1 : 0);
	if (store_step_write(st, s, "touch", id, err, errlen) < 0)
		return -1;
	if (sqlite3_changes(st->db) == 1)
		return 0;
	s = st->stmt[STORE_ST_TOUCH];
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	store_bind_time(s, 2, updated_at);
	sqlite3_bind_int(s, 3, expirable ? 1 : 0);
	if (store_step_write(st, s, "touch", id, err, errlen) < 0)
		return -1;
	if (sqlite3_changes(st->db) == 0) {
		errbuf_set(err, errlen, "%s: touch %s: no such row", st->path,
		    id);
		return -1;
	}
	return 0;
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
	if (store_ckpt_run(st, st->db, SQLITE_CHECKPOINT_RESTART) < 0) {
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
	if (!sqlite3_get_autocommit(st->db) && !st->mig_pending) {
		s = st->stmt[STORE_ST_ROLLBACK];
		if (s != NULL) {
			sqlite3_step(s);
			sqlite3_reset(s);
		} else {
			sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
		}
	}
	st->in_txn = false;
	if (st->txn_failed)
		st->commit_failures++;
	/* Out of room: copying the WAL back lets the next transaction
	 * rewrite the WAL's space instead of growing it, and is how the
	 * store recovers by itself once room returns. */
	if (st->txn_no_room)
		(void)store_ckpt_run(st, st->db, SQLITE_CHECKPOINT_RESTART);
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
