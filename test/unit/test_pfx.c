/*
 * test_pfx.c - unit tests of lib/pfx.c: parsing with its error
 * messages, canonical formatting, masks, containment, ordering and aligned
 * block arithmetic at every boundary (/0, /32, /128, byte carries, the end of
 * the address space).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "pfx.h"

/* Builds an IPv6 address from its high and low 64-bit halves. */
static pfx_addr
v6(uint64_t hi, uint64_t lo)
{
	return ((pfx_addr)hi << 64) | lo;
}

/* Parses s, which must succeed, and returns the prefix. */
static struct pfx
must_parse(const char *s)
{
	struct pfx p;
	char err[128] = "";

	cr_assert_eq(pfx_parse(s, &p, err, sizeof(err)), 0, "%s: %s", s, err);
	return p;
}

/* Parses s, which must fail with a message containing want. */
static void
must_refuse(const char *s, const char *want)
{
	struct pfx p;
	char err[128] = "";

	cr_assert_eq(pfx_parse(s, &p, err, sizeof(err)), -1, "%s accepted",
	    s ? s : "(null)");
	cr_assert(strstr(err, want) != NULL, "%s: got \"%s\", want \"%s\"",
	    s ? s : "(null)", err, want);
}

/* Formats p and compares with want. */
static void
expect_format(const struct pfx *p, const char *want)
{
	char buf[PFX_STRLEN];

	pfx_format(p, buf);
	cr_assert_str_eq(buf, want);
}

/* Formats an address and compares with want. */
static void
expect_addr(int family, pfx_addr a, const char *want)
{
	char buf[PFX_ADDRSTRLEN];

	pfx_format_addr(family, a, buf);
	cr_assert_str_eq(buf, want);
}

Test(prefix, family_bits)
{
	cr_assert_eq(pfx_family_bits(PFX_V4), 32);
	cr_assert_eq(pfx_family_bits(PFX_V6), 128);
	cr_assert_eq(pfx_family_bits(0), 0);
}

Test(prefix, parse_ipv4)
{
	struct pfx p = must_parse("169.255.0.0/16");

	cr_assert_eq(p.family, PFX_V4);
	cr_assert_eq(p.len, 16);
	cr_assert(p.addr == 0xa9ff0000u);
	p = must_parse("0.0.0.0/0");
	cr_assert(p.addr == 0 && p.len == 0 && p.family == PFX_V4);
	p = must_parse("255.255.255.255/32");
	cr_assert(p.addr == 0xffffffffu && p.len == 32);
	p = must_parse("10.1.2.3/32");
	cr_assert(p.addr == 0x0a010203u);
}

Test(prefix, parse_ipv6)
{
	struct pfx p = must_parse("fd00::/48");

	cr_assert_eq(p.family, PFX_V6);
	cr_assert_eq(p.len, 48);
	cr_assert(p.addr == v6(0xfd00000000000000ull, 0));
	p = must_parse("::/0");
	cr_assert(p.addr == 0 && p.len == 0 && p.family == PFX_V6);
	p = must_parse("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");
	cr_assert(p.addr == ~(pfx_addr)0 && p.len == 128);
	p = must_parse("fd00:0:0:101::1/128");
	cr_assert(p.addr == v6(0xfd00000000000101ull, 1));
	/* v4-mapped text is an IPv6 prefix, not an IPv4 one */
	p = must_parse("::ffff:10.0.0.0/104");
	cr_assert(p.family == PFX_V6);
	cr_assert(p.addr == v6(0, 0x0000ffff0a000000ull));
}

