/*
 * watch.c - the nsp worker's WatchConduit client (watch.h).
 *
 * One thread owns the gRPC call to /nsp.v1.ConfigurationManager/WatchConduit:
 * it reads one ConduitResponse at a time, filters it, hands the names to
 * the worker's main thread and waits until the main thread calls
 * watch_done() (the db acknowledged them) before it asks gRPC for the next
 * message, so lists are applied one by one, in order. It reconnects with a
 * capped exponential backoff.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>

#include "conduitset.h"
#include "config.h"
#include "grpcx.h"
#include "tls.h"
#include "log.h"
#include "nsp/v1/configurationmanager.pb-c.h"
#include "spiffe.h"
#include "watch.h"

#define WATCH_METHOD "/nsp.v1.ConfigurationManager/WatchConduit"
#define WATCH_BACKOFF_MIN_MS 100	/* first retry delay of the watch */
#define WATCH_CONNECT_MS 5000		/* time a connection attempt may take */
#define WATCH_BACKUP_POLL_MS "100"	/* gRPC's polling of idle channels */
#define WATCH_JOIN_MS 700		/* wait for the watch thread on exit */
#define WATCH_STATUS_MAX 256		/* room for one details/error line */
#define WATCH_MAX_MESSAGE (32 << 20)	/* largest ConduitResponse accepted */

/* A running watch: state shared by the worker's main thread and the
 * watch thread. */
struct watch {
	pthread_mutex_t mu;		/* guards the fields up to retry_ms */
	pthread_cond_t cv;		/* signalled on stop and list done */
	bool stop;			/* the worker is stopping */
	grpc_call *call;		/* the running call, or NULL */
	const char **names;		/* list handed to the main thread */
	size_t nnames;			/* entries in names */
	bool handed;			/* names waits for the main thread */
	enum watch_state state;		/* for the status line */
	int64_t retry_ms;		/* WATCH_BACKOFF: delay of this wait */
	const struct cfg *cfg;		/* configuration (read only) */
	int wake_fd;			/* a byte here: watch_take has a list */
	bool tls_on;			/* config_nsp_tls_on(cfg): TLS to NSP */
	pthread_t tid;			/* the watch thread */
	grpc_channel *channel;		/* channel to the NSP service, NULL
					 * until made (watch thread only) */
	struct tls *tls;		/* IPAM_NSP_TLS_* files, NULL when
					 * plaintext or not read yet */
	char tls_err[WATCH_STATUS_MAX];	/* last TLS file error logged */
	struct spiffe_source *spiffe;	/* SVIDs (SPIFFE_ENDPOINT_SOCKET),
					 * NULL when off */
	uint64_t spiffe_gen;		/* generation of the channel's SVID */
};

static grpc_channel *watch_channel_new(const struct cfg *cfg,
    struct tls *tls, grpc_channel_credentials *creds);

/* ---------------------------------------------------------------------
 * Watch thread
 */

/* Waits for the one operation outstanding on cq; its success flag. */
static bool
watch_cq_wait(grpc_completion_queue *cq)
{
	grpc_event ev;

	ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME),
	    NULL);
	return ev.type == GRPC_OP_COMPLETE && ev.success;
}

/*
 * Filters one ConduitResponse and hands its names to the worker's main
 * thread, then waits until it is done with them (done(): the db
 * acknowledged them) or the worker stops. Oversized or malformed lists
 * are logged and dropped.
 */
