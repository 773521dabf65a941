/*
 * mtls.h - the API worker's SPIFFE mTLS (SPIFFE_ENDPOINT_SOCKET set): the
 * SVID from the Workload API, the port's credentials made from it, and the
 * per-call check of callers' SPIFFE IDs.
 */
#ifndef IPAM_API_MTLS_H
#define IPAM_API_MTLS_H

#include <stdbool.h>
#include <stddef.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "config.h"

struct mtls;

/*
 * Starts watching the Workload API of cfg->spiffe_target (logged: each
 * SVID taken, the first failure of each outage). cfg must outlive the
 * result. Exits the worker (log_fatal) if the watcher cannot start.
 */
struct mtls *mtls_start(const struct cfg *cfg);

/* True once the first SVID arrived: the port can be served. */
bool mtls_ready(struct mtls *m);

/*
 * Credentials of the port: the current SVID (rotations reach new
 * connections), clients must chain to the current bundle. Logs the ID
 * served. NULL (logged) on failure.
 */
grpc_server_credentials *mtls_server_credentials(struct mtls *m);

/*
 * The check of one call on the port: the client certificate must carry a
 * SPIFFE ID of our trust domain (else UNAUTHENTICATED) and, when
 * check_list is true, one that IPAM_SPIFFE_ALLOWED_IDS allows (else
 * PERMISSION_DENIED naming it, logged). GRPC_STATUS_OK when the call may
 * go on; else the code, with the message in msg.
 */
grpc_status_code mtls_authorize(struct mtls *m, grpc_call *call,
    bool check_list, char *msg, size_t len);

/* Stops the watcher and frees m; the server must be gone. Accepts NULL. */
void mtls_stop(struct mtls *m);

#endif
