/*
 * test_grpcx.c - grpcx: packing, unpacking, status names, deadlines, and the
 * blocking client call against a small gRPC C core server run in a thread
 * of the test itself on a free loopback port, plaintext and over TLS with
 * certificates made by openssl (mTLS, rotation of the files on disk).
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "grpcx.h"
#include "ipam/v1/ipam.pb-c.h"

/* ---- packing ---------------------------------------------------------- */

/* A Child with every field set, for round trips. */
static void
fill_child(Ipam__V1__Child *c, Ipam__V1__Subnet *s, Nsp__V1__Conduit *co,
    Nsp__V1__Trench *t)
{
	ipam__v1__child__init(c);
	ipam__v1__subnet__init(s);
	nsp__v1__conduit__init(co);
	nsp__v1__trench__init(t);
	t->name = "trench-a";
	co->name = "conduit-a";
	co->trench = t;
	s->conduit = co;
	s->node = "worker-1";
	s->ipfamily = IPAM__V1__IPFAMILY__IPV6;
	c->name = "proxy-x";
	c->subnet = s;
}

Test(grpcx, pack_unpack_round_trip)
{
	Ipam__V1__Child c;
	Ipam__V1__Subnet s;
	Nsp__V1__Conduit co;
	Nsp__V1__Trench t;
	grpc_byte_buffer *bb;
	Ipam__V1__Child *out;

	fill_child(&c, &s, &co, &t);
	bb = grpcx_pack(&c.base);
	cr_assert_not_null(bb);
	out = (Ipam__V1__Child *)grpcx_unpack(&ipam__v1__child__descriptor,
	    bb);
	grpc_byte_buffer_destroy(bb);
	cr_assert_not_null(out);
	cr_expect_str_eq(out->name, "proxy-x");
	cr_assert_not_null(out->subnet);
	cr_expect_str_eq(out->subnet->node, "worker-1");
	cr_expect_eq(out->subnet->ipfamily, IPAM__V1__IPFAMILY__IPV6);
	cr_assert_not_null(out->subnet->conduit);
	cr_expect_str_eq(out->subnet->conduit->name, "conduit-a");
	cr_assert_not_null(out->subnet->conduit->trench);
	cr_expect_str_eq(out->subnet->conduit->trench->name, "trench-a");
	protobuf_c_message_free_unpacked(&out->base, NULL);
}

Test(grpcx, pack_empty_message_unpacks_to_defaults)
{
	Ipam__V1__Child c;
	grpc_byte_buffer *bb;
	Ipam__V1__Child *out;

	ipam__v1__child__init(&c);
	bb = grpcx_pack(&c.base);
	cr_assert_not_null(bb);
	cr_expect_eq(grpc_byte_buffer_length(bb), 0);
	out = (Ipam__V1__Child *)grpcx_unpack(&ipam__v1__child__descriptor,
	    bb);
	grpc_byte_buffer_destroy(bb);
	cr_assert_not_null(out);
	cr_expect_str_eq(out->name, "");
	cr_expect_null(out->subnet);
	protobuf_c_message_free_unpacked(&out->base, NULL);
}

Test(grpcx, unpack_refuses_malformed_and_null)
{
	/* field 1, length-delimited, length 10 but only 2 bytes follow */
	static const uint8_t truncated[] = { 0x0a, 0x0a, 'a', 'b' };
	/* a varint that never ends */
	static const uint8_t endless[] = { 0x10, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	grpc_byte_buffer *bb;

	cr_expect_null(grpcx_unpack(&ipam__v1__child__descriptor, NULL));
	bb = grpcx_bytes(truncated, sizeof(truncated));
	cr_expect_null(grpcx_unpack(&ipam__v1__child__descriptor, bb));
	grpc_byte_buffer_destroy(bb);
	bb = grpcx_bytes(endless, sizeof(endless));
	cr_expect_null(grpcx_unpack(&ipam__v1__child__descriptor, bb));
	grpc_byte_buffer_destroy(bb);
}

Test(grpcx, read_all_copies_bytes)
{
	static const uint8_t data[] = { 1, 2, 3, 0, 5 };
	grpc_byte_buffer *bb;
	uint8_t *out = NULL;
	size_t len = 0;

	bb = grpcx_bytes(data, sizeof(data));
	cr_assert_eq(grpcx_read_all(bb, &out, &len), 0);
	cr_expect_eq(len, sizeof(data));
	cr_expect_arr_eq(out, data, sizeof(data));
	free(out);
	grpc_byte_buffer_destroy(bb);

	bb = grpcx_bytes(NULL, 0);
	cr_assert_eq(grpcx_read_all(bb, &out, &len), 0);
	cr_expect_eq(len, 0);
	cr_expect_not_null(out);
	free(out);
	grpc_byte_buffer_destroy(bb);

	cr_expect_eq(grpcx_read_all(NULL, &out, &len), -1);
}

/* ---- status codes ----------------------------------------------------- */

Test(grpcx, status_names)
{
	cr_expect_str_eq(grpcx_status_name(GRPC_STATUS_OK), "OK");
	cr_expect_str_eq(grpcx_status_name(GRPC_STATUS_INVALID_ARGUMENT),
	    "INVALID_ARGUMENT");
	cr_expect_str_eq(grpcx_status_name(GRPC_STATUS_UNAUTHENTICATED),
	    "UNAUTHENTICATED");
	cr_expect_str_eq(grpcx_status_name(GRPC_STATUS_UNAVAILABLE),
	    "UNAVAILABLE");
	cr_expect_str_eq(grpcx_status_name(17), "UNKNOWN");
	cr_expect_str_eq(grpcx_status_name(-1), "UNKNOWN");
}

Test(grpcx, status_parse_and_code)
{
	grpc_status_code c = GRPC_STATUS_OK;

	cr_expect_eq(grpcx_status_parse("not_found", &c), 0);
	cr_expect_eq(c, GRPC_STATUS_NOT_FOUND);
	cr_expect_eq(grpcx_status_parse("RESOURCE_EXHAUSTED", &c), 0);
	cr_expect_eq(c, GRPC_STATUS_RESOURCE_EXHAUSTED);
	cr_expect_eq(grpcx_status_parse("NOPE", &c), -1);
	cr_expect_eq(grpcx_status_code(5), GRPC_STATUS_NOT_FOUND);
	cr_expect_eq(grpcx_status_code(16), GRPC_STATUS_UNAUTHENTICATED);
	cr_expect_eq(grpcx_status_code(99), GRPC_STATUS_UNKNOWN);
	cr_expect_eq(grpcx_status_code(-3), GRPC_STATUS_UNKNOWN);
}

Test(grpcx, status_set_formats_and_truncates)
{
	struct grpcx_status st;
	char big[GRPCX_MSG_MAX * 2];

	grpcx_status_set(&st, GRPC_STATUS_NOT_FOUND, "trench %s: %d", "x", 7);
	cr_expect_eq(st.code, GRPC_STATUS_NOT_FOUND);
	cr_expect_str_eq(st.message, "trench x: 7");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	grpcx_status_set(&st, GRPC_STATUS_INTERNAL, "%s", big);
	cr_expect_eq(strlen(st.message), GRPCX_MSG_MAX - 1);
}

/* ---- deadlines -------------------------------------------------------- */

Test(grpcx, deadlines)
{
	gpr_timespec dl;
	int64_t left;

	dl = grpcx_deadline_ms(-1);
	cr_expect(grpcx_deadline_is_infinite(dl));
	cr_expect_eq(grpcx_ms_left(dl), INT64_MAX);
	cr_expect(grpcx_deadline_is_infinite(
	    gpr_inf_future(GPR_CLOCK_REALTIME)));

	dl = grpcx_deadline_ms(1000);
	cr_expect_not(grpcx_deadline_is_infinite(dl));
	left = grpcx_ms_left(dl);
	cr_expect(left > 900 && left <= 1000, "left %lld",
	    (long long)left);

	dl = grpcx_deadline_ms(0);
	usleep(2000);
	cr_expect_eq(grpcx_ms_left(dl), 0);

	/* a realtime deadline is read against its own clock */
	dl = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
	    gpr_time_from_millis(5000, GPR_TIMESPAN));
	left = grpcx_ms_left(dl);
	cr_expect(left > 4900 && left <= 5000, "left %lld",
	    (long long)left);
}

