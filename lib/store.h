/*
 * store.h - the sqlite file, in Meridio's schema.
 *
 * Table `prefixes` (id, name, cidr, parent_id, updated_at, expirable) with
 * Meridio's indexes, so a registry.db written by Meridio's IPAM opens here and
 * the reverse. The store knows rows, not trees: checking that rows form a
 * sound tree is the caller's job. Writes happen inside store_begin/commit so
 * that many changes share one transaction and one fsync (group commit).
 *
 * A store holds an exclusive lock on the file for its lifetime: a second
 * opener (another process) is refused at once with a clear error.
 * No logging, no exit: errors are written into the caller's buffer.
 * A store is used by one thread; one process opens a file only once.
 */
#ifndef IPAM_STORE_H
#define IPAM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

/* One row of `prefixes`. Strings belong to the caller (or to the store for
 * the duration of a store_load callback). */
struct store_row {
	const char *id;		/* primary key: name, or "<name>-<parent id>" */
	const char *name;	/* the record's name */
	const char *cidr;	/* prefix text, e.g. "169.255.0.1/32" */
	const char *parent_id;	/* "" for a trench record */
	int64_t updated_at;	/* ns since the epoch, UTC; 0 = no time: NULL
				 * or Go's zero time (written as NULL);
				 * before 1970 negative */
	bool expirable;		/* may be reaped by GC */
	long seq;		/* store_load: the row's place in the walk
				 * (0, 1, ...); ignored by writes */
	long parent_seq;	/* store_load: seq of the row named by
				 * parent_id; -1 for a trench row and for
				 * rows without a root (orphans, cycles) */
};

enum store_flags {
	STORE_SYNC_NORMAL = 1 << 0,	/* synchronous=NORMAL instead of FULL */
	STORE_NO_CREATE = 1 << 1,	/* fail if the file does not exist */
};

/*
 * Opens (creating if needed, unless STORE_NO_CREATE) the database at path:
 * exclusive lock, schema (created if absent, checked if present), WAL
 * journal, synchronous=FULL unless STORE_SYNC_NORMAL. A file that is not a
 * database, or lacks the expected columns, is refused and left untouched;
 * one of an older Meridio is migrated (see struct store_migration).
 * An existing file is switched to WAL, and given any of Meridio's indexes
 * it lacks, on the first store_begin: opening and loading alone write
 * nothing. A file this process already has open is refused. A file this
 * call created is removed again if the open fails.
 * Returns 0, or -1 with err set.
 */
int store_open(struct store **out, const char *path, int flags, char *err,
    size_t errlen);

/*
 * store_open with the lock taken already: lockfd is a descriptor of path
 * on which flock(LOCK_EX) is held (by this process or a parent that
 * handed it down), and the store owns it from now on (closed by
 * store_close, or here on failure). Refused when path is no longer that
 * file.
 */
int store_open_locked(struct store **out, const char *path, int lockfd,
    int flags, char *err, size_t errlen);

/*
 * Takes path's exclusive lock without opening the database, for a process
 * that holds it on behalf of the one that will (the supervisor, for its
 * whole life, so that a restart of the db worker leaves no gap in which
 * another instance could take the file). Opens path read-write, creating
 * it empty when missing unless STORE_NO_CREATE (*created then set; the
 * caller removes an empty file it created if nothing used it). Returns 0
 * with *fd locked (close-on-exec); 1 when another process holds the lock
 * (*holder: the pid that took it, 0 if unknown; err says so); -1 with err
 * set when path cannot be opened or locked. Nothing stays open on failure.
 */
int store_lock_file(const char *path, int flags, int *fd, bool *created,
    long *holder, char *err, size_t errlen);

/*
 * Checks that the database file and its -wal and -shm are still the files
 * at the path (not removed, replaced, or the database truncated), so that
 * nothing is acknowledged into a file that will vanish. Cheap (a few
 * stat calls). Returns 0, or -1 with err naming the file; the store then
 * leaves what lies at the path alone when it closes.
 */
int store_check_files(struct store *st, char *err, size_t errlen);

