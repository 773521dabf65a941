/*
 * metrics.c - Prometheus text exposition, served by lib/httpd.
 *
 * Counters of this process are atomics bumped by the gRPC and db threads.
 * A scrape renders them, then asks the db worker (a fresh connection, as
 * the Admin service does) for its Stats and a Dump of the whole tree to
 * report pool usage. When the db worker does not answer, ipam_db_up is 0
 * and its series are left out: the scrape itself still succeeds.
 */
#include "metrics.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>

#include "admin.h"
#include "grpcx.h"
#include "httpd.h"
#include "ipcmsg.h"
#include "now.h"

#define METRICS_CODES 17		/* gRPC status codes 0..16 */
#define METRICS_DB_TIMEOUT_MS 3000	/* a scrape waits this long for db */
#define METRICS_CONN_LIMIT 16		/* scrapers at once */
#define METRICS_CONN_TIMEOUT_S 10	/* from accept to close */

/* Upper bounds (seconds) of the latency buckets; +Inf is implied. */
static const double metrics_bounds[] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
	2.5, 5, 10, 30,
};
#define METRICS_NBOUNDS (sizeof(metrics_bounds) / sizeof(metrics_bounds[0]))

static const char *const metrics_method_names[METRICS_NMETHODS] = {
	"Allocate", "Release",
};

/* Per-method counters (all atomics: several threads bump them). */
struct metrics_calls {
	atomic_uint_fast64_t by_code[METRICS_CODES];	/* answers by status */
	atomic_uint_fast64_t bucket[METRICS_NBOUNDS + 1]; /* latency, not
							   * cumulative; last
							   * is +Inf */
	atomic_uint_fast64_t sum_ns;			/* total latency */
};

static struct metrics_calls metrics_calls[METRICS_NMETHODS];

struct metrics {
	struct httpd *http;		/* the HTTP server */
	char db_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
					/* the db worker's socket */
	double started;			/* process start, s since the epoch */
};

void
metrics_call_done(enum metrics_method m, int code, int64_t took_ns)
{
	struct metrics_calls *c;
	double s;
	size_t i;

	if ((unsigned)m >= METRICS_NMETHODS)
		return;
	c = &metrics_calls[m];
	if (code < 0 || code >= METRICS_CODES)
		code = GRPC_STATUS_UNKNOWN;
	if (took_ns < 0)
		took_ns = 0;
	s = (double)took_ns / 1e9;
	for (i = 0; i < METRICS_NBOUNDS && s > metrics_bounds[i]; i++)
		;
	atomic_fetch_add(&c->by_code[code], 1);
	atomic_fetch_add(&c->bucket[i], 1);
	atomic_fetch_add(&c->sum_ns, (uint_fast64_t)took_ns);
}

/* ---- rendering ---------------------------------------------------------- */

