/*
 * config.h - the daemon's configuration, from Meridio's environment
 * variables (same names, same defaults), validated as a whole.
 *
 * Every process parses the same environment with config_load; the supervisor
 * does it first and refuses to start on a bad value, so workers only ever
 * see a valid configuration. No logging, no exit.
 */
#ifndef IPAM_CONFIG_H
#define IPAM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "pfx.h"

/* Which families this instance serves (a bit set). */
enum cfg_family {
	CFG_IPV4 = 1,
	CFG_IPV6 = 2,
	CFG_DUALSTACK = 3,
};

/* One family's pool: the trench prefix and the lengths cut from it. */
struct cfg_pool {
	struct pfx prefix;		/* IPAM_PREFIX_IPV4/6 */
	unsigned conduit_len;		/* IPAM_CONDUIT_PREFIX_LENGTH_IPV4/6 */
	unsigned node_len;		/* IPAM_NODE_PREFIX_LENGTH_IPV4/6 */
};

struct cfg {
	unsigned port;			/* IPAM_PORT, 1-65535 (7777) */
	char *data_source;		/* IPAM_DATA_SOURCE or IPAM_DATASOURCE */
	char *trench;			/* IPAM_TRENCH_NAME ("default") */
	char *nsp_service;		/* IPAM_NSP_SERVICE host:port
					 * (nsp-service:7778), "" = none (set
					 * empty, or IPAM_CONDUITS set) */
	struct cfg_pool v4;		/* IPv4 pool (169.255.0.0/16, 20, 24) */
	struct cfg_pool v6;		/* IPv6 pool (fd00::/48, 56, 64) */
	enum cfg_family family;		/* IPAM_IP_FAMILY (dualstack) */
	enum log_level log_level;	/* IPAM_LOG_LEVEL (DEBUG) */
	int64_t keepalive_ns;		/* IPAM_GRPC_KEEPALIVE_TIME (30s) */
	int64_t probe_timeout_ns;	/* IPAM_GRPC_PROBE_RPC_TIMEOUT (1s) */
	int64_t max_backoff_ns;		/* IPAM_GRPC_MAX_BACKOFF (5s) */
	bool gc_enabled;		/* IPAM_GARBAGE_COLLECTION_ENABLED (true) */
	int64_t gc_interval_ns;		/* IPAM_GARBAGE_COLLECTION_INTERVAL (2h) */
	int64_t gc_threshold_ns;	/* IPAM_GARBAGE_COLLECTION_THRESHOLD (40m) */
	char **conduits;		/* IPAM_CONDUITS, split on commas */
	size_t nconduits;		/* number of entries in conduits */
	int64_t release_cooldown_ns;	/* IPAM_RELEASE_COOLDOWN (0 = off) */
	int64_t renewal_refresh_ns;	/* IPAM_RENEWAL_REFRESH (0 = a renewal
					 * always writes updated_at) */
	unsigned metrics_port;		/* IPAM_METRICS_PORT (0 = off) */
	char *tls_cert;			/* IPAM_TLS_CERT ("" = plaintext) */
	char *tls_key;			/* IPAM_TLS_KEY */
	char *tls_ca;			/* IPAM_TLS_CA ("" = no client certs) */
	char *nsp_tls_ca;		/* IPAM_NSP_TLS_CA: roots for NSP's cert */
	char *nsp_tls_cert;		/* IPAM_NSP_TLS_CERT: our client cert */
	char *nsp_tls_key;		/* IPAM_NSP_TLS_KEY: its private key */
	char *nsp_tls_server_name;	/* IPAM_NSP_TLS_SERVER_NAME ("" = host
					 * of IPAM_NSP_SERVICE) */
	char *health_socket;		/* IPAM_HEALTH_SOCKET, plaintext
					 * grpc.health.v1 for exec probes
					 * (/tmp/health.sock; "" = off) */
	char *spiffe_socket;		/* SPIFFE_ENDPOINT_SOCKET ("" = no
					 * SPIFFE: IPAM_TLS_* or plaintext) */
	char *spiffe_target;		/* its gRPC target, "unix:/path" */
	char **spiffe_allowed;		/* IPAM_SPIFFE_ALLOWED_IDS, split on
					 * commas (none = any ID) */
	size_t nspiffe_allowed;		/* number of entries in it */
	bool nsp_ignored;		/* IPAM_NSP_SERVICE was set, but
					 * IPAM_CONDUITS selects no NSP */
	char *k8s_namespace;		/* IPAM_NAMESPACE: logged only */
	char *admin_group;		/* IPAM_ADMIN_GROUP as given ("" =
					 * none) */
	long admin_gid;			/* its group id; -1 = none: the admin
					 * socket is the daemon's user's only */
};

/*
 * Fills c from the environment as read by get (getenv in programs, a table
 * in tests), applying defaults and validating every value. On error writes
 * one line into err naming the variable, the value and what is expected,
 * leaves c empty and returns -1. Returns 0 on success; free with config_free.
 */
int config_load(struct cfg *c, const char *(*get)(const char *name), char *err,
    size_t errlen);

/* Frees what config_load allocated. Accepts a zeroed or freed cfg. */
void config_free(struct cfg *c);

/* True if the NSP client is to use TLS (IPAM_NSP_TLS_CA or
 * IPAM_NSP_TLS_CERT set). */
bool config_nsp_tls_on(const struct cfg *c);

/*
 * The gRPC target of a Workload API address as go-spiffe reads
 * SPIFFE_ENDPOINT_SOCKET: "unix:///path" or "unix:/path" (an absolute path,
 * no host, query or fragment) gives "unix:/path" in target. Returns 0, or
 * -1 with why (the expected form) in err.
 */
int config_spiffe_target(const char *value, char *target, size_t len,
    char *err, size_t errlen);

/* The pool of a family (PFX_V4/PFX_V6), or NULL if it is not served. */
const struct cfg_pool *config_pool_of(const struct cfg *c, int family);

/* The usage text listing every variable with its default (for --help). */
const char *config_help(void);

#endif
