/*
 * nsp.c - the NSP watcher worker.
 *
 * Two threads. The watch thread owns the gRPC call to
 * /nsp.v1.ConfigurationManager/WatchConduit: it reads one ConduitResponse
 * at a time, filters it, hands the names to the main thread and waits until
 * the db has acknowledged them before it asks gRPC for the next message
 * (so lists are applied one by one, in order). It reconnects with a capped
 * exponential backoff. The main thread runs a poll loop over the signalfd,
 * the supervisor's status channel (fd 3), the db socket and a wake pipe
 * from the watch thread: it turns each list into a SyncConduits request
 * through lib/conduitset, keeps the db connection (re-sending the latest
 * list after a reconnect), and sends a WorkerStatus heartbeat every second.
 *
 * Without IPAM_NSP_SERVICE there is no watch thread and no gRPC: the list
 * is IPAM_CONDUITS, sent once per db connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>

#include "conduitset.h"
#include "config.h"
#include "grpcx.h"
#include "ipc.h"
#include "ipcmsg.h"
#include "log.h"
#include "nsp.h"
#include "nsp/v1/configurationmanager.pb-c.h"

#define NSP_METHOD "/nsp.v1.ConfigurationManager/WatchConduit"
#define NSP_BACKOFF_MIN_MS 100		/* first retry delay of the watch */
#define NSP_CONNECT_MS 5000		/* time a connection attempt may take */
#define NSP_BACKUP_POLL_MS "100"	/* gRPC's polling of idle channels */
#define NSP_DB_RETRY_MS 100		/* delay between db connect attempts */
#define NSP_HEARTBEAT_MS 1000		/* WorkerStatus period */
#define NSP_READY_GRACE_MS 2000		/* ready without an NSP answer after */
#define NSP_JOIN_MS 700			/* wait for the watch thread on exit */
#define NSP_STATUS_MAX 256		/* room for one status line */
#define NSP_MAX_MESSAGE (32 << 20)	/* largest ConduitResponse accepted */

/* What the watch thread is doing, for the status line. */
enum nsp_wstate {
	NSP_W_CONNECTING,		/* a call is starting */
	NSP_W_WATCHING,			/* the stream delivered a message */
	NSP_W_BACKOFF,			/* waiting before the next call */
};

/* State shared by the main thread and the watch thread. */
struct nsp_watch {
	pthread_mutex_t mu;		/* guards the fields up to wake_w */
	pthread_cond_t cv;		/* signalled on stop and when a list is done */
	bool stop;			/* the worker is stopping */
	grpc_call *call;		/* the running call (for cancel), or NULL */
	const char **names;		/* list handed to the main thread */
	size_t nnames;			/* entries in names */
	bool handed;			/* names waits for the main thread */
	enum nsp_wstate state;		/* for the status line */
	int64_t retry_ms;		/* NSP_W_BACKOFF: delay of this wait */
	int wake_w;			/* write end of the wake pipe */
	const struct cfg *cfg;		/* configuration (read only) */
	grpc_channel *channel;		/* channel to the NSP service, NULL
					 * until made (watch thread only) */
	struct grpcx_tls *tls;		/* IPAM_NSP_TLS_* files, NULL when
					 * plaintext or not read yet */
	char tls_err[NSP_STATUS_MAX];	/* last TLS file error logged */
};

static grpc_channel *nsp_channel_new(const struct cfg *cfg,
    struct grpcx_tls *tls);

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

/* Milliseconds of the monotonic clock. */
static int64_t
nsp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Nanoseconds of configuration as milliseconds in [lo, INT32_MAX]. */
static int
nsp_ns_to_ms(int64_t ns, int lo)
{
	int64_t ms = ns / 1000000;

	if (ms < lo)
		return lo;
	if (ms > INT32_MAX)
		return INT32_MAX;
	return (int)ms;
}

/* ---------------------------------------------------------------------
 * Watch thread
 */

/* Waits for the one operation outstanding on cq; its success flag. */
static bool
nsp_cq_wait(grpc_completion_queue *cq)
{
	grpc_event ev;

	ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME),
	    NULL);
	return ev.type == GRPC_OP_COMPLETE && ev.success;
}

