/*
 * health.c - grpc.health.v1.Health of the API worker: Check, and Watch
 * streams that follow the status.
 *
 * Check of an unknown name fails with NOT_FOUND and Watch of an unknown
 * name streams SERVICE_UNKNOWN, as grpc's health-checking spec
 * (health.proto comments, grpc.io docs) says; standard probes expect
 * NOT_FOUND from Check.
 */
#include "api.h"

#include <stdio.h>
#include <string.h>

#include "grpcx.h"
#include "log.h"

/* Health names answered SERVING while the db worker answers. */
static const char *const health_names[] = {
	"", "ipam.v1.Ipam", "Liveness", "Readiness", "Startup",
};

static bool
health_known(const char *name)
{
	for (size_t i = 0; i < sizeof(health_names) /
	    sizeof(health_names[0]); i++)
		if (strcmp(name, health_names[i]) == 0)
			return true;
	return false;
}

/* The status served now: NOT_SERVING while stopping. */
int
health_now(struct api *a)
{
	if (a->stopping)
		return HEALTH_NOT_SERVING;
	return atomic_load(&a->health);
}

/* The call's HealthCheckRequest; NULL (the call failed) when malformed. */
static Grpc__Health__V1__HealthCheckRequest *
health_request(struct api_call *c)
{
	Grpc__Health__V1__HealthCheckRequest *rq;

	rq = (Grpc__Health__V1__HealthCheckRequest *)grpcx_unpack(
	    &grpc__health__v1__health_check_request__descriptor, c->payload);
	if (rq == NULL)
		call_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
		    "malformed request body: not a HealthCheckRequest");
	return rq;
}

/*
 * Health Check: the current status for a served name, NOT_FOUND for any
 * other (grpc's health spec; SERVICE_UNKNOWN is Watch's answer).
 */
void
health_check(struct api *a, struct api_call *c)
{
	Grpc__Health__V1__HealthCheckRequest *rq;
	Grpc__Health__V1__HealthCheckResponse rs =
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	char msg[160];

	if ((rq = health_request(c)) == NULL)
		return;
	if (!health_known(rq->service)) {
		snprintf(msg, sizeof(msg), "unknown service \"%.100s\"",
		    rq->service);
		call_fail(c, GRPC_STATUS_NOT_FOUND, msg);
	} else {
		rs.status = health_now(a);
		call_finish(c, GRPC_STATUS_OK, NULL, &rs.base);
	}
	grpc__health__v1__health_check_request__free_unpacked(rq, NULL);
}

/*
 * Sends a Watch call what it has not seen yet: the current status when it
 * differs from the last one sent and, while stopping, a final UNAVAILABLE
 * status that ends the stream. One send batch at a time; its completion
 * calls this again, so changes made meanwhile are not lost.
 */
void
health_watch_push(struct api *a, struct api_call *c)
{
	Grpc__Health__V1__HealthCheckResponse rs =
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	grpc_op ops[3];
	size_t n = 0;
	int want;

	if (c->busy || c->closed || c->ended)
		return;
	want = c->known ? health_now(a) : HEALTH_UNKNOWN;
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
	if (grpc_call_start_batch(c->call, ops, n, call_tag(c, API_TAG_DONE),
	    NULL) != GRPC_CALL_OK)
		log_fatal("grpc_call_start_batch (watch) failed");
}

/* Frees a Watch call once neither of its batches is in flight. */
void
health_watch_maybe_free(struct api *a, struct api_call *c)
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
	call_free(c);
}

/*
 * Health Watch: the call joins the watcher list, a RECV_CLOSE batch tells
 * when the client leaves, and the first message (the current status, or
 * SERVICE_UNKNOWN for a name not served) goes out at once.
 */
void
health_watch_start(struct api *a, struct api_call *c)
{
	Grpc__Health__V1__HealthCheckRequest *rq;
	grpc_op op;

	if ((rq = health_request(c)) == NULL)
		return;
	c->known = health_known(rq->service);
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
	if (grpc_call_start_batch(c->call, &op, 1, call_tag(c, API_TAG_CLOSE),
	    NULL) != GRPC_CALL_OK)
		log_fatal("grpc_call_start_batch (recv close) failed");
	health_watch_push(a, c);
}

/* Pushes the current status to every watcher that has not seen it. */
void
health_watch_all(struct api *a)
{
	struct api_call *c, *next;

	for (c = a->watchers; c != NULL; c = next) {
		next = c->next;
		health_watch_push(a, c);
	}
}
