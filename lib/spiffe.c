/*
 * spiffe.c - X.509-SVIDs from the SPIFFE Workload API (see spiffe.h).
 *
 * DER to PEM and the checks of an SVID use OpenSSL's libcrypto, which
 * libgrpc links already.
 */
#include "spiffe.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/support/alloc.h>
#include <grpc/support/string_util.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "errbuf.h"
#include "grpcx.h"
#include "spiffe/workload.pb-c.h"

#define SPIFFE_BACKOFF_MIN_MS 100	/* first retry delay of the watcher */
#define SPIFFE_MSG_MAX (4 << 20)	/* largest X509SVIDResponse taken */
#define SPIFFE_SCHEME "spiffe://"

struct spiffe_source {
	pthread_mutex_t mu;		/* guards everything below */
	pthread_cond_t cv;		/* stop, for the watcher's backoff */
	struct spiffe_svid *svid;	/* current SVID, NULL before the first */
	uint64_t gen;			/* puts so far */
	uint64_t served;		/* gen last handed to the server */
	/* the watcher */
	bool watching;			/* the thread runs */
	bool stop;			/* tells it to return */
	pthread_t tid;			/* the thread */
	char *target;			/* the Workload API's gRPC target */
	int64_t max_backoff_ms;		/* cap of its backoff */
	grpc_call *call;		/* its running call, for cancel */
	spiffe_event_fn fn;		/* its reports */
	void *arg;			/* their first argument */
};


/* ---- SVIDs -------------------------------------------------------------- */

void
spiffe_svid_free(struct spiffe_svid *s)
{
	if (s == NULL)
		return;
	free(s->id);
	free(s->cert);
	if (s->key != NULL) {
		OPENSSL_cleanse(s->key, strlen(s->key));
		free(s->key);
	}
	free(s->bundle);
	free(s);
}

/* A deep copy of s; NULL on out of memory. */
static struct spiffe_svid *
spiffe_svid_dup(const struct spiffe_svid *s)
{
	struct spiffe_svid *d;

	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return NULL;
	d->id = strdup(s->id);
	d->cert = strdup(s->cert);
	d->key = strdup(s->key);
	d->bundle = strdup(s->bundle);
	if (d->id == NULL || d->cert == NULL || d->key == NULL ||
	    d->bundle == NULL) {
		spiffe_svid_free(d);
		return NULL;
	}
	return d;
}

int
spiffe_trust_domain(const char *id, char *buf, size_t len)
{
	const char *td, *end;
	size_t n;

	if (id == NULL || strncmp(id, SPIFFE_SCHEME, strlen(SPIFFE_SCHEME))
	    != 0)
		return -1;
	td = id + strlen(SPIFFE_SCHEME);
	end = strchr(td, '/');
	n = end != NULL ? (size_t)(end - td) : strlen(td);
	if (n == 0 || n >= len)
		return -1;
	memcpy(buf, td, n);
	buf[n] = '\0';
	return 0;
}

/* The contents of a memory BIO as a new string; NULL on out of memory. */
static char *
spiffe_bio_string(BIO *b)
{
	char *data, *s;
	long n;

	n = BIO_get_mem_data(b, &data);
	if (n < 0)
		return NULL;
	s = malloc((size_t)n + 1);
	if (s == NULL)
		return NULL;
	memcpy(s, data, (size_t)n);
	s[n] = '\0';
	return s;
}

/*
 * DER certificates one after the other, as PEM. The first into *leaf
 * when leaf is not NULL (the caller frees it). NULL with err set when the
 * bytes are not whole certificates.
 */
