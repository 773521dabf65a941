/*
 * test_validate.c - lib/validate.c: each check of validate_child with the
 * field its message names, its status code, its bound, and its order.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "validate.h"

/* The fake environment: name, value pairs ending with NULL. */
static const char *const *tv_vars;

/* Lookup function handed to config_load: reads tv_vars. */
static const char *
tv_get(const char *name)
{
	for (size_t i = 0; tv_vars != NULL && tv_vars[i] != NULL; i += 2) {
		if (strcmp(tv_vars[i], name) == 0)
			return tv_vars[i + 1];
	}
	return NULL;
}

static const char *const tv_dual[] = { "IPAM_TRENCH_NAME", "red", NULL };
static const char *const tv_v4only[] = { "IPAM_TRENCH_NAME", "red",
	"IPAM_IP_FAMILY", "ipv4", NULL };

/* A Child and the messages it points to, all on the caller's stack. */
struct tv_child {
	Ipam__V1__Child child;		/* the request */
	Ipam__V1__Subnet subnet;	/* child.subnet */
	Nsp__V1__Conduit conduit;	/* child.subnet.conduit */
	Nsp__V1__Trench trench;		/* child.subnet.conduit.trench */
};

/* Fills t with a valid IPv4 request for trench "red". */
static void
tv_init(struct tv_child *t)
{
	t->child = (Ipam__V1__Child)IPAM__V1__CHILD__INIT;
	t->subnet = (Ipam__V1__Subnet)IPAM__V1__SUBNET__INIT;
	t->conduit = (Nsp__V1__Conduit)NSP__V1__CONDUIT__INIT;
	t->trench = (Nsp__V1__Trench)NSP__V1__TRENCH__INIT;
	t->trench.name = "red";
	t->conduit.name = "load-balancer";
	t->conduit.trench = &t->trench;
	t->subnet.conduit = &t->conduit;
	t->subnet.node = "worker-1";
	t->subnet.ipfamily = IPAM__V1__IPFAMILY__IPV4;
	t->child.name = "proxy-a";
	t->child.subnet = &t->subnet;
}

/* Runs validate_child with the configuration of vars; returns the code
 * and leaves the status in st and the family in *family. */
static int
tv_check_msg(const char *const *vars, const Ipam__V1__Child *ch, int *family,
    struct grpcx_status *st)
{
	struct cfg c;
	char err[256];
	int rc;

	tv_vars = vars;
	cr_assert_eq(config_load(&c, tv_get, err, sizeof(err)), 0, "%s", err);
	rc = validate_child(&c, ch, family, st);
	config_free(&c);
	return rc;
}

/* tv_check_msg on the request held in t. */
static int
tv_check(const char *const *vars, const struct tv_child *t, int *family,
    struct grpcx_status *st)
{
	return tv_check_msg(vars, &t->child, family, st);
}

/* Asserts that t is refused with code and a message containing want. */
static void
tv_refused(const char *const *vars, const struct tv_child *t, int code,
    const char *want)
{
	struct grpcx_status st;
	int family = 0;

	cr_assert_eq(tv_check(vars, t, &family, &st), code, "%s", st.message);
	cr_assert_eq(st.code, code);
	cr_assert(strstr(st.message, want) != NULL, "message \"%s\" lacks "
	    "\"%s\"", st.message, want);
}

Test(validate, accepts_both_families)
{
	struct tv_child t;
	struct grpcx_status st;
	int family = 0;

	tv_init(&t);
	cr_assert_eq(tv_check(tv_dual, &t, &family, &st), GRPC_STATUS_OK, "%s",
	    st.message);
	cr_assert_eq(st.code, GRPC_STATUS_OK);
	cr_assert_str_empty(st.message);
	cr_assert_eq(family, 4);

	t.subnet.ipfamily = IPAM__V1__IPFAMILY__IPV6;
	family = 0;
	cr_assert_eq(tv_check(tv_dual, &t, &family, &st), GRPC_STATUS_OK, "%s",
	    st.message);
	cr_assert_eq(family, 6);
}

