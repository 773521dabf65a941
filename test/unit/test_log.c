/*
 * test_log.c - lib/log.c: every line is one strict JSON object with
 * Meridio's keys (timestamp, severity, service_id, message, version, the
 * caller's fields under extra_data), numbers stay numbers, escaping
 * survives a round trip, invalid UTF-8 is repaired, levels filter, each
 * line is one write, log_fatal exits 1.
 */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "log.h"

/* Both ends of the pipe the module writes into during a test. */
static int tl_fds[2];

/* Opens a non-blocking pipe and points the logger at its write end. */
static void
tl_setup(void)
{
	cr_assert_eq(pipe2(tl_fds, O_NONBLOCK | O_CLOEXEC), 0);
	log_init("unit", LOGL_TRACE, tl_fds[1]);
}

static void
tl_teardown(void)
{
	close(tl_fds[0]);
	close(tl_fds[1]);
	log_init("unit", LOGL_DEBUG, 2);
}

TestSuite(log, .init = tl_setup, .fini = tl_teardown);

/* Everything readable from fd until it is empty (non-blocking) or closed,
 * NUL-terminated. Caller frees. */
static char *
tl_drain(int fd)
{
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap + 1);
	ssize_t r;

	cr_assert_not_null(buf);
	for (;;) {
		if (len == cap) {
			cap *= 2;
			buf = realloc(buf, cap + 1);
			cr_assert_not_null(buf);
		}
		r = read(fd, buf + len, cap - len);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	return buf;
}

/* Parses one line as strict JSON (UTF-8 checked); fails the test if the
 * text is not exactly one object. */
static struct json_object *
tl_parse(const char *line, size_t len)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *obj;

	cr_assert_not_null(tok);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT |
	    JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, line, (int)len);
	cr_assert_eq(json_tokener_get_error(tok), json_tokener_success,
	    "not JSON: %.*s (%s)", (int)len, line,
	    json_tokener_error_desc(json_tokener_get_error(tok)));
	cr_assert_eq(tok->char_offset, (int)len, "trailing bytes in %.*s",
	    (int)len, line);
	json_tokener_free(tok);
	cr_assert(json_object_is_type(obj, json_type_object));
	return obj;
}

/* Reads exactly one line from the pipe and parses it. */
static struct json_object *
tl_one(void)
{
	char *all = tl_drain(tl_fds[0]);
	char *nl = strchr(all, '\n');
	struct json_object *obj;

	cr_assert_not_null(nl, "no line written");
	cr_assert_eq(nl[1], '\0', "more than one line: %s", all);
	obj = tl_parse(all, (size_t)(nl - all));
	free(all);
	return obj;
}

/* Asserts that obj's keys are the n of want, in that order. */
static void
tl_keys(struct json_object *obj, const char *const *want, size_t n)
{
	size_t i = 0;

	json_object_object_foreach(obj, key, val) {
		(void)val;
		cr_assert_lt(i, n, "extra key %s", key);
		cr_assert_str_eq(key, want[i]);
		i++;
	}
	cr_assert_eq(i, n);
}

/* The extra_data object of a line; fails if absent. */
static struct json_object *
tl_extra(struct json_object *obj)
{
	struct json_object *v;

	cr_assert(json_object_object_get_ex(obj, "extra_data", &v),
	    "no extra_data in %s", json_object_to_json_string(obj));
	cr_assert(json_object_is_type(v, json_type_object));
	return v;
}

/* The string value of key in obj; fails if absent or not a string. */
static const char *
tl_str(struct json_object *obj, const char *key)
{
	struct json_object *v;

	cr_assert(json_object_object_get_ex(obj, key, &v), "no key %s", key);
	cr_assert(json_object_is_type(v, json_type_string), "%s not a string",
	    key);
	return json_object_get_string(v);
}