static char *
spiffe_certs_pem(const uint8_t *der, size_t len, const char *what,
    X509 **leaf, char *err, size_t errlen)
{
	const unsigned char *p = der, *end = der + len;
	X509 *x;
	BIO *b;
	char *pem = NULL;
	int n = 0;

	if (len == 0) {
		errbuf_set(err, errlen, "%s: no certificate", what);
		return NULL;
	}
	b = BIO_new(BIO_s_mem());
	if (b == NULL) {
		errbuf_set(err, errlen, "%s: out of memory", what);
		return NULL;
	}
	while (p < end) {
		x = d2i_X509(NULL, &p, (long)(end - p));
		if (x == NULL) {
			errbuf_set(err, errlen, "%s: certificate %d is not "
			    "DER X.509", what, n + 1);
			goto out;
		}
		if (!PEM_write_bio_X509(b, x)) {
			X509_free(x);
			errbuf_set(err, errlen, "%s: out of memory", what);
			goto out;
		}
		if (n == 0 && leaf != NULL)
			*leaf = x;
		else
			X509_free(x);
		n++;
	}
	pem = spiffe_bio_string(b);
	if (pem == NULL)
		errbuf_set(err, errlen, "%s: out of memory", what);
out:
	BIO_free(b);
	if (pem == NULL && leaf != NULL && *leaf != NULL) {
		X509_free(*leaf);
		*leaf = NULL;
	}
	return pem;
}

/*
 * The one URI SAN of a certificate, checked to equal id. Returns 0, or -1
 * with err set.
 */
static int
spiffe_leaf_check(X509 *leaf, const char *id, char *err, size_t errlen)
{
	GENERAL_NAMES *sans;
	const GENERAL_NAME *g;
	const unsigned char *u = NULL;
	int nuri = 0, ulen = 0;

	sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
		g = sk_GENERAL_NAME_value(sans, i);
		if (g->type != GEN_URI)
			continue;
		nuri++;
		u = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
		ulen = ASN1_STRING_length(g->d.uniformResourceIdentifier);
	}
	if (nuri != 1 || (size_t)ulen != strlen(id) ||
	    memcmp(u, id, (size_t)ulen) != 0) {
		errbuf_set(err, errlen, "SVID %s: the leaf certificate must "
		    "carry exactly one URI SAN, the ID (found %d URI SANs)",
		    id, nuri);
		GENERAL_NAMES_free(sans);
		return -1;
	}
	GENERAL_NAMES_free(sans);
	return 0;
}

/*
 * A DER PKCS#8 key as PEM ("PRIVATE KEY"), checked against the leaf. The
 * PEM is written to a secure-memory BIO, wiped when freed. NULL with err
 * set.
 */
static char *
spiffe_key_pem(const uint8_t *der, size_t len, X509 *leaf, const char *id,
    char *err, size_t errlen)
{
	const unsigned char *p = der;
	PKCS8_PRIV_KEY_INFO *p8;
	EVP_PKEY *pk = NULL;
	BIO *b = NULL;
	char *pem = NULL;

	p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);
	if (p8 == NULL || p != der + len ||
	    (pk = EVP_PKCS82PKEY(p8)) == NULL) {
		errbuf_set(err, errlen, "SVID %s: the key is not DER PKCS#8",
		    id);
		goto out;
	}
	if (X509_check_private_key(leaf, pk) != 1) {
		errbuf_set(err, errlen, "SVID %s: the key does not match the "
		    "leaf certificate", id);
		goto out;
	}
	b = BIO_new(BIO_s_secmem());
	if (b == NULL || !PEM_write_bio_PKCS8_PRIV_KEY_INFO(b, p8) ||
	    (pem = spiffe_bio_string(b)) == NULL)
		errbuf_set(err, errlen, "SVID %s: out of memory", id);
out:
	ERR_clear_error();
	BIO_free(b);
	EVP_PKEY_free(pk);
	PKCS8_PRIV_KEY_INFO_free(p8);
	return pem;
}

