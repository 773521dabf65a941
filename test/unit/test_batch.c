/*
 * Unit tests of lib/batch: group commit over a real registry and store,
 * the one-by-one fallback when a commit fails, parking of allocations that
 * wait for their conduit.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <grpc/status.h>
#include <sqlite3.h>

#include "batch.h"
#include "store.h"

#define MS 1000000LL
#define T0 (1700000000LL * 1000000000LL)	/* CLOCK_REALTIME of the tests */
#define M0 (1000LL * 1000000000LL)		/* CLOCK_MONOTONIC of the tests */
#define MAXA 400

static char dir[256];
static char path[300];
static struct store *st;
static struct reg *reg;
static struct batch *b;

/* What the answer function saw, in order. */
static struct {
	int n;
	struct { int slot, code; char addr[PFX_ADDRSTRLEN], msg[512]; } v[MAXA];
} got;
static int notes;			/* note() calls */
static bool keep_all = true;		/* keep()'s answer */

static void
answer(void *arg, struct batch_req *r)
{
	(void)arg;
	cr_assert_lt(got.n, MAXA);
	got.v[got.n].slot = r->slot;
	got.v[got.n].code = r->code;
	memcpy(got.v[got.n].addr, r->addr, sizeof(r->addr));
	memcpy(got.v[got.n].msg, r->msg, sizeof(r->msg));
	got.n++;
}

static void
note(void *arg, const char *conduit, const char *err)
{
	(void)arg;
	(void)conduit;
	(void)err;
	notes++;
}

static bool
keep(void *arg, const struct batch_req *r)
{
	(void)arg;
	(void)r;
	return keep_all;
}