Test(log, meridio_keys_then_extra_data_in_order)
{
	static const char *const want[] = {
		"severity", "timestamp", "service_id", "message", "version",
		"extra_data",
	};
	static const char *const extra[] = { "process", "name", "address" };
	struct json_object *obj;

	log_kv(LOGL_INFO, "allocated", "name", "pod-1", "address",
	    "10.0.0.1/24", NULL);
	obj = tl_one();
	tl_keys(obj, want, sizeof(want) / sizeof(want[0]));
	tl_keys(tl_extra(obj), extra, sizeof(extra) / sizeof(extra[0]));
	cr_assert_str_eq(tl_str(obj, "severity"), "info");
	cr_assert_str_eq(tl_str(obj, "service_id"), "Meridio-ipam");
	cr_assert_str_eq(tl_str(obj, "version"), "1.0.0");
	cr_assert_str_eq(tl_str(obj, "message"), "allocated");
	cr_assert_str_eq(tl_str(tl_extra(obj), "process"), "unit");
	cr_assert_str_eq(tl_str(tl_extra(obj), "name"), "pod-1");
	cr_assert_str_eq(tl_str(tl_extra(obj), "address"), "10.0.0.1/24");
	json_object_put(obj);
}

/* A line's timestamp is now, in Go's "2006-01-02T15:04:05.999-07:00". */
Test(log, timestamp_is_now_with_offset)
{
	struct json_object *obj;
	const char *t;
	struct tm tm;
	time_t before, after, at;
	char *end;

	setenv("TZ", "UTC", 1);
	tzset();
	before = time(NULL);
	log_kv(LOGL_INFO, "tick", NULL);
	after = time(NULL);
	obj = tl_one();
	t = tl_str(obj, "timestamp");
	cr_assert_eq(t[4], '-');
	cr_assert_eq(t[10], 'T');
	cr_assert_str_eq(t + strlen(t) - 6, "+00:00", "%s", t);
	memset(&tm, 0, sizeof(tm));
	end = strptime(t, "%Y-%m-%dT%H:%M:%S", &tm);
	cr_assert_not_null(end, "%s", t);
	cr_assert(*end == '.' || *end == '+', "%s", t);
	at = timegm(&tm);
	cr_assert(at >= before && at <= after, "time %s not now", t);
	json_object_put(obj);
}

/* Go's ".999": milliseconds without trailing zeros, none at all for a
 * whole second; the zone's offset as +hh:mm or -hh:mm. */
Test(log, timestamp_format_as_go)
{
	static const struct {
		const char *tz;
		long sec, nsec;
		const char *want;
	} cases[] = {
		{ "UTC", 1709287200, 0, "2024-03-01T10:00:00+00:00" },
		{ "UTC", 1709287200, 120000000, "2024-03-01T10:00:00.12+00:00" },
		{ "UTC", 1709287200, 999999999, "2024-03-01T10:00:00.999+00:00" },
		{ "UTC", 1709287200, 5000000, "2024-03-01T10:00:00.005+00:00" },
		{ "UTC", 1709287200, 400000, "2024-03-01T10:00:00+00:00" },
		{ "IST-5:30", 1709287200, 100000000,
		    "2024-03-01T15:30:00.1+05:30" },
		{ "EST5", 1709287200, 0, "2024-03-01T05:00:00-05:00" },
	};
	char buf[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct timespec ts = { cases[i].sec, cases[i].nsec };

		setenv("TZ", cases[i].tz, 1);
		tzset();
		log_format_time(&ts, buf, sizeof(buf));
		cr_assert_str_eq(buf, cases[i].want, "case %zu", i);
	}
	setenv("TZ", "UTC", 1);
	tzset();
}

/* Severities are Meridio's: TRACE and DEBUG are "debug", FATAL and PANIC
 * "critical"; the level names (IPAM_LOG_LEVEL) stay as they are. */
