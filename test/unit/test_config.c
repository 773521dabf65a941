/*
 * test_config.c - lib/config.c: every variable's default and a good value,
 * every kind of bad value (the message names the variable and quotes the
 * value), the IPAM_DATASOURCE alias, the help text, and the JSON dump of
 * lib/configjson.c (its tests load a configuration as these do).
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "config.h"
#include "configjson.h"

/* The fake environment: name, value pairs ending with NULL. */
static const char *const *tc_vars;

/* Lookup function handed to config_load: reads tc_vars. */
static const char *
tc_get(const char *name)
{
	for (size_t i = 0; tc_vars != NULL && tc_vars[i] != NULL; i += 2) {
		if (strcmp(tc_vars[i], name) == 0)
			return tc_vars[i + 1];
	}
	return NULL;
}

static const char *const tc_empty[] = { NULL };

/* The configuration a test loads, freed after every test, and the error
 * buffer. */
static struct cfg c;
static char err[512];

static void
tc_fini(void)
{
	config_free(&c);
}

TestSuite(config, .fini = tc_fini);

/* Frees c and loads it from the pairs given; returns config_load's result. */
static int
tc_load(const char *const *vars)
{
	config_free(&c);
	tc_vars = vars;
	return config_load(&c, tc_get, err, sizeof(err));
}

/* Loads c from the pairs given; they must be accepted. */
static void
tc_ok(const char *const *vars)
{
	cr_assert_eq(tc_load(vars), 0, "%s", err);
}

/* True if every byte of x is zero. */
static bool
tc_zero(const struct cfg *x)
{
	static const struct cfg zero;

	return memcmp(x, &zero, sizeof(*x)) == 0;
}

/* The JSON dump of c (configjson_text); the caller frees it. */
static char *
tc_text(void)
{
	char *text = configjson_text(&c);

	cr_assert_not_null(text);
	return text;
}

/* The string value of key in the JSON dump of c, copied into buf. */
static const char *
tc_json(const char *key, char *buf, size_t len)
{
	struct json_object *obj, *v;
	char *text = tc_text();

	obj = json_tokener_parse(text);
	cr_assert_not_null(obj, "%s", text);
	cr_assert(json_object_object_get_ex(obj, key, &v), "no key %s", key);
	cr_assert(json_object_is_type(v, json_type_string), "%s", key);
	snprintf(buf, len, "%s", json_object_get_string(v));
	json_object_put(obj);
	free(text);
	return buf;
}

/* Text of a prefix, for comparisons. */
static const char *
tc_pfx(const struct pfx *p)
{
	static char buf[4][PFX_STRLEN];
	static int k;

	k = (k + 1) % 4;
	pfx_format(p, buf[k]);
	return buf[k];
}

#define NS_S 1000000000LL
#define NS_M (60 * NS_S)
#define NS_H (60 * NS_M)

/* Every default: in the JSON dump (strings, prefixes and numbers are
 * copied there as they are), and typed values and fields not dumped in the
 * struct. */
Test(config, every_default)
{
	static const char *const want[][2] = {
		{ "IPAM_PORT", "7777" },
		{ "IPAM_DATA_SOURCE", "/run/ipam/data/registry.db" },
		{ "IPAM_TRENCH_NAME", "default" },
		{ "IPAM_NSP_SERVICE", "nsp-service:7778" },
		{ "IPAM_PREFIX_IPV4", "169.255.0.0/16" },
		{ "IPAM_CONDUIT_PREFIX_LENGTH_IPV4", "20" },
		{ "IPAM_NODE_PREFIX_LENGTH_IPV4", "24" },
		{ "IPAM_PREFIX_IPV6", "fd00::/48" },
		{ "IPAM_CONDUIT_PREFIX_LENGTH_IPV6", "56" },
		{ "IPAM_NODE_PREFIX_LENGTH_IPV6", "64" },
		{ "IPAM_IP_FAMILY", "dualstack" },
		{ "IPAM_LOG_LEVEL", "DEBUG" },
		{ "IPAM_GRPC_KEEPALIVE_TIME", "30s" },
		{ "IPAM_GRPC_PROBE_RPC_TIMEOUT", "1s" },
		{ "IPAM_GRPC_MAX_BACKOFF", "5s" },
		{ "IPAM_GARBAGE_COLLECTION_ENABLED", "true" },
		{ "IPAM_GARBAGE_COLLECTION_INTERVAL", "2h0m0s" },
		{ "IPAM_GARBAGE_COLLECTION_THRESHOLD", "40m0s" },
		{ "IPAM_CONDUITS", "" },
		{ "IPAM_RELEASE_COOLDOWN", "0s" },
		{ "IPAM_RENEWAL_REFRESH", "0s" },
		{ "IPAM_METRICS_PORT", "0" },
		{ "IPAM_TLS_CERT", "" },
		{ "IPAM_TLS_KEY", "" },
		{ "IPAM_TLS_CA", "" },
		{ "IPAM_NSP_TLS_CA", "" },
		{ "IPAM_NSP_TLS_CERT", "" },
		{ "IPAM_NSP_TLS_KEY", "" },
		{ "IPAM_NSP_TLS_SERVER_NAME", "" },
		{ "IPAM_HEALTH_SOCKET", "/tmp/health.sock" },
		{ "SPIFFE_ENDPOINT_SOCKET", "" },
		{ "IPAM_SPIFFE_ALLOWED_IDS", "" },
		{ "IPAM_ADMIN_GROUP", "" },
	};
	struct json_object *obj;
	char *text, buf[128];

	tc_ok(tc_empty);
	cr_assert_not(c.nsp_ignored);
	cr_assert_str_eq(c.k8s_namespace, "");
	cr_assert_eq(c.v4.prefix.family, PFX_V4);
	cr_assert_eq(c.v6.prefix.family, PFX_V6);
	cr_assert_eq(c.family, CFG_DUALSTACK);
	cr_assert_eq(c.log_level, LOGL_DEBUG);
	cr_assert_eq(c.keepalive_ns, 30 * NS_S);
	cr_assert_eq(c.probe_timeout_ns, 1 * NS_S);
	cr_assert_eq(c.max_backoff_ns, 5 * NS_S);
	cr_assert(c.gc_enabled);
	cr_assert_eq(c.gc_interval_ns, 2 * NS_H);
	cr_assert_eq(c.gc_threshold_ns, 40 * NS_M);
	cr_assert_eq(c.nconduits, 0);
	cr_assert_eq(c.release_cooldown_ns, 0);
	cr_assert_eq(c.renewal_refresh_ns, 0);
	cr_assert_str_eq(err, "");
	text = tc_text();
	obj = json_tokener_parse(text);
	cr_assert_eq(json_object_object_length(obj),
	    (int)(sizeof(want) / sizeof(want[0])), "%s", text);
	json_object_put(obj);
	free(text);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_assert_str_eq(tc_json(want[i][0], buf, sizeof(buf)),
		    want[i][1], "%s", want[i][0]);
	config_free(&c);
	cr_assert(tc_zero(&c));
}

