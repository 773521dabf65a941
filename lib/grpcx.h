/*
 * grpcx.h - small glue between the gRPC C core and protobuf-c, shared by the
 * api and nsp workers, ipamctl and ipam-bench.
 *
 * Byte buffers in and out of protobuf-c messages, status code names,
 * deadlines as milliseconds, and a blocking unary client call. The module
 * knows no generated message: callers pass descriptors. It never logs and
 * never exits; it does not call grpc_init (the program does, after any fork).
 */
#ifndef IPAM_GRPCX_H
#define IPAM_GRPCX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <grpc/support/time.h>
#include <protobuf-c/protobuf-c.h>

/* Room for a status message (NUL included) in struct grpcx_status. */
#define GRPCX_MSG_MAX 512

/* The outcome of a call as the client saw it. */
struct grpcx_status {
	grpc_status_code code;		/* GRPC_STATUS_OK or the error code */
	char message[GRPCX_MSG_MAX];	/* status details, "" when none */
};

/*
 * grpc_init(), after turning off absl's Mutex deadlock detection (a
 * debugging aid left on in Debian's absl build that costs CPU on every
 * call). Returns true if it was found and turned off.
 */
bool grpcx_init(void);

/*
 * A completion queue (grpc_completion_queue_next) whose callers never poll
 * for I/O: its events are made by the threads polling other queues. For a
 * second server beside one whose thread polls all the time: a second
 * polling thread takes I/O of the first server's connections too (gRPC
 * polls every connection from one epoll set) and hands each event over
 * with a wake-up. NULL if gRPC has no such queue.
 */
grpc_completion_queue *grpcx_cq_quiet(void);

/*
 * Shuts cq down and waits until it is empty, calling each(tag) for every
 * completed operation still in it (each may be NULL). The queue is left
 * for grpc_completion_queue_destroy. Accepts NULL.
 */
void grpcx_cq_drain(grpc_completion_queue *cq, void (*each)(void *tag));

/*
 * A gRPC server that takes request bodies of at most max_message bytes and
 * never shares its listening port: gRPC turns SO_REUSEPORT on by default,
 * and a second daemon bound to the same port would get half the clients
 * and hand out the same addresses.
 */
grpc_server *grpcx_server_new(int max_message);

/*
 * Fills ops (room for 4) with the batch that ends a call on the server:
 * initial metadata unless *md_sent (then set), the message packed from
 * body into *send (NULL when the code is not OK or there is no body), the
 * status with msg in *details, and RECV_CLOSE_ON_SERVER into *cancelled.
 * *send and *details are the caller's to release once the batch is over.
 * Returns the number of ops.
 */
size_t grpcx_finish_ops(grpc_op *ops, bool *md_sent, grpc_status_code code,
    const char *msg, const ProtobufCMessage *body, grpc_byte_buffer **send,
    grpc_slice *details, int *cancelled);

/*
 * Packs m into a new byte buffer (one slice). NULL on out of memory.
 * The caller destroys it with grpc_byte_buffer_destroy.
 */
grpc_byte_buffer *grpcx_pack(const ProtobufCMessage *m);

/* Copies raw bytes into a new byte buffer. NULL on out of memory. */
grpc_byte_buffer *grpcx_bytes(const void *data, size_t len);

/*
 * Copies the whole content of bb into one malloc'd buffer (*data, caller
 * frees; never NULL on success, even for 0 bytes). Returns 0, or -1 when
 * bb is NULL or memory runs out.
 */
int grpcx_read_all(grpc_byte_buffer *bb, uint8_t **data, size_t *len);

/*
 * Unpacks the content of bb as a message of type d. NULL when bb is NULL
 * or its bytes are not a well-formed message. bb stays the caller's. Free
 * the result with protobuf_c_message_free_unpacked(m, NULL).
 */
ProtobufCMessage *grpcx_unpack(const ProtobufCMessageDescriptor *d,
    grpc_byte_buffer *bb);

/* Upper-case name of a status code ("INVALID_ARGUMENT"); "UNKNOWN" for a
 * number that is no status code. */
const char *grpcx_status_name(int code);

/* A number as a status code: itself if it is one (0..16), else UNKNOWN. */
grpc_status_code grpcx_status_code(int code);