Test(log, every_level_severity)
{
	static const char *const names[] = {
		"trace", "debug", "info", "warning", "error", "fatal", "panic",
	};
	static const char *const sev[] = {
		"debug", "debug", "info", "warning", "error", "critical",
		"critical",
	};
	struct json_object *obj;

	for (int l = LOGL_TRACE; l <= LOGL_PANIC; l++) {
		cr_assert_str_eq(log_level_name((enum log_level)l), names[l]);
		log_kv((enum log_level)l, "m", NULL);
		obj = tl_one();
		cr_assert_str_eq(tl_str(obj, "severity"), sev[l]);
		json_object_put(obj);
	}
}

/* LOG_INT fields are JSON numbers, beside string fields, in order. */
Test(log, numbers_stay_numbers)
{
	struct json_object *obj, *x, *v;
	const char *const keys[] = { "process", "pid", "name", "neg", "big" };

	log_kv(LOGL_INFO, "m", LOG_INT("pid", 1234), "name", "0042",
	    LOG_INT("neg", -5), LOG_INT("big", INT64_MAX), NULL);
	obj = tl_one();
	x = tl_extra(obj);
	tl_keys(x, keys, sizeof(keys) / sizeof(keys[0]));
	cr_assert(json_object_object_get_ex(x, "pid", &v));
	cr_assert(json_object_is_type(v, json_type_int));
	cr_assert_eq(json_object_get_int64(v), 1234);
	cr_assert(json_object_object_get_ex(x, "neg", &v));
	cr_assert_eq(json_object_get_int64(v), -5);
	cr_assert(json_object_object_get_ex(x, "big", &v));
	cr_assert_eq(json_object_get_int64(v), INT64_MAX);
	cr_assert_str_eq(tl_str(x, "name"), "0042", "strings stay strings");
	json_object_put(obj);
}

Test(log, level_parse_any_case)
{
	static const struct {
		const char *text;
		int rc;
		enum log_level want;
	} cases[] = {
		{ "TRACE", 0, LOGL_TRACE }, { "debug", 0, LOGL_DEBUG },
		{ "Info", 0, LOGL_INFO }, { "WARNING", 0, LOGL_WARNING },
		{ "eRRoR", 0, LOGL_ERROR }, { "fatal", 0, LOGL_FATAL },
		{ "PANIC", 0, LOGL_PANIC }, { "", -1, 0 }, { "warn", -1, 0 },
		{ "INFO ", -1, 0 }, { "INFOX", -1, 0 }, { "3", -1, 0 },
	};
	enum log_level got;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		got = (enum log_level)99;
		cr_assert_eq(log_level_parse(cases[i].text, &got), cases[i].rc,
		    "%s", cases[i].text);
		if (cases[i].rc == 0)
			cr_assert_eq(got, cases[i].want, "%s", cases[i].text);
		else
			cr_assert_eq(got, (enum log_level)99,
			    "%s changed out", cases[i].text);
	}
	cr_assert_eq(log_level_parse(NULL, &got), -1);
}

Test(log, filters_below_min_level)
{
	char *all;
	int lines = 0;

	log_init("unit", LOGL_WARNING, tl_fds[1]);
	cr_assert_not(log_enabled(LOGL_INFO));
	cr_assert(log_enabled(LOGL_WARNING));
	cr_assert(log_enabled(LOGL_PANIC));
	log_kv(LOGL_TRACE, "no", NULL);
	log_debug("no %d", 1);
	log_info("no");
	log_warn("yes-warning");
	log_error("yes-error");
	log_kv(LOGL_INFO, "no", "k", "v", NULL);
	all = tl_drain(tl_fds[0]);
	for (char *p = all; *p != '\0'; p++)
		lines += *p == '\n';
	cr_assert_eq(lines, 2, "%s", all);
	cr_assert_null(strstr(all, "\"no"), "%s", all);
	cr_assert_not_null(strstr(all, "yes-warning"));
	cr_assert_not_null(strstr(all, "yes-error"));
	free(all);
}

