/*
 * ipamctl - operator client of meridio-ipam (first version).
 *
 *   ipamctl allocate --conduit C --node N --name X [--family F]
 *           [--trench T] [--target host:port] [--timeout D]
 *   ipamctl health [--service S] [--target host:port] [--timeout D] [--json]
 *   (both: [--tls-ca F] [--tls-cert F --tls-key F] [--tls-server-name N])
 *
 *   ipamctl show|usage|check|export|release|instances ... (commands.c:
 *           the Admin socket of the running daemon)
 *   ipamctl import FILE ... (import.c: the file of a stopped one)
 *
 * Exit status: 0 ok, 1 RPC error (or health not SERVING, or a problem
 * found), 2 usage error.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <grpc/grpc.h>
#include <json-c/json.h>

#include "config.h"
#include "gotext.h"
#include "ctl.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpcx.h"
#include "tls.h"
#include "ipam/v1/ipam.pb-c.h"
#include "spiffe.h"

#define CTL_DEFAULT_PORT "7777"
#define CTL_DEFAULT_TIMEOUT_MS 5000	/* allocate, health */
#define CTL_ADMIN_TIMEOUT_MS 30000	/* the admin socket's commands */

/* Every long option of ipamctl; each command takes some. */
enum ctl_opt {
	CTL_O_CONDUIT = 1, CTL_O_NODE, CTL_O_NAME, CTL_O_FAMILY, CTL_O_TRENCH,
	CTL_O_SERVICE, CTL_O_JSON, CTL_O_ADMIN, CTL_O_TARGET, CTL_O_TIMEOUT,
	CTL_O_HELP, CTL_O_TLS_CA, CTL_O_TLS_CERT, CTL_O_TLS_KEY, CTL_O_TLS_NAME,
	CTL_O_SPIFFE, CTL_O_SPIFFE_ID, CTL_O_DATA,
};

#define CTL_B(o) (1u << CTL_O_##o)
#define CTL_PORT (CTL_B(TARGET) | CTL_B(TIMEOUT) | CTL_B(TLS_CA) | \
	CTL_B(TLS_CERT) | CTL_B(TLS_KEY) | CTL_B(TLS_NAME) | CTL_B(SPIFFE) | \
	CTL_B(SPIFFE_ID))		/* the Ipam port's commands */
#define CTL_SOCK (CTL_B(ADMIN) | CTL_B(TIMEOUT))	/* the admin socket's */
#define CTL_CHILD (CTL_B(CONDUIT) | CTL_B(NODE) | CTL_B(NAME) | \
	CTL_B(FAMILY) | CTL_B(TRENCH))	/* which child */

/* Every command and the options it takes besides --help. */
static const struct ctl_cmd {
	const char *name;
	unsigned opts;			/* bits CTL_B() */
} ctl_cmds[] = {
	{ "allocate", CTL_CHILD | CTL_PORT },
	{ "health", CTL_B(SERVICE) | CTL_B(JSON) | CTL_B(ADMIN) | CTL_PORT },
	{ "show", CTL_B(CONDUIT) | CTL_B(NODE) | CTL_B(JSON) | CTL_SOCK },
	{ "usage", CTL_B(CONDUIT) | CTL_B(NODE) | CTL_B(JSON) | CTL_SOCK },
	{ "check", CTL_B(JSON) | CTL_SOCK },
	{ "export", CTL_SOCK },
	{ "release", CTL_CHILD | CTL_SOCK },
	{ "instances", 0 },
	{ "import", CTL_B(DATA) },
};

#define CTL_NCMDS (sizeof(ctl_cmds) / sizeof(ctl_cmds[0]))

/* The --tls-* options, in every command's usage. */
#define CTL_TLS_USAGE \
	"  --tls-ca F       talk TLS, verify the server with CA file F\n" \
	"                   (any --tls-* means TLS; system roots without it)\n" \
	"  --tls-cert F     client certificate file (mTLS), with --tls-key\n" \
	"  --tls-key F      its private key file\n" \
	"  --tls-server-name N  name expected in the server's certificate\n" \
	"  --spiffe         SPIFFE mTLS with the SVID of $SPIFFE_ENDPOINT_SOCKET:\n" \
	"                   the server's chain must lead to the bundle and\n" \
	"                   carry a spiffe:// ID (no host-name check)\n" \
	"  --spiffe-id ID   --spiffe, and the server's ID must be ID\n" \
	"                   (default: the host of --target)\n"

