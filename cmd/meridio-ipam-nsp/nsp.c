/*
 * nsp.c - meridio-ipam-nsp, the NSP watcher worker: turns the NSP
 * service's conduit lists into SyncConduits requests to the db worker.
 * Started by the supervisor (fork + exec) with the status channel on fd 3
 * and $IPAMD_RUNDIR naming the runtime directory; reads the configuration
 * the supervisor already validated.
 *
 * The main thread runs a poll loop over the signalfd, the supervisor's
 * status channel (fd 3), the db socket and a wake pipe from the watch
 * thread (watch.c), which reads the NSP service's WatchConduit stream: it
 * turns each conduit list into a SyncConduits request through
 * lib/conduitset, keeps the db connection (re-sending the latest list
 * after a reconnect), and sends a WorkerStatus heartbeat every second.
 * The watch thread hands over one list at a time and reads the next
 * message only when the db has acknowledged it (watch_done()).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "conduitset.h"
#include "config.h"
#include "ipc.h"
#include "ipcmsg.h"
#include "log.h"
#include "watch.h"
#include "now.h"

#define NSP_BACKOFF_MIN_MS 100		/* first retry delay after an error */
#define NSP_DB_RETRY_MS 100		/* delay between db connect attempts */
#define NSP_HEARTBEAT_MS 1000		/* WorkerStatus period */
#define NSP_READY_GRACE_MS 2000		/* ready without an NSP answer after */
#define NSP_STATUS_MAX 256		/* room for one status line */

/* The db connection and the request that carries the latest list. */
struct nsp_db {
	char path[108];			/* $IPAMD_RUNDIR/db.sock */
	struct ipc_conn *conn;		/* NULL while disconnected */
	bool ok;			/* Hello answered with code 0 */
	bool failing;			/* the last connect failed (logged) */
	uint64_t next_id;		/* last request id used */
	uint64_t hello_id;		/* id of this connection's Hello */
	int64_t retry_at;		/* monotonic ms of the next connect */
};

/* The latest list and its delivery to the db. */
struct nsp_sync {
	struct conduitset *set;		/* conduits seen in this run */
	struct conduitset_diff diff;	/* the latest list's request */
	bool have;			/* diff holds a list */
	bool pending;			/* diff not yet acknowledged */
	bool inflight;			/* sent on this db connection */
	uint64_t id;			/* request id of the inflight send */
	int64_t retry_at;		/* after an error reply: next attempt */
	int64_t retry_ms;		/* current error retry delay */
	bool synced_once;		/* some list was acknowledged */
	bool thread_waits;		/* the watch thread waits for this ack */
};

/* ---------------------------------------------------------------------
 * db connection and sync
 */

/* Closes the db connection; the next attempt comes NSP_DB_RETRY_MS later. */
static void
nsp_db_drop(struct nsp_db *db, struct nsp_sync *sy, const char *why)
{
	log_kv(LOGL_WARNING, "db connection lost", "reason", why, NULL);
	ipc_conn_free(db->conn);
	db->conn = NULL;
	db->ok = false;
	db->retry_at = now_ms() + NSP_DB_RETRY_MS;
	sy->inflight = false;
}

/* Connects to the db socket and queues Hello{ROLE_NSP}. A failure is
 * logged once per outage. */
static void
nsp_db_connect(struct nsp_db *db)
{
	Ipamd__V1__Request req = IPAMD__V1__REQUEST__INIT;
	Ipamd__V1__Hello hello = IPAMD__V1__HELLO__INIT;
	char err[256];
	int fd;

	db->retry_at = now_ms() + NSP_DB_RETRY_MS;
	fd = ipc_connect(db->path, err, sizeof(err));
	if (fd < 0) {
		if (!db->failing)
			log_kv(LOGL_WARNING, "cannot connect to db; retrying",
			    "error", err, NULL);
		db->failing = true;
		return;
	}
	db->conn = ipc_conn_new(fd);
	if (db->conn == NULL) {
		close(fd);
		log_error("out of memory for the db connection");
		return;
	}
	hello.role = IPAMD__V1__ROLE__ROLE_NSP;
	hello.pid = (int32_t)getpid();
	req.id = db->hello_id = ++db->next_id;
	req.body_case = IPAMD__V1__REQUEST__BODY_HELLO;
	req.hello = &hello;
	if (ipcmsg_queue_request(db->conn, &req) < 0) {
		ipc_conn_free(db->conn);
		db->conn = NULL;
		log_error("cannot queue Hello to the db");
		return;
	}
	if (db->failing)
		log_info("connected to db");
	db->failing = false;
}

