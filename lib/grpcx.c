/*
 * grpcx.c - gRPC C core and protobuf-c glue (see grpcx.h).
 */
#include "grpcx.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>

/* Names of the status codes, indexed by number (grpc/status.h). */
static const char *const grpcx_names[] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
	"RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
};

#define GRPCX_NCODES ((int)(sizeof(grpcx_names) / sizeof(grpcx_names[0])))

struct grpcx_client {
	grpc_channel *channel;		/* plaintext or TLS channel */
};

grpc_byte_buffer *
grpcx_bytes(const void *data, size_t len)
{
	grpc_slice s;
	grpc_byte_buffer *bb;

	s = grpc_slice_malloc(len);
	if (len > 0)
		memcpy(GRPC_SLICE_START_PTR(s), data, len);
	bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

/*
 * Packs straight into the slice's memory: one allocation, no copy. The
 * packed size is known beforehand, so the slice is exactly that long.
 */
grpc_byte_buffer *
grpcx_pack(const ProtobufCMessage *m)
{
	size_t len;
	grpc_slice s;
	grpc_byte_buffer *bb;

	len = protobuf_c_message_get_packed_size(m);
	s = grpc_slice_malloc(len);
	if (len > 0)
		protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
	bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

int
grpcx_read_all(grpc_byte_buffer *bb, uint8_t **data, size_t *len)
{
	grpc_byte_buffer_reader rd;
	grpc_slice s;
	size_t n;
	uint8_t *p;

	if (bb == NULL || !grpc_byte_buffer_reader_init(&rd, bb))
		return -1;
	s = grpc_byte_buffer_reader_readall(&rd);
	grpc_byte_buffer_reader_destroy(&rd);
	n = GRPC_SLICE_LENGTH(s);
	p = malloc(n > 0 ? n : 1);
	if (p == NULL) {
		grpc_slice_unref(s);
		return -1;
	}
	if (n > 0)
		memcpy(p, GRPC_SLICE_START_PTR(s), n);
	grpc_slice_unref(s);
	*data = p;
	*len = n;
	return 0;
}

ProtobufCMessage *
grpcx_unpack(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb)
{
	grpc_byte_buffer_reader rd;
	grpc_slice s;
	ProtobufCMessage *m;
	static const uint8_t empty[1];

	if (bb == NULL || !grpc_byte_buffer_reader_init(&rd, bb))
		return NULL;
	s = grpc_byte_buffer_reader_readall(&rd);
	grpc_byte_buffer_reader_destroy(&rd);
	m = protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s),
	    GRPC_SLICE_LENGTH(s) > 0 ? GRPC_SLICE_START_PTR(s) : empty);
	grpc_slice_unref(s);
	return m;
}

const char *
grpcx_status_name(int code)
{
	if (code < 0 || code >= GRPCX_NCODES)
		return "UNKNOWN";
	return grpcx_names[code];
}

grpc_status_code
grpcx_status_code(int code)
{
	if (code < 0 || code >= GRPCX_NCODES)
		return GRPC_STATUS_UNKNOWN;
	return (grpc_status_code)code;
}

void
grpcx_status_set(struct grpcx_status *st, grpc_status_code code,
    const char *fmt, ...)
{
	va_list ap;

	st->code = code;
	va_start(ap, fmt);
	vsnprintf(st->message, sizeof(st->message), fmt, ap);
	va_end(ap);
}

