/*
 * test_gotext.c - lib/gotext.c: Go's duration and bool grammars, the
 * duration text, and go-sqlite3's time text (written, variants read, ones
 * refused, a round trip).
 */
#include <criterion/criterion.h>

#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include "gotext.h"

#define NS_S 1000000000LL
#define NS_M (60 * NS_S)
#define NS_H (60 * NS_M)

/* Go's time.ParseDuration: accepted texts and their value in ns. */
Test(gotext, duration_good)
{
	static const struct {
		const char *text;
		int64_t ns;
	} cases[] = {
		{ "0", 0 }, { "+0", 0 }, { "-0", 0 }, { "0s", 0 },
		{ "1ns", 1 }, { "2us", 2000 }, { "3\xc2\xb5s", 3000 },
		{ "3\xce\xbcs", 3000 }, { "500ms", 500000000 },
		{ "2s", 2 * NS_S }, { "1m", NS_M }, { "2h", 2 * NS_H },
		{ "1h30m", NS_H + 30 * NS_M }, { "1.5h", NS_H + 30 * NS_M },
		{ ".5s", NS_S / 2 }, { "1.s", NS_S }, { "1.5s", 1500000000 },
		{ "1h2m3s4ms5us6ns", NS_H + 2 * NS_M + 3 * NS_S + 4005006 },
		{ "3m3m", 6 * NS_M }, { "-1.5s", -1500000000 },
		{ "+2m", 2 * NS_M }, { "0.000000001s", 1 },
		{ "1.0000000001s", NS_S },	/* beyond ns precision */
		/* Go drops a fraction worth less than one ns, so this is
		 * the largest value, not an overflow */
		{ "9223372036854775807.5ns", INT64_MAX },
		{ "9223372036854775807ns", INT64_MAX },
		{ "-9223372036854775808ns", INT64_MIN },
		{ "2562047h47m16.854775807s", INT64_MAX },
		{ "0.1234567890123456789012345678901234567890s", 123456789 },
	};
	int64_t ns;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ns = 42;
		cr_assert_eq(gotext_parse_duration(cases[i].text, &ns), 0,
		    "%s refused", cases[i].text);
		cr_assert_eq(ns, cases[i].ns, "%s: %lld, want %lld",
		    cases[i].text, (long long)ns, (long long)cases[i].ns);
	}
}

Test(gotext, duration_bad)
{
	static const char *const bad[] = {
		"", "+", "-", "1", "10", "s", ".s", "..5s", "1..5s", "1.5.s",
		"5sec", "5 s", " 5s", "5s ", "1h 30m", "1H", "1S", "5mss",
		"5x", "0x10s", "1e3s", "-+1s", "--1s", "1s-1s", "\xb5s", "1\xb5",
		"9223372036854775808ns", "100000000000000000000000000000.5ns",
		"2562047h47m16.854775808s", "2562048h", "9999999999999999999h",
		"100000000000000000000ns", "-9223372036854775809ns", "NaNs",
		"infs", "0.0", "00",
	};
	int64_t ns;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ns = 42;
		cr_assert_eq(gotext_parse_duration(bad[i], &ns), -1,
		    "\"%s\" accepted as %lld", bad[i], (long long)ns);
		cr_assert_eq(ns, 42, "\"%s\" changed out", bad[i]);
	}
	cr_assert_eq(gotext_parse_duration(NULL, &ns), -1);
}

/* Go's time.Duration.String() for the values we print. */
Test(gotext, duration_format)
{
	static const struct {
		int64_t ns;
		const char *text;
	} cases[] = {
		{ 0, "0s" }, { 1, "1ns" }, { 999, "999ns" },
		{ 1000, "1\xc2\xb5s" }, { 1500, "1.5\xc2\xb5s" },
		{ 1000000, "1ms" }, { 1100000, "1.1ms" },
		{ 500000000, "500ms" }, { NS_S, "1s" }, { 1500000000, "1.5s" },
		{ 30 * NS_S, "30s" }, { NS_M, "1m0s" },
		{ 90 * NS_S, "1m30s" }, { 40 * NS_M, "40m0s" },
		{ 2 * NS_H, "2h0m0s" }, { NS_H + 1, "1h0m0.000000001s" },
		{ -1500000000, "-1.5s" }, { -1, "-1ns" },
		{ INT64_MAX, "2562047h47m16.854775807s" },
		{ INT64_MIN, "-2562047h47m16.854775808s" },
	};
	char buf[40];
	int64_t back;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		gotext_format_duration(cases[i].ns, buf, sizeof(buf));
		cr_assert_str_eq(buf, cases[i].text);
		cr_assert_eq(gotext_parse_duration(buf, &back), 0, "%s", buf);
		cr_assert_eq(back, cases[i].ns, "%s", buf);
	}
	/* a short buffer is cut, not overrun */
	memset(buf, '#', sizeof(buf));
	gotext_format_duration(2 * NS_H, buf, 4);
	cr_assert_str_eq(buf, "2h0");
	cr_assert_eq(buf[4], '#');
}

