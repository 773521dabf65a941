/*
 * storeverify.c - the check for damaged pages at open: sqlite's
 * quick_check in a helper thread while the rows are read for the first
 * load.
 */
#include "errbuf.h"
#include "storeint.h"

#include <stdlib.h>

/* A quick_check run by storeverify_run's helper thread. */
struct storeverify_qc {
	const char *path;		/* the file */
	int rc;				/* 0; -1 with err set; 1 = not run */
	int64_t n;			/* problems found */
	char err[512];			/* why it failed */
};

/* Counts the problems quick_check finds. */
#define STOREVERIFY_SQL "SELECT count(*) FROM pragma_quick_check " \
	"WHERE quick_check<>'ok'"

/* The helper thread: quick_check on a connection of its own. */
static void *
storeverify_main(void *arg)
{
	struct storeverify_qc *q = arg;
	sqlite3 *db = NULL;

	if (sqlite3_open_v2(q->path, &db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_NOMUTEX, NULL) == SQLITE_OK) {
		sqlite3_busy_timeout(db, STORE_BUSY_MS);
		q->rc = storeschema_query_int(db, q->path, STOREVERIFY_SQL,
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
int
storeverify_run(struct store *st, char *err, size_t errlen)
{
	struct storeverify_qc q = { .path = st->path, .rc = 1 };
	char ignored[8];
	pthread_t t;
	bool threaded;

	threaded = pthread_create(&t, NULL, storeverify_main, &q) == 0;
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
		    STOREVERIFY_SQL, NULL, &q.n, q.err, sizeof(q.err));
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

