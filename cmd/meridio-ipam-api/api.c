/*
 * api.c - the API worker's logic.
 *
 * Two threads:
 *  - the gRPC thread (the caller of api_run) polls the server's completion
 *    queue: it accepts calls, validates them, answers what needs no db,
 *    forwards the rest, serves Health and handles the orderly stop;
 *  - the db thread owns the connection to the db worker: it (re)connects,
 *    pings every second, reads Replies, matches them to the calls waiting
 *    for them, hands each Reply back to the gRPC thread, and reports to
 *    the supervisor.
 * A forwarded call belongs to the db thread from the moment it sits in the
 * pending table until it is handed back: an empty batch on the call, whose
 * completion (API_TAG_REPLY) brings the Reply to the gRPC thread, which
 * answers. (The db thread answered itself before: gRPC then moved part of
 * each answer to its executor thread while the gRPC thread held the
 * transport, two more threads switching per call - two daemons side by
 * side at concurrency 64, 6 alternating rounds: api worker 20.7 -> 18.9
 * us and 0.47 -> 0.18 context switches per new allocation; calls/s +2 %,
 * within the noise.) The db thread still answers a call it gives up on
 * (the db worker is gone or late). Any other call belongs to the gRPC
 * thread. So no two threads ever start batches on one call. Call state
 * is freed only by the gRPC thread, when the answer completes.
 *
 * Health: Check of an unknown name fails with NOT_FOUND and Watch of an
 * unknown name streams SERVICE_UNKNOWN, as grpc's health-checking spec
 * (health.proto comments, grpc.io docs) says; the "SERVICE_UNKNOWN
 * for Check" is the Watch behaviour, and standard probes expect NOT_FOUND.
 */
#include "api.h"
#include "bounds.h"
#include "admin.h"
#include "hsock.h"
#include "metrics.h"
#include "mtls.h"

#include <ctype.h>
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/log.h>

#include "google/protobuf/empty.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpcx.h"
#include "ipam/v1/ipam.pb-c.h"
#include "ipcmsg.h"
#include "log.h"
#include "portowner.h"
#include "validate.h"
#include "now.h"

#define API_MAX_INFLIGHT 4096	/* calls alive at once; more: EXHAUSTED */
#define API_SLOTS 8192		/* pending table size, > API_MAX_INFLIGHT */
#define API_POSTED_UNARY 16	/* requests kept posted for Allocate/Release */
#define API_POSTED_OTHER 2	/* ... for Check, Watch and unknown methods */
#define API_TICK_MS 100		/* gRPC thread's idle wake-up */
#define API_PING_MS 1000	/* ping and heartbeat period */
#define API_PONG_MAX_MS 2500	/* no pong for this long: NOT_SERVING */
#define API_RECONNECT_MS 100	/* delay between connection attempts */
#define API_PORT_TAKEN (-2)	/* api_server_start: IPAM_PORT not free */
#define API_DEFAULT_WAIT_MS 30000	/* wait_ms when the client set no deadline */
#define API_DEADLINE_MARGIN_MS 20	/* answer this much before the deadline */
#define API_EXPIRE_SLACK_MS 5000	/* no deadline: give up on a silent db
					   after the wait plus this */
#define API_AFTER_DEADLINE_MS 1000	/* deadline: forget the call this
					   long after it (gRPC answered) */
#define API_DRAIN_MS 2000	/* let in-flight calls finish this long */
#define API_FINAL_MS 3000	/* then wait this long for cancelled calls */

/* The three kinds of events of one call, kept in the tag's low bits. */
enum api_tag {
	API_TAG_NEW = 0,	/* a posted request got a call */
	API_TAG_DONE = 1,	/* an answer (or a Watch message) was sent */
	API_TAG_CLOSE = 2,	/* Watch: the call is over (RECV_CLOSE) */
	API_TAG_REPLY = 3,	/* the db thread handed over the reply */
};

enum api_method {
	API_ALLOCATE,
	API_RELEASE,
	API_CHECK,
	API_WATCH,
	API_GENERIC,		/* anything not registered: UNIMPLEMENTED */
	API_NMETHODS,
};

static const char *const api_paths[API_GENERIC] = {
	"/ipam.v1.Ipam/Allocate",
	"/ipam.v1.Ipam/Release",
	"/grpc.health.v1.Health/Check",
	"/grpc.health.v1.Health/Watch",
};

/* Health names answered SERVING while the db worker answers. */
static const char *const api_health_names[] = {
	"", "ipam.v1.Ipam", "Liveness", "Readiness", "Startup",
};

struct api;

/* One call, from the posted request to its last completed batch. */
struct api_call {
	struct api *api;		/* the worker */
	enum api_method method;		/* which method was posted */
	grpc_call *call;		/* the call, once it arrived */
	gpr_timespec deadline;		/* registered calls: client deadline */
	grpc_call_details details;	/* generic calls: method and deadline */
	grpc_metadata_array md;		/* request metadata (unused) */
	grpc_byte_buffer *payload;	/* request body, NULL if none */
	grpc_byte_buffer *send_buf;	/* body of the batch in flight */
	grpc_slice status_msg;		/* status details of the answer */
	int cancelled;			/* RECV_CLOSE_ON_SERVER result */
	uint64_t id;			/* db request id while pending */
	int64_t expire_ms;		/* give up on the db at this time */
	int64_t arrived_ns;		/* when the call arrived (metrics) */
	Ipamd__V1__Reply *reply;	/* the db's reply, handed to the gRPC
					 * thread (API_TAG_REPLY) */
	/* Watch only (gRPC thread): */
	bool watching;			/* in the watcher list */
	bool known;			/* a served name, not SERVICE_UNKNOWN */
	bool md_sent;			/* initial metadata went out */
	bool busy;			/* a send batch is in flight */
	bool closed;			/* RECV_CLOSE completed */
	bool ended;			/* status sent or send failed */
	int last_sent;			/* last ServingStatus sent, -1 none */
	struct api_call *prev, *next;	/* the list of watchers */
	bool on_hsock;			/* posted on the health socket */
};

struct api {
	const struct cfg *cfg;		/* validated configuration */
	const char *db_path;		/* the db worker's socket */
	int status_fd;			/* supervisor channel, -1 if none */
	grpc_server *server;		/* the gRPC server */
	grpc_completion_queue *cq;	/* its only completion queue */
	void *methods[API_GENERIC];	/* registered method handles */
	struct grpcx_tls *tls;		/* IPAM_TLS_* files, NULL = plaintext */
	struct admin *adm;		/* Admin service, NULL if it failed */
	struct hsock *hs;		/* health socket, NULL when off */
	struct mtls *mtls;		/* SPIFFE mTLS, NULL when off */

	/* gRPC thread only */
	unsigned live;			/* calls that arrived and are alive */
	unsigned posted;		/* requests posted, not yet completed */
	struct api_call *watchers;	/* open Watch calls */
	int health_seen;		/* health as watchers last saw it */
	bool stopping;			/* shutdown_and_notify was called */
	bool shutdown_done;		/* its tag came back */

	/* shared, under mu */
	pthread_mutex_t mu;		/* guards what follows */
	struct ipc_conn *conn;		/* to the db worker, NULL if down */
	bool conn_broken;		/* a write failed: db thread drops it */
	struct api_call *slots[API_SLOTS]; /* pending calls by id */
	unsigned npending;		/* entries in slots */
	uint64_t next_id;		/* next request id */
	uint64_t nforwarded;		/* calls forwarded to the db worker */

