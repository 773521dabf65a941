/*
 * hsock.h - the health socket (IPAM_HEALTH_SOCKET): grpc.health.v1 in
 * plaintext on a Unix socket, where Meridio's exec probes look
 * (`grpc_health_probe -addr=unix:///tmp/health.sock`).
 *
 * A grpc_server of its own, bound to that socket only, with nothing but
 * the methods the caller registers through hsock_open: a call to any
 * other method (Ipam/Allocate) reaches the caller as an unregistered
 * call, never as an Ipam call. It shares the caller's completion queue,
 * so its calls are served by the same code, with the same statuses, as
 * the Health calls of the port.
 */
#ifndef IPAM_HSOCK_H
#define IPAM_HSOCK_H

#include <stdbool.h>
#include <stddef.h>

#include <grpc/grpc.h>

struct hsock;

/* What hsock_open found at the path. */
enum hsock_rc {
	HSOCK_OK = 0,		/* bound: the socket is ours */
	HSOCK_LIVE = 1,		/* another process answers on it */
	HSOCK_ERROR = -1,	/* cannot be used (err says why) */
};

/*
 * Makes the server for the socket at path: a socket file nobody listens
 * on (left by a process that died) is replaced; anything else at the path
 * is left alone (HSOCK_LIVE when a process accepts connections there,
 * HSOCK_ERROR when it is no socket or cannot be removed). The server gets
 * cq and the n methods in paths ("/grpc.health.v1.Health/Check", ...)
 * registered as GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER; it is bound
 * but not started. On HSOCK_OK *out is set; otherwise err says what is at
 * the path (naming it), and nothing is left behind.
 */
enum hsock_rc hsock_open(const char *path, grpc_completion_queue *cq,
    const char *const *paths, size_t n, struct hsock **out, char *err,
    size_t errlen);

/* Starts serving. */
void hsock_start(struct hsock *hs);

/* The server (to post requests on) and the handle of method i. */
grpc_server *hsock_server(const struct hsock *hs);
void *hsock_method(const struct hsock *hs, size_t i);

/*
 * The orderly stop: no new calls; the shutdown tag arrives on the
 * completion queue given to hsock_open. Accepts NULL; once.
 */
void hsock_begin_stop(struct hsock *hs);

/* True if tag is hs's shutdown tag (it is then noted as arrived). */
bool hsock_take_tag(struct hsock *hs, void *tag);

/* True if hs is NULL or its shutdown tag arrived. */
bool hsock_stopped(const struct hsock *hs);

/* Cancels the calls still alive on it. Accepts NULL. */
void hsock_cancel_all(struct hsock *hs);

/*
 * Destroys the server (after its shutdown tag arrived and the queue was
 * drained, as for any server) and removes the socket file if it is still
 * the one bound here. Accepts NULL.
 */
void hsock_free(struct hsock *hs);

#endif
