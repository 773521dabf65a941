/*
 * tsrv.c - the gRPC C core test server of test_grpcx, test_tls and
 * test_spiffe (see tsrv.h).
 */
#include "tsrv.h"

#include <criterion/criterion.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "grpcx.h"

const char *const tsrv_paths[TS_N] = {
	"/test.T/Echo", "/test.T/Fail", "/test.T/Slow", "/test.T/Garbage",
	"/test.T/Who",
};

static grpc_server *tsrv;		/* the test server */
static grpc_completion_queue *tsrv_cq;	/* its only completion queue */
static void *tsrv_methods[TS_N];	/* registered method handles */
static pthread_t tsrv_thread;		/* its polling thread */
static int tsrv_port;			/* the port it bound */
char tsrv_target[64];		/* "127.0.0.1:<port>" */
int tsrv_shutdown_tag;		/* tag of shutdown_and_notify */
int (*tsrv_who)(grpc_call *, char *, size_t);

/* Posts one request for method m. */
static void
tsrv_post(int m)
{
	struct tsrv_call *c;

	c = calloc(1, sizeof(*c));
	cr_assert_not_null(c);
	c->method = m;
	grpc_metadata_array_init(&c->md);
	cr_assert_eq(grpc_server_request_registered_call(tsrv,
	    tsrv_methods[m], &c->call, &c->deadline, &c->md, &c->payload,
	    tsrv_cq, tsrv_cq, c), GRPC_CALL_OK);
}

void
tsrv_free(struct tsrv_call *c)
{
	if (c->call != NULL)
		grpc_call_unref(c->call);
	if (c->payload != NULL)
		grpc_byte_buffer_destroy(c->payload);
	if (c->reply != NULL)
		grpc_byte_buffer_destroy(c->reply);
	grpc_metadata_array_destroy(&c->md);
	free(c);
}

/* A tag left in the queue at the end: a call, or the shutdown notice. */
static void
tsrv_free_call(void *tag)
{
	if (tag != &tsrv_shutdown_tag)
		tsrv_free(tag);
}

/* Answers one arrived call according to its method. */
void
tsrv_answer(struct tsrv_call *c)
{
	static const uint8_t garbage[] = { 0x0a, 0x7f, 'x' };
	grpc_op ops[4];
	size_t n = 0;
	grpc_slice details;
	char who[600];

	memset(ops, 0, sizeof(ops));
	ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	details = grpc_empty_slice();
	switch (c->method) {
	case TS_ECHO:
		c->reply = grpcx_bytes(NULL, 0);
		if (c->payload != NULL) {
			uint8_t *d;
			size_t len;

			grpc_byte_buffer_destroy(c->reply);
			cr_assert_eq(grpcx_read_all(c->payload, &d, &len), 0);
			c->reply = grpcx_bytes(d, len);
			free(d);
		}
		break;
	case TS_FAIL:
		details = grpc_slice_from_static_string("bad thing");
		break;
	case TS_SLOW:
		usleep(500000);
		c->reply = grpcx_bytes(NULL, 0);
		break;
	case TS_GARBAGE:
		c->reply = grpcx_bytes(garbage, sizeof(garbage));
		break;
	case TS_WHO:
		if (tsrv_who == NULL || tsrv_who(c->call, who, sizeof(who)) != 0)
			snprintf(who, sizeof(who), "no id");
		details = grpc_slice_from_copied_string(who);
		c->reply = grpcx_bytes(NULL, 0);
		break;
	}
	if (c->reply != NULL) {
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = c->reply;
	}
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = c->method == TS_FAIL ?
	    GRPC_STATUS_INVALID_ARGUMENT : GRPC_STATUS_OK;
	ops[n++].data.send_status_from_server.status_details = &details;
	ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
	c->answering = 1;
	cr_assert_eq(grpc_call_start_batch(c->call, ops, n, c, NULL),
	    GRPC_CALL_OK);
	grpc_slice_unref(details);
}

/* Polls the test server's queue until its shutdown tag arrives. */
static void *
tsrv_loop(void *arg)
{
	grpc_event ev;
	struct tsrv_call *c;
	bool done = false;

	(void)arg;
	while (!done) {
		ev = grpc_completion_queue_next(tsrv_cq,
		    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type != GRPC_OP_COMPLETE)
			break;
		if (ev.tag == &tsrv_shutdown_tag) {
			done = true;
			continue;
		}
		c = ev.tag;
		if (!ev.success || c->answering) {
			tsrv_free(c);
			continue;
		}
		tsrv_post(c->method);
		tsrv_answer(c);
	}
	return NULL;
}

/* Starts the test server on a free loopback port with creds (taken). */
void
tsrv_start_creds(grpc_server_credentials *creds)
{
	grpc_init();
	tsrv = grpc_server_create(NULL, NULL);
	tsrv_cq = grpc_completion_queue_create_for_next(NULL);
	grpc_server_register_completion_queue(tsrv, tsrv_cq, NULL);
	for (int m = 0; m < TS_N; m++)
		tsrv_methods[m] = grpc_server_register_method(tsrv,
		    tsrv_paths[m], NULL,
		    GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
	tsrv_port = grpc_server_add_http2_port(tsrv, "127.0.0.1:0", creds);
	grpc_server_credentials_release(creds);
	cr_assert_gt(tsrv_port, 0);
	snprintf(tsrv_target, sizeof(tsrv_target), "127.0.0.1:%d", tsrv_port);
	grpc_server_start(tsrv);
	for (int m = 0; m < TS_N; m++)
		tsrv_post(m);
	cr_assert_eq(pthread_create(&tsrv_thread, NULL, tsrv_loop, NULL), 0);
}

void
tsrv_start(void)
{
	grpc_init();
	tsrv_start_creds(grpc_insecure_server_credentials_create());
	grpc_shutdown();
}

void
tsrv_stop(void)
{
	grpc_server_shutdown_and_notify(tsrv, tsrv_cq, &tsrv_shutdown_tag);
	grpc_server_cancel_all_calls(tsrv);
	pthread_join(tsrv_thread, NULL);
	grpcx_cq_drain(tsrv_cq, tsrv_free_call);
	grpc_server_destroy(tsrv);
	grpc_completion_queue_destroy(tsrv_cq);
	grpc_shutdown();
}
