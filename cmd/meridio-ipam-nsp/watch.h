/*
 * watch.h - the nsp worker's WatchConduit client: a thread of its own
 * that holds the gRPC stream to the NSP service and hands each conduit
 * list to the worker's main thread.
 *
 * When the thread has a list, it writes a byte to wake_fd and holds the
 * list until the main thread calls watch_done(): lists are applied one by
 * one, in order.
 */
#ifndef IPAM_NSP_WATCH_H
#define IPAM_NSP_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* What the watch thread is doing, for the worker's status line. */
enum watch_state {
	WATCH_CONNECTING,		/* a call is starting */
	WATCH_WATCHING,			/* the stream delivered a message */
	WATCH_BACKOFF,			/* waiting before the next call */
};

/* A running watch (opaque). */
struct watch;

/*
 * Initialises gRPC and starts the watch thread on cfg->nsp_service. cfg
 * must stay valid until watch_stop(); wake_fd is the write end of a
 * non-blocking pipe. NULL on failure (logged).
 */
struct watch *watch_start(const struct cfg *cfg, int wake_fd);

/*
 * If the watch thread has handed over a list, points *names at its n
 * conduit names and returns true. They stay valid, and the thread waits,
 * until watch_done().
 */
bool watch_take(struct watch *w, const char *const **names, size_t *n);

/* The list of the last watch_take() is handled: read the next message. */
void watch_done(struct watch *w);

/* What the thread is doing; *retry_ms is the delay of a backoff. */
void watch_state(struct watch *w, enum watch_state *st, int64_t *retry_ms);

/*
 * Cancels the call, stops the thread (bounded wait), shuts gRPC down and
 * frees w. Accepts NULL.
 */
void watch_stop(struct watch *w);

/* Nanoseconds of configuration as milliseconds in [lo, INT32_MAX]. */
int watch_ms_of_ns(int64_t ns, int lo);

#endif
