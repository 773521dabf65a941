/*
 * test_ipcmsg.c - ipamd.v1 messages through ipc frames; garbage and
 * truncated bytes are refused.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ipcmsg.h"

/* A connected pair, and the last frame recv_frame read from sv[0]. */
static int sv[2] = { -1, -1 };
static uint8_t *frame;
static size_t frame_len;

static void
setup_pair(void)
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
}

static void
teardown_pair(void)
{
	for (int i = 0; i < 2; i++)
		if (sv[i] >= 0)
			close(sv[i]);
	sv[0] = sv[1] = -1;
	free(frame);
	frame = NULL;
}

/* Reads the next frame on sv[0] into frame (blocking, 1 s at most). */
static void
recv_frame(void)
{
	free(frame);
	frame = NULL;
	cr_assert_eq(ipc_recv(sv[0], &frame, &frame_len, 1000), 1);
}

/* A child with every field set. */
static Ipamd__V1__Child child = {
	.base = PROTOBUF_C_MESSAGE_INIT(&ipamd__v1__child__descriptor),
	.trench = "trench-a", .conduit = "load-balancer", .node = "worker-1",
	.family = IPAMD__V1__FAMILY__FAMILY_IPV6, .name = "proxy-1",
};

/* An Allocate request with every field set, packed into buf. */
static size_t
pack_allocate(uint8_t *buf, size_t cap)
{
	Ipamd__V1__Request r = IPAMD__V1__REQUEST__INIT;
	Ipamd__V1__Allocate a = IPAMD__V1__ALLOCATE__INIT;

	a.child = &child;
	a.wait_ms = 1500;
	r.id = 42;
	r.body_case = IPAMD__V1__REQUEST__BODY_ALLOCATE;
	r.allocate = &a;
	cr_assert_leq(ipamd__v1__request__get_packed_size(&r), cap);
	return ipamd__v1__request__pack(&r, buf);
}

TestSuite(ipcmsg, .init = setup_pair, .fini = teardown_pair);

Test(ipcmsg, request_roundtrip_through_conn)
{
	Ipamd__V1__Request r = IPAMD__V1__REQUEST__INIT;
	Ipamd__V1__Release rel = IPAMD__V1__RELEASE__INIT;
	Ipamd__V1__Request *got;
	struct ipc_conn *w = ipc_conn_new(sv[1]);
	struct ipc_conn *rd = ipc_conn_new(sv[0]);
	const uint8_t *data;
	size_t len;

	cr_assert_not_null(w);
	cr_assert_not_null(rd);
	sv[0] = sv[1] = -1;
	rel.child = &child;
	r.id = 7;
	r.body_case = IPAMD__V1__REQUEST__BODY_RELEASE;
	r.release = &rel;
	cr_assert_eq(ipcmsg_queue_request(w, &r), 0);
	cr_assert_eq(ipc_conn_flush(w), 0);
	cr_assert_gt(ipc_conn_fill(rd), 0);
	cr_assert_eq(ipc_conn_next(rd, &data, &len), 1);
	got = ipcmsg_unpack_request(data, len);
	cr_assert_not_null(got);
	cr_assert_eq(got->id, 7);
	cr_assert_eq(got->body_case, IPAMD__V1__REQUEST__BODY_RELEASE);
	cr_assert_str_eq(got->release->child->node, "worker-1");
	cr_assert_eq(got->release->child->family, IPAMD__V1__FAMILY__FAMILY_IPV6);
	ipamd__v1__request__free_unpacked(got, NULL);
	ipc_conn_free(w);
	ipc_conn_free(rd);
}

Test(ipcmsg, reply_roundtrip_through_conn)
{
	Ipamd__V1__Reply r = IPAMD__V1__REPLY__INIT;
	Ipamd__V1__Reply *got;
	struct ipc_conn *w = ipc_conn_new(sv[1]);

	cr_assert_not_null(w);
	sv[1] = -1;
	r.id = 9;
	r.address = "169.255.0.1";
	r.prefix_length = 24;
	cr_assert_eq(ipcmsg_queue_reply(w, &r), 0);
	cr_assert_eq(ipc_conn_flush(w), 0);
	recv_frame();
	got = ipcmsg_unpack_reply(frame, frame_len);
	cr_assert_not_null(got);
	cr_assert_eq(got->id, 9);
	cr_assert_eq(got->code, 0);
	cr_assert_str_eq(got->address, "169.255.0.1");
	cr_assert_eq(got->prefix_length, 24);
	ipamd__v1__reply__free_unpacked(got, NULL);
	ipc_conn_free(w);
}