/* An empty variable means unset: every variable empty gives the defaults. */
Test(config, empty_means_default)
{
	static const char *const vars[] = {
		"IPAM_PORT", "", "IPAM_DATA_SOURCE", "", "IPAM_DATASOURCE", "",
		"IPAM_TRENCH_NAME", "", "IPAM_PREFIX_IPV4", "",
		"IPAM_CONDUIT_PREFIX_LENGTH_IPV4", "",
		"IPAM_NODE_PREFIX_LENGTH_IPV4", "", "IPAM_PREFIX_IPV6", "",
		"IPAM_CONDUIT_PREFIX_LENGTH_IPV6", "",
		"IPAM_NODE_PREFIX_LENGTH_IPV6", "", "IPAM_IP_FAMILY", "",
		"IPAM_LOG_LEVEL", "", "IPAM_GRPC_KEEPALIVE_TIME", "",
		"IPAM_GARBAGE_COLLECTION_ENABLED", "",
		"IPAM_GARBAGE_COLLECTION_INTERVAL", "", NULL,
	};

	char *want, *got;

	tc_ok(tc_empty);
	want = tc_text();
	tc_ok(vars);
	got = tc_text();
	cr_assert_str_eq(got, want);
	free(want);
	free(got);
}

Test(config, every_variable_set)
{
	static const char *const vars[] = {
		"IPAM_PORT", "9000",
		"IPAM_DATA_SOURCE", "/var/lib/ipam/r.db",
		"IPAM_TRENCH_NAME", "trench-a",
		"IPAM_NSP_SERVICE", "nsp-service-trench-a:7778",
		"IPAM_PREFIX_IPV4", "10.0.0.0/8",
		"IPAM_CONDUIT_PREFIX_LENGTH_IPV4", "12",
		"IPAM_NODE_PREFIX_LENGTH_IPV4", "30",
		"IPAM_PREFIX_IPV6", "fd12:3400::/32",
		"IPAM_CONDUIT_PREFIX_LENGTH_IPV6", "40",
		"IPAM_NODE_PREFIX_LENGTH_IPV6", "126",
		"IPAM_IP_FAMILY", "IPv6",
		"IPAM_LOG_LEVEL", "warning",
		"IPAM_GRPC_KEEPALIVE_TIME", "1m30s",
		"IPAM_GRPC_PROBE_RPC_TIMEOUT", "250ms",
		"IPAM_GRPC_MAX_BACKOFF", "1.5s",
		"IPAM_GARBAGE_COLLECTION_ENABLED", "F",
		"IPAM_GARBAGE_COLLECTION_INTERVAL", "10m",
		"IPAM_GARBAGE_COLLECTION_THRESHOLD", "1h",
		"IPAM_NAMESPACE", "red",
		"IPAM_RELEASE_COOLDOWN", "30s", "IPAM_RENEWAL_REFRESH", "1m",
		"IPAM_METRICS_PORT", "9100",
		"IPAM_TLS_CERT", "/etc/ipam/tls.crt",
		"IPAM_TLS_KEY", "/etc/ipam/tls.key",
		"IPAM_TLS_CA", "/etc/ipam/ca.crt",
		"IPAM_NSP_TLS_CA", "/etc/ipam/nsp-ca.crt",
		"IPAM_NSP_TLS_CERT", "/etc/ipam/nsp.crt",
		"IPAM_NSP_TLS_KEY", "/etc/ipam/nsp.key",
		"IPAM_NSP_TLS_SERVER_NAME", "nsp.trench-a.svc",
		"IPAM_HEALTH_SOCKET", "/run/ipam/health.sock",
		NULL,
	};

	tc_ok(vars);
	cr_assert_eq(c.port, 9000);
	cr_assert_str_eq(c.data_source, "/var/lib/ipam/r.db");
	cr_assert_str_eq(c.trench, "trench-a");
	cr_assert_str_eq(c.nsp_service, "nsp-service-trench-a:7778");
	cr_assert_str_eq(tc_pfx(&c.v4.prefix), "10.0.0.0/8");
	cr_assert_eq(c.v4.conduit_len, 12);
	cr_assert_eq(c.v4.node_len, 30);
	cr_assert_str_eq(tc_pfx(&c.v6.prefix), "fd12:3400::/32");
	cr_assert_eq(c.v6.conduit_len, 40);
	cr_assert_eq(c.v6.node_len, 126);
	cr_assert_eq(c.family, CFG_IPV6);
	cr_assert_eq(c.log_level, LOGL_WARNING);
	cr_assert_eq(c.keepalive_ns, 90 * NS_S);
	cr_assert_eq(c.probe_timeout_ns, 250000000LL);
	cr_assert_eq(c.max_backoff_ns, 1500000000LL);
	cr_assert_not(c.gc_enabled);
	cr_assert_eq(c.gc_interval_ns, 10 * NS_M);
	cr_assert_eq(c.gc_threshold_ns, NS_H);
	/* IPAM_CONDUITS would mean no NSP: see conduits_trimmed_in_order */
	cr_assert_eq(c.nconduits, 0);
	cr_assert_str_eq(c.k8s_namespace, "red");
	cr_assert_eq(c.release_cooldown_ns, 30 * NS_S);
	cr_assert_eq(c.renewal_refresh_ns, 60 * NS_S);
	cr_assert_eq(c.metrics_port, 9100);
	cr_assert_str_eq(c.tls_cert, "/etc/ipam/tls.crt");
	cr_assert_str_eq(c.tls_key, "/etc/ipam/tls.key");
	cr_assert_str_eq(c.tls_ca, "/etc/ipam/ca.crt");
	cr_assert_str_eq(c.nsp_tls_ca, "/etc/ipam/nsp-ca.crt");
	cr_assert_str_eq(c.nsp_tls_cert, "/etc/ipam/nsp.crt");
	cr_assert_str_eq(c.nsp_tls_key, "/etc/ipam/nsp.key");
	cr_assert_str_eq(c.nsp_tls_server_name, "nsp.trench-a.svc");
	cr_assert(config_nsp_tls_on(&c));
	cr_assert_str_eq(c.health_socket, "/run/ipam/health.sock");
}