	/* shared, atomic */
	atomic_int health;		/* SERVING or NOT_SERVING */
	atomic_bool port_up;		/* the port is served (with SPIFFE:
					 * only once an SVID came) */
	atomic_bool stop;		/* SIGTERM or supervisor gone */
	atomic_bool db_quit;		/* tells the db thread to return */
	int wake_fd;			/* eventfd: wakes the db thread */
};

static int api_shutdown_tag;		/* tag of shutdown_and_notify */
/* Set by the gRPC log hook: the listener gave up accepting. */
static atomic_bool api_accept_dead;
/* True while binding IPAM_PORT: gRPC's own lines about it are DEBUG. */
static atomic_bool api_binding;

static int api_server_start(struct api *a);

#define HEALTH_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define HEALTH_NOT_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
#define HEALTH_UNKNOWN GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN

static void *
api_tag(struct api_call *c, enum api_tag kind)
{
	return (void *)((uintptr_t)c | (uintptr_t)kind);
}

static void
api_wake(struct api *a)
{
	uint64_t one = 1;

	if (write(a->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("cannot wake the db thread: %s", strerror(errno));
}

/*
 * gRPC core's own log lines, written as ours (JSON). One of them matters:
 * "Failed accept4" (EMFILE, ENFILE, ...) means the listener gave up for
 * good (gRPC 1.51 never re-arms it), leaving the worker alive but deaf.
 * It is flagged so that the gRPC thread exits and the supervisor starts a
 * fresh worker, which also drops every connection that used up the fds.
 */
static void
api_grpc_log(gpr_log_func_args *args)
{
	enum log_level l = LOGL_DEBUG;

	if (atomic_load(&api_binding))
		l = LOGL_DEBUG;	/* a failed bind is told in one line of ours */
	else if (args->severity == GPR_LOG_SEVERITY_ERROR)
		l = LOGL_ERROR;
	else if (args->severity == GPR_LOG_SEVERITY_INFO)
		l = LOGL_INFO;
	if (strstr(args->message, "Failed accept4") != NULL)
		atomic_store(&api_accept_dead, true);
	/* clients send the service's host name (SNI); SVIDs carry none */
	if (l == LOGL_ERROR && strstr(args->message,
	    "No match found for server name") != NULL)
		l = LOGL_DEBUG;
	log_kv(l, "grpc core", "text", args->message, "file", args->file,
	    NULL);
}

/* ---- calls ------------------------------------------------------------ */

/*
 * Posts one request for method m so that the next call to it has a place
 * to land. Unknown methods use the generic request. on_hsock: on the
 * health socket's server (Check, Watch and unknown methods only).
 * Returns 0 or -1.
 */
static int
api_post_on(struct api *a, enum api_method m, bool on_hsock)
{
	grpc_server *srv = on_hsock ? hsock_server(a->hs) : a->server;
	void *method = NULL;
	struct api_call *c;
	grpc_call_error e;

	if (m != API_GENERIC)
		method = on_hsock ? hsock_method(a->hs, m - API_CHECK) :
		    a->methods[m];
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -1;
	c->api = a;
	c->method = m;
	c->on_hsock = on_hsock;
	c->last_sent = -1;
	c->status_msg = grpc_empty_slice();
	grpc_metadata_array_init(&c->md);
	if (m == API_GENERIC) {
		grpc_call_details_init(&c->details);
		e = grpc_server_request_call(srv, &c->call, &c->details,
		    &c->md, a->cq, a->cq, api_tag(c, API_TAG_NEW));
	} else {
		e = grpc_server_request_registered_call(srv, method, &c->call,
		    &c->deadline, &c->md, &c->payload, a->cq, a->cq,
		    api_tag(c, API_TAG_NEW));
	}
	if (e != GRPC_CALL_OK) {
		if (m == API_GENERIC)
			grpc_call_details_destroy(&c->details);
		grpc_metadata_array_destroy(&c->md);
		free(c);
		return -1;
	}
	a->posted++;
	return 0;
}

/* Posts one request for method m on the port's server. */
static int
api_post(struct api *a, enum api_method m)
{
	return api_post_on(a, m, false);
}

static void
api_call_free(struct api_call *c)
{
	if (c == NULL)
		return;
	if (c->call != NULL)
		grpc_call_unref(c->call);
	if (c->method == API_GENERIC)
		grpc_call_details_destroy(&c->details);
	grpc_metadata_array_destroy(&c->md);
	if (c->payload != NULL)
		grpc_byte_buffer_destroy(c->payload);
	if (c->send_buf != NULL)
		grpc_byte_buffer_destroy(c->send_buf);
	if (c->reply != NULL)
		ipamd__v1__reply__free_unpacked(c->reply, NULL);
	grpc_slice_unref(c->status_msg);
	free(c);
}

/*
 * Starts the one batch that ends a unary call: initial metadata (always,
 * or the client waits for its deadline), the body when there is one, the
 * status, and RECV_CLOSE. Whoever owns the call calls this exactly once;
 * the completion (API_TAG_DONE) frees the call on the gRPC thread, also
 * when the client has gone and the batch fails.
 */
static void
api_finish(struct api_call *c, grpc_status_code code, const char *msg,
    const ProtobufCMessage *body)
{
	grpc_op ops[4];
	size_t n = 0;
	grpc_call_error e;

	memset(ops, 0, sizeof(ops));
	ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	if (code == GRPC_STATUS_OK && body != NULL) {
		c->send_buf = grpcx_pack(body);
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = c->send_buf;
	}
	grpc_slice_unref(c->status_msg);
	c->status_msg = grpc_slice_from_copied_string(msg != NULL ? msg : "");
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = code;
	ops[n++].data.send_status_from_server.status_details = &c->status_msg;
	ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
	/* counted before the answer leaves: a client that got it sees it */
	if (c->method == API_ALLOCATE || c->method == API_RELEASE)
		metrics_call_done(c->method == API_ALLOCATE ?
		    METRICS_ALLOCATE : METRICS_RELEASE, code,
		    now_ns(CLOCK_MONOTONIC) - c->arrived_ns);
	e = grpc_call_start_batch(c->call, ops, n, api_tag(c, API_TAG_DONE),
	    NULL);
	if (e != GRPC_CALL_OK)
		log_fatal("grpc_call_start_batch: error %d", (int)e);
}

/* Answers an error status, logged at debug level with the method. */
static void
api_fail(struct api_call *c, grpc_status_code code, const char *msg)
{
	if (log_enabled(LOGL_DEBUG))
		log_kv(LOGL_DEBUG, "call refused", "method",
		    c->method < API_GENERIC ? api_paths[c->method] : "generic",
		    "code", grpcx_status_name(code), "error", msg, NULL);
	api_finish(c, code, msg, NULL);
}

/* ---- forwarding to the db worker -------------------------------------- */

/*
 * An id whose slot is free. Caller holds mu. There is always one: fewer
 * calls than slots are ever pending.
 */
static uint64_t
api_next_id(struct api *a)
{
	uint64_t id;

	do {
		id = a->next_id++;
	} while (id == 0 || a->slots[id % API_SLOTS] != NULL);
	return id;
}

/*
 * Queues r on the db connection and writes what the socket takes. Caller
 * holds mu and checked conn. Wakes the db thread when output is left over
 * (it waits for POLLOUT) or the write failed (it drops the connection).
 * Returns 0 or -1 when the message could not be queued.
 */
static int
api_send_locked(struct api *a, Ipamd__V1__Request *r, bool *wake)
{
	int f;

	if (ipcmsg_queue_request(a->conn, r) < 0)
		return -1;
	f = ipc_conn_flush(a->conn);
	if (f < 0) {
		a->conn_broken = true;
		*wake = true;
	} else if (f > 0) {
		*wake = true;
	}
	return 0;
}

/*
 * Release in a trench this instance does not serve succeeds (issue 3:
 * Release succeeds when the trench is unknown) without asking the db
 * worker, which holds nothing of it. The fields checked after the trench
 * must still be valid: validate_child runs again with this instance's
 * trench in place of the foreign one. Returns true if the Release is
 * valid that way (the caller answers OK); st then says what is wrong
 * otherwise.
 */
static bool
api_release_foreign(struct api *a, Ipam__V1__Child *ch, int *family,
    struct grpcx_status *st)
{
	Nsp__V1__Trench *t = ch->subnet->conduit->trench;
	char *foreign = t->name;
	int rc;

	t->name = a->cfg->trench;
	rc = validate_child(a->cfg, ch, family, st);
	t->name = foreign;
	return rc == GRPC_STATUS_OK;
}

/*
 * Validates an Allocate or Release call and forwards it to the db worker,
 * or answers it at once (bad input, no db connection). The call moves to
 * the pending table under mu, and from then on only the db thread answers
 * it.
 */
static void
api_forward(struct api *a, struct api_call *c)
{
	Ipam__V1__Child *ch;
	Ipamd__V1__Request req = IPAMD__V1__REQUEST__INIT;
	Ipamd__V1__Child dch = IPAMD__V1__CHILD__INIT;
	Ipamd__V1__Allocate al = IPAMD__V1__ALLOCATE__INIT;
	Ipamd__V1__Release rel = IPAMD__V1__RELEASE__INIT;
	struct grpcx_status st;
	int family = 0;
	int64_t left, wait;
	bool wake = false, queued = false;

	ch = (Ipam__V1__Child *)grpcx_unpack(&ipam__v1__child__descriptor,
	    c->payload);
	if (ch == NULL) {
		api_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
		    "malformed request body: not an ipam.v1.Child");
		return;
	}
	if (validate_child(a->cfg, ch, &family, &st) != GRPC_STATUS_OK) {
		if (c->method == API_RELEASE && st.code == GRPC_STATUS_NOT_FOUND &&
		    api_release_foreign(a, ch, &family, &st)) {
			Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;

			api_finish(c, GRPC_STATUS_OK, NULL, &e.base);
			goto out;
		}
		api_fail(c, st.code, st.message);
		goto out;
	}

	left = grpcx_ms_left(c->deadline);
	if (left == INT64_MAX) {
		wait = API_DEFAULT_WAIT_MS;
		c->expire_ms = now_ms() + wait + API_EXPIRE_SLACK_MS;
	} else {
		wait = left > API_DEADLINE_MARGIN_MS ?
		    left - API_DEADLINE_MARGIN_MS : 0;
		if (wait > UINT32_MAX)
			wait = UINT32_MAX;
		c->expire_ms = now_ms() + left + API_AFTER_DEADLINE_MS;
	}

	dch.trench = ch->subnet->conduit->trench->name;
	dch.conduit = ch->subnet->conduit->name;
	dch.node = ch->subnet->node;
	dch.family = family == 4 ? IPAMD__V1__FAMILY__FAMILY_IPV4 :
	    IPAMD__V1__FAMILY__FAMILY_IPV6;
	dch.name = ch->name;
	if (c->method == API_ALLOCATE) {
		al.child = &dch;
		al.wait_ms = (uint32_t)wait;
		req.body_case = IPAMD__V1__REQUEST__BODY_ALLOCATE;
		req.allocate = &al;
	} else {
		rel.child = &dch;
		req.body_case = IPAMD__V1__REQUEST__BODY_RELEASE;
		req.release = &rel;
	}

	pthread_mutex_lock(&a->mu);
	if (a->conn != NULL && !a->conn_broken) {
		req.id = api_next_id(a);
		c->id = req.id;
		a->slots[req.id % API_SLOTS] = c;
		a->npending++;
		if (api_send_locked(a, &req, &wake) == 0) {
			queued = true;
			a->nforwarded++;
		} else {
			a->slots[req.id % API_SLOTS] = NULL;
			a->npending--;
		}
	}
	pthread_mutex_unlock(&a->mu);
	if (wake)
		api_wake(a);
	if (!queued)
		api_fail(c, GRPC_STATUS_UNAVAILABLE, "db worker unavailable");
out:
	ipam__v1__child__free_unpacked(ch, NULL);
}

/*
 * Answers a forwarded call from the db worker's Reply: code 0 gives the
 * method's response (Prefix or Empty), anything else that status and its
 * message. Runs on the thread that owns the call at this point (the gRPC
 * thread once the Reply is handed back).
 */
static void
api_answer(struct api_call *c, const Ipamd__V1__Reply *r)
{
	Ipam__V1__Prefix p = IPAM__V1__PREFIX__INIT;
	Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;

	if (r->code != 0) {
		api_fail(c, grpcx_status_code(r->code),
		    r->message[0] != '\0' ? r->message : "db worker error");
		return;
	}
	if (c->method == API_ALLOCATE) {
		p.address = r->address;
		p.prefixlength = r->prefix_length;
		api_finish(c, GRPC_STATUS_OK, NULL, &p.base);
	} else {
		api_finish(c, GRPC_STATUS_OK, NULL, &e.base);
	}
}

/*
 * Takes every pending call out of the table (caller holds mu) into a
 * malloc'd array; *n gets the count. NULL with *n = 0 when there are none.
 */
static struct api_call **
api_take_all_locked(struct api *a, size_t *n)
{
	struct api_call **v;
	size_t k = 0;

	*n = 0;
	if (a->npending == 0)
		return NULL;
	v = malloc(a->npending * sizeof(*v));
	if (v == NULL)
		log_fatal("out of memory failing pending calls");
	for (size_t i = 0; i < API_SLOTS; i++) {
		if (a->slots[i] != NULL) {
			v[k++] = a->slots[i];
			a->slots[i] = NULL;
		}
	}
	a->npending = 0;
	*n = k;
	return v;
}

/* ---- health ----------------------------------------------------------- */

static bool
api_health_known(const char *name)
{
	for (size_t i = 0; i < sizeof(api_health_names) /
	    sizeof(api_health_names[0]); i++)
		if (strcmp(name, api_health_names[i]) == 0)
			return true;
	return false;
}

/* The status served now: NOT_SERVING while stopping. */
static int
api_health_now(struct api *a)
{
	if (a->stopping)
		return HEALTH_NOT_SERVING;
	return atomic_load(&a->health);
}

/*
 * Health Check: the current status for a served name, NOT_FOUND for any
 * other (grpc's health spec; SERVICE_UNKNOWN is Watch's answer).
 */
static void
api_check(struct api *a, struct api_call *c)
{
	Grpc__Health__V1__HealthCheckRequest *rq;
	Grpc__Health__V1__HealthCheckResponse rs =
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	char msg[160];

	rq = (Grpc__Health__V1__HealthCheckRequest *)grpcx_unpack(
	    &grpc__health__v1__health_check_request__descriptor, c->payload);
	if (rq == NULL) {
		api_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
		    "malformed request body: not a HealthCheckRequest");
		return;
	}
	if (!api_health_known(rq->service)) {
		snprintf(msg, sizeof(msg), "unknown service \"%.100s\"",
		    rq->service);
		api_fail(c, GRPC_STATUS_NOT_FOUND, msg);
	} else {
		rs.status = api_health_now(a);
		api_finish(c, GRPC_STATUS_OK, NULL, &rs.base);
	}
	grpc__health__v1__health_check_request__free_unpacked(rq, NULL);
}

