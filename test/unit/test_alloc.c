/*
 * test_alloc.c - unit tests of lib/alloc.c: Meridio's first-fit order on a
 * node prefix, mixed child lengths, full pools, refused links, the edges of
 * the address space, and a randomised comparison of every answer with a
 * naive bitmap model of the same pool.
 */
#include <criterion/criterion.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

/* Parses a prefix that the test knows to be valid. */
static struct pfx
P(const char *s)
{
	struct pfx p;
	char err[128];

	cr_assert_eq(pfx_parse(s, &p, err, sizeof(err)), 0, "%s", err);
	return p;
}

/* Parses a bare address that the test knows to be valid. */
static pfx_addr
A(const char *s)
{
	pfx_addr a;
	int family;
	char err[128];

	cr_assert_eq(pfx_parse_addr(s, &a, &family, err, sizeof(err)), 0,
	    "%s", err);
	return a;
}

/* Finds a block of length len; it must be want (a prefix text). */
static void
expect_find(struct alloc_pool *pool, unsigned len, const char *want)
{
	struct pfx got;
	char buf[PFX_STRLEN];
	int rc = alloc_pool_find(pool, len, &got);

	cr_assert_eq(rc, ALLOC_OK, "find /%u: rc %d, want %s", len, rc, want);
	pfx_format(&got, buf);
	cr_assert_str_eq(buf, want, "find /%u", len);
}

/* The nodes of the children a test links, taken in order. */
#define KIDS_MAX 65536
static struct alloc_node kids[KIDS_MAX];
static size_t nkids;

/* The pools a test makes with plain_pool or node_pool, freed after it. */
static struct alloc_pool *pools[16];
static size_t npools;

/* Every test starts with an empty arena of nodes. */
static void
kids_reset(void)
{
	nkids = 0;
}

static void
pools_free(void)
{
	while (npools > 0)
		alloc_pool_free(pools[--npools]);
}

TestSuite(alloc, .init = kids_reset, .fini = pools_free);

/* Links a child of prefix p on the next node of the arena; returns the rc.
 * A refused node is used again by the next call. */
static int
link_pfx(struct alloc_pool *pool, const struct pfx *p)
{
	int rc;

	cr_assert_lt(nkids, KIDS_MAX);
	alloc_node_init(&kids[nkids], p);
	rc = alloc_pool_link(pool, &kids[nkids]);
	if (rc == ALLOC_OK)
		nkids++;
	return rc;
}

/* Unlinks the child equal to p; -1 when there is none. */
static int
unlink_pfx(struct alloc_pool *pool, const struct pfx *p)
{
	struct alloc_node *n = alloc_pool_lookup(pool, p);

	return n != NULL ? alloc_pool_unlink(pool, n) : -1;
}

/* The number of children, by iteration. */
static size_t
count(const struct alloc_pool *pool)
{
	size_t n = 0;

	for (struct alloc_node *it = alloc_pool_first(pool); it != NULL;
	    it = alloc_pool_next(pool, it))
		n++;
	return n;
}

/* Finds a block of length len and links it; it must be want. */
static void
expect_alloc(struct alloc_pool *pool, unsigned len, const char *want)
{
	struct pfx got;

	expect_find(pool, len, want);
	cr_assert_eq(alloc_pool_find(pool, len, &got), ALLOC_OK);
	cr_assert_eq(link_pfx(pool, &got), ALLOC_OK);
}

/* Links the child given as text; the result must be rc. */
static void
expect_link(struct alloc_pool *pool, const char *s, int rc)
{
	struct pfx p = P(s);

	cr_assert_eq(link_pfx(pool, &p), rc, "%s", s);
}

/* Unlinks the child given as text; it must exist. */
static void
must_remove(struct alloc_pool *pool, const char *s)
{
	struct pfx p = P(s);

	cr_assert_eq(unlink_pfx(pool, &p), ALLOC_OK, "%s", s);
}

/* A pool with nothing reserved, freed after the test. */
static struct alloc_pool *
plain_pool(const char *s)
{
	struct pfx p = P(s);
	struct alloc_pool *pool = alloc_pool_new(&p);

	cr_assert_not_null(pool);
	cr_assert_lt(npools, sizeof(pools) / sizeof(pools[0]));
	pools[npools++] = pool;
	return pool;
}

/* A node prefix as the daemon makes one: first and last address reserved. */
static struct alloc_pool *
node_pool(const char *s)
{
	struct alloc_pool *pool = plain_pool(s);
	struct pfx p = P(s);

	cr_assert_eq(alloc_pool_reserve(pool, pfx_first(&p)), ALLOC_OK);
	cr_assert_eq(alloc_pool_reserve(pool, pfx_last(&p)), ALLOC_OK);
	return pool;
}

