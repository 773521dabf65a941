/*
 * configjson.c - the effective configuration as JSON, one key per
 * environment variable with its value in the form the variable takes (for
 * meridio-ipam --debug).
 */
#include "configjson.h"
#include "gotext.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

/* Number of duration and number variables in the dump. */
#define CONFIGJSON_NDUR 7
#define CONFIGJSON_NNUM 6

/* The conduit list joined with commas, as IPAM_CONDUITS takes it. */
static char *
configjson_join(char *const *v, size_t n)
{
	size_t len = 1, i, o = 0;
	char *s;

	for (i = 0; i < n; i++)
		len += strlen(v[i]) + 1;
	s = malloc(len);
	if (s == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		if (i > 0)
			s[o++] = ',';
		memcpy(s + o, v[i], strlen(v[i]));
		o += strlen(v[i]);
	}
	s[o] = '\0';
	return s;
}

/* Upper-case name of a level, as IPAM_LOG_LEVEL takes it. */
static void
configjson_level(enum log_level l, char *buf, size_t len)
{
	size_t i;

	snprintf(buf, len, "%s", log_level_name(l));
	for (i = 0; buf[i] != '\0'; i++)
		buf[i] = (char)toupper((unsigned char)buf[i]);
}

/*
 * Every value is first written as text into local buffers; one table then
 * gives the keys in the order of --help, and one loop adds them (a NULL
 * string, as in a zeroed cfg, becomes "").
 */
char *
configjson_text(const struct cfg *c)
{
	static const char *const fams[] = {
		[CFG_IPV4] = "ipv4", [CFG_IPV6] = "ipv6",
		[CFG_DUALSTACK] = "dualstack",
	};
	const int64_t durs[CONFIGJSON_NDUR] = {
		c->keepalive_ns, c->probe_timeout_ns, c->max_backoff_ns,
		c->gc_interval_ns, c->gc_threshold_ns, c->release_cooldown_ns,
		c->renewal_refresh_ns,
	};
	const unsigned nums[CONFIGJSON_NNUM] = {
		c->port, c->v4.conduit_len, c->v4.node_len, c->v6.conduit_len,
		c->v6.node_len, c->metrics_port,
	};
	char dur[CONFIGJSON_NDUR][40], num[CONFIGJSON_NNUM][16];
	char v4[PFX_STRLEN], v6[PFX_STRLEN], level[16];
	char *conduits, *allowed, *out = NULL;
	struct json_object *obj, *v;
	const char *text;
	size_t i;

	for (i = 0; i < CONFIGJSON_NDUR; i++)
		gotext_format_duration(durs[i], dur[i], sizeof(dur[i]));
	for (i = 0; i < CONFIGJSON_NNUM; i++)
		snprintf(num[i], sizeof(num[i]), "%u", nums[i]);
	pfx_format(&c->v4.prefix, v4);
	pfx_format(&c->v6.prefix, v6);
	configjson_level(c->log_level, level, sizeof(level));
	conduits = configjson_join(c->conduits, c->nconduits);
	allowed = configjson_join(c->spiffe_allowed, c->nspiffe_allowed);
	const struct {
		const char *key;	/* the variable */
		const char *text;	/* its value, as text */
	} kv[] = {
		{ "IPAM_PORT", num[0] },
		{ "IPAM_DATA_SOURCE", c->data_source },
		{ "IPAM_TRENCH_NAME", c->trench },
		{ "IPAM_NSP_SERVICE", c->nsp_service },
		{ "IPAM_PREFIX_IPV4", v4 },
		{ "IPAM_CONDUIT_PREFIX_LENGTH_IPV4", num[1] },
		{ "IPAM_NODE_PREFIX_LENGTH_IPV4", num[2] },
		{ "IPAM_PREFIX_IPV6", v6 },
		{ "IPAM_CONDUIT_PREFIX_LENGTH_IPV6", num[3] },
		{ "IPAM_NODE_PREFIX_LENGTH_IPV6", num[4] },
		{ "IPAM_IP_FAMILY", (unsigned)c->family <= CFG_DUALSTACK ?
		    fams[c->family] : NULL },
		{ "IPAM_LOG_LEVEL", level },
		{ "IPAM_GRPC_KEEPALIVE_TIME", dur[0] },
		{ "IPAM_GRPC_PROBE_RPC_TIMEOUT", dur[1] },
		{ "IPAM_GRPC_MAX_BACKOFF", dur[2] },
		{ "IPAM_GARBAGE_COLLECTION_ENABLED",
		    c->gc_enabled ? "true" : "false" },
		{ "IPAM_GARBAGE_COLLECTION_INTERVAL", dur[3] },
		{ "IPAM_GARBAGE_COLLECTION_THRESHOLD", dur[4] },
		{ "IPAM_CONDUITS", conduits },
		{ "IPAM_RELEASE_COOLDOWN", dur[5] },
		{ "IPAM_RENEWAL_REFRESH", dur[6] },
		{ "IPAM_METRICS_PORT", num[5] },
		{ "IPAM_TLS_CERT", c->tls_cert },
		{ "IPAM_TLS_KEY", c->tls_key },
		{ "IPAM_TLS_CA", c->tls_ca },
		{ "IPAM_NSP_TLS_CA", c->nsp_tls_ca },
		{ "IPAM_NSP_TLS_CERT", c->nsp_tls_cert },
		{ "IPAM_NSP_TLS_KEY", c->nsp_tls_key },
		{ "IPAM_NSP_TLS_SERVER_NAME", c->nsp_tls_server_name },
		{ "IPAM_HEALTH_SOCKET", c->health_socket },
		{ "SPIFFE_ENDPOINT_SOCKET", c->spiffe_socket },
		{ "IPAM_SPIFFE_ALLOWED_IDS", allowed },
		{ "IPAM_ADMIN_GROUP", c->admin_group },
	};

	obj = json_object_new_object();
	if (obj == NULL || conduits == NULL || allowed == NULL)
		goto done;
	for (i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
		text = kv[i].text != NULL ? kv[i].text : "";
		v = json_object_new_string(text);
		if (v == NULL ||
		    json_object_object_add(obj, kv[i].key, v) != 0) {
			json_object_put(v);
			goto done;
		}
	}
	text = json_object_to_json_string_ext(obj,
	    JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
	    JSON_C_TO_STRING_NOSLASHESCAPE);
	if (text != NULL)
		out = strdup(text);
done:
	free(conduits);
	free(allowed);
	json_object_put(obj);
	return out;
}
