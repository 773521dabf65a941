/*
 * bench.c - ipam-bench's load engine (see bench.h).
 *
 * One thread, one completion queue, C slots: each slot holds one unary call
 * (a single batch: send metadata, message and close, receive metadata,
 * message and status). When a call completes, its latency is recorded, its
 * answer checked, and the slot starts the next call at once, so C calls stay
 * in flight (a closed loop). Calls are spread round-robin over the channels.
 *
 * Name n always means the same child: "<tag>-<n>" on node
 * "<node_prefix>-<n/F % nodes>" of conduit n/F/nodes % nconduits, in family
 * n % F of the chosen ones (F = 1 or 2), so consecutive calls hit different
 * families, nodes and conduits. Every address handed out is kept in a hash
 * table keyed by (family, address): a second name with the same address is
 * a duplicate, a renewal answering another address a mismatch.
 */
#include "bench.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "grpc/health/v1/health.pb-c.h"
#include "grpcx.h"
#include "tls.h"
#include "ipam/v1/ipam.pb-c.h"
#include "pfx.h"
#include "now.h"

#define BENCH_NS_PER_S 1000000000LL
#define BENCH_NS_PER_MS 1000000LL
#define BENCH_POLL_MS 200	/* completion queue wake-up when idle */
#define BENCH_GRACE_MS 5000	/* wait this long past the last deadline */
#define BENCH_READY_STEP_MS 2	/* pause between readiness probes */
#define BENCH_READY_CALL_MS 250	/* deadline of one readiness probe */

/* The RPC of a phase. */
enum bench_op {
	BENCH_OP_CHECK,
	BENCH_OP_ALLOCATE,
	BENCH_OP_RELEASE,
};

/* One call in flight (or an idle slot). */
struct bench_slot {
	grpc_call *call;		/* NULL when idle */
	struct grpcx_ccall u;		/* what the call's batch sends and
					 * receives */
	int64_t start_ns;		/* CLOCK_MONOTONIC at start */
	uint64_t name;			/* name index of the call */
};

/* What the running phase does and when it stops starting calls. */
struct bench_phase {
	enum bench_op op;		/* the RPC */
	uint64_t next;			/* next name index */
	uint64_t limit;			/* names below this (UINT64_MAX: all) */
	bool cycle;			/* start over at 0 at the limit */
	uint64_t max_calls;		/* start no more than this (0: any) */
	uint64_t started;		/* calls started in this phase */
	int64_t warm_end_ns;		/* window start (CLOCK_MONOTONIC) */
	int64_t end_ns;			/* window end; INT64_MAX: untimed */
	bool measure;			/* record latencies in the window */
};

/* What is known of one name. */
struct bench_name {
	pfx_addr addr;			/* its address, if have */
	bool have;			/* an Allocate answered for it */
};

/* A hash table entry: an address and the name holding it. */
struct bench_slotaddr {
	pfx_addr addr;			/* the address */
	uint64_t name1;			/* name index + 1; 0 = empty entry */
	uint8_t family;			/* PFX_V4 or PFX_V6 */
};

struct bench {
	const struct bench_opts *o;	/* options */
	grpc_completion_queue *cq;	/* the only completion queue */
	grpc_channel **ch;		/* o->channels channels */
	grpc_slice method[3];		/* paths, by enum bench_op */
	struct bench_slot *slots;	/* o->concurrency slots */
	unsigned inflight;		/* slots with a call */
	struct bench_phase ph;		/* the running phase */
	int famv[2];			/* families in use (PFX_V4/PFX_V6) */
	unsigned nfam;			/* entries in famv */

	uint32_t *lat;			/* latencies in the window, us */
	size_t nlat, caplat;		/* used and allocated */
	int64_t last_done_ns;		/* last completion in the window */
	uint64_t done_calls;		/* completions in this phase */
	unsigned nslots;		/* slots allocated */

	struct bench_name *names;	/* by name index */
	size_t capnames;		/* allocated entries of names */
	struct bench_slotaddr *tab;	/* addresses handed out */
	size_t tabcap, tabn;		/* size (power of 2) and used */

	struct bench_result *r;		/* where counts go */
};