struct spiffe_svid *
spiffe_svid_parse(const uint8_t *msg, size_t len, char *err, size_t errlen)
{
	X509SVIDResponse *r;
	X509SVID *v;
	struct spiffe_svid *s = NULL;
	X509 *leaf = NULL;
	char td[256];
	static const uint8_t empty[1];

	r = x509_svidresponse__unpack(NULL, len, len > 0 ? msg : empty);
	if (r == NULL) {
		errbuf_set(err, errlen, "not an X509SVIDResponse");
		return NULL;
	}
	if (r->n_svids == 0) {
		errbuf_set(err, errlen, "the response holds no SVID");
		goto out;
	}
	v = r->svids[0];
	if (strlen(v->spiffe_id) > SPIFFE_ID_MAX ||
	    spiffe_trust_domain(v->spiffe_id, td, sizeof(td)) != 0) {
		errbuf_set(err, errlen, "SVID ID \"%.200s\" is not a SPIFFE "
		    "ID (spiffe://trust-domain/path)", v->spiffe_id);
		goto out;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL || (s->id = strdup(v->spiffe_id)) == NULL) {
		errbuf_set(err, errlen, "out of memory");
		goto fail;
	}
	s->cert = spiffe_certs_pem(v->x509_svid.data, v->x509_svid.len,
	    "SVID certificates", &leaf, err, errlen);
	if (s->cert == NULL || spiffe_leaf_check(leaf, s->id, err, errlen) != 0)
		goto fail;
	s->key = spiffe_key_pem(v->x509_svid_key.data, v->x509_svid_key.len,
	    leaf, s->id, err, errlen);
	if (s->key == NULL)
		goto fail;
	s->bundle = spiffe_certs_pem(v->bundle.data, v->bundle.len,
	    "SVID bundle", NULL, err, errlen);
	if (s->bundle == NULL)
		goto fail;
	goto out;
fail:
	spiffe_svid_free(s);
	s = NULL;
out:
	X509_free(leaf);
	/* the unpacked key bytes are wiped before they are freed */
	if (r->n_svids > 0 && r->svids[0]->x509_svid_key.data != NULL)
		OPENSSL_cleanse(r->svids[0]->x509_svid_key.data,
		    r->svids[0]->x509_svid_key.len);
	x509_svidresponse__free_unpacked(r, NULL);
	return s;
}

/* ---- the source --------------------------------------------------------- */

struct spiffe_source *
spiffe_source_new(void)
{
	struct spiffe_source *s;
	pthread_condattr_t ca;

	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	return s;
}

void
spiffe_source_put(struct spiffe_source *s, struct spiffe_svid *svid)
{
	struct spiffe_svid *old;

	pthread_mutex_lock(&s->mu);
	old = s->svid;
	s->svid = svid;
	s->gen++;
	pthread_mutex_unlock(&s->mu);
	spiffe_svid_free(old);
}

uint64_t
spiffe_source_generation(struct spiffe_source *s)
{
	uint64_t g;

	pthread_mutex_lock(&s->mu);
	g = s->gen;
	pthread_mutex_unlock(&s->mu);
	return g;
}

struct spiffe_svid *
spiffe_source_get(struct spiffe_source *s, uint64_t *gen)
{
	struct spiffe_svid *d = NULL;

	pthread_mutex_lock(&s->mu);
	if (s->svid != NULL)
		d = spiffe_svid_dup(s->svid);
	if (gen != NULL)
		*gen = s->gen;
	pthread_mutex_unlock(&s->mu);
	return d;
}

/* ---- one FetchX509SVID call --------------------------------------------- */

/* A call to the Workload API on a channel of its own. */
struct spiffe_stream {
	grpc_channel *ch;		/* plaintext, to the agent's socket */
	grpc_completion_queue *cq;	/* the call's batches, one at a time */
	grpc_call *call;		/* the call */
	struct grpcx_ccall u;		/* what its batches send and fill */
};

