/*
 * bench_alloc.c - cost of allocating the k-th child of one IPv6 /64 node.
 *
 * For k = 1k, 10k and 100k the pool of a node prefix (first and last address
 * reserved, as the daemon does) is filled with k - 1 single-address children
 * by first fit; then one cycle "find the first fit, link it, unlink it" is
 * timed many times (the pool is the same before and after each cycle, so
 * every cycle allocates the k-th child). The same is measured again after a
 * random half of the children has been released, which leaves ~k/2 holes and
 * as many free runs in the index. Each figure is the best of several rounds
 * (the least disturbed by the rest of the machine).
 *
 * The last line, "alloc_flatness ratio_100k_over_1k=<x>", is the larger of
 * the two 100k/1k ratios: the index promises O(log n), so it must stay near
 * 1 (at most 1.5).
 *
 * Usage: bench_alloc [cycles-per-round]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "alloc.h"

/* Rounds per measurement (after one untimed warm-up round); the fastest
 * one is reported. */
#define BENCH_ROUNDS 11

/* Default timed cycles per round. */
#define BENCH_CYCLES 100000

/* The node prefix every run divides. */
#define BENCH_NODE "fd00:0:0:101::/64"

/* One row of the table. */
struct bench_row {
	size_t k;		/* the child being allocated (1-based) */
	double filled_ns;	/* ns per cycle with children 1..k-1 */
	double half_ns;		/* ns per cycle after releasing half */
	size_t half_children;	/* children left after the release */
};

/* xorshift64*: fixed-seed PRNG so that every run releases the same half. */
static uint64_t
bench_rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/* Monotonic time in nanoseconds. */
static double
bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Prints why the benchmark cannot go on and exits. */
static void
bench_fail(const char *what, int rc)
{
	fprintf(stderr, "bench_alloc: %s failed (%d)\n", what, rc);
	exit(1);
}

/*
 * Best-of-rounds ns for one find + link + unlink cycle, the registry's
 * calls. The cycle leaves the pool as it found it, so every timed
 * allocation is of the same child.
 */
static double
bench_cycles(struct alloc_pool *pool, long cycles)
{
	struct alloc_node n;
	double best = 0;
	struct pfx p;
	int rc;

	for (int round = -1; round < BENCH_ROUNDS; round++) {
		double t0 = bench_now_ns(), dt;

		for (long i = 0; i < cycles; i++) {
			rc = alloc_pool_find(pool, 128, &p);
			if (rc != ALLOC_OK)
				bench_fail("find", rc);
			alloc_node_init(&n, &p);
			rc = alloc_pool_link(pool, &n);
			if (rc != ALLOC_OK)
				bench_fail("link", rc);
			rc = alloc_pool_unlink(pool, &n);
			if (rc != ALLOC_OK)
				bench_fail("unlink", rc);
		}
		dt = (bench_now_ns() - t0) / (double)cycles;
		if (round < 0)
			continue;	/* warm-up: caches, branch history */
		if (round == 0 || dt < best)
			best = dt;
	}
	return best;
}

/* Measures one k: fill to k - 1, time, release a random half, time. */
static void
bench_one(size_t k, long cycles, struct bench_row *row)
{
	struct alloc_node *kids, **order, *t;
	struct pfx node, p;
	struct alloc_pool *pool;
	char err[128];
	uint64_t seed = 0x9e3779b97f4a7c15ull ^ k;
	size_t i, j, n = k - 1;
	int rc;

	if (pfx_parse(BENCH_NODE, &node, err, sizeof(err)) != 0) {
		fprintf(stderr, "bench_alloc: %s\n", err);
		exit(1);
	}
	pool = alloc_pool_new(&node);
	kids = calloc(n ? n : 1, sizeof(*kids));
	order = calloc(n ? n : 1, sizeof(*order));
	if (pool == NULL || kids == NULL || order == NULL)
		bench_fail("allocation", ALLOC_ENOMEM);
	if (alloc_pool_reserve(pool, pfx_first(&node)) != ALLOC_OK ||
	    alloc_pool_reserve(pool, pfx_last(&node)) != ALLOC_OK)
		bench_fail("reserve", -1);
	for (i = 0; i < n; i++) {
		rc = alloc_pool_find(pool, 128, &p);
		if (rc != ALLOC_OK)
			bench_fail("fill find", rc);
		alloc_node_init(&kids[i], &p);
		rc = alloc_pool_link(pool, &kids[i]);
		if (rc != ALLOC_OK)
			bench_fail("fill link", rc);
		order[i] = &kids[i];
	}
	row->k = k;
	row->filled_ns = bench_cycles(pool, cycles);

	/* release a random half: shuffle, then unlink the first n/2 */
	for (i = n; i > 1; i--) {
		j = (size_t)(bench_rnd(&seed) % i);
		t = order[i - 1];
		order[i - 1] = order[j];
		order[j] = t;
	}
	for (i = 0; i < n / 2; i++) {
		rc = alloc_pool_unlink(pool, order[i]);
		if (rc != ALLOC_OK)
			bench_fail("release", rc);
	}
	row->half_children = n - n / 2;
	row->half_ns = bench_cycles(pool, cycles);

	alloc_pool_free(pool);
	free(kids);
	free(order);
}

int
main(int argc, char **argv)
{
	static const size_t ks[] = { 1000, 10000, 100000 };
	struct bench_row rows[3];
	long cycles = BENCH_CYCLES;
	double r_filled, r_half;

	if (argc > 1) {
		cycles = strtol(argv[1], NULL, 10);
		if (cycles <= 0) {
			fprintf(stderr, "usage: bench_alloc [cycles]\n");
			return 2;
		}
	}
	printf("alloc: allocate the k-th child of one IPv6 /64 node "
	    "(%s, first and last reserved)\n", BENCH_NODE);
	printf("ns per find+link+unlink, best of %d rounds of %ld cycles\n",
	    BENCH_ROUNDS, cycles);
	printf("%8s  %12s  %19s  %14s\n", "k", "filled ns/op",
	    "half-released ns/op", "children left");
	for (size_t i = 0; i < 3; i++) {
		bench_one(ks[i], cycles, &rows[i]);
		printf("%8zu  %12.1f  %19.1f  %14zu\n", rows[i].k,
		    rows[i].filled_ns, rows[i].half_ns, rows[i].half_children);
		fflush(stdout);
	}
	r_filled = rows[2].filled_ns / rows[0].filled_ns;
	r_half = rows[2].half_ns / rows[0].half_ns;
	printf("ratio 100k/1k: filled %.2f, half-released %.2f\n", r_filled,
	    r_half);
	printf("alloc_flatness ratio_100k_over_1k=%.2f\n",
	    r_filled > r_half ? r_filled : r_half);
	return 0;
}
