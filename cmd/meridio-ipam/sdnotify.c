/*
 * sdnotify.c - libsystemd on demand.
 *
 * Only systemd reads what the supervisor notifies. Elsewhere (a container,
 * a shell, a test) libsystemd and the libraries it pulls in (gcrypt,
 * gpg-error, lz4, zstd, lzma, cap) would only cost the supervisor a large
 * share of its resident pages. So it is opened with dlopen when the
 * environment says systemd listens, and its two functions are called
 * through pointers.
 */
#include "sdnotify.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <systemd/sd-daemon.h>

/* The library's soname (libsystemd0 in Debian). */
#define SDNOTIFY_LIB "libsystemd.so.0"

static int (*sdnotify_notify_fn)(int, const char *);	/* sd_notify */
/* sd_watchdog_enabled */
static int (*sdnotify_watchdog_fn)(int, uint64_t *);

/* The pointers' types are sd-daemon.h's prototypes (typeof does not
 * evaluate: no link-time reference to the library). */
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_notify),
    __typeof__(sdnotify_notify_fn)), "sd_notify's type");
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_watchdog_enabled),
    __typeof__(sdnotify_watchdog_fn)), "sd_watchdog_enabled's type");

/* The environment variables that mean systemd wants to hear from us. */
static const char *const sdnotify_env[] = { "NOTIFY_SOCKET", "WATCHDOG_USEC" };

int
sdnotify_open(char *err, size_t errlen)
{
	const char *var = NULL;
	void *h;

	if (sdnotify_notify_fn != NULL)
		return 1;
	for (size_t i = 0; i < sizeof(sdnotify_env) / sizeof(sdnotify_env[0]);
	    i++)
		if (getenv(sdnotify_env[i]) != NULL) {
			var = sdnotify_env[i];
			break;
		}
	if (var == NULL)
		return 0;
	h = dlopen(SDNOTIFY_LIB, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		snprintf(err, errlen, "%s is set but %s cannot be loaded: %s",
		    var, SDNOTIFY_LIB, dlerror());
		return -1;
	}
	*(void **)&sdnotify_notify_fn = dlsym(h, "sd_notify");
	*(void **)&sdnotify_watchdog_fn = dlsym(h, "sd_watchdog_enabled");
	if (sdnotify_notify_fn == NULL || sdnotify_watchdog_fn == NULL) {
		snprintf(err, errlen, "%s is set but %s lacks sd_notify or "
		    "sd_watchdog_enabled", var, SDNOTIFY_LIB);
		sdnotify_notify_fn = NULL;
		sdnotify_watchdog_fn = NULL;
		dlclose(h);
		return -1;
	}
	return 1;
}

void
sdnotify_notify(const char *state)
{
	if (sdnotify_notify_fn != NULL)
		(void)sdnotify_notify_fn(0, state);
}

int
sdnotify_watchdog_enabled(uint64_t *usec)
{
	return sdnotify_watchdog_fn != NULL ? sdnotify_watchdog_fn(0, usec) : 0;
}