/*
 * Sends a Watch call what it has not seen yet: the current status when it
 * differs from the last one sent and, while stopping, a final UNAVAILABLE
 * status that ends the stream. One send batch at a time; its completion
 * calls this again, so changes made meanwhile are not lost.
 */
static void
api_watch_push(struct api *a, struct api_call *c)
{
	Grpc__Health__V1__HealthCheckResponse rs =
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	grpc_op ops[3];
	size_t n = 0;
	int want;

	if (c->busy || c->closed || c->ended)
		return;
	want = c->known ? api_health_now(a) : HEALTH_UNKNOWN;
	if (want == c->last_sent && !a->stopping)
		return;
	memset(ops, 0, sizeof(ops));
	if (!c->md_sent) {
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
		c->md_sent = true;
	}
	if (c->send_buf != NULL) {
		grpc_byte_buffer_destroy(c->send_buf);
		c->send_buf = NULL;
	}
	if (want != c->last_sent) {
		rs.status = want;
		c->send_buf = grpcx_pack(&rs.base);
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = c->send_buf;
		c->last_sent = want;
	}
	if (a->stopping) {
		grpc_slice_unref(c->status_msg);
		c->status_msg = grpc_slice_from_static_string(
		    "server shutting down");
		ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
		ops[n].data.send_status_from_server.status =
		    GRPC_STATUS_UNAVAILABLE;
		ops[n++].data.send_status_from_server.status_details =
		    &c->status_msg;
		c->ended = true;
	}
	c->busy = true;
	if (grpc_call_start_batch(c->call, ops, n, api_tag(c, API_TAG_DONE),
	    NULL) != GRPC_CALL_OK)
		log_fatal("grpc_call_start_batch (watch) failed");
}