static void
ctl_usage_main(FILE *f)
{
	fprintf(f,
	    "usage: ipamctl <command> [options]\n"
	    "\n"
	    "commands:\n"
	    "  allocate   allocate (or renew) the address of a child\n"
	    "  release    release a child's addresses (admin socket); "
	    "prints them\n"
	    "  health     print the serving status of the server\n"
	    "  show       the tree of prefixes of the running daemon\n"
	    "  usage      used / usable per conduit and node, fullest first\n"
	    "  check      online audit; exit 1 with one line per problem\n"
	    "  export     every record as JSON (%s)\n"
	    "  import     an export into the file of a stopped instance\n"
	    "  instances  the running instances: admin socket, port, data "
	    "file\n"
	    "\n"
	    "`ipamctl <command> --help` (or `ipamctl help <command>`) "
	    "describes a\ncommand's options.\n"
	    "Exit status: 0 ok, 1 RPC error, not SERVING or a problem found,\n"
	    "2 usage error.\n", CTL_EXPORT_FORMAT);
}

static void
ctl_usage_child(FILE *f, const char *cmd)
{
	fprintf(f,
	    "usage: ipamctl %s --conduit C --node N --name X [--family F]\n"
	    "       [--trench T] [--target HOST:PORT] [--timeout D]\n"
	    "\n"
	    "  --conduit C      conduit name (required)\n"
	    "  --node N         node name (required)\n"
	    "  --name X         child name (required)\n"
	    "  --family F       ipv4 (default) or ipv6\n"
	    "  --trench T       trench name (default $IPAM_TRENCH_NAME or "
	    "\"default\")\n"
	    "  --target H:P     server (default 127.0.0.1:$IPAM_PORT or "
	    "127.0.0.1:7777)\n"
	    "  --timeout D      deadline as a Go duration (default 5s)\n"
	    CTL_TLS_USAGE
	    "\n"
	    "Prints the address and the node prefix length, e.g. "
	    "169.255.0.1/24.\n", cmd);
}

static void
ctl_usage_health(FILE *f)
{
	fprintf(f,
	    "usage: ipamctl health [--service S] [--target HOST:PORT] "
	    "[--timeout D] [--json]\n"
	    "\n"
	    "  --service S      service name to check (default \"\": the "
	    "server)\n"
	    "  --target H:P     server (default 127.0.0.1:$IPAM_PORT or "
	    "127.0.0.1:7777)\n"
	    "  --timeout D      deadline as a Go duration (default 5s)\n"
	    "  --json           {\"service\": S, \"status\": \"SERVING\"},\n"
	    "                   with \"conduit_source\" (and \"warnings\") "
	    "when the\n"
	    "                   admin socket of that port is found\n"
	    "  --admin PATH     that admin socket (default: found as by "
	    "show)\n"
	    CTL_TLS_USAGE
	    "\n"
	    "Prints SERVING, NOT_SERVING, ...; exits 0 only when SERVING.\n"
	    "A daemon without conduit source gets a warning on stderr.\n");
}

/* Prints "ipamctl: CMD: " and the usage error; returns CTL_USAGE. */
static int __attribute__((format(printf, 2, 3)))
ctl_bad(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "ipamctl: %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry `ipamctl %s --help`.\n", cmd);
	return CTL_USAGE;
}

/*
 * Fills the defaults that come from the environment: the target from
 * IPAM_PORT, the trench and the data source. A bad IPAM_PORT leaves the
 * target empty: that is an error only when --target does not replace it
 * (see main).
 */
static void
ctl_defaults(struct ctl_args *a)
{
	const char *port = getenv("IPAM_PORT");
	const char *trench = getenv("IPAM_TRENCH_NAME");
	char *end;
	long p;

	if (port == NULL || port[0] == '\0')
		port = CTL_DEFAULT_PORT;
	p = strtol(port, &end, 10);
	if (*end == '\0' && p >= 1 && p <= 65535)
		snprintf(a->target, sizeof(a->target), "127.0.0.1:%ld", p);
	a->trench = trench != NULL && trench[0] != '\0' ? trench : "default";
	a->service = "";
	a->data_source = getenv("IPAM_DATA_SOURCE");
}

