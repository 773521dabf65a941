/*
 * prefix.c - IPv4 and IPv6 prefix arithmetic on 128-bit integers.
 *
 * Text is converted with inet_pton/inet_ntop, so the accepted syntax and the
 * canonical output (RFC 5952 for IPv6, including the mixed notation inet_ntop
 * chooses for v4-mapped and v4-compatible addresses) are the C library's.
 * Everything else is plain integer arithmetic: an IPv4 address is the low 32
 * bits of a pfx_addr, and "the end of the address space" is the all-ones
 * value of the family's width.
 */
#include "errbuf.h"
#include "pfx.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Longest text accepted for the address part of a prefix (NUL included). */
#define PFX_PARSE_ADDRMAX 64

/* Longest piece of the caller's input quoted back in an error message. */
#define PFX_ERR_QUOTE 80

/* All ones over the width of a family (low 32 bits for IPv4). */
static pfx_addr
pfx_family_ones(int family)
{
	if (family == PFX_V4)
		return (pfx_addr)UINT32_MAX;
	return ~(pfx_addr)0;
}

unsigned
pfx_family_bits(int family)
{
	if (family == PFX_V4)
		return 32;
	if (family == PFX_V6)
		return 128;
	return 0;
}

/*
 * Converts text holding one address to a pfx_addr. A ':' selects IPv6,
 * anything else IPv4; inet_pton then refuses whatever is not a complete
 * address of that family (zone ids, spaces, short forms like "10.1").
 */
static int
pfx_text_to_addr(const char *s, size_t n, pfx_addr *addr, int *family)
{
	char buf[PFX_PARSE_ADDRMAX];
	unsigned char bytes[16];
	pfx_addr a = 0;
	bool v6;
	size_t i;

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	v6 = memchr(buf, ':', n) != NULL;
	if (inet_pton(v6 ? AF_INET6 : AF_INET, buf, bytes) != 1)
		return -1;
	for (i = 0; i < (v6 ? 16u : 4u); i++)
		a = (a << 8) | bytes[i];
	*family = v6 ? PFX_V6 : PFX_V4;
	*addr = a;
	return 0;
}

/*
 * Reads a prefix length: decimal digits only, no sign, no leading zero
 * (except "0" itself), at most three digits. Returns the value or -1.
 */
