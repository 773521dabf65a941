/*
 * tsrv.h - a small gRPC C core server for unit tests, run in a thread of
 * the test on a free loopback port. Its methods: Echo answers the request
 * bytes; Fail answers INVALID_ARGUMENT "bad thing"; Slow waits 500 ms
 * before answering OK; Garbage answers OK with bytes that are not a Child;
 * Who answers OK with the caller's ID from tsrv_who as the status message.
 */
#ifndef IPAM_TEST_TSRV_H
#define IPAM_TEST_TSRV_H

#include <grpc/grpc.h>

enum tsrv_method { TS_ECHO, TS_FAIL, TS_SLOW, TS_GARBAGE, TS_WHO, TS_N };

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

extern const char *const tsrv_paths[TS_N];	/* method names */
extern char tsrv_target[64];			/* "127.0.0.1:<port>" */
extern int tsrv_shutdown_tag;			/* tag of shutdown_and_notify */
/* Who's caller ID (spiffe_peer_id); NULL or failing: "no id". */
extern int (*tsrv_who)(grpc_call *call, char *buf, size_t len);

/* Starts the server with creds (taken); grpc_init is called for it. */
void tsrv_start_creds(grpc_server_credentials *creds);

/* Starts it plaintext. */
void tsrv_start(void);

/* Answers an arrived call by its method; frees a call. */
void tsrv_answer(struct tsrv_call *c);
void tsrv_free(struct tsrv_call *c);

/* Stops and destroys it, then grpc_shutdown. */
void tsrv_stop(void);

#endif