/*
 * IPAM_IP_FAMILY in any case; config_pool_of gives the pools of the served
 * families only, and the pool not served is still parsed.
 */
Test(config, family_any_case_and_pools_served)
{
	static const struct {
		const char *value;
		enum cfg_family want;
		bool v4, v6;	/* pools served */
	} cases[] = {
		{ "ipv4", CFG_IPV4, true, false },
		{ "IPV4", CFG_IPV4, true, false },
		{ "ipv6", CFG_IPV6, false, true },
		{ "Ipv6", CFG_IPV6, false, true },
		{ "dualstack", CFG_DUALSTACK, true, true },
		{ "DualStack", CFG_DUALSTACK, true, true },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *vars[] = { "IPAM_IP_FAMILY", cases[i].value, NULL };

		tc_ok(vars);
		cr_assert_eq(c.family, cases[i].want, "%s", cases[i].value);
		cr_assert_eq(config_pool_of(&c, PFX_V4),
		    cases[i].v4 ? &c.v4 : NULL, "%s", cases[i].value);
		cr_assert_eq(config_pool_of(&c, PFX_V6),
		    cases[i].v6 ? &c.v6 : NULL, "%s", cases[i].value);
		cr_assert_null(config_pool_of(&c, 5));
		cr_assert_eq(c.v4.node_len, 24);
		cr_assert_eq(c.v6.node_len, 64);
	}
}

/* IPAM_DATASOURCE is read only when IPAM_DATA_SOURCE is unset or empty. */
Test(config, datasource_alias_and_precedence)
{
	static const char *const cases[][5] = {
		{ "IPAM_DATASOURCE", "/alias.db", NULL },
		{ "IPAM_DATASOURCE", "/alias.db", "IPAM_DATA_SOURCE", "/main.db" },
		{ "IPAM_DATA_SOURCE", "", "IPAM_DATASOURCE", "/alias.db" },
	};
	static const char *const want[] = { "/alias.db", "/main.db",
	    "/alias.db" };

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tc_ok(cases[i]);
		cr_assert_str_eq(c.data_source, want[i], "case %zu", i);
	}
}

/* One bad setting: extra pairs (prerequisites) and the variable the
 * message must name, with the text it must contain. */
struct tc_bad {
	const char *name;	/* variable the message must name */
	const char *value;	/* its bad value */
	const char *expect;	/* text the message must contain */
	const char *n2, *v2;	/* another variable set with it, or NULL */
	const char *n3, *v3;	/* and a third, or NULL */
};

#define SPIFFE "SPIFFE_ENDPOINT_SOCKET"
#define UNIX_URI "a Unix socket URI, unix:///path or unix:/path"

