/*
 * gotext.h - Go's text forms of durations, booleans and times (the last as
 * Meridio's gorm/go-sqlite3 write and read `updated_at`). No logging, no
 * exit.
 */
#ifndef IPAM_GOTEXT_H
#define IPAM_GOTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Parses a Go duration ("1h30m", "500ms", "1.5s", "2us", "0"): a sequence of
 * decimal numbers with units ns, us (or µs), ms, s, m, h. Like Go it takes a
 * leading sign (callers refuse negative values) and refuses overflow.
 * Returns 0 or -1.
 */
int gotext_parse_duration(const char *s, int64_t *ns);

/* Writes a duration as Go's time.Duration.String() does ("2h0m0s",
 * "1.5s", "500ms", "0s"). 32 bytes always suffice. */
void gotext_format_duration(int64_t ns, char *buf, size_t len);

/* Parses a boolean as Go's strconv.ParseBool: 1 t T TRUE true True,
 * 0 f F FALSE false False. Returns 0 or -1. */
int gotext_parse_bool(const char *s, bool *out);

/* Longest text gotext_format_time writes, NUL included. */
#define GOTEXT_TIME_STRLEN 40

/* Go's zero time.Time, 0001-01-01 00:00:00 UTC, in seconds since 1970
 * (what gorm writes for an unset time). */
#define GOTEXT_ZERO_S (-62135596800LL)

/* Writes ns as go-sqlite3 does: "2006-01-02 15:04:05.999999999+00:00"
 * (UTC, fraction without trailing zeros, no fraction when zero). */
void gotext_format_time(int64_t ns, char buf[GOTEXT_TIME_STRLEN]);

/* Parses that format (and the variants Go's driver accepts: 'T' separator,
 * "Z", other offsets). Returns 0 or -1 (also outside int64 ns). */
int gotext_parse_time(const char *s, int64_t *ns);

/* gotext_parse_time for any year Go reads (0-9999): seconds since the epoch and
 * the fraction in ns (0 <= *frac < 1e9). Returns 0 or -1. */
int gotext_parse_time_secs(const char *s, int64_t *secs, int64_t *frac);

#endif
