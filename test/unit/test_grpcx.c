/*
 * test_grpcx.c - grpcx: packing, unpacking, status names, deadlines, and the
 * client calls against the test server (tsrv.c); quiet and drained queues.
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
#include "tsrv.h"

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

Test(grpcx, status_names_and_codes)
{
	static const struct {
		int n;
		const char *name;
		grpc_status_code code;
	} t[] = {
		{ 0, "OK", GRPC_STATUS_OK },
		{ 3, "INVALID_ARGUMENT", GRPC_STATUS_INVALID_ARGUMENT },
		{ 5, "NOT_FOUND", GRPC_STATUS_NOT_FOUND },
		{ 14, "UNAVAILABLE", GRPC_STATUS_UNAVAILABLE },
		{ 16, "UNAUTHENTICATED", GRPC_STATUS_UNAUTHENTICATED },
		{ 17, "UNKNOWN", GRPC_STATUS_UNKNOWN },
		{ -1, "UNKNOWN", GRPC_STATUS_UNKNOWN },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		cr_expect_str_eq(grpcx_status_name(t[i].n), t[i].name);
		cr_expect_eq(grpcx_status_code(t[i].n), t[i].code, "%d", t[i].n);
	}
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

	cr_expect_eq(grpcx_ms_left(grpcx_deadline_ms(-1)), INT64_MAX);
	cr_expect_eq(grpcx_ms_left(gpr_inf_future(GPR_CLOCK_REALTIME)),
	    INT64_MAX);

	dl = grpcx_deadline_ms(1000);
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

/* ---- the server's last batch ----------------------------------------- */

Test(grpcx, finish_ops_end_a_call)
{
	Ipam__V1__Prefix p = IPAM__V1__PREFIX__INIT;
	Ipam__V1__Prefix *back;
	grpc_op ops[4];
	grpc_byte_buffer *send;
	grpc_slice details;
	bool md_sent = false;
	int cancelled;

	/* OK with a body: metadata, message, status, close */
	p.address = "10.0.0.1/24";
	cr_assert_eq(grpcx_finish_ops(ops, &md_sent, GRPC_STATUS_OK, NULL,
	    &p.base, &send, &details, &cancelled), 4);
	cr_expect(md_sent);
	cr_expect_eq(ops[0].op, GRPC_OP_SEND_INITIAL_METADATA);
	cr_expect_eq(ops[1].op, GRPC_OP_SEND_MESSAGE);
	cr_assert_eq(ops[1].data.send_message.send_message, send);
	back = (Ipam__V1__Prefix *)grpcx_unpack(&ipam__v1__prefix__descriptor,
	    send);
	cr_assert_not_null(back);
	cr_expect_str_eq(back->address, "10.0.0.1/24");
	ipam__v1__prefix__free_unpacked(back, NULL);
	cr_expect_eq(ops[2].op, GRPC_OP_SEND_STATUS_FROM_SERVER);
	cr_expect_eq(ops[2].data.send_status_from_server.status, GRPC_STATUS_OK);
	cr_expect_eq(GRPC_SLICE_LENGTH(details), 0);
	cr_expect_eq(ops[3].op, GRPC_OP_RECV_CLOSE_ON_SERVER);
	cr_expect_eq(ops[3].data.recv_close_on_server.cancelled, &cancelled);
	grpc_byte_buffer_destroy(send);
	grpc_slice_unref(details);

	/* an error after metadata went out: no body, status with msg */
	cr_assert_eq(grpcx_finish_ops(ops, &md_sent, GRPC_STATUS_NOT_FOUND,
	    "gone", &p.base, &send, &details, &cancelled), 2);
	cr_expect_null(send);
	cr_expect_eq(ops[0].op, GRPC_OP_SEND_STATUS_FROM_SERVER);
	cr_expect_eq(ops[0].data.send_status_from_server.status,
	    GRPC_STATUS_NOT_FOUND);
	cr_expect_eq(ops[0].data.send_status_from_server.status_details,
	    &details);
	cr_expect_eq(GRPC_SLICE_LENGTH(details), 4);
	cr_expect_eq(memcmp(GRPC_SLICE_START_PTR(details), "gone", 4), 0);
	cr_expect_eq(ops[1].op, GRPC_OP_RECV_CLOSE_ON_SERVER);
	grpc_slice_unref(details);
}

/* ---- client calls against the test server (tsrv.c) --------------------- */

static struct grpcx_client *cl;	/* a client of the test server */

static void
call_setup(void)
{
	char err[128];

	tsrv_start();
	cl = grpcx_client_new(tsrv_target, err, sizeof(err));
	cr_assert_not_null(cl, "%s", err);
}

static void
call_teardown(void)
{
	grpcx_client_free(cl);
	tsrv_stop();
}

TestSuite(grpcx_call, .init = call_setup, .fini = call_teardown,
    .timeout = 60);

Test(grpcx_call, message_round_trip)
{
	struct grpcx_status st;
	Ipam__V1__Child c;
	Ipam__V1__Subnet s;
	Nsp__V1__Conduit co;
	Nsp__V1__Trench t;
	ProtobufCMessage *resp = NULL;
	Ipam__V1__Child *out;

	fill_child(&c, &s, &co, &t);
	cr_expect_eq(grpcx_call(cl, tsrv_paths[TS_ECHO], &c.base,
	    &ipam__v1__child__descriptor, 5000, &resp, &st), GRPC_STATUS_OK,
	    "%s", st.message);
	cr_assert_not_null(resp);
	out = (Ipam__V1__Child *)resp;
	cr_expect_str_eq(out->name, "proxy-x");
	cr_assert_not_null(out->subnet);
	cr_expect_str_eq(out->subnet->conduit->trench->name, "trench-a");
	protobuf_c_message_free_unpacked(resp, NULL);
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
	grpcx_cq_drain(sc->cq, NULL);
	grpc_completion_queue_destroy(sc->cq);
	grpc_channel_destroy(sc->ch);
}