/* Trailing fields left out of an entry are NULL, as C guarantees. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const struct tc_bad tc_bads[] = {
	{ "IPAM_PORT", "0", "a port number between 1 and 65535" },
	{ "IPAM_PORT", "65536", "between 1 and 65535" },
	{ "IPAM_PORT", "99999999999999999999", "between 1 and 65535" },
	{ "IPAM_PORT", "-1", "between 1 and 65535" },
	{ "IPAM_PORT", "+80", "between 1 and 65535" },
	{ "IPAM_PORT", "80x", "between 1 and 65535" },
	{ "IPAM_PORT", " 80", "between 1 and 65535" },
	{ "IPAM_PORT", "0080", "between 1 and 65535" },
	{ "IPAM_PORT", "0x50", "between 1 and 65535" },
	{ "IPAM_DATA_SOURCE", "/x\ty", "without control characters" },
	{ "IPAM_TRENCH_NAME", "a\x01" "b", "a trench name of 1 to 253 bytes" },
	{ "IPAM_TRENCH_NAME",
	    "ttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt"
	    "ttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt"
	    "ttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt"
	    "ttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt",
	    "a trench name of 1 to 253 bytes" },
	{ "IPAM_NSP_SERVICE", "nsp service:7778", "without spaces" },
	{ "IPAM_NSP_SERVICE", "nsp:7778\n", "without spaces" },
	{ "IPAM_PREFIX_IPV4", "garbage", "an IPv4 prefix such as" },
	{ "IPAM_PREFIX_IPV4", "10.0.0.1/8", "host bits set" },
	{ "IPAM_PREFIX_IPV4", "10.0.0.0/33", "an IPv4 prefix" },
	{ "IPAM_PREFIX_IPV4", "10.0.0.0", "an IPv4 prefix" },
	{ "IPAM_PREFIX_IPV4", "fd00::/48", "an IPv4 prefix" },
	{ "IPAM_PREFIX_IPV4", "10.0.0.0/29", "length at most 28" },
	{ "IPAM_PREFIX_IPV6", "169.255.0.0/16", "an IPv6 prefix" },
	{ "IPAM_PREFIX_IPV6", "fd00::1/48", "host bits set" },
	{ "IPAM_PREFIX_IPV6", "fd00::/125", "length at most 124" },
	{ "IPAM_PREFIX_IPV6", "fd00::/129", "an IPv6 prefix" },
	{ "IPAM_CONDUIT_PREFIX_LENGTH_IPV4", "16",
	    "a prefix length between 17 and 29" },
	{ "IPAM_CONDUIT_PREFIX_LENGTH_IPV4", "30", "between 17 and 29" },
	{ "IPAM_CONDUIT_PREFIX_LENGTH_IPV4", "x", "between 17 and 29" },
	{ "IPAM_CONDUIT_PREFIX_LENGTH_IPV4", "20.5", "between 17 and 29" },
	{ "IPAM_CONDUIT_PREFIX_LENGTH_IPV4", "8", "between 9 and 29",
	    "IPAM_PREFIX_IPV4", "10.0.0.0/8" },
	{ "IPAM_NODE_PREFIX_LENGTH_IPV4", "33",
	    "a prefix length between 21 and 30" },
	{ "IPAM_NODE_PREFIX_LENGTH_IPV4", "31", "between 21 and 30" },
	{ "IPAM_NODE_PREFIX_LENGTH_IPV4", "20", "between 21 and 30" },
	{ "IPAM_NODE_PREFIX_LENGTH_IPV4", "24", "between 25 and 30",
	    "IPAM_CONDUIT_PREFIX_LENGTH_IPV4", "24" },
	{ "IPAM_CONDUIT_PREFIX_LENGTH_IPV6", "48",
	    "a prefix length between 49 and 125" },
	{ "IPAM_CONDUIT_PREFIX_LENGTH_IPV6", "126", "between 49 and 125" },
	{ "IPAM_NODE_PREFIX_LENGTH_IPV6", "127",
	    "a prefix length between 57 and 126" },
	{ "IPAM_NODE_PREFIX_LENGTH_IPV6", "56", "between 57 and 126" },
	{ "IPAM_NODE_PREFIX_LENGTH_IPV6", "64", "between 65 and 126",
	    "IPAM_CONDUIT_PREFIX_LENGTH_IPV6", "64" },
	{ "IPAM_IP_FAMILY", "ipv5", "ipv4, ipv6 or dualstack" },
	{ "IPAM_IP_FAMILY", "dual", "ipv4, ipv6 or dualstack" },
	{ "IPAM_LOG_LEVEL", "verbose", "TRACE, DEBUG, INFO, WARNING" },
	{ "IPAM_LOG_LEVEL", "warn", "TRACE, DEBUG, INFO, WARNING" },
	{ "IPAM_GRPC_KEEPALIVE_TIME", "30", "a positive Go duration" },
	{ "IPAM_GRPC_KEEPALIVE_TIME", "0", "a positive Go duration" },
	{ "IPAM_GRPC_KEEPALIVE_TIME", "-1s", "a positive Go duration" },
	{ "IPAM_GRPC_PROBE_RPC_TIMEOUT", "1 s", "a positive Go duration" },
	{ "IPAM_GRPC_PROBE_RPC_TIMEOUT", "0s", "a positive Go duration" },
	{ "IPAM_GRPC_MAX_BACKOFF", "5sec", "a positive Go duration" },
	{ "IPAM_GRPC_MAX_BACKOFF", "9999999999h", "a positive Go duration" },
	{ "IPAM_GARBAGE_COLLECTION_ENABLED", "yes", "a boolean" },
	{ "IPAM_GARBAGE_COLLECTION_ENABLED", "TRue", "a boolean" },
	{ "IPAM_GARBAGE_COLLECTION_INTERVAL", "0", "a positive Go duration" },
	{ "IPAM_GARBAGE_COLLECTION_INTERVAL", "-2h", "a positive Go duration" },
	{ "IPAM_GARBAGE_COLLECTION_INTERVAL", "2 hours",
	    "a positive Go duration" },
	{ "IPAM_GARBAGE_COLLECTION_INTERVAL", "-2h",
	    "a non-negative Go duration",
	    "IPAM_GARBAGE_COLLECTION_ENABLED", "false" },
	{ "IPAM_GARBAGE_COLLECTION_THRESHOLD", "0s", "a positive Go duration" },
	{ "IPAM_GARBAGE_COLLECTION_THRESHOLD", "40", "a positive Go duration" },
	{ "IPAM_GARBAGE_COLLECTION_THRESHOLD", "-1m",
	    "a non-negative Go duration",
	    "IPAM_GARBAGE_COLLECTION_ENABLED", "0" },
	{ "IPAM_CONDUITS", "a,,b", "(entry 2 is empty)" },
	{ "IPAM_CONDUITS", "a,", "(entry 2 is empty)" },
	{ "IPAM_CONDUITS", ",a", "(entry 1 is empty)" },
	{ "IPAM_CONDUITS", "a, ,b", "(entry 2 is empty)" },
	{ "IPAM_CONDUITS", " ", "(entry 1 is empty)" },
	{ "IPAM_CONDUITS", "a,b, a", "(entry 3 repeats entry 1)" },
	{ "IPAM_CONDUITS", "a,b\x7f", "without control characters (entry 2)" },
	{ "IPAM_CONDUITS",
	    "ok,cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	    "ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	    "ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	    "ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
	    "1 to 253 bytes" },
	{ "IPAM_RELEASE_COOLDOWN", "-1s", "a non-negative Go duration" },
	{ "IPAM_RELEASE_COOLDOWN", "soon", "a non-negative Go duration" },
	{ "IPAM_RENEWAL_REFRESH", "-5s", "a non-negative Go duration" },
	{ "IPAM_RENEWAL_REFRESH", "60", "a non-negative Go duration" },
	{ "IPAM_METRICS_PORT", "65536", "between 0 and 65535 (0 = off)" },
	{ "IPAM_METRICS_PORT", "x", "between 0 and 65535" },
	{ "IPAM_METRICS_PORT", "7777", "a port other than IPAM_PORT (7777)" },
	{ "IPAM_TLS_KEY", "", "a key file because IPAM_TLS_CERT is set",
	    "IPAM_TLS_CERT", "/c.pem" },
	{ "IPAM_TLS_CERT", "", "a certificate file because IPAM_TLS_KEY is set",
	    "IPAM_TLS_KEY", "/k.pem" },
	{ "IPAM_TLS_CA", "/ca.pem", "no value unless IPAM_TLS_CERT and "
	    "IPAM_TLS_KEY are set" },
	{ "IPAM_TLS_CERT", "/c\n.pem", "a file path without control" },
	{ "IPAM_TLS_KEY", "/k\r.pem", "a file path without control",
	    "IPAM_TLS_CERT", "/c.pem" },
	{ "IPAM_TLS_CA", "\x1b", "a file path without control",
	    "IPAM_TLS_CERT", "/c.pem", "IPAM_TLS_KEY", "/k.pem" },
	{ "IPAM_NSP_TLS_KEY", "", "a key file because IPAM_NSP_TLS_CERT is set",
	    "IPAM_NSP_TLS_CERT", "/c.pem", "IPAM_NSP_SERVICE", "nsp:7778" },
	{ "IPAM_NSP_TLS_CERT", "", "a certificate file because "
	    "IPAM_NSP_TLS_KEY is set", "IPAM_NSP_TLS_KEY", "/k.pem",
	    "IPAM_NSP_SERVICE", "nsp:7778" },
	{ "IPAM_NSP_TLS_CA", "/ca.pem", "no value without NSP "
	    "(IPAM_NSP_SERVICE empty or IPAM_CONDUITS set)",
	    "IPAM_NSP_SERVICE", "" },
	{ "IPAM_NSP_TLS_CERT", "/c.pem", "no value without NSP",
	    "IPAM_NSP_TLS_KEY", "/k.pem", "IPAM_CONDUITS", "a" },
	{ "IPAM_NSP_TLS_SERVER_NAME", "nsp", "no value without NSP",
	    "IPAM_NSP_SERVICE", "" },
	{ "IPAM_NAMESPACE", "ns\n", "a namespace without control" },
	{ "IPAM_NSP_TLS_SERVER_NAME", "nsp", "no value unless IPAM_NSP_TLS_CA "
	    "or IPAM_NSP_TLS_CERT is set", "IPAM_NSP_SERVICE", "nsp:7778" },
	{ "IPAM_NSP_TLS_SERVER_NAME", "a b", "a host name without spaces",
	    "IPAM_NSP_SERVICE", "nsp:7778", "IPAM_NSP_TLS_CA", "/ca.pem" },
	{ "IPAM_NSP_TLS_SERVER_NAME", "a\tb", "a host name without control",
	    "IPAM_NSP_SERVICE", "nsp:7778", "IPAM_NSP_TLS_CA", "/ca.pem" },
	{ "IPAM_NSP_TLS_CA", "/c\n", "a file path without control",
	    "IPAM_NSP_SERVICE", "nsp:7778" },
	{ "IPAM_HEALTH_SOCKET", "tmp/health.sock", "an absolute path" },
	{ "IPAM_HEALTH_SOCKET", "unix:///tmp/health.sock", "an absolute path" },
	{ "IPAM_HEALTH_SOCKET", "/tmp/h\n.sock", "without control" },
	{ "IPAM_HEALTH_SOCKET", "/tmp/"
	    "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh"
	    "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh"
	    ".sock", "at most 107 bytes" },
	{ "IPAM_HEALTH_SOCKET", "/tmp/", "a socket file name" },
	{ "IPAM_HEALTH_SOCKET", "/", "a socket file name" },
	{ SPIFFE, "tcp://127.0.0.1:8081", UNIX_URI },
	{ SPIFFE, "unix:agent.sock", UNIX_URI },
	{ SPIFFE, "unix://host/a.sock", UNIX_URI },
	{ SPIFFE, "/run/spire/sockets/agent.sock", UNIX_URI },
	{ SPIFFE, "unix:///a.sock?x=1", UNIX_URI },
	{ SPIFFE, "unix:///a.sock#f", UNIX_URI },
	{ SPIFFE, "unix://", UNIX_URI },
	{ SPIFFE, "unix:///run/\x01", "without control characters" },
	{ SPIFFE, "unix:///aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	    "a Unix socket path of at most 107 bytes" },
	/* SPIFFE and TLS files exclude each other; the message names both */
	{ SPIFFE, "unix:///s.sock", "no value when IPAM_TLS_CERT is set",
	    "IPAM_TLS_CERT", "/f", "IPAM_TLS_KEY", "/k" },
	{ SPIFFE, "unix:///s.sock", "no value when IPAM_NSP_TLS_CA is set",
	    "IPAM_NSP_TLS_CA", "/f" },
	{ "IPAM_SPIFFE_ALLOWED_IDS", "spiffe://example.org/a,,spiffe://x/b",
	    "(entry 2)", SPIFFE, "unix:/s.sock" },
	{ "IPAM_SPIFFE_ALLOWED_IDS", "https://example.org/a", "(entry 1)",
	    SPIFFE, "unix:/s.sock" },
	{ "IPAM_SPIFFE_ALLOWED_IDS", "spiffe:///path", "(entry 1)",
	    SPIFFE, "unix:/s.sock" },
	{ "IPAM_SPIFFE_ALLOWED_IDS", "spiffe://example.org/a,spiffe://x/a b",
	    "(entry 2)", SPIFFE, "unix:/s.sock" },
	{ "IPAM_SPIFFE_ALLOWED_IDS", "spiffe://example.org/a",
	    "no value unless SPIFFE_ENDPOINT_SOCKET is set" },
	{ "IPAM_ADMIN_GROUP", "no-such-group-xq",
	    "an existing group (no such group)" },
	{ "IPAM_ADMIN_GROUP", "-3", "a group name or number" },
};
#pragma GCC diagnostic pop