static void
watch_message(struct watch *w, grpc_byte_buffer *bb)
{
	Nsp__V1__ConduitResponse *resp;
	Nsp__V1__Conduit *c;
	const char **names = NULL;
	size_t i, n = 0, other = 0;
	char buf[32];

	resp = (Nsp__V1__ConduitResponse *)grpcx_unpack(
	    &nsp__v1__conduit_response__descriptor, bb);
	if (resp == NULL) {
		log_fmt(LOGL_WARNING,
		    "NSP sent a malformed ConduitResponse; ignored");
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
		log_fmt(LOGL_ERROR,
		    "out of memory for a conduit list; ignored");
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
	if (write(w->wake_fd, "l", 1) < 0 && errno != EAGAIN)
		log_fmt(LOGL_ERROR, "wake pipe: %s", strerror(errno));
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
watch_call(struct watch *w, grpc_completion_queue *cq,
    grpc_status_code *code, char *details, size_t dlen, bool *got_message)
{
	Nsp__V1__Trench trench = NSP__V1__TRENCH__INIT;
	Nsp__V1__Conduit req = NSP__V1__CONDUIT__INIT;
	struct grpcx_ccall u;
	grpc_byte_buffer *sendbuf;
	grpc_slice method;
	grpc_call *call;
	bool stop;

	*code = GRPC_STATUS_UNKNOWN;
	*got_message = false;
	snprintf(details, dlen, "call not started");

	trench.name = w->cfg->trench;
	req.trench = &trench;
	sendbuf = grpcx_pack(&req.base);
	if (sendbuf == NULL) {
		snprintf(details, dlen, "out of memory");
		return;
	}
	method = grpc_slice_from_static_string(WATCH_METHOD);
	call = grpc_channel_create_call(w->channel, NULL,
	    GRPC_PROPAGATE_DEFAULTS, cq, method, NULL,
	    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	if (call == NULL) {
		snprintf(details, dlen, "cannot create a call");
		grpc_byte_buffer_destroy(sendbuf);
		return;
	}
	pthread_mutex_lock(&w->mu);
	stop = w->stop;
	if (!stop)
		w->call = call;
	pthread_mutex_unlock(&w->mu);
	if (stop) {
		grpc_byte_buffer_destroy(sendbuf);
		goto out_call;
	}

	if (grpcx_stream_start(call, sendbuf, &u, (void *)1) != GRPC_CALL_OK) {
		snprintf(details, dlen, "cannot start the call");
		goto out_clear;
	}
	if (!watch_cq_wait(cq))
		goto status;

	for (;;) {
		if (grpcx_stream_next(call, &u, (void *)2) != GRPC_CALL_OK ||
		    !watch_cq_wait(cq) || u.recv == NULL)
			break;
		if (!*got_message) {
			*got_message = true;
			log_kv(LOGL_INFO, "watching conduits", "target",
			    w->cfg->nsp_service, "trench", w->cfg->trench,
			    NULL);
		}
		pthread_mutex_lock(&w->mu);
		w->state = WATCH_WATCHING;
		pthread_mutex_unlock(&w->mu);
		watch_message(w, u.recv);
		pthread_mutex_lock(&w->mu);
		stop = w->stop;
		pthread_mutex_unlock(&w->mu);
		if (stop) {
			grpc_call_cancel(call, NULL);
			break;
		}
	}

status:
	if (grpcx_stream_finish(call, &u, (void *)3) == GRPC_CALL_OK &&
	    watch_cq_wait(cq)) {
		*code = u.status;
		if (GRPC_SLICE_LENGTH(u.details) > 0)
			snprintf(details, dlen, "%.*s",
			    (int)GRPC_SLICE_LENGTH(u.details),
			    (const char *)GRPC_SLICE_START_PTR(u.details));
		else if (*code == GRPC_STATUS_OK)
			snprintf(details, dlen, "stream ended");
		else
			snprintf(details, dlen, "%s", "no details");
	} else {
		snprintf(details, dlen, "no status received");
	}
out_clear:
	grpcx_ccall_clear(&u);
	pthread_mutex_lock(&w->mu);
	w->call = NULL;
	pthread_mutex_unlock(&w->mu);
out_call:
	grpc_call_unref(call);
}

/*
 * watch_channel with SPIFFE: the channel presents the current SVID and
 * accepts an NSP whose chain leads to the bundle and whose certificate
 * carries a SPIFFE ID of our trust domain (no host-name check). After a
 * rotation the next call gets a new channel with the new SVID; the running
 * stream is not cut. No SVID yet: no channel, and the attempt fails.
 */
static bool
watch_channel_spiffe(struct watch *w, char *details, size_t dlen)
{
	struct spiffe_svid *svid;
	grpc_channel_credentials *creds;
	uint64_t gen;

	gen = spiffe_source_generation(w->spiffe);
	if (gen == 0) {
		snprintf(details, dlen, "no SVID yet from the Workload API "
		    "(%s)", w->cfg->spiffe_socket);
		return false;
	}
	if (w->channel != NULL && gen != w->spiffe_gen) {
		log_fmt(LOGL_INFO, "new SVID: new channel to %s",
		    w->cfg->nsp_service);
		grpc_channel_destroy(w->channel);
		w->channel = NULL;
	}
	if (w->channel != NULL)
		return true;
	svid = spiffe_source_get(w->spiffe, &gen);
	creds = svid != NULL ? spiffe_channel_credentials(svid, NULL) : NULL;
	spiffe_svid_free(svid);
	if (creds != NULL)
		w->channel = watch_channel_new(w->cfg, NULL, creds);
	if (w->channel == NULL) {
		snprintf(details, dlen, "cannot create a channel");
		return false;
	}
	w->spiffe_gen = gen;
	return true;
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
watch_channel(struct watch *w, char *details, size_t dlen)
{
	const struct cfg *c = w->cfg;
	char err[WATCH_STATUS_MAX];
	int rc = 0;

	if (w->spiffe != NULL)
		return watch_channel_spiffe(w, details, dlen);
	err[0] = '\0';
	if (w->tls_on) {
		if (w->tls == NULL) {
			w->tls = tls_new(c->nsp_tls_cert, c->nsp_tls_key,
			    c->nsp_tls_ca, err, sizeof(err));
			rc = w->tls != NULL ? 1 : -1;
		} else {
			rc = tls_refresh(w->tls, err, sizeof(err));
		}
	}
	if (rc < 0 && strcmp(err, w->tls_err) != 0) {
		log_kv(LOGL_WARNING, "cannot read NSP TLS files",
		    "error", err, NULL);
		snprintf(w->tls_err, sizeof(w->tls_err), "%s", err);
	} else if (rc >= 0) {
		w->tls_err[0] = '\0';
	}
	if (rc > 0 && w->channel != NULL) {
		log_fmt(LOGL_INFO,
		    "NSP TLS files changed: new channel to %s", c->nsp_service);
		grpc_channel_destroy(w->channel);
		w->channel = NULL;
	}
	if (w->channel == NULL && (w->tls != NULL || !w->tls_on))
		w->channel = watch_channel_new(c, w->tls, NULL);
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
watch_main(void *arg)
{
	struct watch *w = arg;
	grpc_completion_queue *cq;
	grpc_status_code code;
	char details[WATCH_STATUS_MAX], cur[32];
	char last[sizeof(cur)] = "", delay[32];
	int64_t backoff = WATCH_BACKOFF_MIN_MS, cap;
	struct timespec until;
	bool got, stop;

	cap = watch_ms_of_ns(w->cfg->max_backoff_ns, WATCH_BACKOFF_MIN_MS);
	cq = grpc_completion_queue_create_for_next(NULL);
	for (;;) {
		pthread_mutex_lock(&w->mu);
		stop = w->stop;
		w->state = WATCH_CONNECTING;
		pthread_mutex_unlock(&w->mu);
		if (stop)
			break;

		if (watch_channel(w, details, sizeof(details))) {
			watch_call(w, cq, &code, details, sizeof(details),
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
			backoff = WATCH_BACKOFF_MIN_MS;
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
		w->state = WATCH_BACKOFF;
		w->retry_ms = backoff;
		while (!w->stop &&
		    pthread_cond_timedwait(&w->cv, &w->mu, &until) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&w->mu);
		backoff = backoff * 2 > cap ? cap : backoff * 2;
	}
	grpcx_cq_drain(cq, NULL);
	grpc_completion_queue_destroy(cq);
	return NULL;
}

/* Sets one integer channel argument. */
static void
watch_arg_int(grpc_arg *a, const char *key, int value)
{
	a->type = GRPC_ARG_INTEGER;
	a->key = (char *)key;
	a->value.integer = value;
}

/*
 * Opens the channel to IPAM_NSP_SERVICE (with spiffe, credentials made
 * from the SVID, which this releases): keepalive pings every
 * IPAM_GRPC_KEEPALIVE_TIME for as long as the stream lives (an idle watch
 * carries no data, and a dead NSP must still be noticed), the channel's own
 * reconnect backoff aligned with ours so that a restarted NSP is found
 * again within IPAM_GRPC_MAX_BACKOFF, and room for a list of
 * CONDUITSET_MAX conduits with their port NATs.
 *
 * gRPC reads GRPC_ARG_MIN_RECONNECT_BACKOFF_MS as the time one attempt
 * (TCP connect, TLS handshake, HTTP/2 settings) may take: it is
 * WATCH_CONNECT_MS, not the 100 ms first backoff, which would cut TLS
 * handshakes short (see also watch_start on polling).
 */
static grpc_channel *
watch_channel_new(const struct cfg *cfg, struct tls *tls,
    grpc_channel_credentials *spiffe)
{
	grpc_channel_credentials *creds;
	grpc_channel *ch;
	grpc_arg args[7];
	grpc_channel_args chargs;
	int cap = watch_ms_of_ns(cfg->max_backoff_ns, WATCH_BACKOFF_MIN_MS);

	memset(args, 0, sizeof(args));
	watch_arg_int(&args[0], GRPC_ARG_KEEPALIVE_TIME_MS,
	    watch_ms_of_ns(cfg->keepalive_ns, 1));
	watch_arg_int(&args[1], GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
	watch_arg_int(&args[2], GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
	    WATCH_BACKOFF_MIN_MS);
	watch_arg_int(&args[3], GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
	    WATCH_CONNECT_MS);
	watch_arg_int(&args[4], GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, cap);
	watch_arg_int(&args[5], GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
	    WATCH_MAX_MESSAGE);
	chargs.num_args = sizeof(args) / sizeof(args[0]) - 1;
	chargs.args = args;
	if (tls != NULL && cfg->nsp_tls_server_name[0] != '\0') {
		/* the name NSP's certificate must carry, if not the host */
		args[6].type = GRPC_ARG_STRING;
		args[6].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
		args[6].value.string = cfg->nsp_tls_server_name;
		chargs.num_args++;
	}
	creds = spiffe != NULL ? spiffe : tls != NULL ?
	    tls_channel_credentials(tls) :
	    grpc_insecure_credentials_create();
	if (creds == NULL)
		return NULL;
	ch = grpc_channel_create(cfg->nsp_service, creds, &chargs);
	grpc_channel_credentials_release(creds);
	return ch;
}

/* ---------------------------------------------------------------------
 * The worker's side: called from its main thread
 */

/* The SVID watcher's reports, as the worker's log lines. */
static void
watch_spiffe_event(void *arg, enum spiffe_event ev, const char *text)
{
	struct watch *w = arg;

	switch (ev) {
	case SPIFFE_EV_UPDATE:
		log_kv(LOGL_INFO, "SVID from the Workload API: new NSP "
		    "connections present it", "spiffe_id", text, NULL);
		break;
	case SPIFFE_EV_FAILED:
		log_kv(LOGL_WARNING, spiffe_source_generation(w->spiffe)
		    > 0 ? "Workload API unavailable: keeping the last SVID, "
		    "reconnecting" : "Workload API unavailable: no SVID yet, "
		    "no NSP connection; reconnecting", "endpoint",
		    w->cfg->spiffe_socket, "error", text, NULL);
		break;
	case SPIFFE_EV_REJECTED:
		log_kv(LOGL_WARNING, "SVID from the Workload API "
		    "refused: keeping the last one", "error", text, NULL);
		break;
	}
}

/*
 * Initialises gRPC and starts the watch thread (which makes the channel,
 * see watch_channel). NULL on failure, logged.
 */
struct watch *
watch_start(const struct cfg *cfg, int wake_fd)
{
	pthread_condattr_t ca;
	struct watch *w;
	int err;

	w = calloc(1, sizeof(*w));
	if (w == NULL) {
		log_fmt(LOGL_ERROR, "out of memory for the NSP watch");
		return NULL;
	}
	pthread_mutex_init(&w->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	w->cfg = cfg;
	w->wake_fd = wake_fd;
	w->tls_on = config_nsp_tls_on(cfg);
	w->state = WATCH_CONNECTING;
	/*
	 * A reconnection runs in the background while no call is on the
	 * channel (a failing channel fails calls at once), so only gRPC's
	 * backup poller moves its socket, every 5 s by default: the attempt
	 * then crawls, one TLS round trip per 5 s, and times out. Poll idle
	 * channels every 100 ms instead (this process has one); an operator's
	 * own value of the variable wins. Set while the process has one
	 * thread, before gRPC reads it.
	 */
	setenv("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS",
	    WATCH_BACKUP_POLL_MS, 0);
	/* Only here, in a freshly exec'd process (see GRPC-CORE-NOTES). */
	(void)grpcx_init();
	if (w->cfg->spiffe_socket[0] != '\0') {
		char why[256];

		w->spiffe = spiffe_source_new();
		if (w->spiffe == NULL || spiffe_source_watch(w->spiffe,
		    w->cfg->spiffe_target, w->cfg->max_backoff_ns / 1000000,
		    watch_spiffe_event, w, why, sizeof(why)) != 0) {
			log_fmt(LOGL_ERROR, "SPIFFE: %s", w->spiffe ==
			    NULL ? "out of memory" : why);
			goto fail;
		}
	}
	err = pthread_create(&w->tid, NULL, watch_main, w);
	if (err == 0)
		return w;
	log_fmt(LOGL_ERROR, "cannot start the watch thread: %s",
	    strerror(err));
fail:
	spiffe_source_free(w->spiffe);
	grpc_shutdown();
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
	return NULL;
}

/* Points *names at the list the thread handed over, if there is one. */
bool
watch_take(struct watch *w, const char *const **names, size_t *n)
{
	bool handed;

	pthread_mutex_lock(&w->mu);
	handed = w->handed;
	if (handed) {
		*names = (const char *const *)w->names;
		*n = w->nnames;
	}
	pthread_mutex_unlock(&w->mu);
	return handed;
}

/* Hands the current list back to the watch thread, which then reads the
 * next message. */
void
watch_done(struct watch *w)
{
	pthread_mutex_lock(&w->mu);
	w->handed = false;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* What the watch thread is doing, for the status line. */
void
watch_state(struct watch *w, enum watch_state *st, int64_t *retry_ms)
{
	pthread_mutex_lock(&w->mu);
	*st = w->state;
	*retry_ms = w->retry_ms;
	pthread_mutex_unlock(&w->mu);
}

/*
 * Stops the watch thread: cancels the call, wakes every wait, and joins
 * within WATCH_JOIN_MS. gRPC is shut down and w freed only if the thread is
 * gone; if it is not, the process exits anyway (the deadline of SIGTERM
 * matters more).
 */
void
watch_stop(struct watch *w)
{
	struct timespec until;

	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	if (w->call != NULL)
		grpc_call_cancel(w->call, NULL);
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += WATCH_JOIN_MS * 1000000L;
	until.tv_sec += until.tv_nsec / 1000000000;
	until.tv_nsec %= 1000000000;
	if (pthread_timedjoin_np(w->tid, NULL, &until) != 0) {
		log_fmt(LOGL_WARNING,
		    "watch thread did not stop in time");
		return;
	}
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	if (w->channel != NULL)
		grpc_channel_destroy(w->channel);
	spiffe_source_free(w->spiffe);
	grpc_shutdown();
	tls_free(w->tls);
	free(w);
}

/* See watch.h; used for the db retries and the NSP backoff alike. */
int
watch_ms_of_ns(int64_t ns, int lo)
{
	int64_t ms = ns / 1000000;

	if (ms < lo)
		return lo;
	if (ms > INT32_MAX)
		return INT32_MAX;
	return (int)ms;
}