static void
setup(void)
{
	const char *base = getenv("IPAM_TEST_TMP");
	struct reg_params p = { .trench = "default", .node_refresh_ns =
	    60000 * MS };
	char err[256];

	snprintf(dir, sizeof(dir), "%s/batchXXXXXX", base && *base ? base :
	    "/tmp");
	mkdir(base && *base ? base : "/tmp", 0755);
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/registry.db", dir);
	p.fam[0].enabled = p.fam[1].enabled = true;
	cr_assert_eq(pfx_parse("169.255.0.0/16", &p.fam[0].prefix, err,
	    sizeof(err)), 0);
	cr_assert_eq(pfx_parse("fd00::/48", &p.fam[1].prefix, err,
	    sizeof(err)), 0);
	p.fam[0].conduit_len = 20;
	p.fam[0].node_len = 24;
	p.fam[1].conduit_len = 56;
	p.fam[1].node_len = 64;
	cr_assert_eq(store_open(&st, path, 0, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(reg_open(&reg, st, &p, NULL, NULL, err, sizeof(err)),
	    REG_OK, "%s", err);
	cr_assert_not_null(b = batch_new(reg, note, NULL));
	got.n = notes = 0;
	keep_all = true;
}

static void
teardown(void)
{
	char cmd[400];

	batch_free(b);
	reg_close(reg);
	store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)system(cmd);
}

TestSuite(batch, .init = setup, .fini = teardown);

/* Queues r (packed and unpacked, as the db worker gets it) as slot. */
static void
add(Ipamd__V1__Request *r, int slot, bool strict)
{
	uint8_t buf[4096];
	size_t n = ipamd__v1__request__get_packed_size(r);
	struct batch_req q = { .slot = slot, .strict = strict };

	cr_assert_leq(n, sizeof(buf));
	ipamd__v1__request__pack(r, buf);
	cr_assert_not_null(q.req = ipamd__v1__request__unpack(NULL, n, buf));
	cr_assert_eq(batch_add(b, &q), 0);
}

static void
add_child(bool alloc, const char *conduit, const char *name,
    uint32_t wait_ms, int slot, bool strict)
{
	Ipamd__V1__Request r = IPAMD__V1__REQUEST__INIT;
	Ipamd__V1__Allocate a = IPAMD__V1__ALLOCATE__INIT;
	Ipamd__V1__Release rel = IPAMD__V1__RELEASE__INIT;
	Ipamd__V1__Child ch = IPAMD__V1__CHILD__INIT;

	ch.trench = "default";
	ch.conduit = (char *)conduit;
	ch.node = "worker-1";
	ch.family = IPAMD__V1__FAMILY__FAMILY_IPV4;
	ch.name = (char *)name;
	a.child = rel.child = &ch;
	a.wait_ms = wait_ms;
	r.body_case = alloc ? IPAMD__V1__REQUEST__BODY_ALLOCATE :
	    IPAMD__V1__REQUEST__BODY_RELEASE;
	r.allocate = &a;
	if (!alloc)
		r.release = &rel;
	add(&r, slot, strict);
}

static void
add_alloc(const char *conduit, const char *name, uint32_t wait_ms, int slot)
{
	add_child(true, conduit, name, wait_ms, slot, false);
}

static void
add_sync(const char *conduit, int slot)
{
	Ipamd__V1__Request r = IPAMD__V1__REQUEST__INIT;
	Ipamd__V1__SyncConduits s = IPAMD__V1__SYNC_CONDUITS__INIT;
	char *names[1] = { (char *)conduit };

	s.n_add = 1;
	s.add = names;
	r.body_case = IPAMD__V1__REQUEST__BODY_SYNC_CONDUITS;
	r.sync_conduits = &s;
	add(&r, slot, false);
}

/* Revisits, runs and answers one turn at mono; returns failed commits. */
static uint64_t
turn(int64_t mono, bool *any_ok)
{
	char err[512] = "";
	bool ok;
	uint64_t nfail;

	batch_revisit(b, mono, keep, NULL);
	nfail = batch_run(b, T0, mono, any_ok ? any_ok : &ok, err,
	    sizeof(err));
	batch_answer(b, answer, NULL);
	cr_assert_eq(batch_len(b), 0);
	return nfail;
}

static void
with_conduit(const char *conduit)
{
	add_sync(conduit, 999);
	cr_assert_eq(turn(M0, NULL), 0);
	cr_assert_eq(got.n, 1);
	cr_assert_eq(got.v[0].code, GRPC_STATUS_OK, "%s", got.v[0].msg);
	got.n = 0;
}

Test(batch, n_allocations_one_commit_distinct_addresses)
{
	uint64_t commits;
	bool any_ok = false;
	char name[16];
	int i, j;

	with_conduit("conduit-a");
	commits = store_commit_count(st);
	for (i = 0; i < 50; i++) {
		snprintf(name, sizeof(name), "pod-%d", i);
		add_alloc("conduit-a", name, 0, i);
	}
	cr_assert_eq(turn(M0, &any_ok), 0);
	cr_assert(any_ok);
	cr_assert_eq(store_commit_count(st), commits + 1);
	cr_assert_eq(got.n, 50);
	for (i = 0; i < 50; i++) {
		cr_assert_eq(got.v[i].slot, i);
		cr_assert_eq(got.v[i].code, GRPC_STATUS_OK, "%s", got.v[i].msg);
		for (j = 0; j < i; j++)
			cr_assert_str_neq(got.v[i].addr, got.v[j].addr);
	}
	cr_assert_eq(reg_count_children(reg), 50);
	cr_assert_eq(batch_stats(b)->batches, 2);
	cr_assert_eq(batch_stats(b)->batched, 51);
	cr_assert_eq(batch_stats(b)->sizes[6], 1, "a batch of 50 is <= 64");
}

Test(batch, same_name_twice_same_address)
{
	with_conduit("conduit-a");
	add_alloc("conduit-a", "pod", 0, 1);
	add_alloc("conduit-a", "pod", 0, 2);
	cr_assert_eq(turn(M0, NULL), 0);
	cr_assert_eq(got.n, 2);
	cr_assert_eq(got.v[0].code, GRPC_STATUS_OK);
	cr_assert_str_eq(got.v[0].addr, got.v[1].addr);
	cr_assert_eq(reg_count_children(reg), 1);
}

Test(batch, release_and_allocate_in_one_batch)
{
	uint64_t commits;

	with_conduit("conduit-a");
	add_alloc("conduit-a", "old", 0, 1);
	cr_assert_eq(turn(M0, NULL), 0);
	commits = store_commit_count(st);
	add_child(false, "conduit-a", "old", 0, 2, true);
	add_alloc("conduit-a", "new", 0, 3);
	cr_assert_eq(turn(M0, NULL), 0);
	cr_assert_eq(store_commit_count(st), commits + 1);
	cr_assert_eq(got.n, 3);
	cr_assert_eq(got.v[1].code, GRPC_STATUS_OK, "%s", got.v[1].msg);
	cr_assert_str_eq(got.v[1].addr, got.v[0].addr, "a strict release "
	    "says which address it released");
	cr_assert_eq(got.v[2].code, GRPC_STATUS_OK, "%s", got.v[2].msg);
	cr_assert_eq(reg_count_children(reg), 1);
	/* Released: a strict release of it again finds nothing. */
	add_child(false, "conduit-a", "old", 0, 4, true);
	cr_assert_eq(turn(M0, NULL), 0);
	cr_assert_eq(got.v[3].code, GRPC_STATUS_NOT_FOUND);
	cr_assert(strstr(got.v[3].msg, "no child old") != NULL, "%s",
	    got.v[3].msg);
}

/* Every write fails (RLIMIT_FSIZE 0): the batch and then each request
 * alone fail; each is answered with the storage error, none is in the
 * index, and once writes work again the same requests succeed. */
Test(batch, failed_commit_answers_each_and_changes_nothing)
{
	struct rlimit lim, zero = { 0, RLIM_INFINITY };
	size_t records;
	bool any_ok = true;
	int i;

	with_conduit("conduit-a");
	records = reg_count(reg);
	signal(SIGXFSZ, SIG_IGN);
	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &lim), 0);
	zero.rlim_max = lim.rlim_max;
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &zero), 0);
	add_alloc("conduit-a", "a", 0, 1);
	add_alloc("conduit-a", "b", 0, 2);
	add_alloc("conduit-a", "c", 0, 3);
	cr_assert_eq(turn(M0, &any_ok), 4, "the batch, then each alone");
	cr_assert_not(any_ok);
	cr_assert_eq(got.n, 3);
	for (i = 0; i < 3; i++) {
		cr_assert_eq(got.v[i].code, GRPC_STATUS_UNAVAILABLE, "%d: %s",
		    i, got.v[i].msg);
		cr_assert_str_empty(got.v[i].addr);
		cr_assert_str_not_empty(got.v[i].msg);
	}
	cr_assert_eq(reg_count(reg), records);
	cr_assert_eq(reg_count_children(reg), 0);

	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
	got.n = 0;
	add_alloc("conduit-a", "a", 0, 1);
	cr_assert_eq(turn(M0, &any_ok), 0);
	cr_assert_eq(got.v[0].code, GRPC_STATUS_OK, "%s", got.v[0].msg);
	cr_assert_eq(reg_count_children(reg), 1);
}

