/*
 * api.h - the API worker: the gRPC server of ipam.v1.Ipam and
 * grpc.health.v1.Health in front of the db worker.
 */
#ifndef IPAM_API_H
#define IPAM_API_H

#include "config.h"

/*
 * Serves on [::]:cfg->port until SIGTERM/SIGINT (which the caller has
 * blocked in every thread) or until the supervisor's status channel
 * (status_fd, -1 when there is none) closes. Forwards calls to the db
 * worker at db_path. Returns the process exit status.
 */
int api_run(const struct cfg *cfg, const char *db_path, int status_fd);

#endif
