/*
 * nsp.h - the NSP watcher worker: turns the NSP service's conduit lists
 * (or IPAM_CONDUITS) into SyncConduits requests to the db worker.
 */
#ifndef IPAM_NSP_H
#define IPAM_NSP_H

#include <stddef.h>

#include "config.h"
#include "watch.h"

/* Room for the path of the watch module. */
#define NSP_PATH_MAX 4096

/*
 * Runs the worker until SIGTERM/SIGINT arrives on sigfd (a signalfd) or
 * the supervisor closes statusfd (-1: no status channel). rundir holds the
 * db socket. When cfg names an NSP service, loads the watch module
 * (nsp_watch_load), which calls grpc_init itself. Returns the exit status:
 * IPCMSG_EXIT_PERMANENT when the module cannot be loaded.
 */
int nsp_run(const struct cfg *cfg, const char *rundir, int sigfd,
    int statusfd);

/*
 * Finds NSPW_FILE where the supervisor finds the worker binaries: beside
 * this executable, in ../libexec/meridio-ipam relative to it, else in
 * IPAM_LIBEXECDIR. Loads the first that exists and returns its
 * operations, with its path in path. NULL when none exists or the one
 * found does not load, lacks NSPW_ENTRY or was built for another
 * interface; err then says which, in one line.
 */
const struct nspw_ops *nsp_watch_load(char *path, size_t pathlen, char *err,
    size_t errlen);

#endif