Test(prefix, parse_errors)
{
	must_refuse("169.255.0.1/16", "169.255.0.1/16: host bits set");
	must_refuse("fd00::1/64", "fd00::1/64: host bits set");
	must_refuse("0.0.0.1/0", "host bits set");
	must_refuse("10.0.0.0/33", "10.0.0.0/33: length out of range for IPv4");
	must_refuse("::/129", "::/129: length out of range for IPv6");
	must_refuse("10.0.0.0/999", "length out of range for IPv4");
	must_refuse("abc", "abc: not an IP prefix");
	must_refuse("abc/24", "abc/24: not an IP prefix");
	must_refuse("", ": not an IP prefix");
	must_refuse("/24", "/24: not an IP prefix");
	must_refuse("10.0.0/8", "not an IP prefix");
	must_refuse("10.0.0.256/32", "not an IP prefix");
	must_refuse(" 10.0.0.0/8", "not an IP prefix");
	must_refuse("fe80::%eth0/64", "not an IP prefix");
	must_refuse("1:2:3:4:5:6:7:8:9/128", "not an IP prefix");
	must_refuse("10.0.0.0", "not an IP prefix");
	must_refuse("10.0.0.0/", "bad prefix length");
	must_refuse("10.0.0.0/-8", "bad prefix length");
	must_refuse("10.0.0.0/+8", "bad prefix length");
	must_refuse("10.0.0.0/08", "bad prefix length");
	must_refuse("10.0.0.0/8 ", "bad prefix length");
	must_refuse("10.0.0.0/8/8", "bad prefix length");
	must_refuse("10.0.0.0/1000", "bad prefix length");
	must_refuse(NULL, "not an IP prefix");
}

Test(prefix, parse_error_buffer_optional)
{
	struct pfx p;
	char small[8];

	cr_assert_eq(pfx_parse("abc", &p, NULL, 0), -1);
	cr_assert_eq(pfx_parse("abcdefghijkl/3", &p, small, sizeof(small)),
	    -1);
	cr_assert_str_eq(small, "abcdefg");
}

Test(prefix, parse_addr)
{
	pfx_addr a;
	int family;
	char err[128];

	cr_assert_eq(pfx_parse_addr("169.255.0.1", &a, &family, err,
	    sizeof(err)), 0);
	cr_assert(a == 0xa9ff0001u && family == PFX_V4);
	cr_assert_eq(pfx_parse_addr("::1", &a, &family, err, sizeof(err)), 0);
	cr_assert(a == 1 && family == PFX_V6);
	cr_assert_eq(pfx_parse_addr("10.0.0.0/8", &a, &family, err,
	    sizeof(err)), -1);
	cr_assert_str_eq(err, "10.0.0.0/8: not an IP address");
	cr_assert_eq(pfx_parse_addr("", &a, &family, err, sizeof(err)), -1);
	cr_assert_eq(pfx_parse_addr(NULL, &a, &family, err, sizeof(err)), -1);
}

Test(prefix, format_rfc5952)
{
	expect_addr(PFX_V6, v6(0xfd00000000000101ull, 1), "fd00:0:0:101::1");
	expect_addr(PFX_V6, 0, "::");
	expect_addr(PFX_V6, 1, "::1");
	expect_addr(PFX_V6, v6(0x0001000000000000ull, 0), "1::");
	expect_addr(PFX_V6, ~(pfx_addr)0,
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	/* the first of two equal zero runs is compressed; a lone 0 is not */
	expect_addr(PFX_V6, v6(0x0001000000000002ull, 0x0000000000000003ull),
	    "1:0:0:2::3");
	expect_addr(PFX_V6, v6(0x0001000000000002ull, 0x0000000000030004ull),
	    "1::2:0:0:3:4");
	/* the longest zero run wins over an earlier shorter one */
	expect_addr(PFX_V6, v6(0x0001000000020000ull, 0x0000000000030000ull),
	    "1:0:2::3:0");
	expect_addr(PFX_V6, v6(0x0001000200030004ull, 0x0005000600000008ull),
	    "1:2:3:4:5:6:0:8");
	/* v4-mapped and v4-compatible forms as inet_ntop prints them */
	expect_addr(PFX_V6, v6(0, 0x0000ffffa9ff0001ull), "::ffff:169.255.0.1");
	expect_addr(PFX_V6, v6(0, 0x0000000001020304ull), "::1.2.3.4");
	expect_addr(PFX_V4, 0xa9ff0001u, "169.255.0.1");
	expect_addr(PFX_V4, 0, "0.0.0.0");
	expect_addr(PFX_V4, 0xffffffffu, "255.255.255.255");
}

Test(prefix, format_prefix_roundtrip)
{
	static const char *const texts[] = {
		"0.0.0.0/0", "169.255.0.0/16", "169.255.16.0/24",
		"255.255.255.255/32", "::/0", "fd00::/48", "fd00:0:0:101::/64",
		"fd00:0:0:101::1/128", "1::/16", "::ffff:0.0.0.0/96",
		"2001:db8::/32",
	};
	size_t i;

	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct pfx p = must_parse(texts[i]);

		expect_format(&p, texts[i]);
	}
	/* non-canonical input comes out canonical */
	struct pfx q = must_parse("FD00:0000:0000:0101:0:0:0:0/64");
	expect_format(&q, "fd00:0:0:101::/64");
}