/* A request that hits a storage error (its row's id taken behind the
 * registry's back) undoes the batch; applied again one commit each, its
 * neighbours succeed and only it fails. */
Test(batch, fallback_fails_only_the_bad_request)
{
	sqlite3 *db;
	uint64_t commits;
	bool any_ok = false;

	with_conduit("conduit-a");
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, "INSERT INTO prefixes VALUES ("
	    "'poison-worker-1-conduit-a-default-0','poison','10.9.9.9/32',"
	    "'worker-1-conduit-a-default-0','2024-01-01 00:00:00+00:00',1)",
	    NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
	sqlite3_close(db);
	commits = store_commit_count(st);
	add_alloc("conduit-a", "a", 0, 1);
	add_alloc("conduit-a", "poison", 0, 2);
	add_alloc("conduit-a", "b", 0, 3);
	cr_assert_eq(turn(M0, &any_ok), 2, "the batch and the bad request");
	cr_assert(any_ok);
	cr_assert_eq(got.n, 3);
	cr_assert_eq(got.v[0].code, GRPC_STATUS_OK, "%s", got.v[0].msg);
	cr_assert_eq(got.v[1].code, GRPC_STATUS_UNAVAILABLE);
	cr_assert_str_empty(got.v[1].addr);
	cr_assert_eq(got.v[2].code, GRPC_STATUS_OK, "%s", got.v[2].msg);
	cr_assert_str_neq(got.v[0].addr, got.v[2].addr);
	cr_assert_eq(store_commit_count(st), commits + 2);
	cr_assert_eq(reg_count_children(reg), 2);
}

