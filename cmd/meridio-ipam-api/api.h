/*
 * api.h - the API worker: the gRPC server of ipam.v1.Ipam and
 * grpc.health.v1.Health in front of the db worker; the state its files
 * share.
 *
 * Two threads:
 *  - the gRPC thread (server.c) polls the server's completion queue: it
 *    accepts calls (call.c), validates them, answers what needs no db,
 *    forwards the rest (api.c), serves Health (health.c) and handles the
 *    orderly stop;
 *  - the db thread (dbconn.c) owns the connection to the db worker: it
 *    (re)connects, pings every second, reads Replies, matches them to the
 *    calls waiting for them, hands each Reply back to the gRPC thread, and
 *    reports to the supervisor.
 * A forwarded call belongs to the db thread from the moment it sits in the
 * pending table until it is handed back: an empty batch on the call, whose
 * completion (API_TAG_REPLY) brings the Reply to the gRPC thread, which
 * answers, so that gRPC does not move part of each answer to its executor
 * thread (BENCHMARKS.md). The db thread still answers a call it gives up
 * on (the db worker is gone or late). Any other call belongs to the gRPC
 * thread. So no two threads ever start batches on one call. Call state
 * is freed only by the gRPC thread, when the answer completes.
 */
#ifndef IPAM_API_H
#define IPAM_API_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <grpc/grpc.h>

#include "config.h"
#include "grpc/health/v1/health.pb-c.h"
#include "ipamd/v1/ipamd.pb-c.h"

#define API_MAX_INFLIGHT 4096	/* calls alive at once; more: EXHAUSTED */
#define API_SLOTS 8192		/* pending table size, > API_MAX_INFLIGHT */
#define API_POSTED_UNARY 16	/* requests kept posted for Allocate/Release */
#define API_POSTED_OTHER 2	/* ... for Check, Watch and unknown methods */
#define API_TICK_MS 100		/* gRPC thread's idle wake-up */
#define API_PING_MS 1000	/* ping and heartbeat period */
#define API_PONG_MAX_MS 2500	/* no pong for this long: NOT_SERVING */
#define API_RECONNECT_MS 100	/* delay between connection attempts */
#define API_PORT_TAKEN (-2)	/* server_start: IPAM_PORT not free */
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
	bool md_sent;			/* initial metadata went out */
	/* Watch only (gRPC thread): */
	bool watching;			/* in the watcher list */
	bool known;			/* a served name, not SERVICE_UNKNOWN */
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
	struct tls *tls;		/* IPAM_TLS_* files, NULL = plaintext */
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

#define HEALTH_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define HEALTH_NOT_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
#define HEALTH_UNKNOWN GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN

/* State of the db thread (only it touches this). */
struct dbconn {
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

/* call.c: one call's life (posted, arrived and routed, answered, freed) */
extern const char *const call_paths[API_GENERIC];
void *call_tag(struct api_call *c, enum api_tag kind);
int call_post_on(struct api *a, enum api_method m, bool on_hsock);
int call_post(struct api *a, enum api_method m);
void call_free(struct api_call *c);
void call_finish(struct api_call *c, grpc_status_code code, const char *msg,
    const ProtobufCMessage *body);
void call_fail(struct api_call *c, grpc_status_code code, const char *msg);
void call_on_new(struct api *a, struct api_call *c);

/* api.c: Allocate and Release, forwarded to the db worker */
void api_forward(struct api *a, struct api_call *c);
void api_answer(struct api_call *c, const Ipamd__V1__Reply *r);

/* health.c: Health Check and Watch */
int health_now(struct api *a);
void health_check(struct api *a, struct api_call *c);
void health_watch_push(struct api *a, struct api_call *c);
void health_watch_maybe_free(struct api *a, struct api_call *c);
void health_watch_start(struct api *a, struct api_call *c);
void health_watch_all(struct api *a);

/* dbconn.c: the db thread, its connection and the pending table */
void dbconn_wake(struct api *a);
uint64_t dbconn_next_id(struct api *a);
int dbconn_send_locked(struct api *a, Ipamd__V1__Request *r, bool *wake);
struct api_call **dbconn_take_all_locked(struct api *a, size_t *n);
void *dbconn_main(void *arg);

#endif
