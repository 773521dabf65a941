/*
 * bench.h - ipam-bench's load engine: a closed loop of unary calls kept in
 * flight on one completion queue, with latency figures and a check that no
 * two names were given the same address.
 */
#ifndef IPAM_BENCH_H
#define IPAM_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tls;			/* lib/tls.h */

/* What is measured. */
enum bench_mode {
	BENCH_HEALTH,		/* Health.Check: the null-RPC baseline */
	BENCH_ALLOC_NEW,	/* Allocate of names never seen before */
	BENCH_ALLOC_EXISTING,	/* Allocate (renewal) of names made in setup */
	BENCH_RELEASE,		/* Release of names made in setup */
	BENCH_READY,		/* wait until Health says SERVING, print when */
};

/* Families to spread names over (bit mask). */
#define BENCH_FAM_V4 1
#define BENCH_FAM_V6 2

/* The command line, checked. */
struct bench_opts {
	enum bench_mode mode;		/* what to run */
	const char *target;		/* "host:port" of the server */
	unsigned concurrency;		/* calls kept in flight */
	unsigned setup_concurrency;	/* ... while making names in setup */
	unsigned channels;		/* connections to spread calls over */
	int64_t duration_ns;		/* measured time (after the warm-up) */
	int64_t warmup_ns;		/* time run but not measured */
	char **conduits;		/* conduit names, at least one */
	size_t nconduits;		/* entries in conduits */
	unsigned nodes;			/* node names to spread children over */
	const char *trench;		/* trench name of every request */
	const char *node_prefix;	/* nodes are "<node_prefix>-<n>" */
	const char *tag;		/* children are "<tag>-<n>" */
	uint64_t names;			/* existing/release: names made in setup */
	uint64_t count;			/* allocate-new: stop after this many
					 * calls, untimed (0: run by time) */
	int families;			/* BENCH_FAM_* mask */
	int64_t timeout_ms;		/* deadline of each call */
	const char *tls_ca;		/* --tls-ca, NULL = system roots */
	const char *tls_cert;		/* --tls-cert, NULL = none */
	const char *tls_key;		/* --tls-key, with --tls-cert */
	bool use_tls;			/* any --tls-* given */
	struct tls *tls;		/* those files read, NULL = plaintext */
	const char *tls_server_name;	/* --tls-server-name, NULL = host */
};

/* What a run measured. */
struct bench_result {
	uint64_t calls;			/* calls completed in the window */
	uint64_t setup_calls;		/* calls of the setup phase */
	uint64_t total_calls;		/* calls of warm-up and window */
	uint64_t errors;		/* failed or wrong answers (all phases) */
	uint64_t duplicates;		/* answers giving a taken address */
	uint64_t mismatches;		/* renewals answering another address */
	double seconds;			/* length of the measured window */
	double ops_per_s;		/* calls / seconds */
	uint32_t p50_us, p99_us, p999_us, max_us; /* latency in the window */
	bool ran_out;			/* release: names ran out before the end */
	char first_error[256];		/* text of the first error, "" if none */
};

/*
 * Runs o->mode against o->target (grpc_init done by the caller): the setup
 * phase if the mode needs one, then the warm-up and the measured window.
 * Returns 0 (errors in calls are counted in r, not failures of the run),
 * or -1 with err set when the run itself could not be done.
 */
int bench_run(const struct bench_opts *o, struct bench_result *r, char *err,
    size_t errlen);

/*
 * Polls Health.Check on a fresh connection every couple of milliseconds
 * until it answers SERVING or o->duration_ns passes. On success stores the
 * CLOCK_REALTIME time of the SERVING answer in *ready_ns and the number of
 * attempts in *attempts and returns 0; -1 with err set otherwise.
 */
int bench_wait_ready(const struct bench_opts *o, int64_t *ready_ns,
    unsigned *attempts, char *err, size_t errlen);

#endif