/* ---- client calls against an in-process server ------------------------ */

/*
 * The test server's methods: Echo answers the request bytes; Fail answers
 * INVALID_ARGUMENT "bad thing"; Slow waits 500 ms before answering OK;
 * Garbage answers OK with bytes that are not a Child.
 */
enum tsrv_method { TS_ECHO, TS_FAIL, TS_SLOW, TS_GARBAGE, TS_N };

static const char *const tsrv_paths[TS_N] = {
	"/test.T/Echo", "/test.T/Fail", "/test.T/Slow", "/test.T/Garbage",
};

/* One posted or answered call of the test server. */
struct tsrv_call {
	int method;			/* enum tsrv_method */
	int answering;			/* 0: posted request, 1: answer batch */
	grpc_call *call;		/* the call once it arrived */
	gpr_timespec deadline;		/* its deadline */
	grpc_metadata_array md;		/* request metadata */
	grpc_byte_buffer *payload;	/* request body */
	grpc_byte_buffer *reply;	/* answer body or NULL */
	int cancelled;			/* RECV_CLOSE_ON_SERVER result */
};

static grpc_server *tsrv;		/* the test server */
static grpc_completion_queue *tsrv_cq;	/* its only completion queue */
static void *tsrv_methods[TS_N];	/* registered method handles */
static pthread_t tsrv_thread;		/* its polling thread */
static int tsrv_port;			/* the port it bound */
static char tsrv_target[64];		/* "127.0.0.1:<port>" */
static int tsrv_shutdown_tag;		/* tag of shutdown_and_notify */

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

