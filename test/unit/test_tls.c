/*
 * test_tls.c - tls: TLS from PEM files against the test server (tsrv.c),
 * with certificates made by openssl: bad files, mTLS, rotation of the
 * files on disk, the server name override, the fetcher's reports.
 */
#include <criterion/criterion.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "grpcx.h"
#include "tls.h"
#include "tsrv.h"

/* ---- TLS from PEM files ----------------------------------------------- */

/*
 * Certificates made with openssl in a scratch directory: two CAs (ca1,
 * ca2), a server certificate from each (srv1, srv2: 127.0.0.1 and
 * localhost) and a client certificate from each (cli1, cli2).
 */
static char tls_dir[256];
static struct tls *tls_served;	/* the test server's, stopped by teardown */

/* Runs a shell command built from fmt; fails the test if it fails. */
static void
tls_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
tls_sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* Path of file name in the scratch directory (a static buffer each). */
static const char *
tls_path(const char *name)
{
	static char buf[8][512];
	static int next;
	char *p = buf[next++ % 8];

	snprintf(p, sizeof(buf[0]), "%s/%s", tls_dir, name);
	return p;
}

/* A new CA named name (name.crt, name.key). */
static void
tls_make_ca(const char *name)
{
	tls_sh("cd %s && openssl req -x509 -newkey ec -pkeyopt "
	    "ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=%s "
	    "-addext basicConstraints=critical,CA:TRUE -keyout %s.key "
	    "-out %s.crt >/dev/null 2>&1", tls_dir, name, name, name);
}

/* A certificate name.crt/name.key for 127.0.0.1 and localhost, signed
 * by ca. */
static void
tls_make_leaf(const char *name, const char *ca)
{
	tls_sh("cd %s && openssl req -x509 -newkey ec -pkeyopt "
	    "ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=%s "
	    "-CA %s.crt -CAkey %s.key -addext "
	    "subjectAltName=IP:127.0.0.1,DNS:localhost -addext "
	    "basicConstraints=critical,CA:FALSE -keyout %s.key -out %s.crt "
	    ">/dev/null 2>&1", tls_dir, name, ca, ca, name, name);
}

static void
tls_setup(void)
{
	const char *base = getenv("IPAM_TEST_TMP");

	snprintf(tls_dir, sizeof(tls_dir), "%s/tls-XXXXXX",
	    base != NULL && base[0] != '\0' ? base : "/tmp");
	cr_assert_not_null(mkdtemp(tls_dir));
	tls_make_ca("ca1");
	tls_make_ca("ca2");
	tls_make_leaf("srv1", "ca1");
	tls_make_leaf("srv2", "ca2");
	tls_make_leaf("cli1", "ca1");
	tls_make_leaf("cli2", "ca2");
	/* the files the server is configured with: srv1 to begin with */
	tls_sh("cp %s/srv1.crt %s/server.crt && cp %s/srv1.key "
	    "%s/server.key", tls_dir, tls_dir, tls_dir, tls_dir);
	grpc_init();
}

static void
tls_teardown(void)
{
	if (tls_served != NULL) {
		tsrv_stop();
		tls_free(tls_served);
	}
	grpc_shutdown();
	if (tls_dir[0] != '\0')
		tls_sh("rm -rf %s", tls_dir);
}

/*
 * Replaces dst in the scratch directory by a copy of src the way
 * rotation tools do: written aside, then renamed over it.
 */
static void
tls_replace(const char *src, const char *dst)
{
	tls_sh("cd %s && cp %s .tmp-%s && mv -f .tmp-%s %s", tls_dir, src,
	    dst, dst, dst);
}

/*
 * One echo call from a new client with the certificate leaf (leaf.crt,
 * leaf.key; NULL: none) and the roots ca (NULL: plaintext), checking the
 * server's name against name (NULL: the target's). Returns the status.
 */
static int
tls_echo(const char *leaf, const char *ca, const char *name)
{
	struct tls *t = NULL;
	struct grpcx_client *cl;
	struct grpcx_status st;
	char err[256], crt[64], key[64];
	uint8_t *resp = NULL;
	size_t len = 0;
	int rc;

	snprintf(crt, sizeof(crt), "%s.crt", leaf != NULL ? leaf : "");
	snprintf(key, sizeof(key), "%s.key", leaf != NULL ? leaf : "");
	if (ca != NULL) {
		t = tls_new(leaf ? tls_path(crt) : NULL, leaf ? tls_path(key) :
		    NULL, tls_path(ca), err, sizeof(err));
		cr_assert_not_null(t, "%s", err);
	}
	cl = tls_client_new(tsrv_target, t, name, err, sizeof(err));
	cr_assert_not_null(cl, "%s", err);
	rc = grpcx_call_bytes(cl, tsrv_paths[TS_ECHO], "x", 1, 5000, &resp,
	    &len, &st);
	free(resp);
	grpcx_client_free(cl);
	tls_free(t);
	return rc;
}

/* Starts the test server with server.crt/server.key and, if ca, client
 * certificates required from ca. */