Test(alloc, node_first_fit_v4)
{
	struct alloc_pool *pool = node_pool("169.255.16.0/24");

	expect_alloc(pool, 32, "169.255.16.1/32");
	expect_alloc(pool, 32, "169.255.16.2/32");
	expect_alloc(pool, 32, "169.255.16.3/32");
	must_remove(pool, "169.255.16.2/32");
	expect_alloc(pool, 32, "169.255.16.2/32");
	expect_alloc(pool, 32, "169.255.16.4/32");
	/* a release further down wins over the end of the run */
	must_remove(pool, "169.255.16.1/32");
	must_remove(pool, "169.255.16.3/32");
	expect_alloc(pool, 32, "169.255.16.1/32");
	expect_alloc(pool, 32, "169.255.16.3/32");
	expect_alloc(pool, 32, "169.255.16.5/32");
	cr_assert_eq(count(pool), 5);
}

/*
 * Children of several lengths (left by a configuration change): the answer
 * is the lowest aligned block overlapping none of them.
 */
Test(alloc, mixed_lengths)
{
	struct alloc_pool *pool = plain_pool("10.0.0.0/24");

	expect_link(pool, "10.0.0.1/32", ALLOC_OK);
	expect_find(pool, 32, "10.0.0.0/32");
	expect_find(pool, 31, "10.0.0.2/31");
	expect_find(pool, 30, "10.0.0.4/30");
	expect_find(pool, 25, "10.0.0.128/25");
	expect_link(pool, "10.0.0.4/30", ALLOC_OK);
	expect_find(pool, 30, "10.0.0.8/30");
	expect_find(pool, 29, "10.0.0.8/29");
	expect_find(pool, 31, "10.0.0.2/31");
	/* no /25 is free with children in both halves */
	struct pfx got;
	expect_link(pool, "10.0.0.128/26", ALLOC_OK);
	cr_assert_eq(alloc_pool_find(pool, 25, &got), ALLOC_ENOSPACE);
	expect_find(pool, 26, "10.0.0.64/26");
	expect_link(pool, "10.0.0.64/32", ALLOC_OK);
	expect_find(pool, 26, "10.0.0.192/26");
	/* removing the small ones in the middle opens the low blocks again */
	must_remove(pool, "10.0.0.1/32");
	expect_find(pool, 30, "10.0.0.0/30");
	expect_find(pool, 29, "10.0.0.8/29");
	must_remove(pool, "10.0.0.4/30");
	expect_find(pool, 29, "10.0.0.0/29");
	expect_find(pool, 26, "10.0.0.0/26");
	must_remove(pool, "10.0.0.64/32");
	expect_find(pool, 25, "10.0.0.0/25");
	must_remove(pool, "10.0.0.128/26");
	expect_find(pool, 25, "10.0.0.0/25");
	cr_assert_eq(count(pool), 0);
}

Test(alloc, full_pool)
{
	struct alloc_pool *pool = node_pool("10.0.0.0/29");
	struct pfx got;

	for (int i = 1; i <= 6; i++) {
		cr_assert_eq(alloc_pool_find(pool, 32, &got), ALLOC_OK);
		cr_assert(got.addr == 0x0a000000u + (pfx_addr)i);
		cr_assert_eq(link_pfx(pool, &got), ALLOC_OK);
	}
	cr_assert_eq(alloc_pool_find(pool, 32, &got), ALLOC_ENOSPACE);
	cr_assert_eq(alloc_pool_find(pool, 31, &got), ALLOC_ENOSPACE);
	cr_assert_eq(alloc_pool_find(pool, 30, &got), ALLOC_ENOSPACE);
	must_remove(pool, "10.0.0.5/32");
	expect_find(pool, 32, "10.0.0.5/32");
	cr_assert_eq(alloc_pool_find(pool, 31, &got), ALLOC_ENOSPACE);
	must_remove(pool, "10.0.0.4/32");
	expect_find(pool, 31, "10.0.0.4/31");
	cr_assert_eq(count(pool), 4);
}

