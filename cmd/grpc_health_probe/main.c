/*
 * grpc_health_probe - asks a gRPC server's grpc.health.v1.Health/Check
 * whether a service is SERVING, for Kubernetes exec probes. A drop-in for
 * grpc-ecosystem's grpc_health_probe, which Meridio's pods run as
 * `/bin/grpc_health_probe -addr=unix:///tmp/health.sock -service=Startup`:
 * the same flags, parsed as Go's flag package does (-flag value,
 * -flag=value, --flag; booleans as -flag or -flag=false), the same exit
 * statuses:
 *
 *   0 SERVING, 1 bad arguments, 2 connection failed, 3 RPC failed
 *   (unknown service, timeout, not a health server), 4 not SERVING.
 *
 * Messages go to stderr. Connecting waits for the channel to be ready
 * within -connect-timeout (retrying as gRPC does), then the Check gets
 * -rpc-timeout.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pthread.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/log.h>

#include "config.h"
#include "gotext.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpcx.h"
#include "tls.h"
#include "spiffe.h"
#include "now.h"

enum probe_exit {
	PROBE_OK = 0,		/* SERVING */
	PROBE_ARGS = 1,		/* bad arguments (or TLS files) */
	PROBE_CONNECT = 2,	/* no connection within -connect-timeout */
	PROBE_RPC = 3,		/* the Check failed */
	PROBE_UNHEALTHY = 4,	/* answered, but not SERVING */
	PROBE_SPIFFE = 20,	/* -spiffe: no SVID from the Workload API */
};

#define PROBE_NS_PER_MS 1000000LL
#define PROBE_MAX_PEM (1 << 20)		/* largest PEM file read */

/* The command line. */
struct probe_opts {
	const char *addr;		/* -addr: host:port or unix:///path */
	const char *service;		/* -service ("" = the server) */
	int64_t connect_ns;		/* -connect-timeout (1s) */
	int64_t rpc_ns;			/* -rpc-timeout (1s) */
	bool tls;			/* -tls */
	bool no_verify;			/* -tls-no-verify */
	const char *ca;			/* -tls-ca-cert: roots ("" = system) */
	const char *cert;		/* -tls-client-cert */
	const char *key;		/* -tls-client-key */
	const char *server_name;	/* -tls-server-name */
	bool spiffe;			/* -spiffe: SVID from the Workload API */
	bool verbose;			/* -v */
};

enum probe_kind { PROBE_STRING, PROBE_DURATION, PROBE_BOOL };

/* One flag: its name without dashes, its kind, where its value goes. */
struct probe_flag {
	const char *name;
	enum probe_kind kind;
	size_t off;			/* offset in struct probe_opts */
	const char *help;
};

#define PROBE_F(n, k, f, h) { n, k, offsetof(struct probe_opts, f), h }

static const struct probe_flag probe_flags[] = {
	PROBE_F("addr", PROBE_STRING, addr,
	    "(required) host:port or unix:///path to connect to"),
	PROBE_F("service", PROBE_STRING, service,
	    "service name to check (default: \"\", the server)"),
	PROBE_F("connect-timeout", PROBE_DURATION, connect_ns,
	    "timeout for establishing the connection (default 1s)"),
	PROBE_F("rpc-timeout", PROBE_DURATION, rpc_ns,
	    "timeout for the health check RPC (default 1s)"),
	PROBE_F("tls", PROBE_BOOL, tls,
	    "use TLS (default: plaintext)"),
	PROBE_F("tls-no-verify", PROBE_BOOL, no_verify,
	    "(with -tls) do not verify the server's certificate (INSECURE)"),
	PROBE_F("tls-ca-cert", PROBE_STRING, ca,
	    "(with -tls) file of trusted CA certificates (default: the "
	    "system's)"),
	PROBE_F("tls-client-cert", PROBE_STRING, cert,
	    "(with -tls) client certificate file, with -tls-client-key"),
	PROBE_F("tls-client-key", PROBE_STRING, key,
	    "(with -tls) client private key file, with -tls-client-cert"),
	PROBE_F("tls-server-name", PROBE_STRING, server_name,
	    "(with -tls) name expected in the server's certificate"),
	PROBE_F("spiffe", PROBE_BOOL, spiffe,
	    "mTLS with the SVID from $SPIFFE_ENDPOINT_SOCKET"),
	PROBE_F("v", PROBE_BOOL, verbose, "verbose messages"),
};

