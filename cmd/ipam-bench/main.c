/*
 * ipam-bench - load generator for meridio-ipam (gRPC C core client).
 *
 *   ipam-bench health|allocate-new|allocate-existing|release|ready
 *       [--target H:P] [--concurrency C] [--duration S] [--warmup S]
 *       [--conduits a,b] [--nodes N] [--names N] [--count N]
 *       [--family ipv4|ipv6|both] [--channels K] [--trench T] [--tag X]
 *       [--node-prefix X] [--timeout S] [--tls-ca F] [--tls-cert F]
 *       [--tls-key F] [--tls-server-name N]
 *
 * Prints calls/s, latency percentiles, errors and duplicates, then one
 * machine-readable line. Exit status: 0 when the run had no error and no
 * duplicate, 1 otherwise, 2 on a usage error.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "bench.h"
#include "grpcx.h"
#include "tls.h"

#define BENCH_EXIT_OK 0
#define BENCH_EXIT_FAIL 1
#define BENCH_EXIT_USAGE 2
#define BENCH_MAX_CONDUITS 64

static const char *const bench_mode_names[] = {
	[BENCH_HEALTH] = "health",
	[BENCH_ALLOC_NEW] = "allocate-new",
	[BENCH_ALLOC_EXISTING] = "allocate-existing",
	[BENCH_RELEASE] = "release",
	[BENCH_READY] = "ready",
};

static void
bench_usage(FILE *f)
{
	fprintf(f,
	    "usage: ipam-bench MODE [options]\n"
	    "\n"
	    "modes:\n"
	    "  health             Health.Check (the null-RPC baseline)\n"
	    "  allocate-new       Allocate of names never used before\n"
	    "  allocate-existing  Allocate (renewal) of --names names made "
	    "first\n"
	    "  release            Release of --names names made first (the "
	    "run ends\n"
	    "                     early when they are all released)\n"
	    "  ready              wait for SERVING, print ready_ns=<unix ns>\n"
	    "\n"
	    "options:\n"
	    "  --target H:P       server (default localhost:7777)\n"
	    "  --concurrency C    calls in flight (default 16)\n"
	    "  --duration S       measured seconds (default 5; ready: how "
	    "long to wait)\n"
	    "  --warmup S         seconds run before measuring (default 1)\n"
	    "  --conduits a,b     conduits to spread children over (default "
	    "conduit-a,conduit-b;\n"
	    "                     the daemon must serve them)\n"
	    "  --nodes N          nodes to spread children over (default 16)\n"
	    "  --names N          names made before allocate-existing and "
	    "release\n"
	    "                     (default 1000 and 20000)\n"
	    "  --count N          allocate-new: stop after N calls instead of "
	    "by time\n"
	    "  --family F         ipv4, ipv6 or both (default both)\n"
	    "  --channels K       connections to spread calls over (default "
	    "1)\n"
	    "  --trench T         trench name (default $IPAM_TRENCH_NAME or "
	    "default)\n"
	    "  --tag X            child names are X-<n> (default unique per "
	    "run)\n"
	    "  --node-prefix X    node names are X-<n> (default bench-node)\n"
	    "  --timeout S        deadline of each call (default 10)\n"
	    "  --tls-ca F         talk TLS, verify the server with CA file F "
	    "(any --tls-*\n"
	    "                     means TLS; system roots without it)\n"
	    "  --tls-cert F       client certificate file (mTLS), with "
	    "--tls-key\n"
	    "  --tls-key F        its private key file\n"
	    "  --tls-server-name N  name expected in the server's "
	    "certificate\n"
	    "\n"
	    "Last line: mode=M conc=C ops_per_s=... p50_us=... p99_us=... "
	    "p999_us=...\n"
	    "errors=E duplicates=D. Exit 0 only when E and D are 0.\n");
}

/* Prints a usage error; returns BENCH_EXIT_USAGE. */
static int __attribute__((format(printf, 1, 2)))
bench_bad(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "ipam-bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry `ipam-bench --help`.\n");
	return BENCH_EXIT_USAGE;
}