Test(log, escapes_round_trip)
{
	static const char *const texts[] = {
		"say \"hi\"", "back\\slash", "two\nlines", "cr\rtab\t",
		"ctl\x01\x02\x1f\x7f", "a/b", "{\"json\":1}", "",
	};
	struct json_object *obj;
	char *all;

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		log_kv(LOGL_INFO, texts[i], "k\"\n", texts[i], NULL);
		all = tl_drain(tl_fds[0]);
		/* the only raw control byte is the final newline */
		for (char *p = all; *p != '\0'; p++) {
			if (p[1] != '\0')
				cr_assert((unsigned char)*p >= 0x20,
				    "raw control byte in %s", all);
		}
		cr_assert_eq(all[strlen(all) - 1], '\n');
		obj = tl_parse(all, strlen(all) - 1);
		cr_assert_str_eq(tl_str(obj, "message"), texts[i]);
		cr_assert_str_eq(tl_str(tl_extra(obj), "k\"\n"), texts[i]);
		json_object_put(obj);
		free(all);
	}
}

Test(log, invalid_utf8_repaired)
{
	static const struct {
		const char *in;
		const char *want;
	} cases[] = {
		{ "a\xff" "b", "a\xef\xbf\xbd" "b" },
		{ "\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd" },	/* overlong */
		{ "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
		{ "end\xe2\x82", "end\xef\xbf\xbd\xef\xbf\xbd" }, /* cut */
		{ "\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
		    "\xef\xbf\xbd" },				/* > U+10FFFF */
		{ "\x80x", "\xef\xbf\xbdx" },
		/* valid text is untouched: µ € U+1F600 */
		{ "\xc2\xb5\xe2\x82\xac\xf0\x9f\x98\x80",
		    "\xc2\xb5\xe2\x82\xac\xf0\x9f\x98\x80" },
	};
	struct json_object *obj;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		log_kv(LOGL_INFO, cases[i].in, "bad\xfekey", cases[i].in,
		    NULL);
		obj = tl_one();
		cr_assert_str_eq(tl_str(obj, "message"), cases[i].want,
		    "case %zu", i);
		cr_assert_str_eq(tl_str(tl_extra(obj), "bad\xef\xbf\xbdkey"),
		    cases[i].want, "case %zu", i);
		json_object_put(obj);
	}
}

Test(log, null_value_is_json_null)
{
	struct json_object *obj, *v;

	log_kv(LOGL_INFO, "m", "gone", NULL, NULL);
	obj = tl_one();
	cr_assert(json_object_object_get_ex(tl_extra(obj), "gone", &v));
	cr_assert_null(v);
	json_object_put(obj);
}

/* Fields live under extra_data, so they cannot touch the line's own keys;
 * one named "process" is renamed "fields.process" rather than lost. */
Test(log, fields_never_clash)
{
	struct json_object *obj;

	log_kv(LOGL_ERROR, "real", "severity", "fake", "message", "other",
	    "process", "mine", NULL);
	obj = tl_one();
	cr_assert_str_eq(tl_str(obj, "severity"), "error");
	cr_assert_str_eq(tl_str(obj, "message"), "real");
	cr_assert_str_eq(tl_str(tl_extra(obj), "severity"), "fake");
	cr_assert_str_eq(tl_str(tl_extra(obj), "message"), "other");
	cr_assert_str_eq(tl_str(tl_extra(obj), "process"), "unit");
	cr_assert_str_eq(tl_str(tl_extra(obj), "fields.process"), "mine");
	json_object_put(obj);
}

Test(log, printf_message_short_and_long)
{
	struct json_object *obj;
	char *big;
	size_t n = 5000;

	log_info("n=%d s=%s", 42, "x");
	obj = tl_one();
	cr_assert_str_eq(tl_str(obj, "message"), "n=42 s=x");
	json_object_put(obj);

	big = malloc(n + 1);
	cr_assert_not_null(big);
	memset(big, 'q', n);
	big[n] = '\0';
	log_error("<%s>", big);
	obj = tl_one();
	cr_assert_eq(strlen(tl_str(obj, "message")), n + 2);
	cr_assert_eq(tl_str(obj, "message")[n + 1], '>');
	json_object_put(obj);
	free(big);
}

