/*
 * test_validate.c - lib/validate.c: each check of validate_child with the
 * field its message names, its status code, its bound, and its order.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

/* IPAM_IP_FAMILY of the configuration tv_load makes. */
static const char *tv_family;

/* Lookup function handed to config_load: trench "red", tv_family. */
static const char *
tv_get(const char *name)
{
	if (strcmp(name, "IPAM_TRENCH_NAME") == 0)
		return "red";
	return strcmp(name, "IPAM_IP_FAMILY") == 0 ? tv_family : NULL;
}

/* The fixture: two configurations of trench "red" (both families, IPv4
 * only) and a valid IPv4 request, made afresh for every test. */
static struct cfg tv_dual, tv_v4only;
static struct {
	Ipam__V1__Child child;		/* the request */
	Ipam__V1__Subnet subnet;	/* child.subnet */
	Nsp__V1__Conduit conduit;	/* child.subnet.conduit */
	Nsp__V1__Trench trench;		/* child.subnet.conduit.trench */
} t;

/* Loads c for trench "red" and the family given. */
static void
tv_load(struct cfg *c, const char *family)
{
	char err[256];

	tv_family = family;
	cr_assert_eq(config_load(c, tv_get, err, sizeof(err)), 0, "%s", err);
}

/* Fills t with a valid IPv4 request for trench "red". */
static void
tv_init(void)
{
	t.child = (Ipam__V1__Child)IPAM__V1__CHILD__INIT;
	t.subnet = (Ipam__V1__Subnet)IPAM__V1__SUBNET__INIT;
	t.conduit = (Nsp__V1__Conduit)NSP__V1__CONDUIT__INIT;
	t.trench = (Nsp__V1__Trench)NSP__V1__TRENCH__INIT;
	t.trench.name = "red";
	t.conduit.name = "load-balancer";
	t.conduit.trench = &t.trench;
	t.subnet.conduit = &t.conduit;
	t.subnet.node = "worker-1";
	t.subnet.ipfamily = IPAM__V1__IPFAMILY__IPV4;
	t.child.name = "proxy-a";
	t.child.subnet = &t.subnet;
}

static void
tv_setup(void)
{
	tv_load(&tv_dual, "dualstack");
	tv_load(&tv_v4only, "ipv4");
	tv_init();
}

static void
tv_teardown(void)
{
	config_free(&tv_dual);
	config_free(&tv_v4only);
}

TestSuite(validate, .init = tv_setup, .fini = tv_teardown);

/* Asserts that ch passes under c with family want (4 or 6). */
static void
tv_accepted(const struct cfg *c, const Ipam__V1__Child *ch, int want)
{
	struct grpcx_status st;
	int family = 0;

	cr_assert_eq(validate_child(c, ch, &family, &st), GRPC_STATUS_OK, "%s",
	    st.message);
	cr_assert_eq(st.code, GRPC_STATUS_OK);
	cr_assert_str_empty(st.message);
	cr_assert_eq(family, want);
}

/* Asserts that t is refused under c with code and a message containing
 * want; then makes t valid again. */
static void
tv_refused(const struct cfg *c, int code, const char *want)
{
	struct grpcx_status st;
	int family = 0;

	cr_assert_eq(validate_child(c, &t.child, &family, &st), code, "%s",
	    st.message);
	cr_assert_eq(st.code, code);
	cr_assert(strstr(st.message, want) != NULL, "message \"%s\" lacks "
	    "\"%s\"", st.message, want);
	tv_init();
}

/*
 * One bounded string of t, *field, named name in messages: empty, exactly
 * bound bytes (accepted), one byte more (refused with over), bad UTF-8.
 */
static void
tv_string(char **field, const char *name, size_t bound, const char *over,
    char *bad)
{
	char *s = malloc(bound + 2), want[128];

	cr_assert_not_null(s);
	*field = "";
	snprintf(want, sizeof(want), "%s: empty", name);
	tv_refused(&tv_dual, GRPC_STATUS_INVALID_ARGUMENT, want);
	memset(s, 'n', bound + 1);
	s[bound] = '\0';
	*field = s;
	tv_accepted(&tv_dual, &t.child, 4);
	s[bound] = 'n';
	s[bound + 1] = '\0';
	*field = s;
	tv_refused(&tv_dual, GRPC_STATUS_INVALID_ARGUMENT, over);
	*field = bad;
	snprintf(want, sizeof(want), "%s: not valid UTF-8", name);
	tv_refused(&tv_dual, GRPC_STATUS_INVALID_ARGUMENT, want);
	free(s);
}

