/*
 * gotime.c - go-sqlite3's text of a time. The calendar is glibc's
 * (gmtime_r, timegm); only the field syntax, stricter than strptime's, is
 * read here.
 */
#include "gotime.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define GOTIME_NS_PER_S 1000000000LL

/*
 * Formats ns (UTC) as Go's "2006-01-02 15:04:05.999999999-07:00" layout
 * does for a UTC time: trailing zeros of the fraction dropped, no dot when
 * the fraction is zero. Times before 1970 are negative ns and format the
 * same way (floor division), so format and parse round trip over the
 * whole int64 range (1677-09-21 .. 2262-04-11).
 */
void
gotime_format(int64_t ns, char buf[GOTIME_STRLEN])
{
	int64_t frac = ns % GOTIME_NS_PER_S;
	time_t secs = (time_t)(ns / GOTIME_NS_PER_S);
	struct tm tm;
	char fbuf[11];
	size_t n;
	int flen;

	if (frac < 0) {
		frac += GOTIME_NS_PER_S;
		secs--;
	}
	gmtime_r(&secs, &tm);
	n = strftime(buf, GOTIME_STRLEN, "%Y-%m-%d %H:%M:%S", &tm);
	fbuf[0] = '\0';
	if (frac != 0) {
		flen = snprintf(fbuf, sizeof(fbuf), ".%09u", (unsigned)frac);
		while (flen > 1 && fbuf[flen - 1] == '0')
			fbuf[--flen] = '\0';
	}
	snprintf(buf + n, GOTIME_STRLEN - n, "%s+00:00", fbuf);
}

/* Reads exactly n digits at *p into *v and advances *p. */
static int
gotime_digits(const char **p, int n, int *v)
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
gotime_parse_secs(const char *s, int64_t *secsp, int64_t *fracp)
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
	if (gotime_digits(&p, 4, &yy) < 0 || *p++ != '-' ||
	    gotime_digits(&p, 2, &mo) < 0 || *p++ != '-' ||
	    gotime_digits(&p, 2, &d) < 0)
		return -1;
	if (*p == ' ' || *p == 'T') {
		p++;
		/* Go's "15" takes one or two digits */
		if (gotime_digits(&p, 1, &tm.tm_hour) < 0)
			return -1;
		if (gotime_digits(&p, 1, &digit) == 0)
			tm.tm_hour = tm.tm_hour * 10 + digit;
		if (*p++ != ':' || gotime_digits(&p, 2, &tm.tm_min) < 0)
			return -1;
		if (*p == ':') {
			p++;
			if (gotime_digits(&p, 2, &tm.tm_sec) < 0)
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

				if (gotime_digits(&p, 2, &oh) < 0 ||
				    *p++ != ':' ||
				    gotime_digits(&p, 2, &om) < 0 ||
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

/* gotime_parse_secs, then refuses values outside int64 ns. */
int
gotime_parse(const char *s, int64_t *ns)
{
	int64_t secs, frac, res;

	if (gotime_parse_secs(s, &secs, &frac) < 0)
		return -1;
	if (secs < 0 && frac > 0) {
		/* borrow a second so that times just above INT64_MIN fit */
		secs++;
		frac -= GOTIME_NS_PER_S;
	}
	if (__builtin_mul_overflow(secs, GOTIME_NS_PER_S, &res) ||
	    __builtin_add_overflow(res, frac, &res))
		return -1;
	*ns = res;
	return 0;
}
