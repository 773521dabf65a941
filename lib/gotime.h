/*
 * gotime.h - timestamps as text, as Meridio's gorm/go-sqlite3 write and read
 * them in the `updated_at` column.
 */
#ifndef IPAM_GOTIME_H
#define IPAM_GOTIME_H

#include <stdint.h>

/* Longest text gotime_format writes, NUL included. */
#define GOTIME_STRLEN 40

/* Go's zero time.Time, 0001-01-01 00:00:00 UTC, in seconds since 1970
 * (what gorm writes for an unset time). */
#define GOTIME_ZERO_S (-62135596800LL)

/* Writes ns as go-sqlite3 does: "2006-01-02 15:04:05.999999999+00:00"
 * (UTC, fraction without trailing zeros, no fraction when zero). */
void gotime_format(int64_t ns, char buf[GOTIME_STRLEN]);

/* Parses that format (and the variants Go's driver accepts: 'T' separator,
 * "Z", other offsets). Returns 0 or -1 (also outside int64 ns). */
int gotime_parse(const char *s, int64_t *ns);

/* gotime_parse for any year Go reads (0-9999): seconds since the epoch and
 * the fraction in ns (0 <= *frac < 1e9). Returns 0 or -1. */
int gotime_parse_secs(const char *s, int64_t *secs, int64_t *frac);

#endif