Test(batch, parked_until_a_sync_adds_the_conduit)
{
	with_conduit("conduit-a");
	add_alloc("late", "pod", 2000, 7);
	cr_assert_eq(turn(M0, NULL), 0);
	cr_assert_eq(got.n, 0, "answered instead of parked");
	cr_assert_eq(batch_next_deadline(b), M0 + 2000 * MS);
	/* A later turn with other work leaves it parked. */
	add_alloc("conduit-a", "other", 0, 8);
	cr_assert_eq(turn(M0 + 10 * MS, NULL), 0);
	cr_assert_eq(got.n, 1);
	cr_assert_eq(got.v[0].slot, 8);
	add_sync("late", 9);
	cr_assert_eq(turn(M0 + 20 * MS, NULL), 0);
	cr_assert_eq(got.n, 2);
	cr_assert_eq(got.v[1].slot, 9);
	/* The next revisit takes every parked request after a sync. */
	cr_assert_eq(turn(M0 + 20 * MS, NULL), 0);
	cr_assert_eq(got.n, 3);
	cr_assert_eq(got.v[2].slot, 7);
	cr_assert_eq(got.v[2].code, GRPC_STATUS_OK, "%s", got.v[2].msg);
	cr_assert_str_not_empty(got.v[2].addr);
	cr_assert_eq(batch_next_deadline(b), INT64_MAX);
}

Test(batch, parked_until_its_deadline)
{
	add_alloc("late", "pod", 1000, 7);
	cr_assert_eq(turn(M0, NULL), 0);
	cr_assert_eq(got.n, 0);
	cr_assert_eq(turn(M0 + 999 * MS, NULL), 0);
	cr_assert_eq(got.n, 0, "answered before its deadline");
	cr_assert_eq(turn(M0 + 1000 * MS, NULL), 0);
	cr_assert_eq(got.n, 1);
	cr_assert_eq(got.v[0].code, GRPC_STATUS_NOT_FOUND);
	cr_assert(strstr(got.v[0].msg, "(waited 1000 ms)") != NULL, "%s",
	    got.v[0].msg);
	cr_assert_eq(reg_count_children(reg), 0);
}

Test(batch, parked_dropped_or_failed)
{
	add_alloc("late", "gone", 1000, 1);
	add_alloc("late", "stays", 0, 2);
	cr_assert_eq(turn(M0, NULL), 0);
	cr_assert_eq(got.n, 1, "without wait_ms: answered at once");
	cr_assert_eq(got.v[0].code, GRPC_STATUS_NOT_FOUND);
	keep_all = false;
	cr_assert_eq(turn(M0 + 2000 * MS, NULL), 0);
	cr_assert_eq(got.n, 1, "a request no longer wanted was answered");
	cr_assert_eq(batch_next_deadline(b), INT64_MAX);
	keep_all = true;
	add_alloc("late", "stopping", 1000, 3);
	cr_assert_eq(turn(M0, NULL), 0);
	batch_fail(b, GRPC_STATUS_UNAVAILABLE, "stopping", true);
	batch_answer(b, answer, NULL);
	cr_assert_eq(got.n, 2);
	cr_assert_eq(got.v[1].slot, 3);
	cr_assert_eq(got.v[1].code, GRPC_STATUS_UNAVAILABLE);
	cr_assert_str_eq(got.v[1].msg, "stopping");
}

/* A conduit that does not fit is skipped with a note; the rest of the
 * list applies. */
Test(batch, sync_skips_a_conduit_that_does_not_fit)
{
	Ipamd__V1__Request r = IPAMD__V1__REQUEST__INIT;
	Ipamd__V1__SyncConduits s = IPAMD__V1__SYNC_CONDUITS__INIT;
	char *names[17], buf[17][16];
	int i;

	/* 169.255.0.0/16 in /20 conduits: room for 16. */
	for (i = 0; i < 17; i++) {
		snprintf(buf[i], sizeof(buf[i]), "c%d", i);
		names[i] = buf[i];
	}
	s.n_add = 17;
	s.add = names;
	r.body_case = IPAMD__V1__REQUEST__BODY_SYNC_CONDUITS;
	r.sync_conduits = &s;
	add(&r, 1, false);
	cr_assert_eq(turn(M0, NULL), 0);
	cr_assert_eq(got.v[0].code, GRPC_STATUS_OK, "%s", got.v[0].msg);
	cr_assert(strstr(got.v[0].msg, "c16 does not fit") != NULL, "%s",
	    got.v[0].msg);
	cr_assert_eq(notes, 1);
	cr_assert(reg_has_conduit(reg, PFX_V4, "c15"));
	cr_assert_not(reg_has_conduit(reg, PFX_V4, "c16"));
}
