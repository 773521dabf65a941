/*
 * log.c - one JSON object per line, written with a single write(2), in the
 * shape of Meridio's logs (zap's JSON encoder as Meridio's pkg/log sets it
 * up: severity, timestamp, service_id, message, version, extra_data).
 *
 * The line is built with json-c (so escaping is json-c's, not ours) after
 * every string has been made valid UTF-8: an invalid byte becomes U+FFFD, as
 * Go's encoding/json does, so every line parses with a strict JSON reader.
 * The whole line, newline included, goes out in one write so that lines of
 * several processes sharing one stderr do not interleave.
 */
#include "log.h"
#include "utf8.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

/* Meridio's service_id of its IPAM, and the version of its log format. */
#define LOG_SERVICE_ID "Meridio-ipam"
#define LOG_FORMAT_VERSION "1.0.0"

/* Longest process name kept; longer names are cut. */
#define LOG_PROCESS_MAX 64

/* Module state, set by log_init and read by every log call. */
static struct {
	char process[LOG_PROCESS_MAX];	/* "process" field of every line */
	enum log_level min;		/* lowest level written */
	int fd;				/* where lines go (2 = stderr) */
	int initialised;		/* 0 until log_init ran: the
					 * program's name stands in */
} log_state = {
	.process = "",
	.min = LOGL_DEBUG,
	.fd = 2,
	.initialised = 0,
};

/* Level names, lower case, indexed by enum log_level. */
static const char *const log_names[] = {
	[LOGL_TRACE] = "trace",
	[LOGL_DEBUG] = "debug",
	[LOGL_INFO] = "info",
	[LOGL_WARNING] = "warning",
	[LOGL_ERROR] = "error",
	[LOGL_FATAL] = "fatal",
	[LOGL_PANIC] = "panic",
};

#define LOG_NLEVELS (sizeof(log_names) / sizeof(log_names[0]))

/* Meridio's severities (its levelEncoder), indexed by enum log_level: its
 * TRACE is a zap debug level, FATAL and PANIC are critical. */
static const char *const log_severities[] = {
	[LOGL_TRACE] = "debug",
	[LOGL_DEBUG] = "debug",
	[LOGL_INFO] = "info",
	[LOGL_WARNING] = "warning",
	[LOGL_ERROR] = "error",
	[LOGL_FATAL] = "critical",
	[LOGL_PANIC] = "critical",
};

const char log_tag_int[] = "log: number field";

void
log_init(const char *process, enum log_level min, int fd)
{
	if (process == NULL)
		process = "";
	snprintf(log_state.process, sizeof(log_state.process), "%s", process);
	if ((unsigned)min >= LOG_NLEVELS)
		min = LOGL_DEBUG;
	log_state.min = min;
	log_state.fd = fd;
	log_state.initialised = 1;
}

