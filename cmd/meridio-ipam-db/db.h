/*
 * db.h - the db worker: sole owner of the sqlite file, serialises every
 * change, answers only after its batch is committed (group commit).
 */
#ifndef IPAM_DB_H
#define IPAM_DB_H

#include "config.h"
#include "registry.h"
#include "store.h"

/*
 * Serves requests on listen_fd until SIGTERM (blocked by the caller and
 * delivered through a signalfd) or until the supervisor channel status_fd
 * closes. Returns the process exit status.
 */
int db_serve(const struct cfg *cfg, struct store *st, struct reg *reg,
    int listen_fd, int status_fd);

#endif