/* Hands the current list back to the watch thread, which then reads the
 * next message. */
static void
nsp_release_thread(struct watch *w, struct nsp_sync *sy)
{
	if (!sy->thread_waits)
		return;
	watch_done(w);
	sy->thread_waits = false;
}

/* Queues SyncConduits for the latest list when the db is up, nothing is
 * in flight and no error retry is due later. */
static void
nsp_sync_try(struct nsp_db *db, struct nsp_sync *sy, struct watch *w)
{
	Ipamd__V1__Request req = IPAMD__V1__REQUEST__INIT;
	Ipamd__V1__SyncConduits sc = IPAMD__V1__SYNC_CONDUITS__INIT;

	if (db->conn == NULL || !db->ok || !sy->pending || sy->inflight ||
	    now_ms() < sy->retry_at)
		return;
	sc.n_add = sy->diff.nadd;
	sc.add = sy->diff.add;
	sc.n_remove = sy->diff.nremove;
	sc.remove = sy->diff.remove;
	req.id = sy->id = ++db->next_id;
	req.body_case = IPAMD__V1__REQUEST__BODY_SYNC_CONDUITS;
	req.sync_conduits = &sc;
	if (ipcmsg_queue_request(db->conn, &req) < 0) {
		/* Only a list too big for one frame gets here: it can never
		 * be sent, so drop it rather than stall the stream. */
		log_error("conduit list does not fit in one request; ignored");
		sy->pending = false;
		nsp_release_thread(w, sy);
		return;
	}
	sy->inflight = true;
}

/* Takes a new full list: computes the request and sends it when it can. */
static void
nsp_sync_list(struct nsp_sync *sy, const char *const *names, size_t n)
{

	conduitset_diff_clear(&sy->diff);
	sy->have = false;
	sy->pending = false;
	if (conduitset_diff(sy->set, names, n, &sy->diff) < 0) {
		log_error("conduit list ignored: %s", strerror(errno));
		return;
	}
	if (sy->diff.nskipped > 0)
		log_kv(LOGL_WARNING, "ignored conduits with an empty or too "
		    "long name", LOG_INT("count", sy->diff.nskipped), NULL);
	log_kv(LOGL_DEBUG, "conduit list", LOG_INT("listed", sy->diff.nadd),
	    LOG_INT("to_remove", sy->diff.nremove), NULL);
	sy->have = true;
	sy->pending = true;
	sy->inflight = false;
	sy->retry_at = 0;
	sy->retry_ms = NSP_BACKOFF_MIN_MS;
}

/* Handles the db's answer to the inflight SyncConduits. */
static void
nsp_sync_reply(struct nsp_sync *sy, struct watch *w,
    const Ipamd__V1__Reply *r, int64_t cap_ms)
{
	char delay[32];
	size_t i;

	sy->inflight = false;
	if (r->code != 0) {
		snprintf(delay, sizeof(delay), "%" PRId64 "ms", sy->retry_ms);
		log_kv(LOGL_WARNING, "db refused the conduit list; retrying",
		    LOG_INT("code", r->code), "error", r->message, "retry_in",
		    delay, NULL);
		sy->retry_at = now_ms() + sy->retry_ms;
		sy->retry_ms = sy->retry_ms * 2 > cap_ms ? cap_ms :
		    sy->retry_ms * 2;
		return;
	}
	for (i = 0; i < sy->diff.nremove; i++)
		if (conduitset_contains(sy->set, sy->diff.remove[i]))
			log_kv(LOGL_DEBUG, "conduit removal acknowledged",
			    "conduit", sy->diff.remove[i], NULL);
	conduitset_commit(sy->set, &sy->diff);
	sy->pending = false;
	sy->synced_once = true;
	sy->retry_ms = NSP_BACKOFF_MIN_MS;
	nsp_release_thread(w, sy);
}