gpr_timespec
grpcx_deadline_ms(int64_t ms)
{
	if (ms < 0)
		return gpr_inf_future(GPR_CLOCK_MONOTONIC);
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
	    gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* True if the deadline is "none" (infinitely far in the future). */
static bool
grpcx_deadline_is_infinite(gpr_timespec deadline)
{
	return gpr_time_cmp(deadline, gpr_inf_future(deadline.clock_type))
	    == 0;
}

/*
 * Time left, rounded up to whole milliseconds so that a deadline a few
 * microseconds away does not read as already passed.
 */
int64_t
grpcx_ms_left(gpr_timespec deadline)
{
	gpr_timespec left;

	if (grpcx_deadline_is_infinite(deadline))
		return INT64_MAX;
	left = gpr_time_sub(deadline, gpr_now(deadline.clock_type));
	if (left.tv_sec < 0 || (left.tv_sec == 0 && left.tv_nsec == 0))
		return 0;
	return left.tv_sec * 1000 + (left.tv_nsec + 999999) / 1000000;
}

struct grpcx_client *
grpcx_client_new(const char *target, char *err, size_t errlen)
{
	return grpcx_client_new_creds(target,
	    grpc_insecure_credentials_create(), NULL, err, errlen);
}

struct grpcx_client *
grpcx_client_new_creds(const char *target, grpc_channel_credentials *creds,
    const grpc_channel_args *args, char *err, size_t errlen)
{
	struct grpcx_client *c;

	if (target == NULL || target[0] == '\0') {
		snprintf(err, errlen, "empty target");
		grpc_channel_credentials_release(creds);
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		grpc_channel_credentials_release(creds);
		return NULL;
	}
	c->channel = grpc_channel_create(target, creds, args);
	grpc_channel_credentials_release(creds);
	if (c->channel == NULL) {
		snprintf(err, errlen, "cannot create a channel to %s", target);
		free(c);
		return NULL;
	}
	return c;
}

void
grpcx_client_free(struct grpcx_client *c)
{
	if (c == NULL)
		return;
	grpc_channel_destroy(c->channel);
	free(c);
}

/* Copies a status details slice into st->message and releases it. */
static void
grpcx_take_details(struct grpcx_status *st, grpc_slice details)
{
	size_t n;

	n = GRPC_SLICE_LENGTH(details);
	if (n >= sizeof(st->message))
		n = sizeof(st->message) - 1;
	memcpy(st->message, GRPC_SLICE_START_PTR(details), n);
	st->message[n] = '\0';
	grpc_slice_unref(details);
}

/* Initialises u for a call sending send (taken). */
static void
grpcx_ccall_init(struct grpcx_ccall *u, grpc_byte_buffer *send)
{
	memset(u, 0, sizeof(*u));
	u->send = send;
	u->status = GRPC_STATUS_UNKNOWN;
	u->details = grpc_empty_slice();
	grpc_metadata_array_init(&u->md_init);
	grpc_metadata_array_init(&u->md_trail);
}

/* Fills the four ops that send md and u's request and read the initial
 * metadata; returns 4. */
static size_t
grpcx_ops_request(grpc_op *ops, struct grpcx_ccall *u,
    const grpc_metadata *md, size_t nmd)
{
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = nmd;
	ops[0].data.send_initial_metadata.metadata = (grpc_metadata *)md;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = u->send;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &u->md_init;
	return 4;
}

/* Fills the op that receives one message into u->recv. */
static void
grpcx_op_message(grpc_op *op, struct grpcx_ccall *u)
{
	op->op = GRPC_OP_RECV_MESSAGE;
	op->data.recv_message.recv_message = &u->recv;
}

/* Fills the op that receives the status into u. */
static void
grpcx_op_status(grpc_op *op, struct grpcx_ccall *u)
{
	op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	op->data.recv_status_on_client.trailing_metadata = &u->md_trail;
	op->data.recv_status_on_client.status = &u->status;
	op->data.recv_status_on_client.status_details = &u->details;
	op->data.recv_status_on_client.error_string = &u->error_string;
}

/* Initialises u, then starts the request ops, and for a unary call the
 * response and status ops too, as one batch. */
static grpc_call_error
grpcx_ccall_start(grpc_call *call, grpc_byte_buffer *send,
    const grpc_metadata *md, size_t nmd, struct grpcx_ccall *u, void *tag,
    bool unary)
{
	grpc_op ops[6];
	size_t n;

	grpcx_ccall_init(u, send);
	memset(ops, 0, sizeof(ops));
	n = grpcx_ops_request(ops, u, md, nmd);
	if (unary) {
		grpcx_op_message(&ops[n++], u);
		grpcx_op_status(&ops[n++], u);
	}
	return grpc_call_start_batch(call, ops, n, tag, NULL);
}

grpc_call_error
grpcx_unary_start(grpc_call *call, grpc_byte_buffer *send,
    struct grpcx_ccall *u, void *tag)
{
	return grpcx_ccall_start(call, send, NULL, 0, u, tag, true);
}

grpc_call_error
grpcx_stream_start(grpc_call *call, grpc_byte_buffer *send,
    struct grpcx_ccall *u, void *tag)
{
	return grpcx_ccall_start(call, send, NULL, 0, u, tag, false);
}

grpc_call_error
grpcx_stream_start_md(grpc_call *call, grpc_byte_buffer *send,
    const grpc_metadata *md, size_t nmd, struct grpcx_ccall *u, void *tag)
{
	return grpcx_ccall_start(call, send, md, nmd, u, tag, false);
}

grpc_call_error
grpcx_stream_next(grpc_call *call, struct grpcx_ccall *u, void *tag)
{
	grpc_op op;

	if (u->recv != NULL)
		grpc_byte_buffer_destroy(u->recv);
	u->recv = NULL;
	memset(&op, 0, sizeof(op));
	grpcx_op_message(&op, u);
	return grpc_call_start_batch(call, &op, 1, tag, NULL);
}

grpc_call_error
grpcx_stream_finish(grpc_call *call, struct grpcx_ccall *u, void *tag)
{
	grpc_op op;

	memset(&op, 0, sizeof(op));
	grpcx_op_status(&op, u);
	return grpc_call_start_batch(call, &op, 1, tag, NULL);
}

void
grpcx_ccall_clear(struct grpcx_ccall *u)
{
	if (u->send != NULL)
		grpc_byte_buffer_destroy(u->send);
	if (u->recv != NULL)
		grpc_byte_buffer_destroy(u->recv);
	if (u->error_string != NULL)
		gpr_free((void *)u->error_string);
	grpc_slice_unref(u->details);
	grpc_metadata_array_destroy(&u->md_init);
	grpc_metadata_array_destroy(&u->md_trail);
	memset(u, 0, sizeof(*u));
	u->details = grpc_empty_slice();
}

/*
 * One call, one batch with every op of a unary exchange, on a completion
 * queue of its own: several threads can call at once on one channel and
 * nobody else ever sees this queue's events.
 */
int
grpcx_call_bytes(struct grpcx_client *c, const char *method,
    const void *req, size_t req_len, int64_t timeout_ms, uint8_t **resp,
    size_t *resp_len, struct grpcx_status *st)
{
	grpc_completion_queue *cq;
	grpc_call *call;
	grpc_slice mslice;
	grpc_byte_buffer *send;
	struct grpcx_ccall u;
	grpc_event ev;
	gpr_timespec deadline;
	char tag;

	*resp = NULL;
	*resp_len = 0;
	st->code = GRPC_STATUS_UNKNOWN;
	st->message[0] = '\0';

	deadline = timeout_ms < 0 ? gpr_inf_future(GPR_CLOCK_REALTIME) :
	    grpcx_deadline_ms(timeout_ms);
	cq = grpc_completion_queue_create_for_next(NULL);
	mslice = grpc_slice_from_copied_string(method);
	call = grpc_channel_create_call(c->channel, NULL,
	    GRPC_PROPAGATE_DEFAULTS, cq, mslice, NULL, deadline, NULL);
	grpc_slice_unref(mslice);
	if (call == NULL) {
		grpcx_status_set(st, GRPC_STATUS_INTERNAL,
		    "cannot create a call");
		goto out_cq;
	}
	send = grpcx_bytes(req, req_len);
	if (send == NULL) {
		grpcx_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "out of memory");
		grpc_call_unref(call);
		goto out_cq;
	}
	if (grpcx_unary_start(call, send, &u, &tag) != GRPC_CALL_OK) {
		grpcx_status_set(st, GRPC_STATUS_INTERNAL,
		    "cannot start the call");
		goto out_call;
	}
	ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME),
	    NULL);
	(void)ev;	/* the batch always completes; status says the rest */
	st->code = u.status;
	grpcx_take_details(st, u.details);
	u.details = grpc_empty_slice();
	if (u.status == GRPC_STATUS_OK) {
		if (grpcx_read_all(u.recv, resp, resp_len) < 0)
			grpcx_status_set(st, GRPC_STATUS_INTERNAL,
			    "no response message");
	}