Test(prefix, masks)
{
	cr_assert(pfx_mask(PFX_V4, 0) == 0);
	cr_assert(pfx_mask(PFX_V4, 1) == 0x80000000u);
	cr_assert(pfx_mask(PFX_V4, 24) == 0xffffff00u);
	cr_assert(pfx_mask(PFX_V4, 32) == 0xffffffffu);
	cr_assert(pfx_mask(PFX_V4, 40) == 0xffffffffu);
	cr_assert(pfx_mask(PFX_V6, 0) == 0);
	cr_assert(pfx_mask(PFX_V6, 1) == v6(0x8000000000000000ull, 0));
	cr_assert(pfx_mask(PFX_V6, 64) == v6(~0ull, 0));
	cr_assert(pfx_mask(PFX_V6, 127) == v6(~0ull, ~1ull));
	cr_assert(pfx_mask(PFX_V6, 128) == ~(pfx_addr)0);
}

Test(prefix, first_last)
{
	struct pfx p = must_parse("169.255.16.0/24");

	cr_assert(pfx_first(&p) == 0xa9ff1000u);
	cr_assert(pfx_last(&p) == 0xa9ff10ffu);
	p = must_parse("0.0.0.0/0");
	cr_assert(pfx_first(&p) == 0 && pfx_last(&p) == 0xffffffffu);
	p = must_parse("10.1.2.3/32");
	cr_assert(pfx_first(&p) == 0x0a010203u && pfx_last(&p) == 0x0a010203u);
	p = must_parse("::/0");
	cr_assert(pfx_first(&p) == 0 && pfx_last(&p) == ~(pfx_addr)0);
	p = must_parse("fd00:0:0:101::/64");
	cr_assert(pfx_last(&p) == v6(0xfd00000000000101ull, ~0ull));
	p = must_parse("::1/128");
	cr_assert(pfx_first(&p) == 1 && pfx_last(&p) == 1);
}

Test(prefix, contains_overlaps)
{
	struct pfx trench = must_parse("169.255.0.0/16");
	struct pfx node = must_parse("169.255.16.0/24");
	struct pfx other = must_parse("169.254.0.0/16");
	struct pfx all4 = must_parse("0.0.0.0/0");
	struct pfx all6 = must_parse("::/0");
	struct pfx v6small = must_parse("::a9ff:1000/120");

	cr_assert(pfx_contains(&trench, &node));
	cr_assert(!pfx_contains(&node, &trench));
	cr_assert(pfx_contains(&trench, &trench));
	cr_assert(!pfx_contains(&other, &node));
	cr_assert(pfx_contains(&all4, &node));
	cr_assert(pfx_overlaps(&trench, &node));
	cr_assert(pfx_overlaps(&node, &trench));
	cr_assert(!pfx_overlaps(&other, &trench));
	/* same numbers, different family: never related */
	cr_assert(!pfx_contains(&all6, &node));
	cr_assert(!pfx_contains(&all4, &v6small));
	cr_assert(!pfx_overlaps(&all6, &all4));
	cr_assert(!pfx_overlaps(&v6small, &node));
	cr_assert(pfx_contains(&all6, &v6small));
}

Test(prefix, cmp_equal)
{
	struct pfx a = must_parse("10.0.0.0/8");
	struct pfx b = must_parse("10.0.0.0/16");
	struct pfx c = must_parse("11.0.0.0/8");
	struct pfx d = must_parse("::/0");

	cr_assert_lt(pfx_cmp(&a, &b), 0);
	cr_assert_gt(pfx_cmp(&b, &a), 0);
	cr_assert_lt(pfx_cmp(&b, &c), 0);
	cr_assert_lt(pfx_cmp(&c, &d), 0);
	cr_assert_gt(pfx_cmp(&d, &a), 0);
	cr_assert_eq(pfx_cmp(&a, &a), 0);
	cr_assert(pfx_equal(&a, &a));
	cr_assert(!pfx_equal(&a, &b));
}