Test(alloc, refused_links_change_nothing)
{
	static const struct {
		const char *text;	/* the child */
		int rc;			/* what linking it gives */
	} refused[] = {
		{ "10.0.1.0/32", ALLOC_EOUTSIDE },
		{ "10.0.0.0/16", ALLOC_EOUTSIDE },
		{ "::a00:5/128", ALLOC_EOUTSIDE },
		{ "10.0.0.5/32", ALLOC_EOVERLAP },
		{ "10.0.0.0/29", ALLOC_EOVERLAP },
		{ "10.0.0.4/30", ALLOC_EOVERLAP },
		/* the reserved first and last addresses */
		{ "10.0.0.0/32", ALLOC_EOVERLAP },
		{ "10.0.0.254/31", ALLOC_EOVERLAP },
		{ "10.0.0.128/25", ALLOC_EOVERLAP },
		/* the parent itself */
		{ "10.0.0.0/24", ALLOC_EINVAL },
	};
	struct alloc_pool *pool = node_pool("10.0.0.0/24");
	struct pfx p;

	expect_link(pool, "10.0.0.4/30", ALLOC_OK);
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		expect_link(pool, refused[i].text, refused[i].rc);
	/* malformed: host bits set, length past the family */
	p = P("10.0.0.0/24");
	p.addr = 0x0a000009u;
	p.len = 30;
	cr_assert_eq(link_pfx(pool, &p), ALLOC_EINVAL);
	p.len = 33;
	cr_assert_eq(link_pfx(pool, &p), ALLOC_EINVAL);

	cr_assert_eq(count(pool), 1);
	p = P("10.0.0.4/30");
	cr_assert_eq(alloc_pool_lookup(pool, &p), &kids[0]);
	expect_find(pool, 32, "10.0.0.1/32");
	expect_find(pool, 30, "10.0.0.8/30");
	expect_find(pool, 26, "10.0.0.64/26");
	/* the reserved last address spoils the upper /25 */
	cr_assert_eq(alloc_pool_find(pool, 25, &p), ALLOC_ENOSPACE);
}

Test(alloc, bad_lengths_and_removes)
{
	struct alloc_pool *pool = node_pool("10.0.0.0/24");
	struct pfx p;

	cr_assert_eq(alloc_pool_find(pool, 24, &p), ALLOC_EINVAL);
	cr_assert_eq(alloc_pool_find(pool, 8, &p), ALLOC_EINVAL);
	cr_assert_eq(alloc_pool_find(pool, 33, &p), ALLOC_EINVAL);
	p = P("10.0.0.1/32");
	cr_assert_eq(unlink_pfx(pool, &p), -1);
	/* a reserved address is not a child */
	p = P("10.0.0.0/32");
	cr_assert_eq(unlink_pfx(pool, &p), -1);
	cr_assert_null(alloc_pool_lookup(pool, &p));
	/* same address, other length: not the same child */
	expect_link(pool, "10.0.0.4/30", ALLOC_OK);
	p = P("10.0.0.4/31");
	cr_assert_eq(unlink_pfx(pool, &p), -1);
	cr_assert_eq(count(pool), 1);
}

Test(alloc, reserve)
{
	struct alloc_pool *pool = plain_pool("10.0.0.0/24");

	cr_assert_eq(alloc_pool_usable(pool), 256);
	cr_assert_eq(alloc_pool_reserve(pool, A("10.0.1.0")), ALLOC_EOUTSIDE);
	cr_assert_eq(alloc_pool_reserve(pool, A("10.0.0.1")), ALLOC_OK);
	cr_assert_eq(alloc_pool_usable(pool), 255);
	/* twice is harmless and counted once */
	cr_assert_eq(alloc_pool_reserve(pool, A("10.0.0.1")), ALLOC_OK);
	cr_assert_eq(alloc_pool_usable(pool), 255);
	expect_link(pool, "10.0.0.8/30", ALLOC_OK);
	cr_assert_eq(alloc_pool_reserve(pool, A("10.0.0.9")), ALLOC_EOVERLAP);
	cr_assert_eq(alloc_pool_usable(pool), 255);
	/* a reserved address in the middle splits the run */
	cr_assert_eq(alloc_pool_reserve(pool, A("10.0.0.2")), ALLOC_OK);
	expect_find(pool, 32, "10.0.0.0/32");
	expect_find(pool, 31, "10.0.0.4/31");
	expect_find(pool, 30, "10.0.0.4/30");
	expect_find(pool, 29, "10.0.0.16/29");
	cr_assert_eq(alloc_pool_usable(pool), 254);
	cr_assert_eq(count(pool), 1);
}

Test(alloc, slash0_v6)
{
	struct alloc_pool *pool = plain_pool("::/0");
	struct pfx got;

	cr_assert_eq(alloc_pool_usable(pool), SIZE_MAX);
	expect_find(pool, 128, "::/128");
	expect_alloc(pool, 1, "::/1");
	expect_alloc(pool, 1, "8000::/1");
	cr_assert_eq(alloc_pool_find(pool, 128, &got), ALLOC_ENOSPACE);
	cr_assert_eq(alloc_pool_find(pool, 1, &got), ALLOC_ENOSPACE);
	must_remove(pool, "8000::/1");
	expect_find(pool, 128, "8000::/128");
	expect_find(pool, 1, "8000::/1");
	must_remove(pool, "::/1");
	expect_find(pool, 1, "::/1");
}