static void
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
static void
tsrv_answer(struct tsrv_call *c)
{
	static const uint8_t garbage[] = { 0x0a, 0x7f, 'x' };
	grpc_op ops[4];
	size_t n = 0;
	grpc_slice details;

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
static void
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

static void
tsrv_start(void)
{
	grpc_init();
	tsrv_start_creds(grpc_insecure_server_credentials_create());
	grpc_shutdown();
}

static void
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

TestSuite(grpcx_call, .init = tsrv_start, .fini = tsrv_stop, .timeout = 60);

Test(grpcx_call, message_round_trip)
{
	struct grpcx_client *cl;
	struct grpcx_status st;
	char err[128];
	Ipam__V1__Child c;
	Ipam__V1__Subnet s;
	Nsp__V1__Conduit co;
	Nsp__V1__Trench t;
	ProtobufCMessage *resp = NULL;
	Ipam__V1__Child *out;

	cl = grpcx_client_new(tsrv_target, err, sizeof(err));
	cr_assert_not_null(cl, "%s", err);
	fill_child(&c, &s, &co, &t);
	cr_expect_eq(grpcx_call(cl, tsrv_paths[TS_ECHO], &c.base,
	    &ipam__v1__child__descriptor, 5000, &resp, &st), GRPC_STATUS_OK,
	    "%s", st.message);
	cr_expect_eq(st.code, GRPC_STATUS_OK);
	cr_assert_not_null(resp);
	out = (Ipam__V1__Child *)resp;
	cr_expect_str_eq(out->name, "proxy-x");
	cr_assert_not_null(out->subnet);
	cr_expect_str_eq(out->subnet->conduit->trench->name, "trench-a");
	protobuf_c_message_free_unpacked(resp, NULL);
	grpcx_client_free(cl);
}

/* Waits for the one batch in flight on cq; returns its success. */
static bool
wait_batch(grpc_completion_queue *cq, grpc_call_error e)
{
	grpc_event ev;

	cr_assert_eq(e, GRPC_CALL_OK);
	ev = grpc_completion_queue_next(cq, grpcx_deadline_ms(10000), NULL);
	cr_assert_eq(ev.type, GRPC_OP_COMPLETE);
	return ev.success != 0;
}

/* A channel to the test server, a queue and a call of method m on it. */
struct stream_call {
	grpc_channel *ch;		/* to the test server */
	grpc_completion_queue *cq;	/* the call's queue */
	grpc_call *call;		/* the call */
};

static void
stream_call_open(struct stream_call *sc, int m)
{
	grpc_channel_credentials *cc = grpc_insecure_credentials_create();

	sc->ch = grpc_channel_create(tsrv_target, cc, NULL);
	grpc_channel_credentials_release(cc);
	sc->cq = grpc_completion_queue_create_for_next(NULL);
	sc->call = grpc_channel_create_call(sc->ch, NULL,
	    GRPC_PROPAGATE_DEFAULTS, sc->cq,
	    grpc_slice_from_static_string(tsrv_paths[m]), NULL,
	    grpcx_deadline_ms(10000), NULL);
	cr_assert_not_null(sc->call);
}

static void
stream_call_close(struct stream_call *sc)
{
	grpc_call_unref(sc->call);
	grpc_completion_queue_shutdown(sc->cq);
	while (grpc_completion_queue_next(sc->cq, gpr_inf_future(
	    GPR_CLOCK_MONOTONIC), NULL).type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(sc->cq);
	grpc_channel_destroy(sc->ch);
}

Test(grpcx_call, stream_helpers_read_messages_then_the_status)
{
	/* Echo answers one message: start, one message, the end (NULL),
	 * then the status; each step its own batch. */
	struct stream_call sc;
	struct grpcx_ccall u;
	grpc_call *call;
	grpc_completion_queue *cq;
	uint8_t *d;
	size_t len;

	stream_call_open(&sc, TS_ECHO);
	call = sc.call;
	cq = sc.cq;
	cr_assert(wait_batch(cq, grpcx_stream_start(call,
	    grpcx_bytes("abc", 3), &u, &u)));
	cr_assert(wait_batch(cq, grpcx_stream_next(call, &u, &u)));
	cr_assert_not_null(u.recv);
	cr_assert_eq(grpcx_read_all(u.recv, &d, &len), 0);
	cr_expect_eq(len, 3);
	cr_expect_eq(memcmp(d, "abc", 3), 0);
	free(d);
	/* the message still held is freed by the next read (valgrind and
	 * ASan runs of this suite would report it otherwise) */
	cr_assert(wait_batch(cq, grpcx_stream_next(call, &u, &u)));
	cr_expect_null(u.recv, "a second message after the end");
	cr_assert(wait_batch(cq, grpcx_stream_finish(call, &u, &u)));
	cr_expect_eq(u.status, GRPC_STATUS_OK);
	cr_expect_eq(GRPC_SLICE_LENGTH(u.details), 0);
	grpcx_ccall_clear(&u);
	stream_call_close(&sc);
}

Test(grpcx_call, stream_finish_reports_the_error_status)
{
	struct stream_call sc;
	struct grpcx_ccall u;

	stream_call_open(&sc, TS_FAIL);
	(void)wait_batch(sc.cq, grpcx_stream_start(sc.call,
	    grpcx_bytes("x", 1), &u, &u));
	(void)wait_batch(sc.cq, grpcx_stream_next(sc.call, &u, &u));
	cr_expect_null(u.recv);
	(void)wait_batch(sc.cq, grpcx_stream_finish(sc.call, &u, &u));
	cr_expect_eq(u.status, GRPC_STATUS_INVALID_ARGUMENT);
	cr_expect_eq(GRPC_SLICE_LENGTH(u.details), strlen("bad thing"));
	cr_expect_eq(memcmp(GRPC_SLICE_START_PTR(u.details), "bad thing", 9),
	    0);
	grpcx_ccall_clear(&u);
	stream_call_close(&sc);
}

Test(grpcx_call, bytes_round_trip_without_deadline)
{
	struct grpcx_client *cl;
	struct grpcx_status st;
	char err[128];
	static const uint8_t data[] = { 0x0a, 0x01, 'z' };
	uint8_t *resp = NULL;
	size_t len = 0;

	cl = grpcx_client_new(tsrv_target, err, sizeof(err));
	cr_assert_not_null(cl, "%s", err);
	cr_expect_eq(grpcx_call_bytes(cl, tsrv_paths[TS_ECHO], data,
	    sizeof(data), -1, &resp, &len, &st), GRPC_STATUS_OK);
	cr_assert_not_null(resp);
	cr_expect_eq(len, sizeof(data));
	cr_expect_arr_eq(resp, data, sizeof(data));
	free(resp);
	grpcx_client_free(cl);
}

Test(grpcx_call, error_status_and_message)
{
	struct grpcx_client *cl;
	struct grpcx_status st;
	char err[128];
	Ipam__V1__Child c;
	ProtobufCMessage *resp = (ProtobufCMessage *)&c;

	cl = grpcx_client_new(tsrv_target, err, sizeof(err));
	cr_assert_not_null(cl, "%s", err);
	ipam__v1__child__init(&c);
	cr_expect_eq(grpcx_call(cl, tsrv_paths[TS_FAIL], &c.base,
	    &ipam__v1__child__descriptor, 5000, &resp, &st),
	    GRPC_STATUS_INVALID_ARGUMENT);
	cr_expect_str_eq(st.message, "bad thing");
	cr_expect_null(resp);
	grpcx_client_free(cl);
}

Test(grpcx_call, deadline_exceeded)
{
	struct grpcx_client *cl;
	struct grpcx_status st;
	char err[128];
	uint8_t *resp = NULL;
	size_t len = 0;

	cl = grpcx_client_new(tsrv_target, err, sizeof(err));
	cr_assert_not_null(cl, "%s", err);
	cr_expect_eq(grpcx_call_bytes(cl, tsrv_paths[TS_SLOW], "", 0, 100,
	    &resp, &len, &st), GRPC_STATUS_DEADLINE_EXCEEDED);
	cr_expect_null(resp);
	grpcx_client_free(cl);
}

Test(grpcx_call, malformed_response_is_internal)
{
	struct grpcx_client *cl;
	struct grpcx_status st;
	char err[128];
	Ipam__V1__Child c;
	ProtobufCMessage *resp = NULL;

	cl = grpcx_client_new(tsrv_target, err, sizeof(err));
	cr_assert_not_null(cl, "%s", err);
	ipam__v1__child__init(&c);
	cr_expect_eq(grpcx_call(cl, tsrv_paths[TS_GARBAGE], &c.base,
	    &ipam__v1__child__descriptor, 5000, &resp, &st),
	    GRPC_STATUS_INTERNAL);
	cr_expect_null(resp);
	cr_expect(strstr(st.message, "ipam.v1.Child") != NULL, "%s",
	    st.message);
	grpcx_client_free(cl);
}

Test(grpcx_call, unreachable_target_is_unavailable)
{
	struct grpcx_client *cl;
	struct grpcx_status st;
	char err[128], target[64];
	uint8_t *resp = NULL;
	size_t len = 0;

	/* port 1 on loopback: nothing listens there in a test sandbox */
	snprintf(target, sizeof(target), "127.0.0.1:1");
	cl = grpcx_client_new(target, err, sizeof(err));
	cr_assert_not_null(cl, "%s", err);
	cr_expect_eq(grpcx_call_bytes(cl, tsrv_paths[TS_ECHO], "", 0, 5000,
	    &resp, &len, &st), GRPC_STATUS_UNAVAILABLE, "%s %s",
	    grpcx_status_name(st.code), st.message);
	grpcx_client_free(cl);
}

/* Twenty echo calls with payloads of its own; non-NULL if all matched. */
static void *
concurrent_worker(void *arg)
{
	struct grpcx_client *cl = arg;
	struct grpcx_status st;
	char body[64];
	uint8_t *resp;
	size_t len, n;
	bool ok = true;

	for (int i = 0; i < 20 && ok; i++) {
		n = (size_t)snprintf(body, sizeof(body), "%p-%d",
		    (void *)&st, i);
		resp = NULL;
		if (grpcx_call_bytes(cl, tsrv_paths[TS_ECHO], body, n, 5000,
		    &resp, &len, &st) != GRPC_STATUS_OK || len != n ||
		    memcmp(resp, body, n) != 0)
			ok = false;
		free(resp);
	}
	return ok ? arg : NULL;
}

Test(grpcx_call, concurrent_calls_on_one_client)
{
	enum { NTHREADS = 8 };
	struct grpcx_client *cl;
	char err[128];
	pthread_t th[NTHREADS];

	cl = grpcx_client_new(tsrv_target, err, sizeof(err));
	cr_assert_not_null(cl, "%s", err);
	for (int i = 0; i < NTHREADS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, concurrent_worker,
		    cl), 0);
	for (int i = 0; i < NTHREADS; i++) {
		void *ok;

		pthread_join(th[i], &ok);
		cr_expect_not_null(ok);
	}
	grpcx_client_free(cl);
}

Test(grpcx, client_new_refuses_empty_target)
{
	char err[128] = "";

	cr_expect_null(grpcx_client_new("", err, sizeof(err)));
	cr_expect_str_eq(err, "empty target");
	grpcx_client_free(NULL);
}

/* ---- TLS from PEM files ----------------------------------------------- */

/*
 * Certificates made with openssl in a scratch directory: two CAs (ca1,
 * ca2), a server certificate from each (srv1, srv2: 127.0.0.1 and
 * localhost) and a client certificate from each (cli1, cli2).
 */
static char tls_dir[256];

/* Runs a shell command built from fmt; fails the test if it fails. */
static void
tls_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
tls_sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* Path of file name in the scratch directory (a static buffer each). */
static const char *
tls_path(const char *name)
{
	static char buf[8][512];
	static int next;
	char *p = buf[next++ % 8];

	snprintf(p, sizeof(buf[0]), "%s/%s", tls_dir, name);
	return p;
}

/* A new CA named name (name.crt, name.key). */
static void
tls_make_ca(const char *name)
{
	tls_sh("cd %s && openssl req -x509 -newkey ec -pkeyopt "
	    "ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=%s "
	    "-addext basicConstraints=critical,CA:TRUE -keyout %s.key "
	    "-out %s.crt >/dev/null 2>&1", tls_dir, name, name, name);
}

/* A certificate name.crt/name.key for 127.0.0.1 and localhost, signed
 * by ca. */
static void
tls_make_leaf(const char *name, const char *ca)
{
	tls_sh("cd %s && openssl req -x509 -newkey ec -pkeyopt "
	    "ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=%s "
	    "-CA %s.crt -CAkey %s.key -addext "
	    "subjectAltName=IP:127.0.0.1,DNS:localhost -addext "
	    "basicConstraints=critical,CA:FALSE -keyout %s.key -out %s.crt "
	    ">/dev/null 2>&1", tls_dir, name, ca, ca, name, name);
}

static void
tls_setup(void)
{
	const char *base = getenv("IPAM_TEST_TMP");

	snprintf(tls_dir, sizeof(tls_dir), "%s/grpcx-tls-XXXXXX",
	    base != NULL && base[0] != '\0' ? base : "/tmp");
	cr_assert_not_null(mkdtemp(tls_dir));
	tls_make_ca("ca1");
	tls_make_ca("ca2");
	tls_make_leaf("srv1", "ca1");
	tls_make_leaf("srv2", "ca2");
	tls_make_leaf("cli1", "ca1");
	tls_make_leaf("cli2", "ca2");
	/* the files the server is configured with: srv1 to begin with */
	tls_sh("cp %s/srv1.crt %s/server.crt && cp %s/srv1.key "
	    "%s/server.key", tls_dir, tls_dir, tls_dir, tls_dir);
	grpc_init();
}

static void
tls_teardown(void)
{
	grpc_shutdown();
	if (tls_dir[0] != '\0')
		tls_sh("rm -rf %s", tls_dir);
}

/*
 * Replaces dst in the scratch directory by a copy of src the way
 * rotation tools do: written aside, then renamed over it.
 */
static void
tls_replace(const char *src, const char *dst)
{
	tls_sh("cd %s && cp %s .tmp-%s && mv -f .tmp-%s %s", tls_dir, src,
	    dst, dst, dst);
}

/*
 * One echo call from a new client whose own files are cert/key/ca (NULL
 * or names in the scratch directory; all NULL and plain = plaintext).
 * Returns the status code.
 */
static int
tls_echo(bool plain, const char *cert, const char *key, const char *ca)
{
	struct grpcx_tls *t = NULL;
	struct grpcx_client *cl;
	struct grpcx_status st;
	char err[256];
	uint8_t *resp = NULL;
	size_t len = 0;
	int rc;

	if (!plain) {
		t = grpcx_tls_new(cert ? tls_path(cert) : NULL,
		    key ? tls_path(key) : NULL, ca ? tls_path(ca) : NULL, err,
		    sizeof(err));
		cr_assert_not_null(t, "%s", err);
	}
	cl = grpcx_client_new_tls(tsrv_target, t, NULL, err, sizeof(err));
	cr_assert_not_null(cl, "%s", err);
	rc = grpcx_call_bytes(cl, tsrv_paths[TS_ECHO], "x", 1, 5000, &resp,
	    &len, &st);
	free(resp);
	grpcx_client_free(cl);
	grpcx_tls_free(t);
	return rc;
}

/* Starts the test server with server.crt/server.key and, if ca, client
 * certificates required from ca. */
static struct grpcx_tls *
tls_server(const char *ca)
{
	struct grpcx_tls *t;
	grpc_server_credentials *creds;
	char err[256];

	t = grpcx_tls_new(tls_path("server.crt"), tls_path("server.key"),
	    ca != NULL ? tls_path(ca) : NULL, err, sizeof(err));
	cr_assert_not_null(t, "%s", err);
	creds = grpcx_tls_server_credentials(t);
	cr_assert_not_null(creds);
	tsrv_start_creds(creds);
	return t;
}

TestSuite(grpcx_tls, .init = tls_setup, .fini = tls_teardown,
    .timeout = 120);

Test(grpcx_tls, new_refuses_bad_files)
{
	char err[512];

	err[0] = '\0';
	cr_expect_null(grpcx_tls_new(tls_path("srv1.crt"), NULL, NULL, err,
	    sizeof(err)));
	cr_expect(strstr(err, "needs a private key") != NULL, "%s", err);
	cr_expect_null(grpcx_tls_new(NULL, tls_path("srv1.key"), NULL, err,
	    sizeof(err)));
	cr_expect(strstr(err, "needs a certificate") != NULL, "%s", err);

	cr_expect_null(grpcx_tls_new(tls_path("missing.crt"),
	    tls_path("srv1.key"), NULL, err, sizeof(err)));
	cr_expect(strstr(err, "missing.crt") != NULL &&
	    strstr(err, "No such file") != NULL, "%s", err);

	/* a key where the certificate belongs, and the reverse */
	cr_expect_null(grpcx_tls_new(tls_path("srv1.key"),
	    tls_path("srv1.key"), NULL, err, sizeof(err)));
	cr_expect(strstr(err, "no PEM certificate") != NULL, "%s", err);
	cr_expect_null(grpcx_tls_new(tls_path("srv1.crt"),
	    tls_path("srv1.crt"), NULL, err, sizeof(err)));
	cr_expect(strstr(err, "no PEM private key") != NULL, "%s", err);

	tls_sh("printf 'not a certificate' > %s/junk.pem", tls_dir);
	cr_expect_null(grpcx_tls_new(tls_path("srv1.crt"),
	    tls_path("srv1.key"), tls_path("junk.pem"), err, sizeof(err)));
	cr_expect(strstr(err, "CA file") != NULL &&
	    strstr(err, "junk.pem") != NULL, "%s", err);

	/* a directory is not a PEM file */
	cr_expect_null(grpcx_tls_new(NULL, NULL, tls_dir, err, sizeof(err)));
	cr_expect(strstr(err, "not a regular file") != NULL, "%s", err);
	grpcx_tls_free(NULL);
}

Test(grpcx_tls, new_accepts_each_valid_combination)
{
	struct grpcx_tls *t;
	char err[512];

	t = grpcx_tls_new(tls_path("srv1.crt"), tls_path("srv1.key"),
	    tls_path("ca1.crt"), err, sizeof(err));
	cr_assert_not_null(t, "%s", err);
	cr_expect(grpcx_tls_has_cert(t));
	cr_expect_eq(grpcx_tls_generation(t), 1);
	grpcx_tls_free(t);

	/* a client with roots only, or with nothing (system roots) */
	t = grpcx_tls_new(NULL, "", tls_path("ca1.crt"), err, sizeof(err));
	cr_assert_not_null(t, "%s", err);
	cr_expect(!grpcx_tls_has_cert(t));
	cr_expect_null(grpcx_tls_server_credentials(t));
	grpcx_tls_free(t);
	t = grpcx_tls_new("", "", "", err, sizeof(err));
	cr_assert_not_null(t, "%s", err);
	grpcx_tls_free(t);
}

Test(grpcx_tls, refresh_reads_only_changed_files)
{
	struct grpcx_tls *t;
	char err[512];

	t = grpcx_tls_new(tls_path("server.crt"), tls_path("server.key"),
	    NULL, err, sizeof(err));
	cr_assert_not_null(t, "%s", err);
	cr_expect_eq(grpcx_tls_refresh(t, err, sizeof(err)), 0);
	cr_expect_eq(grpcx_tls_generation(t), 1);

	/* renamed in (new inode) */
	tls_replace("srv2.crt", "server.crt");
	cr_expect_eq(grpcx_tls_refresh(t, err, sizeof(err)), 1, "%s", err);
	cr_expect_eq(grpcx_tls_generation(t), 2);
	cr_expect_eq(grpcx_tls_refresh(t, err, sizeof(err)), 0);

	/* rewritten in place (same inode, other size and mtime) */
	tls_sh("cat %s/srv1.key > %s/server.key", tls_dir, tls_dir);
	tls_sh("cat %s/srv2.key >> %s/server.key", tls_dir, tls_dir);
	cr_expect_eq(grpcx_tls_refresh(t, err, sizeof(err)), 1, "%s", err);
	cr_expect_eq(grpcx_tls_generation(t), 3);

	/* a file cut short: BEGIN without END */
	tls_sh("head -c 100 %s/srv1.key > %s/server.key", tls_dir, tls_dir);
	cr_expect_eq(grpcx_tls_refresh(t, err, sizeof(err)), -1);
	cr_expect(strstr(err, "no PEM private key") != NULL, "%s", err);
	cr_expect_eq(grpcx_tls_generation(t), 3);

	/* a broken file keeps the old contents and is tried again */
	tls_sh("printf garbage > %s/server.key", tls_dir);
	cr_expect_eq(grpcx_tls_refresh(t, err, sizeof(err)), -1);
	cr_expect(strstr(err, "server.key") != NULL, "%s", err);
	cr_expect_eq(grpcx_tls_generation(t), 3);
	cr_expect_eq(grpcx_tls_refresh(t, err, sizeof(err)), -1);
	tls_sh("rm %s/server.key", tls_dir);
	cr_expect_eq(grpcx_tls_refresh(t, err, sizeof(err)), -1);
	cr_expect(strstr(err, "No such file") != NULL, "%s", err);
	tls_replace("srv2.key", "server.key");
	cr_expect_eq(grpcx_tls_refresh(t, err, sizeof(err)), 1, "%s", err);
	cr_expect_eq(grpcx_tls_generation(t), 4);
	grpcx_tls_free(t);
}

Test(grpcx_tls, server_tls_refuses_plaintext_and_unknown_ca)
{
	struct grpcx_tls *t = tls_server(NULL);

	cr_expect_eq(tls_echo(false, NULL, NULL, "ca1.crt"), GRPC_STATUS_OK);
	/* no client certificate needed, but one does no harm */
	cr_expect_eq(tls_echo(false, "cli2.crt", "cli2.key", "ca1.crt"),
	    GRPC_STATUS_OK);
	cr_expect_eq(tls_echo(true, NULL, NULL, NULL),
	    GRPC_STATUS_UNAVAILABLE);
	cr_expect_eq(tls_echo(false, NULL, NULL, "ca2.crt"),
	    GRPC_STATUS_UNAVAILABLE);
	tsrv_stop();
	grpcx_tls_free(t);
}

Test(grpcx_tls, mtls_requires_a_certificate_from_the_ca)
{
	struct grpcx_tls *t = tls_server("ca1.crt");

	cr_expect_eq(tls_echo(false, "cli1.crt", "cli1.key", "ca1.crt"),
	    GRPC_STATUS_OK);
	cr_expect_eq(tls_echo(false, NULL, NULL, "ca1.crt"),
	    GRPC_STATUS_UNAVAILABLE);
	cr_expect_eq(tls_echo(false, "cli2.crt", "cli2.key", "ca1.crt"),
	    GRPC_STATUS_UNAVAILABLE);
	/* a server certificate of the right CA is a client one as well */
	cr_expect_eq(tls_echo(false, "srv1.crt", "srv1.key", "ca1.crt"),
	    GRPC_STATUS_OK);
	cr_expect_eq(tls_echo(true, NULL, NULL, NULL),
	    GRPC_STATUS_UNAVAILABLE);
	tsrv_stop();
	grpcx_tls_free(t);
}

Test(grpcx_tls, server_picks_up_rotated_files_on_new_connections)
{
	struct grpcx_tls *t = tls_server(NULL);

	cr_expect_eq(tls_echo(false, NULL, NULL, "ca1.crt"), GRPC_STATUS_OK);
	cr_expect_eq(tls_echo(false, NULL, NULL, "ca2.crt"),
	    GRPC_STATUS_UNAVAILABLE);

	/* half a rotation: the new certificate does not match the old key,
	 * so the server keeps serving the old pair */
	tls_replace("srv2.crt", "server.crt");
	cr_expect_eq(tls_echo(false, NULL, NULL, "ca1.crt"), GRPC_STATUS_OK);

	/* the key follows: now the new pair is served */
	tls_replace("srv2.key", "server.key");
	cr_expect_eq(tls_echo(false, NULL, NULL, "ca2.crt"), GRPC_STATUS_OK);
	cr_expect_eq(tls_echo(false, NULL, NULL, "ca1.crt"),
	    GRPC_STATUS_UNAVAILABLE);
	cr_expect_geq(grpcx_tls_generation(t), 3);

	/* a broken file keeps the current pair */
	tls_sh("printf garbage > %s/server.crt", tls_dir);
	cr_expect_eq(tls_echo(false, NULL, NULL, "ca2.crt"), GRPC_STATUS_OK);
	tsrv_stop();
	grpcx_tls_free(t);
}

Test(grpcx_tls, server_picks_up_a_rotated_client_ca)
{
	struct grpcx_tls *t;

	tls_sh("cp %s/ca1.crt %s/clients-ca.crt", tls_dir, tls_dir);
	t = tls_server("clients-ca.crt");
	cr_expect_eq(tls_echo(false, "cli1.crt", "cli1.key", "ca1.crt"),
	    GRPC_STATUS_OK);
	cr_expect_eq(tls_echo(false, "cli2.crt", "cli2.key", "ca1.crt"),
	    GRPC_STATUS_UNAVAILABLE);
	tls_replace("ca2.crt", "clients-ca.crt");
	cr_expect_eq(tls_echo(false, "cli2.crt", "cli2.key", "ca1.crt"),
	    GRPC_STATUS_OK);
	cr_expect_eq(tls_echo(false, "cli1.crt", "cli1.key", "ca1.crt"),
	    GRPC_STATUS_UNAVAILABLE);
	tsrv_stop();
	grpcx_tls_free(t);
}

Test(grpcx_tls, client_server_name_override)
{
	struct grpcx_tls *t = tls_server(NULL), *c;
	struct grpcx_client *cl;
	struct grpcx_status st;
	char err[256];
	uint8_t *resp = NULL;
	size_t len = 0;

	c = grpcx_tls_new(NULL, NULL, tls_path("ca1.crt"), err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	/* the certificate names localhost, not other.example */
	cl = grpcx_client_new_tls(tsrv_target, c, "other.example", err,
	    sizeof(err));
	cr_assert_not_null(cl, "%s", err);
	cr_expect_eq(grpcx_call_bytes(cl, tsrv_paths[TS_ECHO], "x", 1, 5000,
	    &resp, &len, &st), GRPC_STATUS_UNAVAILABLE);
	grpcx_client_free(cl);
	cl = grpcx_client_new_tls(tsrv_target, c, "localhost", err,
	    sizeof(err));
	cr_assert_not_null(cl, "%s", err);
	cr_expect_eq(grpcx_call_bytes(cl, tsrv_paths[TS_ECHO], "x", 1, 5000,
	    &resp, &len, &st), GRPC_STATUS_OK, "%s", st.message);
	free(resp);
	grpcx_client_free(cl);
	grpcx_tls_free(c);
	tsrv_stop();
	grpcx_tls_free(t);
}

/* What the fetcher reported, for the notify test. */
static int notify_ok, notify_fail;
static char notify_err[256];

static void
notify_record(void *arg, int rc, const char *err)
{
	cr_assert_eq(arg, &notify_ok);
	if (rc > 0) {
		notify_ok++;
	} else {
		notify_fail++;
		snprintf(notify_err, sizeof(notify_err), "%s", err);
	}
}

Test(grpcx_tls, fetcher_reports_reloads_and_errors_once)
{
	struct grpcx_tls *t;
	grpc_server_credentials *creds;
	char err[256];

	t = grpcx_tls_new(tls_path("server.crt"), tls_path("server.key"),
	    NULL, err, sizeof(err));
	cr_assert_not_null(t, "%s", err);
	grpcx_tls_set_notify(t, notify_record, &notify_ok);
	creds = grpcx_tls_server_credentials(t);
	cr_assert_not_null(creds);
	tsrv_start_creds(creds);

	cr_expect_eq(tls_echo(false, NULL, NULL, "ca1.crt"), GRPC_STATUS_OK);
	cr_expect_eq(notify_ok + notify_fail, 0);

	tls_sh("printf garbage > %s/server.key", tls_dir);
	cr_expect_eq(tls_echo(false, NULL, NULL, "ca1.crt"), GRPC_STATUS_OK);
	cr_expect_eq(tls_echo(false, NULL, NULL, "ca1.crt"), GRPC_STATUS_OK);
	cr_expect_eq(notify_fail, 1, "one report while the error lasts");
	cr_expect(strstr(notify_err, "server.key") != NULL, "%s", notify_err);

	tls_replace("srv2.crt", "server.crt");
	tls_replace("srv2.key", "server.key");
	cr_expect_eq(tls_echo(false, NULL, NULL, "ca2.crt"), GRPC_STATUS_OK);
	cr_expect_eq(notify_ok, 1);
	cr_expect_eq(notify_fail, 1);
	tsrv_stop();
	grpcx_tls_free(t);
}

Test(grpcx, init_turns_off_absl_deadlock_detection)
{
	/* Debian 12's absl (the one gRPC 1.51 loads here) exports the
	 * switch: grpcx_init must find it, and gRPC must still work after */
	grpc_completion_queue *cq;
	grpc_event ev;

	cr_assert(grpcx_init(), "absl's SetMutexDeadlockDetectionMode not "
	    "found: gRPC's absl is not Debian 12's (update "
	    "grpcx_absl_deadlock_syms)");
	cq = grpc_completion_queue_create_for_next(NULL);
	ev = grpc_completion_queue_next(cq, grpcx_deadline_ms(10), NULL);
	cr_assert_eq(ev.type, GRPC_QUEUE_TIMEOUT);
	grpc_completion_queue_shutdown(cq);
	ev = grpc_completion_queue_next(cq, grpcx_deadline_ms(1000), NULL);
	cr_assert_eq(ev.type, GRPC_QUEUE_SHUTDOWN);
	grpc_completion_queue_destroy(cq);
	grpc_shutdown();
}

/* ---- a completion queue that does not poll ----------------------------- */

static grpc_completion_queue *quiet_cq;	/* the served server's queue */
static atomic_int quiet_arrived;	/* the request reached quiet_cq */

/* Waits on quiet_cq for the request, answers it, waits for the answer.
 * Returns NULL, or what went wrong (no criterion assertion off the main
 * thread). */
static void *
quiet_loop(void *arg)
{
	struct tsrv_call *c = arg;
	grpc_event ev;

	ev = grpc_completion_queue_next(quiet_cq,
	    gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
	if (ev.type != GRPC_OP_COMPLETE || ev.tag != c || !ev.success)
		return (void *)"the request did not arrive";
	atomic_store(&quiet_arrived, 1);
	tsrv_answer(c);
	ev = grpc_completion_queue_next(quiet_cq,
	    gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
	if (ev.type != GRPC_OP_COMPLETE || ev.tag != c)
		return (void *)"the answer did not complete";
	return NULL;
}

Test(grpcx, cq_quiet_leaves_polling_to_other_threads, .timeout = 60)
{
	/* A server on a quiet queue gets its request only while another
	 * thread polls some queue of the process: the quiet queue's waiter
	 * alone makes no I/O progress (a default queue's waiter would). */
	grpc_server *srv;
	grpc_completion_queue *ccq;
	grpc_channel *ch;
	grpc_call *call;
	struct tsrv_call *c;
	struct grpcx_ccall u;
	grpc_slice method;
	grpc_channel_credentials *cc;
	grpc_server_credentials *sc;
	grpc_event ev;
	pthread_t th;
	char target[64];
	void *m, *ret;
	int port;

	/* (the client channel's backup poller first runs 5 s after the
	 * channel is made: after the quiet window below) */
	grpc_init();
	quiet_cq = grpcx_cq_quiet();
	cr_assert_not_null(quiet_cq);
	ccq = grpc_completion_queue_create_for_next(NULL);
	srv = grpc_server_create(NULL, NULL);
	/* a server needs a polling queue to accept on (gRPC picks the new
	 * connection's pollset from those): the client's here */
	grpc_server_register_completion_queue(srv, ccq, NULL);
	grpc_server_register_completion_queue(srv, quiet_cq, NULL);
	m = grpc_server_register_method(srv, "/test.T/Echo", NULL,
	    GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
	sc = grpc_insecure_server_credentials_create();
	port = grpc_server_add_http2_port(srv, "127.0.0.1:0", sc);
	grpc_server_credentials_release(sc);
	cr_assert_gt(port, 0);
	grpc_server_start(srv);
	c = calloc(1, sizeof(*c));
	cr_assert_not_null(c);
	c->method = TS_ECHO;
	grpc_metadata_array_init(&c->md);
	cr_assert_eq(grpc_server_request_registered_call(srv, m, &c->call,
	    &c->deadline, &c->md, &c->payload, quiet_cq, quiet_cq, c),
	    GRPC_CALL_OK);
	cr_assert_eq(pthread_create(&th, NULL, quiet_loop, c), 0);

	snprintf(target, sizeof(target), "127.0.0.1:%d", port);
	cc = grpc_insecure_credentials_create();
	ch = grpc_channel_create(target, cc, NULL);
	grpc_channel_credentials_release(cc);
	method = grpc_slice_from_static_string("/test.T/Echo");
	call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS,
	    ccq, method, NULL, grpcx_deadline_ms(30000), NULL);
	cr_assert_eq(grpcx_unary_start(call, grpcx_bytes("ping", 4), &u, call),
	    GRPC_CALL_OK);

	/* nobody polls: the request does not arrive */
	usleep(500000);
	cr_expect_eq(atomic_load(&quiet_arrived), 0,
	    "the quiet queue's waiter polled for I/O");

	/* this thread polls the client's queue: everything moves */
	ev = grpc_completion_queue_next(ccq, grpcx_deadline_ms(20000), NULL);
	cr_assert_eq(ev.type, GRPC_OP_COMPLETE);
	cr_assert(ev.success);
	cr_assert_eq(u.status, GRPC_STATUS_OK);
	cr_assert_eq(atomic_load(&quiet_arrived), 1);
	cr_assert_not_null(u.recv);
	{
		uint8_t *d;
		size_t len;

		cr_assert_eq(grpcx_read_all(u.recv, &d, &len), 0);
		cr_assert_eq(len, 4);
		cr_assert_eq(memcmp(d, "ping", 4), 0);
		free(d);
	}
	cr_assert_eq(pthread_join(th, &ret), 0);
	cr_assert_null(ret, "%s", (const char *)ret);

	grpcx_ccall_clear(&u);
	grpcx_ccall_clear(&u);	/* a second clear does nothing */
	cr_assert_null(u.send);
	cr_assert_null(u.recv);
	grpc_call_unref(call);
	grpc_channel_destroy(ch);
	grpc_server_shutdown_and_notify(srv, quiet_cq, &tsrv_shutdown_tag);
	grpc_server_cancel_all_calls(srv);
	/* the shutdown completes while this thread polls the client queue */
	for (int i = 0; i < 200; i++) {
		(void)grpc_completion_queue_next(ccq, grpcx_deadline_ms(50),
		    NULL);
		ev = grpc_completion_queue_next(quiet_cq, grpcx_deadline_ms(0),
		    NULL);
		if (ev.type != GRPC_QUEUE_TIMEOUT)
			break;
	}
	cr_assert_eq(ev.type, GRPC_OP_COMPLETE);
	cr_assert_eq(ev.tag, &tsrv_shutdown_tag);
	grpc_completion_queue_shutdown(ccq);
	while (grpc_completion_queue_next(ccq, gpr_inf_future(
	    GPR_CLOCK_MONOTONIC), NULL).type != GRPC_QUEUE_SHUTDOWN)
		;
	tsrv_free(c);
	grpc_server_destroy(srv);
	grpc_completion_queue_shutdown(quiet_cq);
	while (grpc_completion_queue_next(quiet_cq, gpr_inf_future(
	    GPR_CLOCK_MONOTONIC), NULL).type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(quiet_cq);
	grpc_completion_queue_destroy(ccq);
	grpc_shutdown();
}

static int cq_drain_seen;

static void
cq_drain_count(void *tag)
{
	cr_assert_eq(tag, &cq_drain_seen);
	cq_drain_seen++;
}

/* A completed operation still in the queue reaches `each` once. */
Test(grpcx, cq_drain_hands_over_completed_tags)
{
	grpc_completion_queue *cq;
	grpc_channel *ch;
	grpc_channel_credentials *cr;

	grpc_init();
	cq = grpc_completion_queue_create_for_next(NULL);
	cr = grpc_insecure_credentials_create();
	ch = grpc_channel_create("127.0.0.1:1", cr, NULL);
	grpc_channel_credentials_release(cr);
	grpc_channel_watch_connectivity_state(ch, GRPC_CHANNEL_IDLE,
	    grpcx_deadline_ms(50), cq, &cq_drain_seen);
	usleep(200000);		/* the watch times out into the queue */
	grpcx_cq_drain(cq, cq_drain_count);
	cr_assert_eq(cq_drain_seen, 1);
	grpcx_cq_drain(NULL, cq_drain_count);
	grpc_completion_queue_destroy(cq);
	grpc_channel_destroy(ch);
	grpc_shutdown_blocking();
}