Test(ipcmsg, large_request_uses_heap_path)
{
	Ipamd__V1__Request r = IPAMD__V1__REQUEST__INIT;
	Ipamd__V1__SyncConduits s = IPAMD__V1__SYNC_CONDUITS__INIT;
	Ipamd__V1__Request *got;
	char *names[200], name[32];

	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "conduit-%03d", i);
		names[i] = strdup(name);
	}
	s.n_add = 200;
	s.add = names;
	r.id = 3;
	r.body_case = IPAMD__V1__REQUEST__BODY_SYNC_CONDUITS;
	r.sync_conduits = &s;
	cr_assert_gt(ipamd__v1__request__get_packed_size(&r), 1024);
	cr_assert_eq(ipcmsg_send_request(sv[1], &r), 0);
	recv_frame();
	got = ipcmsg_unpack_request(frame, frame_len);
	cr_assert_not_null(got);
	cr_assert_eq(got->sync_conduits->n_add, 200);
	cr_assert_str_eq(got->sync_conduits->add[199], "conduit-199");
	ipamd__v1__request__free_unpacked(got, NULL);
	for (int i = 0; i < 200; i++)
		free(names[i]);
}

Test(ipcmsg, oversize_message_refused)
{
	Ipamd__V1__Request r = IPAMD__V1__REQUEST__INIT;
	Ipamd__V1__Allocate a = IPAMD__V1__ALLOCATE__INIT;
	Ipamd__V1__Child ch = IPAMD__V1__CHILD__INIT;
	char *big = malloc(BOUNDS_FRAME_MAX + 1);

	cr_assert_not_null(big);
	memset(big, 'x', BOUNDS_FRAME_MAX);
	big[BOUNDS_FRAME_MAX] = '\0';
	ch.name = big;
	a.child = &ch;
	r.body_case = IPAMD__V1__REQUEST__BODY_ALLOCATE;
	r.allocate = &a;
	errno = 0;
	cr_assert_eq(ipcmsg_send_request(sv[1], &r), -1);
	cr_assert_eq(errno, EMSGSIZE);
	free(big);
}

Test(ipcmsg, status_roundtrip)
{
	Ipamd__V1__WorkerStatus *st;

	cr_assert_eq(ipcmsg_send_status(sv[1], true, "serving"), 0);
	cr_assert_eq(ipcmsg_send_status(sv[1], false, NULL), 0);
	recv_frame();
	st = ipcmsg_unpack_status(frame, frame_len);
	cr_assert_not_null(st);
	cr_assert(st->ready);
	cr_assert_str_eq(st->status, "serving");
	ipamd__v1__worker_status__free_unpacked(st, NULL);
	recv_frame();
	st = ipcmsg_unpack_status(frame, frame_len);
	cr_assert_not_null(st);
	cr_assert_not(st->ready);
	cr_assert_str_eq(st->status, "");
	ipamd__v1__worker_status__free_unpacked(st, NULL);
}