Test(validate, missing_messages)
{
	struct tv_child t;

	tv_init(&t);
	t.child.subnet = NULL;
	tv_refused(tv_dual, &t, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.subnet: missing");

	tv_init(&t);
	t.subnet.conduit = NULL;
	tv_refused(tv_dual, &t, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.subnet.conduit: missing");

	tv_init(&t);
	t.conduit.trench = NULL;
	tv_refused(tv_dual, &t, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.subnet.conduit.trench: missing");
}

Test(validate, child_name)
{
	struct tv_child t;
	char name[BOUNDS_CHILD_MAX + 2];
	struct grpcx_status st;
	int family;

	tv_init(&t);
	t.child.name = "";
	tv_refused(tv_dual, &t, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.name: empty");

	memset(name, 'n', sizeof(name) - 1);
	name[BOUNDS_CHILD_MAX] = '\0';
	t.child.name = name;
	cr_assert_eq(tv_check(tv_dual, &t, &family, &st), GRPC_STATUS_OK,
	    "a name of exactly the bound: %s", st.message);
	name[BOUNDS_CHILD_MAX] = 'n';
	name[BOUNDS_CHILD_MAX + 1] = '\0';
	tv_refused(tv_dual, &t, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.name: 513 bytes, at most 512 allowed");

	t.child.name = "proxy-\xc0\xaf";
	tv_refused(tv_dual, &t, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.name: not valid UTF-8");
}

Test(validate, node_name)
{
	struct tv_child t;
	char node[BOUNDS_LABEL_MAX + 2];
	struct grpcx_status st;
	int family;

	tv_init(&t);
	t.subnet.node = "";
	tv_refused(tv_dual, &t, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.subnet.node: empty");

	memset(node, 'w', sizeof(node) - 1);
	node[BOUNDS_LABEL_MAX] = '\0';
	t.subnet.node = node;
	cr_assert_eq(tv_check(tv_dual, &t, &family, &st), GRPC_STATUS_OK,
	    "a node of exactly the bound: %s", st.message);
	node[BOUNDS_LABEL_MAX] = 'w';
	node[BOUNDS_LABEL_MAX + 1] = '\0';
	tv_refused(tv_dual, &t, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.subnet.node: 254 bytes, at most 253 allowed");

	t.subnet.node = "\xed\xa0\x80";
	tv_refused(tv_dual, &t, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.subnet.node: not valid UTF-8");
}

Test(validate, family_unknown_or_not_served)
{
	struct tv_child t;

	tv_init(&t);
	t.subnet.ipfamily = (Ipam__V1__IPFamily)7;
	tv_refused(tv_dual, &t, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.subnet.ipFamily: unknown value 7");

	tv_init(&t);
	t.subnet.ipfamily = IPAM__V1__IPFAMILY__IPV6;
	tv_refused(tv_v4only, &t, GRPC_STATUS_FAILED_PRECONDITION,
	    "IPV6 is not served");
}

Test(validate, trench_and_conduit)
{
	struct tv_child t;

	tv_init(&t);
	t.trench.name = "blue";
	tv_refused(tv_dual, &t, GRPC_STATUS_NOT_FOUND,
	    "trench \"blue\" not found (this instance serves \"red\")");

	tv_init(&t);
	t.conduit.name = "";
	tv_refused(tv_dual, &t, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.subnet.conduit.name: empty");

	tv_init(&t);
	t.conduit.name = "lb-\xe2\x82";
	tv_refused(tv_dual, &t, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.subnet.conduit.name: not valid UTF-8");
}

/* The first problem wins: each pair below has two, and the status names
 * the one checked first. */
Test(validate, first_problem_is_reported)
{
	struct tv_child t;

	tv_init(&t);
	t.child.name = "";
	t.subnet.conduit = NULL;
	tv_refused(tv_dual, &t, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.subnet.conduit: missing");

	tv_init(&t);
	t.child.name = "";
	t.subnet.node = "";
	tv_refused(tv_dual, &t, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.name: empty");

	tv_init(&t);
	t.subnet.node = "";
	t.trench.name = "blue";
	tv_refused(tv_dual, &t, GRPC_STATUS_INVALID_ARGUMENT,
	    "child.subnet.node: empty");

	tv_init(&t);
	t.subnet.ipfamily = IPAM__V1__IPFAMILY__IPV6;
	t.trench.name = "blue";
	tv_refused(tv_v4only, &t, GRPC_STATUS_FAILED_PRECONDITION,
	    "IPV6 is not served");

	tv_init(&t);
	t.trench.name = "blue";
	t.conduit.name = "";
	tv_refused(tv_dual, &t, GRPC_STATUS_NOT_FOUND, "trench \"blue\"");
}

/* A request that went over the wire: packed, unpacked, then checked. */
Test(validate, unpacked_request)
{
	struct tv_child t;
	struct grpcx_status st;
	uint8_t buf[256];
	Ipam__V1__Child *ch;
	size_t n;
	int family = 0;

	tv_init(&t);
	t.subnet.ipfamily = IPAM__V1__IPFAMILY__IPV6;
	n = ipam__v1__child__pack(&t.child, buf);
	cr_assert_lt(n, sizeof(buf));
	ch = ipam__v1__child__unpack(NULL, n, buf);
	cr_assert_not_null(ch);
	cr_assert_str_eq(ch->subnet->conduit->trench->name, "red");
	cr_assert_eq(tv_check_msg(tv_dual, ch, &family, &st), GRPC_STATUS_OK,
	    "%s", st.message);
	cr_assert_eq(family, 6);
	ipam__v1__child__free_unpacked(ch, NULL);
}