Test(gotext, bool_grammar)
{
	static const char *const yes[] = { "1", "t", "T", "TRUE", "true",
		"True" };
	static const char *const no[] = { "0", "f", "F", "FALSE", "false",
		"False" };
	static const char *const bad[] = { "", "yes", "no", "on", "off",
		"tRUE", "FaLse", "2", "true ", " 1", "y", "01" };
	bool b;

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		b = false;
		cr_assert_eq(gotext_parse_bool(yes[i], &b), 0, "%s", yes[i]);
		cr_assert(b, "%s", yes[i]);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		b = true;
		cr_assert_eq(gotext_parse_bool(no[i], &b), 0, "%s", no[i]);
		cr_assert_not(b, "%s", no[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		b = true;
		cr_assert_eq(gotext_parse_bool(bad[i], &b), -1, "%s", bad[i]);
		cr_assert(b, "%s changed out", bad[i]);
	}
	cr_assert_eq(gotext_parse_bool(NULL, &b), -1);
}

/* 2024-03-01 10:00:00 UTC in seconds since the epoch. */
#define T2024 1709287200LL

static void
assert_format(int64_t ns, const char *want)
{
	char buf[GOTEXT_TIME_STRLEN];

	gotext_format_time(ns, buf);
	cr_assert_str_eq(buf, want, "ns %" PRId64, ns);
}

Test(gotext, time_format)
{
	assert_format(T2024 * NS_S, "2024-03-01 10:00:00+00:00");
	assert_format(T2024 * NS_S + 1, "2024-03-01 10:00:00.000000001+00:00");
	assert_format(T2024 * NS_S + 999999999,
	    "2024-03-01 10:00:00.999999999+00:00");
	assert_format(T2024 * NS_S + 500000000, "2024-03-01 10:00:00.5+00:00");
	assert_format(T2024 * NS_S + 120000, "2024-03-01 10:00:00.00012+00:00");
	assert_format(0, "1970-01-01 00:00:00+00:00");
	assert_format(-1, "1969-12-31 23:59:59.999999999+00:00");
	assert_format(-NS_S, "1969-12-31 23:59:59+00:00");
	assert_format(INT64_MAX, "2262-04-11 23:47:16.854775807+00:00");
	assert_format(INT64_MIN, "1677-09-21 00:12:43.145224192+00:00");
}

static void
assert_parse(const char *s, int64_t want)
{
	int64_t got = 0;

	cr_assert_eq(gotext_parse_time(s, &got), 0, "refused \"%s\"", s);
	cr_assert_eq(got, want, "\"%s\": %" PRId64 " != %" PRId64, s, got,
	    want);
}

Test(gotext, time_parse_variants)
{
	assert_parse("2024-03-01 10:00:00+00:00", T2024 * NS_S);
	assert_parse("2024-03-01 10:00:00.123456789+00:00",
	    T2024 * NS_S + 123456789);
	assert_parse("2024-03-01T10:00:00.5+00:00", T2024 * NS_S + 500000000);
	assert_parse("2024-03-01 10:00:00Z", T2024 * NS_S);
	assert_parse("2024-03-01T10:00:00.25Z", T2024 * NS_S + 250000000);
	assert_parse("2024-03-01 10:00:00", T2024 * NS_S);
	assert_parse("2024-03-01 10:00:00.000000001", T2024 * NS_S + 1);
	assert_parse("2024-03-01 12:30:00+02:30", T2024 * NS_S);
	assert_parse("2024-03-01 05:00:00-05:00", T2024 * NS_S);
	assert_parse("2024-03-01 10:00", T2024 * NS_S);
	assert_parse("2024-03-01T10:00", T2024 * NS_S);
	assert_parse("2024-03-01", (T2024 - 36000) * NS_S);
	assert_parse("2024-03-01 9:00:00+00:00", (T2024 - 3600) * NS_S);
	assert_parse("2024-03-01 10:00:00,5+00:00", T2024 * NS_S + 500000000);
	/* Go cuts a fraction after nine digits */
	assert_parse("2024-03-01 10:00:00.1234567891+00:00",
	    T2024 * NS_S + 123456789);
	assert_parse("2024-02-29 00:00:00", (T2024 - 86400 - 36000) * NS_S);
	assert_parse("1969-12-31 23:59:59.999999999+00:00", -1);
	assert_parse("1677-09-21 00:12:43.145224192+00:00", INT64_MIN);
	assert_parse("2262-04-11 23:47:16.854775807+00:00", INT64_MAX);
}

Test(gotext, time_parse_rejects)
{
	static const char *const bad[] = {
		"", "now", "2024-3-01", "24-03-01", "2024-13-01",
		"2024-00-10", "2023-02-29", "2024-04-31", "2024-03-00",
		"2024-03-01 24:00:00", "2024-03-01 10:60:00",
		"2024-03-01 10:00:60", "2024-03-01 10:00:00 ",
		"2024-03-01 10:00:00+0000", "2024-03-01 10:00:00+25:00",
		"2024-03-01 10:00:00.", "2024-03-01 10:00:00.x",
		"2024-03-01 10:00+00:00", "2024-03-01X10:00:00",
		"2024-03-01 10:00:00+00:00junk", "2262-04-11 23:47:16.854775808",
		"1677-09-21 00:12:43.145224191", "1000-01-01", "9999-12-31",
		"2024-03-01 10:00:00ZZ",
	};
	int64_t ns = 77;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(gotext_parse_time(bad[i], &ns), -1, "accepted \"%s\"",
		    bad[i]);
		cr_assert_eq(ns, 77, "\"%s\" wrote a result", bad[i]);
	}
	cr_assert_eq(gotext_parse_time(NULL, &ns), -1);
}

