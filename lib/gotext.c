/*
 * gotext.c - values written as Go writes them: durations
 * (time.ParseDuration, time.Duration.String), booleans
 * (strconv.ParseBool) and go-sqlite3's times, so that a variable or a
 * row means here what it means to Meridio's IPAM. The calendar is
 * glibc's (gmtime_r, timegm); only the field syntax, stricter than
 * strptime's, is read here.
 */
#include "gotext.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Units of a Go duration, in nanoseconds. */
static const struct {
	const char *name;	/* unit text, exact */
	uint64_t ns;		/* nanoseconds per unit */
} gotext_units[] = {
	{ "ns", 1ULL },
	{ "us", 1000ULL },
	{ "\xc2\xb5s", 1000ULL },	/* U+00B5 micro sign */
	{ "\xce\xbcs", 1000ULL },	/* U+03BC Greek small mu */
	{ "ms", 1000000ULL },
	{ "s", 1000000000ULL },
	{ "m", 60000000000ULL },
	{ "h", 3600000000000ULL },
};

#define GOTEXT_D_LIMIT (1ULL << 63)

/*
 * Go's time.ParseDuration, rule for rule: [-+]? then one or more of
 * number (digits, or digits '.' digits with either side possibly empty but
 * not both) and unit; "0" alone needs no unit. Fraction digits past what a
 * uint64 holds are dropped; any other overflow is an error.
 */
int
gotext_parse_duration(const char *s, int64_t *ns)
{
	uint64_t d = 0, v, f, unit;
	double scale;
	bool neg = false, pre, post, over;
	const char *p, *q;
	size_t i, ulen;

	if (s == NULL)
		return -1;
	p = s;
	if (*p == '-' || *p == '+') {
		neg = *p == '-';
		p++;
	}
	if (strcmp(p, "0") == 0) {
		*ns = 0;
		return 0;
	}
	if (*p == '\0')
		return -1;
	while (*p != '\0') {
		if (*p != '.' && !(*p >= '0' && *p <= '9'))
			return -1;
		v = 0;
		for (q = p; *p >= '0' && *p <= '9'; p++) {
			if (v > GOTEXT_D_LIMIT / 10)
				return -1;
			v = v * 10 + (uint64_t)(*p - '0');
			if (v > GOTEXT_D_LIMIT)
				return -1;
		}
		pre = p != q;
		f = 0;
		scale = 1;
		post = false;
		if (*p == '.') {
			p++;
			over = false;
			for (q = p; *p >= '0' && *p <= '9'; p++) {
				if (over)
					continue;
				if (f > (GOTEXT_D_LIMIT - 1) / 10) {
					over = true;
					continue;
				}
				if (f * 10 + (uint64_t)(*p - '0') >
				    GOTEXT_D_LIMIT) {
					over = true;
					continue;
				}
				f = f * 10 + (uint64_t)(*p - '0');
				scale *= 10;
			}
			post = p != q;
		}
		if (!pre && !post)
			return -1;

		for (q = p; *p != '\0' && *p != '.' && !(*p >= '0' &&
		    *p <= '9'); p++)
			;
		ulen = (size_t)(p - q);
		if (ulen == 0)
			return -1;
		unit = 0;
		for (i = 0; i < sizeof(gotext_units) /
		    sizeof(gotext_units[0]); i++) {
			if (strlen(gotext_units[i].name) == ulen &&
			    memcmp(gotext_units[i].name, q, ulen) == 0) {
				unit = gotext_units[i].ns;
				break;
			}
		}
		if (unit == 0)
			return -1;
		if (v > GOTEXT_D_LIMIT / unit)
			return -1;
		v *= unit;
		if (f > 0) {
			v += (uint64_t)((double)f * ((double)unit / scale));
			if (v > GOTEXT_D_LIMIT)
				return -1;
		}
		d += v;
		if (d > GOTEXT_D_LIMIT)
			return -1;
	}
	if (neg) {
		*ns = d == GOTEXT_D_LIMIT ? INT64_MIN : -(int64_t)d;
		return 0;
	}
	if (d > GOTEXT_D_LIMIT - 1)
		return -1;
	*ns = (int64_t)d;
	return 0;
}