/* Frees a Watch call once neither of its batches is in flight. */
static void
api_watch_maybe_free(struct api *a, struct api_call *c)
{
	if (c->busy || !c->closed)
		return;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		a->watchers = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	a->live--;
	api_call_free(c);
}

/*
 * Health Watch: the call joins the watcher list, a RECV_CLOSE batch tells
 * when the client leaves, and the first message (the current status, or
 * SERVICE_UNKNOWN for a name not served) goes out at once.
 */
static void
api_watch_start(struct api *a, struct api_call *c)
{
	Grpc__Health__V1__HealthCheckRequest *rq;
	grpc_op op;

	rq = (Grpc__Health__V1__HealthCheckRequest *)grpcx_unpack(
	    &grpc__health__v1__health_check_request__descriptor, c->payload);
	if (rq == NULL) {
		api_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
		    "malformed request body: not a HealthCheckRequest");
		return;
	}
	c->known = api_health_known(rq->service);
	grpc__health__v1__health_check_request__free_unpacked(rq, NULL);

	/* From here on the call is a watcher: DONE no longer frees it. */
	c->watching = true;
	c->next = a->watchers;
	if (a->watchers != NULL)
		a->watchers->prev = c;
	a->watchers = c;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op.data.recv_close_on_server.cancelled = &c->cancelled;
	if (grpc_call_start_batch(c->call, &op, 1, api_tag(c, API_TAG_CLOSE),
	    NULL) != GRPC_CALL_OK)
		log_fatal("grpc_call_start_batch (recv close) failed");
	api_watch_push(a, c);
}

/* Pushes the current status to every watcher that has not seen it. */
static void
api_watch_all(struct api *a)
{
	struct api_call *c, *next;

	for (c = a->watchers; c != NULL; c = next) {
		next = c->next;
		api_watch_push(a, c);
	}
}

/* ---- the gRPC thread -------------------------------------------------- */

/*
 * With SPIFFE, every call on the port must come from a SPIFFE ID of our
 * trust domain, and Ipam calls from one IPAM_SPIFFE_ALLOWED_IDS allows
 * (Health stays open to the whole trust domain, for probes). Answers the
 * call and returns false when it may not go on.
 */
static bool
api_authorized(struct api *a, struct api_call *c)
{
	grpc_status_code code;
	char msg[600];

	code = mtls_authorize(a->mtls, c->call, c->method == API_ALLOCATE ||
	    c->method == API_RELEASE, msg, sizeof(msg));
	if (code == GRPC_STATUS_OK)
		return true;
	api_fail(c, code, msg);
	return false;
}

/* A call arrived: re-post for its method, then handle it. */
static void
api_on_new(struct api *a, struct api_call *c)
{
	char msg[300];

	if (!a->stopping && api_post_on(a, c->method, c->on_hsock) < 0)
		log_error("cannot post a request for %s",
		    c->method < API_GENERIC ? api_paths[c->method] : "generic");
	a->live++;
	c->arrived_ns = now_ns(CLOCK_MONOTONIC);
	if (a->live > API_MAX_INFLIGHT) {
		api_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "too many calls in flight");
		return;
	}
	if (a->mtls != NULL && !c->on_hsock && !api_authorized(a, c))
		return;
	switch (c->method) {
	case API_ALLOCATE:
	case API_RELEASE:
		api_forward(a, c);
		break;
	case API_CHECK:
		api_check(a, c);
		break;
	case API_WATCH:
		api_watch_start(a, c);
		break;
	default:
		snprintf(msg, sizeof(msg), "unknown method %.*s",
		    (int)GRPC_SLICE_LENGTH(c->details.method) > 200 ? 200 :
		    (int)GRPC_SLICE_LENGTH(c->details.method),
		    (const char *)GRPC_SLICE_START_PTR(c->details.method));
		api_fail(c, GRPC_STATUS_UNIMPLEMENTED, msg);
		break;
	}
}

/* One completion-queue event. */
static void
api_dispatch(struct api *a, void *tag, bool success)
{
	struct api_call *c;
	enum api_tag kind;

	if (tag == &api_shutdown_tag) {
		a->shutdown_done = true;
		return;
	}
	if (hsock_take_tag(a->hs, tag))
		return;
	kind = (enum api_tag)((uintptr_t)tag & 3u);
	c = (struct api_call *)((uintptr_t)tag & ~(uintptr_t)3u);
	switch (kind) {
	case API_TAG_NEW:
		a->posted--;
		if (!success) {
			api_call_free(c);
			return;
		}
		api_on_new(a, c);
		break;
	case API_TAG_DONE:
		if (c->watching) {
			c->busy = false;
			if (!success)
				c->ended = true;
			api_watch_push(a, c);
			api_watch_maybe_free(a, c);
			return;
		}
		a->live--;
		api_call_free(c);
		break;
	case API_TAG_CLOSE:
		c->closed = true;
		api_watch_maybe_free(a, c);
		break;
	case API_TAG_REPLY:
		api_answer(c, c->reply);
		ipamd__v1__reply__free_unpacked(c->reply, NULL);
		c->reply = NULL;
		break;
	}
}

