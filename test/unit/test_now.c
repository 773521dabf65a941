#include <criterion/criterion.h>
#include <unistd.h>

#include "now.h"

Test(now, monotonic_ms_follows_ns_and_advances)
{
	int64_t ns = now_ns(CLOCK_MONOTONIC), ms = now_ms(), ms2;

	cr_assert_geq(ms, ns / 1000000);
	cr_assert_leq(ms, ns / 1000000 + 1000);
	usleep(20000);
	ms2 = now_ms();
	cr_assert_geq(ms2 - ms, 20);
	cr_assert_lt(ms2 - ms, 5000);
}

Test(now, realtime_is_wall_clock)
{
	int64_t ns = now_ns(CLOCK_REALTIME);
	time_t t = time(NULL);

	cr_assert_leq(ns / 1000000000 - t, 1);
	cr_assert_geq(ns / 1000000000 - t, -1);
}
