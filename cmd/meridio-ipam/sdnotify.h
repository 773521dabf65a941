/*
 * sdnotify.h - systemd's notify protocol (readiness, status, watchdog)
 * through libsystemd, which is loaded only when systemd asks for it.
 */
#ifndef IPAM_SDNOTIFY_H
#define IPAM_SDNOTIFY_H

#include <stddef.h>
#include <stdint.h>

/*
 * Loads libsystemd if the environment names a notify socket or a watchdog
 * (NOTIFY_SOCKET, WATCHDOG_USEC). Returns 1 when loaded, 0 when systemd
 * asked for nothing (every call below is then a no-op), -1 with err set
 * when it asked and the library or its functions cannot be loaded.
 */
int sdnotify_open(char *err, size_t errlen);

/* sd_notify(0, state); nothing when not loaded. */
void sdnotify_notify(const char *state);

/* sd_watchdog_enabled(0, usec): > 0 when a watchdog is set (usec holds
 * its interval), 0 when none or not loaded, < 0 on a bad WATCHDOG_USEC. */
int sdnotify_watchdog_enabled(uint64_t *usec);

#endif