#define PROBE_NFLAGS (sizeof(probe_flags) / sizeof(probe_flags[0]))

/* gRPC's last error line (a failed handshake says why), shown when the
 * connection fails; with -v every line of gRPC's is shown as it comes. */
static pthread_mutex_t probe_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char probe_last_error[512];
static bool probe_verbose;

static void
probe_grpc_log(gpr_log_func_args *args)
{
	pthread_mutex_lock(&probe_log_mu);
	if (args->severity == GPR_LOG_SEVERITY_ERROR)
		snprintf(probe_last_error, sizeof(probe_last_error), "%s",
		    args->message);
	if (probe_verbose)
		fprintf(stderr, "grpc: %s\n", args->message);
	pthread_mutex_unlock(&probe_log_mu);
}

static void
probe_usage(FILE *f)
{
	fprintf(f, "usage: grpc_health_probe -addr=ADDR [flags]\n\n"
	    "Calls grpc.health.v1.Health/Check; exit status 0 SERVING, 1 bad "
	    "arguments,\n2 connection failed, 3 RPC failed, 4 not SERVING.\n\n");
	for (size_t i = 0; i < PROBE_NFLAGS; i++)
		fprintf(f, "  -%s%s\n    \t%s\n", probe_flags[i].name,
		    probe_flags[i].kind == PROBE_STRING ? " string" :
		    probe_flags[i].kind == PROBE_DURATION ? " duration" : "",
		    probe_flags[i].help);
}

/* Prints "error: ..." and returns PROBE_ARGS. */
static int __attribute__((format(printf, 1, 2)))
probe_bad(const char *fmt, ...)
{
	va_list ap;

	fputs("error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return PROBE_ARGS;
}

/* A duration as Go prints it ("1s", "1.5s", "2m0s"). */
static const char *
probe_dur(int64_t ns, char *buf, size_t len)
{
	gotext_format_duration(ns, buf, len);
	return buf;
}

/* Stores value in the flag's field. Returns 0 or PROBE_ARGS. */
static int
probe_set(struct probe_opts *o, const struct probe_flag *f, const char *value)
{
	char *field = (char *)o + f->off;

	switch (f->kind) {
	case PROBE_STRING:
		*(const char **)(void *)field = value;
		return 0;
	case PROBE_DURATION:
		if (gotext_parse_duration(value, (int64_t *)(void *)field) < 0)
			return probe_bad("-%s: invalid duration \"%s\" (Go "
			    "syntax, such as 500ms, 1s or 1m30s)", f->name,
			    value);
		return 0;
	case PROBE_BOOL:
		if (gotext_parse_bool(value, (bool *)(void *)field) < 0)
			return probe_bad("-%s: invalid boolean \"%s\" (true, "
			    "false, 1, 0, t, f)", f->name, value);
		return 0;
	}
	return PROBE_ARGS;
}

/*
 * Parses argv as Go's flag package would: -name or --name, the value after
 * '=' or in the next argument (booleans only take '='), "--" ends the
 * flags. Unlike Go, an argument that is no flag is an error, not ignored.
 * Returns 0, PROBE_ARGS (message printed) or -1 for -h / -help.
 */
static int
probe_parse(int argc, char **argv, struct probe_opts *o)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *name, *eq, *value;
		const struct probe_flag *f = NULL;
		size_t len;

		if (strcmp(a, "--") == 0) {
			if (i + 1 < argc)
				return probe_bad("unexpected argument \"%s\"",
				    argv[i + 1]);
			break;
		}
		if (a[0] != '-' || a[1] == '\0')
			return probe_bad("unexpected argument \"%s\" (flags "
			    "are -name=value)", a);
		name = a + 1;
		if (name[0] == '-')
			name++;
		if (name[0] == '\0' || name[0] == '-' || name[0] == '=')
			return probe_bad("bad flag syntax: %s", a);
		eq = strchr(name, '=');
		len = eq != NULL ? (size_t)(eq - name) : strlen(name);
		if ((len == 1 && strncmp(name, "h", 1) == 0) ||
		    (len == 4 && strncmp(name, "help", 4) == 0))
			return -1;
		for (size_t k = 0; k < PROBE_NFLAGS; k++)
			if (strlen(probe_flags[k].name) == len &&
			    strncmp(probe_flags[k].name, name, len) == 0)
				f = &probe_flags[k];
		if (f == NULL)
			return probe_bad("unknown flag -%.*s (see -h)",
			    (int)len, name);
		if (eq != NULL)
			value = eq + 1;
		else if (f->kind == PROBE_BOOL)
			value = "true";
		else if (i + 1 < argc)
			value = argv[++i];
		else
			return probe_bad("flag -%s needs a value", f->name);
		if (probe_set(o, f, value) != 0)
			return PROBE_ARGS;
	}
	return 0;
}