/*
 * What store_open found to do to bring a file written by an older Meridio
 * to the current schema, as Meridio's own start-up does: gorm's
 * AutoMigrate adds the missing columns (updated_at, expirable) and
 * indexes, then migrate() makes every node record (below a conduit) and
 * its children other than "bridge" expirable, with updated_at now. The
 * open connection holds it in one uncommitted transaction, so store_load
 * sees the result; the first store_begin (or store_upgrade) commits it,
 * and store_close without a write leaves the file as it was.
 */
struct store_migration {
	int columns;		/* columns added */
	int indexes;		/* indexes added with them */
	int64_t nodes;		/* node records made expirable */
	int64_t children;	/* address records made expirable */
};

/* Fills *m (zeroed when there is none) and returns true when opening
 * found a migration to do; it stays reported after it is committed. */
bool store_migration(const struct store *st, struct store_migration *m);

/* Writes now what a first write would (the migration, the WAL journal,
 * missing indexes): an empty store_begin/store_commit. Returns 0 or -1. */
int store_upgrade(struct store *st, char *err, size_t errlen);

/* Closes the database and drops the lock. Accepts NULL. */
void store_close(struct store *st);

/*
 * Calls fn for every row, parents before their children (rows ordered by
 * depth, then insertion order); rows whose parent does not exist (orphans)
 * and their descendants come last. NULL text columns are passed as "".
 * fn returning non-zero stops the walk and is returned. A row whose
 * updated_at is not a time go-sqlite3 reads stops the walk with STORE_EROW
 * and err naming the row id and the column. Returns 0, the callback's
 * value, STORE_EROW, or -1 with err set.
 */
#define STORE_EROW (-2)	/* store_load: a row cannot be read */
int store_load(struct store *st,
    int (*fn)(void *arg, const struct store_row *row), void *arg,
    char *err, size_t errlen);

/* Starts a write transaction (insert, touch and delete are refused outside
 * one). Returns 0 or -1 with err set. */
int store_begin(struct store *st, char *err, size_t errlen);

/* Inserts a row. Returns 0 or -1 (e.g. duplicate id, same cidr under the
 * same parent, disk full). After -1 the batch may have been rolled back
 * by sqlite (I/O error): then later writes and the commit fail too; the
 * caller should store_rollback the batch. */
int store_insert(struct store *st, const struct store_row *row, char *err,
    size_t errlen);

/* Sets updated_at (and expirable) of row id. Returns 0 or -1 (also when
 * no row has that id). */
int store_touch(struct store *st, const char *id, int64_t updated_at,
    bool expirable, char *err, size_t errlen);

/* Deletes row id (not its children: the caller deletes those first).
 * Deleting an absent id is not an error. Returns 0 or -1. */
int store_delete(struct store *st, const char *id, char *err, size_t errlen);

/* Commits the transaction (one fsync of the WAL with synchronous=FULL).
 * On failure the transaction is rolled back. Returns 0 or -1. */
int store_commit(struct store *st, char *err, size_t errlen);

/* Rolls back the open transaction, if any. */
void store_rollback(struct store *st);

/* Number of successful commits since open (each is one durable write). */
uint64_t store_commit_count(const struct store *st);

/* What went wrong since open, for logs and metrics. */
struct store_health {
	uint64_t commits;		/* successful commits */
	uint64_t commit_failures;	/* transactions a failed write or
					 * commit ended (rolled back) */
	uint64_t ckpt_runs;		/* checkpoints tried */
	uint64_t ckpt_failures;		/* of those, failed */
	bool ckpt_failing;		/* the latest checkpoint failed */
	char ckpt_error[256];		/* its error; "" when it did not */
};

/* Fills h. Checkpoints run in a thread of the store too: safe to call
 * while one runs. */
void store_health(struct store *st, struct store_health *h);

/*
 * Copies the WAL back into the file now (PASSIVE: skips what a reader
 * still needs). Commits do this by themselves past a size, and after a
 * commit failed for room. Returns 0, or -1 with err set.
 */
int store_checkpoint(struct store *st, char *err, size_t errlen);

#endif
