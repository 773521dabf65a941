/*
 * gotext.h - Go's text forms of durations and booleans. No logging, no exit.
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

#endif
