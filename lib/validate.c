/*
 * validate.c - checks on an ipam.v1.Child (see validate.h). Moved here
 * from the api worker unchanged in behaviour, so that tests and fuzz
 * targets reach the same code the server runs.
 */
#include "validate.h"

#include <stdint.h>
#include <string.h>

/*
 * Decodes each multi-byte sequence and refuses what RFC 3629 forbids:
 * bad lead or continuation bytes, overlong forms, surrogates, values above
 * U+10FFFF, a sequence cut by the end of the string.
 */
bool
validate_utf8(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < len) {
		unsigned char b = p[i];
		uint32_t cp;
		size_t n;

		if (b < 0x80) {
			i++;
			continue;
		}
		if (b >= 0xc2 && b <= 0xdf) {
			n = 1;
			cp = b & 0x1f;
		} else if (b >= 0xe0 && b <= 0xef) {
			n = 2;
			cp = b & 0x0f;
		} else if (b >= 0xf0 && b <= 0xf4) {
			n = 3;
			cp = b & 0x07;
		} else {
			return false;
		}
		if (len - i <= n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

/*
 * Checks a Child in the order the issue gives (structure first, then each
 * string, then what depends on the configuration) and stops at the first
 * problem, so a client sees one precise message.
 */
int
validate_child(const struct cfg *cfg, const Ipam__V1__Child *ch, int *family,
    struct grpcx_status *st)
{
	const Ipam__V1__Subnet *s = ch->subnet;
	size_t n;

	st->code = GRPC_STATUS_OK;
	st->message[0] = '\0';
	if (s == NULL)
		grpcx_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
		    "child.subnet: missing");
	else if (s->conduit == NULL)
		grpcx_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
		    "child.subnet.conduit: missing");
	else if (s->conduit->trench == NULL)
		grpcx_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
		    "child.subnet.conduit.trench: missing");
	if (st->code != GRPC_STATUS_OK)
		return st->code;

	n = strlen(ch->name);
	if (n == 0)
		grpcx_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
		    "child.name: empty");
	else if (n > BOUNDS_CHILD_MAX)
		grpcx_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
		    "child.name: %zu bytes, at most %d allowed", n,
		    BOUNDS_CHILD_MAX);
	else if (!validate_utf8(ch->name, n))
		grpcx_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
		    "child.name: not valid UTF-8");
	if (st->code != GRPC_STATUS_OK)
		return st->code;

	n = strlen(s->node);
	if (n == 0)
		grpcx_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
		    "child.subnet.node: empty");
	else if (n > BOUNDS_LABEL_MAX)
		grpcx_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
		    "child.subnet.node: %zu bytes, at most %d allowed", n,
		    BOUNDS_LABEL_MAX);
	else if (!validate_utf8(s->node, n))
		grpcx_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
		    "child.subnet.node: not valid UTF-8");
	if (st->code != GRPC_STATUS_OK)
		return st->code;

	switch ((int)s->ipfamily) {
	case IPAM__V1__IPFAMILY__IPV4:
		*family = 4;
		break;
	case IPAM__V1__IPFAMILY__IPV6:
		*family = 6;
		break;
	default:
		grpcx_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
		    "child.subnet.ipFamily: unknown value %d, expected IPV4 "
		    "(0) or IPV6 (1)", (int)s->ipfamily);
		return st->code;
	}
	if (config_pool_of(cfg, *family == 4 ? PFX_V4 : PFX_V6) == NULL) {
		grpcx_status_set(st, GRPC_STATUS_FAILED_PRECONDITION,
		    "child.subnet.ipFamily: %s is not served by this instance",
		    *family == 4 ? "IPV4" : "IPV6");
		return st->code;
	}
	if (strcmp(s->conduit->trench->name, cfg->trench) != 0) {
		grpcx_status_set(st, GRPC_STATUS_NOT_FOUND,
		    "child.subnet.conduit.trench.name: trench \"%.100s\" not "
		    "found (this instance serves \"%.100s\")",
		    s->conduit->trench->name, cfg->trench);
		return st->code;
	}
	n = strlen(s->conduit->name);
	if (n == 0)
		grpcx_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
		    "child.subnet.conduit.name: empty");
	else if (!validate_utf8(s->conduit->name, n))
		grpcx_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
		    "child.subnet.conduit.name: not valid UTF-8");
	return st->code;
}