/*
 * Reads what the db sent and handles every complete Reply. A frame that is
 * not a Reply is a bug of the db worker: log it and exit, the supervisor
 * restarts us.
 */
static void
nsp_db_read(struct nsp_db *db, struct nsp_sync *sy, struct watch *w,
    int64_t cap_ms)
{
	Ipamd__V1__Reply *r;
	const uint8_t *data;
	size_t len;
	ssize_t got;
	int rc;

	got = ipc_conn_fill(db->conn);
	if (got == 0) {
		nsp_db_drop(db, sy, "closed by the db worker");
		return;
	}
	if (got < 0 && errno != EAGAIN && errno != EINTR) {
		nsp_db_drop(db, sy, strerror(errno));
		return;
	}
	while ((rc = ipc_conn_next(db->conn, &data, &len)) == 1) {
		r = ipcmsg_unpack_reply(data, len);
		if (r == NULL)
			log_fatal("malformed reply from the db worker");
		if (r->id == db->hello_id) {
			if (r->code != 0) {
				log_kv(LOGL_ERROR, "db refused Hello", "error",
				    r->message, NULL);
				ipamd__v1__reply__free_unpacked(r, NULL);
				nsp_db_drop(db, sy, "Hello refused");
				return;
			}
			db->ok = true;
			/* A new connection may be a restarted db worker:
			 * send the latest list again (adds are idempotent). */
			if (sy->have)
				sy->pending = true;
		} else if (sy->inflight && r->id == sy->id) {
			nsp_sync_reply(sy, w, r, cap_ms);
		}
		ipamd__v1__reply__free_unpacked(r, NULL);
	}
	if (rc < 0)
		nsp_db_drop(db, sy, "oversized frame from the db worker");
}

/* ---------------------------------------------------------------------
 * Main loop
 */

/* The status line for the supervisor (systemd's STATUS=). */
static void
nsp_status_line(char *buf, size_t len, const struct cfg *cfg,
    const struct nsp_db *db, const struct nsp_sync *sy, struct watch *w)
{
	size_t n = conduitset_listed(sy->set);
	enum watch_state st;
	int64_t retry;

	if (!db->ok) {
		snprintf(buf, len, "nsp: waiting for the db worker");
		return;
	}
	watch_state(w, &st, &retry);
	switch (st) {
	case WATCH_WATCHING:
		snprintf(buf, len, "nsp: watching %s, %zu conduits",
		    cfg->nsp_service, n);
		break;
	case WATCH_BACKOFF:
		if (retry >= 1000)
			snprintf(buf, len, "nsp: NSP %s unreachable, retry in "
			    "%" PRId64 "s", cfg->nsp_service, (retry + 500) / 1000);
		else
			snprintf(buf, len, "nsp: NSP %s unreachable, retry in "
			    "%" PRId64 "ms", cfg->nsp_service, retry);
		break;
	default:
		snprintf(buf, len, "nsp: connecting to %s", cfg->nsp_service);
		break;
	}
}

/* Handles a wake from the watch thread: a list may be waiting. */
static void
nsp_take_list(struct watch *w, struct nsp_sync *sy, int wake_r)
{
	const char *const *names;
	char drain[64];
	size_t n;

	while (read(wake_r, drain, sizeof(drain)) > 0)
		;
	if (sy->thread_waits)
		return;
	if (watch_take(w, &names, &n)) {
		nsp_sync_list(sy, names, n);
		sy->thread_waits = true;
	}
	if (sy->thread_waits && !sy->pending)
		nsp_release_thread(w, sy);	/* the list was unusable */
}