/*
 * The orderly stop, step one: no new calls, watchers told NOT_SERVING and
 * ended, in-flight calls keep going (the db thread still runs).
 */
static void
api_begin_stop(struct api *a)
{
	log_info("stopping: draining calls in flight");
	a->stopping = true;
	if (a->server != NULL)
		grpc_server_shutdown_and_notify(a->server, a->cq,
		    &api_shutdown_tag);
	else
		a->shutdown_done = true;	/* SPIFFE: never served */
	hsock_begin_stop(a->hs);
	/* its queues do not poll: this thread makes its shutdown progress */
	admin_begin_stop(a->adm);
	api_watch_all(a);
}

/*
 * Step two, when the drain time is over: cancel what is left. Pending
 * calls are taken back from the db thread and answered CANCELLED (the
 * batch fails on a cancelled call, which frees it all the same).
 */
static void
api_cancel_rest(struct api *a)
{
	struct api_call **v;
	size_t n;

	log_warn("drain time over: cancelling %u calls", a->live);
	if (a->server != NULL)
		grpc_server_cancel_all_calls(a->server);
	hsock_cancel_all(a->hs);
	pthread_mutex_lock(&a->mu);
	v = api_take_all_locked(a, &n);
	pthread_mutex_unlock(&a->mu);
	for (size_t i = 0; i < n; i++)
		api_finish(v[i], GRPC_STATUS_CANCELLED, "server shutting down",
		    NULL);
	free(v);
}

/*
 * Polls the completion queue until the orderly stop is over. Returns true
 * if everything completed (the server can be destroyed safely).
 */
static bool
api_loop(struct api *a)
{
	grpc_event ev;
	gpr_timespec tick;
	int64_t drain_end = 0, final_end = 0;
	bool cancelled = false;
	int h, rc;

	for (;;) {
		tick = grpcx_deadline_ms(API_TICK_MS);
		ev = grpc_completion_queue_next(a->cq, tick, NULL);
		if (ev.type == GRPC_OP_COMPLETE)
			api_dispatch(a, ev.tag, ev.success != 0);
		else if (ev.type == GRPC_QUEUE_SHUTDOWN)
			return false;

		if (atomic_load(&api_accept_dead)) {
			log_error("the gRPC listener stopped accepting; exiting "
			    "so that the supervisor starts a fresh worker");
			_exit(1);
		}
		if (a->server == NULL && !a->stopping && a->mtls != NULL &&
		    mtls_ready(a->mtls) && (rc = api_server_start(a)) < 0) {
			log_error("cannot serve the port with the SVID");
			_exit(rc == API_PORT_TAKEN ? IPCMSG_EXIT_PERMANENT : 1);
		}
		if (!a->stopping && atomic_load(&a->stop)) {
			api_begin_stop(a);
			drain_end = now_ms() + API_DRAIN_MS;
			final_end = drain_end + API_FINAL_MS;
		}
		h = api_health_now(a);
		if (h != a->health_seen) {
			a->health_seen = h;
			api_watch_all(a);
		}
		if (!a->stopping)
			continue;
		if (a->shutdown_done && hsock_stopped(a->hs) && a->live == 0 &&
		    a->posted == 0)
			return true;
		/* Nothing in flight and the queue idle for a tick: only idle
		 * connections hold the shutdown back (gRPC waits for their
		 * clients to leave); close them now. */
		if (!cancelled && a->live == 0 && ev.type == GRPC_QUEUE_TIMEOUT) {
			cancelled = true;
			if (a->server != NULL)
				grpc_server_cancel_all_calls(a->server);
			hsock_cancel_all(a->hs);
		}
		if (!cancelled && now_ms() >= drain_end) {
			cancelled = true;
			api_cancel_rest(a);
		}
		if (now_ms() >= final_end) {
			log_error("stop: %u calls did not complete", a->live);
			return false;
		}
	}
}

/* ---- the db thread ---------------------------------------------------- */

/* State of the db thread (only it touches this). */
struct api_db {
	struct api *a;			/* the worker */
	int sig_fd;			/* signalfd of SIGTERM */
	int64_t next_connect_ms;	/* when to try connecting again */
	int64_t next_ping_ms;		/* when to ping and report next */
	int64_t last_pong_ms;		/* when the last ping was answered */
	uint64_t ping_id;		/* id of the last ping sent, 0 none */
	uint64_t hello_id;		/* id of the Hello on this connection */
	bool ready_sent;		/* WorkerStatus ready=true was sent */
	bool down_logged;		/* the outage was logged once */
	bool was_serving;		/* health at the last evaluation */
	uint64_t trim_seen;		/* nforwarded at the last tick */
	bool trim_due;			/* calls came since the last trim */
};

/*
 * Gives the heap freed after a burst of calls back to the system once a
 * whole ping period went by without a forwarded call: gRPC's per-call
 * buffers leave their memory as free chunks in glibc's per-thread arenas
 * (100k allocations: api worker VmRSS 16.3 MB, 14.5 MB after trimming).
 * Once per burst, never while calls flow.
 */
static void
api_db_trim(struct api_db *d)
{
	struct api *a = d->a;
	uint64_t n;

	pthread_mutex_lock(&a->mu);
	n = a->nforwarded;
	pthread_mutex_unlock(&a->mu);
	if (n != d->trim_seen) {
		d->trim_seen = n;
		d->trim_due = true;
		return;
	}
	if (!d->trim_due)
		return;
	d->trim_due = false;
	malloc_trim(0);
	log_debug("idle after %llu forwarded calls: freed heap returned to "
	    "the system", (unsigned long long)n);
}

/* Reports to the supervisor; EPIPE means it is gone: stop. */
static void
api_report(struct api_db *d, bool serving)
{
	struct api *a = d->a;
	char status[128];

	if (a->status_fd < 0)
		return;
	snprintf(status, sizeof(status), "api: port %u%s, db %s", a->cfg->port,
	    atomic_load(&a->port_up) ? "" : " waiting for an SVID",
	    serving ? "answering" : "unavailable");
	if (ipcmsg_send_status(a->status_fd, d->ready_sent, status) < 0) {
		log_error("supervisor channel: %s: stopping", strerror(errno));
		atomic_store(&a->stop, true);
	}
}

/* Re-evaluates health; reports readiness the first time it is true. */
static void
api_db_health(struct api_db *d)
{
	struct api *a = d->a;
	bool serving;

	pthread_mutex_lock(&a->mu);
	serving = a->conn != NULL && d->last_pong_ms > 0 &&
	    now_ms() - d->last_pong_ms <= API_PONG_MAX_MS &&
	    atomic_load(&a->port_up);
	pthread_mutex_unlock(&a->mu);
	atomic_store(&a->health, serving ? HEALTH_SERVING : HEALTH_NOT_SERVING);
	if (serving != d->was_serving) {
		d->was_serving = serving;
		log_kv(serving ? LOGL_INFO : LOGL_WARNING, serving ?
		    "db worker answers: serving" :
		    "db worker does not answer: not serving", NULL);
	}
	if (serving && !d->ready_sent) {
		d->ready_sent = true;
		api_report(d, serving);
	}
}