/* --timeout: a positive Go duration, in ms rounded up. Returns 0 or -1. */
static int
ctl_timeout_ms(const char *arg, int64_t *ms)
{
	int64_t ns;

	if (gotext_parse_duration(arg, &ns) != 0 || ns <= 0)
		return -1;
	*ms = (ns + 999999) / 1000000;
	return 0;
}

/* --family: 4 for ipv4, 6 for ipv6 (any case), else 0. */
static int
ctl_family(const char *arg)
{
	if (strcasecmp(arg, "ipv4") == 0)
		return 4;
	return strcasecmp(arg, "ipv6") == 0 ? 6 : 0;
}

/* A child option not given; the admin socket's commands refuse "" too. */
static bool
ctl_missing(const char *s, bool port)
{
	return s == NULL || (!port && s[0] == '\0');
}

static const struct option ctl_options[] = {
	{ "conduit", required_argument, NULL, CTL_O_CONDUIT },
	{ "node", required_argument, NULL, CTL_O_NODE },
	{ "name", required_argument, NULL, CTL_O_NAME },
	{ "family", required_argument, NULL, CTL_O_FAMILY },
	{ "trench", required_argument, NULL, CTL_O_TRENCH },
	{ "service", required_argument, NULL, CTL_O_SERVICE },
	{ "json", no_argument, NULL, CTL_O_JSON },
	{ "admin", required_argument, NULL, CTL_O_ADMIN },
	{ "target", required_argument, NULL, CTL_O_TARGET },
	{ "timeout", required_argument, NULL, CTL_O_TIMEOUT },
	{ "help", no_argument, NULL, CTL_O_HELP },
	{ "tls-ca", required_argument, NULL, CTL_O_TLS_CA },
	{ "tls-cert", required_argument, NULL, CTL_O_TLS_CERT },
	{ "tls-key", required_argument, NULL, CTL_O_TLS_KEY },
	{ "tls-server-name", required_argument, NULL, CTL_O_TLS_NAME },
	{ "spiffe", no_argument, NULL, CTL_O_SPIFFE },
	{ "spiffe-id", required_argument, NULL, CTL_O_SPIFFE_ID },
	{ "data-source", required_argument, NULL, CTL_O_DATA },
	{ NULL, 0, NULL, 0 },
};

/*
 * Parses the options after the command word, opts those it takes. Returns
 * CTL_OK, CTL_USAGE, or -1 when --help was printed. The messages of the
 * admin socket's commands have their own wording.
 */