/* Seconds as "2", "0.5", "2s" or "500ms" into ns. Returns 0 or -1. */
static int
bench_parse_seconds(const char *s, int64_t *ns)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || v < 0 || v > 86400)
		return -1;
	if (strcmp(end, "ms") == 0)
		v /= 1000;
	else if (*end != '\0' && strcmp(end, "s") != 0)
		return -1;
	*ns = (int64_t)(v * 1e9);
	return 0;
}

/* A whole number in [lo, hi]. Returns 0 or -1. */
static int
bench_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s[0] < '0' || s[0] > '9')
		return -1;
	v = strtoull(s, &end, 10);
	if (*end != '\0' || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

/* Splits list (modified in place) at commas into o->conduits. */
static int
bench_parse_conduits(struct bench_opts *o, char *list, char **store)
{
	char *tok, *save = NULL;

	o->nconduits = 0;
	for (tok = strtok_r(list, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		if (o->nconduits == BENCH_MAX_CONDUITS)
			return -1;
		store[o->nconduits++] = tok;
	}
	o->conduits = store;
	return o->nconduits > 0 ? 0 : -1;
}

/* A getopt_long entry of an option that takes a value. */
#define BENCH_ARG(name, id) { name, required_argument, NULL, id }

/*
 * Parses the options after the mode. Returns BENCH_EXIT_OK,
 * BENCH_EXIT_USAGE, or -1 when --help was printed.
 */
static int
bench_parse(struct bench_opts *o, int argc, char **argv, char **cstore,
    char *cbuf, size_t cbuflen)
{
	enum { O_TARGET = 1, O_CONC, O_DUR, O_WARM, O_CONDUITS, O_NODES,
		O_NAMES, O_COUNT, O_FAMILY, O_CHANNELS, O_TRENCH, O_TAG,
		O_NODEPFX, O_TIMEOUT, O_HELP, O_TLS_CA, O_TLS_CERT, O_TLS_KEY,
		O_TLS_NAME };
	/* every option but --help takes a value */
	static const struct option opts[] = {
		BENCH_ARG("target", O_TARGET),
		BENCH_ARG("concurrency", O_CONC), BENCH_ARG("duration", O_DUR),
		BENCH_ARG("warmup", O_WARM), BENCH_ARG("conduits", O_CONDUITS),
		BENCH_ARG("nodes", O_NODES), BENCH_ARG("names", O_NAMES),
		BENCH_ARG("count", O_COUNT), BENCH_ARG("family", O_FAMILY),
		BENCH_ARG("channels", O_CHANNELS),
		BENCH_ARG("trench", O_TRENCH), BENCH_ARG("tag", O_TAG),
		BENCH_ARG("node-prefix", O_NODEPFX),
		BENCH_ARG("timeout", O_TIMEOUT), BENCH_ARG("tls-ca", O_TLS_CA),
		BENCH_ARG("tls-cert", O_TLS_CERT),
		BENCH_ARG("tls-key", O_TLS_KEY),
		BENCH_ARG("tls-server-name", O_TLS_NAME),
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v, hi;
	int64_t ns;
	int c, li = 0;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":h", opts, &li)) != -1) {
		switch (c) {
		case O_TARGET:
			if (optarg[0] == '\0')
				return bench_bad("--target: empty");
			o->target = optarg;
			break;
		case O_CONC:
		case O_NODES:
		case O_CHANNELS:
			hi = c == O_CONC ? 100000 : c == O_NODES ? 1000000 :
			    1024;
			if (bench_parse_u64(optarg, 1, hi, &v) != 0)
				return bench_bad("--%s %s: expected 1..%llu",
				    opts[li].name, optarg,
				    (unsigned long long)hi);
			*(c == O_CONC ? &o->concurrency : c == O_NODES ?
			    &o->nodes : &o->channels) = (unsigned)v;
			break;
		case O_DUR:
		case O_WARM:
			if (bench_parse_seconds(optarg, &ns) != 0)
				return bench_bad("--%s %s: expected seconds "
				    "such as 3, 0.5 or 500ms", opts[li].name,
				    optarg);
			*(c == O_DUR ? &o->duration_ns : &o->warmup_ns) = ns;
			break;
		case O_TIMEOUT:
			if (bench_parse_seconds(optarg, &ns) != 0 ||
			    ns < 1000000)
				return bench_bad("--timeout %s: expected at "
				    "least 1ms", optarg);
			o->timeout_ms = ns / 1000000;
			break;
		case O_CONDUITS:
			snprintf(cbuf, cbuflen, "%s", optarg);
			if (strlen(optarg) >= cbuflen ||
			    bench_parse_conduits(o, cbuf, cstore) != 0)
				return bench_bad("--conduits %s: expected 1 to "
				    "64 comma-separated names", optarg);
			break;
		case O_NAMES:
		case O_COUNT:
			if (bench_parse_u64(optarg, 1, 100000000, &v) != 0)
				return bench_bad("--%s %s: expected "
				    "1..100000000", opts[li].name, optarg);
			*(c == O_NAMES ? &o->names : &o->count) = v;
			break;
		case O_FAMILY:
			if (strcasecmp(optarg, "ipv4") == 0)
				o->families = BENCH_FAM_V4;
			else if (strcasecmp(optarg, "ipv6") == 0)
				o->families = BENCH_FAM_V6;
			else if (strcasecmp(optarg, "both") == 0)
				o->families = BENCH_FAM_V4 | BENCH_FAM_V6;
			else
				return bench_bad("--family %s: expected ipv4, "
				    "ipv6 or both", optarg);
			break;
		case O_TRENCH:
			o->trench = optarg;
			break;
		case O_TAG:
		case O_NODEPFX:
			if (optarg[0] == '\0' || strlen(optarg) > 100)
				return bench_bad("--%s %s: expected 1 to 100 "
				    "characters", opts[li].name, optarg);
			*(c == O_TAG ? &o->tag : &o->node_prefix) = optarg;
			break;
		case O_TLS_CA:
		case O_TLS_CERT:
		case O_TLS_KEY:
		case O_TLS_NAME:
			if (optarg[0] == '\0')
				return bench_bad("%s: empty", argv[optind - 1]);
			*(c == O_TLS_CA ? &o->tls_ca : c == O_TLS_CERT ?
			    &o->tls_cert : c == O_TLS_KEY ? &o->tls_key :
			    &o->tls_server_name) = optarg;
			o->use_tls = true;
			break;
		case 'h':
		case O_HELP:
			bench_usage(stdout);
			return -1;
		case ':':
			return bench_bad("%s needs a value", argv[optind - 1]);
		default:
			return bench_bad("unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return bench_bad("unexpected argument %s", argv[optind]);
	if (o->count > 0 && o->mode != BENCH_ALLOC_NEW)
		return bench_bad("--count is for allocate-new only");
	return BENCH_EXIT_OK;
}

/* Prints the human report and the machine-readable last line. */
static void
bench_print(const struct bench_opts *o, const struct bench_result *r)
{
	const char *mode = bench_mode_names[o->mode];

	if (r->setup_calls > 0)
		printf("setup: %llu names allocated first\n",
		    (unsigned long long)r->setup_calls);
	printf("%s: concurrency %u, %llu calls in %.2f s%s\n", mode,
	    o->concurrency, (unsigned long long)r->calls, r->seconds,
	    r->ran_out ? " (the names ran out before --duration)" : "");
	printf("  calls/s   %.0f (%llu calls with the warm-up)\n",
	    r->ops_per_s, (unsigned long long)r->total_calls);
	printf("  latency   p50 %u us, p99 %u us, p99.9 %u us, max %u us\n",
	    r->p50_us, r->p99_us, r->p999_us, r->max_us);
	printf("  errors    %llu\n", (unsigned long long)r->errors);
	if (r->first_error[0])
		printf("  first error: %s\n", r->first_error);
	printf("  duplicates %llu, renewals that moved %llu\n",
	    (unsigned long long)r->duplicates,
	    (unsigned long long)r->mismatches);
	printf("mode=%s conc=%u ops_per_s=%.0f p50_us=%u p99_us=%u "
	    "p999_us=%u errors=%llu duplicates=%llu\n", mode, o->concurrency,
	    r->ops_per_s, r->p50_us, r->p99_us, r->p999_us,
	    (unsigned long long)r->errors, (unsigned long long)r->duplicates);
}

int
main(int argc, char **argv)
{
	struct bench_opts o = { 0 };
	struct bench_result r;
	char *cstore[BENCH_MAX_CONDUITS];
	char cbuf[4096] = "conduit-a,conduit-b";
	char tag[64], err[512];
	const char *trench = getenv("IPAM_TRENCH_NAME");
	int64_t ready_ns;
	unsigned attempts, m;
	int rc;

	if (argc < 2) {
		bench_usage(stderr);
		return BENCH_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		bench_usage(stdout);
		return BENCH_EXIT_OK;
	}
	for (m = 0; m < sizeof(bench_mode_names) / sizeof(*bench_mode_names);
	    m++)
		if (strcmp(argv[1], bench_mode_names[m]) == 0)
			break;
	if (m == sizeof(bench_mode_names) / sizeof(*bench_mode_names))
		return bench_bad("unknown mode %s", argv[1]);
	o.mode = (enum bench_mode)m;
	o.target = "localhost:7777";
	o.concurrency = 16;
	o.setup_concurrency = 64;
	o.channels = 1;
	o.duration_ns = 5000000000LL;
	o.warmup_ns = 1000000000LL;
	o.nodes = 16;
	o.trench = trench != NULL && trench[0] != '\0' ? trench : "default";
	o.node_prefix = "bench-node";
	o.names = o.mode == BENCH_RELEASE ? 20000 : 1000;
	o.families = BENCH_FAM_V4 | BENCH_FAM_V6;
	o.timeout_ms = 10000;
	/* A tag of its own per run keeps allocate-new names new. */
	snprintf(tag, sizeof(tag), "b%lx-%x", (unsigned long)time(NULL),
	    (unsigned)getpid());
	o.tag = tag;
	if (bench_parse_conduits(&o, cbuf, cstore) != 0)
		return BENCH_EXIT_USAGE;
	rc = bench_parse(&o, argc - 1, argv + 1, cstore, cbuf, sizeof(cbuf));
	if (rc < 0)
		return BENCH_EXIT_OK;
	if (rc != BENCH_EXIT_OK)
		return rc;

	(void)grpcx_init();
	if (o.use_tls) {
		o.tls = tls_new(o.tls_cert, o.tls_key, o.tls_ca, err,
		    sizeof(err));
		if (o.tls == NULL) {
			grpc_shutdown();
			fprintf(stderr, "ipam-bench: %s\n", err);
			return BENCH_EXIT_USAGE;
		}
	}
	if (o.mode == BENCH_READY) {
		rc = bench_wait_ready(&o, &ready_ns, &attempts, err,
		    sizeof(err));
		if (rc == 0)
			printf("mode=ready ready_ns=%lld attempts=%u\n",
			    (long long)ready_ns, attempts);
	} else {
		rc = bench_run(&o, &r, err, sizeof(err));
		if (rc == 0)
			bench_print(&o, &r);
	}
	grpc_shutdown();
	tls_free(o.tls);
	if (rc != 0) {
		fprintf(stderr, "ipam-bench: %s: %s\n", bench_mode_names[o.mode],
		    err);
		return BENCH_EXIT_FAIL;
	}
	if (o.mode != BENCH_READY && (r.errors > 0 || r.duplicates > 0))
		return BENCH_EXIT_FAIL;
	return BENCH_EXIT_OK;
}
