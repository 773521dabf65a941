/*
 * nsp.h - the NSP watcher worker: turns the NSP service's conduit lists
 * into SyncConduits requests to the db worker.
 */
#ifndef IPAM_NSP_H
#define IPAM_NSP_H

#include "config.h"

/*
 * Runs the worker until SIGTERM arrives on sigfd (a signalfd) or the
 * supervisor closes statusfd (-1: no status channel). rundir holds the db
 * socket. Returns the exit status: IPCMSG_EXIT_PERMANENT when cfg names
 * no NSP service (static conduits are the db worker's).
 */
int nsp_run(const struct cfg *cfg, const char *rundir, int sigfd,
    int statusfd);

#endif