out_call:
	grpcx_ccall_clear(&u);
	grpc_call_unref(call);
out_cq:
	grpcx_cq_drain(cq, NULL);
	grpc_completion_queue_destroy(cq);
	return st->code;
}

int
grpcx_call(struct grpcx_client *c, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
    int64_t timeout_ms, ProtobufCMessage **resp, struct grpcx_status *st)
{
	uint8_t *req_buf, *resp_buf = NULL;
	size_t req_len, resp_len = 0;
	static const uint8_t empty[1];

	*resp = NULL;
	req_len = protobuf_c_message_get_packed_size(req);
	req_buf = malloc(req_len > 0 ? req_len : 1);
	if (req_buf == NULL) {
		grpcx_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "out of memory");
		return st->code;
	}
	protobuf_c_message_pack(req, req_buf);
	grpcx_call_bytes(c, method, req_buf, req_len, timeout_ms, &resp_buf,
	    &resp_len, st);
	free(req_buf);
	if (st->code != GRPC_STATUS_OK)
		goto out;
	*resp = protobuf_c_message_unpack(resp_desc, NULL, resp_len,
	    resp_len > 0 ? resp_buf : empty);
	if (*resp == NULL)
		grpcx_status_set(st, GRPC_STATUS_INTERNAL,
		    "malformed %s response", resp_desc->name);