/* Fails every pending call with UNAVAILABLE and forgets the connection. */
static void
api_db_drop(struct api_db *d, const char *why)
{
	struct api *a = d->a;
	struct api_call **v;
	size_t n;

	pthread_mutex_lock(&a->mu);
	ipc_conn_free(a->conn);
	a->conn = NULL;
	a->conn_broken = false;
	v = api_take_all_locked(a, &n);
	pthread_mutex_unlock(&a->mu);
	log_kv(LOGL_WARNING, "db connection lost", "error", why, NULL);
	for (size_t i = 0; i < n; i++)
		api_fail(v[i], GRPC_STATUS_UNAVAILABLE,
		    "db worker unavailable");
	free(v);
	d->ping_id = 0;
	d->last_pong_ms = 0;
	d->next_connect_ms = now_ms() + API_RECONNECT_MS;
	api_db_health(d);
}

/* Connects and says Hello, then pings at once. */
static void
api_db_connect(struct api_db *d)
{
	struct api *a = d->a;
	Ipamd__V1__Request req = IPAMD__V1__REQUEST__INIT;
	Ipamd__V1__Hello hello = IPAMD__V1__HELLO__INIT;
	Ipamd__V1__Ping ping = IPAMD__V1__PING__INIT;
	struct ipc_conn *conn;
	char err[256];
	bool wake = false;
	int fd, r1, r2;

	d->next_connect_ms = now_ms() + API_RECONNECT_MS;
	fd = ipc_connect(a->db_path, err, sizeof(err));
	if (fd < 0) {
		if (!d->down_logged)
			log_kv(LOGL_WARNING, "cannot connect to the db worker",
			    "path", a->db_path, "error", err, NULL);
		d->down_logged = true;
		return;
	}
	conn = ipc_conn_new(fd);
	if (conn == NULL) {
		close(fd);
		return;
	}
	d->down_logged = false;
	pthread_mutex_lock(&a->mu);
	a->conn = conn;
	hello.role = IPAMD__V1__ROLE__ROLE_API;
	hello.pid = (int32_t)getpid();
	req.id = d->hello_id = api_next_id(a);
	req.body_case = IPAMD__V1__REQUEST__BODY_HELLO;
	req.hello = &hello;
	r1 = api_send_locked(a, &req, &wake);
	req.id = d->ping_id = api_next_id(a);
	req.body_case = IPAMD__V1__REQUEST__BODY_PING;
	req.ping = &ping;
	r2 = api_send_locked(a, &req, &wake);
	pthread_mutex_unlock(&a->mu);
	d->next_ping_ms = now_ms() + API_PING_MS;
	if (r1 < 0 || r2 < 0)
		api_db_drop(d, "cannot queue hello");
	else
		log_kv(LOGL_INFO, "connected to the db worker", "path",
		    a->db_path, NULL);
}

/* Sends a ping (when none is outstanding, or the last one is lost). */
static void
api_db_ping(struct api_db *d)
{
	struct api *a = d->a;
	Ipamd__V1__Request req = IPAMD__V1__REQUEST__INIT;
	Ipamd__V1__Ping ping = IPAMD__V1__PING__INIT;
	bool wake = false;
	int r = 0;

	pthread_mutex_lock(&a->mu);
	if (a->conn != NULL) {
		req.id = d->ping_id = api_next_id(a);
		req.body_case = IPAMD__V1__REQUEST__BODY_PING;
		req.ping = &ping;
		r = api_send_locked(a, &req, &wake);
	}
	pthread_mutex_unlock(&a->mu);
	if (r < 0)
		api_db_drop(d, "cannot queue ping");
}

/*
 * Reads what the db worker sent and hands the calls it concerns back to
 * the gRPC thread with their Replies. The Replies are matched under mu,
 * the calls handed back after it is released.
 */
static void
api_db_read(struct api_db *d)
{
	struct api *a = d->a;
	struct api_call *done[64];
	Ipamd__V1__Reply *rep[64];
	const uint8_t *data;
	size_t len, nd;
	ssize_t n;
	int rc = 0;
	const char *why = NULL;
	bool more = true;

	while (more) {
		nd = 0;
		pthread_mutex_lock(&a->mu);
		if (a->conn == NULL) {
			pthread_mutex_unlock(&a->mu);
			return;
		}
		n = ipc_conn_fill(a->conn);
		if (n == 0)
			why = "db worker closed the connection";
		else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			why = strerror(errno);
		more = n > 0;
		while (nd < 64 &&
		    (rc = ipc_conn_next(a->conn, &data, &len)) == 1) {
			Ipamd__V1__Reply *r = ipcmsg_unpack_reply(data, len);
			struct api_call *c;

			if (r == NULL) {
				why = "malformed reply from the db worker";
				break;
			}
			c = a->slots[r->id % API_SLOTS];
			if (c != NULL && c->id == r->id) {
				a->slots[r->id % API_SLOTS] = NULL;
				a->npending--;
				done[nd] = c;
				rep[nd++] = r;
				continue;
			}
			if (r->id == d->ping_id && r->id != 0) {
				d->last_pong_ms = now_ms();
			} else if (r->id == d->hello_id && r->code != 0) {
				log_kv(LOGL_ERROR, "db worker refused hello",
				    "error", r->message, NULL);
				why = "hello refused";
			}
			ipamd__v1__reply__free_unpacked(r, NULL);
		}
		if (nd == 64)
			more = true;
		if (rc < 0 && why == NULL)
			why = "oversized frame from the db worker";
		pthread_mutex_unlock(&a->mu);
		for (size_t i = 0; i < nd; i++) {
			/* An empty batch completes at once: its tag takes
			 * the reply to the gRPC thread, which answers. */
			done[i]->reply = rep[i];
			if (grpc_call_start_batch(done[i]->call, NULL, 0,
			    (void *)((uintptr_t)done[i] | API_TAG_REPLY),
			    NULL) == GRPC_CALL_OK)
				continue;
			done[i]->reply = NULL;
			api_answer(done[i], rep[i]);
			ipamd__v1__reply__free_unpacked(rep[i], NULL);
		}
		if (why != NULL) {
			api_db_drop(d, why);
			return;
		}
	}
}

/*
 * Gives up on pending calls whose time is over: their clients have had
 * DEADLINE_EXCEEDED from gRPC already (or get it now when they set no
 * deadline and the db worker stays silent), and the table must not fill.
 */
static void
api_db_expire(struct api_db *d)
{
	struct api *a = d->a;
	struct api_call *v[64];
	size_t n;
	int64_t now = now_ms();
	size_t i = 0;

	do {
		n = 0;
		pthread_mutex_lock(&a->mu);
		for (; i < API_SLOTS && n < 64; i++) {
			struct api_call *c = a->slots[i];

			if (c != NULL && c->expire_ms <= now) {
				a->slots[i] = NULL;
				a->npending--;
				v[n++] = c;
			}
		}
		pthread_mutex_unlock(&a->mu);
		for (size_t k = 0; k < n; k++)
			api_fail(v[k], GRPC_STATUS_DEADLINE_EXCEEDED,
			    "the db worker did not answer in time");
	} while (i < API_SLOTS);
}

/* Reads the supervisor channel: EOF means the supervisor is gone. */
static void
api_db_status_in(struct api_db *d)
{
	char buf[256];
	ssize_t n;

	n = read(d->a->status_fd, buf, sizeof(buf));
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		log_warn("supervisor gone: stopping");
		d->a->status_fd = -1;
		atomic_store(&d->a->stop, true);
	}
}