/* The rules between flags, as grpc-health-probe has them. */
static int
probe_check(const struct probe_opts *o)
{
	char b[32];

	if (o->addr[0] == '\0')
		return probe_bad("-addr not specified");
	if (o->connect_ns <= 0)
		return probe_bad("-connect-timeout must be greater than zero "
		    "(specified: %s)", probe_dur(o->connect_ns, b, sizeof(b)));
	if (o->rpc_ns <= 0)
		return probe_bad("-rpc-timeout must be greater than zero "
		    "(specified: %s)", probe_dur(o->rpc_ns, b, sizeof(b)));
	if (!o->tls && o->no_verify)
		return probe_bad("-tls-no-verify needs -tls");
	if (!o->tls && o->ca[0] != '\0')
		return probe_bad("-tls-ca-cert needs -tls");
	if (!o->tls && o->cert[0] != '\0')
		return probe_bad("-tls-client-cert needs -tls");
	if (!o->tls && o->key[0] != '\0')
		return probe_bad("-tls-client-key needs -tls");
	if (!o->tls && o->server_name[0] != '\0')
		return probe_bad("-tls-server-name needs -tls");
	if (o->cert[0] != '\0' && o->key[0] == '\0')
		return probe_bad("-tls-client-cert needs -tls-client-key");
	if (o->cert[0] == '\0' && o->key[0] != '\0')
		return probe_bad("-tls-client-key needs -tls-client-cert");
	if (o->no_verify && o->ca[0] != '\0')
		return probe_bad("-tls-ca-cert and -tls-no-verify exclude each "
		    "other (the CA would not be used)");
	if (o->no_verify && o->server_name[0] != '\0')
		return probe_bad("-tls-server-name and -tls-no-verify exclude "
		    "each other (the name would not be checked)");
	if (o->spiffe && o->tls)
		return probe_bad("-spiffe and -tls exclude each other (-spiffe "
		    "is mTLS with the SVID)");
	return 0;
}

