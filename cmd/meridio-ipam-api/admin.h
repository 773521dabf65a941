/*
 * admin.h - the operators' API of the api worker: ipamadmin.v1.Admin on a
 * Unix socket in the runtime directory, and the blocking db client that it
 * and the metrics endpoint share.
 *
 * The Admin service has a grpc_server of its own, bound only to
 * unix:$IPAMD_RUNDIR/admin.sock (mode 0600), or under systemd to
 * unix:$RUNTIME_DIRECTORY/admin.sock (see admin_start): the TCP server
 * never serves it (a call there is UNIMPLEMENTED). One thread answers its calls one at
 * a time, each over a fresh connection to the db worker, so that operator
 * requests never touch the Ipam calls' connection or pending table.
 */
#ifndef IPAM_ADMIN_H
#define IPAM_ADMIN_H

#include <stddef.h>

#include <grpc/grpc.h>

#include "config.h"
#include "ipamd/v1/ipamd.pb-c.h"

/* Name of the admin socket inside the runtime directory. */
#define ADMIN_SOCK "admin.sock"

struct admin;

/*
 * Called per Reply of an admin_db_call; returning non-zero stops reading
 * (that value is returned by admin_db_call).
 */
typedef int (*admin_reply_fn)(void *arg, const Ipamd__V1__Reply *r);

/*
 * Sends req to the db worker at db_path on a new connection (Hello first)
 * and passes every Reply of it to fn, until one has more = false. Blocks
 * at most timeout_ms in all. Returns 0, fn's non-zero value, or -1 with
 * err set (connection, timeout, malformed reply, hello refused).
 */
int admin_db_call(const char *db_path, Ipamd__V1__Request *req,
    admin_reply_fn fn, void *arg, int timeout_ms, char *err, size_t errlen);

/*
 * Creates the Admin server on unix:<rundir>/admin.sock and starts its
 * thread. Under systemd ($RUNTIME_DIRECTORY set, its first entry) the
 * socket is $RUNTIME_DIRECTORY/admin.sock instead, a path that does not
 * change between starts; with cfg's admin group it is mode 0660 of that
 * group, and the directory lets the group through (0710). cfg (kept, must
 * outlive the server) also answers Info. grpc_init must have been called. The admin thread does not
 * poll for I/O: poll_cq, a queue another thread polls all the time (the
 * API's), is where the server accepts connections; it gets no event of
 * ours and must outlive admin_stop. NULL with err set on failure (nothing
 * left behind).
 */
struct admin *admin_start(const char *rundir, const char *db_path,
    const struct cfg *cfg, grpc_completion_queue *poll_cq, char *err,
    size_t errlen);

/*
 * Starts the server's shutdown: no new calls, calls in flight cancelled.
 * Does not block. The admin queues do not poll (grpcx_cq_quiet): call it
 * while the API's thread still polls, so that the shutdown completes.
 * Accepts NULL; a second call does nothing.
 */
void admin_begin_stop(struct admin *ad);

/*
 * Stops the server (admin_begin_stop if not done yet), joins its thread,
 * destroys it and removes the socket. Call before grpc_shutdown. Accepts
 * NULL.
 */
void admin_stop(struct admin *ad);

#endif
