/*
 * admin.h - the operators' API of the api worker: ipamadmin.v1.Admin on a
 * Unix socket in the runtime directory only (the TCP port answers it
 * UNIMPLEMENTED), and the blocking db client that it and the metrics
 * endpoint share.
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
 * Creates the Admin server on unix:<rundir>/admin.sock (mode 0600) and
 * starts its thread. Under systemd ($RUNTIME_DIRECTORY set, its first
 * entry) the socket is $RUNTIME_DIRECTORY/admin.sock, a path that does not
 * change between starts; with cfg's admin group it is mode 0660 of that
 * group and the directory 0710. cfg (kept, must outlive the server) also
 * answers Info. grpc_init must have been called. The server accepts
 * connections through poll_cq, a queue the API's thread polls all the
 * time; it must outlive admin_stop. NULL with err set on failure (nothing
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