/* Reads a whole PEM file into a NUL-terminated buffer. NULL with err. */
static char *
probe_read_pem(const char *path, char *err, size_t errlen)
{
	FILE *f;
	char *buf;
	size_t n;

	f = fopen(path, "r");
	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	buf = malloc(PROBE_MAX_PEM + 1);
	if (buf == NULL) {
		fclose(f);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	n = fread(buf, 1, PROBE_MAX_PEM + 1, f);
	fclose(f);
	if (n > PROBE_MAX_PEM) {
		snprintf(err, errlen, "%s: larger than 1 MiB", path);
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	if (strstr(buf, "-----BEGIN ") == NULL) {
		snprintf(err, errlen, "%s: no PEM data", path);
		free(buf);
		return NULL;
	}
	return buf;
}

/*
 * -tls-no-verify: TLS without any check of the server's certificate (its
 * chain or its name); a client certificate is still presented.
 */
static grpc_channel_credentials *
probe_no_verify_creds(const struct probe_opts *o, char *err, size_t errlen)
{
	grpc_tls_credentials_options *opts;
	grpc_tls_certificate_verifier *v;
	grpc_tls_certificate_provider *p;
	grpc_tls_identity_pairs *pairs;
	char *cert = NULL, *key = NULL;

	/* files first: gRPC 1.51 has no way to free unused options */
	if (o->cert[0] != '\0') {
		cert = probe_read_pem(o->cert, err, errlen);
		key = cert != NULL ? probe_read_pem(o->key, err, errlen) : NULL;
		if (key == NULL) {
			free(cert);
			return NULL;
		}
	}
	opts = grpc_tls_credentials_options_create();
	grpc_tls_credentials_options_set_verify_server_cert(opts, 0);
	grpc_tls_credentials_options_set_check_call_host(opts, 0);
	v = grpc_tls_certificate_verifier_no_op_create();
	grpc_tls_credentials_options_set_certificate_verifier(opts, v);
	grpc_tls_certificate_verifier_release(v);
	if (cert != NULL) {
		pairs = grpc_tls_identity_pairs_create();
		grpc_tls_identity_pairs_add_pair(pairs, key, cert);
		free(cert);
		free(key);
		p = grpc_tls_certificate_provider_static_data_create(NULL,
		    pairs);
		grpc_tls_credentials_options_set_certificate_provider(opts, p);
		grpc_tls_credentials_options_watch_identity_key_cert_pairs(opts);
		grpc_tls_certificate_provider_release(p);
	}
	return grpc_tls_credentials_create(opts);
}

/*
 * -spiffe: the SVID and bundle from SPIFFE_ENDPOINT_SOCKET within the RPC
 * timeout (as grpc-health-probe waits for its X509Source), then mTLS with
 * them: the server's chain must lead to the bundle and carry a spiffe://
 * ID (any, as go-spiffe's AuthorizeAny); host names are not checked.
 */
static grpc_channel_credentials *
probe_spiffe_creds(const struct probe_opts *o, char *err, size_t errlen)
{
	const char *ep = getenv("SPIFFE_ENDPOINT_SOCKET");
	struct spiffe_svid *svid;
	grpc_channel_credentials *c;
	char target[4200];

	if (ep == NULL || ep[0] == '\0') {
		snprintf(err, errlen, "SPIFFE_ENDPOINT_SOCKET is not set");
		return NULL;
	}
	if (config_spiffe_target(ep, target, sizeof(target), err, errlen) != 0)
		return NULL;
	svid = spiffe_fetch(target, o->rpc_ns / PROBE_NS_PER_MS, err, errlen);
	if (svid == NULL)
		return NULL;
	if (o->verbose)
		fprintf(stderr, "SPIFFE Verifiable Identity Document (SVID): "
		    "\"%s\"\n", svid->id);
	c = spiffe_channel_credentials(svid, NULL);
	spiffe_svid_free(svid);
	if (c == NULL)
		snprintf(err, errlen, "cannot make mTLS credentials from the "
		    "SVID");
	return c;
}

/* The channel's credentials: plaintext, or TLS as the flags say. */
static grpc_channel_credentials *
probe_creds(const struct probe_opts *o, char *err, size_t errlen)
{
	struct tls *t;
	grpc_channel_credentials *c;

	if (!o->tls)
		return grpc_insecure_credentials_create();
	if (o->no_verify)
		return probe_no_verify_creds(o, err, errlen);
	t = tls_new(o->cert, o->key, o->ca, err, errlen);
	if (t == NULL)
		return NULL;
	c = tls_channel_credentials(t);
	tls_free(t);
	if (c == NULL)
		snprintf(err, errlen, "cannot make TLS credentials");
	return c;
}

/*
 * Waits until the channel is READY or the deadline passes; gRPC retries
 * failed connections meanwhile. True if it is ready.
 */
static bool
probe_connect(grpc_channel *ch, grpc_completion_queue *cq, int64_t ns)
{
	gpr_timespec dl = grpcx_deadline_ms((ns + PROBE_NS_PER_MS - 1) /
	    PROBE_NS_PER_MS);
	grpc_connectivity_state st;
	grpc_event ev;
	int tag;

	st = grpc_channel_check_connectivity_state(ch, 1);
	while (st != GRPC_CHANNEL_READY && st != GRPC_CHANNEL_SHUTDOWN) {
		grpc_channel_watch_connectivity_state(ch, st, dl, cq, &tag);
		ev = grpc_completion_queue_next(cq,
		    gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		if (ev.type != GRPC_OP_COMPLETE || !ev.success)
			return false;
		st = grpc_channel_check_connectivity_state(ch, 1);
	}
	return st == GRPC_CHANNEL_READY;
}

/* Name of a ServingStatus value ("NOT_SERVING"). */
static const char *
probe_status_name(int status)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
	    &grpc__health__v1__health_check_response__serving_status__descriptor,
	    status);

	return v != NULL ? v->name : "UNKNOWN";
}

/* The Check call on a ready channel: its exit status, messages printed. */
static int
probe_check_call(const struct probe_opts *o, grpc_channel *ch,
    grpc_completion_queue *cq)
{
	Grpc__Health__V1__HealthCheckRequest rq =
	    GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	Grpc__Health__V1__HealthCheckResponse *rs;
	struct grpcx_ccall u;
	grpc_byte_buffer *send;
	grpc_call *call;
	grpc_event ev;
	char b[32];
	int tag, rc;

	rq.service = (char *)o->service;
	send = grpcx_pack(&rq.base);
	call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
	    grpc_slice_from_static_string("/grpc.health.v1.Health/Check"),
	    NULL, grpcx_deadline_ms((o->rpc_ns + PROBE_NS_PER_MS - 1) /
	    PROBE_NS_PER_MS), NULL);
	if (send == NULL || call == NULL ||
	    grpcx_unary_start(call, send, &u, &tag) != GRPC_CALL_OK) {
		fprintf(stderr, "error: cannot start the health rpc\n");
		return PROBE_RPC;
	}
	do {
		ev = grpc_completion_queue_next(cq,
		    gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
	} while (ev.type != GRPC_OP_COMPLETE || ev.tag != &tag);
	if (u.status == GRPC_STATUS_UNIMPLEMENTED) {
		fprintf(stderr, "error: the server does not serve "
		    "grpc.health.v1.Health (UNIMPLEMENTED)\n");
		rc = PROBE_RPC;
	} else if (u.status == GRPC_STATUS_DEADLINE_EXCEEDED) {
		fprintf(stderr, "timeout: health rpc did not complete within "
		    "%s\n", probe_dur(o->rpc_ns, b, sizeof(b)));
		rc = PROBE_RPC;
	} else if (u.status != GRPC_STATUS_OK) {
		fprintf(stderr, "error: health rpc failed: %s: %.*s\n",
		    grpcx_status_name(u.status),
		    (int)GRPC_SLICE_LENGTH(u.details),
		    (const char *)GRPC_SLICE_START_PTR(u.details));
		rc = PROBE_RPC;
	} else if ((rs = (Grpc__Health__V1__HealthCheckResponse *)grpcx_unpack(
	    &grpc__health__v1__health_check_response__descriptor, u.recv)) ==
	    NULL) {
		fprintf(stderr, "error: health rpc failed: malformed "
		    "HealthCheckResponse\n");
		rc = PROBE_RPC;
	} else {
		if (rs->status ==
		    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING) {
			fprintf(stderr, "status: SERVING\n");
			rc = PROBE_OK;
		} else {
			fprintf(stderr, "service unhealthy (responded with "
			    "\"%s\")\n", probe_status_name(rs->status));
			rc = PROBE_UNHEALTHY;
		}
		protobuf_c_message_free_unpacked(&rs->base, NULL);
	}
	grpcx_ccall_clear(&u);
	grpc_call_unref(call);
	return rc;
}

/* Connects and checks. Returns the exit status. */
static int
probe_run(const struct probe_opts *o)
{
	grpc_channel_credentials *creds;
	grpc_completion_queue *cq;
	grpc_channel *ch;
	grpc_arg args[2];
	grpc_channel_args cargs = { .num_args = 1, .args = args };
	char err[512], b1[32], b2[32], target[1024];
	int64_t t0, t1;
	int rc;

	if (o->spiffe) {
		creds = probe_spiffe_creds(o, err, sizeof(err));
		if (creds == NULL) {
			fprintf(stderr, "failed to initialize tls credentials "
			    "with spiffe. error=%s\n", err);
			return PROBE_SPIFFE;
		}
	} else if ((creds = probe_creds(o, err, sizeof(err))) == NULL) {
		fprintf(stderr, "failed to initialize tls credentials: %s\n",
		    err);
		return PROBE_ARGS;
	}
	args[0].type = GRPC_ARG_STRING;
	args[0].key = (char *)GRPC_ARG_PRIMARY_USER_AGENT_STRING;
	args[0].value.string = (char *)"grpc_health_probe";
	if (o->tls && o->server_name[0] != '\0') {
		args[1].type = GRPC_ARG_STRING;
		args[1].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
		args[1].value.string = (char *)o->server_name;
		cargs.num_args = 2;
	}
	/* Go dials ":port" (Meridio's probe address of a port) on the local
	 * host without resolving a name; gRPC's C core takes no empty host.
	 * The loopback address works where no /etc/hosts names localhost. */
	snprintf(target, sizeof(target), "%s%s", o->addr[0] == ':' ?
	    "127.0.0.1" : "", o->addr);
	ch = grpc_channel_create(target, creds, &cargs);
	grpc_channel_credentials_release(creds);
	cq = grpc_completion_queue_create_for_next(NULL);
	if (o->verbose)
		fprintf(stderr, "connecting to %s\n", o->addr);
	t0 = now_ns(CLOCK_MONOTONIC);
	if (!probe_connect(ch, cq, o->connect_ns)) {
		pthread_mutex_lock(&probe_log_mu);
		fprintf(stderr, "timeout: no connection to \"%s\" within %s%s%s"
		    "%s\n", o->addr, probe_dur(o->connect_ns, b1, sizeof(b1)),
		    probe_last_error[0] != '\0' ? " (last error: " : "",
		    probe_last_error, probe_last_error[0] != '\0' ? ")" : "");
		pthread_mutex_unlock(&probe_log_mu);
		rc = PROBE_CONNECT;
		goto out;
	}
	t1 = now_ns(CLOCK_MONOTONIC);
	if (o->verbose)
		fprintf(stderr, "connected in %s\n",
		    probe_dur(t1 - t0, b1, sizeof(b1)));
	rc = probe_check_call(o, ch, cq);
	if (o->verbose)
		fprintf(stderr, "took: connect %s, rpc %s\n",
		    probe_dur(t1 - t0, b1, sizeof(b1)),
		    probe_dur(now_ns(CLOCK_MONOTONIC) - t1, b2, sizeof(b2)));
out:
	grpc_channel_destroy(ch);
	grpcx_cq_drain(cq, NULL);
	grpc_completion_queue_destroy(cq);
	return rc;
}

int
main(int argc, char **argv)
{
	struct probe_opts o = {
		.addr = "", .service = "", .ca = "", .cert = "", .key = "",
		.server_name = "",
		.connect_ns = 1000 * PROBE_NS_PER_MS,
		.rpc_ns = 1000 * PROBE_NS_PER_MS,
	};
	char b1[32], b2[32];
	int rc;

	rc = probe_parse(argc, argv, &o);
	if (rc < 0) {
		probe_usage(stdout);
		return PROBE_OK;
	}
	if (rc != 0 || (rc = probe_check(&o)) != 0)
		return rc;
	if (o.verbose) {
		fprintf(stderr, "options: -addr=%s -service=%s "
		    "-connect-timeout=%s -rpc-timeout=%s -tls=%s\n", o.addr,
		    o.service, probe_dur(o.connect_ns, b1, sizeof(b1)),
		    probe_dur(o.rpc_ns, b2, sizeof(b2)),
		    o.tls ? "true" : "false");
		if (o.tls)
			fprintf(stderr, "options: -tls-no-verify=%s "
			    "-tls-ca-cert=%s -tls-client-cert=%s "
			    "-tls-client-key=%s -tls-server-name=%s\n",
			    o.no_verify ? "true" : "false", o.ca, o.cert,
			    o.key, o.server_name);
	}
	probe_verbose = o.verbose;
	gpr_set_log_function(probe_grpc_log);
	(void)grpcx_init();
	rc = probe_run(&o);
	/* Blocking: gRPC's own threads (a failed TLS handshake may still be
	 * unwinding) are gone before exit() runs its destructors. */
	grpc_shutdown_blocking();
	return rc;
}