/* The db thread's loop: poll, connect, read, ping, report, expire. */
static void *
api_db_main(void *arg)
{
	struct api_db *d = arg;
	struct api *a = d->a;
	struct pollfd pfd[4];
	int64_t now, timeout;
	int conn_fd;
	bool pending_out;

	while (!atomic_load(&a->db_quit)) {
		now = now_ms();
		pthread_mutex_lock(&a->mu);
		conn_fd = a->conn != NULL ? ipc_conn_fd(a->conn) : -1;
		pending_out = a->conn != NULL && ipc_conn_pending(a->conn);
		if (a->conn_broken) {
			pthread_mutex_unlock(&a->mu);
			api_db_drop(d, "write to the db worker failed");
			continue;
		}
		pthread_mutex_unlock(&a->mu);
		if (conn_fd < 0 && now >= d->next_connect_ms) {
			api_db_connect(d);
			continue;
		}
		if (now >= d->next_ping_ms) {
			d->next_ping_ms = now + API_PING_MS;
			api_db_ping(d);
			api_db_health(d);
			api_report(d, atomic_load(&a->health) == HEALTH_SERVING);
			api_db_expire(d);
			api_db_trim(d);
			continue;
		}
		timeout = d->next_ping_ms - now;
		if (conn_fd < 0 && d->next_connect_ms - now < timeout)
			timeout = d->next_connect_ms - now;

		pfd[0] = (struct pollfd){ .fd = a->wake_fd, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = d->sig_fd, .events = POLLIN };
		pfd[2] = (struct pollfd){ .fd = conn_fd, .events = POLLIN |
		    (pending_out ? POLLOUT : 0) };
		pfd[3] = (struct pollfd){ .fd = a->status_fd, .events = POLLIN };
		if (poll(pfd, 4, (int)(timeout > 0 ? timeout : 0)) < 0) {
			if (errno != EINTR)
				log_fatal("poll: %s", strerror(errno));
			continue;
		}
		if (pfd[0].revents & POLLIN) {
			uint64_t cnt;

			if (read(a->wake_fd, &cnt, sizeof(cnt)) < 0 &&
			    errno != EAGAIN)
				log_warn("eventfd: %s", strerror(errno));
		}
		if (pfd[1].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(d->sig_fd, &si, sizeof(si)) == sizeof(si)) {
				log_info("signal %u: stopping", si.ssi_signo);
				atomic_store(&a->stop, true);
			}
		}
		if (pfd[3].revents & (POLLIN | POLLHUP | POLLERR))
			api_db_status_in(d);
		if (conn_fd >= 0 && (pfd[2].revents & POLLOUT)) {
			int f;

			pthread_mutex_lock(&a->mu);
			f = a->conn != NULL ? ipc_conn_flush(a->conn) : 0;
			pthread_mutex_unlock(&a->mu);
			if (f < 0) {
				api_db_drop(d, strerror(errno));
				continue;
			}
		}
		if (conn_fd >= 0 && (pfd[2].revents & (POLLIN | POLLHUP |
		    POLLERR))) {
			api_db_read(d);
			api_db_health(d);
		}
	}
	return NULL;
}

/* ---- setup and teardown ----------------------------------------------- */

/* Logs what the TLS fetcher found when it looked at the files (it runs
 * on a gRPC thread before a handshake). */
static void
api_tls_notify(void *arg, int rc, const char *err)
{
	(void)arg;
	if (rc > 0)
		log_info("TLS files changed and read again (gRPC logs an "
		    "error if it cannot use them)");
	else
		log_kv(LOGL_WARNING, "cannot reload TLS files; serving the "
		    "previous ones", "error", err, NULL);
}

/*
 * The credentials of the port: plaintext, or TLS from IPAM_TLS_CERT and
 * IPAM_TLS_KEY (clients must present a certificate signed by IPAM_TLS_CA
 * when it is set). gRPC asks a->tls before every handshake, and a->tls
 * reads the files again when they changed: rotated certificates are served
 * to new connections without a restart. NULL (logged) when a file cannot
 * be read at start.
 */
static grpc_server_credentials *
api_server_creds(struct api *a)
{
	const struct cfg *c = a->cfg;
	grpc_server_credentials *creds;
	char err[512];

	if (a->mtls != NULL)
		return mtls_server_credentials(a->mtls);
	if (c->tls_cert[0] == '\0')
		return grpc_insecure_server_credentials_create();
	a->tls = grpcx_tls_new(c->tls_cert, c->tls_key, c->tls_ca, err,
	    sizeof(err));
	if (a->tls == NULL) {
		log_kv(LOGL_ERROR, "cannot load TLS files", "error", err, NULL);
		return NULL;
	}
	grpcx_tls_set_notify(a->tls, api_tls_notify, NULL);
	creds = grpcx_tls_server_credentials(a->tls);
	if (creds == NULL)
		log_error("cannot make TLS server credentials");
	return creds;
}

/*
 * Says in one line why IPAM_PORT cannot be listened on, naming the process
 * that holds it where /proc tells. A port in use is permanent: a restart
 * of the worker cannot free it.
 */
static void
api_port_failed(const struct api *a, const char *addr)
{
	char what[96], who[96] = "", holder[160] = "";
	int e = portowner_bind_errno(a->cfg->port);

	snprintf(what, sizeof(what), "IPAM_PORT=%u: %s", a->cfg->port,
	    e != 0 ? strerror(e) : "cannot listen");
	what[strcspn(what, ":") + 2] = (char)tolower(
	    (unsigned char)what[strcspn(what, ":") + 2]);
	if (e == EADDRINUSE && portowner_find(a->cfg->port, who, sizeof(who)))
		snprintf(holder, sizeof(holder), "%s listens on it", who);
	else if (e == EADDRINUSE)
		snprintf(holder, sizeof(holder), "another process listens on it");
	log_kv(LOGL_ERROR, what, "address", addr, "holder",
	    holder[0] != '\0' ? holder : NULL, NULL);
}

/*
 * The health socket (IPAM_HEALTH_SOCKET): Check, Watch and nothing else,
 * plaintext, on the completion queue of the port, so that both answer
 * from the same state (NOT_SERVING until the db worker answers). A socket
 * another process serves, or a path that cannot be used, stops the daemon
 * (exit 78: a restart would meet the same socket), with one line naming
 * the variable. Returns 0 or -1 (cannot post, logged).
 */
static int
api_hsock_start(struct api *a)
{
	const char *path = a->cfg->health_socket;
	char err[512];
	enum hsock_rc rc;

	if (path == NULL || path[0] == '\0') {
		log_info("health socket off (IPAM_HEALTH_SOCKET is empty)");
		return 0;
	}
	rc = hsock_open(path, a->cq, &api_paths[API_CHECK], 2, &a->hs, err,
	    sizeof(err));
	if (rc != HSOCK_OK) {
		log_kv(LOGL_ERROR, rc == HSOCK_LIVE ? "IPAM_HEALTH_SOCKET is "
		    "in use: stopping" : "IPAM_HEALTH_SOCKET cannot be served: "
		    "stopping", "path", path, "error", err, NULL);
		_exit(IPCMSG_EXIT_PERMANENT);
	}
	hsock_start(a->hs);
	for (int m = API_CHECK; m < API_NMETHODS; m++)
		for (int i = 0; i < API_POSTED_OTHER; i++)
			if (api_post_on(a, (enum api_method)m, true) < 0) {
				log_error("cannot post a request on the health "
				    "socket");
				return -1;
			}
	log_kv(LOGL_INFO, "health socket listening", "path", path, NULL);
	return 0;
}