Test(alloc, slash0_v4_reserved)
{
	struct alloc_pool *pool = node_pool("0.0.0.0/0");
	struct pfx got;

	cr_assert_eq(alloc_pool_usable(pool), 4294967294u);
	cr_assert_eq(alloc_pool_find(pool, 1, &got), ALLOC_ENOSPACE);
	expect_find(pool, 2, "64.0.0.0/2");
	expect_find(pool, 32, "0.0.0.1/32");
	expect_link(pool, "255.255.255.254/32", ALLOC_OK);
	expect_find(pool, 31, "0.0.0.2/31");
}

/*
 * Usable addresses, saturated at SIZE_MAX, and what a find of a single
 * address gives: a /31 or /127 node with both ends reserved has no room,
 * a /128 parent has no longer block.
 */
Test(alloc, usable_and_tiny_parents)
{
	static const struct {
		const char *parent;
		bool node;		/* first and last address reserved */
		size_t usable;
		int rc;			/* find of one address */
	} cases[] = {
		{ "10.0.0.0/31", true, 0, ALLOC_ENOSPACE },
		{ "fd00::/127", true, 0, ALLOC_ENOSPACE },
		{ "fd00::1/128", false, 1, ALLOC_EINVAL },
		{ "10.0.0.0/30", true, 2, ALLOC_OK },
		{ "169.255.16.0/24", true, 254, ALLOC_OK },
		{ "fd00:0:0:101::/64", true, SIZE_MAX - 1, ALLOC_OK },
		{ "fd00::/63", true, SIZE_MAX, ALLOC_OK },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct alloc_pool *pool = cases[i].node ?
		    node_pool(cases[i].parent) : plain_pool(cases[i].parent);
		struct pfx got;
		unsigned bits = pfx_family_bits(P(cases[i].parent).family);

		cr_assert_eq(alloc_pool_usable(pool), cases[i].usable, "%s",
		    cases[i].parent);
		cr_assert_eq(alloc_pool_find(pool, bits, &got), cases[i].rc,
		    "%s", cases[i].parent);
		cr_assert_eq(count(pool), 0);
	}
}