/*
 * Appends the fraction of v over 10^prec as ".ddd" without trailing zeros
 * (nothing when it is zero), as Go's fmtFrac does.
 */
static size_t
gotext_frac(char *buf, size_t len, uint64_t frac, int prec)
{
	char digits[16];
	int n;

	buf[0] = '\0';
	if (frac == 0)
		return 0;
	snprintf(digits, sizeof(digits), "%0*llu", prec,
	    (unsigned long long)frac);
	n = prec;
	while (n > 0 && digits[n - 1] == '0')
		n--;
	digits[n] = '\0';
	n = snprintf(buf, len, ".%s", digits);
	return n < 0 ? 0 : (size_t)n;
}

void
gotext_format_duration(int64_t ns, char *buf, size_t len)
{
	uint64_t u, div;
	size_t o = 0;
	int prec;
	const char *unit;
	char frac[24];		/* ".ddddddddd" with room to spare */

	if (len == 0)
		return;
	if (ns == 0) {
		snprintf(buf, len, "0s");
		return;
	}
	u = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
	if (ns < 0 && o + 1 < len)
		buf[o++] = '-';
	if (u < 1000000000ULL) {
		if (u < 1000ULL) {
			div = 1;
			prec = 0;
			unit = "ns";
		} else if (u < 1000000ULL) {
			div = 1000ULL;
			prec = 3;
			unit = "\xc2\xb5s";
		} else {
			div = 1000000ULL;
			prec = 6;
			unit = "ms";
		}
		gotext_frac(frac, sizeof(frac), u % div, prec);
		snprintf(buf + o, len - o, "%llu%s%s",
		    (unsigned long long)(u / div), frac, unit);
		return;
	}
	gotext_frac(frac, sizeof(frac), u % 1000000000ULL, 9);
	u /= 1000000000ULL;
	if (u >= 3600)
		snprintf(buf + o, len - o, "%lluh%llum%llu%ss",
		    (unsigned long long)(u / 3600),
		    (unsigned long long)(u / 60 % 60),
		    (unsigned long long)(u % 60), frac);
	else if (u >= 60)
		snprintf(buf + o, len - o, "%llum%llu%ss",
		    (unsigned long long)(u / 60),
		    (unsigned long long)(u % 60), frac);
	else
		snprintf(buf + o, len - o, "%llu%ss", (unsigned long long)u,
		    frac);
}

int
gotext_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "1", "t", "T", "TRUE", "true",
		"True" };
	static const char *const no[] = { "0", "f", "F", "FALSE", "false",
		"False" };
	size_t i;

	if (s == NULL)
		return -1;
	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

#define GOTEXT_NS_PER_S 1000000000LL

/*
 * Formats ns (UTC) as Go's "2006-01-02 15:04:05.999999999-07:00" layout
 * does for a UTC time: trailing zeros of the fraction dropped, no dot when
 * the fraction is zero. Times before 1970 are negative ns and format the
 * same way (floor division), so format and parse round trip over the
 * whole int64 range (1677-09-21 .. 2262-04-11).
 */
void
gotext_format_time(int64_t ns, char buf[GOTEXT_TIME_STRLEN])
{
	int64_t frac = ns % GOTEXT_NS_PER_S;
	time_t secs = (time_t)(ns / GOTEXT_NS_PER_S);
	struct tm tm;
	char fbuf[24];		/* ".ddddddddd" with room to spare */
	size_t n;

	if (frac < 0) {
		frac += GOTEXT_NS_PER_S;
		secs--;
	}
	gmtime_r(&secs, &tm);
	n = strftime(buf, GOTEXT_TIME_STRLEN, "%Y-%m-%d %H:%M:%S", &tm);
	gotext_frac(fbuf, sizeof(fbuf), (uint64_t)frac, 9);
	snprintf(buf + n, GOTEXT_TIME_STRLEN - n, "%s+00:00", fbuf);
}

