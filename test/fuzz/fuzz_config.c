/*
 * fuzz_config.c - libFuzzer target for configuration parsing (config_load).
 *
 * The input is an environment: lines "NAME=value" separated by '\n' (a
 * later line for the same name wins, as a shell's export would). config_load
 * reads it through its lookup function, exactly as the daemon reads its
 * real environment.
 *
 * Oracles beyond the sanitizers: a refusal leaves the cfg zeroed and says
 * which variable is wrong; an accepted configuration keeps every invariant
 * the workers rely on (port range, pool geometry, positive durations), its
 * durations survive a format/parse round trip, it serialises to JSON, and
 * loading the same environment twice gives the same answer.
 */
#include <string.h>

#include "configjson.h"
#include "fuzz.h"
#include "gotext.h"

/* Most variables one input can set. */
#define FC_MAX_VARS 64

/* The environment of the current input: names and values, NUL-ended
 * copies in one buffer. */
static struct {
	char *buf;			/* the input, '\n' and '=' replaced by NUL */
	const char *name[FC_MAX_VARS];	/* variable names */
	const char *value[FC_MAX_VARS];	/* their values */
	size_t n;			/* variables set */
} fc_env;

/* config_load's lookup: the last line that sets name, or NULL. */
static const char *
fc_get(const char *name)
{
	for (size_t i = fc_env.n; i-- > 0;) {
		if (strcmp(fc_env.name[i], name) == 0)
			return fc_env.value[i];
	}
	return NULL;
}

/* Cuts the input into fc_env. Lines without '=' are ignored. */
static void
fc_parse(const uint8_t *data, size_t size)
{
	char *line, *next, *eq;

	fc_env.n = 0;
	/* The input up to its first NUL, if any: nothing after it is read. */
	fc_env.buf = next = strndup((const char *)data, size);
	if (next == NULL)
		fuzz_fail("strndup", "input copy");
	while ((line = strsep(&next, "\n")) != NULL && fc_env.n < FC_MAX_VARS) {
		if ((eq = strchr(line, '=')) == NULL)
			continue;
		*eq = '\0';
		fc_env.name[fc_env.n] = line;
		fc_env.value[fc_env.n] = eq + 1;
		fc_env.n++;
	}
}

/* A duration must print and parse back to itself. */
static void
fc_duration(int64_t ns, const char *what)
{
	char buf[32];
	int64_t back;

	if (ns < 0)
		fuzz_fail("negative duration accepted", what);
	gotext_format_duration(ns, buf, sizeof(buf));
	if (gotext_parse_duration(buf, &back) != 0 || back != ns)
		fuzz_fail("duration does not round-trip", buf);
}

/* The pool invariants the allocator relies on. */
static void
fc_pool(const struct cfg_pool *p, int family)
{
	unsigned bits = pfx_family_bits(family);

	if (p->prefix.family != family)
		fuzz_fail("pool family", "differs");
	if (!(p->prefix.len < p->conduit_len && p->conduit_len <
	    p->node_len && p->node_len <= bits - 2))
		fuzz_fail("pool lengths", "not prefix < conduit < node <= max");
	if ((p->prefix.addr & ~pfx_mask(family, p->prefix.len)) != 0)
		fuzz_fail("pool prefix", "host bits set");
}

/* Checks an accepted configuration. */
static void
fc_check(const struct cfg *c)
{
	char *json;

	if (c->port < 1 || c->port > 65535)
		fuzz_fail("port out of range", "IPAM_PORT");
	if (c->metrics_port > 65535 || (c->metrics_port != 0 &&
	    c->metrics_port == c->port))
		fuzz_fail("bad metrics port", "IPAM_METRICS_PORT");
	if (c->data_source == NULL || c->data_source[0] == '\0' ||
	    c->trench == NULL || c->trench[0] == '\0' ||
	    c->nsp_service == NULL)
		fuzz_fail("missing string", "data source, trench or nsp");
	if (c->family != CFG_IPV4 && c->family != CFG_IPV6 &&
	    c->family != CFG_DUALSTACK)
		fuzz_fail("family", "not a known set");
	if ((c->family & CFG_IPV4) != 0)
		fc_pool(&c->v4, PFX_V4);
	if ((c->family & CFG_IPV6) != 0)
		fc_pool(&c->v6, PFX_V6);
	if ((config_pool_of(c, PFX_V4) != NULL) != ((c->family & CFG_IPV4) != 0) ||
	    (config_pool_of(c, PFX_V6) != NULL) != ((c->family & CFG_IPV6) != 0))
		fuzz_fail("config_pool_of", "disagrees with family");
	fc_duration(c->keepalive_ns, "IPAM_GRPC_KEEPALIVE_TIME");
	fc_duration(c->probe_timeout_ns, "IPAM_GRPC_PROBE_RPC_TIMEOUT");
	fc_duration(c->max_backoff_ns, "IPAM_GRPC_MAX_BACKOFF");
	fc_duration(c->gc_interval_ns, "IPAM_GARBAGE_COLLECTION_INTERVAL");
	fc_duration(c->gc_threshold_ns, "IPAM_GARBAGE_COLLECTION_THRESHOLD");
	fc_duration(c->release_cooldown_ns, "IPAM_RELEASE_COOLDOWN");
	for (size_t i = 0; i < c->nconduits; i++) {
		if (c->conduits[i] == NULL || c->conduits[i][0] == '\0')
			fuzz_fail("conduit list", "empty entry");
	}
	if ((json = configjson_text(c)) == NULL)
		fuzz_fail("configjson_text", "NULL");
	free(json);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct cfg zero;	/* every byte 0 */
	struct cfg c, again;
	char err[512], err2[512];
	int rc, rc2;

	fc_parse(data, size);
	rc = config_load(&c, fc_get, err, sizeof(err));
	rc2 = config_load(&again, fc_get, err2, sizeof(err2));
	if (rc != rc2)
		fuzz_fail("not deterministic", err);
	if (rc != 0) {
		if (memcmp(&c, &zero, sizeof(c)) != 0)
			fuzz_fail("refused but cfg not zeroed", err);
		if (strstr(err, "IPAM_") == NULL &&
		    strstr(err, "SPIFFE_ENDPOINT_SOCKET") == NULL)
			fuzz_fail("refusal names no variable", err);
		if (strcmp(err, err2) != 0)
			fuzz_fail("two different refusals", err);
	} else {
		fc_check(&c);
		if (c.port != again.port || c.nconduits != again.nconduits ||
		    strcmp(c.trench, again.trench) != 0)
			fuzz_fail("not deterministic", "accepted twice differently");
	}
	config_free(&c);
	config_free(&again);
	free(fc_env.buf);
	fc_env.buf = NULL;
	return 0;
}