/* Fills st with code and a printf-style message (truncated to fit). */
void grpcx_status_set(struct grpcx_status *st, grpc_status_code code,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A monotonic deadline ms milliseconds from now; ms < 0 means none. */
gpr_timespec grpcx_deadline_ms(int64_t ms);

/*
 * Milliseconds left until deadline (any clock type): INT64_MAX when there
 * is no deadline, 0 when it has passed.
 */
int64_t grpcx_ms_left(gpr_timespec deadline);

/* What the batches of one client call (below) send and fill. */
struct grpcx_ccall {
	grpc_byte_buffer *send;		/* request body (owned) */
	grpc_byte_buffer *recv;		/* response body, NULL if none */
	grpc_metadata_array md_init;	/* response initial metadata */
	grpc_metadata_array md_trail;	/* trailing metadata */
	grpc_status_code status;	/* the call's status */
	grpc_slice details;		/* its message */
	const char *error_string;	/* gRPC's debug text, NULL if none */
};

/*
 * Starts the whole client side of a unary call on call as one batch: send
 * metadata, the request (send, which u then owns), close, receive
 * metadata, the response and the status. The batch completes with tag on
 * the call's queue. u is initialised here; release it with
 * grpcx_ccall_clear once the batch completed, or at once if this fails.
 * Returns grpc_call_start_batch's result.
 */
grpc_call_error grpcx_unary_start(grpc_call *call, grpc_byte_buffer *send,
    struct grpcx_ccall *u, void *tag);

/*
 * The client side of a server-streaming call, one batch at a time, each
 * completing with tag on the call's queue. grpcx_stream_start sends
 * metadata, the request (send, which u then owns) and the close, and
 * receives the initial metadata; u is initialised here. grpcx_stream_next
 * receives one message into u->recv (NULL once the stream ended; a
 * message still there is freed first). grpcx_stream_finish receives the
 * status into u. Release u with grpcx_ccall_clear. Each returns
 * grpc_call_start_batch's result. grpcx_stream_start_md also sends the
 * nmd metadata md (kept by the caller until the batch completes).
 */
grpc_call_error grpcx_stream_start(grpc_call *call, grpc_byte_buffer *send,
    struct grpcx_ccall *u, void *tag);
grpc_call_error grpcx_stream_start_md(grpc_call *call, grpc_byte_buffer *send,
    const grpc_metadata *md, size_t nmd, struct grpcx_ccall *u, void *tag);
grpc_call_error grpcx_stream_next(grpc_call *call, struct grpcx_ccall *u,
    void *tag);
grpc_call_error grpcx_stream_finish(grpc_call *call, struct grpcx_ccall *u,
    void *tag);

/* Frees what u holds and leaves it empty (a second call does nothing). */
void grpcx_ccall_clear(struct grpcx_ccall *u);

/* A channel and the completion queue of its blocking calls. */
struct grpcx_client;

/*
 * Opens an insecure channel to target ("host:port"). Connecting is lazy:
 * a bad target shows up as UNAVAILABLE on the first call. NULL with err
 * set on failure. grpc_init must have been called.
 */
struct grpcx_client *grpcx_client_new(const char *target, char *err,
    size_t errlen);

/* Closes the channel. Accepts NULL. */
void grpcx_client_free(struct grpcx_client *c);

/*
 * Blocking unary call of method ("/pkg.Service/Method") with a raw request
 * body, timeout_ms < 0 meaning no deadline. On OK, *resp (malloc'd, caller
 * frees) and *resp_len hold the response body. Returns the status code (also
 * in st). Safe to use from several threads on one client.
 */
int grpcx_call_bytes(struct grpcx_client *c, const char *method,
    const void *req, size_t req_len, int64_t timeout_ms, uint8_t **resp,
    size_t *resp_len, struct grpcx_status *st);

/*
 * Blocking unary call with protobuf-c messages: packs req, unpacks the
 * response as resp_desc into *resp (free with
 * protobuf_c_message_free_unpacked). A response that does not unpack gives
 * INTERNAL. Returns the status code (also in st).
 */
int grpcx_call(struct grpcx_client *c, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
    int64_t timeout_ms, ProtobufCMessage **resp, struct grpcx_status *st);

/*
 * A client over a channel made with creds (taken: released here, also on
 * failure) and args (may be NULL): SPIFFE mTLS and other credentials made
 * by their own module.
 */
struct grpcx_client *grpcx_client_new_creds(const char *target,
    grpc_channel_credentials *creds, const grpc_channel_args *args,
    char *err, size_t errlen);

#endif