/* Reads exactly n digits at *p into *v and advances *p. */
static int
gotext_digits(const char **p, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -1;
		*v = *v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	return 0;
}

/*
 * Parses the formats go-sqlite3 reads from a datetime column, after it
 * has dropped one trailing 'Z': "YYYY-MM-DD", then optionally ' ' or 'T'
 * and "HH:MM", then optionally ":SS", a fraction ('.' or ',' and one or
 * more digits, cut after the 9th as Go does) and a "+HH:MM"/"-HH:MM"
 * offset. No offset means UTC. A date that does not exist (2023-02-29) is
 * refused: timegm would move it to the next month.
 */
int
gotext_parse_time_secs(const char *s, int64_t *secsp, int64_t *fracp)
{
	char buf[64];
	const char *p;
	size_t len;
	struct tm tm = { 0 };
	int yy, mo, d, oh, om, digit;
	int64_t frac = 0, scale = 100000000, off = 0;
	time_t t;

	if (s == NULL)
		return -1;
	len = strlen(s);
	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len + 1);
	if (buf[len - 1] == 'Z')
		buf[--len] = '\0';
	p = buf;
	if (gotext_digits(&p, 4, &yy) < 0 || *p++ != '-' ||
	    gotext_digits(&p, 2, &mo) < 0 || *p++ != '-' ||
	    gotext_digits(&p, 2, &d) < 0)
		return -1;
	if (*p == ' ' || *p == 'T') {
		p++;
		/* Go's "15" takes one or two digits */
		if (gotext_digits(&p, 1, &tm.tm_hour) < 0)
			return -1;
		if (gotext_digits(&p, 1, &digit) == 0)
			tm.tm_hour = tm.tm_hour * 10 + digit;
		if (*p++ != ':' || gotext_digits(&p, 2, &tm.tm_min) < 0)
			return -1;
		if (*p == ':') {
			p++;
			if (gotext_digits(&p, 2, &tm.tm_sec) < 0)
				return -1;
			if ((*p == '.' || *p == ',') && p[1] >= '0' &&
			    p[1] <= '9') {
				for (p++; *p >= '0' && *p <= '9'; p++) {
					frac += (*p - '0') * scale;
					scale /= 10;
				}
			}
			if (*p == '+' || *p == '-') {
				int sign = *p++ == '-' ? -1 : 1;

				if (gotext_digits(&p, 2, &oh) < 0 ||
				    *p++ != ':' ||
				    gotext_digits(&p, 2, &om) < 0 ||
				    oh > 24 || om > 59)
					return -1;
				off = sign * (int64_t)(oh * 3600 + om * 60);
			}
		}
		if (tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 59)
			return -1;
	}
	if (*p != '\0')
		return -1;
	tm.tm_year = yy - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	t = timegm(&tm);
	if (tm.tm_year != yy - 1900 || tm.tm_mon != mo - 1 || tm.tm_mday != d)
		return -1;
	*secsp = (int64_t)t - off;
	*fracp = frac;
	return 0;
}

/* gotext_parse_time_secs, then refuses values outside int64 ns. */
int
gotext_parse_time(const char *s, int64_t *ns)
{
	int64_t secs, frac, res;

	if (gotext_parse_time_secs(s, &secs, &frac) < 0)
		return -1;
	if (secs < 0 && frac > 0) {
		/* borrow a second so that times just above INT64_MIN fit */
		secs++;
		frac -= GOTEXT_NS_PER_S;
	}
	if (__builtin_mul_overflow(secs, GOTEXT_NS_PER_S, &res) ||
	    __builtin_add_overflow(res, frac, &res))
		return -1;
	*ns = res;
	return 0;
}