/*
 * Every bad value: config_load fails, leaves the struct zeroed, and writes one
 * line "NAME=<quoted value>: expected ..." containing the expected text.
 */
Test(config, every_bad_value_named)
{
	char quoted[600], head[700];
	const char *vars[7];

	for (size_t i = 0; i < sizeof(tc_bads) / sizeof(tc_bads[0]); i++) {
		const struct tc_bad *b = &tc_bads[i];
		size_t n = 0, o = 0;

		memset(vars, 0, sizeof(vars));
		vars[n++] = b->name;
		vars[n++] = b->value;
		if (b->n2 != NULL) {
			vars[n++] = b->n2;
			vars[n++] = b->v2;
		}
		if (b->n3 != NULL) {
			vars[n++] = b->n3;
			vars[n++] = b->v3;
		}
		memset(&c, 0x5a, sizeof(c));
		strcpy(err, "untouched");
		tc_vars = vars;
		cr_assert_eq(config_load(&c, tc_get, err, sizeof(err)), -1,
		    "%s=%s accepted", b->name, b->value);
		cr_assert(tc_zero(&c), "%s: cfg not left empty", b->name);
		/* the expected head: NAME="value (escaped, cut at 80)" */
		quoted[o++] = '"';
		for (size_t k = 0; b->value[k] != '\0'; k++) {
			unsigned char ch = (unsigned char)b->value[k];

			if (k == 80) {
				o += (size_t)sprintf(quoted + o, "...");
				break;
			}
			if (ch < 0x20 || ch == 0x7f)
				o += (size_t)sprintf(quoted + o, "\\x%02x",
				    ch);
			else
				quoted[o++] = (char)ch;
		}
		quoted[o++] = '"';
		quoted[o] = '\0';
		snprintf(head, sizeof(head), "%s=%s: expected ", b->name,
		    quoted);
		cr_assert_eq(strncmp(err, head, strlen(head)), 0,
		    "case %zu: got <%s>, want head <%s>", i, err, head);
		cr_assert_not_null(strstr(err, b->expect),
		    "case %zu: <%s> lacks <%s>", i, err, b->expect);
		cr_assert_null(strchr(err, '\n'), "case %zu: not one line",
		    i);
	}
}

