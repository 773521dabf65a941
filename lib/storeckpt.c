/*
 * storeckpt.c - checkpoints: copying the WAL back into the file in a
 * thread with its own connection, woken by commits, and the WAL size
 * limits that decide when.
 */
#include "storeint.h"

#include <stdio.h>
#include <sys/stat.h>

/* The WAL size after a commit that wakes the checkpointer, and the size
 * past which the committing connection checkpoints itself (what is left:
 * the thread did most of it). Under steady writes the thread seldom
 * catches up with the writer, so the WAL cycles up to the hard size; a
 * large soft size lets one pass copy a hot page once instead of many
 * times. The WAL must also stay small beside the file on a small volume,
 * so both limits are in bytes and scale with the database: the
 * checkpointer wakes when the WAL passes half the file's size (at least
 * STORECKPT_MIN_BYTES, at most STORECKPT_MAX_BYTES), and the writer
 * checkpoints past STORECKPT_HARD_FACTOR times that. journal_size_limit
 * truncates a WAL that grew past the hard size back to it when it
 * restarts, and follows the file's growth (re-set at a begin once it is
 * off by half or more): a smaller one would truncate the WAL at each
 * restart, and every commit would grow the file again. */
#define STORECKPT_MIN_BYTES (1LL << 20)
#define STORECKPT_MAX_BYTES (10000LL * 4096)
#define STORECKPT_HARD_FACTOR 4

/*
 * Runs one checkpoint on db (the writer's connection or the
 * checkpointer's) and notes how it went, for store_health. The
 * checkpointer runs PASSIVE ones (never waiting for, nor blocking, the
 * writer); the writer runs RESTART ones, which wait for the checkpointer's
 * pass to end and leave the WAL to be rewritten from its start, so that it
 * stops growing even when the thread never catches up.
 */
int
storeckpt_run(struct store *st, sqlite3 *db, int mode)
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
storeckpt_main(void *arg)
{
	struct store *st = arg;
	sqlite3 *db = NULL;

	if (sqlite3_open_v2(st->path, &db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK || sqlite3_exec(db,
	    st->sync_normal ? "PRAGMA synchronous=NORMAL" :
	    "PRAGMA synchronous=FULL", NULL, NULL, NULL) != SQLITE_OK) {
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
			(void)storeckpt_run(st, db,
			    SQLITE_CHECKPOINT_PASSIVE);
		pthread_mutex_lock(&st->ck_mu);
	}
	pthread_mutex_unlock(&st->ck_mu);
	sqlite3_close(db);
	return NULL;
}

/* The WAL size that wakes the checkpointer (see STORECKPT_MIN_BYTES). */
static long long
storeckpt_soft(struct store *st)
{
	struct stat sb;
	long long soft;

	soft = fstat(st->lockfd, &sb) == 0 ? (long long)sb.st_size / 2 : 0;
	if (soft < STORECKPT_MIN_BYTES)
		soft = STORECKPT_MIN_BYTES;
	if (soft > STORECKPT_MAX_BYTES)
		soft = STORECKPT_MAX_BYTES;
	return soft;
}

/* Sets journal_size_limit to the hard WAL size when it is off by half or
 * more (outside a transaction). */
int
storeckpt_wal_limit(struct store *st, char *err, size_t errlen)
{
	long long want = storeckpt_soft(st) * STORECKPT_HARD_FACTOR;
	char sql[64];

	if (st->wal_limit != 0 && want < st->wal_limit * 3 / 2 &&
	    want > st->wal_limit / 2)
		return 0;
	snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit=%lld", want);
	if (storeschema_exec(st, sql, "set journal_size_limit", err, errlen) <
	    0)
		return -1;
	st->wal_limit = want;
	return 0;
}

/*
 * sqlite's WAL hook, called after each commit with the frames now in the
 * WAL: wakes the checkpointer (started on first need) when the WAL passes
 * its size limit (see STORECKPT_MIN_BYTES); checkpoints here past
 * STORECKPT_HARD_FACTOR times that or when no thread can be started.
 */
int
storeckpt_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
	struct store *st = arg;
	long long wal = (long long)frames * st->pgsz, soft;

	(void)name;
	if (wal < STORECKPT_MIN_BYTES)
		return SQLITE_OK;
	soft = storeckpt_soft(st);
	if (wal < soft)
		return SQLITE_OK;
	if (!st->ck_started && pthread_create(&st->ck_thread, NULL,
	    storeckpt_main, st) == 0)
		st->ck_started = true;
	if (wal >= soft * STORECKPT_HARD_FACTOR || !st->ck_started) {
		(void)storeckpt_run(st, db, SQLITE_CHECKPOINT_RESTART);
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
void
storeckpt_stop(struct store *st)
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