static int
pfx_parse_len(const char *s)
{
	size_t n = strlen(s);
	int v = 0;
	size_t i;

	if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

int
pfx_parse(const char *s, struct pfx *out, char *err, size_t errlen)
{
	const char *slash;
	pfx_addr a;
	int family, len;

	if (s == NULL) {
		errbuf_set(err, errlen, "(null): not an IP prefix");
		return -1;
	}
	slash = strchr(s, '/');
	if (slash == NULL) {
		errbuf_set(err, errlen, "%.*s: not an IP prefix (no /length)",
		    PFX_ERR_QUOTE, s);
		return -1;
	}
	if (pfx_text_to_addr(s, (size_t)(slash - s), &a, &family) != 0) {
		errbuf_set(err, errlen, "%.*s: not an IP prefix", PFX_ERR_QUOTE, s);
		return -1;
	}
	len = pfx_parse_len(slash + 1);
	if (len < 0) {
		errbuf_set(err, errlen, "%.*s: bad prefix length", PFX_ERR_QUOTE,
		    s);
		return -1;
	}
	if ((unsigned)len > pfx_family_bits(family)) {
		errbuf_set(err, errlen, "%.*s: length out of range for %s",
		    PFX_ERR_QUOTE, s, family == PFX_V4 ? "IPv4" : "IPv6");
		return -1;
	}
	if ((a & ~pfx_mask(family, (unsigned)len)) != 0) {
		errbuf_set(err, errlen, "%.*s: host bits set", PFX_ERR_QUOTE, s);
		return -1;
	}
	out->addr = a;
	out->len = (uint8_t)len;
	out->family = (uint8_t)family;
	return 0;
}

int
pfx_parse_addr(const char *s, pfx_addr *addr, int *family, char *err,
    size_t errlen)
{
	if (s == NULL) {
		errbuf_set(err, errlen, "(null): not an IP address");
		return -1;
	}
	if (pfx_text_to_addr(s, strlen(s), addr, family) != 0) {
		errbuf_set(err, errlen, "%.*s: not an IP address", PFX_ERR_QUOTE,
		    s);
		return -1;
	}
	return 0;
}

void
pfx_format_addr(int family, pfx_addr a, char buf[PFX_ADDRSTRLEN])
{
	unsigned char bytes[16];
	int i;

	for (i = family == PFX_V4 ? 3 : 15; i >= 0; i--) {
		bytes[i] = (unsigned char)(a & 0xff);
		a >>= 8;
	}
	if (inet_ntop(family == PFX_V4 ? AF_INET : AF_INET6, bytes, buf,
	    PFX_ADDRSTRLEN) == NULL)
		buf[0] = '\0';
}

void
pfx_format(const struct pfx *p, char buf[PFX_STRLEN])
{
	char abuf[PFX_ADDRSTRLEN];

	pfx_format_addr(p->family, p->addr, abuf);
	snprintf(buf, PFX_STRLEN, "%s/%u", abuf, (unsigned)p->len);
}

/*
 * The network mask of len bits within the family's width. A length beyond
 * the width is taken as the full width, so callers never shift by >= 128.
 */
pfx_addr
pfx_mask(int family, unsigned len)
{
	unsigned bits = pfx_family_bits(family);

	if (len == 0 || bits == 0)
		return 0;
	if (len > bits)
		len = bits;
	return (~(pfx_addr)0 << (128 - len)) >> (128 - bits);
}

pfx_addr
pfx_first(const struct pfx *p)
{
	return p->addr & pfx_mask(p->family, p->len);
}

pfx_addr
pfx_last(const struct pfx *p)
{
	return pfx_first(p) | (pfx_family_ones(p->family) &
	    ~pfx_mask(p->family, p->len));
}

bool
pfx_contains(const struct pfx *outer, const struct pfx *inner)
{
	if (outer->family != inner->family || inner->len < outer->len)
		return false;
	return (inner->addr & pfx_mask(outer->family, outer->len)) ==
	    pfx_first(outer);
}

/* Two aligned blocks share an address only if one contains the other. */
bool
pfx_overlaps(const struct pfx *a, const struct pfx *b)
{
	if (a->family != b->family)
		return false;
	return a->len <= b->len ? pfx_contains(a, b) : pfx_contains(b, a);
}

int
pfx_cmp(const struct pfx *a, const struct pfx *b)
{
	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	if (a->addr != b->addr)
		return a->addr < b->addr ? -1 : 1;
	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	return 0;
}

bool
pfx_equal(const struct pfx *a, const struct pfx *b)
{
	return pfx_cmp(a, b) == 0;
}

/*
 * Rounds addr up to the next multiple of the block size 2^(bits - len).
 * Setting every host bit and adding one gives the next boundary; that sum
 * passing the family's all-ones value (or wrapping to zero for IPv6) means
 * there is no further block.
 */
bool
pfx_align_up(int family, pfx_addr addr, unsigned len, struct pfx *out)
{
	unsigned bits = pfx_family_bits(family);
	pfx_addr ones = pfx_family_ones(family);
	pfx_addr host, start;

	if (bits == 0 || len > bits || (addr & ~ones) != 0)
		return false;
	host = ones & ~pfx_mask(family, len);
	if ((addr & host) == 0) {
		start = addr;
	} else {
		if ((addr | host) == ones)
			return false;
		start = (addr | host) + 1;
	}
	out->addr = start;
	out->len = (uint8_t)len;
	out->family = (uint8_t)family;
	return true;
}

struct pfx
pfx_make(int family, pfx_addr a, unsigned len)
{
	struct pfx p;
	unsigned bits = pfx_family_bits(family);

	if (len > bits)
		len = bits;
	p.addr = a & pfx_mask(family, len);
	p.len = (uint8_t)len;
	p.family = (uint8_t)family;
	return p;
}
