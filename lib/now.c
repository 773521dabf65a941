/*
 * now: the time of a clock as one integer.
 */
#include "now.h"

int64_t
now_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
now_ms(void)
{
	return now_ns(CLOCK_MONOTONIC) / 1000000;
}