/* Format then parse gives the value back over the whole int64 range, on
 * both sides of 1970, with and without a fraction. */
Test(gotext, time_round_trip)
{
	uint64_t x = 88172645463325252ULL;	/* xorshift state */
	char buf[GOTEXT_TIME_STRLEN];
	int64_t got;

	for (int i = 0; i < 200000; i++) {
		int64_t ns;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		ns = (int64_t)x;
		if (ns < INT64_MIN + NS_S || ns > INT64_MAX - NS_S)
			ns /= 2;	/* keep the variants below in range */
		if (i % 4 == 1)
			ns -= ns % NS_S;		/* zero fraction */
		else if (i % 4 == 2)
			ns = ns / NS_S * NS_S + 1;	/* 1 ns */
		else if (i % 4 == 3)
			ns = ns / NS_S * NS_S + 999999999 * (ns < 0 ? -1 : 1);
		gotext_format_time(ns, buf);
		cr_assert_eq(gotext_parse_time(buf, &got), 0, "%s", buf);
		cr_assert_eq(got, ns, "%s", buf);
	}
}

/* The seconds form reaches the years int64 ns cannot: Go's zero time and
 * the last day Go reads. */
Test(gotext, parse_secs_far_years)
{
	int64_t secs = 0, frac = 1;

	cr_assert_eq(gotext_parse_time_secs("0001-01-01 00:00:00+00:00", &secs,
	    &frac), 0);
	cr_assert_eq(secs, GOTEXT_ZERO_S);
	cr_assert_eq(frac, 0);
	cr_assert_eq(gotext_parse_time_secs("9999-12-31T23:59:59.5Z", &secs,
	    &frac), 0);
	cr_assert_eq(secs, 253402300799LL);
	cr_assert_eq(frac, 500000000);
	cr_assert_eq(gotext_parse_time_secs("0000-02-29", &secs, &frac), 0,
	    "year 0 is a leap year");
	cr_assert_eq(gotext_parse_time_secs("1900-02-29", &secs, &frac), -1);
	cr_assert_eq(gotext_parse_time("0001-01-01 00:00:00+00:00", &secs), -1);
}