/*
 * Filters one ConduitResponse and hands its names to the main thread, then
 * waits until the main thread is done with them (db acknowledged) or the
 * worker stops. Oversized or malformed lists are logged and dropped.
 */
static void
nsp_watch_message(struct nsp_watch *w, grpc_byte_buffer *bb)
{
	Nsp__V1__ConduitResponse *resp;
	Nsp__V1__Conduit *c;
	const char **names = NULL;
	size_t i, n = 0, other = 0;
	char buf[32];

	resp = (Nsp__V1__ConduitResponse *)grpcx_unpack(
	    &nsp__v1__conduit_response__descriptor, bb);
	if (resp == NULL) {
		log_warn("NSP sent a malformed ConduitResponse; ignored");
		return;
	}
	if (resp->n_conduits > CONDUITSET_MAX) {
		snprintf(buf, sizeof(buf), "%zu", resp->n_conduits);
		log_kv(LOGL_WARNING, "conduit list too long; ignored",
		    "count", buf, NULL);
		goto out;
	}
	names = calloc(resp->n_conduits + 1, sizeof(*names));
	if (names == NULL) {
		log_error("out of memory for a conduit list; ignored");
		goto out;
	}
	for (i = 0; i < resp->n_conduits; i++) {
		c = resp->conduits[i];
		if (c->trench != NULL && c->trench->name[0] != '\0' &&
		    strcmp(c->trench->name, w->cfg->trench) != 0) {
			other++;
			continue;
		}
		names[n++] = c->name;
	}
	if (other > 0) {
		snprintf(buf, sizeof(buf), "%zu", other);
		log_kv(LOGL_DEBUG, "ignored conduits of other trenches",
		    "count", buf, NULL);
	}

	pthread_mutex_lock(&w->mu);
	w->names = names;
	w->nnames = n;
	w->handed = true;
	pthread_mutex_unlock(&w->mu);
	if (write(w->wake_w, "l", 1) < 0 && errno != EAGAIN)
		log_error("wake pipe: %s", strerror(errno));
	pthread_mutex_lock(&w->mu);
	while (w->handed && !w->stop)
		pthread_cond_wait(&w->cv, &w->mu);
	w->handed = false;
	w->names = NULL;
	pthread_mutex_unlock(&w->mu);
out:
	free(names);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
}

/*
 * Runs one WatchConduit call to its end: sends the trench, then reads
 * messages until the stream ends, fails or is cancelled. Fills code and
 * details with the final status; *got_message tells whether any message
 * arrived (a stream that worked resets the backoff).
 */
