/*
 * spiffe.h - X.509-SVIDs from the SPIFFE Workload API, and gRPC
 * credentials made from them.
 *
 * A SPIRE agent serves SpiffeWorkloadAPI/FetchX509SVID on a Unix socket: a
 * stream whose first message carries the workload's SVID (DER chain, leaf
 * first), its private key (DER PKCS#8) and the trust domain's CA bundle
 * (DER), and whose next messages carry each rotation. This module turns
 * them into PEM, keeps the current one (struct spiffe_source, fed by a
 * watcher thread that keeps the stream open and reconnects with a capped
 * backoff), and makes credentials that check peers as go-spiffe's
 * AuthorizeAny does: the peer's chain must lead to the bundle and its
 * leaf must carry one spiffe:// URI SAN of the same trust domain; host
 * names are never checked (SVIDs carry none).
 *
 * Keys stay in memory; freeing an SVID wipes its key. The module never
 * logs and never exits: the watcher reports through a callback. It does
 * not call grpc_init (the program does, after any fork).
 */
#ifndef IPAM_SPIFFE_H
#define IPAM_SPIFFE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

/* The Workload API method, and the metadata every call must carry. */
#define SPIFFE_METHOD "/SpiffeWorkloadAPI/FetchX509SVID"
#define SPIFFE_MD_KEY "workload.spiffe.io"
#define SPIFFE_MD_VALUE "true"

/* Longest SPIFFE ID handled (the specification's limit is 2048 bytes). */
#define SPIFFE_ID_MAX 2048

/* One X.509-SVID in PEM, with the bundle of its trust domain. */
struct spiffe_svid {
	char *id;			/* "spiffe://trust-domain/path" */
	char *cert;			/* certificate chain, leaf first */
	char *key;			/* PKCS#8 private key ("PRIVATE KEY") */
	char *bundle;			/* CA certificates of the trust domain */
};

/*
 * Parses a packed X509SVIDResponse and takes its first SVID. Refused
 * (NULL, err says why): no SVID, an ID that is not spiffe://, bytes that
 * are not DER certificates or a PKCS#8 key, a leaf whose URI SAN is not
 * the ID, a key that does not match the leaf, an empty bundle.
 */
struct spiffe_svid *spiffe_svid_parse(const uint8_t *msg, size_t len,
    char *err, size_t errlen);

/* Wipes the key and frees s. Accepts NULL. */
void spiffe_svid_free(struct spiffe_svid *s);

/*
 * The trust domain of a SPIFFE ID ("spiffe://td/path" -> "td") into buf.
 * Returns 0, or -1 when id is no SPIFFE ID or buf is too small.
 */
int spiffe_trust_domain(const char *id, char *buf, size_t len);

/* ---- the current SVID, and the watcher that keeps it current ---------- */

/* What the watcher reports (see spiffe_event_fn). */
enum spiffe_event {
	SPIFFE_EV_UPDATE,	/* a new SVID is current; text: its ID */
	SPIFFE_EV_FAILED,	/* first failure of a streak: the agent cannot
				 * be reached or the stream broke; the last
				 * SVID stays; text: the error */
	SPIFFE_EV_REJECTED,	/* a message could not be used; the last SVID
				 * stays; text: why */
};

/*
 * The watcher's report, called on its thread without locks held: it may
 * use the source, and should be quick. FAILED comes once per streak of
 * failures (a message received ends the streak).
 */
typedef void (*spiffe_event_fn)(void *arg, enum spiffe_event ev,
    const char *text);

/* The current SVID, shared by threads (a mutex and a generation). */
struct spiffe_source;

/* An empty source (no SVID yet). NULL on out of memory. */
struct spiffe_source *spiffe_source_new(void);

/*
 * Makes svid (which the source then owns) the current SVID and bumps the
 * generation. New handshakes of credentials made from the source use it.
 */
void spiffe_source_put(struct spiffe_source *s, struct spiffe_svid *svid);

/* The generation of the current SVID: 0 before the first, +1 per put. */
uint64_t spiffe_source_generation(struct spiffe_source *s);

/*
 * A copy of the current SVID (free it with spiffe_svid_free), and its
 * generation in *gen when gen is not NULL. NULL when there is none yet.
 */
struct spiffe_svid *spiffe_source_get(struct spiffe_source *s, uint64_t *gen);

/*
 * Starts the watcher thread on a Workload API at target (a gRPC target,
 * "unix:/path"): it keeps a FetchX509SVID stream open and puts every SVID
 * it gets into s; when the stream breaks or cannot be opened it keeps the
 * last SVID and tries again after a backoff (100 ms doubling, at most
 * max_backoff_ms; reset by a message). fn gets its reports.
 * One watcher per source. Returns 0, or -1 with err set.
 */
int spiffe_source_watch(struct spiffe_source *s, const char *target,
    int64_t max_backoff_ms, spiffe_event_fn fn, void *arg, char *err,
    size_t errlen);

/*
 * Stops the watcher (cancels its call and joins it) and frees s. Server
 * credentials made from s must be gone first (their server destroyed).
 * Accepts NULL.
 */
void spiffe_source_free(struct spiffe_source *s);

/*
 * One FetchX509SVID call: the first SVID within timeout_ms, for programs
 * that need it once (grpc_health_probe -spiffe, ipamctl). NULL with err
 * set on failure (the status of the call, or why the SVID is refused).
 */
struct spiffe_svid *spiffe_fetch(const char *target, int64_t timeout_ms,
    char *err, size_t errlen);

/* ---- credentials ------------------------------------------------------ */

/*
 * Server credentials for one port: every handshake presents the source's
 * current SVID, and requires a client certificate that chains to the
 * current bundle (rotation reaches new connections without a restart).
 * The source must have an SVID when the port is added, and must outlive
 * the server. Check callers' IDs per call with spiffe_peer_id. NULL on
 * failure.
 */
grpc_server_credentials *spiffe_server_credentials(struct spiffe_source *s);

/*
 * Channel credentials presenting svid (copied) and accepting a server
 * whose chain leads to svid's bundle and whose leaf carries exactly one
 * URI SAN, a SPIFFE ID of svid's trust domain; equal to expect_id when
 * that is neither NULL nor "". No host-name check. A channel keeps the
 * credentials it was made with: make a new one after a rotation. Release
 * with grpc_channel_credentials_release. NULL on failure.
 */
grpc_channel_credentials *spiffe_channel_credentials(
    const struct spiffe_svid *svid, const char *expect_id);

/*
 * The SPIFFE ID of the peer of a server call (its client certificate's
 * spiffe:// URI SAN) into buf. Returns 0, or -1 when the peer showed none
 * (or buf is too small).
 */
int spiffe_peer_id(grpc_call *call, char *buf, size_t len);

/*
 * True if id is allowed by a list of SPIFFE IDs (exact) and ID prefixes
 * (entries ending in '/', matching IDs below them). An empty list (n 0)
 * allows any ID.
 */
bool spiffe_id_allowed(const char *id, char *const *list, size_t n);

#endif
