/*
 * nsp.h - the NSP watcher worker: turns the NSP service's conduit lists
 * (or IPAM_CONDUITS) into SyncConduits requests to the db worker.
 */
#ifndef IPAM_NSP_H
#define IPAM_NSP_H

#include "config.h"

/*
 * Runs the worker until SIGTERM/SIGINT arrives on sigfd (a signalfd) or
 * the supervisor closes statusfd (-1: no status channel). rundir holds the
 * db socket. Calls grpc_init itself when cfg names an NSP service. Returns
 * the exit status.
 */
int nsp_run(const struct cfg *cfg, const char *rundir, int sigfd,
    int statusfd);

#endif
