/*
 * config.c - Meridio's IPAM environment variables, parsed and validated.
 *
 * Every default is kept as text and goes through the same parser as a value
 * from the environment, so a default can never bypass validation and the
 * help text shows exactly what is used. An empty variable counts as unset.
 * Errors are one line: NAME="value": expected <what>.
 */
#include "config.h"
#include "bounds.h"
#include "gotext.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Defaults, as text (Meridio's values where Meridio has the variable). */
#define CFG_DEF_PORT "7777"
#define CFG_DEF_DATA_SOURCE "/run/ipam/data/registry.db"
#define CFG_DEF_TRENCH "default"
#define CFG_DEF_NSP "nsp-service:7778"
#define CFG_DEF_PREFIX_V4 "169.255.0.0/16"
#define CFG_DEF_CONDUIT_V4 "20"
#define CFG_DEF_NODE_V4 "24"
#define CFG_DEF_PREFIX_V6 "fd00::/48"
#define CFG_DEF_CONDUIT_V6 "56"
#define CFG_DEF_NODE_V6 "64"
#define CFG_DEF_FAMILY "dualstack"
#define CFG_DEF_LOG_LEVEL "DEBUG"
#define CFG_DEF_KEEPALIVE "30s"
#define CFG_DEF_PROBE_TIMEOUT "1s"
#define CFG_DEF_MAX_BACKOFF "5s"
#define CFG_DEF_GC_ENABLED "true"
#define CFG_DEF_GC_INTERVAL "2h"
#define CFG_DEF_GC_THRESHOLD "40m"
#define CFG_DEF_CONDUITS ""
#define CFG_DEF_COOLDOWN "0"
#define CFG_DEF_RENEWAL_REFRESH "0"
#define CFG_DEF_METRICS_PORT "0"
#define CFG_DEF_HEALTH_SOCKET "/tmp/health.sock"

/* Longest path of a Unix socket (sun_path less its NUL). */
#define CFG_SOCK_PATH_MAX 107

/* Longest node prefix: a node needs at least two usable addresses
 * besides its first and last. */
#define CFG_NODE_MAX_V4 30
#define CFG_NODE_MAX_V6 126

/* Bytes of a value quoted in an error message before it is cut. */
#define CFG_QUOTE_MAX 80

/* How config_load reads the environment during one call. */
struct cfg_ctx {
	const char *(*get)(const char *name);	/* lookup function */
	char *err;				/* caller's error buffer */
	size_t errlen;				/* its size */
};

/* Writes s into out as a double-quoted string: quotes, backslashes and
 * control bytes escaped, long values cut with "...". */
static void
config_quote(const char *s, char *out, size_t outlen)
{
	size_t o = 0, i;
	unsigned char c;

	if (outlen < 8)
		return;
	out[o++] = '"';
	for (i = 0; s[i] != '\0' && o + 8 < outlen; i++) {
		if (i == CFG_QUOTE_MAX) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x",
			    c);
		} else {
			out[o++] = (char)c;
		}
	}
	out[o++] = '"';
	out[o] = '\0';
}

/*
 * Writes `name="value": expected <fmt...>` into the caller's buffer and
 * returns -1, so a failing check is `return config_fail(...)`.
 */