/* The very last addresses of the space: no carry past all-ones. */
Test(alloc, top_of_address_space)
{
	struct alloc_pool *pool =
	    plain_pool("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc/126");
	struct pfx got;

	expect_alloc(pool, 127, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc/127");
	expect_alloc(pool, 128, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/128");
	expect_alloc(pool, 128, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");
	cr_assert_eq(alloc_pool_find(pool, 128, &got), ALLOC_ENOSPACE);
	must_remove(pool, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");
	expect_find(pool, 128, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");
	must_remove(pool, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/128");
	expect_find(pool, 127, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127");

	pool = plain_pool("255.255.255.0/24");
	expect_find(pool, 25, "255.255.255.0/25");
	expect_link(pool, "255.255.255.0/25", ALLOC_OK);
	expect_alloc(pool, 26, "255.255.255.128/26");
	expect_alloc(pool, 26, "255.255.255.192/26");
	cr_assert_eq(alloc_pool_find(pool, 32, &got), ALLOC_ENOSPACE);
	must_remove(pool, "255.255.255.192/26");
	expect_find(pool, 26, "255.255.255.192/26");
	expect_find(pool, 32, "255.255.255.192/32");
	cr_assert_eq(alloc_pool_find(pool, 25, &got), ALLOC_ENOSPACE);
}

Test(alloc, free_null)
{
	alloc_pool_free(NULL);
}

/* Walk state: the prefixes and data seen, in order. */
struct walk_seen {
	struct pfx p[8];	/* prefixes in call order */
	void *data[8];		/* data in call order */
	int n;			/* calls so far */
	int stop_at;		/* return non-zero on this call (1-based) */
};

/* Records one walk call; stops the walk at stop_at with 42. */
static int
walk_record(void *arg, const struct pfx *p, void *data)
{
	struct walk_seen *w = arg;

	cr_assert_lt(w->n, 8);
	w->p[w->n] = *p;
	w->data[w->n] = data;
	w->n++;
	return w->n == w->stop_at ? 42 : 0;
}

Test(alloc, lookup_walk_count)
{
	struct alloc_pool *pool = node_pool("10.0.0.0/24");
	struct alloc_node *d1 = &kids[0], *d2 = &kids[1], *d3 = &kids[2];
	struct walk_seen w = { .n = 0, .stop_at = 0 };
	struct pfx p;

	expect_link(pool, "10.0.0.64/26", ALLOC_OK);
	expect_link(pool, "10.0.0.1/32", ALLOC_OK);
	expect_link(pool, "10.0.0.4/30", ALLOC_OK);
	cr_assert_eq(count(pool), 3);
	p = P("10.0.0.4/30");
	cr_assert_eq(alloc_pool_lookup(pool, &p), d3);
	p = P("10.0.0.4/31");
	cr_assert_null(alloc_pool_lookup(pool, &p));
	cr_assert_eq(alloc_pool_walk(pool, walk_record, &w), 0);
	cr_assert_eq(w.n, 3);
	cr_assert(w.p[0].addr == 0x0a000001u && w.data[0] == d2);
	cr_assert(w.p[1].addr == 0x0a000004u && w.data[1] == d3);
	cr_assert(w.p[2].addr == 0x0a000040u && w.data[2] == d1);
	w.n = 0;
	w.stop_at = 2;
	cr_assert_eq(alloc_pool_walk(pool, walk_record, &w), 42);
	cr_assert_eq(w.n, 2);
	must_remove(pool, "10.0.0.1/32");
	p = P("10.0.0.1/32");
	cr_assert_null(alloc_pool_lookup(pool, &p));
	cr_assert_eq(count(pool), 2);
}

/* ---- out of memory ------------------------------------------------------ */

/*
 * Allocation failure injection: this program's malloc and calloc stand in
 * for the C library's (glibc allows replacing them; free stays glibc's, and
 * the memory still comes from glibc's allocator). While oom_countdown is
 * >= 0, that many more allocations succeed and the next one fails. Not
 * built under AddressSanitizer, which replaces malloc itself.
 */
#ifndef __SANITIZE_ADDRESS__

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);

/* Allocations left before the injected failure; -1 = never fail. */
static int oom_countdown = -1;

/* True if this allocation is the one that must fail. */
static bool
oom_now(void)
{
	if (oom_countdown < 0)
		return false;
	if (oom_countdown == 0) {
		oom_countdown = -1;
		return true;
	}
	oom_countdown--;
	return false;
}

void *
malloc(size_t size)
{
	return oom_now() ? NULL : __libc_malloc(size);
}

void *
calloc(size_t n, size_t size)
{
	return oom_now() ? NULL : __libc_calloc(n, size);
}

/* What a caller can observe of a pool, to check that nothing changed. */
struct snapshot {
	size_t count;		/* children */
	size_t usable;		/* alloc_pool_usable */
	int rc[9];		/* find rc for lengths 24 + 1 .. 24 + 8 */
	struct pfx found[9];	/* find results for those lengths */
	pfx_addr walked[256];	/* child addresses in walk order */
	size_t nwalked;		/* entries of walked */
};

/* Records one walked child into a snapshot. */
static int
snap_walk(void *arg, const struct pfx *p, void *data)
{
	struct snapshot *sn = arg;

	cr_assert_lt(sn->nwalked, 256);
	sn->walked[sn->nwalked++] = p->addr;
	return 0;
}

/* Takes a snapshot of a pool whose parent is a v4 /24. */
static void
snap(const struct alloc_pool *pool, struct snapshot *sn)
{
	memset(sn, 0, sizeof(*sn));
	sn->count = count(pool);
	sn->usable = alloc_pool_usable(pool);
	for (unsigned i = 1; i <= 8; i++)
		sn->rc[i] = alloc_pool_find(pool, 24 + i, &sn->found[i]);
	alloc_pool_walk(pool, snap_walk, sn);
}

/* Asserts two snapshots are the same. */
static void
snap_same(const struct snapshot *a, const struct snapshot *b)
{
	cr_assert_eq(a->count, b->count);
	cr_assert_eq(a->usable, b->usable);
	for (unsigned i = 1; i <= 8; i++) {
		cr_assert_eq(a->rc[i], b->rc[i]);
		if (a->rc[i] == ALLOC_OK)
			cr_assert(pfx_equal(&a->found[i], &b->found[i]));
	}
	cr_assert_eq(a->nwalked, b->nwalked);
	for (size_t i = 0; i < a->nwalked; i++)
		cr_assert(a->walked[i] == b->walked[i]);
}

/* Operations the failure sweep applies. */
enum oom_op {
	OOM_LINK,	/* alloc_pool_link */
	OOM_UNLINK,	/* alloc_pool_unlink */
	OOM_RESERVE,	/* alloc_pool_reserve */
};

/*
 * Runs one operation with the n-th allocation failing, for n = 0, 1, ...
 * until it succeeds: every ALLOC_ENOMEM must leave the pool exactly as it
 * was, and the same node can be tried again. Returns how many failures
 * were seen.
 */
static int
oom_sweep(struct alloc_pool *pool, enum oom_op op, const struct pfx *p)
{
	struct snapshot before, after;
	int failures = 0, rc = ALLOC_ENOMEM;

	for (int n = 0; n < 16 && rc == ALLOC_ENOMEM; n++) {
		snap(pool, &before);
		oom_countdown = n;
		if (op == OOM_LINK)
			rc = link_pfx(pool, p);
		else if (op == OOM_UNLINK)
			rc = unlink_pfx(pool, p);
		else
			rc = alloc_pool_reserve(pool, p->addr);
		oom_countdown = -1;
		if (rc == ALLOC_ENOMEM) {
			failures++;
			snap(pool, &after);
			snap_same(&before, &after);
		}
	}
	cr_assert_eq(rc, ALLOC_OK);
	return failures;
}

/*
 * A link that splits a free run, an unlink that leaves a run with no
 * neighbour and a reserve need memory; when it fails, ALLOC_ENOMEM and the
 * pool is unchanged.
 */
Test(alloc, out_of_memory_changes_nothing)
{
	struct alloc_pool *pool;
	struct pfx parent = P("10.0.0.0/24"), p;
	int failures = 0;

	oom_countdown = 0;
	cr_assert_null(alloc_pool_new(&parent));
	oom_countdown = 1;
	cr_assert_null(alloc_pool_new(&parent));
	oom_countdown = -1;
	pool = node_pool("10.0.0.0/24");

	/* every other address, so each link splits a run */
	for (unsigned i = 2; i < 80; i += 2) {
		p = pfx_make(PFX_V4, 0x0a000000u + i, 32);
		failures += oom_sweep(pool, OOM_LINK, &p);
	}
	cr_assert_eq(failures, 39, "each split needs exactly one run");
	/* fill the gaps, then unlink from the middle: a new run is needed */
	for (unsigned i = 3; i < 80; i += 2) {
		p = pfx_make(PFX_V4, 0x0a000000u + i, 32);
		cr_assert_eq(link_pfx(pool, &p), ALLOC_OK);
	}
	p = P("10.0.0.40/32");
	cr_assert_eq(oom_sweep(pool, OOM_UNLINK, &p), 1);
	cr_assert_null(alloc_pool_lookup(pool, &p));
	/* a reserved address in the middle of a run splits it */
	p = P("10.0.0.200/32");
	cr_assert_geq(oom_sweep(pool, OOM_RESERVE, &p), 2);
	expect_find(pool, 32, "10.0.0.1/32");
	expect_find(pool, 31, "10.0.0.80/31");
	expect_find(pool, 29, "10.0.0.80/29");
	cr_assert_eq(alloc_pool_usable(pool), 253);
	cr_assert_eq(count(pool), 77);
}

#endif /* !__SANITIZE_ADDRESS__ */

/* ---- randomised comparison with a naive model -------------------------- */

/* Host bits of the model's parents: 4096 addresses. */
#define MODEL_HOST 12
#define MODEL_SIZE (1u << MODEL_HOST)

/* The naive model: who owns each address of the parent. */
struct model {
	struct pfx parent;		/* the parent prefix */
	int owner[MODEL_SIZE];		/* 0 free, -1 reserved, else child
					 * index + 1 */
	struct pfx child[MODEL_SIZE];	/* children by index */
	bool live[MODEL_SIZE];		/* index in use */
	int nlive;			/* live children */
};

/* xorshift64*: a small PRNG so that every libc gives the same run. */
static uint64_t
rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/* True if the block of 2^host addresses at offset off is all free. */
static bool
model_free(const struct model *m, unsigned off, unsigned host)
{
	for (unsigned i = off; i < off + (1u << host); i++)
		if (m->owner[i] != 0)
			return false;
	return true;
}

/* Naive first fit: try every aligned block from the bottom. */
static bool
model_find(const struct model *m, unsigned host, unsigned *off)
{
	for (unsigned o = 0; o < MODEL_SIZE; o += 1u << host) {
		if (model_free(m, o, host)) {
			*off = o;
			return true;
		}
	}
	return false;
}

/* Marks [off, off + 2^host) as owned by v. */
static void
model_mark(struct model *m, unsigned off, unsigned host, int v)
{
	for (unsigned i = off; i < off + (1u << host); i++)
		m->owner[i] = v;
}

/* Compares alloc_pool_find with the model for one host length. */
static void
check_find(const struct alloc_pool *pool, const struct model *m,
    unsigned host, uint64_t seed, int step)
{
	unsigned bits = pfx_family_bits(m->parent.family);
	struct pfx got;
	unsigned off;
	int rc = alloc_pool_find(pool, bits - host, &got);

	if (!model_find(m, host, &off)) {
		cr_assert_eq(rc, ALLOC_ENOSPACE, "seed %llu step %d host %u",
		    (unsigned long long)seed, step, host);
		return;
	}
	cr_assert_eq(rc, ALLOC_OK, "seed %llu step %d host %u",
	    (unsigned long long)seed, step, host);
	cr_assert(got.addr == m->parent.addr + off && got.len == bits - host,
	    "seed %llu step %d host %u: wrong block",
	    (unsigned long long)seed, step, host);
}

/* Walk state of the randomised test: order and records are checked. */
struct walk_check {
	pfx_addr last;		/* address of the previous child */
	size_t n;		/* children seen */
};

/*
 * Checks one walked child: strictly after the previous one, and its data is
 * the node of exactly that prefix.
 */
static int
walk_check_one(void *arg, const struct pfx *p, void *data)
{
	struct walk_check *w = arg;
	struct pfx np;

	cr_assert(w->n == 0 || p->addr > w->last, "walk out of order");
	cr_assert_not_null(data);
	np = alloc_node_pfx(data);
	cr_assert(pfx_equal(&np, p), "walk data does not match prefix");
	w->last = p->addr;
	w->n++;
	return 0;
}

/*
 * Thousands of random operations on one parent: link the first fit of a
 * random length, link a random aligned block (fits or is refused exactly
 * when the model says so), unlink a random child, reserve a random address.
 * After each step, finds of random lengths must equal the naive answer, and
 * every 64 steps every length, the walk and the iteration are checked.
 */
static void
random_run(const char *parent, uint64_t seed, int steps, unsigned maxhost)
{
	static struct model m;
	static struct alloc_node node[MODEL_SIZE];
	struct pfx pp = P(parent);
	struct alloc_pool *pool = alloc_pool_new(&pp);
	unsigned bits = pfx_family_bits(pp.family);
	uint64_t s = seed;

	cr_assert_not_null(pool);
	cr_assert_eq(bits - pp.len, MODEL_HOST);
	cr_assert_lt(maxhost, MODEL_HOST);
	memset(&m, 0, sizeof(m));
	m.parent = pp;
	for (int step = 0; step < steps; step++) {
		unsigned op = (unsigned)(rnd(&s) % 100);
		unsigned host = (unsigned)(rnd(&s) % (maxhost + 1));
		struct alloc_node probe;
		struct pfx p;
		unsigned off;
		int rc, i;

		if (op < 45) {
			if (alloc_pool_find(pool, bits - host, &p) != ALLOC_OK)
				continue;
			off = (unsigned)(p.addr - pp.addr);
			cr_assert(model_free(&m, off, host));
			for (i = 0; i < (int)MODEL_SIZE && m.live[i]; i++)
				;
			cr_assert_lt(i, (int)MODEL_SIZE);
			m.live[i] = true;
			m.child[i] = p;
			m.nlive++;
			model_mark(&m, off, host, i + 1);
			alloc_node_init(&node[i], &p);
			cr_assert_eq(alloc_pool_link(pool, &node[i]), ALLOC_OK);
		} else if (op < 60) {
			off = (unsigned)(rnd(&s) % MODEL_SIZE) &
			    ~((1u << host) - 1);
			p = pfx_make(pp.family, pp.addr + off, bits - host);
			alloc_node_init(&probe, &p);
			rc = alloc_pool_link(pool, &probe);
			if (!model_free(&m, off, host)) {
				cr_assert_eq(rc, ALLOC_EOVERLAP,
				    "seed %llu step %d",
				    (unsigned long long)seed, step);
			} else {
				cr_assert_eq(rc, ALLOC_OK);
				cr_assert_eq(alloc_pool_unlink(pool, &probe),
				    ALLOC_OK);
			}
		} else if (op < 97) {
			if (m.nlive == 0)
				continue;
			/* the first live child from a random index on */
			i = (int)(rnd(&s) % MODEL_SIZE);
			for (int tries = 0; tries < (int)MODEL_SIZE &&
			    !m.live[i]; tries++)
				i = (i + 1) % (int)MODEL_SIZE;
			p = m.child[i];
			cr_assert_eq(alloc_pool_lookup(pool, &p), &node[i]);
			cr_assert_eq(alloc_pool_unlink(pool, &node[i]),
			    ALLOC_OK);
			cr_assert_null(alloc_pool_lookup(pool, &p));
			model_mark(&m, (unsigned)(p.addr - pp.addr),
			    bits - p.len, 0);
			m.live[i] = false;
			m.nlive--;
		} else {
			off = (unsigned)(rnd(&s) % MODEL_SIZE);
			rc = alloc_pool_reserve(pool, pp.addr + off);
			if (m.owner[off] > 0) {
				cr_assert_eq(rc, ALLOC_EOVERLAP);
			} else {
				cr_assert_eq(rc, ALLOC_OK);
				m.owner[off] = -1;
			}
		}
		check_find(pool, &m, (unsigned)(rnd(&s) % (maxhost + 1)), seed,
		    step);
		check_find(pool, &m, 0, seed, step);
		if (step % 64 == 0) {
			struct walk_check w = { .last = 0, .n = 0 };

			for (unsigned h = 0; h < MODEL_HOST; h++)
				check_find(pool, &m, h, seed, step);
			cr_assert_eq(alloc_pool_walk(pool, walk_check_one, &w),
			    0);
			cr_assert_eq(w.n, (size_t)m.nlive);
			cr_assert_eq(count(pool), (size_t)m.nlive);
		}
	}
	alloc_pool_free(pool);
}

/*
 * Unlinking the current node while iterating (the successor taken first)
 * visits every node once; a node linked meanwhile where an unlinked one was
 * (the registry's cooling placeholder) does not disturb the walk.
 */
Test(alloc, unlink_while_iterating)
{
	struct alloc_pool *pool = node_pool("10.0.0.0/24");
	static struct alloc_node n[254], ph[254];
	struct alloc_node *it, *next;
	struct pfx got;
	size_t seen = 0, left = 0;

	for (unsigned i = 0; i < 254; i++) {
		cr_assert_eq(alloc_pool_find(pool, 32, &got), ALLOC_OK);
		alloc_node_init(&n[i], &got);
		cr_assert_eq(alloc_pool_link(pool, &n[i]), ALLOC_OK);
	}
	cr_assert_eq(alloc_pool_find(pool, 32, &got), ALLOC_ENOSPACE);
	for (it = alloc_pool_first(pool); it != NULL; it = next) {
		size_t i = (size_t)(it - n);

		next = alloc_pool_next(pool, it);
		cr_assert_lt(i, 254, "visited a placeholder or a stranger");
		cr_assert_eq(i, seen, "out of order");
		seen++;
		if (i % 3 != 0)
			continue;
		got = alloc_node_pfx(it);
		cr_assert_eq(alloc_pool_unlink(pool, it), ALLOC_OK);
		alloc_node_init(&ph[i], &got);
		if (i % 2 == 0)
			cr_assert_eq(alloc_pool_link(pool, &ph[i]), ALLOC_OK);
	}
	cr_assert_eq(seen, 254);
	for (it = alloc_pool_first(pool); it != NULL;
	    it = alloc_pool_next(pool, it))
		left++;
	/* 85 of 254 unlinked, 43 of those replaced */
	cr_assert_eq(left, 254 - 85 + 43);
	cr_assert_eq(count(pool), left);
	expect_find(pool, 32, "10.0.0.4/32");
}

/*
 * A linked child costs the pool nothing when children fill the parent in
 * first-fit order. Heap measured with mallinfo2, which sees glibc's heap
 * only: not built under AddressSanitizer, whose allocator replaces it.
 */
#ifndef __SANITIZE_ADDRESS__
Test(alloc, linked_children_take_no_heap)
{
	struct alloc_pool *pool = node_pool("fd00::/64");
	struct pfx got;
	size_t h0, h1;

	h0 = mallinfo2().uordblks;
	for (unsigned i = 0; i < 2000; i++) {
		cr_assert_eq(alloc_pool_find(pool, 128, &got), ALLOC_OK);
		cr_assert_eq(link_pfx(pool, &got), ALLOC_OK);
	}
	h1 = mallinfo2().uordblks;
	cr_assert_lt(h1 - h0, 256, "linking took %zu bytes", h1 - h0);
}
#endif /* !__SANITIZE_ADDRESS__ */

/*
 * Random runs against the model: mixed lengths in v4 and v6 (also at the
 * top and the bottom of the space), single addresses only as a node prefix
 * is used, and few lengths, in long runs of churn.
 */
Test(alloc, random_against_model, .timeout = 240)
{
	static const struct {
		const char *parent;
		uint64_t seed;
		int steps;
		unsigned maxhost;	/* longest child: host bits */
	} runs[] = {
		{ "169.255.16.0/20", 1, 6000, 6 },
		{ "169.255.16.0/20", 2, 6000, 3 },
		{ "255.255.240.0/20", 3, 6000, 8 },
		{ "fd00:0:0:101::f000/116", 4, 6000, 6 },
		{ "ffff:ffff:ffff:ffff:ffff:ffff:ffff:f000/116", 5, 6000, 5 },
		{ "::/116", 6, 6000, 11 },
		{ "fd00:0:0:101::f000/116", 7, 20000, 0 },
		{ "fd00:0:0:101::f000/116", 8, 20000, 1 },
		{ "fd00:0:0:101::f000/116", 11, 20000, 3 },
		{ "169.255.16.0/20", 12, 20000, 3 },
	};

	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++)
		random_run(runs[i].parent, runs[i].seed, runs[i].steps,
		    runs[i].maxhost);
}
