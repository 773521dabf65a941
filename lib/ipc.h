/*
 * ipc.h - framing on internal Unix stream sockets.
 *
 * A frame is a 4-byte big-endian payload length followed by the payload.
 * Lengths above BOUNDS_FRAME_MAX are refused before anything is allocated.
 * This module knows bytes, not messages: it never includes generated
 * protobuf code (see ipcmsg.h for that). No logging, no exit.
 */
#ifndef IPAM_IPC_H
#define IPAM_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bounds.h"	/* BOUNDS_FRAME_MAX: hard cap on one frame's payload */

/* A buffered, non-blocking connection: input is reassembled into frames,
 * output is queued until the socket takes it. */
struct ipc_conn;

/* Wraps fd (set non-blocking here). NULL on out of memory. The connection
 * owns fd and closes it in ipc_conn_free. */
struct ipc_conn *ipc_conn_new(int fd);

/* Closes the fd and frees the buffers. Accepts NULL. */
void ipc_conn_free(struct ipc_conn *c);

/* The connection's file descriptor. */
int ipc_conn_fd(const struct ipc_conn *c);

/*
 * Reads what the socket has. Returns the number of bytes read (> 0),
 * 0 when the peer closed the connection, -1 with errno set on error
 * (EAGAIN: nothing to read now; ENOBUFS: a frame's worth is already
 * buffered, take frames out with ipc_conn_next first).
 */
ssize_t ipc_conn_fill(struct ipc_conn *c);

/*
 * Takes the next complete frame from the input. Returns 1 and sets
 * *data and *len (valid until the next call on c), 0 when no complete
 * frame is buffered, -1 (errno EMSGSIZE) when the length exceeds
 * BOUNDS_FRAME_MAX: the connection must then be closed.
 */
int ipc_conn_next(struct ipc_conn *c, const uint8_t **data, size_t *len);

/* Queues one frame. Returns 0, or -1 (EMSGSIZE, ENOMEM). */
int ipc_conn_queue(struct ipc_conn *c, const void *data, size_t len);

/* Writes queued output. Returns 0 when all is written, 1 when some is left
 * (wait for POLLOUT), -1 with errno on error. */
int ipc_conn_flush(struct ipc_conn *c);

/* True if queued output is waiting. */
bool ipc_conn_pending(const struct ipc_conn *c);

/* Blocking: writes one whole frame on fd. Returns 0 or -1 with errno. */
int ipc_send(int fd, const void *data, size_t len);

/*
 * Blocking with timeout: reads one whole frame from fd into a malloc'd
 * buffer (*data, caller frees). timeout_ms < 0 waits forever. Returns 1,
 * 0 on EOF before any byte, -1 with errno (ETIMEDOUT, EMSGSIZE, EPROTO for
 * EOF inside a frame).
 */
int ipc_recv(int fd, uint8_t **data, size_t *len, int timeout_ms);

/*
 * Binds and listens on a Unix stream socket at path (an old socket file is
 * replaced; one that still accepts connections is refused, EADDRINUSE),
 * mode 0600, close-on-exec. Returns the fd or -1 with err set.
 */
int ipc_listen(const char *path, int backlog, char *err, size_t errlen);

/* Connects to the Unix stream socket at path (close-on-exec, blocking).
 * Returns the fd or -1 with err set (err may be NULL). */
int ipc_connect(const char *path, char *err, size_t errlen);

/* The uid of the peer of a connected Unix socket (SO_PEERCRED). 0 or -1. */
int ipc_peer_uid(int fd, uid_t *uid);

#endif