static int
config_fail(struct cfg_ctx *x, const char *name, const char *value,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int
config_fail(struct cfg_ctx *x, const char *name, const char *value,
    const char *fmt, ...)
{
	char quoted[CFG_QUOTE_MAX * 4 + 16];
	va_list ap;
	int n;

	if (x->err == NULL || x->errlen == 0)
		return -1;
	config_quote(value, quoted, sizeof(quoted));
	n = snprintf(x->err, x->errlen, "%s=%s: expected ", name, quoted);
	if (n < 0 || (size_t)n >= x->errlen)
		return -1;
	va_start(ap, fmt);
	vsnprintf(x->err + n, x->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

/* The value of a variable, or def when it is unset or empty. */
static const char *
config_value(struct cfg_ctx *x, const char *name, const char *def)
{
	const char *v = x->get(name);

	return v != NULL && v[0] != '\0' ? v : def;
}

/*
 * Parses a decimal number in [lo, hi] with no sign, no spaces and no
 * leading zero (Meridio's parser would read "010" as octal: refusing it
 * avoids a silent difference). Returns 0 or -1.
 */
static int
config_parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
	unsigned long v = 0;
	size_t i;

	if (s[0] == '\0' || (s[0] == '0' && s[1] != '\0'))
		return -1;
	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
		if (v > hi)
			return -1;
	}
	if (v < lo)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/* True if s has no control byte (C0, DEL). */
static bool
config_no_ctl(const char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	}
	return true;
}

/* True if s is usable as a trench or conduit name. */
static bool
config_name_ok(const char *s)
{
	size_t len = strlen(s);

	return len > 0 && len <= BOUNDS_LABEL_MAX && config_no_ctl(s);
}

/* Reports that memory ran out while reading name; returns -1. */
static int
config_oom(struct cfg_ctx *x, const char *name)
{
	if (x->err != NULL && x->errlen > 0)
		snprintf(x->err, x->errlen, "%s: out of memory", name);
	return -1;
}

/* A copy of s, or NULL (out of memory: reported as such). */
static char *
config_dup(struct cfg_ctx *x, const char *name, const char *s)
{
	char *d = strdup(s);

	if (d == NULL)
		config_oom(x, name);
	return d;
}

/* Reads a port variable: 1-65535, or 0-65535 when zero_ok (0 = off). */
static int
config_port(struct cfg_ctx *x, const char *name, const char *def, bool zero_ok,
    unsigned *out)
{
	const char *v = config_value(x, name, def);

	if (config_parse_uint(v, zero_ok ? 0 : 1, 65535, out) != 0)
		return config_fail(x, name, v, "a port number between %d and "
		    "65535%s", zero_ok ? 0 : 1, zero_ok ? " (0 = off)" : "");
	return 0;
}

/*
 * Reads a duration variable. positive: must be > 0; otherwise >= 0.
 * Negative values are refused for every variable we have.
 */
static int
config_duration(struct cfg_ctx *x, const char *name, const char *def,
    bool positive, int64_t *out)
{
	const char *v = config_value(x, name, def);

	if (gotext_parse_duration(v, out) != 0 || *out < 0 ||
	    (positive && *out == 0))
		return config_fail(x, name, v, "a%s Go duration such as %s",
		    positive ? " positive" : " non-negative",
		    positive ? "30s, 1m30s or 2h" : "0, 30s or 1m30s");
	return 0;
}

/* Reads a free-form string variable (no control bytes) into *out. */
static int
config_string(struct cfg_ctx *x, const char *name, const char *def,
    const char *what, char **out)
{
	const char *v = config_value(x, name, def);

	if (!config_no_ctl(v))
		return config_fail(x, name, v, "%s without control characters",
		    what);
	*out = config_dup(x, name, v);
	return *out != NULL ? 0 : -1;
}

/*
 * Reads one family's pool: the trench prefix (of that family, short enough
 * to hold a conduit and a node), then the conduit length (longer than the
 * trench, shorter than the longest node), then the node length (longer
 * than the conduit, at most 30 / 126). Each message names the variable
 * whose value breaks the rule, given the ones read before it.
 */
static int
config_pool(struct cfg_ctx *x, int family, struct cfg_pool *pool)
{
	bool v4 = family == PFX_V4;
	const char *pname = v4 ? "IPAM_PREFIX_IPV4" : "IPAM_PREFIX_IPV6";
	const char *cname = v4 ? "IPAM_CONDUIT_PREFIX_LENGTH_IPV4" :
	    "IPAM_CONDUIT_PREFIX_LENGTH_IPV6";
	const char *nname = v4 ? "IPAM_NODE_PREFIX_LENGTH_IPV4" :
	    "IPAM_NODE_PREFIX_LENGTH_IPV6";
	const char *fam = v4 ? "IPv4" : "IPv6";
	unsigned nodemax = v4 ? CFG_NODE_MAX_V4 : CFG_NODE_MAX_V6;
	char perr[128];
	const char *v, *why, *p;

	v = config_value(x, pname, v4 ? CFG_DEF_PREFIX_V4 : CFG_DEF_PREFIX_V6);
	perr[0] = '\0';
	if (pfx_parse(v, &pool->prefix, perr, sizeof(perr)) != 0) {
		/* pfx_parse says "<text>: <problem>"; keep the problem only,
		 * the value is quoted already */
		why = perr;
		for (p = strstr(perr, ": "); p != NULL; p = strstr(p + 2, ": "))
			why = p + 2;
		return config_fail(x, pname, v, "an %s prefix such as %s%s%s",
		    fam, v4 ? CFG_DEF_PREFIX_V4 : CFG_DEF_PREFIX_V6,
		    why[0] ? "; " : "", why);
	}
	if (pool->prefix.family != family)
		return config_fail(x, pname, v, "an %s prefix such as %s", fam,
		    v4 ? CFG_DEF_PREFIX_V4 : CFG_DEF_PREFIX_V6);
	if (pool->prefix.len > nodemax - 2)
		return config_fail(x, pname, v, "an %s prefix of length at "
		    "most %u (room for conduit and node prefixes)", fam,
		    nodemax - 2);

	v = config_value(x, cname, v4 ? CFG_DEF_CONDUIT_V4 :
	    CFG_DEF_CONDUIT_V6);
	if (config_parse_uint(v, pool->prefix.len + 1u, nodemax - 1,
	    &pool->conduit_len) != 0)
		return config_fail(x, cname, v, "a prefix length between %u "
		    "and %u", pool->prefix.len + 1u, nodemax - 1);

	v = config_value(x, nname, v4 ? CFG_DEF_NODE_V4 : CFG_DEF_NODE_V6);
	if (config_parse_uint(v, pool->conduit_len + 1, nodemax,
	    &pool->node_len) != 0)
		return config_fail(x, nname, v, "a prefix length between %u "
		    "and %u", pool->conduit_len + 1, nodemax);
	return 0;
}

/* Reads IPAM_IP_FAMILY: ipv4, ipv6 or dualstack, any case. */
static int
config_family(struct cfg_ctx *x, enum cfg_family *out)
{
	const char *v = config_value(x, "IPAM_IP_FAMILY", CFG_DEF_FAMILY);

	if (strcasecmp(v, "ipv4") == 0)
		*out = CFG_IPV4;
	else if (strcasecmp(v, "ipv6") == 0)
		*out = CFG_IPV6;
	else if (strcasecmp(v, "dualstack") == 0)
		*out = CFG_DUALSTACK;
	else
		return config_fail(x, "IPAM_IP_FAMILY", v,
		    "ipv4, ipv6 or dualstack");
	return 0;
}

/*
 * Splits the value v of name on commas into *out (*n entries, each
 * trimmed of ASCII white space: no program sets a locale, so isspace is
 * the C locale's; empty ones kept as ""); config_free frees them.
 * The caller checks the entries. Returns 0, or -1 when out of memory.
 */
static int
config_list(struct cfg_ctx *x, const char *name, const char *v, char ***out,
    size_t *n)
{
	const char *p, *end, *s, *e;
	size_t k = 1;

	for (p = v; *p != '\0'; p++)
		k += *p == ',';
	*out = calloc(k, sizeof(**out));
	if (*out == NULL)
		return config_oom(x, name);
	for (p = v; *n < k; p = end + 1) {
		end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		s = p;
		e = end;
		while (s < e && isspace((unsigned char)*s))
			s++;
		while (e > s && isspace((unsigned char)e[-1]))
			e--;
		(*out)[*n] = strndup(s, (size_t)(e - s));
		if ((*out)[*n] == NULL)
			return config_oom(x, name);
		(*n)++;
	}
	return 0;
}

/*
 * Reads IPAM_CONDUITS: names separated by commas, each trimmed of white
 * space. An empty entry, a bad name or a repeated name is refused (with
 * its position), since each would silently mean something else.
 */
static int
config_conduits(struct cfg_ctx *x, struct cfg *c)
{
	const char *name = "IPAM_CONDUITS";
	const char *v = config_value(x, name, CFG_DEF_CONDUITS);
	size_t i, k;

	if (v[0] == '\0')
		return 0;
	if (config_list(x, name, v, &c->conduits, &c->nconduits) != 0)
		return -1;
	for (i = 0; i < c->nconduits; i++) {
		if (c->conduits[i][0] == '\0')
			return config_fail(x, name, v, "comma-separated "
			    "conduit names (entry %zu is empty)", i + 1);
		if (!config_name_ok(c->conduits[i]))
			return config_fail(x, name, v, "comma-separated "
			    "conduit names of 1 to %d bytes without control "
			    "characters (entry %zu)", BOUNDS_LABEL_MAX, i + 1);
		for (k = 0; k < i; k++)
			if (strcmp(c->conduits[k], c->conduits[i]) == 0)
				return config_fail(x, name, v,
				    "comma-separated conduit names without "
				    "repeats (entry %zu repeats entry %zu)",
				    i + 1, k + 1);
	}
	return 0;
}

/* Refuses a certificate file without its key file, and the reverse. */
static int
config_pair(struct cfg_ctx *x, const char *cname, const char *cert,
    const char *kname, const char *key)
{
	if (cert[0] != '\0' && key[0] == '\0')
		return config_fail(x, kname, key, "a key file because %s is "
		    "set", cname);
	if (key[0] != '\0' && cert[0] == '\0')
		return config_fail(x, cname, cert, "a certificate file because "
		    "%s is set", kname);
	return 0;
}

/*
 * Reads TLS settings: IPAM_TLS_CERT and IPAM_TLS_KEY both or neither;
 * IPAM_TLS_CA (client certificates) only together with them.
 */
static int
config_tls(struct cfg_ctx *x, struct cfg *c)
{
	if (config_string(x, "IPAM_TLS_CERT", "", "a file path",
	    &c->tls_cert) != 0 ||
	    config_string(x, "IPAM_TLS_KEY", "", "a file path",
	    &c->tls_key) != 0 ||
	    config_string(x, "IPAM_TLS_CA", "", "a file path",
	    &c->tls_ca) != 0)
		return -1;
	if (config_pair(x, "IPAM_TLS_CERT", c->tls_cert, "IPAM_TLS_KEY",
	    c->tls_key) != 0)
		return -1;
	if (c->tls_ca[0] != '\0' && c->tls_cert[0] == '\0')
		return config_fail(x, "IPAM_TLS_CA", c->tls_ca, "no value "
		    "unless IPAM_TLS_CERT and IPAM_TLS_KEY are set");
	return 0;
}

/*
 * Reads the NSP client's TLS settings: IPAM_NSP_TLS_CERT and
 * IPAM_NSP_TLS_KEY both or neither. TLS to NSP is on when IPAM_NSP_TLS_CA
 * or the certificate is set (without a CA the system's roots verify NSP);
 * IPAM_NSP_TLS_SERVER_NAME only with TLS on. None of them without
 * IPAM_NSP_SERVICE, where it would silently do nothing.
 */
static int
config_nsp_tls(struct cfg_ctx *x, struct cfg *c)
{
	static const char *const names[] = {
		"IPAM_NSP_TLS_CA", "IPAM_NSP_TLS_CERT", "IPAM_NSP_TLS_KEY",
		"IPAM_NSP_TLS_SERVER_NAME",
	};
	char **out[] = {
		&c->nsp_tls_ca, &c->nsp_tls_cert, &c->nsp_tls_key,
		&c->nsp_tls_server_name,
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (config_string(x, names[i], "", i < 3 ? "a file path" :
		    "a host name", out[i]) != 0)
			return -1;
	if (config_pair(x, "IPAM_NSP_TLS_CERT", c->nsp_tls_cert,
	    "IPAM_NSP_TLS_KEY", c->nsp_tls_key) != 0)
		return -1;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if ((*out[i])[0] != '\0' && c->nsp_service[0] == '\0')
			return config_fail(x, names[i], *out[i], "no value "
			    "without NSP (IPAM_NSP_SERVICE empty or "
			    "IPAM_CONDUITS set)");
	}
	if (c->nsp_tls_server_name[0] != '\0' && c->nsp_tls_ca[0] == '\0' &&
	    c->nsp_tls_cert[0] == '\0')
		return config_fail(x, "IPAM_NSP_TLS_SERVER_NAME",
		    c->nsp_tls_server_name, "no value unless IPAM_NSP_TLS_CA "
		    "or IPAM_NSP_TLS_CERT is set");
	if (strchr(c->nsp_tls_server_name, ' ') != NULL)
		return config_fail(x, "IPAM_NSP_TLS_SERVER_NAME",
		    c->nsp_tls_server_name, "a host name without spaces");
	return 0;
}

/* Room for a Unix socket path (sun_path, NUL included). */
#define CFG_SUN_PATH 108

int
config_spiffe_target(const char *value, char *target, size_t len, char *err,
    size_t errlen)
{
	const char *path;

	if (strncmp(value, "unix://", 7) == 0)
		path = value + 7;
	else if (strncmp(value, "unix:", 5) == 0)
		path = value + 5;
	else
		path = NULL;
	if (path == NULL || path[0] != '/' || strpbrk(path, "?#") != NULL ||
	    !config_no_ctl(path)) {
		snprintf(err, errlen, "a Unix socket URI, unix:///path or "
		    "unix:/path (an absolute path without host, query or "
		    "fragment; the Workload API is served on Unix sockets "
		    "only)");
		return -1;
	}
	if (strlen(path) >= CFG_SUN_PATH || strlen(path) + 6 > len) {
		snprintf(err, errlen, "a Unix socket path of at most %d bytes",
		    CFG_SUN_PATH - 1);
		return -1;
	}
	snprintf(target, len, "unix:%s", path);
	return 0;
}

/*
 * Reads IPAM_SPIFFE_ALLOWED_IDS: SPIFFE IDs or ID prefixes ending in '/',
 * separated by commas, each trimmed of white space. An entry that is not
 * spiffe://trust-domain/... is refused, as is the list without
 * SPIFFE_ENDPOINT_SOCKET (it would silently do nothing).
 */
static int
config_spiffe_allowed(struct cfg_ctx *x, struct cfg *c)
{
	const char *name = "IPAM_SPIFFE_ALLOWED_IDS";
	const char *v = config_value(x, name, "");
	const char *s;
	size_t i, len;

	if (v[0] == '\0')
		return 0;
	if (c->spiffe_socket[0] == '\0')
		return config_fail(x, name, v, "no value unless "
		    "SPIFFE_ENDPOINT_SOCKET is set");
	if (config_list(x, name, v, &c->spiffe_allowed,
	    &c->nspiffe_allowed) != 0)
		return -1;
	for (i = 0; i < c->nspiffe_allowed; i++) {
		s = c->spiffe_allowed[i];
		len = strlen(s);
		if (len <= 9 || strncmp(s, "spiffe://", 9) != 0 ||
		    s[9] == '/' || !config_name_ok(s) || strchr(s, ' ') != NULL)
			return config_fail(x, name, v, "comma-separated SPIFFE "
			    "IDs or ID prefixes ending in /, each "
			    "spiffe://trust-domain/path (entry %zu)", i + 1);
	}
	return 0;
}

/*
 * Reads SPIFFE_ENDPOINT_SOCKET (see config_spiffe_target) and the list of
 * allowed IDs. SPIFFE replaces the TLS files: setting both is refused,
 * naming both, rather than one silently winning.
 */
static int
config_spiffe(struct cfg_ctx *x, struct cfg *c)
{
	static const char *const tls[] = {
		"IPAM_TLS_CERT", "IPAM_TLS_KEY", "IPAM_TLS_CA",
		"IPAM_NSP_TLS_CA", "IPAM_NSP_TLS_CERT", "IPAM_NSP_TLS_KEY",
		"IPAM_NSP_TLS_SERVER_NAME",
	};
	const char *name = "SPIFFE_ENDPOINT_SOCKET";
	char target[CFG_SUN_PATH + 8], why[256];

	if (config_string(x, name, "", "a Unix socket URI", &c->spiffe_socket)
	    != 0)
		return -1;
	if (c->spiffe_socket[0] != '\0') {
		if (config_spiffe_target(c->spiffe_socket, target,
		    sizeof(target), why, sizeof(why)) != 0)
			return config_fail(x, name, c->spiffe_socket, "%s",
			    why);
		for (size_t i = 0; i < sizeof(tls) / sizeof(tls[0]); i++) {
			if (config_value(x, tls[i], "")[0] != '\0')
				return config_fail(x, name, c->spiffe_socket,
				    "no value when %s is set: SPIFFE mTLS and "
				    "TLS files exclude each other (unset one "
				    "of SPIFFE_ENDPOINT_SOCKET and %s)",
				    tls[i], tls[i]);
		}
	} else {
		target[0] = '\0';
	}
	c->spiffe_target = config_dup(x, name, target);
	if (c->spiffe_target == NULL)
		return -1;
	return config_spiffe_allowed(x, c);
}

/* True if the NSP client talks TLS (see config_nsp_tls). */
bool
config_nsp_tls_on(const struct cfg *c)
{
	return c->nsp_tls_ca != NULL && c->nsp_tls_cert != NULL &&
	    (c->nsp_tls_ca[0] != '\0' || c->nsp_tls_cert[0] != '\0');
}

/*
 * Reads IPAM_HEALTH_SOCKET, the Unix socket of the health service for exec
 * probes (Meridio's /tmp/health.sock by default). Unlike the other
 * variables, set but empty means off: a deployment without exec probes
 * turns the socket off that way. Otherwise an absolute path that fits a
 * Unix socket address and names a file, not a directory.
 */
static int
config_health_socket(struct cfg_ctx *x, struct cfg *c)
{
	const char *name = "IPAM_HEALTH_SOCKET";
	const char *v = x->get(name);
	size_t len;

	if (v == NULL)
		v = CFG_DEF_HEALTH_SOCKET;
	len = strlen(v);
	if (len > 0 && v[0] != '/')
		return config_fail(x, name, v, "an absolute path such as %s, "
		    "or empty to turn the health socket off",
		    CFG_DEF_HEALTH_SOCKET);
	if (!config_no_ctl(v))
		return config_fail(x, name, v, "a path without control "
		    "characters");
	if (len > CFG_SOCK_PATH_MAX)
		return config_fail(x, name, v, "a path of at most %d bytes (a "
		    "Unix socket address)", CFG_SOCK_PATH_MAX);
	if (len > 0 && v[len - 1] == '/')
		return config_fail(x, name, v, "a socket file name, not a "
		    "directory");
	c->health_socket = config_dup(x, name, v);
	return c->health_socket != NULL ? 0 : -1;
}

/*
 * Reads IPAM_ADMIN_GROUP: a group (name or number) whose members may use
 * the admin socket of an instance run by systemd (under
 * $RUNTIME_DIRECTORY). Unset or empty: none. A name must exist here.
 */
static int
config_admin_group(struct cfg_ctx *x, struct cfg *c)
{
	const char *name = "IPAM_ADMIN_GROUP";
	const char *v = x->get(name);
	struct group gr, *res = NULL;
	char buf[4096], *end;
	long n;
	int e;

	c->admin_gid = -1;
	if (v == NULL)
		v = "";
	c->admin_group = config_dup(x, name, v);
	if (c->admin_group == NULL)
		return -1;
	if (v[0] == '\0')
		return 0;
	if (isdigit((unsigned char)v[0]) || v[0] == '-') {
		errno = 0;
		n = strtol(v, &end, 10);
		if (*end != '\0' || errno != 0 || n < 0 || n > 0x7fffffffL)
			return config_fail(x, name, v, "a group name or "
			    "number");
		c->admin_gid = n;
		return 0;
	}
	e = getgrnam_r(v, &gr, buf, sizeof(buf), &res);
	if (res == NULL)
		return config_fail(x, name, v, "an existing group (%s)",
		    e != 0 ? strerror(e) : "no such group");
	c->admin_gid = (long)gr.gr_gid;
	return 0;
}

/* Reads every variable into c (which starts zeroed). Returns 0 or -1. */
static int
config_load_all(struct cfg_ctx *x, struct cfg *c)
{
	const char *v, *name;

	if (config_port(x, "IPAM_PORT", CFG_DEF_PORT, false, &c->port) != 0)
		return -1;

	/* IPAM_DATASOURCE only when IPAM_DATA_SOURCE is unset or empty */
	name = config_value(x, "IPAM_DATA_SOURCE", NULL) != NULL ?
	    "IPAM_DATA_SOURCE" : "IPAM_DATASOURCE";
	if (config_string(x, name, CFG_DEF_DATA_SOURCE, "a file path",
	    &c->data_source) != 0)
		return -1;

	v = config_value(x, "IPAM_TRENCH_NAME", CFG_DEF_TRENCH);
	if (!config_name_ok(v))
		return config_fail(x, "IPAM_TRENCH_NAME", v, "a trench name "
		    "of 1 to %d bytes without control characters",
		    BOUNDS_LABEL_MAX);
	c->trench = config_dup(x, "IPAM_TRENCH_NAME", v);
	if (c->trench == NULL)
		return -1;

	/* Unlike the others, set but empty is a value here: no NSP. */
	if ((v = x->get("IPAM_NSP_SERVICE")) == NULL)
		v = CFG_DEF_NSP;
	if (!config_no_ctl(v) || strchr(v, ' ') != NULL)
		return config_fail(x, "IPAM_NSP_SERVICE", v, "a gRPC target "
		    "such as nsp-service-trench-a:7778, without spaces or "
		    "control characters");
	c->nsp_service = config_dup(x, "IPAM_NSP_SERVICE", v);
	if (c->nsp_service == NULL)
		return -1;

	if (config_pool(x, PFX_V4, &c->v4) != 0 ||
	    config_pool(x, PFX_V6, &c->v6) != 0 ||
	    config_family(x, &c->family) != 0)
		return -1;

	v = config_value(x, "IPAM_LOG_LEVEL", CFG_DEF_LOG_LEVEL);
	if (log_level_parse(v, &c->log_level) != 0)
		return config_fail(x, "IPAM_LOG_LEVEL", v, "TRACE, DEBUG, "
		    "INFO, WARNING, ERROR, FATAL or PANIC");

	if (config_duration(x, "IPAM_GRPC_KEEPALIVE_TIME", CFG_DEF_KEEPALIVE,
	    true, &c->keepalive_ns) != 0 ||
	    config_duration(x, "IPAM_GRPC_PROBE_RPC_TIMEOUT",
	    CFG_DEF_PROBE_TIMEOUT, true, &c->probe_timeout_ns) != 0 ||
	    config_duration(x, "IPAM_GRPC_MAX_BACKOFF", CFG_DEF_MAX_BACKOFF,
	    true, &c->max_backoff_ns) != 0)
		return -1;

	v = config_value(x, "IPAM_GARBAGE_COLLECTION_ENABLED",
	    CFG_DEF_GC_ENABLED);
	if (gotext_parse_bool(v, &c->gc_enabled) != 0)
		return config_fail(x, "IPAM_GARBAGE_COLLECTION_ENABLED", v,
		    "a boolean: true, false, 1, 0, t, f (any of Go's forms)");
	/* Intervals must be positive only when GC runs; they are still
	 * parsed (and must not be negative) when it does not. */
	if (config_duration(x, "IPAM_GARBAGE_COLLECTION_INTERVAL",
	    CFG_DEF_GC_INTERVAL, c->gc_enabled, &c->gc_interval_ns) != 0 ||
	    config_duration(x, "IPAM_GARBAGE_COLLECTION_THRESHOLD",
	    CFG_DEF_GC_THRESHOLD, c->gc_enabled, &c->gc_threshold_ns) != 0)
		return -1;

	if (config_conduits(x, c) != 0)
		return -1;
	/* Static conduits mean no NSP. */
	if (c->nconduits > 0 && c->nsp_service[0] != '\0') {
		c->nsp_ignored = x->get("IPAM_NSP_SERVICE") != NULL;
		c->nsp_service[0] = '\0';
	}
	if (config_string(x, "IPAM_NAMESPACE", "", "a namespace",
	    &c->k8s_namespace) != 0 ||
	    config_duration(x, "IPAM_RELEASE_COOLDOWN", CFG_DEF_COOLDOWN, false,
	    &c->release_cooldown_ns) != 0 ||
	    config_duration(x, "IPAM_RENEWAL_REFRESH", CFG_DEF_RENEWAL_REFRESH,
	    false, &c->renewal_refresh_ns) != 0 ||
	    config_port(x, "IPAM_METRICS_PORT", CFG_DEF_METRICS_PORT, true,
	    &c->metrics_port) != 0)
		return -1;
	if (c->metrics_port == c->port) {
		v = config_value(x, "IPAM_METRICS_PORT", CFG_DEF_METRICS_PORT);
		return config_fail(x, "IPAM_METRICS_PORT", v, "a port other "
		    "than IPAM_PORT (%u)", c->port);
	}
	if (config_tls(x, c) != 0 || config_nsp_tls(x, c) != 0 ||
	    config_health_socket(x, c) != 0 || config_admin_group(x, c) != 0)
		return -1;
	return config_spiffe(x, c);
}

int
config_load(struct cfg *c, const char *(*get)(const char *name), char *err,
    size_t errlen)
{
	struct cfg_ctx x = { .get = get, .err = err, .errlen = errlen };
	struct cfg n;

	memset(&n, 0, sizeof(n));
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (config_load_all(&x, &n) != 0) {
		config_free(&n);
		memset(c, 0, sizeof(*c));
		return -1;
	}
	*c = n;
	return 0;
}

void
config_free(struct cfg *c)
{
	size_t i;

	if (c == NULL)
		return;
	free(c->data_source);
	free(c->trench);
	free(c->nsp_service);
	free(c->k8s_namespace);
	for (i = 0; i < c->nconduits; i++)
		free(c->conduits[i]);
	free(c->conduits);
	free(c->tls_cert);
	free(c->tls_key);
	free(c->tls_ca);
	free(c->nsp_tls_ca);
	free(c->nsp_tls_cert);
	free(c->nsp_tls_key);
	free(c->nsp_tls_server_name);
	free(c->health_socket);
	free(c->admin_group);
	free(c->spiffe_socket);
	free(c->spiffe_target);
	for (i = 0; i < c->nspiffe_allowed; i++)
		free(c->spiffe_allowed[i]);
	free(c->spiffe_allowed);
	memset(c, 0, sizeof(*c));
}

const struct cfg_pool *
config_pool_of(const struct cfg *c, int family)
{
	if (family == PFX_V4 && (c->family & CFG_IPV4) != 0)
		return &c->v4;
	if (family == PFX_V6 && (c->family & CFG_IPV6) != 0)
		return &c->v6;
	return NULL;
}

const char *
config_help(void)
{
	return
	    "Environment variables (empty = unset = default, except for\n"
	    "IPAM_NSP_SERVICE):\n"
	    "  IPAM_PORT                          gRPC port (default "
	    CFG_DEF_PORT ")\n"
	    "  IPAM_DATA_SOURCE                   sqlite file (default "
	    CFG_DEF_DATA_SOURCE ");\n"
	    "                                     IPAM_DATASOURCE is read "
	    "when it is unset\n"
	    "  IPAM_TRENCH_NAME                   trench name (default "
	    CFG_DEF_TRENCH ")\n"
	    "  IPAM_NSP_SERVICE                   NSP host:port (default "
	    CFG_DEF_NSP ");\n"
	    "                                     set empty = no NSP\n"
	    "  IPAM_PREFIX_IPV4                   IPv4 trench prefix (default "
	    CFG_DEF_PREFIX_V4 ")\n"
	    "  IPAM_CONDUIT_PREFIX_LENGTH_IPV4    IPv4 conduit prefix length "
	    "(default " CFG_DEF_CONDUIT_V4 ")\n"
	    "  IPAM_NODE_PREFIX_LENGTH_IPV4       IPv4 node prefix length, at "
	    "most 30 (default " CFG_DEF_NODE_V4 ")\n"
	    "  IPAM_PREFIX_IPV6                   IPv6 trench prefix (default "
	    CFG_DEF_PREFIX_V6 ")\n"
	    "  IPAM_CONDUIT_PREFIX_LENGTH_IPV6    IPv6 conduit prefix length "
	    "(default " CFG_DEF_CONDUIT_V6 ")\n"
	    "  IPAM_NODE_PREFIX_LENGTH_IPV6       IPv6 node prefix length, at "
	    "most 126 (default " CFG_DEF_NODE_V6 ")\n"
	    "  IPAM_IP_FAMILY                     ipv4, ipv6 or dualstack "
	    "(default " CFG_DEF_FAMILY ")\n"
	    "  IPAM_LOG_LEVEL                     TRACE, DEBUG, INFO, WARNING, "
	    "ERROR, FATAL, PANIC\n"
	    "                                     (default " CFG_DEF_LOG_LEVEL
	    ")\n"
	    "  IPAM_GRPC_KEEPALIVE_TIME           gRPC keepalive, Go duration "
	    "(default " CFG_DEF_KEEPALIVE ")\n"
	    "  IPAM_GRPC_PROBE_RPC_TIMEOUT        health probe timeout "
	    "(default " CFG_DEF_PROBE_TIMEOUT ")\n"
	    "  IPAM_GRPC_MAX_BACKOFF              longest NSP reconnect wait "
	    "(default " CFG_DEF_MAX_BACKOFF ")\n"
	    "  IPAM_GARBAGE_COLLECTION_ENABLED    remove stale node and child "
	    "prefixes (default " CFG_DEF_GC_ENABLED ")\n"
	    "  IPAM_GARBAGE_COLLECTION_INTERVAL   time between collections "
	    "(default " CFG_DEF_GC_INTERVAL ")\n"
	    "  IPAM_GARBAGE_COLLECTION_THRESHOLD  age at which a record is "
	    "stale (default " CFG_DEF_GC_THRESHOLD ")\n"
	    "  IPAM_CONDUITS                      comma-separated static "
	    "conduits; set = no NSP\n"
	    "                                     (default \"" CFG_DEF_CONDUITS
	    "\")\n"
	    "  IPAM_NAMESPACE                     Kubernetes namespace, only "
	    "logged (default \"\")\n"
	    "  IPAM_RELEASE_COOLDOWN              time before a released "
	    "address is reused (default " CFG_DEF_COOLDOWN ")\n"
	    "  IPAM_RENEWAL_REFRESH               a renewal writes its "
	    "updated_at only when older, 0 = always (default "
	    CFG_DEF_RENEWAL_REFRESH ")\n"
	    "  IPAM_METRICS_PORT                  metrics HTTP port, 0 = off "
	    "(default " CFG_DEF_METRICS_PORT ")\n"
	    "  IPAM_TLS_CERT                      server certificate file, "
	    "empty = plaintext (default \"\")\n"
	    "  IPAM_TLS_KEY                       its private key file "
	    "(default \"\")\n"
	    "  IPAM_TLS_CA                        CA file to require client "
	    "certificates (default \"\")\n"
	    "  IPAM_NSP_TLS_CA                    CA file to verify NSP's "
	    "certificate; set (or\n"
	    "                                     IPAM_NSP_TLS_CERT) = TLS to "
	    "NSP (default \"\")\n"
	    "  IPAM_NSP_TLS_CERT                  client certificate file "
	    "for NSP (default \"\")\n"
	    "  IPAM_NSP_TLS_KEY                   its private key file "
	    "(default \"\")\n"
	    "  IPAM_NSP_TLS_SERVER_NAME           name expected in NSP's "
	    "certificate (default \"\":\n"
	    "                                     the host of "
	    "IPAM_NSP_SERVICE)\n"
	    "  IPAM_HEALTH_SOCKET                 Unix socket of the health "
	    "service for probes,\n"
	    "                                     set but empty = off (default "
	    CFG_DEF_HEALTH_SOCKET ")\n"
	    "  SPIFFE_ENDPOINT_SOCKET             SPIRE agent's Workload API, "
	    "unix:///path: mTLS with\n"
	    "                                     its SVIDs on the port and to "
	    "NSP (default \"\")\n"
	    "  IPAM_SPIFFE_ALLOWED_IDS            SPIFFE IDs (or prefixes "
	    "ending in /) allowed to\n"
	    "                                     call Ipam, empty = any "
	    "(default \"\")\n"
	    "  IPAM_ADMIN_GROUP                   group allowed on the admin "
	    "socket under\n"
	    "                                     $RUNTIME_DIRECTORY (systemd) "
	    "(default \"\": none)\n"
	    "Durations use Go's syntax (1h30m, 500ms, 1.5s); booleans Go's "
	    "(true, false, 1, 0, t, f).\n";
}