/*
 * The main loop (see the top of this file), until SIGTERM arrives on sigfd
 * or the supervisor closes statusfd (-1: no status channel). Each turn:
 * connect to the db if due, send the latest list if it is pending, report
 * status when it changed or a second passed, then poll with a timeout that
 * wakes for the next of those deadlines. Returns the exit status:
 * IPCMSG_EXIT_PERMANENT when cfg names no NSP service (static conduits
 * are the db worker's).
 */
static int
nsp_run(const struct cfg *cfg, const char *rundir, int sigfd, int statusfd)
{
	struct watch *w = NULL;
	struct nsp_db db;
	struct nsp_sync sy;
	struct pollfd pfd[4];
	struct signalfd_siginfo si;
	char status[NSP_STATUS_MAX], last_status[NSP_STATUS_MAX] = "";
	int64_t now, next_hb = 0, ready_at, cap_ms, timeout;
	bool ready, last_ready = false, running = true;
	int wake[2] = { -1, -1 }, rc = 1, i, npfd;
	char buf[64];

	memset(&db, 0, sizeof(db));
	memset(&sy, 0, sizeof(sy));
	if (cfg->nsp_service[0] == '\0') {
		log_error("no NSP service (IPAM_NSP_SERVICE empty or "
		    "IPAM_CONDUITS set): nothing to watch");
		return IPCMSG_EXIT_PERMANENT;
	}
	cap_ms = watch_ms_of_ns(cfg->max_backoff_ns, NSP_BACKOFF_MIN_MS);
	sy.retry_ms = NSP_BACKOFF_MIN_MS;
	if (ipcmsg_db_path(rundir, db.path, sizeof(db.path)) < 0) {
		log_error("runtime directory path too long: %s", rundir);
		return 1;
	}
	if ((sy.set = conduitset_new()) == NULL) {
		log_error("out of memory");
		return 1;
	}
	if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		log_error("pipe: %s", strerror(errno));
		goto out;
	}

	if ((w = watch_start(cfg, wake[1])) == NULL)
		goto out;
	/* Readiness waits for the first list at most this long:
	 * the db must keep serving existing conduits while NSP is down, so
	 * the worker's readiness must never depend on NSP being up. */
	ready_at = now_ms() + NSP_READY_GRACE_MS;

	while (running) {
		now = now_ms();
		if (db.conn == NULL && now >= db.retry_at)
			nsp_db_connect(&db);
		nsp_sync_try(&db, &sy, w);

		ready = db.ok && (sy.synced_once || now >= ready_at);
		nsp_status_line(status, sizeof(status), cfg, &db, &sy, w);
		if (statusfd >= 0 && (now >= next_hb || ready != last_ready ||
		    strcmp(status, last_status) != 0)) {
			if (ipcmsg_send_status(statusfd, ready, status) < 0) {
				log_info("supervisor gone; exiting");
				break;
			}
			if (ready && !last_ready)
				log_kv(LOGL_INFO, "ready", "status", status,
				    NULL);
			last_ready = ready;
			snprintf(last_status, sizeof(last_status), "%s",
			    status);
			next_hb = now + NSP_HEARTBEAT_MS;
		}

		npfd = 0;
		pfd[npfd++] = (struct pollfd){ .fd = sigfd, .events = POLLIN };
		pfd[npfd++] = (struct pollfd){ .fd = wake[0], .events = POLLIN };
		pfd[npfd++] = (struct pollfd){ .fd = statusfd,
		    .events = POLLIN };
		pfd[npfd++] = (struct pollfd){
			.fd = db.conn != NULL ? ipc_conn_fd(db.conn) : -1,
			.events = POLLIN | (db.conn != NULL &&
			    ipc_conn_pending(db.conn) ? POLLOUT : 0),
		};

		timeout = next_hb - now;
		if (db.conn == NULL && db.retry_at - now < timeout)
			timeout = db.retry_at - now;
		if (sy.pending && !sy.inflight && sy.retry_at > now &&
		    sy.retry_at - now < timeout)
			timeout = sy.retry_at - now;
		if (!last_ready && ready_at > now &&
		    ready_at - now < timeout)
			timeout = ready_at - now;
		if (statusfd < 0)
			timeout = timeout > NSP_HEARTBEAT_MS ?
			    NSP_HEARTBEAT_MS : timeout;
		if (timeout < 0)
			timeout = 0;
		if (poll(pfd, npfd, (int)timeout) < 0) {
			if (errno == EINTR)
				continue;
			log_error("poll: %s", strerror(errno));
			goto out_stop;
		}

		if (pfd[0].revents & POLLIN) {
			while (read(sigfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGTERM) {
					log_kv(LOGL_INFO, "stopping", "signal",
					    strsignal((int)si.ssi_signo), NULL);
					running = false;
				}
			}
			if (!running)
				break;
		}
		if (pfd[2].revents & (POLLIN | POLLHUP | POLLERR)) {
			i = (int)read(statusfd, buf, sizeof(buf));
			if (i == 0 || (i < 0 && errno != EAGAIN &&
			    errno != EINTR)) {
				log_info("supervisor gone; exiting");
				break;
			}
		}
		if (db.conn != NULL && (pfd[3].revents & POLLOUT) &&
		    ipc_conn_flush(db.conn) < 0)
			nsp_db_drop(&db, &sy, strerror(errno));
		if (db.conn != NULL &&
		    (pfd[3].revents & (POLLIN | POLLHUP | POLLERR)))
			nsp_db_read(&db, &sy, w, cap_ms);
		if (db.conn != NULL && ipc_conn_pending(db.conn) &&
		    ipc_conn_flush(db.conn) < 0)
			nsp_db_drop(&db, &sy, strerror(errno));
		if (pfd[1].revents & POLLIN)
			nsp_take_list(w, &sy, wake[0]);
	}
	rc = 0;