/*
 * A SOCK_SEQPACKET socket keeps write boundaries: each recv returns what one
 * write sent. A long line with many fields must arrive as one record.
 */
Test(log, one_write_per_line)
{
	char buf[65536];
	int sp[2];
	ssize_t r;
	struct json_object *obj;
	char big[3000];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), 0);
	log_init("unit", LOGL_TRACE, sp[0]);
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (int i = 0; i < 3; i++)
		log_kv(LOGL_INFO, big, "a", big, "b", big, "c", "x\ny", NULL);
	for (int i = 0; i < 3; i++) {
		r = recv(sp[1], buf, sizeof(buf), MSG_DONTWAIT);
		cr_assert_gt(r, 9000, "record %d is %zd bytes", i, r);
		cr_assert_eq(buf[r - 1], '\n');
		cr_assert_null(memchr(buf, '\n', (size_t)r - 1));
		obj = tl_parse(buf, (size_t)r - 1);
		cr_assert_str_eq(tl_str(tl_extra(obj), "c"), "x\ny");
		json_object_put(obj);
	}
	r = recv(sp[1], buf, sizeof(buf), MSG_DONTWAIT);
	cr_assert_eq(r, -1);
	close(sp[0]);
	close(sp[1]);
}

/* Several processes logging at once into one pipe: every line read back is
 * whole and parses. */
Test(log, concurrent_writers_do_not_interleave)
{
	enum { WRITERS = 4, LINES = 200 };
	int p[2], status, total = 0;
	pid_t pids[WRITERS];
	char *all, *line, *save = NULL;
	struct json_object *obj;

	cr_assert_eq(pipe(p), 0);
	for (int w = 0; w < WRITERS; w++) {
		pids[w] = fork();
		cr_assert_neq(pids[w], -1);
		if (pids[w] == 0) {
			char who[8];

			close(p[0]);
			snprintf(who, sizeof(who), "w%d", w);
			log_init(who, LOGL_TRACE, p[1]);
			for (int i = 0; i < LINES; i++)
				log_kv(LOGL_INFO, "line with some length to "
				    "make interleaving likely if writes split",
				    "pad", "0123456789abcdef0123456789abcdef",
				    NULL);
			_exit(0);
		}
	}
	close(p[1]);
	all = tl_drain(p[0]);
	close(p[0]);
	for (int w = 0; w < WRITERS; w++) {
		cr_assert_eq(waitpid(pids[w], &status, 0), pids[w]);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	for (line = strtok_r(all, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		obj = tl_parse(line, strlen(line));
		cr_assert_eq(tl_str(tl_extra(obj), "process")[0], 'w');
		json_object_put(obj);
		total++;
	}
	cr_assert_eq(total, WRITERS * LINES);
	free(all);
}

/* log_fatal writes a fatal line and exits 1 (run in a child). */
Test(log, fatal_logs_and_exits_1)
{
	int status;
	pid_t pid;
	struct json_object *obj;
	struct pollfd pfd;

	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		log_init("dying", LOGL_INFO, tl_fds[1]);
		log_fatal("cannot open %s", "registry.db");
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 1);
	pfd.fd = tl_fds[0];
	pfd.events = POLLIN;
	cr_assert_eq(poll(&pfd, 1, 5000), 1);
	obj = tl_one();
	cr_assert_str_eq(tl_str(obj, "severity"), "critical");
	cr_assert_str_eq(tl_str(tl_extra(obj), "process"), "dying");
	cr_assert_str_eq(tl_str(obj, "message"), "cannot open registry.db");
	json_object_put(obj);
}
