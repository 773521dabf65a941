/*
 * storeint.h - what the files of the store share: the inside of a struct
 * store, and the functions of storelock.c, storeschema.c, storeckpt.c
 * and storescan.c that store.c calls (each documented where
 * it is defined). Nothing else includes it.
 */
#ifndef IPAM_STOREINT_H
#define IPAM_STOREINT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <sqlite3.h>

#include "store.h"

struct storescan;

/* How long sqlite waits for a lock held by a foreign reader (e.g. the
 * sqlite3 shell). Our own second instances never get that far: flock. */
#define STORE_BUSY_MS 5000

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
	unsigned add_cols;		/* bits of storeschema_columns the
					 * file lacks */
	bool mig_found;			/* store_open found a migration */
	bool mig_pending;		/* ... held in an open transaction */
	struct store_migration mig;	/* what it does */
};

/* storelock.c: the file's lock, and the checks before sqlite sees it. */
void storelock_dirname(const char *path, char *buf, size_t len);
int storelock_open(const char *path, int flags, bool *created, char *err,
    size_t errlen);
int storelock_take(int fd, const char *path, long *holder, char *err,
    size_t errlen);
int storelock_check_header(int fd, const char *path, off_t size, char *err,
    size_t errlen);

/* storescan.c: the rows of one store_load, read in one pass. */
int storescan_read(sqlite3_stmt *s, const char *path, struct storescan **out,
    char *err, size_t errlen);
int storescan_walk(struct storescan *sc, const char *path,
    int (*fn)(void *arg, const struct store_row *row), void *arg,
    char *err, size_t errlen);
void storescan_free(struct storescan *sc);

/* storeschema.c: Meridio's schema in the store's connection. */
int storeschema_exec(struct store *st, const char *sql, const char *what,
    char *err, size_t errlen);
int storeschema_query_int(sqlite3 *db, const char *path, const char *sql,
    const char *arg, int64_t *val, char *err, size_t errlen);
int storeschema_check(struct store *st, bool *create, char *err,
    size_t errlen);
int storeschema_migrate(struct store *st, int64_t now, char *err,
    size_t errlen);
int storeschema_mig_commit(struct store *st, char *err, size_t errlen);
int storeschema_setup(struct store *st, bool create, char *err,
    size_t errlen);

/* storeckpt.c: checkpoints of the WAL, in a thread of their own. */
int storeckpt_run(struct store *st, sqlite3 *db, int mode);
int storeckpt_hook(void *arg, sqlite3 *db, const char *name, int frames);
int storeckpt_wal_limit(struct store *st, char *err, size_t errlen);
void storeckpt_stop(struct store *st);

#endif