out:
	free(resp_buf);
	return st->code;
}

grpc_server *
grpcx_server_new(int max_message)
{
	grpc_arg arg[2];
	grpc_channel_args args = { .num_args = 2, .args = arg };

	arg[0].type = GRPC_ARG_INTEGER;
	arg[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	arg[0].value.integer = max_message;
	arg[1].type = GRPC_ARG_INTEGER;
	arg[1].key = (char *)GRPC_ARG_ALLOW_REUSEPORT;
	arg[1].value.integer = 0;
	return grpc_server_create(&args, NULL);
}

size_t
grpcx_finish_ops(grpc_op *ops, bool *md_sent, grpc_status_code code,
    const char *msg, const ProtobufCMessage *body, grpc_byte_buffer **send,
    grpc_slice *details, int *cancelled)
{
	size_t n = 0;

	memset(ops, 0, 4 * sizeof(*ops));
	if (!*md_sent)
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	*md_sent = true;
	*send = code == GRPC_STATUS_OK && body != NULL ? grpcx_pack(body) : NULL;
	if (*send != NULL) {
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = *send;
	}
	*details = grpc_slice_from_copied_string(msg != NULL ? msg : "");
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = code;
	ops[n++].data.send_status_from_server.status_details = details;
	ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[n++].data.recv_close_on_server.cancelled = cancelled;
	return n;
}

grpc_completion_queue *
grpcx_cq_quiet(void)
{
	grpc_completion_queue_attributes at;
	const grpc_completion_queue_factory *f;

	memset(&at, 0, sizeof(at));
	at.version = 1;		/* completion and polling type only */
	at.cq_completion_type = GRPC_CQ_NEXT;
	at.cq_polling_type = GRPC_CQ_NON_POLLING;
	f = grpc_completion_queue_factory_lookup(&at);
	return f != NULL ? grpc_completion_queue_create(f, &at, NULL) : NULL;
}

void
grpcx_cq_drain(grpc_completion_queue *cq, void (*each)(void *tag))
{
	grpc_event ev;

	if (cq == NULL)
		return;
	grpc_completion_queue_shutdown(cq);
	do {
		ev = grpc_completion_queue_next(cq,
		    gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		if (ev.type == GRPC_OP_COMPLETE && each != NULL)
			each(ev.tag);
	} while (ev.type != GRPC_QUEUE_SHUTDOWN);
}

/*
 * absl's Mutex deadlock detection records every lock order in a graph: on
 * by default in Debian's absl 20220623, and gRPC takes absl mutexes on
 * every call. It is a debugging aid that release builds leave off, and
 * neither absl nor gRPC 1.51 reads a variable or flag that turns it off:
 * only the C++ call does, looked up by its mangled name (Debian's inline
 * namespace or upstream's of the same release); if neither is loaded,
 * nothing happens. Kept: with it on, each call costs measurably more CPU.
 */
static const char *const grpcx_absl_deadlock_syms[] = {
	"_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
	"_ZN4absl12lts_2022062329SetMutexDeadlockDetectionModeENS0_"
	    "15OnDeadlockCycleE",
};

bool
grpcx_init(void)
{
	void (*set_mode)(int);
	bool off = false;

	for (size_t i = 0; i < sizeof(grpcx_absl_deadlock_syms) /
	    sizeof(grpcx_absl_deadlock_syms[0]) && !off; i++) {
		*(void **)&set_mode = dlsym(RTLD_DEFAULT,
		    grpcx_absl_deadlock_syms[i]);
		if (set_mode != NULL) {
			set_mode(0);	/* absl::OnDeadlockCycle::kIgnore */
			off = true;
		}
	}
	grpc_init();
	return off;
}
