/*
 * test_slab.c - slab classes, slots that do not overlap, freed slots used
 * again first, and empty slabs given back.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <string.h>

#include "slab.h"

Test(slab, class_of_size)
{
	cr_assert_eq(slab_class(0), 0);
	cr_assert_eq(slab_class(SLAB_MIN), 0);
	cr_assert_eq(slab_class(SLAB_MIN + 1), 1);
	cr_assert_eq(slab_class(SLAB_MIN + SLAB_STEP), 1);
	cr_assert_eq(slab_class(SLAB_MAX), SLAB_NCLASS - 1);
	cr_assert_eq(slab_class(SLAB_MAX + 1), -1);
}

/* Many slots of two classes, each filled: none overlaps another, and all
 * slabs go back once every slot is returned. */
Test(slab, slots_are_distinct_and_slabs_go_back)
{
	enum { N = 3000 };
	static unsigned char *p[N];
	struct slab_set sl = { 0 };

	for (size_t i = 0; i < N; i++) {
		size_t size = i % 2 ? 24 : 100;

		p[i] = slab_get(&sl, (unsigned)slab_class(size));
		cr_assert_not_null(p[i]);
		cr_assert_eq((uintptr_t)p[i] % 8, 0, "slot %zu unaligned", i);
		memset(p[i], (int)(i & 0xff), size);
	}
	cr_assert_gt(sl.n, 2, "%zu slabs for %d slots", sl.n, N);
	for (size_t i = 0; i < N; i++) {
		size_t size = i % 2 ? 24 : 100;

		for (size_t j = 0; j < size; j++)
			cr_assert_eq(p[i][j], i & 0xff, "slot %zu overwritten",
			    i);
	}
	for (size_t i = 0; i < N; i++)
		slab_put(&sl, p[i]);
	cr_assert_eq(sl.n, 0, "%zu slabs left with no slot in use", sl.n);
	slab_free_all(&sl);
}

Test(slab, freed_slot_is_used_again_first)
{
	struct slab_set sl = { 0 };
	unsigned cls = (unsigned)slab_class(40);
	void *a, *b, *c;

	a = slab_get(&sl, cls);
	b = slab_get(&sl, cls);
	cr_assert(a != NULL && b != NULL && a != b);
	slab_put(&sl, a);
	c = slab_get(&sl, cls);
	cr_assert_eq(c, a);
	cr_assert_eq(sl.n, 1);
	slab_free_all(&sl);
	cr_assert_eq(sl.n, 0);
	cr_assert_null(sl.all);
}