/* Writes s as a label value: backslash, quote and newline escaped. */
static void
metrics_label(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void
metrics_head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The counts and latency histogram of Allocate and Release. */
static void
metrics_render_calls(FILE *f)
{
	uint64_t v, cum;

	metrics_head(f, "ipam_requests_total", "counter",
	    "Ipam calls answered, by method and gRPC status code.");
	for (int m = 0; m < METRICS_NMETHODS; m++)
		for (int k = 0; k < METRICS_CODES; k++) {
			v = atomic_load(&metrics_calls[m].by_code[k]);
			if (v == 0 && k != GRPC_STATUS_OK)
				continue;
			fprintf(f, "ipam_requests_total{method=\"%s\",code=\"%s\"}"
			    " %llu\n", metrics_method_names[m],
			    grpcx_status_name(k), (unsigned long long)v);
		}
	metrics_head(f, "ipam_request_duration_seconds", "histogram",
	    "Time from the arrival of an Ipam call to its answer.");
	for (int m = 0; m < METRICS_NMETHODS; m++) {
		struct metrics_calls *c = &metrics_calls[m];

		cum = 0;
		for (size_t i = 0; i <= METRICS_NBOUNDS; i++) {
			char le[32] = "+Inf";

			if (i < METRICS_NBOUNDS)
				snprintf(le, sizeof(le), "%g", metrics_bounds[i]);
			cum += atomic_load(&c->bucket[i]);
			fprintf(f, "ipam_request_duration_seconds_bucket"
			    "{method=\"%s\",le=\"%s\"} %llu\n",
			    metrics_method_names[m], le, (unsigned long long)cum);
		}
		fprintf(f, "ipam_request_duration_seconds_sum{method=\"%s\"} "
		    "%.9f\n", metrics_method_names[m],
		    (double)atomic_load(&c->sum_ns) / 1e9);
		fprintf(f, "ipam_request_duration_seconds_count{method=\"%s\"} "
		    "%llu\n", metrics_method_names[m], (unsigned long long)cum);
	}
}

/* Keeps the db worker's Stats reply. */
static int
metrics_stats_reply(void *arg, const Ipamd__V1__Reply *r)
{
	Ipamd__V1__DbStats *out = arg;

	if (r->code != 0 || r->stats == NULL)
		return 1;
	*out = *r->stats;
	out->batch_sizes = NULL;
	out->n_batch_sizes = 0;
	if (r->stats->n_batch_sizes > 0) {
		out->batch_sizes = calloc(r->stats->n_batch_sizes,
		    sizeof(uint64_t));
		if (out->batch_sizes == NULL)
			return 1;
		memcpy(out->batch_sizes, r->stats->batch_sizes,
		    r->stats->n_batch_sizes * sizeof(uint64_t));
		out->n_batch_sizes = r->stats->n_batch_sizes;
	}
	return 0;
}

/* A family of one unlabelled sample: its HELP and TYPE, and the value. */
static void
metrics_one(FILE *f, const char *name, const char *type, const char *help,
    uint64_t v)
{
	metrics_head(f, name, type, help);
	fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

/* The db worker's counters. */
static void
metrics_render_db(FILE *f, const Ipamd__V1__DbStats *s)
{
	uint64_t cum = 0;

	metrics_one(f, "ipam_db_commits_total", "counter",
	    "Transactions the db worker committed.", s->commits);
	metrics_one(f, "ipam_db_fsyncs_total", "counter",
	    "WAL fsyncs at commit (synchronous=FULL: one per commit).",
	    s->commits);
	metrics_one(f, "ipam_db_commit_failures_total", "counter",
	    "Transactions a storage error ended (disk full, I/O error); their "
	    "requests were answered UNAVAILABLE.", s->commit_failures);
	metrics_one(f, "ipam_db_checkpoint_failures_total", "counter",
	    "WAL checkpoints that failed (the WAL grows until one succeeds).",
	    s->checkpoint_failures);
	metrics_one(f, "ipam_db_requests_total", "counter",
	    "Requests the db worker answered (all roles, pings included).",
	    s->requests);
	metrics_head(f, "ipam_db_batch_size", "histogram",
	    "Requests applied per batch (one commit each, or one per request "
	    "after a storage error).");
	for (size_t i = 0; i < s->n_batch_sizes; i++) {
		cum += s->batch_sizes[i];
		fprintf(f, "ipam_db_batch_size_bucket{le=\"%llu\"} %llu\n",
		    1ULL << i, (unsigned long long)cum);
	}
	fprintf(f, "ipam_db_batch_size_bucket{le=\"+Inf\"} %llu\n",
	    (unsigned long long)s->batches);
	fprintf(f, "ipam_db_batch_size_sum %llu\n",
	    (unsigned long long)s->batched);
	fprintf(f, "ipam_db_batch_size_count %llu\n",
	    (unsigned long long)s->batches);
	metrics_one(f, "ipam_gc_runs_total", "counter",
	    "Garbage collection runs.", s->gc_runs);
	metrics_one(f, "ipam_gc_reaped_records_total", "counter",
	    "Records removed by garbage collection.", s->gc_reaped);
	metrics_one(f, "ipam_cooling_addresses", "gauge",
	    "Released addresses not handed out again until "
	    "IPAM_RELEASE_COOLDOWN has passed.", s->cooling);
	metrics_one(f, "ipam_records", "gauge", "Records in the index.",
	    s->records);
}

/* The pool usage gauges, filled from a Dump (each in record order). */
enum {
	METRICS_CONDUIT_USED,
	METRICS_CONDUIT_USABLE,
	METRICS_NODE_USED,
	METRICS_NODE_USABLE,
	METRICS_NPOOL,
};

static const struct {
	const char *name, *help;
} metrics_pool_gauges[METRICS_NPOOL] = {
	{ "ipam_conduit_prefixes_used",
	    "Node prefixes allocated in a conduit prefix." },
	{ "ipam_conduit_prefixes_usable",
	    "Node prefixes a conduit prefix can hold." },
	{ "ipam_node_addresses_used", "Addresses allocated in a node prefix." },
	{ "ipam_node_addresses_usable", "Addresses a node prefix can hand "
	    "out (all but its first and last)." },
};

/* The samples of each pool gauge, collected while the Dump comes in. */
struct metrics_pool {
	FILE *f[METRICS_NPOOL];		/* samples of each gauge */
	char *buf[METRICS_NPOOL];	/* their buffers */
	size_t len[METRICS_NPOOL];	/* and lengths */
	char conduit_id[1024];		/* last conduit seen (parents first) */
	char conduit[512];		/* its name */
};

/* Writes one sample of pool gauge g: labels family, conduit, node (NULL:
 * a conduit's sample). */
static void
metrics_pool_sample(struct metrics_pool *p, int g, const char *fam,
    const char *conduit, const char *node, uint64_t v)
{
	FILE *f = p->f[g];

	fprintf(f, "%s{family=\"%s\",conduit=\"", metrics_pool_gauges[g].name,
	    fam);
	metrics_label(f, conduit);
	if (node != NULL) {
		fputs("\",node=\"", f);
		metrics_label(f, node);
	}
	fprintf(f, "\"} %llu\n", (unsigned long long)v);
}

/* One Dump chunk: conduit and node records become samples. */
static int
metrics_pool_chunk(void *arg, const Ipamd__V1__Reply *r)
{
	struct metrics_pool *p = arg;

	if (r->code != 0)
		return 1;
	for (size_t i = 0; i < r->n_records; i++) {
		const Ipamd__V1__Record *rec = r->records[i];
		const char *fam = strchr(rec->cidr, ':') != NULL ? "ipv6" :
		    "ipv4", *conduit;

		if (rec->level == 1) {
			snprintf(p->conduit_id, sizeof(p->conduit_id), "%s",
			    rec->id);
			snprintf(p->conduit, sizeof(p->conduit), "%s",
			    rec->name);
			metrics_pool_sample(p, METRICS_CONDUIT_USED, fam,
			    rec->name, NULL, rec->children);
			metrics_pool_sample(p, METRICS_CONDUIT_USABLE, fam,
			    rec->name, NULL, rec->usable);
		} else if (rec->level == 2) {
			conduit = strcmp(rec->parent_id, p->conduit_id) == 0 ?
			    p->conduit : "";
			metrics_pool_sample(p, METRICS_NODE_USED, fam, conduit,
			    rec->name, rec->children);
			metrics_pool_sample(p, METRICS_NODE_USABLE, fam,
			    conduit, rec->name, rec->usable);
		}
	}
	return 0;
}

/* Pool usage per conduit and node, from a Dump. Returns 0 or -1. */
static int
metrics_render_pool(FILE *f, const char *db_path)
{
	Ipamd__V1__Request req = IPAMD__V1__REQUEST__INIT;
	Ipamd__V1__Dump dump = IPAMD__V1__DUMP__INIT;
	struct metrics_pool p;
	char err[256];
	int g, rc = -1;

	memset(&p, 0, sizeof(p));
	for (g = 0; g < METRICS_NPOOL; g++)
		if ((p.f[g] = open_memstream(&p.buf[g], &p.len[g])) == NULL)
			goto out;
	dump.conduit = (char *)"";
	dump.node = (char *)"";
	req.body_case = IPAMD__V1__REQUEST__BODY_DUMP;
	req.dump = &dump;
	if (admin_db_call(db_path, &req, metrics_pool_chunk, &p,
	    METRICS_DB_TIMEOUT_MS, err, sizeof(err)) != 0)
		goto out;
	for (g = 0; g < METRICS_NPOOL; g++) {
		fclose(p.f[g]);
		p.f[g] = NULL;
		metrics_head(f, metrics_pool_gauges[g].name, "gauge",
		    metrics_pool_gauges[g].help);
		fputs(p.buf[g], f);
	}
	rc = 0;
out:
	for (g = 0; g < METRICS_NPOOL; g++) {
		if (p.f[g] != NULL)
			fclose(p.f[g]);
		free(p.buf[g]);
	}
	return rc;
}

/*
 * Worker restarts, as the supervisor keeps them in the runtime directory
 * (ipcmsg.h: one "<worker> <count>" line per worker). Left out when the
 * file cannot be read (a worker run by hand, without a supervisor).
 */
static void
metrics_render_restarts(FILE *f)
{
	const char *rundir = getenv(IPCMSG_ENV_RUNDIR);
	char path[PATH_MAX], name[32];
	unsigned long long n;
	bool head = false;
	FILE *in;

	if (rundir == NULL || (size_t)snprintf(path, sizeof(path), "%s/%s",
	    rundir, IPCMSG_RESTARTS_FILE) >= sizeof(path) ||
	    (in = fopen(path, "r")) == NULL)
		return;
	while (fscanf(in, "%31s %llu", name, &n) == 2) {
		if (!head)
			metrics_head(f, "ipam_worker_restarts_total", "counter",
			    "Restarts of each worker by the supervisor.");
		head = true;
		fprintf(f, "ipam_worker_restarts_total{worker=\"");
		metrics_label(f, name);
		fprintf(f, "\"} %llu\n", n);
	}
	fclose(in);
}

/*
 * The page (lib/httpd's render: GET or HEAD /metrics) in a malloc'd
 * buffer; NULL on out of memory. Runs on the server's thread; the db
 * worker's answer takes at most METRICS_DB_TIMEOUT_MS per question.
 */
static char *
metrics_render(void *arg, size_t *len)
{
	struct metrics *mx = arg;
	Ipamd__V1__Request req = IPAMD__V1__REQUEST__INIT;
	Ipamd__V1__Stats st = IPAMD__V1__STATS__INIT;
	Ipamd__V1__DbStats s = IPAMD__V1__DB_STATS__INIT;
	char *buf = NULL, err[256];
	FILE *f;
	bool up;

	f = open_memstream(&buf, len);
	if (f == NULL)
		return NULL;
	metrics_render_calls(f);
	metrics_head(f, "ipam_api_start_time_seconds", "gauge",
	    "When this api worker started (a change means a restart).");
	fprintf(f, "ipam_api_start_time_seconds %.3f\n", mx->started);
	metrics_render_restarts(f);
	req.body_case = IPAMD__V1__REQUEST__BODY_STATS;
	req.stats = &st;
	up = admin_db_call(mx->db_path, &req, metrics_stats_reply, &s,
	    METRICS_DB_TIMEOUT_MS, err, sizeof(err)) == 0;
	if (up) {
		metrics_render_db(f, &s);
		up = metrics_render_pool(f, mx->db_path) == 0;
	}
	free(s.batch_sizes);
	metrics_head(f, "ipam_db_up", "gauge",
	    "1 if the db worker answered this scrape.");
	fprintf(f, "ipam_db_up %d\n", up ? 1 : 0);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* Starts the HTTP server's thread on [::]:port (IPv4 alone on a host
 * without IPv6). */
struct metrics *
metrics_start(unsigned port, const char *db_path, char *err, size_t errlen)
{
	struct httpd_opts o = {
		.host = NULL,
		.port = port,
		.max_conns = METRICS_CONN_LIMIT,
		.timeout_ms = METRICS_CONN_TIMEOUT_S * 1000,
		.path = "/metrics",
		.type = "text/plain; version=0.0.4; charset=utf-8",
		.render = metrics_render,
	};
	struct metrics *mx;

	if (port == 0 || port > 65535) {
		snprintf(err, errlen, "bad port %u", port);
		return NULL;
	}
	mx = calloc(1, sizeof(*mx));
	if (mx == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (strlen(db_path) >= sizeof(mx->db_path)) {
		snprintf(err, errlen, "db socket path too long");
		free(mx);
		return NULL;
	}
	snprintf(mx->db_path, sizeof(mx->db_path), "%s", db_path);
	mx->started = (double)now_ns(CLOCK_REALTIME) / 1e9;
	o.arg = mx;
	mx->http = httpd_start(&o, err, errlen);
	if (mx->http == NULL) {
		free(mx);
		return NULL;
	}
	return mx;
}

void
metrics_stop(struct metrics *mx)
{
	if (mx == NULL)
		return;
	httpd_stop(mx->http);
	free(mx);
}
