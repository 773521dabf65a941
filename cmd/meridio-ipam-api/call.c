/*
 * call.c - the life of one call of the API worker: a request posted for
 * its method, the call that lands in it checked and routed to its
 * method, its answer, and freeing it.
 */
#include "api.h"
#include "hsock.h"
#include "metrics.h"
#include "mtls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grpcx.h"
#include "log.h"
#include "now.h"

const char *const call_paths[API_GENERIC] = {
	"/ipam.v1.Ipam/Allocate",
	"/ipam.v1.Ipam/Release",
	"/grpc.health.v1.Health/Check",
	"/grpc.health.v1.Health/Watch",
};

void *
call_tag(struct api_call *c, enum api_tag kind)
{
	return (void *)((uintptr_t)c | (uintptr_t)kind);
}

/*
 * Posts one request for method m so that the next call to it has a place
 * to land. Unknown methods use the generic request. on_hsock: on the
 * health socket's server (Check, Watch and unknown methods only).
 * Returns 0 or -1.
 */
int
call_post_on(struct api *a, enum api_method m, bool on_hsock)
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
		    &c->md, a->cq, a->cq, call_tag(c, API_TAG_NEW));
	} else {
		e = grpc_server_request_registered_call(srv, method, &c->call,
		    &c->deadline, &c->md, &c->payload, a->cq, a->cq,
		    call_tag(c, API_TAG_NEW));
	}
	if (e != GRPC_CALL_OK) {
		call_free(c);
		return -1;
	}
	a->posted++;
	return 0;
}

/* Posts one request for method m on the port's server. */
int
call_post(struct api *a, enum api_method m)
{
	return call_post_on(a, m, false);
}

void
call_free(struct api_call *c)
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
void
call_finish(struct api_call *c, grpc_status_code code, const char *msg,
    const ProtobufCMessage *body)
{
	grpc_op ops[4];
	size_t n;
	grpc_call_error e;

	grpc_slice_unref(c->status_msg);
	n = grpcx_finish_ops(ops, &c->md_sent, code, msg, body, &c->send_buf,
	    &c->status_msg, &c->cancelled);
	/* counted before the answer leaves: a client that got it sees it */
	if (c->method == API_ALLOCATE || c->method == API_RELEASE)
		metrics_call_done(c->method == API_ALLOCATE ?
		    METRICS_ALLOCATE : METRICS_RELEASE, code,
		    now_ns(CLOCK_MONOTONIC) - c->arrived_ns);
	e = grpc_call_start_batch(c->call, ops, n, call_tag(c, API_TAG_DONE),
	    NULL);
	if (e != GRPC_CALL_OK)
		log_fatal("grpc_call_start_batch: error %d", (int)e);
}

/* Answers an error status, logged at debug level with the method. */
void
call_fail(struct api_call *c, grpc_status_code code, const char *msg)
{
	if (log_enabled(LOGL_DEBUG))
		log_kv(LOGL_DEBUG, "call refused", "method",
		    c->method < API_GENERIC ? call_paths[c->method] : "generic",
		    "code", grpcx_status_name(code), "error", msg, NULL);
	call_finish(c, code, msg, NULL);
}

/*
 * With SPIFFE, every call on the port must come from a SPIFFE ID of our
 * trust domain, and Ipam calls from one IPAM_SPIFFE_ALLOWED_IDS allows
 * (Health stays open to the whole trust domain, for probes). Answers the
 * call and returns false when it may not go on.
 */
static bool
call_authorized(struct api *a, struct api_call *c)
{
	grpc_status_code code;
	char msg[600];

	code = mtls_authorize(a->mtls, c->call, c->method == API_ALLOCATE ||
	    c->method == API_RELEASE, msg, sizeof(msg));
	if (code == GRPC_STATUS_OK)
		return true;
	call_fail(c, code, msg);
	return false;
}

/* A call arrived: re-post for its method, then handle it. */
void
call_on_new(struct api *a, struct api_call *c)
{
	char msg[300];

	if (!a->stopping && call_post_on(a, c->method, c->on_hsock) < 0)
		log_error("cannot post a request for %s",
		    c->method < API_GENERIC ? call_paths[c->method] : "generic");
	a->live++;
	c->arrived_ns = now_ns(CLOCK_MONOTONIC);
	if (a->live > API_MAX_INFLIGHT) {
		call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "too many calls in flight");
		return;
	}
	if (a->mtls != NULL && !c->on_hsock && !call_authorized(a, c))
		return;
	switch (c->method) {
	case API_ALLOCATE:
	case API_RELEASE:
		api_forward(a, c);
		break;
	case API_CHECK:
		health_check(a, c);
		break;
	case API_WATCH:
		health_watch_start(a, c);
		break;
	default:
		snprintf(msg, sizeof(msg), "unknown method %.*s",
		    (int)GRPC_SLICE_LENGTH(c->details.method) > 200 ? 200 :
		    (int)GRPC_SLICE_LENGTH(c->details.method),
		    (const char *)GRPC_SLICE_START_PTR(c->details.method));
		call_fail(c, GRPC_STATUS_UNIMPLEMENTED, msg);
		break;
	}
}