out_stop:
	watch_stop(w);
out:
	ipc_conn_free(db.conn);
	conduitset_diff_clear(&sy.diff);
	conduitset_free(sy.set);
	if (wake[0] >= 0)
		close(wake[0]);
	if (wake[1] >= 0)
		close(wake[1]);
	return rc;
}

/* getenv with the constness config_load expects. */
static const char *
nsp_getenv(const char *name)
{
	return getenv(name);
}

int
main(int argc, char **argv)
{
	struct cfg cfg;
	char err[512];
	const char *rundir;
	sigset_t sigs;
	int sigfd, statusfd = IPCMSG_SUPERVISOR_FD, rc;

	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		printf("meridio-ipam-nsp %s\n", IPAM_VERSION);
		return 0;
	}
	if (argc > 1) {
		fprintf(stderr, "usage: %s (started by meridio-ipam)\n",
		    argv[0]);
		return 2;
	}
	log_init("nsp", LOGL_INFO, 2);
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 ||
	    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		log_fatal("prctl: %s", strerror(errno));

	/* SIGTERM arrives on a signalfd (SIGINT is the supervisor's: it
	 * comes ignored); blocked before any thread
	 * (gRPC's included) exists, so every thread inherits the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &sigs, NULL) < 0)
		log_fatal("sigprocmask: %s", strerror(errno));
	sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0)
		log_fatal("signalfd: %s", strerror(errno));
	signal(SIGPIPE, SIG_IGN);

	if (config_load(&cfg, nsp_getenv, err, sizeof(err)) < 0)
		log_fatal("configuration: %s", err);
	log_init("nsp", cfg.log_level, 2);
	rundir = getenv(IPCMSG_ENV_RUNDIR);
	if (rundir == NULL || rundir[0] == '\0')
		log_fatal("%s is not set", IPCMSG_ENV_RUNDIR);
	if (fcntl(statusfd, F_GETFD) < 0) {
		log_warn("no status channel on fd %d; running without one",
		    statusfd);
		statusfd = -1;
	} else {
		fcntl(statusfd, F_SETFD, FD_CLOEXEC);
	}

	rc = nsp_run(&cfg, rundir, sigfd, statusfd);
	config_free(&cfg);
	close(sigfd);
	return rc;
}