Test(prefix, align_up)
{
	struct pfx out;

	/* already aligned: unchanged */
	cr_assert(pfx_align_up(PFX_V4, 0xa9ff1000u, 24, &out));
	cr_assert(out.addr == 0xa9ff1000u && out.len == 24 &&
	    out.family == PFX_V4);
	/* inside a block: the next boundary */
	cr_assert(pfx_align_up(PFX_V4, 0xa9ff1001u, 24, &out));
	cr_assert(out.addr == 0xa9ff1100u);
	cr_assert(pfx_align_up(PFX_V4, 0x0affffffu, 24, &out));
	cr_assert(out.addr == 0x0b000000u);
	cr_assert(pfx_align_up(PFX_V4, 7, 32, &out));
	cr_assert(out.addr == 7);
	/* carry across every byte of an IPv6 address */
	for (unsigned i = 1; i < 16; i++) {
		pfx_addr a = ((pfx_addr)1 << (8 * i)) + 1;

		cr_assert(pfx_align_up(PFX_V6, a, 128 - 8 * i, &out));
		cr_assert(out.addr == (pfx_addr)2 << (8 * i), "byte %u", i);
	}
	/* /0 */
	cr_assert(pfx_align_up(PFX_V6, 0, 0, &out));
	cr_assert(out.addr == 0 && out.len == 0);
	cr_assert(!pfx_align_up(PFX_V6, 1, 0, &out));
	cr_assert(!pfx_align_up(PFX_V4, 1, 0, &out));
	/* overflow off the end of the address space */
	cr_assert(!pfx_align_up(PFX_V4, 0xffffff01u, 24, &out));
	cr_assert(pfx_align_up(PFX_V4, 0xffffff00u, 24, &out));
	cr_assert(!pfx_align_up(PFX_V6, ~(pfx_addr)0, 127, &out));
	cr_assert(pfx_align_up(PFX_V6, ~(pfx_addr)0 - 1, 127, &out));
	cr_assert(out.addr == ~(pfx_addr)0 - 1);
	cr_assert(!pfx_align_up(PFX_V6, v6(~0ull, 1), 64, &out));
	cr_assert(pfx_align_up(PFX_V6, ~(pfx_addr)0, 128, &out));
	/* v4/v6 mix-ups and bad lengths */
	cr_assert(!pfx_align_up(PFX_V4, (pfx_addr)1 << 32, 32, &out));
	cr_assert(!pfx_align_up(PFX_V4, 0, 33, &out));
	cr_assert(!pfx_align_up(PFX_V6, 0, 129, &out));
	cr_assert(!pfx_align_up(0, 0, 0, &out));
}

Test(prefix, make)
{
	struct pfx p = pfx_make(PFX_V4, 0xa9ff10abu, 24);

	expect_format(&p, "169.255.16.0/24");
	p = pfx_make(PFX_V6, ~(pfx_addr)0, 64);
	expect_format(&p, "ffff:ffff:ffff:ffff::/64");
	p = pfx_make(PFX_V6, ~(pfx_addr)0, 0);
	expect_format(&p, "::/0");
	p = pfx_make(PFX_V4, 0xa9ff10abu, 32);
	expect_format(&p, "169.255.16.171/32");
}

/* xorshift64*: a fixed-seed PRNG for the round-trip test. */
static uint64_t
prefix_rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/*
 * Random prefixes of both families survive format then parse unchanged,
 * which checks the byte order of both conversions at every position.
 */
Test(prefix, random_roundtrip)
{
	uint64_t s = 42;
	char buf[PFX_STRLEN], err[128];

	for (int i = 0; i < 20000; i++) {
		int family = (i & 1) ? PFX_V6 : PFX_V4;
		unsigned bits = pfx_family_bits(family);
		pfx_addr a = v6(prefix_rnd(&s), prefix_rnd(&s));
		unsigned len = (unsigned)(prefix_rnd(&s) % (bits + 1));
		struct pfx p = pfx_make(family, a, len), q;

		/* sparse addresses too: long zero runs exercise "::" */
		if (family == PFX_V6 && (i & 2))
			p.addr &= v6(0xffff0000ffff0000ull, 0x00000000ffff00ffull);
		p = pfx_make(family, p.addr, len);
		pfx_format(&p, buf);
		cr_assert_eq(pfx_parse(buf, &q, err, sizeof(err)), 0, "%s: %s",
		    buf, err);
		cr_assert(pfx_equal(&p, &q), "%s changed in a round trip", buf);
	}
}