Test(grpcx_call, stream_helpers_read_messages_then_the_status)
{
	/* Echo answers one message: start, one message, the end (NULL),
	 * then the status; each step its own batch. */
	struct stream_call sc;
	struct grpcx_ccall u;
	uint8_t *d;
	size_t len;

	stream_call_open(&sc, TS_ECHO);
	cr_assert(wait_batch(sc.cq, grpcx_stream_start(sc.call,
	    grpcx_bytes("abc", 3), &u, &u)));
	cr_assert(wait_batch(sc.cq, grpcx_stream_next(sc.call, &u, &u)));
	cr_assert_not_null(u.recv);
	cr_assert_eq(grpcx_read_all(u.recv, &d, &len), 0);
	cr_expect_eq(len, 3);
	cr_expect_eq(memcmp(d, "abc", 3), 0);
	free(d);
	/* the message still held is freed by the next read (valgrind and
	 * ASan runs of this suite would report it otherwise) */
	cr_assert(wait_batch(sc.cq, grpcx_stream_next(sc.call, &u, &u)));
	cr_expect_null(u.recv, "a second message after the end");
	cr_assert(wait_batch(sc.cq, grpcx_stream_finish(sc.call, &u, &u)));
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
	struct grpcx_status st;
	static const uint8_t data[] = { 0x0a, 0x01, 'z' };
	uint8_t *resp = NULL;
	size_t len = 0;

	cr_expect_eq(grpcx_call_bytes(cl, tsrv_paths[TS_ECHO], data,
	    sizeof(data), -1, &resp, &len, &st), GRPC_STATUS_OK);
	cr_assert_not_null(resp);
	cr_expect_eq(len, sizeof(data));
	cr_expect_arr_eq(resp, data, sizeof(data));
	free(resp);
}

Test(grpcx_call, error_status_and_message)
{
	struct grpcx_status st;
	Ipam__V1__Child c;
	ProtobufCMessage *resp = (ProtobufCMessage *)&c;

	ipam__v1__child__init(&c);
	cr_expect_eq(grpcx_call(cl, tsrv_paths[TS_FAIL], &c.base,
	    &ipam__v1__child__descriptor, 5000, &resp, &st),
	    GRPC_STATUS_INVALID_ARGUMENT);
	cr_expect_str_eq(st.message, "bad thing");
	cr_expect_null(resp);
}

Test(grpcx_call, deadline_exceeded)
{
	struct grpcx_status st;
	uint8_t *resp = NULL;
	size_t len = 0;

	cr_expect_eq(grpcx_call_bytes(cl, tsrv_paths[TS_SLOW], "", 0, 100,
	    &resp, &len, &st), GRPC_STATUS_DEADLINE_EXCEEDED);
	cr_expect_null(resp);
}

Test(grpcx_call, malformed_response_is_internal)
{
	struct grpcx_status st;
	Ipam__V1__Child c;
	ProtobufCMessage *resp = NULL;

	ipam__v1__child__init(&c);
	cr_expect_eq(grpcx_call(cl, tsrv_paths[TS_GARBAGE], &c.base,
	    &ipam__v1__child__descriptor, 5000, &resp, &st),
	    GRPC_STATUS_INTERNAL);
	cr_expect_null(resp);
	cr_expect(strstr(st.message, "ipam.v1.Child") != NULL, "%s",
	    st.message);
}

Test(grpcx_call, unreachable_target_is_unavailable)
{
	struct grpcx_client *far;
	struct grpcx_status st;
	char err[128];
	uint8_t *resp = NULL;
	size_t len = 0;

	/* port 1 on loopback: nothing listens there in a test sandbox */
	far = grpcx_client_new("127.0.0.1:1", err, sizeof(err));
	cr_assert_not_null(far, "%s", err);
	cr_expect_eq(grpcx_call_bytes(far, tsrv_paths[TS_ECHO], "", 0, 5000,
	    &resp, &len, &st), GRPC_STATUS_UNAVAILABLE, "%s %s",
	    grpcx_status_name(st.code), st.message);
	grpcx_client_free(far);
}

/* Twenty echo calls with payloads of its own; non-NULL if all matched. */
static void *
concurrent_worker(void *arg)
{
	struct grpcx_client *c = arg;
	struct grpcx_status st;
	char body[64];
	uint8_t *resp;
	size_t len, n;
	bool ok = true;

	for (int i = 0; i < 20 && ok; i++) {
		n = (size_t)snprintf(body, sizeof(body), "%p-%d",
		    (void *)&st, i);
		resp = NULL;
		if (grpcx_call_bytes(c, tsrv_paths[TS_ECHO], body, n, 5000,
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
	pthread_t th[NTHREADS];

	for (int i = 0; i < NTHREADS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, concurrent_worker,
		    cl), 0);
	for (int i = 0; i < NTHREADS; i++) {
		void *ok;

		pthread_join(th[i], &ok);
		cr_expect_not_null(ok);
	}
}

Test(grpcx, client_new_refuses_empty_target)
{
	char err[128] = "";

	cr_expect_null(grpcx_client_new("", err, sizeof(err)));
	cr_expect_str_eq(err, "empty target");
	grpcx_client_free(NULL);
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
	grpcx_cq_drain(ccq, NULL);
	tsrv_free(c);
	grpc_server_destroy(srv);
	grpcx_cq_drain(quiet_cq, NULL);
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
