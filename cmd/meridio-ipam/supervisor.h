/*
 * supervisor.h - the supervisor's loop: runtime directory, db socket,
 * workers started from a table, restarts, systemd notification, stop.
 */
#ifndef IPAM_SUPERVISOR_H
#define IPAM_SUPERVISOR_H

#include "config.h"
#include "supervise.h"

/*
 * Runs until SIGTERM/SIGINT (returns 0 after an orderly stop) or until a
 * worker fails for good or too often, or setup fails (returns 1). Logs
 * through log.h; log_init must have been called.
 */
int sv_run(const struct cfg *cfg, const struct sup_policy *policy);

#endif