/* Records the first error's text; later ones are only counted. */
static void __attribute__((format(printf, 2, 3)))
bench_error(struct bench *b, const char *fmt, ...)
{
	va_list ap;

	b->r->errors++;
	if (b->r->first_error[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(b->r->first_error, sizeof(b->r->first_error), fmt, ap);
	va_end(ap);
}

/*
 * The credentials (NULL on failure) and arguments (into args, 5 entries)
 * of a channel to o->target, plaintext or TLS (o->tls,
 * o->tls_server_name). A local subchannel pool gives every channel its own
 * connection (the global pool would share one), and short reconnect
 * backoffs let a readiness probe see a server soon after it starts
 * listening.
 */
static grpc_channel_credentials *
bench_channel_setup(const struct bench_opts *o, bool fast_reconnect,
    grpc_arg *args, grpc_channel_args *ca)
{
	*ca = (grpc_channel_args){ .num_args = 1, .args = args };
	args[0].type = GRPC_ARG_INTEGER;
	args[0].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
	args[0].value.integer = 1;
	if (fast_reconnect) {
		args[1].type = args[2].type = args[3].type = GRPC_ARG_INTEGER;
		args[1].key = (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
		args[2].key = (char *)GRPC_ARG_MIN_RECONNECT_BACKOFF_MS;
		args[3].key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
		args[1].value.integer = args[2].value.integer = 1;
		args[3].value.integer = 20;
		ca->num_args = 4;
	}
	if (o->tls != NULL && o->tls_server_name != NULL) {
		args[ca->num_args].type = GRPC_ARG_STRING;
		args[ca->num_args].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
		args[ca->num_args++].value.string = (char *)o->tls_server_name;
	}
	return o->tls != NULL ? tls_channel_credentials(o->tls) :
	    grpc_insecure_credentials_create();
}

/* ---- address bookkeeping --------------------------------------------- */

static size_t
bench_hash(int family, pfx_addr a, size_t mask)
{
	uint64_t h = (uint64_t)a ^ (uint64_t)(a >> 64) * 0x9e3779b97f4a7c15ULL;

	h ^= (uint64_t)family;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return (size_t)h & mask;
}

/* Doubles the table (or makes the first one). Returns 0 or -1. */
static int
bench_tab_grow(struct bench *b)
{
	size_t cap = b->tabcap ? b->tabcap * 2 : 4096, i, j;
	struct bench_slotaddr *t = calloc(cap, sizeof(*t));

	if (t == NULL)
		return -1;
	for (i = 0; i < b->tabcap; i++) {
		if (b->tab[i].name1 == 0)
			continue;
		j = bench_hash(b->tab[i].family, b->tab[i].addr, cap - 1);
		while (t[j].name1 != 0)
			j = (j + 1) & (cap - 1);
		t[j] = b->tab[i];
	}
	free(b->tab);
	b->tab = t;
	b->tabcap = cap;
	return 0;
}

/*
 * Notes that name holds (family, a). Returns the index + 1 of another name
 * already holding it (a duplicate), 0 if none, or -1 on out of memory.
 */
static int64_t
bench_claim(struct bench *b, int family, pfx_addr a, uint64_t name)
{
	size_t j;

	if ((b->tabn + 1) * 2 > b->tabcap && bench_tab_grow(b) != 0)
		return -1;
	j = bench_hash(family, a, b->tabcap - 1);
	while (b->tab[j].name1 != 0) {
		if (b->tab[j].family == family && b->tab[j].addr == a)
			return b->tab[j].name1 == name + 1 ? 0 :
			    (int64_t)b->tab[j].name1;
		j = (j + 1) & (b->tabcap - 1);
	}
	b->tab[j] = (struct bench_slotaddr){ .addr = a, .name1 = name + 1,
	    .family = (uint8_t)family };
	b->tabn++;
	return 0;
}

/* The record of name n, growing the array as needed (NULL: no memory). */
static struct bench_name *
bench_name_rec(struct bench *b, uint64_t n)
{
	if (n >= b->capnames) {
		size_t cap = b->capnames ? b->capnames : 4096;
		struct bench_name *v;
		while (cap <= n)
			cap *= 2;
		v = realloc(b->names, cap * sizeof(*v));
		if (v == NULL)
			return NULL;
		memset(v + b->capnames, 0, (cap - b->capnames) * sizeof(*v));
		b->names = v;
		b->capnames = cap;
	}
	return &b->names[n];
}

/* ---- calls ------------------------------------------------------------ */

static int
bench_family_of(const struct bench *b, uint64_t n)
{
	return b->famv[n % b->nfam];
}

/* Packs the request of name n for op (Check has no name). */
static grpc_byte_buffer *
bench_request(const struct bench *b, enum bench_op op, uint64_t n)
{
	const struct bench_opts *o = b->o;
	Grpc__Health__V1__HealthCheckRequest hc =
	    GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	Ipam__V1__Child ch = IPAM__V1__CHILD__INIT;
	Ipam__V1__Subnet sn = IPAM__V1__SUBNET__INIT;
	Nsp__V1__Conduit co = NSP__V1__CONDUIT__INIT;
	Nsp__V1__Trench tr = NSP__V1__TRENCH__INIT;
	char name[160], node[160];
	uint64_t k = n / b->nfam;

	if (op == BENCH_OP_CHECK) {
		hc.service = (char *)"";
		return grpcx_pack(&hc.base);
	}
	snprintf(name, sizeof(name), "%s-%llu", o->tag, (unsigned long long)n);
	snprintf(node, sizeof(node), "%s-%llu", o->node_prefix,
	    (unsigned long long)(k % o->nodes));
	tr.name = (char *)o->trench;
	co.name = o->conduits[(k / o->nodes) % o->nconduits];
	co.trench = &tr;
	sn.conduit = &co;
	sn.node = node;
	sn.ipfamily = bench_family_of(b, n) == PFX_V6 ?
	    IPAM__V1__IPFAMILY__IPV6 : IPAM__V1__IPFAMILY__IPV4;
	ch.name = name;
	ch.subnet = &sn;
	return grpcx_pack(&ch.base);
}

/*
 * Picks the next name of the phase and starts its call on slot s.
 * Returns false when the phase starts no more calls (or the start failed,
 * which is counted as an error).
 */
static bool
bench_start(struct bench *b, struct bench_slot *s, unsigned idx)
{
	struct bench_phase *ph = &b->ph;
	grpc_byte_buffer *send;
	int64_t now = now_ns(CLOCK_MONOTONIC);

	if (now >= ph->end_ns)
		return false;
	if (ph->max_calls != 0 && ph->started >= ph->max_calls)
		return false;
	if (ph->op != BENCH_OP_CHECK && ph->next >= ph->limit) {
		if (!ph->cycle || ph->limit == 0)
			return false;
		ph->next = 0;
	}
	s->name = ph->op == BENCH_OP_CHECK ? 0 : ph->next++;
	ph->started++;
	send = bench_request(b, ph->op, s->name);
	if (send == NULL) {
		bench_error(b, "out of memory");
		return false;
	}
	s->start_ns = now;
	s->call = grpc_channel_create_call(b->ch[idx % b->o->channels], NULL,
	    GRPC_PROPAGATE_DEFAULTS, b->cq, b->method[ph->op], NULL,
	    grpcx_deadline_ms(b->o->timeout_ms), NULL);
	if (grpcx_unary_start(s->call, send, &s->u, s) != GRPC_CALL_OK) {
		bench_error(b, "grpc_call_start_batch failed");
		grpc_call_unref(s->call);
		s->call = NULL;
		grpcx_ccall_clear(&s->u);
		return false;
	}
	b->inflight++;
	return true;
}

/* Checks an Allocate answer of name n: family, uniqueness, stability. */
static void
bench_check_prefix(struct bench *b, uint64_t n, const Ipam__V1__Prefix *p)
{
	struct bench_name *rec;
	pfx_addr a;
	int fam, want = bench_family_of(b, n);
	char err[128];
	int64_t other;

	if (pfx_parse_addr(p->address, &a, &fam, err, sizeof(err)) != 0) {
		bench_error(b, "bad address in answer: %s (%s)", p->address,
		    err);
		return;
	}
	if (fam != want || p->prefixlength <= 0 ||
	    (unsigned)p->prefixlength > pfx_family_bits(fam)) {
		bench_error(b, "answer %s/%s does not fit the request",
		    p->address, fam == want ? "bad length" : "wrong family");
		return;
	}
	if ((rec = bench_name_rec(b, n)) == NULL) {
		bench_error(b, "out of memory");
		return;
	}
	if (rec->have && rec->addr != a) {
		b->r->mismatches++;
		bench_error(b, "a renewal moved a name to %s", p->address);
		return;
	}
	rec->have = true;
	rec->addr = a;
	other = bench_claim(b, fam, a, n);
	if (other < 0) {
		bench_error(b, "out of memory");
	} else if (other > 0) {
		b->r->duplicates++;
		bench_error(b, "address %s given to two names", p->address);
	}
}

/* Checks the answer of a completed call and counts it. */
static void
bench_check(struct bench *b, struct bench_slot *s, bool ok)
{
	ProtobufCMessage *m;
	size_t dl;

	if (!ok) {
		bench_error(b, "a call's batch failed");
		return;
	}
	if (s->u.status != GRPC_STATUS_OK) {
		dl = GRPC_SLICE_LENGTH(s->u.details);
		bench_error(b, "%s: %.*s", grpcx_status_name(s->u.status),
		    (int)(dl > 199 ? 199 : dl),
		    (const char *)GRPC_SLICE_START_PTR(s->u.details));
		return;
	}
	switch (b->ph.op) {
	case BENCH_OP_CHECK:
		m = grpcx_unpack(&grpc__health__v1__health_check_response__descriptor,
		    s->u.recv);
		if (m == NULL)
			bench_error(b, "bad Check answer");
		else if (((Grpc__Health__V1__HealthCheckResponse *)m)->status !=
		    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING)
			bench_error(b, "not SERVING");
		break;
	case BENCH_OP_ALLOCATE:
		m = grpcx_unpack(&ipam__v1__prefix__descriptor, s->u.recv);
		if (m == NULL)
			bench_error(b, "bad Allocate answer");
		else
			bench_check_prefix(b, s->name,
			    (const Ipam__V1__Prefix *)m);
		break;
	case BENCH_OP_RELEASE:
	default:
		m = NULL;
		if (s->u.recv == NULL)
			bench_error(b, "Release answered no body");
		break;
	}
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, NULL);
}

/* Frees what a completed call held; the slot becomes idle. */
static void
bench_slot_clear(struct bench *b, struct bench_slot *s)
{
	grpc_call_unref(s->call);
	s->call = NULL;
	grpcx_ccall_clear(&s->u);
	b->inflight--;
}

/* Appends one latency (us) of the window. Returns 0 or -1. */
static int
bench_lat_push(struct bench *b, uint32_t us)
{
	if (b->nlat == b->caplat) {
		size_t cap = b->caplat ? b->caplat * 2 : 65536;
		uint32_t *v = realloc(b->lat, cap * sizeof(*v));
		if (v == NULL)
			return -1;
		b->lat = v;
		b->caplat = cap;
	}
	b->lat[b->nlat++] = us;
	return 0;
}

/*
 * Runs the phase in b->ph until no call is left in flight: fills conc
 * slots, then restarts each slot as its call completes. The loop is
 * bounded: calls carry deadlines, and it gives up BENCH_GRACE_MS after the
 * last one could have expired. Returns 0 or -1 with err set.
 */
static int
bench_phase_run(struct bench *b, unsigned conc, char *err, size_t errlen)
{
	struct bench_phase *ph = &b->ph;
	unsigned i;
	int64_t done, give_up = INT64_MAX, now;
	grpc_event ev;
	struct bench_slot *s;

	b->done_calls = 0;
	for (i = 0; i < conc && i < b->nslots; i++)
		if (!bench_start(b, &b->slots[i], i))
			break;
	while (b->inflight > 0) {
		ev = grpc_completion_queue_next(b->cq,
		    grpcx_deadline_ms(BENCH_POLL_MS), NULL);
		now = now_ns(CLOCK_MONOTONIC);
		if (ev.type == GRPC_QUEUE_TIMEOUT) {
			if (give_up == INT64_MAX && (now >= ph->end_ns ||
			    (ph->max_calls && ph->started >= ph->max_calls)))
				give_up = now + (b->o->timeout_ms +
				    BENCH_GRACE_MS) * BENCH_NS_PER_MS;
			if (now >= give_up) {
				snprintf(err, errlen, "%u calls never "
				    "completed", b->inflight);
				return -1;
			}
			continue;
		}
		if (ev.type != GRPC_OP_COMPLETE) {
			snprintf(err, errlen, "completion queue shut down");
			return -1;
		}
		s = ev.tag;
		done = now;
		bench_check(b, s, ev.success != 0);
		b->done_calls++;
		if (ph->measure && done >= ph->warm_end_ns &&
		    done <= ph->end_ns) {
			int64_t us = (done - s->start_ns) / 1000;
			if (bench_lat_push(b, us > UINT32_MAX ? UINT32_MAX :
			    (uint32_t)us) != 0) {
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			b->last_done_ns = done;
		}
		bench_slot_clear(b, s);
		bench_start(b, s, (unsigned)(s - b->slots));
	}
	return 0;
}

static int
bench_cmp_u32(const void *x, const void *y)
{
	uint32_t a = *(const uint32_t *)x, c = *(const uint32_t *)y;

	return a < c ? -1 : a > c;
}

/* Nearest-rank percentile q (0..1) of the sorted latencies. */
static uint32_t
bench_pct(const struct bench *b, double q)
{
	size_t k;

	if (b->nlat == 0)
		return 0;
	k = (size_t)(q * (double)b->nlat + 0.999999);
	if (k == 0)
		k = 1;
	if (k > b->nlat)
		k = b->nlat;
	return b->lat[k - 1];
}

/*
 * Makes names 0..n-1 (existing and release) with at least
 * o->setup_concurrency calls in flight, so that a run at concurrency 1
 * does not spend most of its time preparing.
 */
static int
bench_setup(struct bench *b, uint64_t n, char *err, size_t errlen)
{
	b->ph = (struct bench_phase){ .op = BENCH_OP_ALLOCATE, .limit = n,
	    .end_ns = INT64_MAX };
	if (bench_phase_run(b, b->nslots, err, errlen) != 0)
		return -1;
	b->r->setup_calls = b->done_calls;
	return 0;
}

/* Creates the channels, the queue and the slots. Returns 0 or -1. */
static int
bench_open(struct bench *b, char *err, size_t errlen)
{
	grpc_channel_credentials *creds;
	grpc_channel_args ca;
	grpc_arg args[5];
	unsigned i;

	b->cq = grpc_completion_queue_create_for_next(NULL);
	b->ch = calloc(b->o->channels, sizeof(*b->ch));
	b->nslots = b->o->concurrency > b->o->setup_concurrency ?
	    b->o->concurrency : b->o->setup_concurrency;
	b->slots = calloc(b->nslots, sizeof(*b->slots));
	if (b->cq == NULL || b->ch == NULL || b->slots == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < b->o->channels; i++) {
		creds = bench_channel_setup(b->o, false, args, &ca);
		b->ch[i] = creds != NULL ? grpc_channel_create(b->o->target,
		    creds, &ca) : NULL;
		if (creds != NULL)
			grpc_channel_credentials_release(creds);
		if (b->ch[i] == NULL) {
			snprintf(err, errlen, "cannot make a channel to %s",
			    b->o->target);
			return -1;
		}
	}
	b->method[BENCH_OP_CHECK] =
	    grpc_slice_from_static_string("/grpc.health.v1.Health/Check");
	b->method[BENCH_OP_ALLOCATE] =
	    grpc_slice_from_static_string("/ipam.v1.Ipam/Allocate");
	b->method[BENCH_OP_RELEASE] =
	    grpc_slice_from_static_string("/ipam.v1.Ipam/Release");
	b->nfam = 0;
	if (b->o->families & BENCH_FAM_V4)
		b->famv[b->nfam++] = PFX_V4;
	if (b->o->families & BENCH_FAM_V6)
		b->famv[b->nfam++] = PFX_V6;
	return 0;
}

/* Closes what bench_open made (any part of it). */
static void
bench_close(struct bench *b)
{
	unsigned i;

	if (b->ch != NULL)
		for (i = 0; i < b->o->channels; i++)
			if (b->ch[i] != NULL)
				grpc_channel_destroy(b->ch[i]);
	if (b->cq != NULL) {
		grpcx_cq_drain(b->cq, NULL);
		grpc_completion_queue_destroy(b->cq);
	}
	free(b->ch);
	free(b->slots);
	free(b->lat);
	free(b->names);
	free(b->tab);
}

int
bench_run(const struct bench_opts *o, struct bench_result *r, char *err,
    size_t errlen)
{
	struct bench b = { .o = o, .r = r };
	struct bench_phase *ph = &b.ph;
	int64_t t0, win_end;
	int rc = -1;

	memset(r, 0, sizeof(*r));
	if (bench_open(&b, err, errlen) != 0)
		goto out;
	if ((o->mode == BENCH_ALLOC_EXISTING || o->mode == BENCH_RELEASE) &&
	    bench_setup(&b, o->names, err, errlen) != 0)
		goto out;
	*ph = (struct bench_phase){ .measure = true, .limit = UINT64_MAX };
	switch (o->mode) {
	case BENCH_HEALTH:
		ph->op = BENCH_OP_CHECK;
		break;
	case BENCH_ALLOC_NEW:
		ph->op = BENCH_OP_ALLOCATE;
		break;
	case BENCH_ALLOC_EXISTING:
		ph->op = BENCH_OP_ALLOCATE;
		ph->limit = o->names;
		ph->cycle = true;
		break;
	case BENCH_RELEASE:
	default:
		ph->op = BENCH_OP_RELEASE;
		ph->limit = o->names;
		break;
	}
	t0 = now_ns(CLOCK_MONOTONIC);
	if (o->count > 0) {
		ph->max_calls = o->count;
		ph->warm_end_ns = t0;
		ph->end_ns = INT64_MAX;
	} else {
		ph->warm_end_ns = t0 + o->warmup_ns;
		ph->end_ns = ph->warm_end_ns + o->duration_ns;
	}
	if (bench_phase_run(&b, o->concurrency, err, errlen) != 0)
		goto out;
	r->total_calls = b.done_calls;
	/* The window ends at its planned end, or earlier when the calls
	 * ran out (release, --count). */
	win_end = ph->end_ns;
	if (ph->end_ns == INT64_MAX || (ph->op == BENCH_OP_RELEASE &&
	    ph->next >= ph->limit && b.last_done_ns < ph->end_ns)) {
		win_end = b.last_done_ns;
		r->ran_out = o->count == 0;
	}
	r->calls = b.nlat;
	r->seconds = win_end > ph->warm_end_ns ?
	    (double)(win_end - ph->warm_end_ns) / BENCH_NS_PER_S : 0;
	r->ops_per_s = r->seconds > 0 ? (double)r->calls / r->seconds : 0;
	qsort(b.lat, b.nlat, sizeof(*b.lat), bench_cmp_u32);
	r->p50_us = bench_pct(&b, 0.50);
	r->p99_us = bench_pct(&b, 0.99);
	r->p999_us = bench_pct(&b, 0.999);
	r->max_us = b.nlat ? b.lat[b.nlat - 1] : 0;
	rc = 0;
out:
	bench_close(&b);
	return rc;
}

/* One blocking Check on a fresh channel; true if it answered SERVING. */
static bool
bench_probe(const struct bench_opts *o)
{
	Grpc__Health__V1__HealthCheckRequest hc =
	    GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	ProtobufCMessage *rs = NULL;
	grpc_channel_credentials *creds;
	struct grpcx_client *cl;
	struct grpcx_status st;
	grpc_channel_args ca;
	grpc_arg args[5];
	char err[256];
	bool serving;

	if ((creds = bench_channel_setup(o, true, args, &ca)) == NULL ||
	    (cl = grpcx_client_new_creds(o->target, creds, &ca, err,
	    sizeof(err))) == NULL)
		return false;
	hc.service = (char *)"";
	serving = grpcx_call(cl, "/grpc.health.v1.Health/Check", &hc.base,
	    &grpc__health__v1__health_check_response__descriptor,
	    BENCH_READY_CALL_MS, &rs, &st) == GRPC_STATUS_OK &&
	    ((Grpc__Health__V1__HealthCheckResponse *)rs)->status ==
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	protobuf_c_message_free_unpacked(rs, NULL);
	grpcx_client_free(cl);
	return serving;
}

int
bench_wait_ready(const struct bench_opts *o, int64_t *ready_ns,
    unsigned *attempts, char *err, size_t errlen)
{
	struct timespec pause = { 0, BENCH_READY_STEP_MS * BENCH_NS_PER_MS };
	int64_t limit = now_ns(CLOCK_MONOTONIC) + o->duration_ns;

	*attempts = 0;
	for (;;) {
		(*attempts)++;
		if (bench_probe(o)) {
			*ready_ns = now_ns(CLOCK_REALTIME);
			return 0;
		}
		if (now_ns(CLOCK_MONOTONIC) >= limit) {
			snprintf(err, errlen, "%s not SERVING after %u "
			    "attempts", o->target, *attempts);
			return -1;
		}
		nanosleep(&pause, NULL);
	}
}
