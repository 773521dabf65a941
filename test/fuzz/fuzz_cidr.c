/*
 * fuzz_cidr.c - libFuzzer target for prefix and address parsing
 * (pfx_parse, pfx_parse_addr).
 *
 * The input is the text, NUL-terminated here. Oracles beyond the
 * sanitizers: a refusal always explains itself; an accepted prefix has a
 * known family, a length within it and no host bits; its canonical text
 * parses back to the same prefix and is a fixed point; the first and last
 * addresses bracket it; the bare-address parser agrees with inet_pton on
 * the same text.
 */
#include <arpa/inet.h>
#include <string.h>

#include "fuzz.h"
#include "pfx.h"

/* Checks an accepted prefix p parsed from s. */
static void
fp_check_prefix(const char *s, const struct pfx *p)
{
	char buf[PFX_STRLEN], buf2[PFX_STRLEN], err[128];
	struct pfx back;

	if (p->family != PFX_V4 && p->family != PFX_V6)
		fuzz_fail("unknown family", s);
	if (p->len > pfx_family_bits(p->family))
		fuzz_fail("length above the family's bits", s);
	if ((p->addr & ~pfx_mask(p->family, p->len)) != 0)
		fuzz_fail("host bits set", s);
	if (p->family == PFX_V4 && (p->addr >> 32) != 0)
		fuzz_fail("IPv4 address above 32 bits", s);
	if (pfx_first(p) != p->addr || pfx_last(p) < pfx_first(p))
		fuzz_fail("first/last", s);
	if (!pfx_contains(p, p) || !pfx_overlaps(p, p) || pfx_cmp(p, p) != 0)
		fuzz_fail("not equal to itself", s);
	pfx_format(p, buf);
	if (pfx_parse(buf, &back, err, sizeof(err)) != 0)
		fuzz_fail("canonical text refused", buf);
	if (!pfx_equal(p, &back))
		fuzz_fail("canonical text parses to another prefix", buf);
	pfx_format(&back, buf2);
	if (strcmp(buf, buf2) != 0)
		fuzz_fail("canonical text is not a fixed point", buf);
}

/* The bare-address parser must agree with the C library on s. */
static void
fp_check_addr(const char *s)
{
	char err[128], buf[PFX_ADDRSTRLEN];
	unsigned char bin[16];
	pfx_addr a, back;
	int family, fam2, ok4, ok6;

	err[0] = '\0';
	ok4 = inet_pton(AF_INET, s, bin) == 1;
	ok6 = inet_pton(AF_INET6, s, bin) == 1;
	if (pfx_parse_addr(s, &a, &family, err, sizeof(err)) != 0) {
		if (err[0] == '\0')
			fuzz_fail("address refused without a reason", s);
		return;
	}
	if ((family == PFX_V4 && !ok4) || (family == PFX_V6 && !ok6))
		fuzz_fail("address accepted that inet_pton refuses", s);
	pfx_format_addr(family, a, buf);
	if (pfx_parse_addr(buf, &back, &fam2, err, sizeof(err)) != 0 ||
	    back != a || fam2 != family)
		fuzz_fail("address text does not round-trip", buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s, err[128];
	struct pfx p;

	/* The text ends at the input's first NUL, as a C string would. */
	if ((s = strndup((const char *)data, size)) == NULL)
		return 0;
	err[0] = '\0';
	if (pfx_parse(s, &p, err, sizeof(err)) == 0)
		fp_check_prefix(s, &p);
	else if (err[0] == '\0')
		fuzz_fail("prefix refused without a reason", s);
	fp_check_addr(s);
	free(s);
	return 0;
}