/*
 * Whole messages, byte for byte: the README's example line; a default made
 * invalid by another variable (the unset variable is named with the default
 * it would take); quotes and backslashes escaped; the alias named when it
 * is the variable read.
 */
Test(config, messages_exact)
{
	static const struct {
		const char *vars[5];
		const char *want;
	} cases[] = {
		{ { "IPAM_NODE_PREFIX_LENGTH_IPV4", "33" },
		    "IPAM_NODE_PREFIX_LENGTH_IPV4=\"33\": expected a prefix "
		    "length between 21 and 30" },
		{ { "IPAM_CONDUIT_PREFIX_LENGTH_IPV6", "64",
		    "IPAM_NODE_PREFIX_LENGTH_IPV6", "" },
		    "IPAM_NODE_PREFIX_LENGTH_IPV6=\"64\": expected a prefix "
		    "length between 65 and 126" },
		{ { "IPAM_IP_FAMILY", "a\"b\\c" },
		    "IPAM_IP_FAMILY=\"a\\\"b\\\\c\": expected ipv4, ipv6 or "
		    "dualstack" },
		{ { "IPAM_DATASOURCE", "/a\nb" },
		    "IPAM_DATASOURCE=\"/a\\x0ab\": expected a file path without "
		    "control characters" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(tc_load(cases[i].vars), -1, "case %zu", i);
		cr_assert_str_eq(err, cases[i].want);
	}
}

/* A small or missing error buffer is never overrun. */
Test(config, small_or_null_err_buffer)
{
	static const char *const vars[] = { "IPAM_PORT", "x", NULL };
	char small[12];

	tc_vars = vars;
	memset(small, '#', sizeof(small));
	cr_assert_eq(config_load(&c, tc_get, small, 8), -1);
	cr_assert_eq(strlen(small), 7);
	cr_assert_eq(small[8], '#');
	cr_assert_eq(config_load(&c, tc_get, NULL, 0), -1);
	cr_assert(tc_zero(&c));
}

/* Boundary values that are just valid. */
Test(config, boundaries_accepted)
{
	static const char *const edges[][7] = {
		{ "IPAM_PORT", "1", NULL },
		{ "IPAM_PORT", "65535", NULL },
		{ "IPAM_METRICS_PORT", "65535", NULL },
		{ "IPAM_PREFIX_IPV4", "10.0.0.0/28",
		    "IPAM_CONDUIT_PREFIX_LENGTH_IPV4", "29",
		    "IPAM_NODE_PREFIX_LENGTH_IPV4", "30" },
		{ "IPAM_PREFIX_IPV4", "0.0.0.0/0", NULL },
		{ "IPAM_PREFIX_IPV6", "fd00::/124",
		    "IPAM_CONDUIT_PREFIX_LENGTH_IPV6", "125",
		    "IPAM_NODE_PREFIX_LENGTH_IPV6", "126" },
		{ "IPAM_GARBAGE_COLLECTION_ENABLED", "false",
		    "IPAM_GARBAGE_COLLECTION_INTERVAL", "0",
		    "IPAM_GARBAGE_COLLECTION_THRESHOLD", "0s" },
		{ "IPAM_TRENCH_NAME",
		    "ttttttttttttttttttttttttttttttttttttttttttttttttttttttttt"
		    "ttttttttttttttttttttttttttttttttttttttttttttttttttttttttt"
		    "ttttttttttttttttttttttttttttttttttttttttttttttttttttttttt"
		    "ttttttttttttttttttttttttttttttttttttttttttttttttttttttttt"
		    "ttttttttttttttttttttttttt", NULL },
		{ "IPAM_TLS_CERT", "/c", "IPAM_TLS_KEY", "/k", NULL },
		{ "IPAM_NSP_SERVICE", "nsp:7778", "IPAM_NSP_TLS_CA", "/ca",
		    NULL },
		{ "IPAM_NSP_SERVICE", "nsp:7778", "IPAM_NSP_TLS_CERT", "/c",
		    "IPAM_NSP_TLS_KEY", "/k" },
		{ "IPAM_CONDUITS", "only", NULL },
	};

	cr_assert_eq(strlen(edges[7][1]), 253);
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
		cr_assert_eq(tc_load(edges[i]), 0, "case %zu: %s", i, err);
}

Test(config, conduits_trimmed_in_order)
{
	static const char *const vars[] = {
		"IPAM_CONDUITS", "\tc-b ,c-a,  c-c\n", NULL,
	};

	tc_ok(vars);
	cr_assert_eq(c.nconduits, 3);
	cr_assert_str_eq(c.conduits[0], "c-b");
	cr_assert_str_eq(c.conduits[1], "c-a");
	cr_assert_str_eq(c.conduits[2], "c-c");
	config_free(&c);
	cr_assert(tc_zero(&c));
}

Test(config, free_zeroed_and_twice)
{

	memset(&c, 0, sizeof(c));
	config_free(&c);
	cr_assert(tc_zero(&c));
	config_free(NULL);
	tc_ok(tc_empty);
	config_free(&c);
	config_free(&c);
	cr_assert(tc_zero(&c));
}

/* Values set, fed back through config_load, give the same configuration. */
Test(config, json_round_trip)
{
	static const char *const vars[] = {
		"IPAM_IP_FAMILY", "IPV4", "IPAM_LOG_LEVEL", "error",
		"IPAM_CONDUITS", "a, b", "IPAM_GRPC_KEEPALIVE_TIME", "90s",
		"IPAM_RELEASE_COOLDOWN", "1500ms", "IPAM_PREFIX_IPV6",
		"FD00:0:0::/40", "IPAM_DATASOURCE", "/x/\"q\".db", NULL,
	};
	static const char *const want[][2] = {
		{ "IPAM_IP_FAMILY", "ipv4" }, { "IPAM_LOG_LEVEL", "ERROR" },
		{ "IPAM_CONDUITS", "a,b" }, { "IPAM_GRPC_KEEPALIVE_TIME", "1m30s" },
		{ "IPAM_RELEASE_COOLDOWN", "1.5s" },
		{ "IPAM_PREFIX_IPV6", "fd00::/40" },
		{ "IPAM_DATA_SOURCE", "/x/\"q\".db" },
	};
	const char *back[96];
	struct json_object *obj;
	char *text, *text2, buf[128];
	size_t n = 0;

	tc_ok(vars);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_assert_str_eq(tc_json(want[i][0], buf, sizeof(buf)),
		    want[i][1], "%s", want[i][0]);
	text = tc_text();
	obj = json_tokener_parse(text);
	cr_assert_not_null(obj);
	json_object_object_foreach(obj, key, val) {
		cr_assert_lt(n + 2, sizeof(back) / sizeof(back[0]));
		back[n++] = key;
		back[n++] = json_object_get_string(val);
	}
	back[n] = NULL;
	tc_ok(back);
	text2 = tc_text();
	cr_assert_str_eq(text, text2);
	json_object_put(obj);
	free(text);
	free(text2);
}

Test(config, help_lists_every_variable_and_default)
{
	static const char *const must[] = {
		"IPAM_PORT", "7777", "IPAM_DATA_SOURCE",
		"/run/ipam/data/registry.db", "IPAM_DATASOURCE",
		"IPAM_TRENCH_NAME", "default", "IPAM_NSP_SERVICE",
		"IPAM_PREFIX_IPV4", "169.255.0.0/16",
		"IPAM_CONDUIT_PREFIX_LENGTH_IPV4", "(default 20)",
		"IPAM_NODE_PREFIX_LENGTH_IPV4", "(default 24)",
		"IPAM_PREFIX_IPV6", "fd00::/48",
		"IPAM_CONDUIT_PREFIX_LENGTH_IPV6", "(default 56)",
		"IPAM_NODE_PREFIX_LENGTH_IPV6", "(default 64)",
		"IPAM_IP_FAMILY", "dualstack", "IPAM_LOG_LEVEL", "DEBUG",
		"IPAM_GRPC_KEEPALIVE_TIME", "30s", "IPAM_GRPC_PROBE_RPC_TIMEOUT",
		"(default 1s)", "IPAM_GRPC_MAX_BACKOFF", "(default 5s)",
		"IPAM_GARBAGE_COLLECTION_ENABLED", "(default true)",
		"IPAM_GARBAGE_COLLECTION_INTERVAL", "(default 2h)",
		"IPAM_GARBAGE_COLLECTION_THRESHOLD", "(default 40m)",
		"IPAM_CONDUITS", "IPAM_RELEASE_COOLDOWN", "(default 0)",
		"IPAM_RENEWAL_REFRESH",
		"IPAM_METRICS_PORT", "IPAM_TLS_CERT", "IPAM_TLS_KEY",
		"IPAM_TLS_CA", "IPAM_NSP_TLS_CA", "IPAM_NSP_TLS_CERT",
		"IPAM_NSP_TLS_KEY", "IPAM_NSP_TLS_SERVER_NAME",
		"IPAM_HEALTH_SOCKET", "/tmp/health.sock",
		"SPIFFE_ENDPOINT_SOCKET", "IPAM_SPIFFE_ALLOWED_IDS",
	};
	const char *h = config_help();

	cr_assert_not_null(h);
	for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++)
		cr_assert_not_null(strstr(h, must[i]), "help lacks %s",
		    must[i]);
}