static void
nsp_watch_call(struct nsp_watch *w, grpc_completion_queue *cq,
    grpc_status_code *code, char *details, size_t dlen, bool *got_message)
{
	Nsp__V1__Trench trench = NSP__V1__TRENCH__INIT;
	Nsp__V1__Conduit req = NSP__V1__CONDUIT__INIT;
	grpc_metadata_array md_init, md_trail;
	grpc_byte_buffer *sendbuf = NULL, *recvbuf;
	grpc_slice method, sdetails = grpc_empty_slice();
	const char *errstr = NULL;
	grpc_call *call;
	grpc_op ops[4];
	bool stop;

	*code = GRPC_STATUS_UNKNOWN;
	*got_message = false;
	snprintf(details, dlen, "call not started");
	grpc_metadata_array_init(&md_init);
	grpc_metadata_array_init(&md_trail);

	trench.name = w->cfg->trench;
	req.trench = &trench;
	sendbuf = grpcx_pack(&req.base);
	if (sendbuf == NULL) {
		snprintf(details, dlen, "out of memory");
		goto out_md;
	}
	method = grpc_slice_from_static_string(NSP_METHOD);
	call = grpc_channel_create_call(w->channel, NULL,
	    GRPC_PROPAGATE_DEFAULTS, cq, method, NULL,
	    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	if (call == NULL) {
		snprintf(details, dlen, "cannot create a call");
		goto out_buf;
	}
	pthread_mutex_lock(&w->mu);
	stop = w->stop;
	if (!stop)
		w->call = call;
	pthread_mutex_unlock(&w->mu);
	if (stop)
		goto out_call;

	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = sendbuf;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &md_init;
	if (grpc_call_start_batch(call, ops, 4, (void *)1, NULL) !=
	    GRPC_CALL_OK) {
		snprintf(details, dlen, "cannot start the call");
		goto out_unlink;
	}
	if (!nsp_cq_wait(cq))
		goto status;

	for (;;) {
		recvbuf = NULL;
		memset(ops, 0, sizeof(ops));
		ops[0].op = GRPC_OP_RECV_MESSAGE;
		ops[0].data.recv_message.recv_message = &recvbuf;
		if (grpc_call_start_batch(call, ops, 1, (void *)2, NULL) !=
		    GRPC_CALL_OK)
			break;
		if (!nsp_cq_wait(cq) || recvbuf == NULL) {
			grpc_byte_buffer_destroy(recvbuf);
			break;
		}
		if (!*got_message) {
			*got_message = true;
			log_kv(LOGL_INFO, "watching conduits", "target",
			    w->cfg->nsp_service, "trench", w->cfg->trench,
			    NULL);
		}
		pthread_mutex_lock(&w->mu);
		w->state = NSP_W_WATCHING;
		pthread_mutex_unlock(&w->mu);
		nsp_watch_message(w, recvbuf);
		grpc_byte_buffer_destroy(recvbuf);
		pthread_mutex_lock(&w->mu);
		stop = w->stop;
		pthread_mutex_unlock(&w->mu);
		if (stop) {
			grpc_call_cancel(call, NULL);
			break;
		}
	}

status:
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &md_trail;
	ops[0].data.recv_status_on_client.status = code;
	ops[0].data.recv_status_on_client.status_details = &sdetails;
	ops[0].data.recv_status_on_client.error_string = &errstr;
	if (grpc_call_start_batch(call, ops, 1, (void *)3, NULL) ==
	    GRPC_CALL_OK && nsp_cq_wait(cq)) {
		if (GRPC_SLICE_LENGTH(sdetails) > 0)
			snprintf(details, dlen, "%.*s",
			    (int)GRPC_SLICE_LENGTH(sdetails),
			    (const char *)GRPC_SLICE_START_PTR(sdetails));
		else if (*code == GRPC_STATUS_OK)
			snprintf(details, dlen, "stream ended");
		else
			snprintf(details, dlen, "%s", "no details");
	} else {
		snprintf(details, dlen, "no status received");
	}
	grpc_slice_unref(sdetails);
	gpr_free((void *)errstr);
out_unlink:
	pthread_mutex_lock(&w->mu);
	w->call = NULL;
	pthread_mutex_unlock(&w->mu);
out_call:
	grpc_call_unref(call);
out_buf:
	grpc_byte_buffer_destroy(sendbuf);
out_md:
	grpc_metadata_array_destroy(&md_init);
	grpc_metadata_array_destroy(&md_trail);
}

/*
 * Makes sure the watch has a channel before a call, and that a TLS
 * channel uses the current IPAM_NSP_TLS_* files: they are read again when
 * they changed (certificates rotate on disk), and the channel is then made
 * anew, since a channel keeps the credentials it was made with. The
 * running stream is not cut for a rotation: the new files serve from the
 * next connection on. Files that cannot be read (not written yet, half
 * rewritten) are logged once per distinct error and tried again at the
 * next attempt; until the first read there is no channel and the attempt
 * fails. Returns true when there is a channel to call on; false with
 * details set otherwise.
 */
static bool
nsp_watch_channel(struct nsp_watch *w, char *details, size_t dlen)
{
	const struct cfg *c = w->cfg;
	char err[NSP_STATUS_MAX];
	int rc = 0;

	err[0] = '\0';
	if (cfg_nsp_tls_on(c)) {
		if (w->tls == NULL) {
			w->tls = grpcx_tls_new(c->nsp_tls_cert, c->nsp_tls_key,
			    c->nsp_tls_ca, err, sizeof(err));
			rc = w->tls != NULL ? 1 : -1;
		} else {
			rc = grpcx_tls_refresh(w->tls, err, sizeof(err));
		}
	}
	if (rc < 0 && strcmp(err, w->tls_err) != 0) {
		log_kv(LOGL_WARNING, "cannot read NSP TLS files", "error", err,
		    NULL);
		snprintf(w->tls_err, sizeof(w->tls_err), "%s", err);
	} else if (rc >= 0) {
		w->tls_err[0] = '\0';
	}
	if (rc > 0 && w->channel != NULL) {
		log_info("NSP TLS files changed: new channel to %s",
		    c->nsp_service);
		grpc_channel_destroy(w->channel);
		w->channel = NULL;
	}
	if (w->channel == NULL && (w->tls != NULL || !cfg_nsp_tls_on(c)))
		w->channel = nsp_channel_new(c, w->tls);
	if (w->channel == NULL) {
		snprintf(details, dlen, "%s", err[0] != '\0' ? err :
		    "cannot create a channel");
		return false;
	}
	return true;
}

/*
 * The watch thread: one call after another until the worker stops, with
 * an exponential backoff (100 ms doubling, capped at IPAM_GRPC_MAX_BACKOFF)
 * between calls, reset by a call that delivered a message. A failure is
 * logged as a warning when its status code differs from the previous
 * failure's in this outage (the details of UNAVAILABLE vary from attempt to
 * attempt), so an outage writes one warning, not one per attempt; the
 * attempts in between are logged at debug level.
 */
static void *
nsp_watch_main(void *arg)
{
	struct nsp_watch *w = arg;
	grpc_completion_queue *cq;
	grpc_status_code code;
	char details[NSP_STATUS_MAX], cur[32];
	char last[sizeof(cur)] = "", delay[32];
	int64_t backoff = NSP_BACKOFF_MIN_MS, cap;
	struct timespec until;
	bool got, stop;

	cap = nsp_ns_to_ms(w->cfg->max_backoff_ns, NSP_BACKOFF_MIN_MS);
	cq = grpc_completion_queue_create_for_next(NULL);
	for (;;) {
		pthread_mutex_lock(&w->mu);
		stop = w->stop;
		w->state = NSP_W_CONNECTING;
		pthread_mutex_unlock(&w->mu);
		if (stop)
			break;

		if (nsp_watch_channel(w, details, sizeof(details))) {
			nsp_watch_call(w, cq, &code, details, sizeof(details),
			    &got);
		} else {
			code = GRPC_STATUS_UNAVAILABLE;
			got = false;
		}
		pthread_mutex_lock(&w->mu);
		stop = w->stop;
		pthread_mutex_unlock(&w->mu);
		if (stop)
			break;

		if (got) {
			backoff = NSP_BACKOFF_MIN_MS;
			last[0] = '\0';
		}
		snprintf(cur, sizeof(cur), "%s", grpcx_status_name(code));
		snprintf(delay, sizeof(delay), "%" PRId64 "ms", backoff);
		log_kv(strcmp(cur, last) != 0 ? LOGL_WARNING : LOGL_DEBUG,
		    "NSP watch failed", "target", w->cfg->nsp_service,
		    "code", grpcx_status_name(code), "details", details,
		    "retry_in", delay, NULL);
		snprintf(last, sizeof(last), "%s", cur);

		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += backoff / 1000;
		until.tv_nsec += (backoff % 1000) * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		pthread_mutex_lock(&w->mu);
		w->state = NSP_W_BACKOFF;
		w->retry_ms = backoff;
		while (!w->stop &&
		    pthread_cond_timedwait(&w->cv, &w->mu, &until) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&w->mu);
		backoff = backoff * 2 > cap ? cap : backoff * 2;
	}
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_next(cq,
	    gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
	return NULL;
}

/* Sets one integer channel argument. */
static void
nsp_arg_int(grpc_arg *a, const char *key, int value)
{
	a->type = GRPC_ARG_INTEGER;
	a->key = (char *)key;
	a->value.integer = value;
}

/*
 * Opens the channel to IPAM_NSP_SERVICE: keepalive pings every
 * IPAM_GRPC_KEEPALIVE_TIME for as long as the stream lives (an idle watch
 * carries no data, and a dead NSP must still be noticed), the channel's own
 * reconnect backoff aligned with ours so that a restarted NSP is found
 * again within IPAM_GRPC_MAX_BACKOFF, and room for a list of
 * CONDUITSET_MAX conduits with their port NATs.
 *
 * gRPC 1.51 reads GRPC_ARG_MIN_RECONNECT_BACKOFF_MS as the time one
 * attempt (TCP connect, TLS handshake, HTTP/2 settings) may take: it is
 * NSP_CONNECT_MS, not the 100 ms first backoff, which cut TLS handshakes
 * short (see also nsp_watch_start on polling).
 */
static grpc_channel *
nsp_channel_new(const struct cfg *cfg, struct grpcx_tls *tls)
{
	grpc_channel_credentials *creds;
	grpc_channel *ch;
	grpc_arg args[7];
	grpc_channel_args chargs;
	int cap = nsp_ns_to_ms(cfg->max_backoff_ns, NSP_BACKOFF_MIN_MS);

	memset(args, 0, sizeof(args));
	nsp_arg_int(&args[0], GRPC_ARG_KEEPALIVE_TIME_MS,
	    nsp_ns_to_ms(cfg->keepalive_ns, 1));
	nsp_arg_int(&args[1], GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
	nsp_arg_int(&args[2], GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
	    NSP_BACKOFF_MIN_MS);
	nsp_arg_int(&args[3], GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
	    NSP_CONNECT_MS);
	nsp_arg_int(&args[4], GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, cap);
	nsp_arg_int(&args[5], GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
	    NSP_MAX_MESSAGE);
	chargs.num_args = sizeof(args) / sizeof(args[0]) - 1;
	chargs.args = args;
	if (tls != NULL && cfg->nsp_tls_server_name[0] != '\0') {
		/* the name NSP's certificate must carry, if not the host */
		args[6].type = GRPC_ARG_STRING;
		args[6].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
		args[6].value.string = cfg->nsp_tls_server_name;
		chargs.num_args++;
	}
	creds = tls != NULL ? grpcx_tls_channel_credentials(tls) :
	    grpc_insecure_credentials_create();
	if (creds == NULL)
		return NULL;
	ch = grpc_channel_create(cfg->nsp_service, creds, &chargs);
	grpc_channel_credentials_release(creds);
	return ch;
}

/* ---------------------------------------------------------------------
 * Main thread: db connection and sync
 */

/* Closes the db connection; the next attempt comes NSP_DB_RETRY_MS later. */
static void
nsp_db_drop(struct nsp_db *db, struct nsp_sync *sy, const char *why)
{
	log_kv(LOGL_WARNING, "db connection lost", "reason", why, NULL);
	ipc_conn_free(db->conn);
	db->conn = NULL;
	db->ok = false;
	db->retry_at = nsp_now_ms() + NSP_DB_RETRY_MS;
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

	db->retry_at = nsp_now_ms() + NSP_DB_RETRY_MS;
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
nsp_release_thread(struct nsp_watch *w, struct nsp_sync *sy)
{
	if (w == NULL || !sy->thread_waits)
		return;
	pthread_mutex_lock(&w->mu);
	w->handed = false;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	sy->thread_waits = false;
}

/* Queues SyncConduits for the latest list when the db is up, nothing is
 * in flight and no error retry is due later. */
static void
nsp_sync_try(struct nsp_db *db, struct nsp_sync *sy, struct nsp_watch *w)
{
	Ipamd__V1__Request req = IPAMD__V1__REQUEST__INIT;
	Ipamd__V1__SyncConduits sc = IPAMD__V1__SYNC_CONDUITS__INIT;

	if (db->conn == NULL || !db->ok || !sy->pending || sy->inflight ||
	    nsp_now_ms() < sy->retry_at)
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
	char a[32], b[32];

	conduitset_diff_clear(&sy->diff);
	sy->have = false;
	sy->pending = false;
	if (conduitset_diff(sy->set, names, n, &sy->diff) < 0) {
		log_error("conduit list ignored: %s", strerror(errno));
		return;
	}
	if (sy->diff.nskipped > 0) {
		snprintf(a, sizeof(a), "%zu", sy->diff.nskipped);
		log_kv(LOGL_WARNING, "ignored conduits with an empty or too "
		    "long name", "count", a, NULL);
	}
	snprintf(a, sizeof(a), "%zu", sy->diff.nadd);
	snprintf(b, sizeof(b), "%zu", sy->diff.nremove);
	log_kv(LOGL_DEBUG, "conduit list", "listed", a, "to_remove", b, NULL);
	sy->have = true;
	sy->pending = true;
	sy->inflight = false;
	sy->retry_at = 0;
	sy->retry_ms = NSP_BACKOFF_MIN_MS;
}

/* Handles the db's answer to the inflight SyncConduits. */
static void
nsp_sync_reply(struct nsp_sync *sy, struct nsp_watch *w,
    const Ipamd__V1__Reply *r, int64_t cap_ms)
{
	char code[16], delay[32];
	size_t i;

	sy->inflight = false;
	if (r->code != 0) {
		snprintf(code, sizeof(code), "%d", (int)r->code);
		snprintf(delay, sizeof(delay), "%" PRId64 "ms", sy->retry_ms);
		log_kv(LOGL_WARNING, "db refused the conduit list; retrying",
		    "code", code, "error", r->message, "retry_in", delay,
		    NULL);
		sy->retry_at = nsp_now_ms() + sy->retry_ms;
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
nsp_db_read(struct nsp_db *db, struct nsp_sync *sy, struct nsp_watch *w,
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
    const struct nsp_db *db, const struct nsp_sync *sy, struct nsp_watch *w)
{
	size_t n = conduitset_listed(sy->set);
	enum nsp_wstate st;
	int64_t retry;

	if (!db->ok) {
		snprintf(buf, len, "nsp: waiting for the db worker");
		return;
	}
	if (w == NULL) {
		snprintf(buf, len, "nsp: static, %zu conduits", n);
		return;
	}
	pthread_mutex_lock(&w->mu);
	st = w->state;
	retry = w->retry_ms;
	pthread_mutex_unlock(&w->mu);
	switch (st) {
	case NSP_W_WATCHING:
		snprintf(buf, len, "nsp: watching %s, %zu conduits",
		    cfg->nsp_service, n);
		break;
	case NSP_W_BACKOFF:
		if (retry >= 1000)
			snprintf(buf, len, "nsp: NSP unreachable, retry in "
			    "%" PRId64 "s", (retry + 500) / 1000);
		else
			snprintf(buf, len, "nsp: NSP unreachable, retry in "
			    "%" PRId64 "ms", retry);
		break;
	default:
		snprintf(buf, len, "nsp: connecting to %s", cfg->nsp_service);
		break;
	}
}

/* Starts gRPC, the channel and the watch thread. 0 or -1 (logged). */
static int
nsp_watch_start(struct nsp_watch *w, pthread_t *tid, const struct cfg *cfg,
    int wake_w)
{
	pthread_condattr_t ca;
	int err;

	pthread_mutex_init(&w->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	w->cfg = cfg;
	w->wake_w = wake_w;
	w->state = NSP_W_CONNECTING;
	/*
	 * A reconnection runs in the background while no call is on the
	 * channel (a failing channel fails calls at once), so only gRPC's
	 * backup poller moves its socket, every 5 s by default: the attempt
	 * then crawls, one TLS round trip per 5 s, and times out. Poll idle
	 * channels every 100 ms instead (this process has one); an operator's
	 * own value of the variable wins.
	 */
	setenv("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS",
	    NSP_BACKUP_POLL_MS, 0);
	/* Only here, in a freshly exec'd process (see GRPC-CORE-NOTES). The
	 * watch thread makes the channel (nsp_watch_channel). */
	grpc_init();
	err = pthread_create(tid, NULL, nsp_watch_main, w);
	if (err != 0) {
		log_error("cannot start the watch thread: %s", strerror(err));
		return -1;
	}
	return 0;
}

/*
 * Stops the watch thread: cancels the call, wakes every wait, and joins
 * within NSP_JOIN_MS. gRPC is shut down only if the thread is gone; if it
 * is not, the process exits anyway (the deadline of SIGTERM matters more).
 */
static void
nsp_watch_stop(struct nsp_watch *w, pthread_t tid, bool started)
{
	struct timespec until;

	pthread_mutex_lock(&w->mu);
	w->stop = true;
	if (w->call != NULL)
		grpc_call_cancel(w->call, NULL);
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	if (started) {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += NSP_JOIN_MS * 1000000L;
		until.tv_sec += until.tv_nsec / 1000000000;
		until.tv_nsec %= 1000000000;
		if (pthread_timedjoin_np(tid, NULL, &until) != 0) {
			log_warn("watch thread did not stop in time");
			return;
		}
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
	}
	if (w->channel != NULL)
		grpc_channel_destroy(w->channel);
	grpc_shutdown();
	grpcx_tls_free(w->tls);
}

/* Handles a wake from the watch thread: a list may be waiting. */
static void
nsp_take_list(struct nsp_watch *w, struct nsp_sync *sy, int wake_r)
{
	char drain[64];

	while (read(wake_r, drain, sizeof(drain)) > 0)
		;
	if (sy->thread_waits)
		return;
	pthread_mutex_lock(&w->mu);
	if (w->handed) {
		nsp_sync_list(sy, w->names, w->nnames);
		sy->thread_waits = true;
	}
	pthread_mutex_unlock(&w->mu);
	if (sy->thread_waits && !sy->pending)
		nsp_release_thread(w, sy);	/* the list was unusable */
}

/*
 * The main loop (see the top of this file). Each turn: connect to the db
 * if due, send the latest list if it is pending, report status when it
 * changed or a second passed, then poll with a timeout that wakes for the
 * next of those deadlines.
 */
int
nsp_run(const struct cfg *cfg, const char *rundir, int sigfd, int statusfd)
{
	struct nsp_watch watch, *w = NULL;
	struct nsp_db db;
	struct nsp_sync sy;
	struct pollfd pfd[4];
	struct signalfd_siginfo si;
	char status[NSP_STATUS_MAX], last_status[NSP_STATUS_MAX] = "";
	int64_t now, next_hb = 0, ready_at, cap_ms, timeout;
	pthread_t tid;
	bool started = false, ready, last_ready = false, running = true;
	int wake[2] = { -1, -1 }, rc = 1, i, npfd;
	char buf[64];

	memset(&db, 0, sizeof(db));
	memset(&sy, 0, sizeof(sy));
	memset(&watch, 0, sizeof(watch));
	cap_ms = nsp_ns_to_ms(cfg->max_backoff_ns, NSP_BACKOFF_MIN_MS);
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

	if (cfg->nsp_service[0] == '\0') {
		snprintf(buf, sizeof(buf), "%zu", cfg->nconduits);
		log_kv(LOGL_INFO, "no NSP service: static conduits",
		    "count", buf, NULL);
		nsp_sync_list(&sy, (const char *const *)cfg->conduits,
		    cfg->nconduits);
	} else {
		w = &watch;
		if (nsp_watch_start(w, &tid, cfg, wake[1]) < 0)
			goto out_stop;
		started = true;
	}
	/* With NSP, readiness waits for the first list at most this long:
	 * the db must keep serving existing conduits while NSP is down, so
	 * the worker's readiness must never depend on NSP being up. */
	ready_at = nsp_now_ms() + NSP_READY_GRACE_MS;

	while (running) {
		now = nsp_now_ms();
		if (db.conn == NULL && now >= db.retry_at)
			nsp_db_connect(&db);
		nsp_sync_try(&db, &sy, w);

		ready = db.ok && (sy.synced_once || (w != NULL &&
		    now >= ready_at));
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
		if (!last_ready && w != NULL && ready_at > now &&
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
				if (si.ssi_signo == SIGTERM ||
				    si.ssi_signo == SIGINT) {
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
		if (w != NULL && (pfd[1].revents & POLLIN))
			nsp_take_list(w, &sy, wake[0]);
	}
	rc = 0;

out_stop:
	if (w != NULL)
		nsp_watch_stop(w, tid, started);
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