/* Waits for the one batch in flight. */
static void
spiffe_wait(struct spiffe_stream *st)
{
	(void)grpc_completion_queue_next(st->cq,
	    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
}

/*
 * Opens the channel and the call, and sends the request with the
 * Workload API's metadata. The call is made known to src (when not NULL)
 * before anything waits, so that stopping the source cancels it. Returns
 * 0, or -1 when the call cannot even start.
 */
static int
spiffe_stream_open(struct spiffe_stream *st, const char *target,
    gpr_timespec deadline, struct spiffe_source *src)
{
	X509SVIDRequest rq = X509_SVIDREQUEST__INIT;
	grpc_channel_credentials *creds;
	grpc_metadata md;

	memset(st, 0, sizeof(*st));
	creds = grpc_insecure_credentials_create();
	st->ch = grpc_channel_create(target, creds, NULL);
	grpc_channel_credentials_release(creds);
	st->cq = grpc_completion_queue_create_for_next(NULL);
	st->call = grpc_channel_create_call(st->ch, NULL,
	    GRPC_PROPAGATE_DEFAULTS, st->cq,
	    grpc_slice_from_static_string(SPIFFE_METHOD), NULL, deadline, NULL);
	if (st->call == NULL)
		return -1;
	if (src != NULL) {
		pthread_mutex_lock(&src->mu);
		src->call = st->call;
		if (src->stop)
			grpc_call_cancel(st->call, NULL);
		pthread_mutex_unlock(&src->mu);
	}
	memset(&md, 0, sizeof(md));
	md.key = grpc_slice_from_static_string(SPIFFE_MD_KEY);
	md.value = grpc_slice_from_static_string(SPIFFE_MD_VALUE);
	if (grpcx_stream_start_md(st->call, grpcx_pack(&rq.base), &md, 1,
	    &st->u, st) != GRPC_CALL_OK)
		return -1;
	spiffe_wait(st);	/* a failure shows in the status */
	return 0;
}

/* Receives the next message into st->u.recv (NULL: the stream ended). */
static void
spiffe_stream_next(struct spiffe_stream *st)
{
	if (grpcx_stream_next(st->call, &st->u, st) == GRPC_CALL_OK)
		spiffe_wait(st);
}

/*
 * Ends the call (cancelled unless the stream ended) and describes its
 * status in err: "CODE: details".
 */
static void
spiffe_stream_status(struct spiffe_stream *st, char *err, size_t errlen)
{
	grpc_call_cancel(st->call, NULL);
	if (grpcx_stream_finish(st->call, &st->u, st) != GRPC_CALL_OK) {
		errbuf_set(err, errlen, "cannot end the call");
		return;
	}
	spiffe_wait(st);
	errbuf_set(err, errlen, "%s: %.*s", grpcx_status_name(st->u.status),
	    (int)GRPC_SLICE_LENGTH(st->u.details),
	    (const char *)GRPC_SLICE_START_PTR(st->u.details));
}

/* Frees what st holds (the call must be over). */
static void
spiffe_stream_close(struct spiffe_stream *st)
{
	grpcx_ccall_clear(&st->u);
	if (st->call != NULL)
		grpc_call_unref(st->call);
	if (st->cq != NULL) {
		grpcx_cq_drain(st->cq, NULL);
		grpc_completion_queue_destroy(st->cq);
	}
	if (st->ch != NULL)
		grpc_channel_destroy(st->ch);
	memset(st, 0, sizeof(*st));
}

/* The SVID in the message st->u.recv, or NULL with err set. */
static struct spiffe_svid *
spiffe_stream_svid(struct spiffe_stream *st, char *err, size_t errlen)
{
	struct spiffe_svid *s;
	uint8_t *buf;
	size_t len;

	if (grpcx_read_all(st->u.recv, &buf, &len) < 0) {
		errbuf_set(err, errlen, "cannot read the message");
		return NULL;
	}
	s = len > SPIFFE_MSG_MAX ? NULL : spiffe_svid_parse(buf, len, err,
	    errlen);
	if (len > SPIFFE_MSG_MAX)
		errbuf_set(err, errlen, "message of %zu bytes, more than %d",
		    len, SPIFFE_MSG_MAX);
	OPENSSL_cleanse(buf, len);
	free(buf);
	return s;
}

struct spiffe_svid *
spiffe_fetch(const char *target, int64_t timeout_ms, char *err,
    size_t errlen)
{
	struct spiffe_stream st;
	struct spiffe_svid *s = NULL;
	char why[256];

	if (spiffe_stream_open(&st, target, grpcx_deadline_ms(timeout_ms),
	    NULL) < 0) {
		errbuf_set(err, errlen, "Workload API %s: cannot start a call",
		    target);
		goto out;
	}
	spiffe_stream_next(&st);
	if (st.u.recv != NULL) {
		s = spiffe_stream_svid(&st, why, sizeof(why));
		if (s == NULL)
			errbuf_set(err, errlen, "Workload API %s: %s", target,
			    why);
	}
	spiffe_stream_status(&st, why, sizeof(why));
	if (st.u.recv == NULL)
		errbuf_set(err, errlen, "Workload API %s: no SVID: %s",
		    target, why);
out:
	spiffe_stream_close(&st);
	return s;
}

/* ---- the watcher -------------------------------------------------------- */

/* True once spiffe_source_free told the watcher to return. */
static bool
spiffe_stopping(struct spiffe_source *s)
{
	bool stop;

	pthread_mutex_lock(&s->mu);
	stop = s->stop;
	pthread_mutex_unlock(&s->mu);
	return stop;
}

/*
 * One stream, from open to its end: every message received replaces the
 * SVID. Returns true if at least one message came; err describes how the
 * stream ended.
 */
static bool
spiffe_watch_once(struct spiffe_source *s, char *err, size_t errlen)
{
	struct spiffe_stream st;
	struct spiffe_svid *svid;
	char why[256], id[SPIFFE_ID_MAX + 1];
	bool got = false, opened;

	opened = spiffe_stream_open(&st, s->target,
	    gpr_inf_future(GPR_CLOCK_REALTIME), s) == 0;
	while (opened && !spiffe_stopping(s)) {
		spiffe_stream_next(&st);
		if (st.u.recv == NULL)
			break;
		got = true;
		svid = spiffe_stream_svid(&st, why, sizeof(why));
		if (svid != NULL) {
			snprintf(id, sizeof(id), "%s", svid->id);
			spiffe_source_put(s, svid);
			s->fn(s->arg, SPIFFE_EV_UPDATE, id);
		} else {
			s->fn(s->arg, SPIFFE_EV_REJECTED, why);
		}
	}
	pthread_mutex_lock(&s->mu);
	s->call = NULL;
	pthread_mutex_unlock(&s->mu);
	if (opened)
		spiffe_stream_status(&st, err, errlen);
	else
		errbuf_set(err, errlen, "cannot start a call");
	spiffe_stream_close(&st);
	return got;
}

/*
 * The watcher thread: streams one after the other until stopped, with a
 * backoff between them (reset by a stream that delivered a message). The
 * first failure of a streak is reported; the SVID stays as it was.
 */
static void *
spiffe_watch_main(void *arg)
{
	struct spiffe_source *s = arg;
	struct timespec until;
	int64_t backoff = SPIFFE_BACKOFF_MIN_MS, ns;
	bool failing = false;
	char err[300];

	while (!spiffe_stopping(s)) {
		if (spiffe_watch_once(s, err, sizeof(err))) {
			backoff = SPIFFE_BACKOFF_MIN_MS;
			failing = false;
		}
		if (spiffe_stopping(s))
			break;
		if (!failing) {
			failing = true;
			s->fn(s->arg, SPIFFE_EV_FAILED, err);
		}
		clock_gettime(CLOCK_MONOTONIC, &until);
		ns = until.tv_nsec + backoff % 1000 * 1000000;
		until.tv_sec += backoff / 1000 + ns / 1000000000;
		until.tv_nsec = ns % 1000000000;
		pthread_mutex_lock(&s->mu);
		while (!s->stop && pthread_cond_timedwait(&s->cv, &s->mu,
		    &until) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&s->mu);
		backoff = backoff * 2 > s->max_backoff_ms ? s->max_backoff_ms :
		    backoff * 2;
	}
	return NULL;
}

int
spiffe_source_watch(struct spiffe_source *s, const char *target,
    int64_t max_backoff_ms, spiffe_event_fn fn, void *arg, char *err,
    size_t errlen)
{
	int e;

	if (s->watching) {
		errbuf_set(err, errlen, "the source is watched already");
		return -1;
	}
	s->target = strdup(target);
	if (s->target == NULL) {
		errbuf_set(err, errlen, "out of memory");
		return -1;
	}
	s->max_backoff_ms = max_backoff_ms < SPIFFE_BACKOFF_MIN_MS ?
	    SPIFFE_BACKOFF_MIN_MS : max_backoff_ms;
	s->fn = fn;
	s->arg = arg;
	e = pthread_create(&s->tid, NULL, spiffe_watch_main, s);
	if (e != 0) {
		errbuf_set(err, errlen, "cannot start the watcher: %s",
		    strerror(e));
		free(s->target);
		s->target = NULL;
		return -1;
	}
	s->watching = true;
	return 0;
}

void
spiffe_source_free(struct spiffe_source *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	if (s->call != NULL)
		grpc_call_cancel(s->call, NULL);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	if (s->watching)
		pthread_join(s->tid, NULL);
	spiffe_svid_free(s->svid);
	free(s->target);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

/* ---- server credentials ------------------------------------------------- */

/*
 * gRPC's certificate config fetcher, asked when the port is bound and
 * before every handshake: a new config when the SVID changed since the
 * last one handed out. The bundle is the roots client certificates must
 * chain to.
 */
static grpc_ssl_certificate_config_reload_status
spiffe_fetch_config(void *arg, grpc_ssl_server_certificate_config **config)
{
	struct spiffe_source *s = arg;
	grpc_ssl_pem_key_cert_pair pair;
	grpc_ssl_certificate_config_reload_status rs;

	rs = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
	pthread_mutex_lock(&s->mu);
	if (s->svid != NULL && s->served == s->gen) {
		rs = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
	} else if (s->svid != NULL) {
		pair.private_key = s->svid->key;
		pair.cert_chain = s->svid->cert;
		*config = grpc_ssl_server_certificate_config_create(
		    s->svid->bundle, &pair, 1);
		if (*config != NULL) {
			s->served = s->gen;
			rs = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
		}
	}
	pthread_mutex_unlock(&s->mu);
	return rs;
}

grpc_server_credentials *
spiffe_server_credentials(struct spiffe_source *s)
{
	grpc_ssl_server_credentials_options *opts;

	pthread_mutex_lock(&s->mu);
	s->served = 0;
	pthread_mutex_unlock(&s->mu);
	opts = grpc_ssl_server_credentials_create_options_using_config_fetcher(
	    GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY,
	    spiffe_fetch_config, s);
	if (opts == NULL)
		return NULL;
	return grpc_ssl_server_credentials_create_with_options(opts);
}

/* ---- channel credentials ------------------------------------------------ */

/* What the client's verifier checks: the server's ID. */
struct spiffe_verifier {
	grpc_tls_certificate_verifier_external ext;	/* handed to gRPC */
	char prefix[300];		/* "spiffe://td/", the trust domain */
	char *expect;			/* exact ID wanted, NULL for any */
};

/*
 * The client's check of the server after gRPC verified its chain against
 * the bundle: exactly one URI SAN, a SPIFFE ID of our trust domain (and
 * the expected one, if set). Synchronous.
 */
static int
spiffe_verify(void *user_data, grpc_tls_custom_verification_check_request *r,
    grpc_tls_on_custom_verification_check_done_cb cb, void *cb_arg,
    grpc_status_code *status, char **details)
{
	struct spiffe_verifier *v = user_data;
	const char *id;
	char msg[600];

	(void)cb;
	(void)cb_arg;
	*status = GRPC_STATUS_UNAUTHENTICATED;
	if (r->peer_info.san_names.uri_names_size != 1) {
		snprintf(msg, sizeof(msg), "server certificate: %zu URI SANs, "
		    "an SVID has one", r->peer_info.san_names.uri_names_size);
		goto fail;
	}
	id = r->peer_info.san_names.uri_names[0];
	if (strncmp(id, v->prefix, strlen(v->prefix)) != 0) {
		snprintf(msg, sizeof(msg), "server ID %.256s is not in trust "
		    "domain %.256s", id, v->prefix);
		goto fail;
	}
	if (v->expect != NULL && strcmp(id, v->expect) != 0) {
		snprintf(msg, sizeof(msg), "server ID %.256s is not the "
		    "expected %.256s", id, v->expect);
		goto fail;
	}
	*status = GRPC_STATUS_OK;
	*details = NULL;
	return 1;
fail:
	*details = gpr_strdup(msg);
	return 1;
}

/* Nothing runs asynchronously: nothing to cancel. */
static void
spiffe_verify_cancel(void *user_data,
    grpc_tls_custom_verification_check_request *r)
{
	(void)user_data;
	(void)r;
}

/* gRPC is done with the verifier. */
static void
spiffe_verify_destruct(void *user_data)
{
	struct spiffe_verifier *v = user_data;

	free(v->expect);
	free(v);
}

grpc_channel_credentials *
spiffe_channel_credentials(const struct spiffe_svid *svid,
    const char *expect_id)
{
	grpc_tls_credentials_options *opts;
	grpc_tls_identity_pairs *pairs;
	grpc_tls_certificate_provider *prov;
	grpc_tls_certificate_verifier *ver;
	grpc_channel_credentials *creds;
	struct spiffe_verifier *v;
	char td[256];

	if (spiffe_trust_domain(svid->id, td, sizeof(td)) != 0)
		return NULL;
	v = calloc(1, sizeof(*v));
	if (v == NULL)
		return NULL;
	snprintf(v->prefix, sizeof(v->prefix), SPIFFE_SCHEME "%s/", td);
	if (expect_id != NULL && expect_id[0] != '\0' &&
	    (v->expect = strdup(expect_id)) == NULL) {
		free(v);
		return NULL;
	}
	v->ext.user_data = v;
	v->ext.verify = spiffe_verify;
	v->ext.cancel = spiffe_verify_cancel;
	v->ext.destruct = spiffe_verify_destruct;

	pairs = grpc_tls_identity_pairs_create();
	grpc_tls_identity_pairs_add_pair(pairs, svid->key, svid->cert);
	prov = grpc_tls_certificate_provider_static_data_create(svid->bundle,
	    pairs);
	ver = grpc_tls_certificate_verifier_external_create(&v->ext);
	opts = grpc_tls_credentials_options_create();
	grpc_tls_credentials_options_set_certificate_provider(opts, prov);
	grpc_tls_credentials_options_watch_root_certs(opts);
	grpc_tls_credentials_options_watch_identity_key_cert_pairs(opts);
	grpc_tls_credentials_options_set_verify_server_cert(opts, 1);
	grpc_tls_credentials_options_set_certificate_verifier(opts, ver);
	grpc_tls_credentials_options_set_check_call_host(opts, 0);
	creds = grpc_tls_credentials_create(opts);
	grpc_tls_certificate_verifier_release(ver);
	grpc_tls_certificate_provider_release(prov);
	return creds;
}

/* ---- callers' IDs ------------------------------------------------------- */

int
spiffe_peer_id(grpc_call *call, char *buf, size_t len)
{
	static const char *const names[] = {
		GRPC_PEER_SPIFFE_ID_PROPERTY_NAME, GRPC_PEER_URI_PROPERTY_NAME,
	};
	grpc_auth_context *ctx;
	grpc_auth_property_iterator it;
	const grpc_auth_property *p;
	int rc = -1;

	ctx = grpc_call_auth_context(call);
	if (ctx == NULL)
		return -1;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && rc < 0;
	    i++) {
		it = grpc_auth_context_find_properties_by_name(ctx, names[i]);
		while ((p = grpc_auth_property_iterator_next(&it)) != NULL) {
			if (p->value_length < strlen(SPIFFE_SCHEME) ||
			    p->value_length >= len ||
			    strncmp(p->value, SPIFFE_SCHEME,
			    strlen(SPIFFE_SCHEME)) != 0)
				continue;
			memcpy(buf, p->value, p->value_length);
			buf[p->value_length] = '\0';
			rc = 0;
			break;
		}
	}
	grpc_auth_context_release(ctx);
	return rc;
}

bool
spiffe_id_allowed(const char *id, char *const *list, size_t n)
{
	size_t len;

	if (n == 0)
		return true;
	for (size_t i = 0; i < n; i++) {
		len = strlen(list[i]);
		if (len > 0 && list[i][len - 1] == '/') {
			if (strncmp(id, list[i], len) == 0 && id[len] != '\0')
				return true;
		} else if (strcmp(id, list[i]) == 0) {
			return true;
		}
	}
	return false;
}
