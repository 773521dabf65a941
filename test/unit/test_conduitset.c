/*
 * test_conduitset.c - the NSP worker's list diff: what is added, what is
 * removed, and above all what is never removed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "conduitset.h"

/* The set under test and the diff of its last list; the diff is cleared
 * before each list and after the test. */
static struct conduitset *set;
static struct conduitset_diff d;

static void
setup(void)
{
	set = conduitset_new();
	cr_assert_not_null(set);
}

static void
teardown(void)
{
	conduitset_diff_clear(&d);
	conduitset_free(set);
	set = NULL;
}

TestSuite(conduitset, .init = setup, .fini = teardown);

/* Runs one list through the set into d and commits it, as the worker does
 * after the db acknowledged the request. Fails the test on an error. */
static void
sync_commit(const char *const *names, size_t n)
{
	conduitset_diff_clear(&d);
	cr_assert_eq(conduitset_diff(set, names, n, &d), 0);
	conduitset_commit(set, &d);
}

/* Asserts that got[0..ngot) is exactly want[0..nwant), in order. */
static void
assert_names(char **got, size_t ngot, const char *const *want, size_t nwant)
{
	size_t i;

	cr_assert_eq(ngot, nwant, "got %zu names, want %zu", ngot, nwant);
	for (i = 0; i < nwant; i++)
		cr_assert_str_eq(got[i], want[i], "entry %zu", i);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

Test(conduitset, first_list_adds_all_removes_nothing)
{
	const char *l[] = { "c-b", "c-a", "c-c" };

	sync_commit(l, N(l));
	assert_names(d.add, d.nadd, l, N(l));
	cr_assert_eq(d.nremove, 0);
	cr_assert_eq(conduitset_listed(set), 3);
	cr_assert_eq(conduitset_seen(set), 3);
}

Test(conduitset, empty_first_list_removes_nothing)
{

	sync_commit(NULL, 0);
	cr_assert_eq(d.nadd, 0);
	cr_assert_eq(d.nremove, 0);
	cr_assert_null(d.add);
	cr_assert_null(d.remove);
	cr_assert_eq(conduitset_listed(set), 0);
}

Test(conduitset, addition_sends_whole_list_in_order)
{
	const char *l1[] = { "a", "b" };
	const char *l2[] = { "a", "new", "b" };

	sync_commit(l1, N(l1));
	sync_commit(l2, N(l2));
	assert_names(d.add, d.nadd, l2, N(l2));
	cr_assert_eq(d.nremove, 0);
	cr_assert_eq(conduitset_listed(set), 3);
}

Test(conduitset, removal_of_seen_conduit)
{
	const char *l1[] = { "a", "b", "c" };
	const char *l2[] = { "c", "a" };
	const char *rm[] = { "b" };

	sync_commit(l1, N(l1));
	sync_commit(l2, N(l2));
	assert_names(d.add, d.nadd, l2, N(l2));
	assert_names(d.remove, d.nremove, rm, N(rm));
	cr_assert_not(conduitset_contains(set, "b"));
	cr_assert_eq(conduitset_seen(set), 2);
}

Test(conduitset, partial_first_list_then_only_seen_removed)
{
	/* After a restart NSP first lists only "a" although "x" exists in the
	 * db: "x" was never seen in this run, so it is never removed. */
	const char *l1[] = { "a" };
	const char *l2[] = { "b" };
	const char *rm[] = { "a" };

	sync_commit(l1, N(l1));
	cr_assert_eq(d.nremove, 0);
	sync_commit(l2, N(l2));
	assert_names(d.remove, d.nremove, rm, N(rm));
	cr_assert_not(conduitset_contains(set, "x"));
}

Test(conduitset, empty_list_after_seen_removes_all_seen)
{
	const char *l1[] = { "b", "a" };
	const char *rm[] = { "a", "b" };	/* name order */

	sync_commit(l1, N(l1));
	sync_commit(NULL, 0);
	cr_assert_eq(d.nadd, 0);
	assert_names(d.remove, d.nremove, rm, N(rm));
	cr_assert_eq(conduitset_seen(set), 0);
}

Test(conduitset, removed_once_not_removed_again)
{
	const char *l1[] = { "a", "b" };
	const char *l2[] = { "a" };

	sync_commit(l1, N(l1));
	sync_commit(l2, N(l2));
	cr_assert_eq(d.nremove, 1);
	sync_commit(l2, N(l2));
	cr_assert_eq(d.nremove, 0);
}

Test(conduitset, re_add_after_removal)
{
	const char *l1[] = { "a", "b" };
	const char *l2[] = { "a" };
	const char *l3[] = { "b", "a" };
	const char *rm[] = { "b" };

	sync_commit(l1, N(l1));
	sync_commit(l2, N(l2));
	sync_commit(l3, N(l3));
	assert_names(d.add, d.nadd, l3, N(l3));
	cr_assert_eq(d.nremove, 0);
	/* and it can be removed again, since it was seen again */
	sync_commit(l2, N(l2));
	assert_names(d.remove, d.nremove, rm, N(rm));
}

Test(conduitset, duplicates_dropped_first_occurrence_kept)
{
	const char *l[] = { "z", "a", "z", "m", "a" };
	const char *want[] = { "z", "a", "m" };

	sync_commit(l, N(l));
	assert_names(d.add, d.nadd, want, N(want));
	cr_assert_eq(d.ndup, 2);
	cr_assert_eq(conduitset_listed(set), 3);
	cr_assert_eq(conduitset_seen(set), 3);
}

Test(conduitset, order_preserved_for_many)
{
	enum { COUNT = 1000 };
	char *buf[COUNT];
	const char *l[COUNT];
	size_t i;

	/* descending names, so tree order and list order differ */
	for (i = 0; i < COUNT; i++) {
		cr_assert_geq(asprintf(&buf[i], "conduit-%04zu", COUNT - i), 0);
		l[i] = buf[i];
	}
	sync_commit(l, COUNT);
	assert_names(d.add, d.nadd, l, COUNT);
	for (i = 0; i < COUNT; i++)
		free(buf[i]);
}

Test(conduitset, invalid_names_skipped)
{
	char longname[BOUNDS_LABEL_MAX + 2];
	char maxname[BOUNDS_LABEL_MAX + 1];
	const char *l[] = { "", "ok", longname, maxname, NULL };
	const char *want[] = { "ok", maxname };

	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	memset(maxname, 'y', sizeof(maxname) - 1);
	maxname[sizeof(maxname) - 1] = '\0';
	sync_commit(l, N(l));
	assert_names(d.add, d.nadd, want, N(want));
	cr_assert_eq(d.nskipped, 3);
	cr_assert_not(conduitset_contains(set, longname));
}

Test(conduitset, too_many_refused_set_unchanged)
{
	const char *l1[] = { "a" };
	const char **big;
	size_t i;

	sync_commit(l1, N(l1));
	conduitset_diff_clear(&d);
	big = calloc(CONDUITSET_MAX + 1, sizeof(*big));
	cr_assert_not_null(big);
	for (i = 0; i <= CONDUITSET_MAX; i++)
		big[i] = "b";
	errno = 0;
	cr_assert_eq(conduitset_diff(set, big, CONDUITSET_MAX + 1, &d), -1);
	cr_assert_eq(errno, E2BIG);
	cr_assert_eq(d.nadd, 0);
	cr_assert_eq(conduitset_listed(set), 1);
	cr_assert(conduitset_contains(set, "a"));
	cr_assert_not(conduitset_contains(set, "b"));

	/* exactly the cap is accepted */
	cr_assert_eq(conduitset_diff(set, big, CONDUITSET_MAX, &d), 0);
	cr_assert_eq(d.nadd, 1);
	cr_assert_eq(d.ndup, CONDUITSET_MAX - 1);
	free(big);
}

Test(conduitset, uncommitted_removal_reported_again)
{
	/* The request carrying the removal never reached the db (connection
	 * lost): the next list must carry the removal again. */
	const char *l1[] = { "a", "b" };
	const char *l2[] = { "a" };
	const char *rm[] = { "b" };

	sync_commit(l1, N(l1));
	conduitset_diff_clear(&d);
	cr_assert_eq(conduitset_diff(set, l2, N(l2), &d), 0);
	assert_names(d.remove, d.nremove, rm, N(rm));
	conduitset_diff_clear(&d);		/* not committed */
	cr_assert(conduitset_contains(set, "b"));
	cr_assert_eq(conduitset_listed(set), 1);

	sync_commit(l2, N(l2));
	assert_names(d.remove, d.nremove, rm, N(rm));
	cr_assert_not(conduitset_contains(set, "b"));
}

Test(conduitset, commit_keeps_name_listed_again)
{
	/* A stale diff naming "b" as removed must not forget "b" once the
	 * latest list names it again. */
	const char *l1[] = { "a", "b" };
	const char *l2[] = { "a" };
	struct conduitset_diff stale;

	sync_commit(l1, N(l1));
	cr_assert_eq(conduitset_diff(set, l2, N(l2), &stale), 0);
	sync_commit(l1, N(l1));
	conduitset_commit(set, &stale);
	cr_assert(conduitset_contains(set, "b"));
	conduitset_diff_clear(&stale);
}

Test(conduitset, free_and_clear_accept_null_and_zero)
{
	memset(&d, 0, sizeof(d));
	conduitset_free(NULL);
	conduitset_diff_clear(NULL);
	conduitset_diff_clear(&d);
	cr_assert_eq(d.nadd, 0);
	cr_assert_null(d.add);
}
