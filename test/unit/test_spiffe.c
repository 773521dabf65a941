/*
 * test_spiffe.c - SVIDs from X509SVIDResponse messages, and the mTLS
 * credentials made from them, over real loopback connections.
 *
 * Certificates are made at test time with the openssl command: a CA of
 * trust domain example.org, SVIDs with a URI SAN only, and a foreign CA
 * with an SVID of the same trust domain name. The mTLS server is tsrv.c's.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "grpcx.h"
#include "spiffe.h"
#include "spiffe/workload.pb-c.h"
#include "tsrv.h"

static char dir[512];

/* Runs a shell command in dir; the test fails if it fails. */
static void
sh(const char *fmt, ...)
{
	char cmd[5000], body[3800];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "cd '%s' && (%s) >/dev/null 2>&1", dir,
	    body);
	cr_assert_eq(system(cmd), 0, "command failed: %s", body);
}

/* A CA named name (name.pem, name.key). */
static void
make_ca(const char *name)
{
	sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
	    "-nodes -keyout %s.key -out %s.pem -days 2 -subj /O=%s "
	    "-addext basicConstraints=critical,CA:TRUE "
	    "-addext keyUsage=critical,keyCertSign,cRLSign && "
	    "openssl x509 -in %s.pem -outform DER -out %s.der",
	    name, name, name, name, name);
}

/* An SVID name signed by ca, with san as its only SAN (name.pem, .key,
 * .der, .key.der). */
static void
make_svid(const char *name, const char *ca, const char *san)
{
	sh("printf 'subjectAltName=%s\\nbasicConstraints=critical,CA:FALSE\\n"
	    "keyUsage=critical,digitalSignature,keyAgreement\\n"
	    "extendedKeyUsage=serverAuth,clientAuth\\n' > %s.ext && "
	    "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
	    "-nodes -keyout %s.key -out %s.csr -subj /O=svid && "
	    "openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key "
	    "-CAcreateserial -days 1 -extfile %s.ext -out %s.pem && "
	    "openssl x509 -in %s.pem -outform DER -out %s.der && "
	    "openssl pkcs8 -topk8 -nocrypt -in %s.key -outform DER "
	    "-out %s.key.der",
	    san, name, name, name, name, ca, ca, name, name, name, name, name,
	    name);
}

