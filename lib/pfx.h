/*
 * pfx.h - IPv4 and IPv6 prefixes held as 128-bit integers.
 *
 * An IPv4 address is kept in the low 32 bits of a pfx_addr (the rest zero);
 * an IPv6 address uses all 128 bits. A prefix is a family, a length and an
 * address with no host bits set. The library never logs and never exits:
 * parse errors are written into the caller's buffer.
 */
#ifndef IPAM_PFX_H
#define IPAM_PFX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

__extension__ typedef unsigned __int128 pfx_addr;

enum pfx_family {
	PFX_V4 = 4,
	PFX_V6 = 6,
};

/* Longest text of an address or prefix, NUL included ("addr/128"). */
#define PFX_ADDRSTRLEN 46
#define PFX_STRLEN 50

struct pfx {
	pfx_addr addr;		/* first address; host bits are zero */
	uint8_t len;		/* prefix length, 0..32 (v4) or 0..128 (v6) */
	uint8_t family;		/* PFX_V4 or PFX_V6 */
};

/* Number of address bits of a family: 32 or 128. */
unsigned pfx_family_bits(int family);

/*
 * Parses "a.b.c.d/n" or an IPv6 "x::y/n". Refuses garbage, lengths out of
 * range and host bits set, with a message naming the problem in err.
 * Returns 0 or -1.
 */
int pfx_parse(const char *s, struct pfx *out, char *err, size_t errlen);

/* Parses a bare address (no length) of either family. Returns 0 or -1. */
int pfx_parse_addr(const char *s, pfx_addr *addr, int *family, char *err,
    size_t errlen);

/* Canonical text of an address (IPv6 as RFC 5952, like inet_ntop). */
void pfx_format_addr(int family, pfx_addr a, char buf[PFX_ADDRSTRLEN]);

/* Canonical "address/length" text of a prefix. */
void pfx_format(const struct pfx *p, char buf[PFX_STRLEN]);

/* Netmask of a length in a family (all ones for the network bits). */
pfx_addr pfx_mask(int family, unsigned len);

/* First and last address of a prefix. */
pfx_addr pfx_first(const struct pfx *p);
pfx_addr pfx_last(const struct pfx *p);

/* True if inner lies entirely inside outer (same family). */
bool pfx_contains(const struct pfx *outer, const struct pfx *inner);

/* True if the two prefixes share at least one address (same family). */
bool pfx_overlaps(const struct pfx *a, const struct pfx *b);

/* Orders by family, then first address, then length. */
int pfx_cmp(const struct pfx *a, const struct pfx *b);

/* True if both are the same prefix. */
bool pfx_equal(const struct pfx *a, const struct pfx *b);

/*
 * The block of length len that starts at the lowest address >= addr that is
 * aligned to that length. Returns false if there is no such block before the
 * end of the family's address space (carry out of the top bit).
 */
bool pfx_align_up(int family, pfx_addr addr, unsigned len, struct pfx *out);

/* The prefix of length len that contains address a (host bits cleared). */
struct pfx pfx_make(int family, pfx_addr a, unsigned len);

#endif
