/*
 * fuzz_request.c - libFuzzer target for the Ipam request path of the api
 * worker: the body of an Allocate or Release call as gRPC hands it over
 * (a byte buffer), unpacked with grpcx_unpack as an ipam.v1.Child, then
 * checked by validate_child against a configuration.
 *
 * The first input byte picks the configuration (served families, trench
 * name); the rest is the request body. Oracles beyond the sanitizers: the
 * status is OK exactly when a family was set, and then every field the
 * api worker goes on to read is present, bounded and UTF-8 as promised;
 * a refusal carries a known code and a message naming a child field.
 */
#include <string.h>

#include "fuzz.h"
#include "grpcx.h"
#include "utf8.h"
#include "validate.h"

/* The configurations a request is checked against. */
static const char *const *const fr_envs[] = {
	(const char *const[]){ NULL },
	(const char *const[]){ "IPAM_IP_FAMILY", "ipv4", NULL },
	(const char *const[]){ "IPAM_IP_FAMILY", "ipv6",
	    "IPAM_TRENCH_NAME", "trench-a", NULL },
	(const char *const[]){ "IPAM_TRENCH_NAME", "\xc3\xa9t\xc3\xa9", NULL },
};
#define FR_NENVS (sizeof(fr_envs) / sizeof(fr_envs[0]))

static struct cfg fr_cfg[FR_NENVS];	/* loaded once, never freed */
static const char *const *fr_vars;	/* environment being loaded */

/* config_load's lookup over fr_vars. */
static const char *
fr_get(const char *name)
{
	for (size_t i = 0; fr_vars[i] != NULL; i += 2) {
		if (strcmp(fr_vars[i], name) == 0)
			return fr_vars[i + 1];
	}
	return NULL;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[256];

	for (size_t i = 0; i < FR_NENVS; i++) {
		fr_vars = fr_envs[i];
		if (config_load(&fr_cfg[i], fr_get, err, sizeof(err)) != 0)
			fuzz_fail("configuration", err);
	}
	return 0;
}

/* An accepted request must give the api worker what it reads next. */
static void
fr_check_ok(const struct cfg *c, const Ipam__V1__Child *ch, int family)
{
	const Ipam__V1__Subnet *s = ch->subnet;
	size_t n;

	if (family != 4 && family != 6)
		fuzz_fail("accepted", "family is neither 4 nor 6");
	if (config_pool_of(c, family == 4 ? PFX_V4 : PFX_V6) == NULL)
		fuzz_fail("accepted", "a family that is not served");
	if (s == NULL || s->conduit == NULL || s->conduit->trench == NULL)
		fuzz_fail("accepted", "a missing message");
	if (strcmp(s->conduit->trench->name, c->trench) != 0)
		fuzz_fail("accepted", "another trench");
	n = strlen(ch->name);
	if (n == 0 || n > BOUNDS_CHILD_MAX || !utf8_valid(ch->name, n))
		fuzz_fail("accepted", "a bad child name");
	n = strlen(s->node);
	if (n == 0 || n > BOUNDS_LABEL_MAX || !utf8_valid(s->node, n))
		fuzz_fail("accepted", "a bad node name");
	n = strlen(s->conduit->name);
	if (n == 0 || !utf8_valid(s->conduit->name, n))
		fuzz_fail("accepted", "a bad conduit name");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct cfg *c;
	grpc_byte_buffer *bb;
	Ipam__V1__Child *ch;
	struct grpcx_status st;
	int family = 0, rc;

	if (size < 1)
		return 0;
	c = &fr_cfg[data[0] % FR_NENVS];
	if ((bb = grpcx_bytes(data + 1, size - 1)) == NULL)
		fuzz_fail("grpcx_bytes", "NULL");
	ch = (Ipam__V1__Child *)grpcx_unpack(&ipam__v1__child__descriptor,
	    bb);
	grpc_byte_buffer_destroy(bb);
	if (ch == NULL)
		return 0;
	rc = validate_child(c, ch, &family, &st);
	if (rc != (int)st.code)
		fuzz_fail("return value and status differ", st.message);
	if (rc == GRPC_STATUS_OK) {
		if (st.message[0] != '\0')
			fuzz_fail("OK with a message", st.message);
		fr_check_ok(c, ch, family);
	} else {
		if (rc != GRPC_STATUS_INVALID_ARGUMENT &&
		    rc != GRPC_STATUS_FAILED_PRECONDITION &&
		    rc != GRPC_STATUS_NOT_FOUND)
			fuzz_fail("unexpected code", st.message);
		if (strncmp(st.message, "child.", 6) != 0)
			fuzz_fail("message names no field", st.message);
		if (memchr(st.message, '\0', sizeof(st.message)) == NULL)
			fuzz_fail("message not terminated", "");
	}
	ipam__v1__child__free_unpacked(ch, NULL);
	return 0;
}