static int
ctl_parse(struct ctl_args *a, unsigned opts, int argc, char **argv)
{
	bool port = (opts & CTL_B(TARGET)) != 0;
	int o, li = 0;

	opterr = 0;
	optind = 1;
	while ((o = getopt_long(argc, argv, ":h", ctl_options, &li)) != -1) {
		if (o >= CTL_O_CONDUIT && o <= CTL_O_DATA && o != CTL_O_HELP &&
		    (opts & (1u << o)) == 0)
			return ctl_bad(a->cmd, "unknown option --%s",
			    ctl_options[li].name);
		switch (o) {
		case CTL_O_CONDUIT:
			a->conduit = optarg;
			break;
		case CTL_O_NODE:
			a->node = optarg;
			break;
		case CTL_O_NAME:
			a->name = optarg;
			break;
		case CTL_O_FAMILY:
			if ((a->family = ctl_family(optarg)) == 0)
				return ctl_bad(a->cmd, port ? "--family %s: "
				    "expected ipv4 or ipv6" : "--family: "
				    "expected ipv4 or ipv6, not %s", optarg);
			break;
		case CTL_O_TRENCH:
			a->trench = optarg;
			break;
		case CTL_O_TARGET:
			if (optarg[0] == '\0')
				return ctl_bad(a->cmd, "--target: empty");
			snprintf(a->target, sizeof(a->target), "%s", optarg);
			break;
		case CTL_O_TIMEOUT:
			if (ctl_timeout_ms(optarg, &a->timeout_ms) != 0)
				return ctl_bad(a->cmd, port ? "--timeout %s: "
				    "expected a positive Go duration such as "
				    "5s or 500ms" : "--timeout: expected a "
				    "positive Go duration, not %s", optarg);
			break;
		case CTL_O_SERVICE:
			a->service = optarg;
			break;
		case CTL_O_JSON:
			a->json = true;
			break;
		case CTL_O_ADMIN:
			if (optarg[0] == '\0')
				return ctl_bad(a->cmd, "--admin: empty");
			a->admin = optarg;
			break;
		case CTL_O_TLS_CA:
		case CTL_O_TLS_CERT:
		case CTL_O_TLS_KEY:
		case CTL_O_TLS_NAME:
			if (optarg[0] == '\0')
				return ctl_bad(a->cmd, "%s: empty",
				    argv[optind - 1]);
			*(o == CTL_O_TLS_CA ? &a->tls_ca : o == CTL_O_TLS_CERT ?
			    &a->tls_cert : o == CTL_O_TLS_KEY ? &a->tls_key :
			    &a->tls_name) = optarg;
			a->tls = true;
			break;
		case CTL_O_SPIFFE_ID:
			if (strncmp(optarg, "spiffe://", 9) != 0)
				return ctl_bad(a->cmd, "--spiffe-id %s: not a "
				    "spiffe:// ID", optarg);
			a->spiffe_id = optarg;
			a->spiffe = true;
			break;
		case CTL_O_SPIFFE:
			a->spiffe = true;
			break;
		case CTL_O_DATA:
			a->data_source = optarg;
			break;
		case 'h':
		case CTL_O_HELP:
			if (!port)
				ctl_op_usage(stdout, a->cmd);
			else if (strcmp(a->cmd, "health") == 0)
				ctl_usage_health(stdout);
			else
				ctl_usage_child(stdout, a->cmd);
			return -1;
		case ':':
			return ctl_bad(a->cmd, port ? "%s needs a value" :
			    "needs a value: %s", argv[optind - 1]);
		default:
			return ctl_bad(a->cmd, "unknown option %s",
			    argv[optind - 1]);
		}
	}
	if ((opts & CTL_B(DATA)) && optind < argc)
		a->file = argv[optind++];
	if (optind < argc)
		return ctl_bad(a->cmd, "unexpected argument %s", argv[optind]);
	if (a->spiffe && a->tls)
		return ctl_bad(a->cmd, "--spiffe and --tls-* exclude each "
		    "other");
	if ((opts & CTL_B(NAME)) && (ctl_missing(a->conduit, port) ||
	    ctl_missing(a->node, port) || ctl_missing(a->name, port)))
		return ctl_bad(a->cmd, "--%s is required",
		    ctl_missing(a->conduit, port) ? "conduit" :
		    ctl_missing(a->node, port) ? "node" : "name");
	if ((opts & CTL_B(DATA)) && a->file == NULL)
		return ctl_bad(a->cmd, "FILE is required");
	if ((opts & CTL_B(DATA)) && (a->data_source == NULL ||
	    a->data_source[0] == '\0'))
		return ctl_bad(a->cmd, "--data-source is required (or set "
		    "IPAM_DATA_SOURCE)");
	if (!port) {
		a->conduit = a->conduit != NULL ? a->conduit : "";
		a->node = a->node != NULL ? a->node : "";
	}
	if (a->timeout_ms == 0)
		a->timeout_ms = port ? CTL_DEFAULT_TIMEOUT_MS :
		    CTL_ADMIN_TIMEOUT_MS;
	return CTL_OK;
}

/*
 * --spiffe: one SVID from $SPIFFE_ENDPOINT_SOCKET (within the command's
 * timeout), then a client whose channel presents it and checks the server
 * by chain and SPIFFE ID (--spiffe-id: that one), never by host name.
 */