static struct tls *
tls_server(const char *ca)
{
	grpc_server_credentials *creds;
	char err[256];

	tls_served = tls_new(tls_path("server.crt"), tls_path("server.key"),
	    ca != NULL ? tls_path(ca) : NULL, err, sizeof(err));
	cr_assert_not_null(tls_served, "%s", err);
	creds = tls_server_credentials(tls_served);
	cr_assert_not_null(creds);
	tsrv_start_creds(creds);
	return tls_served;
}

TestSuite(tls, .init = tls_setup, .fini = tls_teardown,
    .timeout = 120);

Test(tls, new_refuses_bad_files)
{
	/* files (NULL: none), and what the error names */
	static const struct {
		const char *cert, *key, *ca, *want, *want2;
	} t[] = {
		{ "srv1.crt", NULL, NULL, "needs a private key", "" },
		{ NULL, "srv1.key", NULL, "needs a certificate", "" },
		{ "missing.crt", "srv1.key", NULL, "missing.crt", "No such file" },
		/* a key where the certificate belongs, and the reverse */
		{ "srv1.key", "srv1.key", NULL, "no PEM certificate", "" },
		{ "srv1.crt", "srv1.crt", NULL, "no PEM private key", "" },
		{ "srv1.crt", "srv1.key", "junk.pem", "CA file", "junk.pem" },
		/* a directory is not a PEM file */
		{ NULL, NULL, ".", "not a regular file", "" },
	};
	char err[512];

	tls_sh("printf 'not a certificate' > %s/junk.pem", tls_dir);
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		err[0] = '\0';
		cr_expect_null(tls_new(t[i].cert ? tls_path(t[i].cert) : NULL,
		    t[i].key ? tls_path(t[i].key) : NULL, t[i].ca ?
		    tls_path(t[i].ca) : NULL, err, sizeof(err)));
		cr_expect(strstr(err, t[i].want) != NULL &&
		    strstr(err, t[i].want2) != NULL, "%s", err);
	}
	tls_free(NULL);
}

Test(tls, new_accepts_each_valid_combination)
{
	struct tls *t;
	char err[512];

	t = tls_new(tls_path("srv1.crt"), tls_path("srv1.key"),
	    tls_path("ca1.crt"), err, sizeof(err));
	cr_assert_not_null(t, "%s", err);
	cr_expect(tls_has_cert(t));
	tls_free(t);

	/* a client with roots only, or with nothing (system roots) */
	t = tls_new(NULL, "", tls_path("ca1.crt"), err, sizeof(err));
	cr_assert_not_null(t, "%s", err);
	cr_expect(!tls_has_cert(t));
	cr_expect_null(tls_server_credentials(t));
	tls_free(t);
	t = tls_new("", "", "", err, sizeof(err));
	cr_assert_not_null(t, "%s", err);
	tls_free(t);
}

Test(tls, refresh_reads_only_changed_files)
{
	struct tls *t;
	char err[512];

	t = tls_new(tls_path("server.crt"), tls_path("server.key"),
	    NULL, err, sizeof(err));
	cr_assert_not_null(t, "%s", err);
	cr_expect_eq(tls_refresh(t, err, sizeof(err)), 0);

	/* renamed in (new inode) */
	tls_replace("srv2.crt", "server.crt");
	cr_expect_eq(tls_refresh(t, err, sizeof(err)), 1, "%s", err);
	cr_expect_eq(tls_refresh(t, err, sizeof(err)), 0);

	/* rewritten in place (same inode, other size and mtime) */
	tls_sh("cat %s/srv1.key > %s/server.key", tls_dir, tls_dir);
	tls_sh("cat %s/srv2.key >> %s/server.key", tls_dir, tls_dir);
	cr_expect_eq(tls_refresh(t, err, sizeof(err)), 1, "%s", err);

	/* a file cut short: BEGIN without END */
	tls_sh("head -c 100 %s/srv1.key > %s/server.key", tls_dir, tls_dir);
	cr_expect_eq(tls_refresh(t, err, sizeof(err)), -1);
	cr_expect(strstr(err, "no PEM private key") != NULL, "%s", err);

	/* a broken file keeps the old contents and is tried again */
	tls_sh("printf garbage > %s/server.key", tls_dir);
	cr_expect_eq(tls_refresh(t, err, sizeof(err)), -1);
	cr_expect(strstr(err, "server.key") != NULL, "%s", err);
	cr_expect_eq(tls_refresh(t, err, sizeof(err)), -1);
	tls_sh("rm %s/server.key", tls_dir);
	cr_expect_eq(tls_refresh(t, err, sizeof(err)), -1);
	cr_expect(strstr(err, "No such file") != NULL, "%s", err);
	tls_replace("srv2.key", "server.key");
	cr_expect_eq(tls_refresh(t, err, sizeof(err)), 1, "%s", err);
	tls_free(t);
}

