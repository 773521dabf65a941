/*
 * test_spiffe.c - SVIDs from X509SVIDResponse messages, and the mTLS
 * credentials made from them, over real loopback connections.
 *
 * Certificates are made at test time with the openssl command: a CA of
 * trust domain example.org, SVIDs with a URI SAN only, and a foreign CA
 * with an SVID of the same trust domain name.
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
}

static void
teardown(void)
{
	char cmd[600];

	grpc_shutdown();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)system(cmd);
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

Test(spiffe, parse_to_pem)
{
	struct spiffe_svid *s, *d;
	size_t len;
	uint8_t *pem;

	s = svid_of("spiffe://example.org/ipam", "server", "ca");
	cr_expect_str_eq(s->id, "spiffe://example.org/ipam");
	pem = slurp("server.pem", &len);
	cr_expect_str_eq(s->cert, (char *)pem, "chain PEM differs from "
	    "openssl's");
	free(pem);
	pem = slurp("ca.pem", &len);
	cr_expect_str_eq(s->bundle, (char *)pem);
	free(pem);
	pem = slurp("server.key", &len);
	cr_expect_str_eq(s->key, (char *)pem, "key PEM differs from openssl's");
	free(pem);
	d = spiffe_svid_dup(s);
	cr_expect_str_eq(d->key, s->key);
	spiffe_svid_free(s);
	spiffe_svid_free(d);
}

/* A chain with an intermediate after the leaf: one PEM block each. */
Test(spiffe, parse_chain_of_two)
{
	X509SVIDResponse r = X509_SVIDRESPONSE__INIT;
	X509SVID v = X509_SVID__INIT, *vp = &v;
	struct spiffe_svid *s;
	uint8_t *leaf, *ca, *buf;
	size_t nleaf, nca, len;
	char err[256] = "";
	const char *p;
	int n = 0;

	leaf = slurp("server.der", &nleaf);
	ca = slurp("ca.der", &nca);
	v.spiffe_id = "spiffe://example.org/ipam";
	v.x509_svid.data = malloc(nleaf + nca);
	memcpy(v.x509_svid.data, leaf, nleaf);
	memcpy(v.x509_svid.data + nleaf, ca, nca);
	v.x509_svid.len = nleaf + nca;
	v.x509_svid_key.data = slurp("server.key.der", &v.x509_svid_key.len);
	v.bundle.data = ca;
	v.bundle.len = nca;
	r.n_svids = 1;
	r.svids = &vp;
	len = x509_svidresponse__get_packed_size(&r);
	buf = malloc(len);
	x509_svidresponse__pack(&r, buf);
	s = spiffe_svid_parse(buf, len, err, sizeof(err));
	cr_assert_not_null(s, "%s", err);
	for (p = s->cert; (p = strstr(p, "BEGIN CERTIFICATE")) != NULL; p++)
		n++;
	cr_expect_eq(n, 2);
	{
		size_t n1, n2;
		char *pl = (char *)slurp("server.pem", &n1);
		char *pc = (char *)slurp("ca.pem", &n2);

		cr_expect(strncmp(s->cert, pl, n1) == 0, "leaf not first");
		cr_expect_str_eq(s->cert + n1, pc, "intermediate not second");
		free(pl);
		free(pc);
	}
	spiffe_svid_free(s);
	free(buf);
	free(leaf);
	free(ca);
	free(v.x509_svid.data);
	free(v.x509_svid_key.data);
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

Test(spiffe, source_generations)
{
	struct spiffe_source *s = spiffe_source_new();
	struct spiffe_svid *g;
	uint64_t gen = 99;

	cr_expect_null(spiffe_source_get(s, &gen));
	cr_expect_eq(gen, 0);
	cr_expect_not(spiffe_source_wait(s, 0, 50));
	spiffe_source_put(s, svid_of("spiffe://example.org/ipam", "server",
	    "ca"));
	cr_expect(spiffe_source_wait(s, 0, 0));
	g = spiffe_source_get(s, &gen);
	cr_expect_eq(gen, 1);
	cr_expect_str_eq(g->id, "spiffe://example.org/ipam");
	spiffe_svid_free(g);
	spiffe_source_put(s, svid_of("spiffe://example.org/ipam2", "server2",
	    "ca"));
	cr_expect_eq(spiffe_source_generation(s), 2);
	spiffe_source_free(s);
}

/* ---- a test server: every call answers OK with the caller's ID -------- */

struct tserver {
	grpc_server *server;
	grpc_completion_queue *cq;
	pthread_t th;
	int port;
};

struct tcall {
	grpc_call *call;
	grpc_call_details details;
	grpc_metadata_array md;
	int cancelled;
	grpc_slice msg;
	bool answering;
};

static void
tserver_post(struct tserver *t)
{
	struct tcall *c = calloc(1, sizeof(*c));

	grpc_call_details_init(&c->details);
	grpc_metadata_array_init(&c->md);
	cr_assert_eq(grpc_server_request_call(t->server, &c->call, &c->details,
	    &c->md, t->cq, t->cq, c), GRPC_CALL_OK);
}

static void *
tserver_main(void *arg)
{
	struct tserver *t = arg;
	grpc_event ev;
	struct tcall *c;
	grpc_op ops[3];
	char id[SPIFFE_ID_MAX + 1];

	for (;;) {
		ev = grpc_completion_queue_next(t->cq,
		    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		c = ev.tag;
		if (c == NULL)
			continue;	/* the shutdown tag */
		if (c->answering || !ev.success) {
			if (c->call != NULL)
				grpc_call_unref(c->call);
			grpc_slice_unref(c->msg);
			grpc_call_details_destroy(&c->details);
			grpc_metadata_array_destroy(&c->md);
			free(c);
			continue;
		}
		tserver_post(t);
		if (spiffe_peer_id(c->call, id, sizeof(id)) != 0)
			snprintf(id, sizeof(id), "no id");
		c->answering = true;
		c->msg = grpc_slice_from_copied_string(id);
		memset(ops, 0, sizeof(ops));
		ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
		ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
		ops[1].data.send_status_from_server.status = GRPC_STATUS_OK;
		ops[1].data.send_status_from_server.status_details = &c->msg;
		ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
		ops[2].data.recv_close_on_server.cancelled = &c->cancelled;
		grpc_call_start_batch(c->call, ops, 3, c, NULL);
	}
	return NULL;
}

static void
tserver_start(struct tserver *t, grpc_server_credentials *creds)
{
	memset(t, 0, sizeof(*t));
	t->server = grpc_server_create(NULL, NULL);
	t->cq = grpc_completion_queue_create_for_next(NULL);
	grpc_server_register_completion_queue(t->server, t->cq, NULL);
	t->port = grpc_server_add_http2_port(t->server, "127.0.0.1:0", creds);
	grpc_server_credentials_release(creds);
	cr_assert_gt(t->port, 0, "cannot bind the test server");
	grpc_server_start(t->server);
	tserver_post(t);
	pthread_create(&t->th, NULL, tserver_main, t);
}

static void
tserver_stop(struct tserver *t)
{
	grpc_server_shutdown_and_notify(t->server, t->cq, NULL);
	grpc_server_cancel_all_calls(t->server);
	grpc_completion_queue_shutdown(t->cq);
	pthread_join(t->th, NULL);
	grpc_server_destroy(t->server);
	grpc_completion_queue_destroy(t->cq);
}

/*
 * One call with creds (released here) to the test server; the status
 * code, and its message in msg.
 */
static grpc_status_code
tcall(struct tserver *t, grpc_channel_credentials *creds, char *msg,
    size_t len)
{
	char target[64];
	grpc_channel *ch;
	grpc_completion_queue *cq;
	grpc_call *call;
	struct grpcx_ccall u;
	grpc_status_code code;
	grpc_slice m;

	cr_assert_not_null(creds);
	snprintf(target, sizeof(target), "127.0.0.1:%d", t->port);
	ch = grpc_channel_create(target, creds, NULL);
	grpc_channel_credentials_release(creds);
	cq = grpc_completion_queue_create_for_next(NULL);
	m = grpc_slice_from_static_string("/test.T/Who");
	call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
	    m, NULL, grpcx_deadline_ms(5000), NULL);
	cr_assert_eq(grpcx_unary_start(call, grpcx_bytes("", 0), &u, &u),
	    GRPC_CALL_OK);
	grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME),
	    NULL);
	code = u.status;
	snprintf(msg, len, "%.*s", (int)GRPC_SLICE_LENGTH(u.details),
	    (const char *)GRPC_SLICE_START_PTR(u.details));
	grpcx_ccall_clear(&u);
	grpc_call_unref(call);
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_next(cq, gpr_inf_future(
	    GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
	grpc_channel_destroy(ch);
	return code;
}

/* A call presenting svid, expecting server ID expect (NULL: any). */
static grpc_status_code
tcall_svid(struct tserver *t, struct spiffe_svid *svid, const char *expect,
    char *msg, size_t len)
{
	grpc_status_code code;

	code = tcall(t, spiffe_channel_credentials(svid, expect), msg, len);
	spiffe_svid_free(svid);
	return code;
}

Test(spiffe, mtls_both_ways)
{
	struct spiffe_source *src = spiffe_source_new();
	struct tserver t;
	char msg[512];

	spiffe_source_put(src, svid_of("spiffe://example.org/ipam", "server",
	    "ca"));
	tserver_start(&t, spiffe_server_credentials(src));

	/* an SVID of the trust domain: in, and the server sees its ID */
	cr_expect_eq(tcall_svid(&t, svid_of("spiffe://example.org/proxy",
	    "client", "ca"), NULL, msg, sizeof(msg)), GRPC_STATUS_OK, "%s",
	    msg);
	cr_expect_str_eq(msg, "spiffe://example.org/proxy");
	/* the exact server ID wanted */
	cr_expect_eq(tcall_svid(&t, svid_of("spiffe://example.org/proxy",
	    "client", "ca"), "spiffe://example.org/ipam", msg, sizeof(msg)),
	    GRPC_STATUS_OK, "%s", msg);
	/* another server ID wanted: the client refuses the server */
	cr_expect_eq(tcall_svid(&t, svid_of("spiffe://example.org/proxy",
	    "client", "ca"), "spiffe://example.org/other", msg, sizeof(msg)),
	    GRPC_STATUS_UNAVAILABLE, "%s", msg);
	/* a client of a foreign CA: the server refuses it */
	cr_expect_eq(tcall_svid(&t, svid_of("spiffe://example.org/proxy",
	    "alien", "foreign"), NULL, msg, sizeof(msg)),
	    GRPC_STATUS_UNAVAILABLE, "%s", msg);
	/* the client trusts the foreign CA only: it refuses the server */
	{
		struct spiffe_svid *s = svid_of("spiffe://example.org/proxy",
		    "client", "ca");
		size_t n;

		free(s->bundle);
		s->bundle = (char *)slurp("foreign.pem", &n);
		cr_expect_eq(tcall_svid(&t, s, NULL, msg, sizeof(msg)),
		    GRPC_STATUS_UNAVAILABLE, "%s", msg);
	}
	/* plaintext, and TLS without a client certificate: refused */
	cr_expect_eq(tcall(&t, grpc_insecure_credentials_create(), msg,
	    sizeof(msg)), GRPC_STATUS_UNAVAILABLE, "%s", msg);
	{
		size_t n;
		char *ca = (char *)slurp("ca.pem", &n);

		cr_expect_neq(tcall(&t, grpc_ssl_credentials_create(ca, NULL,
		    NULL, NULL), msg, sizeof(msg)), GRPC_STATUS_OK);
		free(ca);
	}
	tserver_stop(&t);
	spiffe_source_free(src);
}

Test(spiffe, client_refuses_server_without_spiffe_id)
{
	struct spiffe_source *src = spiffe_source_new();
	struct spiffe_svid *s;
	struct tserver t;
	char msg[512];

	/* a server certificate of the right CA without a URI SAN: put as
	 * it is (parse would refuse it) to see the client's own check */
	s = svid_of("spiffe://example.org/ipam", "server", "ca");
	free(s->cert);
	free(s->key);
	{
		size_t n;

		s->cert = (char *)slurp("nouri.pem", &n);
		s->key = (char *)slurp("nouri.key", &n);
	}
	spiffe_source_put(src, s);
	tserver_start(&t, spiffe_server_credentials(src));
	cr_expect_eq(tcall_svid(&t, svid_of("spiffe://example.org/proxy",
	    "client", "ca"), NULL, msg, sizeof(msg)), GRPC_STATUS_UNAVAILABLE,
	    "%s", msg);
	tserver_stop(&t);
	spiffe_source_free(src);
}

Test(spiffe, client_refuses_other_trust_domain)
{
	struct spiffe_source *src = spiffe_source_new();
	struct tserver t;
	char msg[512];

	spiffe_source_put(src, svid_of("spiffe://other.org/proxy", "other",
	    "ca"));
	tserver_start(&t, spiffe_server_credentials(src));
	cr_expect_eq(tcall_svid(&t, svid_of("spiffe://example.org/proxy",
	    "client", "ca"), NULL, msg, sizeof(msg)), GRPC_STATUS_UNAVAILABLE,
	    "%s", msg);
	tserver_stop(&t);
	spiffe_source_free(src);
}

Test(spiffe, rotation_reaches_new_connections)
{
	struct spiffe_source *src = spiffe_source_new();
	struct tserver t;
	char msg[512];

	spiffe_source_put(src, svid_of("spiffe://example.org/ipam", "server",
	    "ca"));
	tserver_start(&t, spiffe_server_credentials(src));
	cr_expect_eq(tcall_svid(&t, svid_of("spiffe://example.org/proxy",
	    "client", "ca"), "spiffe://example.org/ipam", msg, sizeof(msg)),
	    GRPC_STATUS_OK, "%s", msg);
	spiffe_source_put(src, svid_of("spiffe://example.org/ipam2", "server2",
	    "ca"));
	cr_expect_eq(tcall_svid(&t, svid_of("spiffe://example.org/proxy",
	    "client", "ca"), "spiffe://example.org/ipam2", msg, sizeof(msg)),
	    GRPC_STATUS_OK, "%s", msg);
	cr_expect_eq(tcall_svid(&t, svid_of("spiffe://example.org/proxy",
	    "client", "ca"), "spiffe://example.org/ipam", msg, sizeof(msg)),
	    GRPC_STATUS_UNAVAILABLE, "%s", msg);
	tserver_stop(&t);
	spiffe_source_free(src);
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
	char path[600];
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
	char addr[700];

	a->server = grpc_server_create(NULL, NULL);
	a->cq = grpc_completion_queue_create_for_next(NULL);
	grpc_server_register_completion_queue(a->server, a->cq, NULL);
	snprintf(addr, sizeof(addr), "unix:%s", a->path);
	unlink(a->path);
	{
		grpc_server_credentials *c =
		    grpc_insecure_server_credentials_create();

		cr_assert_neq(grpc_server_add_http2_port(a->server, addr, c), 0);
		grpc_server_credentials_release(c);
	}
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
	char err[512] = "", target[700];

	tagent_init(&a);
	tagent_set(&a, "spiffe://example.org/ipam", "server");
	tagent_start(&a);
	snprintf(target, sizeof(target), "unix:%s", a.path);
	s = spiffe_fetch(target, 5000, err, sizeof(err));
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
	char err[512] = "", target[700];
	uint8_t *msg;
	size_t len;

	tagent_init(&a);
	msg = response("spiffe://example.org/wrong", "server", "server", "ca",
	    &len);
	a.msg = msg;
	a.len = len;
	a.version = 1;
	tagent_start(&a);
	snprintf(target, sizeof(target), "unix:%s", a.path);
	cr_expect_null(spiffe_fetch(target, 5000, err, sizeof(err)));
	cr_expect(strstr(err, "exactly one URI SAN") != NULL, "%s", err);
	tagent_stop(&a);
	free(a.msg);
}

Test(spiffe, watcher_follows_rotation_and_agent_restart)
{
	struct tagent a;
	struct spiffe_source *src = spiffe_source_new();
	struct tevents ev = { .mu = PTHREAD_MUTEX_INITIALIZER };
	struct spiffe_svid *s;
	char err[256], target[700];
	uint64_t gen;

	tagent_init(&a);
	snprintf(target, sizeof(target), "unix:%s", a.path);
	/* no agent yet: one failure report, no SVID */
	cr_assert_eq(spiffe_source_watch(src, target, 200, tevent, &ev, err,
	    sizeof(err)), 0, "%s", err);
	usleep(800 * 1000);	/* several attempts */
	cr_expect_eq(spiffe_source_generation(src), 0);
	pthread_mutex_lock(&ev.mu);
	cr_expect_eq(ev.failed, 1, "one report per failure streak, got %d",
	    ev.failed);
	pthread_mutex_unlock(&ev.mu);

	tagent_set(&a, "spiffe://example.org/ipam", "server");
	tagent_start(&a);
	cr_assert(spiffe_source_wait(src, 0, 5000), "no SVID from the agent");
	s = spiffe_source_get(src, &gen);
	cr_expect_str_eq(s->id, "spiffe://example.org/ipam");
	spiffe_svid_free(s);

	/* a rotation on the open stream */
	tagent_set(&a, "spiffe://example.org/ipam2", "server2");
	cr_assert(spiffe_source_wait(src, gen, 5000), "rotation not seen");
	s = spiffe_source_get(src, &gen);
	cr_expect_str_eq(s->id, "spiffe://example.org/ipam2");
	spiffe_svid_free(s);
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
	gen = spiffe_source_generation(src);
	s = spiffe_source_get(src, NULL);
	cr_expect_str_eq(s->id, "spiffe://example.org/ipam2");
	spiffe_svid_free(s);
	pthread_mutex_lock(&ev.mu);
	cr_expect_eq(ev.failed, 2, "one more report for the new streak");
	pthread_mutex_unlock(&ev.mu);
	tagent_set(&a, "spiffe://example.org/ipam", "server");
	tagent_start(&a);
	cr_assert(spiffe_source_wait(src, gen, 5000), "no SVID after restart");
	s = spiffe_source_get(src, NULL);
	cr_expect_str_eq(s->id, "spiffe://example.org/ipam");
	spiffe_svid_free(s);
	cr_expect_eq(a.refused, 0);

	spiffe_source_free(src);	/* cancels the open stream, joins */
	cr_expect_eq(ev.rejected, 0);
	cr_expect_eq(ev.update, 3);
	tagent_stop(&a);
	free(a.msg);
}

Test(spiffe, agent_refuses_call_without_header)
{
	struct tagent a;
	grpc_channel *ch;
	grpc_completion_queue *cq;
	grpc_call *call;
	struct grpcx_ccall u;
	char target[700];

	/* checks the test agent itself, so that the tests above mean
	 * something: a call without the header fails */
	tagent_init(&a);
	tagent_set(&a, "spiffe://example.org/ipam", "server");
	tagent_start(&a);
	snprintf(target, sizeof(target), "unix:%s", a.path);
	{
		grpc_channel_credentials *c = grpc_insecure_credentials_create();

		ch = grpc_channel_create(target, c, NULL);
		grpc_channel_credentials_release(c);
	}
	cq = grpc_completion_queue_create_for_next(NULL);
	call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
	    grpc_slice_from_static_string(SPIFFE_METHOD), NULL,
	    grpcx_deadline_ms(5000), NULL);
	cr_assert_eq(grpcx_unary_start(call, grpcx_bytes("", 0), &u, &u),
	    GRPC_CALL_OK);
	grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME),
	    NULL);
	cr_expect_eq(u.status, GRPC_STATUS_INVALID_ARGUMENT);
	cr_expect_eq(a.refused, 1);
	grpcx_ccall_clear(&u);
	grpc_call_unref(call);
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_next(cq, gpr_inf_future(
	    GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
	grpc_channel_destroy(ch);
	tagent_stop(&a);
	free(a.msg);
}
