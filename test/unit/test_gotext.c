/*
 * test_gotext.c - lib/gotext.c: Go's duration and bool grammars, and the
 * duration text.
 */
#include <criterion/criterion.h>

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
