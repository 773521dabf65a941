/*
 * metrics.h - the api worker's Prometheus endpoint (IPAM_METRICS_PORT).
 *
 * GET /metrics on [::]:port (dual stack; 127.0.0.1 and ::1 included),
 * served by lib/httpd's own thread, in the Prometheus text format
 * 0.0.4. Call counts and latencies are kept here (metrics_call_done, from
 * any thread); the db worker's counters (commits, batch sizes, garbage
 * collection, cooling addresses) and the pool usage per conduit and node
 * are asked from the db worker (Stats and Dump) at scrape time.
 */
#ifndef IPAM_METRICS_H
#define IPAM_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* The Ipam methods counted. */
enum metrics_method {
	METRICS_ALLOCATE,
	METRICS_RELEASE,
	METRICS_NMETHODS,
};

struct metrics;

/*
 * Counts one answered call of method m with gRPC status code and the time
 * it took (ns). Lock-free; any thread; works whether or not the endpoint
 * runs.
 */
void metrics_call_done(enum metrics_method m, int code, int64_t took_ns);

/*
 * Serves the endpoint on port (both families when the host has IPv6),
 * asking the db worker at db_path at scrape time. NULL with err set when
 * the port cannot be bound.
 */
struct metrics *metrics_start(unsigned port, const char *db_path, char *err,
    size_t errlen);

/* Stops the endpoint (waits for a scrape in progress). Accepts NULL. */
void metrics_stop(struct metrics *mx);

#endif
