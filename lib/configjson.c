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

/* Adds key = text to obj. Returns 0 or -1. */
static int
configjson_add(struct json_object *obj, const char *key, const char *text)
{
	struct json_object *v = json_object_new_string(text);

	if (v == NULL)
		return -1;
	if (json_object_object_add(obj, key, v) != 0) {
		json_object_put(v);
		return -1;
	}
	return 0;
}

/* Adds key = the decimal text of n. */
static int
configjson_uint(struct json_object *obj, const char *key, unsigned n)
{
	char buf[16];

	snprintf(buf, sizeof(buf), "%u", n);
	return configjson_add(obj, key, buf);
}

/* Adds key = the Go text of a duration. */
static int
configjson_dur(struct json_object *obj, const char *key, int64_t ns)
{
	char buf[40];

	gotext_format_duration(ns, buf, sizeof(buf));
	return configjson_add(obj, key, buf);
}

/* Adds one pool's three variables. */
static int
configjson_pool(struct json_object *obj, const struct cfg_pool *p, bool v4)
{
	char buf[PFX_STRLEN];

	pfx_format(&p->prefix, buf);
	if (configjson_add(obj, v4 ? "IPAM_PREFIX_IPV4" : "IPAM_PREFIX_IPV6",
	    buf) != 0 ||
	    configjson_uint(obj, v4 ? "IPAM_CONDUIT_PREFIX_LENGTH_IPV4" :
	    "IPAM_CONDUIT_PREFIX_LENGTH_IPV6", p->conduit_len) != 0 ||
	    configjson_uint(obj, v4 ? "IPAM_NODE_PREFIX_LENGTH_IPV4" :
	    "IPAM_NODE_PREFIX_LENGTH_IPV6", p->node_len) != 0)
		return -1;
	return 0;
}

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

char *
configjson_text(const struct cfg *c)
{
	static const char *const fams[] = {
		[CFG_IPV4] = "ipv4", [CFG_IPV6] = "ipv6",
		[CFG_DUALSTACK] = "dualstack",
	};
	struct json_object *obj;
	char level[16], *conduits = NULL, *allowed = NULL, *out = NULL;
	const char *text;

	obj = json_object_new_object();
	if (obj == NULL)
		return NULL;
	conduits = configjson_join(c->conduits, c->nconduits);
	allowed = configjson_join(c->spiffe_allowed, c->nspiffe_allowed);
	if (conduits == NULL || allowed == NULL)
		goto done;
	configjson_level(c->log_level, level, sizeof(level));
	if (configjson_uint(obj, "IPAM_PORT", c->port) != 0 ||
	    configjson_add(obj, "IPAM_DATA_SOURCE",
	    c->data_source ? c->data_source : "") != 0 ||
	    configjson_add(obj, "IPAM_TRENCH_NAME",
	    c->trench ? c->trench : "") != 0 ||
	    configjson_add(obj, "IPAM_NSP_SERVICE",
	    c->nsp_service ? c->nsp_service : "") != 0 ||
	    configjson_pool(obj, &c->v4, true) != 0 ||
	    configjson_pool(obj, &c->v6, false) != 0 ||
	    configjson_add(obj, "IPAM_IP_FAMILY",
	    (unsigned)c->family <= CFG_DUALSTACK && fams[c->family] ?
	    fams[c->family] : "") != 0 ||
	    configjson_add(obj, "IPAM_LOG_LEVEL", level) != 0 ||
	    configjson_dur(obj, "IPAM_GRPC_KEEPALIVE_TIME",
	    c->keepalive_ns) != 0 ||
	    configjson_dur(obj, "IPAM_GRPC_PROBE_RPC_TIMEOUT",
	    c->probe_timeout_ns) != 0 ||
	    configjson_dur(obj, "IPAM_GRPC_MAX_BACKOFF", c->max_backoff_ns) != 0 ||
	    configjson_add(obj, "IPAM_GARBAGE_COLLECTION_ENABLED",
	    c->gc_enabled ? "true" : "false") != 0 ||
	    configjson_dur(obj, "IPAM_GARBAGE_COLLECTION_INTERVAL",
	    c->gc_interval_ns) != 0 ||
	    configjson_dur(obj, "IPAM_GARBAGE_COLLECTION_THRESHOLD",
	    c->gc_threshold_ns) != 0 ||
	    configjson_add(obj, "IPAM_CONDUITS", conduits) != 0 ||
	    configjson_dur(obj, "IPAM_RELEASE_COOLDOWN",
	    c->release_cooldown_ns) != 0 ||
	    configjson_dur(obj, "IPAM_RENEWAL_REFRESH",
	    c->renewal_refresh_ns) != 0 ||
	    configjson_uint(obj, "IPAM_METRICS_PORT", c->metrics_port) != 0 ||
	    configjson_add(obj, "IPAM_TLS_CERT", c->tls_cert ? c->tls_cert : "")
	    != 0 ||
	    configjson_add(obj, "IPAM_TLS_KEY", c->tls_key ? c->tls_key : "")
	    != 0 ||
	    configjson_add(obj, "IPAM_TLS_CA", c->tls_ca ? c->tls_ca : "") != 0 ||
	    configjson_add(obj, "IPAM_NSP_TLS_CA",
	    c->nsp_tls_ca ? c->nsp_tls_ca : "") != 0 ||
	    configjson_add(obj, "IPAM_NSP_TLS_CERT",
	    c->nsp_tls_cert ? c->nsp_tls_cert : "") != 0 ||
	    configjson_add(obj, "IPAM_NSP_TLS_KEY",
	    c->nsp_tls_key ? c->nsp_tls_key : "") != 0 ||
	    configjson_add(obj, "IPAM_NSP_TLS_SERVER_NAME",
	    c->nsp_tls_server_name ? c->nsp_tls_server_name : "") != 0 ||
	    configjson_add(obj, "IPAM_HEALTH_SOCKET",
	    c->health_socket ? c->health_socket : "") != 0 ||
	    configjson_add(obj, "SPIFFE_ENDPOINT_SOCKET",
	    c->spiffe_socket ? c->spiffe_socket : "") != 0 ||
	    configjson_add(obj, "IPAM_SPIFFE_ALLOWED_IDS", allowed) != 0 ||
	    configjson_add(obj, "IPAM_ADMIN_GROUP",
	    c->admin_group ? c->admin_group : "") != 0)
		goto done;
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