/*
 * Creates, binds and starts the server. SO_REUSEPORT is off (gRPC turns it
 * on by default): a second instance on the same port would otherwise bind
 * too and the kernel would split clients between two daemons that hand out
 * the same addresses. Returns 0, -1 (logged), or API_PORT_TAKEN.
 */
static int
api_server_start(struct api *a)
{
	grpc_server_credentials *creds;
	char addr[32];
	int port;

	creds = api_server_creds(a);
	if (creds == NULL)
		return -1;
	a->server = grpcx_server_new(BOUNDS_API_MESSAGE_MAX);
	if (a->cq == NULL)
		a->cq = grpc_completion_queue_create_for_next(NULL);
	grpc_server_register_completion_queue(a->server, a->cq, NULL);
	for (int m = 0; m < API_GENERIC; m++)
		a->methods[m] = grpc_server_register_method(a->server,
		    api_paths[m], NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
		    0);
	snprintf(addr, sizeof(addr), "[::]:%u", a->cfg->port);
	atomic_store(&api_binding, true);
	port = grpc_server_add_http2_port(a->server, addr, creds);
	atomic_store(&api_binding, false);
	grpc_server_credentials_release(creds);
	if (port == 0) {
		api_port_failed(a, addr);
		return API_PORT_TAKEN;
	}
	grpc_server_start(a->server);
	for (int m = 0; m < API_NMETHODS; m++) {
		int k = m == API_ALLOCATE || m == API_RELEASE ?
		    API_POSTED_UNARY : API_POSTED_OTHER;

		for (int i = 0; i < k; i++)
			if (api_post(a, (enum api_method)m) < 0)
				return -1;
	}
	log_kv(LOGL_INFO, "listening", "address", addr, "tls", a->mtls != NULL ?
	    "spiffe" : a->tls == NULL ? "off" : a->cfg->tls_ca[0] != '\0' ?
	    "mutual" : "on", NULL);
	atomic_store(&a->port_up, true);
	return 0;
}

/*
 * Shuts the completion queue down and frees whatever it still returns,
 * then destroys server and queue. Only when the stop completed: destroying
 * a server with calls alive crashes.
 */
static void
api_server_destroy(struct api *a)
{
	grpc_event ev;

	grpc_completion_queue_shutdown(a->cq);
	do {
		ev = grpc_completion_queue_next(a->cq,
		    gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		if (ev.type == GRPC_OP_COMPLETE && ev.tag != &api_shutdown_tag &&
		    !hsock_take_tag(a->hs, ev.tag))
			api_call_free((struct api_call *)((uintptr_t)ev.tag &
			    ~(uintptr_t)3u));
	} while (ev.type != GRPC_QUEUE_SHUTDOWN);
	if (a->server != NULL)
		grpc_server_destroy(a->server);
	hsock_free(a->hs);
	a->hs = NULL;
	grpc_completion_queue_destroy(a->cq);
}

/*
 * Sets up signals (signalfd; the caller blocked them), the server and the
 * db thread, serves until the orderly stop is over, then tears down in
 * reverse order. The server is destroyed only when every call completed.
 */
int
api_run(const struct cfg *cfg, const char *db_path, int status_fd)
{
	struct api *a;
	struct api_db d;
	pthread_t th;
	sigset_t sigs;
	struct metrics *mx = NULL;	/* metrics endpoint, NULL if off */
	char err[512];
	bool clean;
	int rc = 1;

	a = calloc(1, sizeof(*a));
	if (a == NULL)
		log_fatal("out of memory");
	a->cfg = cfg;
	a->db_path = db_path;
	a->status_fd = status_fd;
	a->next_id = 1;
	a->health_seen = HEALTH_NOT_SERVING;
	atomic_init(&a->health, HEALTH_NOT_SERVING);
	atomic_init(&a->port_up, false);
	atomic_init(&a->stop, false);
	atomic_init(&a->db_quit, false);
	pthread_mutex_init(&a->mu, NULL);
	memset(&d, 0, sizeof(d));
	d.a = a;

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	d.sig_fd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
	a->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (d.sig_fd < 0 || a->wake_fd < 0)
		log_fatal("signalfd/eventfd: %s", strerror(errno));

	gpr_set_log_function(api_grpc_log);
	(void)grpcx_init();
	/* Metrics are for monitoring: a port that is taken must not stop
	 * allocations. Logged as an error; the endpoint stays off. */
	if (cfg->metrics_port != 0 && (mx = metrics_start(cfg->metrics_port,
	    db_path, err, sizeof(err))) == NULL)
		log_kv(LOGL_ERROR, "cannot serve metrics: endpoint off", "error",
		    err, NULL);
	/* The health socket serves from the start (NOT_SERVING until the
	 * db worker answers and the port is up). With SPIFFE the port is
	 * bound by api_loop once an SVID came. */
	a->cq = grpc_completion_queue_create_for_next(NULL);
	if (cfg->spiffe_socket[0] != '\0')
		a->mtls = mtls_start(cfg);
	if ((rc = api_hsock_start(a)) < 0 ||
	    (a->mtls == NULL && (rc = api_server_start(a)) < 0)) {
		rc = rc == API_PORT_TAKEN ? IPCMSG_EXIT_PERMANENT : 1;
		a->stopping = true;
		if (a->server != NULL) {
			grpc_server_shutdown_and_notify(a->server, a->cq,
			    &api_shutdown_tag);
			grpc_server_cancel_all_calls(a->server);
		}
		hsock_begin_stop(a->hs);
		hsock_cancel_all(a->hs);
		api_server_destroy(a);
		goto out_grpc;
	}
	a->adm = admin_start(getenv(IPCMSG_ENV_RUNDIR), db_path, cfg, a->cq,
	    err, sizeof(err));
	if (a->adm == NULL)
		log_kv(LOGL_ERROR, "no admin service", "error", err, NULL);
	if (pthread_create(&th, NULL, api_db_main, &d) != 0)
		log_fatal("pthread_create: %s", strerror(errno));

	clean = api_loop(a);
	admin_stop(a->adm);
	a->adm = NULL;
	metrics_stop(mx);
	mx = NULL;

	atomic_store(&a->db_quit, true);
	api_wake(a);
	pthread_join(th, NULL);
	pthread_mutex_lock(&a->mu);
	ipc_conn_free(a->conn);
	a->conn = NULL;
	pthread_mutex_unlock(&a->mu);
	if (!clean) {
		/* calls still alive: leave the rest to exit */
		log_warn("stopped with calls alive");
		return 0;
	}
	api_server_destroy(a);
	rc = 0;
	log_info("stopped");
out_grpc:
	metrics_stop(mx);
	mtls_stop(a->mtls);	/* the server that used it is gone */
	grpc_shutdown();
	grpcx_tls_free(a->tls);	/* gRPC's fetcher used it until here */
	close(a->wake_fd);
	close(d.sig_fd);
	pthread_mutex_destroy(&a->mu);
	free(a);
	return rc;
}
