/*
 * sdnotify.c - libsystemd on demand.
 *
 * Only systemd reads what the supervisor notifies. Elsewhere (a container,
 * a shell, a test) libsystemd and the libraries it pulls in (gcrypt,
 * gpg-error, lz4, zstd, lzma, cap) would only cost the supervisor ~1 MB of
 * resident pages, a third of its memory. So it is opened with dlopen when
 * the environment says systemd listens, and its two functions are called
 * through pointers.
 */
#include "sdnotify.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <systemd/sd-daemon.h>

/* The library's soname (libsystemd0 in Debian). */
#define SDN_LIB "libsystemd.so.0"

static int (*sdn_notify_fn)(int, const char *);	/* sd_notify */
static int (*sdn_watchdog_fn)(int, uint64_t *);	/* sd_watchdog_enabled */

/* The pointers' types are sd-daemon.h's prototypes (typeof does not
 * evaluate: no link-time reference to the library). */
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_notify),
    __typeof__(sdn_notify_fn)), "sd_notify's type");
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_watchdog_enabled),
    __typeof__(sdn_watchdog_fn)), "sd_watchdog_enabled's type");

/* The environment variables that mean systemd wants to hear from us. */
static const char *const sdn_env[] = { "NOTIFY_SOCKET", "WATCHDOG_USEC" };

int
sdn_open(char *err, size_t errlen)
{
	const char *var = NULL;
	void *h;

	if (sdn_notify_fn != NULL)
		return 1;
	for (size_t i = 0; i < sizeof(sdn_env) / sizeof(sdn_env[0]); i++)
		if (getenv(sdn_env[i]) != NULL) {
			var = sdn_env[i];
			break;
		}
	if (var == NULL)
		return 0;
	h = dlopen(SDN_LIB, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		snprintf(err, errlen, "%s is set but %s cannot be loaded: %s",
		    var, SDN_LIB, dlerror());
		return -1;
	}
	*(void **)&sdn_notify_fn = dlsym(h, "sd_notify");
	*(void **)&sdn_watchdog_fn = dlsym(h, "sd_watchdog_enabled");
	if (sdn_notify_fn == NULL || sdn_watchdog_fn == NULL) {
		snprintf(err, errlen, "%s is set but %s lacks sd_notify or "
		    "sd_watchdog_enabled", var, SDN_LIB);
		sdn_notify_fn = NULL;
		sdn_watchdog_fn = NULL;
		dlclose(h);
		return -1;
	}
	return 1;
}

void
sdn_notify(const char *state)
{
	if (sdn_notify_fn != NULL)
		(void)sdn_notify_fn(0, state);
}

int
sdn_watchdog_enabled(uint64_t *usec)
{
	return sdn_watchdog_fn != NULL ? sdn_watchdog_fn(0, usec) : 0;
}
