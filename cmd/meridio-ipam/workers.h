/*
 * workers.h - the supervisor's loop: workers started from a table,
 * restarts, systemd notification, stop.
 */
#ifndef IPAM_WORKERS_H
#define IPAM_WORKERS_H

#include "config.h"
#include "restart.h"

/*
 * Runs until SIGTERM/SIGINT (returns 0 after an orderly stop) or until a
 * worker fails for good or too often, or setup fails (returns 1). Logs
 * through log.h; log_init must have been called.
 */
int workers_run(const struct cfg *cfg, const struct restart_policy *policy);

#endif