static int
ctl_spiffe_client(const struct ctl_args *a, struct grpcx_client **cl)
{
	const char *ep = getenv("SPIFFE_ENDPOINT_SOCKET");
	grpc_channel_credentials *creds;
	struct spiffe_svid *svid;
	char target[4200], err[512];

	*cl = NULL;
	if (ep == NULL || ep[0] == '\0') {
		fprintf(stderr, "ipamctl: %s: --spiffe: SPIFFE_ENDPOINT_SOCKET "
		    "is not set\n", a->cmd);
		return CTL_USAGE;
	}
	if (config_spiffe_target(ep, target, sizeof(target), err,
	    sizeof(err)) != 0) {
		fprintf(stderr, "ipamctl: %s: %s\n", a->cmd, err);
		return CTL_USAGE;
	}
	svid = spiffe_fetch(target, a->timeout_ms, err, sizeof(err));
	if (svid == NULL) {
		fprintf(stderr, "ipamctl: %s: no SVID from %s: %s\n", a->cmd,
		    ep, err);
		return CTL_RPC;
	}
	creds = spiffe_channel_credentials(svid, a->spiffe_id);
	spiffe_svid_free(svid);
	if (creds == NULL) {
		fprintf(stderr, "ipamctl: %s: cannot make mTLS credentials\n",
		    a->cmd);
		return CTL_RPC;
	}
	*cl = grpcx_client_new_creds(a->target, creds, NULL, err, sizeof(err));
	if (*cl == NULL) {
		fprintf(stderr, "ipamctl: %s: %s\n", a->cmd, err);
		return CTL_USAGE;
	}
	return CTL_OK;
}

/* Prints a failed call on stderr: command, status name and message. */
static int
ctl_rpc_error(const struct ctl_args *a, const struct grpcx_status *st)
{
	fprintf(stderr, "ipamctl: %s: %s: %s\n", a->cmd,
	    grpcx_status_name(st->code),
	    st->message[0] != '\0' ? st->message : "(no message)");
	return CTL_RPC;
}

/* Allocate one child; prints its address and node prefix length. */
static int
ctl_child(struct grpcx_client *cl, const struct ctl_args *a)
{
	Ipam__V1__Child ch = IPAM__V1__CHILD__INIT;
	Ipam__V1__Subnet sn = IPAM__V1__SUBNET__INIT;
	Nsp__V1__Conduit co = NSP__V1__CONDUIT__INIT;
	Nsp__V1__Trench tr = NSP__V1__TRENCH__INIT;
	struct grpcx_status st;
	ProtobufCMessage *resp = NULL;
	Ipam__V1__Prefix *p;

	tr.name = (char *)a->trench;
	co.name = (char *)a->conduit;
	co.trench = &tr;
	sn.conduit = &co;
	sn.node = (char *)a->node;
	sn.ipfamily = a->family == 6 ? IPAM__V1__IPFAMILY__IPV6 :
	    IPAM__V1__IPFAMILY__IPV4;
	ch.name = (char *)a->name;
	ch.subnet = &sn;
	if (grpcx_call(cl, "/ipam.v1.Ipam/Allocate", &ch.base,
	    &ipam__v1__prefix__descriptor, a->timeout_ms, &resp, &st) !=
	    GRPC_STATUS_OK)
		return ctl_rpc_error(a, &st);
	p = (Ipam__V1__Prefix *)resp;
	printf("%s/%d\n", p->address, (int)p->prefixlength);
	protobuf_c_message_free_unpacked(resp, NULL);
	return CTL_OK;
}

/* Name of a ServingStatus value ("NOT_SERVING"). */
static const char *
ctl_serving_name(int s)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
	    &grpc__health__v1__health_check_response__serving_status__descriptor,
	    s);

	return v != NULL ? v->name : "UNKNOWN";
}

/*
 * The conduit source of the instance behind a->target, from the Info of
 * the admin socket (--admin, else the one found) when that instance
 * listens on the target's port. NULL when unknown (caller frees).
 */
static Ipamadmin__V1__InfoReply *
ctl_health_info(const struct ctl_args *a)
{
	Ipamadmin__V1__InfoReply *in = NULL;
	struct grpcx_status st;
	const char *colon = strrchr(a->target, ':');
	char sock[256], err[2048], *end;
	long port;

	if (colon == NULL)
		return NULL;
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || ctl_admin_find(a->admin, sock, sizeof(sock), err,
	    sizeof(err)) < 0 || ctl_admin_info(sock, a->timeout_ms, &in,
	    &st) != GRPC_STATUS_OK)
		return NULL;
	if ((long)in->port != port) {
		ipamadmin__v1__info_reply__free_unpacked(in, NULL);
		return NULL;
	}
	return in;
}