int
log_level_parse(const char *s, enum log_level *out)
{
	size_t i;

	if (s == NULL)
		return -1;
	for (i = 0; i < LOG_NLEVELS; i++) {
		if (strcasecmp(s, log_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

const char *
log_level_name(enum log_level l)
{
	if ((unsigned)l >= LOG_NLEVELS)
		return "unknown";
	return log_names[l];
}

bool
log_enabled(enum log_level l)
{
	return l >= log_state.min;
}

/*
 * A json-c string holding s made valid UTF-8: each byte that does not start
 * a valid sequence is replaced by U+FFFD. Valid text is passed through as is.
 * NULL on out of memory.
 */
static struct json_object *
log_jstring(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), i, k, out = 0;
	struct json_object *j;
	char *buf;

	if (utf8_valid(s, n))
		return json_object_new_string_len(s, (int)n);
	buf = malloc(3 * n + 1);
	if (buf == NULL)
		return NULL;
	for (i = 0; i < n; i += k) {
		k = utf8_seq(u + i, n - i);
		if (k == 0) {
			buf[out++] = (char)0xef;
			buf[out++] = (char)0xbf;
			buf[out++] = (char)0xbd;
			k = 1;
		} else {
			memcpy(buf + out, s + i, k);
			out += k;
		}
	}
	j = json_object_new_string_len(buf, (int)out);
	free(buf);
	return j;
}

/* Writes all of buf to fd in as few write calls as the kernel allows
 * (one for any line a pipe or terminal takes whole), retrying on EINTR. */
static void
log_write_all(int fd, const char *buf, size_t len)
{
	ssize_t w;

	while (len > 0) {
		w = write(fd, buf, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		buf += w;
		len -= (size_t)w;
	}
}

/* Go's layout "2006-01-02T15:04:05.999-07:00" (Meridio's timeEncoder):
 * local time, milliseconds cut (not rounded) and without trailing zeros,
 * the zone's offset. */
void
log_format_time(const struct timespec *ts, char *buf, size_t len)
{
	char frac[8] = "";
	struct tm tm;
	unsigned ms = (unsigned)(ts->tv_nsec / 1000000L) % 1000;
	long off;
	int n;

	localtime_r(&ts->tv_sec, &tm);
	if (ms > 0) {
		frac[0] = '.';
		frac[1] = (char)('0' + ms / 100);
		frac[2] = (char)('0' + ms / 10 % 10);
		frac[3] = (char)('0' + ms % 10);
		for (n = 3; frac[n] == '0'; n--)
			frac[n] = '\0';
	}
	off = tm.tm_gmtoff / 60;
	n = snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d%s%c%02ld:%02ld",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, frac, off < 0 ? '-' : '+',
	    (off < 0 ? -off : off) / 60, (off < 0 ? -off : off) % 60);
	if (n < 0 && len > 0)
		buf[0] = '\0';
}

/* Adds key = value to obj; a NULL value becomes JSON null. Returns 0 or -1. */
static int
log_add(struct json_object *obj, const char *key, const char *value)
{
	struct json_object *v = NULL;

	if (value != NULL) {
		v = log_jstring(value);
		if (v == NULL)
			return -1;
	}
	if (json_object_object_add(obj, key, v) != 0) {
		json_object_put(v);
		return -1;
	}
	return 0;
}

/*
 * Adds a caller's field: a string value, or (num not NULL) the number
 * *num. A key "process", which the line itself uses, is renamed
 * "fields.process" (as logrus does) rather than lost; an invalid UTF-8 key
 * is repaired like a value.
 */
static int
log_add_field(struct json_object *obj, const char *key, const char *value,
    const long long *num)
{
	struct json_object *jkey;
	const char *k;
	int rc;

	if (key == NULL)
		key = "";
	if (strcmp(key, "process") == 0)
		key = "fields.process";
	jkey = log_jstring(key);
	if (jkey == NULL)
		return -1;
	k = json_object_get_string(jkey);
	if (num != NULL) {
		struct json_object *v = json_object_new_int64(*num);

		rc = v != NULL && json_object_object_add(obj, k, v) == 0 ? 0 :
		    -1;
		if (rc != 0)
			json_object_put(v);
	} else {
		rc = log_add(obj, k, value);
	}
	json_object_put(jkey);
	return rc;
}

/*
 * Builds and writes one line: the fixed fields, then under extra_data the
 * process and the pairs read from ap (key, value, ..., NULL; LOG_INT
 * fields as numbers). On out of memory a fixed line says so instead.
 */
static void
log_line(enum log_level l, const char *msg, va_list ap)
{
	static const char oom[] = "{\"severity\":\"error\",\"service_id\":\""
	    LOG_SERVICE_ID "\",\"message\":\"log: out of memory\",\"version\""
	    ":\"" LOG_FORMAT_VERSION "\",\"extra_data\":{}}\n";
	struct json_object *obj, *extra;
	const char *key, *value, *text;
	struct timespec now;
	char when[40];
	char *line;
	long long num;
	size_t len;

	obj = json_object_new_object();
	if (obj == NULL)
		goto fail;
	clock_gettime(CLOCK_REALTIME, &now);
	log_format_time(&now, when, sizeof(when));
	if (log_add(obj, "severity", (unsigned)l < LOG_NLEVELS ?
	    log_severities[l] : "error") != 0 ||
	    log_add(obj, "timestamp", when) != 0 ||
	    log_add(obj, "service_id", LOG_SERVICE_ID) != 0 ||
	    log_add(obj, "message", msg != NULL ? msg : "") != 0 ||
	    log_add(obj, "version", LOG_FORMAT_VERSION) != 0)
		goto fail_obj;
	if ((extra = json_object_new_object()) == NULL)
		goto fail_obj;
	if (json_object_object_add(obj, "extra_data", extra) != 0) {
		json_object_put(extra);
		goto fail_obj;
	}
	if (log_add(extra, "process", log_state.initialised ?
	    log_state.process : program_invocation_short_name) != 0)
		goto fail_obj;
	while ((key = va_arg(ap, const char *)) != NULL) {
		if (key == log_tag_int) {
			key = va_arg(ap, const char *);
			num = va_arg(ap, long long);
			if (log_add_field(extra, key, NULL, &num) != 0)
				goto fail_obj;
			continue;
		}
		value = va_arg(ap, const char *);
		if (log_add_field(extra, key, value, NULL) != 0)
			goto fail_obj;
	}

	text = json_object_to_json_string_ext(obj,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (text == NULL)
		goto fail_obj;
	len = strlen(text);
	line = malloc(len + 1);
	if (line == NULL)
		goto fail_obj;
	memcpy(line, text, len);
	line[len] = '\n';
	log_write_all(log_state.fd, line, len + 1);
	free(line);
	json_object_put(obj);
	return;

fail_obj:
	json_object_put(obj);
fail:
	log_write_all(log_state.fd, oom, sizeof(oom) - 1);
}

void
log_kv(enum log_level l, const char *msg, ...)
{
	va_list ap;

	if (!log_enabled(l))
		return;
	va_start(ap, msg);
	log_line(l, msg, ap);
	va_end(ap);
}

/* Formats a printf-style message and writes it as a line without fields
 * (the format itself when out of memory). */
static void
log_vfmt(enum log_level l, const char *fmt, va_list ap)
{
	char *msg;

	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	log_kv(l, msg != NULL ? msg : fmt, (const char *)NULL);
	free(msg);
}

void
log_fmt(enum log_level l, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(l))
		return;
	va_start(ap, fmt);
	log_vfmt(l, fmt, ap);
	va_end(ap);
}

void
log_fatal(const char *fmt, ...)
{
	va_list ap;

	if (log_enabled(LOGL_FATAL)) {
		va_start(ap, fmt);
		log_vfmt(LOGL_FATAL, fmt, ap);
		va_end(ap);
	}
	exit(1);
}