Test(tls, server_tls_refuses_plaintext_and_unknown_ca)
{
	tls_server(NULL);
	cr_expect_eq(tls_echo(NULL, "ca1.crt", NULL), GRPC_STATUS_OK);
	/* no client certificate needed, but one does no harm */
	cr_expect_eq(tls_echo("cli2", "ca1.crt", NULL), GRPC_STATUS_OK);
	cr_expect_eq(tls_echo(NULL, NULL, NULL), GRPC_STATUS_UNAVAILABLE);
	cr_expect_eq(tls_echo(NULL, "ca2.crt", NULL), GRPC_STATUS_UNAVAILABLE);
}

Test(tls, mtls_requires_a_certificate_from_the_ca)
{
	tls_server("ca1.crt");
	cr_expect_eq(tls_echo(NULL, "ca1.crt", NULL), GRPC_STATUS_UNAVAILABLE);
	/* a server certificate of the right CA is a client one as well */
	cr_expect_eq(tls_echo("srv1", "ca1.crt", NULL), GRPC_STATUS_OK);
	cr_expect_eq(tls_echo(NULL, NULL, NULL), GRPC_STATUS_UNAVAILABLE);
}

Test(tls, server_picks_up_rotated_files_on_new_connections)
{
	tls_server(NULL);
	cr_expect_eq(tls_echo(NULL, "ca1.crt", NULL), GRPC_STATUS_OK);
	cr_expect_eq(tls_echo(NULL, "ca2.crt", NULL), GRPC_STATUS_UNAVAILABLE);

	/* half a rotation: the new certificate does not match the old key,
	 * so the server keeps serving the old pair */
	tls_replace("srv2.crt", "server.crt");
	cr_expect_eq(tls_echo(NULL, "ca1.crt", NULL), GRPC_STATUS_OK);

	/* the key follows: now the new pair is served */
	tls_replace("srv2.key", "server.key");
	cr_expect_eq(tls_echo(NULL, "ca2.crt", NULL), GRPC_STATUS_OK);
	cr_expect_eq(tls_echo(NULL, "ca1.crt", NULL), GRPC_STATUS_UNAVAILABLE);

	/* a broken file keeps the current pair */
	tls_sh("printf garbage > %s/server.crt", tls_dir);
	cr_expect_eq(tls_echo(NULL, "ca2.crt", NULL), GRPC_STATUS_OK);
}

Test(tls, server_picks_up_a_rotated_client_ca)
{
	tls_sh("cp %s/ca1.crt %s/clients-ca.crt", tls_dir, tls_dir);
	tls_server("clients-ca.crt");
	cr_expect_eq(tls_echo("cli1", "ca1.crt", NULL), GRPC_STATUS_OK);
	cr_expect_eq(tls_echo("cli2", "ca1.crt", NULL),
	    GRPC_STATUS_UNAVAILABLE);
	tls_replace("ca2.crt", "clients-ca.crt");
	cr_expect_eq(tls_echo("cli2", "ca1.crt", NULL), GRPC_STATUS_OK);
	cr_expect_eq(tls_echo("cli1", "ca1.crt", NULL),
	    GRPC_STATUS_UNAVAILABLE);
}

Test(tls, client_server_name_override)
{
	tls_server(NULL);
	/* the certificate names localhost, not other.example */
	cr_expect_eq(tls_echo(NULL, "ca1.crt", "other.example"),
	    GRPC_STATUS_UNAVAILABLE);
	cr_expect_eq(tls_echo(NULL, "ca1.crt", "localhost"), GRPC_STATUS_OK);
}

/* What the fetcher reported, for the notify test. */
static int notify_ok, notify_fail;
static char notify_err[256];

static void
notify_record(void *arg, int rc, const char *err)
{
	cr_assert_eq(arg, &notify_ok);
	if (rc > 0) {
		notify_ok++;
	} else {
		notify_fail++;
		snprintf(notify_err, sizeof(notify_err), "%s", err);
	}
}

Test(tls, fetcher_reports_reloads_and_errors_once)
{
	tls_set_notify(tls_server(NULL), notify_record, &notify_ok);

	cr_expect_eq(tls_echo(NULL, "ca1.crt", NULL), GRPC_STATUS_OK);
	cr_expect_eq(notify_ok + notify_fail, 0);

	tls_sh("printf garbage > %s/server.key", tls_dir);
	cr_expect_eq(tls_echo(NULL, "ca1.crt", NULL), GRPC_STATUS_OK);
	cr_expect_eq(tls_echo(NULL, "ca1.crt", NULL), GRPC_STATUS_OK);
	cr_expect_eq(notify_fail, 1, "one report while the error lasts");
	cr_expect(strstr(notify_err, "server.key") != NULL, "%s", notify_err);

	tls_replace("srv2.crt", "server.crt");
	tls_replace("srv2.key", "server.key");
	cr_expect_eq(tls_echo(NULL, "ca2.crt", NULL), GRPC_STATUS_OK);
	cr_expect_eq(notify_ok, 1);
	cr_expect_eq(notify_fail, 1);
}