/* Health Check: prints the status, exit 0 only when SERVING. */
static int
ctl_health(struct grpcx_client *cl, const struct ctl_args *a)
{
	Grpc__Health__V1__HealthCheckRequest rq =
	    GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	Grpc__Health__V1__HealthCheckResponse *rs;
	Ipamadmin__V1__InfoReply *info;
	struct grpcx_status st;
	ProtobufCMessage *resp = NULL;
	int rc;

	rq.service = (char *)a->service;
	if (grpcx_call(cl, "/grpc.health.v1.Health/Check", &rq.base,
	    &grpc__health__v1__health_check_response__descriptor,
	    a->timeout_ms, &resp, &st) != GRPC_STATUS_OK)
		return ctl_rpc_error(a, &st);
	rs = (Grpc__Health__V1__HealthCheckResponse *)resp;
	info = ctl_health_info(a);
	if (a->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "service",
		    json_object_new_string(a->service));
		json_object_object_add(o, "status",
		    json_object_new_string(ctl_serving_name(rs->status)));
		ctl_json_source(o, info);
		printf("%s\n", json_object_to_json_string_ext(o,
		    JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
	} else {
		printf("%s\n", ctl_serving_name(rs->status));
		ctl_warn_source(a->cmd, info);
	}
	ipamadmin__v1__info_reply__free_unpacked(info, NULL);
	rc = rs->status ==
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING ?
	    CTL_OK : CTL_RPC;
	protobuf_c_message_free_unpacked(resp, NULL);
	return rc;
}

int
main(int argc, char **argv)
{
	const struct ctl_cmd *c;
	struct ctl_args a;
	struct grpcx_client *cl = NULL;
	struct tls *tls = NULL;
	char err[512], help_opt[] = "--help";
	char *help[4] = { NULL, NULL, help_opt, NULL };
	int rc;

	if (argc < 2) {
		ctl_usage_main(stderr);
		return CTL_USAGE;
	}
	/* `ipamctl help CMD` is `ipamctl CMD --help`. */
	if (strcmp(argv[1], "help") == 0 && argc == 3) {
		help[0] = argv[0];
		help[1] = argv[2];
		argv = help;
		argc = 3;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		ctl_usage_main(stdout);
		return CTL_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("ipamctl %s\n", IPAM_VERSION);
		return CTL_OK;
	}
	for (c = ctl_cmds; c < ctl_cmds + CTL_NCMDS; c++)
		if (strcmp(argv[1], c->name) == 0)
			break;
	if (c == ctl_cmds + CTL_NCMDS) {
		fprintf(stderr, "ipamctl: unknown command %s\n", argv[1]);
		ctl_usage_main(stderr);
		return CTL_USAGE;
	}
	memset(&a, 0, sizeof(a));
	a.cmd = argv[1];
	ctl_defaults(&a);
	rc = ctl_parse(&a, c->opts, argc - 1, argv + 1);
	if (rc < 0)
		return CTL_OK;
	if (rc != CTL_OK)
		return rc;
	if (c->opts & CTL_B(DATA))
		return ctl_import(a.file, a.data_source);
	if (!(c->opts & CTL_B(TARGET)))
		return ctl_op_admin(&a);
	if (a.target[0] == '\0')
		return ctl_bad(a.cmd, "IPAM_PORT=%s is not a port number: set "
		    "it right or give --target", getenv("IPAM_PORT"));

	grpc_init();
	if (a.spiffe) {
		rc = ctl_spiffe_client(&a, &cl);
	} else if ((a.tls && (tls = tls_new(a.tls_cert, a.tls_key, a.tls_ca,
	    err, sizeof(err))) == NULL) || (cl = tls_client_new(a.target, tls,
	    a.tls_name, err, sizeof(err))) == NULL) {
		fprintf(stderr, "ipamctl: %s: %s\n", a.cmd, err);
		rc = CTL_USAGE;
	}
	if (rc == CTL_OK)
		rc = strcmp(a.cmd, "health") == 0 ? ctl_health(cl, &a) :
		    ctl_child(cl, &a);
	grpcx_client_free(cl);
	tls_free(tls);
	grpc_shutdown_blocking();	/* gRPC threads gone before exit() */
	return rc;
}
