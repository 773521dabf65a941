/*
 * log.h - one JSON object per line on stderr, with the keys of Meridio's
 * logs (its pkg/log), so that pipelines built for Meridio read ours:
 *
 * {"severity":"info","timestamp":"2026-11-26T05:29:39.123+00:00",
 *  "service_id":"Meridio-ipam","message":"...","version":"1.0.0",
 *  "extra_data":{"process":"db","<key>":"<value>",...}}
 *
 * severity is debug (TRACE, DEBUG), info, warning, error or critical
 * (FATAL, PANIC); version is that of the log format. Programs log; lib/
 * modules other than this one never do. A line below the configured level
 * costs one comparison.
 */
#ifndef IPAM_LOG_H
#define IPAM_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

enum log_level {
	LOGL_TRACE = 0,
	LOGL_DEBUG,
	LOGL_INFO,
	LOGL_WARNING,
	LOGL_ERROR,
	LOGL_FATAL,
	LOGL_PANIC,
};

/* Sets the process name written in every line, the lowest level written,
 * and the file descriptor (2 for stderr). May be called again. */
void log_init(const char *process, enum log_level min, int fd);

/* Parses a level name as Meridio does (TRACE, DEBUG, INFO, WARNING, ERROR,
 * FATAL, PANIC; any case). Returns 0 or -1. */
int log_level_parse(const char *s, enum log_level *out);

/* Lower-case name of a level. */
const char *log_level_name(enum log_level l);

/* True if a line at level l would be written. */
bool log_enabled(enum log_level l);

/* Marks a number field in log_kv's pairs; use LOG_INT. */
extern const char log_tag_int[];

/* A field whose value is written as a JSON number: LOG_INT("pid", pid). */
#define LOG_INT(key, v) log_tag_int, (const char *)(key), (long long)(v)

/*
 * Writes one line: msg, then key/value string pairs (or LOG_INT fields)
 * ending with NULL, under extra_data:
 *   log_kv(LOGL_INFO, "allocated", "name", name, LOG_INT("len", 24), NULL);
 * A NULL value is written as null.
 */
void log_kv(enum log_level l, const char *msg, ...)
    __attribute__((sentinel));

/* printf-style message without fields. */
void log_fmt(enum log_level l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_fmt(LOGL_DEBUG, __VA_ARGS__)
#define log_info(...) log_fmt(LOGL_INFO, __VA_ARGS__)
#define log_warn(...) log_fmt(LOGL_WARNING, __VA_ARGS__)
#define log_error(...) log_fmt(LOGL_ERROR, __VA_ARGS__)

/* Writes ts (local time) as Meridio's timestamps, Go's layout
 * "2006-01-02T15:04:05.999-07:00", into buf (40 bytes are enough). */
void log_format_time(const struct timespec *ts, char *buf, size_t len);

/* Logs at FATAL and exits with status 1. */
void log_fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

#endif