/* TLS to NSP is on with a CA, with a client certificate, or both. */
Test(config, nsp_tls_on_with_ca_or_certificate)
{
	static const char *const cases[][9] = {
		{ "IPAM_NSP_SERVICE", "nsp:7778", NULL },
		{ "IPAM_NSP_SERVICE", "nsp:7778", "IPAM_NSP_TLS_CA", "/ca",
		    NULL },
		{ "IPAM_NSP_SERVICE", "nsp:7778", "IPAM_NSP_TLS_CERT", "/c",
		    "IPAM_NSP_TLS_KEY", "/k", NULL },
		{ "IPAM_NSP_SERVICE", "nsp:7778", "IPAM_NSP_TLS_CERT", "/c",
		    "IPAM_NSP_TLS_KEY", "/k", "IPAM_NSP_TLS_SERVER_NAME", "n" },
		{ "IPAM_TLS_CERT", "/c", "IPAM_TLS_KEY", "/k", "IPAM_TLS_CA",
		    "/ca", NULL },
	};
	static const bool on[] = { false, true, true, true, false };

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(tc_load(cases[i]), 0, "case %zu: %s", i, err);
		cr_expect_eq(config_nsp_tls_on(&c), on[i], "case %zu", i);
	}
}

/*
 * IPAM_HEALTH_SOCKET set but empty turns the health socket off: unlike the
 * other variables, empty is not the default. It stays off through --debug
 * and back, and the longest path that fits a Unix socket is taken.
 */
