/*
 * now: the time of a clock as one integer, for deadlines, ages and
 * timestamps (nanoseconds or milliseconds since the clock's epoch).
 */
#ifndef IPAM_NOW_H
#define IPAM_NOW_H

#include <stdint.h>
#include <time.h>

/* Clock id's time in nanoseconds (CLOCK_MONOTONIC, CLOCK_REALTIME, ...). */
int64_t now_ns(clockid_t id);

/* CLOCK_MONOTONIC in milliseconds. */
int64_t now_ms(void);

#endif
