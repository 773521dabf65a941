/*
 * watch.h - the interface between the nsp worker and its WatchConduit
 * module (nsp-watch.so).
 *
 * The worker itself links no gRPC: mapping and relocating libgrpc and
 * what it pulls in (libcrypto, libstdc++, absl, ...) costs about 8 MB of
 * RSS, paid for nothing when the conduits are static (IPAM_CONDUITS). The
 * gRPC client of the NSP service lives in a shared module that the worker
 * dlopen()s only when IPAM_NSP_SERVICE is set. The module exports one
 * function, NSPW_ENTRY, that returns its table of operations; everything
 * else goes through the two structs below. The worker lends the module its
 * logger, so both write one log with one configuration.
 *
 * Threads: start() runs a watch thread in the module. When it has a list,
 * the module writes a byte to wake_fd and holds the list until the worker
 * calls done(): lists are applied one by one, in order.
 */
#ifndef IPAM_NSP_WATCH_H
#define IPAM_NSP_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "log.h"

/* Bumped on any change of the structs below: a module of another build
 * is refused rather than misread. */
#define NSPW_ABI 1
/* The module's one exported symbol: const struct nspw_ops *(void). */
#define NSPW_ENTRY "nspw_entry"
/* The module's file name, looked up where the worker binaries are. */
#define NSPW_FILE "nsp-watch.so"

/* What the watch thread is doing, for the worker's status line. */
enum nspw_state {
	NSPW_CONNECTING,		/* a call is starting */
	NSPW_WATCHING,			/* the stream delivered a message */
	NSPW_BACKOFF,			/* waiting before the next call */
};

/* What the worker lends the module; it outlives the module's use of it. */
struct nspw_host {
	const struct cfg *cfg;		/* configuration (read only) */
	bool tls;			/* cfg_nsp_tls_on(cfg): TLS to NSP */
	int wake_fd;			/* write end of a non-blocking pipe: a
					 * byte means take() has a list */
	void (*log_kv)(enum log_level l, const char *msg, ...);
					/* the worker's log_kv: key, value
					 * pairs, then NULL */
	void (*log_fmt)(enum log_level l, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));	/* its log_fmt */
};

/* Opaque state of a running watch (the module's). */
struct nspw;

/* The module's operations, returned by NSPW_ENTRY. */
struct nspw_ops {
	unsigned int abi;		/* NSPW_ABI the module was built with */
	size_t cfg_size;		/* sizeof(struct cfg) in the module */
	const char *version;		/* IPAM_VERSION of the module */
	/*
	 * Initialises gRPC and starts the watch thread. host must stay
	 * valid until stop(). NULL on failure (logged through host).
	 */
	struct nspw *(*start)(const struct nspw_host *host);
	/*
	 * If the watch thread has handed over a list, points *names at its
	 * n conduit names and returns true. They stay valid, and the thread
	 * waits, until done().
	 */
	bool (*take)(struct nspw *w, const char *const **names, size_t *n);
	/* The list of the last take() is handled: read the next message. */
	void (*done)(struct nspw *w);
	/* What the thread is doing; *retry_ms is the delay of a backoff. */
	void (*state)(struct nspw *w, enum nspw_state *st, int64_t *retry_ms);
	/*
	 * Cancels the call, stops the thread (bounded wait), shuts gRPC
	 * down and frees w. Accepts NULL.
	 */
	void (*stop)(struct nspw *w);
};

/* The type of NSPW_ENTRY. */
typedef const struct nspw_ops *(*nspw_entry_fn)(void);

/* Nanoseconds of configuration as milliseconds in [lo, INT32_MAX]; used
 * on both sides (the worker's db retries, the module's backoff). */
static inline int
nspw_ms_of_ns(int64_t ns, int lo)
{
	int64_t ms = ns / 1000000;

	if (ms < lo)
		return lo;
	if (ms > INT32_MAX)
		return INT32_MAX;
	return (int)ms;
}

#endif
