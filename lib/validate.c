/*
 * validate.c - checks on an ipam.v1.Child (see validate.h), in a library
 * so that tests and fuzz targets reach the same code the server runs.
 */
#include "validate.h"
#include "utf8.h"

#include <string.h>

/*
 * Checks one string field of a request: not empty, at most max bytes (0: no
 * bound), UTF-8. Sets st and returns false on the first problem.
 */
static bool
validate_string(const char *field, const char *s, size_t max,
    struct grpcx_status *st)
{
	size_t n = strlen(s);

	if (n == 0)
		grpcx_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "%s: empty",
		    field);
	else if (max != 0 && n > max)
		grpcx_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
		    "%s: %zu bytes, at most %zu allowed", field, n, max);
	else if (!utf8_valid(s, n))
		grpcx_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
		    "%s: not valid UTF-8", field);
	return st->code == GRPC_STATUS_OK;
}

/*
 * Checks a Child in a fixed order (structure first, then each string, then
 * what depends on the configuration) and stops at the first problem, so a
 * client sees one precise message.
 */
int
validate_child(const struct cfg *cfg, const Ipam__V1__Child *ch, int *family,
    struct grpcx_status *st)
{
	const Ipam__V1__Subnet *s = ch->subnet;

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

	if (!validate_string("child.name", ch->name, BOUNDS_CHILD_MAX, st) ||
	    !validate_string("child.subnet.node", s->node, BOUNDS_LABEL_MAX,
	    st))
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
	validate_string("child.subnet.conduit.name", s->conduit->name, 0, st);
	return st->code;
}
