/*
 * mtls.c - the API worker's SPIFFE mTLS (see mtls.h).
 */
#include "mtls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "spiffe.h"

struct mtls {
	const struct cfg *cfg;		/* the allowed IDs */
	struct spiffe_source *src;	/* the current SVID */
	char td[256];			/* our trust domain, once served */
};

/* The watcher's reports, as log lines (its thread). */
static void
mtls_event(void *arg, enum spiffe_event ev, const char *text)
{
	struct mtls *m = arg;

	switch (ev) {
	case SPIFFE_EV_UPDATE:
		log_kv(LOGL_INFO, "SVID from the Workload API: new "
		    "connections get it", "spiffe_id", text, NULL);
		break;
	case SPIFFE_EV_FAILED:
		log_kv(LOGL_WARNING, spiffe_source_generation(m->src) > 0 ?
		    "Workload API unavailable: keeping the last SVID, "
		    "reconnecting" : "Workload API unavailable: no SVID yet, "
		    "the port stays closed; reconnecting", "endpoint",
		    m->cfg->spiffe_socket, "error", text, NULL);
		break;
	case SPIFFE_EV_REJECTED:
		log_kv(LOGL_WARNING, "SVID from the Workload API refused: "
		    "keeping the last one", "error", text, NULL);
		break;
	}
}

struct mtls *
mtls_start(const struct cfg *cfg)
{
	struct mtls *m;
	char err[256];

	m = calloc(1, sizeof(*m));
	if (m == NULL || (m->src = spiffe_source_new()) == NULL)
		log_fatal("out of memory");
	m->cfg = cfg;
	if (spiffe_source_watch(m->src, cfg->spiffe_target,
	    cfg->max_backoff_ns / 1000000, mtls_event, m, err,
	    sizeof(err)) != 0)
		log_fatal("SPIFFE: %s", err);
	log_kv(LOGL_INFO, "SPIFFE mTLS: waiting for an SVID before serving "
	    "the port", "endpoint", cfg->spiffe_socket, NULL);
	return m;
}

bool
mtls_ready(struct mtls *m)
{
	return spiffe_source_generation(m->src) > 0;
}

grpc_server_credentials *
mtls_server_credentials(struct mtls *m)
{
	struct spiffe_svid *s;
	grpc_server_credentials *creds;

	s = spiffe_source_get(m->src, NULL);
	if (s == NULL || spiffe_trust_domain(s->id, m->td, sizeof(m->td))
	    != 0) {
		log_error("SPIFFE: no usable SVID");
		spiffe_svid_free(s);
		return NULL;
	}
	creds = spiffe_server_credentials(m->src);
	if (creds == NULL)
		log_error("SPIFFE: cannot make server credentials");
	else
		log_kv(LOGL_INFO, "serving with SPIFFE mTLS", "spiffe_id",
		    s->id, NULL);
	spiffe_svid_free(s);
	return creds;
}

grpc_status_code
mtls_authorize(struct mtls *m, grpc_call *call, bool check_list, char *msg,
    size_t len)
{
	char id[SPIFFE_ID_MAX + 1], td[256];

	if (spiffe_peer_id(call, id, sizeof(id)) != 0) {
		snprintf(msg, len, "the client certificate carries no SPIFFE "
		    "ID");
		return GRPC_STATUS_UNAUTHENTICATED;
	}
	if (spiffe_trust_domain(id, td, sizeof(td)) != 0 ||
	    strcmp(td, m->td) != 0) {
		snprintf(msg, len, "SPIFFE ID %.256s is not of trust domain "
		    "%.256s", id, m->td);
		return GRPC_STATUS_UNAUTHENTICATED;
	}
	if (check_list && !spiffe_id_allowed(id, m->cfg->spiffe_allowed,
	    m->cfg->nspiffe_allowed)) {
		snprintf(msg, len, "SPIFFE ID %.256s is not in "
		    "IPAM_SPIFFE_ALLOWED_IDS", id);
		log_kv(LOGL_WARNING, "call refused: caller not allowed",
		    "spiffe_id", id, NULL);
		return GRPC_STATUS_PERMISSION_DENIED;
	}
	return GRPC_STATUS_OK;
}

void
mtls_stop(struct mtls *m)
{
	if (m == NULL)
		return;
	spiffe_source_free(m->src);
	free(m);
}