Test(ipcmsg, garbage_refused)
{
	/* A field-1 varint that never ends, an invalid wire type, and a
	 * length-delimited field longer than the data. */
	static const uint8_t bad_varint[] = { 0x08, 0xff, 0xff, 0xff, 0xff,
	    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t bad_wire[] = { 0x0f, 0x01 };
	static const uint8_t bad_len[] = { 0x12, 0x7f, 'a' };
	static const struct {
		const uint8_t *p;
		size_t n;
	} bad[] = {
		{ bad_varint, sizeof(bad_varint) }, { bad_wire, sizeof(bad_wire) },
		{ bad_len, sizeof(bad_len) },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_null(ipcmsg_unpack_request(bad[i].p, bad[i].n));
		cr_assert_null(ipcmsg_unpack_reply(bad[i].p, bad[i].n));
		cr_assert_null(ipcmsg_unpack_status(bad[i].p, bad[i].n));
	}
}

Test(ipcmsg, request_without_body_refused)
{
	static const uint8_t only_id[] = { 0x08, 0x05 };

	cr_assert_null(ipcmsg_unpack_request(only_id, sizeof(only_id)));
	cr_assert_null(ipcmsg_unpack_request((const uint8_t *)"", 0));
}

/* Every proper prefix of a packed Allocate is refused: the cut falls in
 * the id, in the body's header, or inside the body whose length says
 * more bytes follow. */
Test(ipcmsg, truncated_request_refused)
{
	uint8_t buf[256];
	size_t n = pack_allocate(buf, sizeof(buf));
	Ipamd__V1__Request *whole;

	whole = ipcmsg_unpack_request(buf, n);
	cr_assert_not_null(whole);
	cr_assert_eq(whole->allocate->wait_ms, 1500);
	cr_assert_str_eq(whole->allocate->child->name, "proxy-1");
	ipamd__v1__request__free_unpacked(whole, NULL);
	for (size_t cut = 1; cut < n; cut++)
		cr_assert_null(ipcmsg_unpack_request(buf, cut), "cut %zu", cut);
}

Test(ipcmsg, truncated_reply_refused)
{
	Ipamd__V1__Reply r = IPAMD__V1__REPLY__INIT;
	uint8_t buf[128];
	size_t n;

	r.id = 1;
	r.message = "conduit not found";
	n = ipamd__v1__reply__pack(&r, buf);
	/* Cut inside the message string (after tag and length bytes). */
	for (size_t cut = 4; cut < n; cut++)
		cr_assert_null(ipcmsg_unpack_reply(buf, cut), "cut %zu", cut);
}

Test(ipcmsg, db_path)
{
	char buf[256], small[8], longdir[200];

	cr_assert_eq(ipcmsg_db_path("/run/x", buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "/run/x/db.sock");
	cr_assert_eq(ipcmsg_db_path("/run/x", small, sizeof(small)), -1);
	memset(longdir, 'd', sizeof(longdir) - 1);
	longdir[sizeof(longdir) - 1] = '\0';
	/* Fits buf but not sun_path. */
	cr_assert_eq(ipcmsg_db_path(longdir, buf, sizeof(buf)), -1);
}

/*
 * Random bytes (rand_r from a fixed seed: the same every run) never crash
 * an unpack; whatever is accepted is a message that packs and unpacks
 * again to the same thing, and an accepted Request always has a body.
 */
Test(ipcmsg, random_bytes_refused_or_consistent)
{
	unsigned seed = 0x9e3779b9u;
	uint8_t buf[256], again[512];
	unsigned accepted = 0;

	for (int round = 0; round < 20000; round++) {
		size_t len = (size_t)rand_r(&seed) % sizeof(buf);
		Ipamd__V1__Request *rq;
		Ipamd__V1__Reply *rp;
		Ipamd__V1__WorkerStatus *st;
		size_t n;

		if (round % 2 == 0) {
			for (size_t i = 0; i < len; i++)
				buf[i] = (uint8_t)rand_r(&seed);
		} else {
			/* A valid Allocate with a few bytes changed. */
			len = pack_allocate(buf, sizeof(buf));
			for (int k = 0; k < 1 + round % 3; k++)
				buf[(size_t)rand_r(&seed) % len] =
				    (uint8_t)rand_r(&seed);
		}
		rq = ipcmsg_unpack_request(buf, len);
		if (rq != NULL) {
			accepted++;
			cr_assert_neq(rq->body_case,
			    IPAMD__V1__REQUEST__BODY__NOT_SET);
			n = ipamd__v1__request__get_packed_size(rq);
			cr_assert_leq(n, sizeof(again));
			ipamd__v1__request__pack(rq, again);
			Ipamd__V1__Request *rq2 =
			    ipcmsg_unpack_request(again, n);
			cr_assert_not_null(rq2);
			cr_assert_eq(rq2->id, rq->id);
			cr_assert_eq(rq2->body_case, rq->body_case);
			ipamd__v1__request__free_unpacked(rq2, NULL);
			ipamd__v1__request__free_unpacked(rq, NULL);
		}
		rp = ipcmsg_unpack_reply(buf, len);
		if (rp != NULL) {
			n = ipamd__v1__reply__get_packed_size(rp);
			cr_assert_leq(n, sizeof(again));
			ipamd__v1__reply__pack(rp, again);
			Ipamd__V1__Reply *rp2 = ipcmsg_unpack_reply(again, n);
			cr_assert_not_null(rp2);
			cr_assert_eq(rp2->code, rp->code);
			cr_assert_str_eq(rp2->address, rp->address);
			ipamd__v1__reply__free_unpacked(rp2, NULL);
			ipamd__v1__reply__free_unpacked(rp, NULL);
		}
		st = ipcmsg_unpack_status(buf, len);
		if (st != NULL)
			ipamd__v1__worker_status__free_unpacked(st, NULL);
	}
	/* The loop did reach the accepting path, not only refusals. */
	cr_assert_gt(accepted, 0);
}

/*
 * A frame protobuf-c takes but that does not re-encode to itself: inside
 * an Allocate's child, after the name, an over-long tag (0x82 0x00) for field
 * number 0 with an empty value (found by fuzz_frame). Refused, so that
 * what the db worker handles is what was sent; the same Allocate without
 * those bytes is taken.
 */
Test(ipcmsg, non_canonical_request_refused)
{
	static const uint8_t odd[] = "\x08\x02\x1a\x2e\x0a\x2c\x0a\x07$efault"
	    "\x12\x09" "conduit-a\x1a\x08worker-1\x20\x04\x2a\x07proprox"
	    "\x82\x00\x00";
	static const uint8_t plain[] = "\x08\x02\x1a\x2b\x0a\x29\x0a\x07$efault"
	    "\x12\x09" "conduit-a\x1a\x08worker-1\x20\x04\x2a\x07proprox";
	Ipamd__V1__Request *r;

	cr_assert_eq(sizeof(odd) - 1, 50);
	cr_assert_null(ipcmsg_unpack_request(odd, sizeof(odd) - 1));
	r = ipcmsg_unpack_request(plain, sizeof(plain) - 1);
	cr_assert_not_null(r);
	cr_assert_str_eq(r->allocate->child->name, "proprox");
	ipamd__v1__request__free_unpacked(r, NULL);
}