/* The contents of dir/name; the test fails if it cannot be read. */
static uint8_t *
slurp(const char *name, size_t *len)
{
	char path[700];
	FILE *f;
	uint8_t *buf;
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	cr_assert_not_null(f, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void
setup(void)
{
	const char *tmp = getenv("IPAM_TEST_TMP");

	snprintf(dir, sizeof(dir), "%s/spiffe-XXXXXX", tmp ? tmp : "/tmp");
	cr_assert_not_null(mkdtemp(dir));
	make_ca("ca");
	make_ca("foreign");
	make_svid("server", "ca", "URI:spiffe://example.org/ipam");
	make_svid("server2", "ca", "URI:spiffe://example.org/ipam2");
	make_svid("client", "ca", "URI:spiffe://example.org/proxy");
	make_svid("other", "ca", "URI:spiffe://other.org/proxy");
	make_svid("alien", "foreign", "URI:spiffe://example.org/proxy");
	make_svid("nouri", "ca", "DNS:localhost");
	make_svid("twouri", "ca",
	    "URI:spiffe://example.org/a,URI:spiffe://example.org/b");
	grpcx_init();
	tsrv_who = spiffe_peer_id;
}

static void
teardown(void)
{
	grpc_shutdown();
	sh("cd / && rm -rf '%s'", dir);
}

/*
 * A packed X509SVIDResponse: id, the DER chain of cert (plus extra_chain
 * when not NULL), the DER key of key, the DER bundle of ca.
 */
static uint8_t *
response(const char *id, const char *cert, const char *key, const char *ca,
    size_t *len)
{
	X509SVIDResponse r = X509_SVIDRESPONSE__INIT;
	X509SVID v = X509_SVID__INIT, *vp = &v;
	char name[64];
	uint8_t *buf;

	v.spiffe_id = (char *)id;
	snprintf(name, sizeof(name), "%s.der", cert);
	v.x509_svid.data = slurp(name, &v.x509_svid.len);
	snprintf(name, sizeof(name), "%s.key.der", key);
	v.x509_svid_key.data = slurp(name, &v.x509_svid_key.len);
	snprintf(name, sizeof(name), "%s.der", ca);
	v.bundle.data = slurp(name, &v.bundle.len);
	r.n_svids = 1;
	r.svids = &vp;
	*len = x509_svidresponse__get_packed_size(&r);
	buf = malloc(*len);
	x509_svidresponse__pack(&r, buf);
	free(v.x509_svid.data);
	free(v.x509_svid_key.data);
	free(v.bundle.data);
	return buf;
}

/* The SVID of files name (cert, key) and ca; the test fails if refused. */
static struct spiffe_svid *
svid_of(const char *id, const char *name, const char *ca)
{
	struct spiffe_svid *s;
	char err[256] = "";
	uint8_t *msg;
	size_t len;

	msg = response(id, name, name, ca, &len);
	s = spiffe_svid_parse(msg, len, err, sizeof(err));
	free(msg);
	cr_assert_not_null(s, "svid %s refused: %s", name, err);
	return s;
}

/* Expects the response to be refused with an error containing want. */
static void
refused(const char *id, const char *cert, const char *key, const char *ca,
    const char *want)
{
	struct spiffe_svid *s;
	char err[256] = "";
	uint8_t *msg;
	size_t len;

	msg = response(id, cert, key, ca, &len);
	s = spiffe_svid_parse(msg, len, err, sizeof(err));
	free(msg);
	cr_expect_null(s, "%s/%s accepted", cert, key);
	cr_expect(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err,
	    want);
	spiffe_svid_free(s);
}

TestSuite(spiffe, .init = setup, .fini = teardown, .timeout = 60);

/* Expects got to be the contents of file name (openssl's PEM). */
static void
same_as(const char *got, const char *name)
{
	size_t len;
	char *want = (char *)slurp(name, &len);

	cr_expect_str_eq(got, want, "differs from %s", name);
	free(want);
}

Test(spiffe, parse_to_pem)
{
	struct spiffe_svid *s;

	s = svid_of("spiffe://example.org/ipam", "server", "ca");
	cr_expect_str_eq(s->id, "spiffe://example.org/ipam");
	same_as(s->cert, "server.pem");
	same_as(s->bundle, "ca.pem");
	same_as(s->key, "server.key");
	spiffe_svid_free(s);
}

/* A chain with an intermediate after the leaf: one PEM block each. */
Test(spiffe, parse_chain_of_two)
{
	struct spiffe_svid *s;

	sh("cat server.der ca.der > chain.der && cat server.pem ca.pem > "
	    "chain.pem && cp server.key.der chain.key.der");
	s = svid_of("spiffe://example.org/ipam", "chain", "ca");
	same_as(s->cert, "chain.pem");	/* leaf, then intermediate */
	spiffe_svid_free(s);
}

Test(spiffe, parse_refusals)
{
	char err[256] = "";
	static const uint8_t junk[] = { 0x0a, 0x05, 0x01 };

	refused("https://example.org/ipam", "server", "server", "ca",
	    "is not a SPIFFE ID");
	refused("spiffe://example.org/other", "server", "server", "ca",
	    "exactly one URI SAN");
	refused("spiffe://example.org/ipam", "server", "client", "ca",
	    "does not match");
	refused("spiffe://example.org/a", "twouri", "twouri", "ca",
	    "found 2 URI SANs");
	refused("spiffe://example.org/ipam", "server", "server",
	    "server.key", "bundle: certificate 1 is not DER");
	refused("spiffe://example.org/ipam", "server.key", "server", "ca",
	    "certificates: certificate 1 is not DER");
	cr_expect_null(spiffe_svid_parse(junk, sizeof(junk), err,
	    sizeof(err)));
	cr_expect_str_eq(err, "not an X509SVIDResponse");
	cr_expect_null(spiffe_svid_parse(NULL, 0, err, sizeof(err)));
	cr_expect_str_eq(err, "the response holds no SVID");
}

Test(spiffe, ids)
{
	char td[64];
	char *list[] = { "spiffe://example.org/proxy", "spiffe://example.org/ns/" };

	cr_expect_eq(spiffe_trust_domain("spiffe://example.org/a/b", td,
	    sizeof(td)), 0);
	cr_expect_str_eq(td, "example.org");
	cr_expect_eq(spiffe_trust_domain("spiffe:///a", td, sizeof(td)), -1);
	cr_expect_eq(spiffe_trust_domain("http://x/a", td, sizeof(td)), -1);
	cr_expect(spiffe_id_allowed("spiffe://x/anything", NULL, 0));
	cr_expect(spiffe_id_allowed("spiffe://example.org/proxy", list, 2));
	cr_expect_not(spiffe_id_allowed("spiffe://example.org/proxy2", list, 2));
	cr_expect(spiffe_id_allowed("spiffe://example.org/ns/a/b", list, 2));
	cr_expect_not(spiffe_id_allowed("spiffe://example.org/ns/", list, 2));
	cr_expect_not(spiffe_id_allowed("spiffe://example.org/nsx/a", list, 2));
}

/* True once the source's generation passed gen, within ms. */
static bool
gen_after(struct spiffe_source *s, uint64_t gen, int ms)
{
	for (; ms > 0 && spiffe_source_generation(s) <= gen; ms -= 10)
		usleep(10 * 1000);
	return spiffe_source_generation(s) > gen;
}

/* Expects the source's SVID to be the one of id; returns its generation. */
static uint64_t
current_is(struct spiffe_source *src, const char *id)
{
	struct spiffe_svid *s;
	uint64_t gen;

	s = spiffe_source_get(src, &gen);
	cr_assert_not_null(s, "no SVID");
	cr_expect_str_eq(s->id, id);
	spiffe_svid_free(s);
	return gen;
}

Test(spiffe, source_generations)
{
	struct spiffe_source *s = spiffe_source_new();
	uint64_t gen = 99;

	cr_expect_null(spiffe_source_get(s, &gen));
	cr_expect_eq(gen, 0);
	spiffe_source_put(s, svid_of("spiffe://example.org/ipam", "server",
	    "ca"));
	cr_expect_eq(current_is(s, "spiffe://example.org/ipam"), 1);
	spiffe_source_put(s, svid_of("spiffe://example.org/ipam2", "server2",
	    "ca"));
	cr_expect_eq(spiffe_source_generation(s), 2);
	spiffe_source_free(s);
}

/* Serves tsrv with svid (taken) through a source of its own. */
static struct spiffe_source *
serve(struct spiffe_svid *svid)
{
	struct spiffe_source *src = spiffe_source_new();

	spiffe_source_put(src, svid);
	tsrv_start_creds(spiffe_server_credentials(src));
	return src;
}

static void
unserve(struct spiffe_source *src)
{
	tsrv_stop();
	spiffe_source_free(src);
}

/* One Who call to tsrv with creds (taken): the status, its message in st. */
static int
who(grpc_channel_credentials *creds, struct grpcx_status *st)
{
	struct grpcx_client *cl;
	char err[256];
	uint8_t *resp = NULL;
	size_t len;

	cr_assert_not_null(creds);
	cl = grpcx_client_new_creds(tsrv_target, creds, NULL, err, sizeof(err));
	cr_assert_not_null(cl, "%s", err);
	grpcx_call_bytes(cl, tsrv_paths[TS_WHO], "", 0, 5000, &resp, &len, st);
	free(resp);
	grpcx_client_free(cl);
	return st->code;
}

/* A Who call presenting svid (freed here), expecting the server ID expect
 * (NULL: any of the trust domain). */
static int
who_svid(struct spiffe_svid *svid, const char *expect, struct grpcx_status *st)
{
	grpc_channel_credentials *creds;

	creds = spiffe_channel_credentials(svid, expect);
	spiffe_svid_free(svid);
	return who(creds, st);
}

/* The client's SVID: spiffe://example.org/proxy from ca. */
static struct spiffe_svid *
proxy(void)
{
	return svid_of("spiffe://example.org/proxy", "client", "ca");
}

Test(spiffe, mtls_both_ways)
{
	struct spiffe_source *src;
	struct spiffe_svid *s;
	struct grpcx_status st;
	size_t n;
	char *ca;

	src = serve(svid_of("spiffe://example.org/ipam", "server", "ca"));
	/* an SVID of the trust domain: in, and the server sees its ID */
	cr_expect_eq(who_svid(proxy(), NULL, &st), GRPC_STATUS_OK, "%s",
	    st.message);
	cr_expect_str_eq(st.message, "spiffe://example.org/proxy");
	/* a client of a foreign CA: the server refuses it */
	cr_expect_eq(who_svid(svid_of("spiffe://example.org/proxy", "alien",
	    "foreign"), NULL, &st), GRPC_STATUS_UNAVAILABLE, "%s", st.message);
	/* the client trusts the foreign CA only: it refuses the server */
	s = proxy();
	free(s->bundle);
	s->bundle = (char *)slurp("foreign.pem", &n);
	cr_expect_eq(who_svid(s, NULL, &st), GRPC_STATUS_UNAVAILABLE, "%s",
	    st.message);
	/* plaintext, and TLS without a client certificate: refused */
	cr_expect_eq(who(grpc_insecure_credentials_create(), &st),
	    GRPC_STATUS_UNAVAILABLE, "%s", st.message);
	ca = (char *)slurp("ca.pem", &n);
	cr_expect_neq(who(grpc_ssl_credentials_create(ca, NULL, NULL, NULL),
	    &st), GRPC_STATUS_OK);
	free(ca);
	unserve(src);
}

/*
 * Servers whose certificates chain to the bundle but that the client
 * refuses: one of another trust domain, and one without a URI SAN (put
 * as it is, parse would refuse it, to see the client's own check).
 */
Test(spiffe, client_refuses_servers_outside_its_trust_domain)
{
	struct spiffe_source *src;
	struct spiffe_svid *s;
	struct grpcx_status st;
	size_t n;

	src = serve(svid_of("spiffe://other.org/proxy", "other", "ca"));
	cr_expect_eq(who_svid(proxy(), NULL, &st), GRPC_STATUS_UNAVAILABLE,
	    "%s", st.message);
	unserve(src);
	s = svid_of("spiffe://example.org/ipam", "server", "ca");
	free(s->cert);
	free(s->key);
	s->cert = (char *)slurp("nouri.pem", &n);
	s->key = (char *)slurp("nouri.key", &n);
	src = serve(s);
	cr_expect_eq(who_svid(proxy(), NULL, &st), GRPC_STATUS_UNAVAILABLE,
	    "%s", st.message);
	unserve(src);
}

/* The server ID a client expects: the current one only. */
Test(spiffe, rotation_reaches_new_connections)
{
	struct spiffe_source *src;
	struct grpcx_status st;

	src = serve(svid_of("spiffe://example.org/ipam", "server", "ca"));
	cr_expect_eq(who_svid(proxy(), "spiffe://example.org/ipam", &st),
	    GRPC_STATUS_OK, "%s", st.message);
	spiffe_source_put(src, svid_of("spiffe://example.org/ipam2", "server2",
	    "ca"));
	cr_expect_eq(who_svid(proxy(), "spiffe://example.org/ipam2", &st),
	    GRPC_STATUS_OK, "%s", st.message);
	cr_expect_eq(who_svid(proxy(), "spiffe://example.org/ipam", &st),
	    GRPC_STATUS_UNAVAILABLE, "%s", st.message);
	unserve(src);
}

Test(spiffe, fetch_fails_without_agent)
{
	char err[512] = "", target[700];
	struct spiffe_svid *s;

	snprintf(target, sizeof(target), "unix:%s/no-agent.sock", dir);
	s = spiffe_fetch(target, 500, err, sizeof(err));
	cr_expect_null(s);
	cr_expect(strstr(err, "UNAVAILABLE") != NULL ||
	    strstr(err, "DEADLINE_EXCEEDED") != NULL, "%s", err);
	cr_expect(strstr(err, "no-agent.sock") != NULL, "%s", err);
}

/* ---- a test Workload API: FetchX509SVID on a Unix socket --------------- */

/*
 * Serves one stream at a time from its own thread: refuses a call without
 * the workload.spiffe.io header (as SPIRE does), else sends the current
 * response and then each new one set with tagent_set, until stopped.
 */
struct tagent {
	char path[600];			/* its socket */
	char target[700];		/* "unix:" path */
	grpc_server *server;
	grpc_completion_queue *cq;
	pthread_t th;
	pthread_mutex_t mu;
	uint8_t *msg;			/* current packed response */
	size_t len;
	int version;			/* bumped by tagent_set */
	int calls, refused;		/* calls served, refused (no header) */
	bool stop;
};

/* Tags of the agent's batches. */
enum { TA_NEW = 1, TA_SENT, TA_CLOSED, TA_STATUS };

static void
tagent_set(struct tagent *a, const char *id, const char *name)
{
	uint8_t *msg;
	size_t len;

	msg = response(id, name, name, "ca", &len);
	pthread_mutex_lock(&a->mu);
	free(a->msg);
	a->msg = msg;
	a->len = len;
	a->version++;
	pthread_mutex_unlock(&a->mu);
}

static bool
tagent_has_header(const grpc_metadata_array *md)
{
	for (size_t i = 0; i < md->count; i++) {
		if (grpc_slice_str_cmp(md->metadata[i].key, SPIFFE_MD_KEY) ==
		    0 && grpc_slice_str_cmp(md->metadata[i].value, "true") == 0)
			return true;
	}
	return false;
}

static void *
tagent_main(void *arg)
{
	struct tagent *a = arg;
	grpc_call *call = NULL;
	grpc_call_details det;
	grpc_metadata_array md;
	grpc_byte_buffer *bb = NULL;
	grpc_op ops[3];
	grpc_slice msg = grpc_slice_from_static_string("no header");
	grpc_event ev;
	int cancelled, sent = 0;
	bool busy = false, open = false, md_sent = false;

	grpc_call_details_init(&det);
	grpc_metadata_array_init(&md);
	grpc_server_request_call(a->server, &call, &det, &md, a->cq, a->cq,
	    (void *)(intptr_t)TA_NEW);
	for (;;) {
		ev = grpc_completion_queue_next(a->cq, grpcx_deadline_ms(20),
		    NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type == GRPC_OP_COMPLETE) {
			switch ((intptr_t)ev.tag) {
			case TA_NEW:
				if (!ev.success)
					break;
				memset(ops, 0, sizeof(ops));
				ops[0].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
				ops[0].data.recv_close_on_server.cancelled =
				    &cancelled;
				grpc_call_start_batch(call, ops, 1,
				    (void *)(intptr_t)TA_CLOSED, NULL);
				if (!tagent_has_header(&md)) {
					pthread_mutex_lock(&a->mu);
					a->refused++;
					pthread_mutex_unlock(&a->mu);
					memset(ops, 0, sizeof(ops));
					ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
					ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
					ops[1].data.send_status_from_server.status =
					    GRPC_STATUS_INVALID_ARGUMENT;
					ops[1].data.send_status_from_server.
					    status_details = &msg;
					grpc_call_start_batch(call, ops, 2,
					    (void *)(intptr_t)TA_STATUS, NULL);
					busy = true;
				} else {
					pthread_mutex_lock(&a->mu);
					a->calls++;
					pthread_mutex_unlock(&a->mu);
					open = true;
					md_sent = false;
					sent = 0;
				}
				break;
			case TA_SENT:
				busy = false;
				if (bb != NULL)
					grpc_byte_buffer_destroy(bb);
				bb = NULL;
				if (!ev.success)
					open = false;
				break;
			case TA_STATUS:
				busy = false;
				break;
			case TA_CLOSED:
				/* the call is over: take the next one */
				open = false;
				while (busy) {
					ev = grpc_completion_queue_next(a->cq,
					    gpr_inf_future(GPR_CLOCK_REALTIME),
					    NULL);
					busy = false;
				}
				if (bb != NULL)
					grpc_byte_buffer_destroy(bb);
				bb = NULL;
				grpc_call_unref(call);
				call = NULL;
				grpc_call_details_destroy(&det);
				grpc_metadata_array_destroy(&md);
				grpc_call_details_init(&det);
				grpc_metadata_array_init(&md);
				pthread_mutex_lock(&a->mu);
				if (!a->stop)
					grpc_server_request_call(a->server,
					    &call, &det, &md, a->cq, a->cq,
					    (void *)(intptr_t)TA_NEW);
				pthread_mutex_unlock(&a->mu);
				break;
			}
		}
		pthread_mutex_lock(&a->mu);
		if (open && !busy && a->msg != NULL && sent != a->version) {
			sent = a->version;
			bb = grpcx_bytes(a->msg, a->len);
			memset(ops, 0, sizeof(ops));
			ops[0].op = GRPC_OP_SEND_MESSAGE;
			ops[0].data.send_message.send_message = bb;
			ops[1].op = GRPC_OP_SEND_INITIAL_METADATA;
			grpc_call_start_batch(call, ops, md_sent ? 1 : 2,
			    (void *)(intptr_t)TA_SENT, NULL);
			md_sent = true;
			busy = true;
		}
		pthread_mutex_unlock(&a->mu);
	}
	if (call != NULL)
		grpc_call_unref(call);
	grpc_call_details_destroy(&det);
	grpc_metadata_array_destroy(&md);
	return NULL;
}

static void
tagent_start(struct tagent *a)
{
	grpc_server_credentials *c = grpc_insecure_server_credentials_create();

	a->server = grpc_server_create(NULL, NULL);
	a->cq = grpc_completion_queue_create_for_next(NULL);
	grpc_server_register_completion_queue(a->server, a->cq, NULL);
	unlink(a->path);
	cr_assert_neq(grpc_server_add_http2_port(a->server, a->target, c), 0);
	grpc_server_credentials_release(c);
	a->stop = false;
	grpc_server_start(a->server);
	pthread_create(&a->th, NULL, tagent_main, a);
}

/* Stops serving: the open stream breaks, as when an agent dies. */
static void
tagent_stop(struct tagent *a)
{
	pthread_mutex_lock(&a->mu);
	a->stop = true;
	pthread_mutex_unlock(&a->mu);
	grpc_server_shutdown_and_notify(a->server, a->cq, (void *)0);
	grpc_server_cancel_all_calls(a->server);
	grpc_completion_queue_shutdown(a->cq);
	pthread_join(a->th, NULL);
	grpc_server_destroy(a->server);
	grpc_completion_queue_destroy(a->cq);
	unlink(a->path);
}

static void
tagent_init(struct tagent *a)
{
	memset(a, 0, sizeof(*a));
	pthread_mutex_init(&a->mu, NULL);
	snprintf(a->path, sizeof(a->path), "%s/agent.sock", dir);
	snprintf(a->target, sizeof(a->target), "unix:%s", a->path);
}

/* What the watcher reported, for the checks. */
struct tevents {
	pthread_mutex_t mu;
	int update, failed, rejected;
	char last[SPIFFE_ID_MAX + 1];
};

static void
tevent(void *arg, enum spiffe_event ev, const char *text)
{
	struct tevents *e = arg;

	pthread_mutex_lock(&e->mu);
	if (ev == SPIFFE_EV_UPDATE)
		e->update++;
	else if (ev == SPIFFE_EV_FAILED)
		e->failed++;
	else
		e->rejected++;
	snprintf(e->last, sizeof(e->last), "%s", text);
	pthread_mutex_unlock(&e->mu);
}

Test(spiffe, fetch_sends_header_and_gets_svid)
{
	struct tagent a;
	struct spiffe_svid *s;
	char err[512] = "";

	tagent_init(&a);
	tagent_set(&a, "spiffe://example.org/ipam", "server");
	tagent_start(&a);
	s = spiffe_fetch(a.target, 5000, err, sizeof(err));
	cr_assert_not_null(s, "%s", err);
	cr_expect_str_eq(s->id, "spiffe://example.org/ipam");
	cr_expect(strstr(s->key, "BEGIN PRIVATE KEY") != NULL);
	cr_expect_eq(a.calls, 1);
	cr_expect_eq(a.refused, 0);
	spiffe_svid_free(s);
	tagent_stop(&a);
	free(a.msg);
}

Test(spiffe, fetch_reports_a_refused_svid)
{
	struct tagent a;
	char err[512] = "";

	tagent_init(&a);
	tagent_set(&a, "spiffe://example.org/wrong", "server");
	tagent_start(&a);
	cr_expect_null(spiffe_fetch(a.target, 5000, err, sizeof(err)));
	cr_expect(strstr(err, "exactly one URI SAN") != NULL, "%s", err);
	tagent_stop(&a);
	free(a.msg);
}

Test(spiffe, watcher_follows_rotation_and_agent_restart)
{
	struct tagent a;
	struct spiffe_source *src = spiffe_source_new();
	struct tevents ev = { .mu = PTHREAD_MUTEX_INITIALIZER };
	char err[256];
	uint64_t gen;

	tagent_init(&a);
	/* no agent yet: one failure report, no SVID */
	cr_assert_eq(spiffe_source_watch(src, a.target, 200, tevent, &ev, err,
	    sizeof(err)), 0, "%s", err);
	usleep(800 * 1000);	/* several attempts */
	cr_expect_eq(spiffe_source_generation(src), 0);
	pthread_mutex_lock(&ev.mu);
	cr_expect_eq(ev.failed, 1, "one report per failure streak, got %d",
	    ev.failed);
	pthread_mutex_unlock(&ev.mu);

	tagent_set(&a, "spiffe://example.org/ipam", "server");
	tagent_start(&a);
	cr_assert(gen_after(src, 0, 5000), "no SVID from the agent");
	gen = current_is(src, "spiffe://example.org/ipam");

	/* a rotation on the open stream */
	tagent_set(&a, "spiffe://example.org/ipam2", "server2");
	cr_assert(gen_after(src, gen, 5000), "rotation not seen");
	current_is(src, "spiffe://example.org/ipam2");
	cr_expect_eq(a.calls, 1, "the stream was reopened");

	/* the agent goes: the SVID stays; it comes back: the new one */
	tagent_stop(&a);
	for (int i = 0; i < 100; i++) {	/* until the break is reported */
		pthread_mutex_lock(&ev.mu);
		gen = (uint64_t)ev.failed;
		pthread_mutex_unlock(&ev.mu);
		if (gen == 2)
			break;
		usleep(50 * 1000);
	}
	gen = current_is(src, "spiffe://example.org/ipam2");
	pthread_mutex_lock(&ev.mu);
	cr_expect_eq(ev.failed, 2, "one more report for the new streak");
	pthread_mutex_unlock(&ev.mu);
	tagent_set(&a, "spiffe://example.org/ipam", "server");
	tagent_start(&a);
	cr_assert(gen_after(src, gen, 5000), "no SVID after restart");
	current_is(src, "spiffe://example.org/ipam");
	cr_expect_eq(a.refused, 0);

	spiffe_source_free(src);	/* cancels the open stream, joins */
	cr_expect_eq(ev.rejected, 0);
	cr_expect_eq(ev.update, 3);
	tagent_stop(&a);
	free(a.msg);
}

Test(spiffe, agent_refuses_call_without_header)
{
	/* checks the test agent itself, so that the tests above mean
	 * something: a call without the header fails */
	struct tagent a;
	struct grpcx_client *cl;
	struct grpcx_status st;
	char err[256];
	uint8_t *resp = NULL;
	size_t len;

	tagent_init(&a);
	tagent_set(&a, "spiffe://example.org/ipam", "server");
	tagent_start(&a);
	cl = grpcx_client_new(a.target, err, sizeof(err));
	cr_assert_not_null(cl, "%s", err);
	cr_expect_eq(grpcx_call_bytes(cl, SPIFFE_METHOD, "", 0, 5000, &resp,
	    &len, &st), GRPC_STATUS_INVALID_ARGUMENT);
	cr_expect_eq(a.refused, 1);
	free(resp);
	grpcx_client_free(cl);
	tagent_stop(&a);
	free(a.msg);
}