Test(config, health_socket_empty_is_off)
{
	static const char *const off[] = { "IPAM_HEALTH_SOCKET", "", NULL };
	static const char *const longest[] = { "IPAM_HEALTH_SOCKET", "/"
	    "ssssssssssssssssssssssssssssssssssssssssssssssssssssss"
	    "ssssssssssssssssssssssssssssssssssssssssssssssssssss", NULL };
	char buf[8];
	const char *back[] = { "IPAM_HEALTH_SOCKET", buf, NULL };

	tc_ok(off);
	cr_assert_str_eq(c.health_socket, "");
	cr_assert_str_eq(tc_json("IPAM_HEALTH_SOCKET", buf, sizeof(buf)), "");
	tc_ok(back);
	cr_assert_str_eq(c.health_socket, "");
	cr_assert_eq(strlen(longest[1]), 107);
	tc_ok(longest);
	cr_assert_str_eq(c.health_socket, longest[1]);
}

/* SPIFFE_ENDPOINT_SOCKET in go-spiffe's two Unix forms, as a gRPC target. */
Test(config, spiffe_endpoint_forms)
{
	static const char *const cases[][2] = {
		{ "unix:///run/spire/sockets/agent.sock",
		    "unix:/run/spire/sockets/agent.sock" },
		{ "unix:/tmp/agent.sock", "unix:/tmp/agent.sock" },
	};

	tc_ok(tc_empty);
	cr_expect_str_eq(c.spiffe_socket, "");
	cr_expect_str_eq(c.spiffe_target, "");
	cr_expect_eq(c.nspiffe_allowed, 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *vars[] = { "SPIFFE_ENDPOINT_SOCKET", cases[i][0],
		    NULL };

		tc_ok(vars);
		cr_expect_str_eq(c.spiffe_socket, cases[i][0]);
		cr_expect_str_eq(c.spiffe_target, cases[i][1]);
	}
	/* a target buffer too small is refused */
	cr_expect_eq(config_spiffe_target("unix:/a", err, 4, err, sizeof(err)),
	    -1);
}

/* IPAM_SPIFFE_ALLOWED_IDS: trimmed IDs and prefixes (bad entries: see
 * every_bad_value_named). */
Test(config, spiffe_allowed_ids)
{
	static const char *const good[] = {
		"SPIFFE_ENDPOINT_SOCKET", "unix:/s.sock",
		"IPAM_SPIFFE_ALLOWED_IDS",
		" spiffe://example.org/proxy ,spiffe://example.org/ns/a/", NULL,
	};
	char buf[128];

	tc_ok(good);
	cr_assert_eq(c.nspiffe_allowed, 2);
	cr_expect_str_eq(c.spiffe_allowed[0], "spiffe://example.org/proxy");
	cr_expect_str_eq(c.spiffe_allowed[1], "spiffe://example.org/ns/a/");
	cr_expect_str_eq(tc_json("IPAM_SPIFFE_ALLOWED_IDS", buf, sizeof(buf)),
	    "spiffe://example.org/proxy,spiffe://example.org/ns/a/");
}

/*
 * IPAM_NSP_SERVICE set but empty means no NSP. IPAM_CONDUITS selects
 * static conduits and no NSP, whatever IPAM_NSP_SERVICE says (nsp_ignored
 * tells the supervisor to say so when it was set).
 */
Test(config, nsp_service_empty_or_static_conduits)
{
	static const struct {
		const char *vars[5];
		size_t nconduits;
		bool ignored;
	} cases[] = {
		{ { "IPAM_NSP_SERVICE", "" }, 0, false },
		{ { "IPAM_CONDUITS", "a,b" }, 2, false },
		{ { "IPAM_CONDUITS", "a", "IPAM_NSP_SERVICE",
		    "nsp-service-trench-a:7778" }, 1, true },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tc_ok(cases[i].vars);
		cr_assert_str_eq(c.nsp_service, "", "case %zu", i);
		cr_assert_eq(c.nconduits, cases[i].nconduits, "case %zu", i);
		cr_assert_eq(c.nsp_ignored, cases[i].ignored, "case %zu", i);
	}
}

/* IPAM_ADMIN_GROUP: a group name or number whose members may use the admin
 * socket; unset or empty = none (unknown groups: see every_bad_value_named). */
Test(config, admin_group)
{
	static const struct {
		const char *vars[3];
		const char *group;
		long gid;
	} cases[] = {
		{ { NULL }, "", -1 },
		{ { "IPAM_ADMIN_GROUP", "" }, "", -1 },
		{ { "IPAM_ADMIN_GROUP", "root" }, "root", 0 },
		{ { "IPAM_ADMIN_GROUP", "0" }, "0", 0 },
	};
	char buf[32];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tc_ok(cases[i].vars);
		cr_assert_str_eq(c.admin_group, cases[i].group);
		cr_assert_eq(c.admin_gid, cases[i].gid, "case %zu", i);
		cr_assert_str_eq(tc_json("IPAM_ADMIN_GROUP", buf, sizeof(buf)),
		    cases[i].group);
	}
}
