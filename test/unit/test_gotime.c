/*
 * test_gotime.c - go-sqlite3's time text: the format written, the variants
 * read, the ones refused, and a round trip.
 */
#include <criterion/criterion.h>

#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include "gotime.h"

/* 2024-03-01 10:00:00 UTC in seconds since the epoch. */
#define T2024 1709287200LL
#define NS 1000000000LL

static void
assert_format(int64_t ns, const char *want)
{
	char buf[GOTIME_STRLEN];

	gotime_format(ns, buf);
	cr_assert_str_eq(buf, want, "ns %" PRId64, ns);
}

Test(gotime, time_format)
{
	assert_format(T2024 * NS, "2024-03-01 10:00:00+00:00");
	assert_format(T2024 * NS + 1, "2024-03-01 10:00:00.000000001+00:00");
	assert_format(T2024 * NS + 999999999,
	    "2024-03-01 10:00:00.999999999+00:00");
	assert_format(T2024 * NS + 500000000, "2024-03-01 10:00:00.5+00:00");
	assert_format(T2024 * NS + 120000, "2024-03-01 10:00:00.00012+00:00");
	assert_format(0, "1970-01-01 00:00:00+00:00");
	assert_format(-1, "1969-12-31 23:59:59.999999999+00:00");
	assert_format(-NS, "1969-12-31 23:59:59+00:00");
	assert_format(INT64_MAX, "2262-04-11 23:47:16.854775807+00:00");
	assert_format(INT64_MIN, "1677-09-21 00:12:43.145224192+00:00");
}

static void
assert_parse(const char *s, int64_t want)
{
	int64_t got = 0;

	cr_assert_eq(gotime_parse(s, &got), 0, "refused \"%s\"", s);
	cr_assert_eq(got, want, "\"%s\": %" PRId64 " != %" PRId64, s, got,
	    want);
}

Test(gotime, time_parse_variants)
{
	assert_parse("2024-03-01 10:00:00+00:00", T2024 * NS);
	assert_parse("2024-03-01 10:00:00.123456789+00:00",
	    T2024 * NS + 123456789);
	assert_parse("2024-03-01T10:00:00.5+00:00", T2024 * NS + 500000000);
	assert_parse("2024-03-01 10:00:00Z", T2024 * NS);
	assert_parse("2024-03-01T10:00:00.25Z", T2024 * NS + 250000000);
	assert_parse("2024-03-01 10:00:00", T2024 * NS);
	assert_parse("2024-03-01 10:00:00.000000001", T2024 * NS + 1);
	assert_parse("2024-03-01 12:30:00+02:30", T2024 * NS);
	assert_parse("2024-03-01 05:00:00-05:00", T2024 * NS);
	assert_parse("2024-03-01 10:00", T2024 * NS);
	assert_parse("2024-03-01T10:00", T2024 * NS);
	assert_parse("2024-03-01", (T2024 - 36000) * NS);
	assert_parse("2024-03-01 9:00:00+00:00", (T2024 - 3600) * NS);
	assert_parse("2024-03-01 10:00:00,5+00:00", T2024 * NS + 500000000);
	/* Go cuts a fraction after nine digits */
	assert_parse("2024-03-01 10:00:00.1234567891+00:00",
	    T2024 * NS + 123456789);
	assert_parse("2024-02-29 00:00:00", (T2024 - 86400 - 36000) * NS);
	assert_parse("1969-12-31 23:59:59.999999999+00:00", -1);
	assert_parse("1677-09-21 00:12:43.145224192+00:00", INT64_MIN);
	assert_parse("2262-04-11 23:47:16.854775807+00:00", INT64_MAX);
}

Test(gotime, time_parse_rejects)
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
		cr_assert_eq(gotime_parse(bad[i], &ns), -1, "accepted \"%s\"",
		    bad[i]);
		cr_assert_eq(ns, 77, "\"%s\" wrote a result", bad[i]);
	}
	cr_assert_eq(gotime_parse(NULL, &ns), -1);
}

/* Format then parse gives the value back over the whole int64 range, on
 * both sides of 1970, with and without a fraction. */
Test(gotime, time_round_trip)
{
	uint64_t x = 88172645463325252ULL;	/* xorshift state */
	char buf[GOTIME_STRLEN];
	int64_t got;

	for (int i = 0; i < 200000; i++) {
		int64_t ns;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		ns = (int64_t)x;
		if (ns < INT64_MIN + NS || ns > INT64_MAX - NS)
			ns /= 2;	/* keep the variants below in range */
		if (i % 4 == 1)
			ns -= ns % NS;		/* zero fraction */
		else if (i % 4 == 2)
			ns = ns / NS * NS + 1;	/* 1 ns */
		else if (i % 4 == 3)
			ns = ns / NS * NS + 999999999 * (ns < 0 ? -1 : 1);
		gotime_format(ns, buf);
		cr_assert_eq(gotime_parse(buf, &got), 0, "%s", buf);
		cr_assert_eq(got, ns, "%s", buf);
	}
}

/* The seconds form reaches the years int64 ns cannot: Go's zero time and
 * the last day Go reads. */
Test(gotime, parse_secs_far_years)
{
	int64_t secs = 0, frac = 1;

	cr_assert_eq(gotime_parse_secs("0001-01-01 00:00:00+00:00", &secs,
	    &frac), 0);
	cr_assert_eq(secs, GOTIME_ZERO_S);
	cr_assert_eq(frac, 0);
	cr_assert_eq(gotime_parse_secs("9999-12-31T23:59:59.5Z", &secs,
	    &frac), 0);
	cr_assert_eq(secs, 253402300799LL);
	cr_assert_eq(frac, 500000000);
	cr_assert_eq(gotime_parse_secs("0000-02-29", &secs, &frac), 0,
	    "year 0 is a leap year");
	cr_assert_eq(gotime_parse_secs("1900-02-29", &secs, &frac), -1);
	cr_assert_eq(gotime_parse("0001-01-01 00:00:00+00:00", &secs), -1);
}