Test(validate, accepts_both_families)
{
	tv_accepted(&tv_dual, &t.child, 4);
	t.subnet.ipfamily = IPAM__V1__IPFAMILY__IPV6;
	tv_accepted(&tv_dual, &t.child, 6);
}

Test(validate, missing_messages)
{
	t.child.subnet = NULL;
	tv_refused(&tv_dual, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.subnet: missing");
	t.subnet.conduit = NULL;
	tv_refused(&tv_dual, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.subnet.conduit: missing");
	t.conduit.trench = NULL;
	tv_refused(&tv_dual, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.subnet.conduit.trench: missing");
}

Test(validate, child_name)
{
	tv_string(&t.child.name, "child.name", BOUNDS_CHILD_MAX,
	    "child.name: 513 bytes, at most 512 allowed", "proxy-\xc0\xaf");
}

Test(validate, node_name)
{
	tv_string(&t.subnet.node, "child.subnet.node", BOUNDS_LABEL_MAX,
	    "child.subnet.node: 254 bytes, at most 253 allowed",
	    "\xed\xa0\x80");
}

Test(validate, family_unknown_or_not_served)
{
	t.subnet.ipfamily = (Ipam__V1__IPFamily)7;
	tv_refused(&tv_dual, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.subnet.ipFamily: unknown value 7");
	t.subnet.ipfamily = IPAM__V1__IPFAMILY__IPV6;
	tv_refused(&tv_v4only, GRPC_STATUS_FAILED_PRECONDITION,
	    "IPV6 is not served");
}

Test(validate, trench_and_conduit)
{
	t.trench.name = "blue";
	tv_refused(&tv_dual, GRPC_STATUS_NOT_FOUND,
	    "trench \"blue\" not found (this instance serves \"red\")");
	t.conduit.name = "";
	tv_refused(&tv_dual, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.subnet.conduit.name: empty");
	t.conduit.name = "lb-\xe2\x82";
	tv_refused(&tv_dual, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.subnet.conduit.name: not valid UTF-8");
}

/* The first problem wins: each pair below has two, and the status names
 * the one checked first. */
Test(validate, first_problem_is_reported)
{
	t.child.name = "";
	t.subnet.conduit = NULL;
	tv_refused(&tv_dual, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.subnet.conduit: missing");

	t.child.name = "";
	t.subnet.node = "";
	tv_refused(&tv_dual, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.name: empty");

	t.subnet.node = "";
	t.trench.name = "blue";
	tv_refused(&tv_dual, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.subnet.node: empty");

	t.subnet.ipfamily = IPAM__V1__IPFAMILY__IPV6;
	t.trench.name = "blue";
	tv_refused(&tv_v4only, GRPC_STATUS_FAILED_PRECONDITION,
	    "IPV6 is not served");

	t.trench.name = "blue";
	t.conduit.name = "";
	tv_refused(&tv_dual, GRPC_STATUS_NOT_FOUND, "trench \"blue\"");
}

/* A request that went over the wire: packed, unpacked, then checked. */
Test(validate, unpacked_request)
{
	uint8_t buf[256];
	Ipam__V1__Child *ch;
	size_t n;

	t.subnet.ipfamily = IPAM__V1__IPFAMILY__IPV6;
	n = ipam__v1__child__pack(&t.child, buf);
	cr_assert_lt(n, sizeof(buf));
	ch = ipam__v1__child__unpack(NULL, n, buf);
	cr_assert_not_null(ch);
	cr_assert_str_eq(ch->subnet->conduit->trench->name, "red");
	tv_accepted(&tv_dual, ch, 6);
	ipam__v1__child__free_unpacked(ch, NULL);
}
