/*
 * test_restart.c - the restart policy: floor, doubling, cap, reset, the
 * death tally, exit 78, readiness and the watchdog condition.
 */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "restart.h"

/* The environment restart_policy_load reads: name, value, ..., NULL. */
static const char *const *env = (const char *const[]){ NULL };

static const char *
fake_get(const char *name)
{
	for (size_t i = 0; env[i] != NULL; i += 2)
		if (strcmp(env[i], name) == 0)
			return env[i + 1];
	return NULL;
}

/* The policy, a worker that has not run yet, the clock and the last
 * delay, fresh for every test. */
static struct restart_policy p;
static struct restart_worker w;
static int64_t now, delay;

static void
setup(void)
{
	char err[256];

	env = (const char *const[]){ NULL };
	cr_assert_eq(restart_policy_load(&p, fake_get, err, sizeof(err)), 0);
	restart_worker_init(&w);
	now = 0;
	delay = -1;
}

TestSuite(restart, .init = setup);

/* Starts w at now, lets it run for ran ms, and reports its death. */
static enum restart_verdict
run_and_die(int64_t ran, int wstatus)
{
	restart_worker_started(&w, 100, now);
	now += ran;
	return restart_worker_died(&w, &p, wstatus, now, &delay);
}

/* setup loaded p from an empty environment. */
Test(restart, defaults)
{
	cr_assert_eq(p.min_run_ms, 1000);
	cr_assert_eq(p.floor_ms, 100);
	cr_assert_eq(p.cap_ms, 5000);
	cr_assert_eq(p.reset_ms, 30000);
	cr_assert_eq(p.max_deaths, 10);
	cr_assert_eq(p.window_ms, 60000);
}

Test(restart, long_run_restarts_at_once)
{
	now = 5000;
	cr_assert_eq(run_and_die(1000, W_EXITCODE(0, SIGKILL)), RESTART_AGAIN);
	cr_assert_eq(delay, 0);
	cr_assert_eq(w.state, RESTART_WAITING);
	cr_assert(restart_worker_due(&w, now));
}

Test(restart, short_runs_double_up_to_the_cap)
{
	static const int64_t want[] = { 100, 200, 400, 800, 1600, 3200, 5000,
	    5000 };

	p.max_deaths = 63;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		cr_assert_eq(run_and_die(10, W_EXITCODE(1, 0)), RESTART_AGAIN);
		cr_assert_eq(delay, want[i], "death %zu: %lld", i,
		    (long long)delay);
		cr_assert_not(restart_worker_due(&w, now + delay - 1));
		cr_assert(restart_worker_due(&w, now + delay));
		now += delay;
	}
}

Test(restart, medium_run_keeps_backoff_long_run_resets_it)
{
	run_and_die(10, W_EXITCODE(1, 0));	/* 100 */
	run_and_die(10, W_EXITCODE(1, 0));	/* 200 */
	cr_assert_eq(delay, 200);
	/* 2 s: at once, but the backoff is not forgotten. */
	run_and_die(2000, W_EXITCODE(1, 0));
	cr_assert_eq(delay, 0);
	run_and_die(10, W_EXITCODE(1, 0));
	cr_assert_eq(delay, 400);
	/* 30 s stable: at once, and the next short run starts over. */
	run_and_die(30000, W_EXITCODE(1, 0));
	cr_assert_eq(delay, 0);
	run_and_die(10, W_EXITCODE(1, 0));
	cr_assert_eq(delay, 100);
}

Test(restart, gives_up_after_more_than_max_deaths_in_window)
{
	/* Ten deaths of 2 s runs: restarted every time. */
	for (int i = 0; i < 10; i++)
		cr_assert_eq(run_and_die(2000, W_EXITCODE(0, SIGSEGV)),
		    RESTART_AGAIN, "death %d", i + 1);
	/* The eleventh within 60 s: give up. */
	cr_assert_eq(run_and_die(2000, W_EXITCODE(0, SIGSEGV)),
	    RESTART_GIVE_UP);
	cr_assert_eq(w.state, RESTART_GONE);
}

Test(restart, old_deaths_leave_the_window)
{
	/* One death every 7 s: at most 9 in any 60 s, forever fine. */
	for (int i = 0; i < 40; i++)
		cr_assert_eq(run_and_die(7000, W_EXITCODE(2, 0)), RESTART_AGAIN,
		    "death %d", i + 1);
	cr_assert_leq(w.ndeaths, 10);
}

Test(restart, exit_78_is_permanent)
{
	cr_assert_eq(run_and_die(5000, W_EXITCODE(78, 0)), RESTART_PERMANENT);
	cr_assert_eq(delay, -1);
	cr_assert_eq(w.state, RESTART_GONE);
	cr_assert_not(restart_worker_due(&w, now + 100000));
	/* 78 as a signal number is not an exit status. */
	restart_worker_init(&w);
	cr_assert_eq(run_and_die(5000, W_EXITCODE(0, 31)), RESTART_AGAIN);
}

Test(restart, asked_to_stop_is_final)
{
	restart_worker_started(&w, 42, 0);
	restart_worker_stopping(&w);
	cr_assert_eq(w.state, RESTART_STOPPING);
	cr_assert_eq(restart_worker_died(&w, &p, W_EXITCODE(78, 0), 10, &delay),
	    RESTART_STOPPED);
	cr_assert_eq(w.state, RESTART_GONE);
	cr_assert_eq(w.pid, 0);
	cr_assert_eq(delay, -1);
}

Test(restart, started_and_beats)
{
	cr_assert_eq(w.state, RESTART_IDLE);
	restart_worker_started(&w, 1234, 50);
	cr_assert_eq(w.state, RESTART_RUNNING);
	cr_assert_eq(w.pid, 1234);
	cr_assert_eq(w.starts, 1);
	cr_assert_eq(w.last_beat_ms, 50);
	cr_assert_not(restart_worker_beat(&w, false, 60));
	cr_assert_not(w.ready);
	cr_assert(restart_worker_beat(&w, true, 70));
	cr_assert(w.ready);
	cr_assert_not(restart_worker_beat(&w, true, 80));
	/* ready stays once reported. */
	cr_assert_not(restart_worker_beat(&w, false, 90));
	cr_assert(w.ready);
	cr_assert_eq(w.last_beat_ms, 90);
	/* A restart forgets readiness. */
	restart_worker_started(&w, 1235, 100);
	cr_assert_not(w.ready);
	cr_assert_eq(w.starts, 2);
}

Test(restart, all_ready)
{
	struct restart_worker ws[3];

	for (int i = 0; i < 3; i++) {
		restart_worker_init(&ws[i]);
		restart_worker_started(&ws[i], 10 + i, 0);
	}
	cr_assert_not(restart_all_ready(ws, 3));
	restart_worker_beat(&ws[0], true, 1);
	restart_worker_beat(&ws[1], true, 1);
	cr_assert_not(restart_all_ready(ws, 3));
	restart_worker_beat(&ws[2], true, 1);
	cr_assert(restart_all_ready(ws, 3));
	restart_worker_stopping(&ws[1]);
	cr_assert_not(restart_all_ready(ws, 3));
}

Test(restart, watchdog_needs_every_worker_recent)
{
	struct restart_worker ws[3];

	for (int i = 0; i < 3; i++)
		restart_worker_init(&ws[i]);
	cr_assert_not(restart_watchdog_ok(ws, 3, 0, 1000));
	for (int i = 0; i < 3; i++)
		restart_worker_started(&ws[i], 10 + i, 0);
	cr_assert(restart_watchdog_ok(ws, 3, 1000, 1000));
	restart_worker_beat(&ws[0], true, 900);
	restart_worker_beat(&ws[1], true, 900);
	cr_assert_not(restart_watchdog_ok(ws, 3, 1001, 1000));
	restart_worker_beat(&ws[2], true, 1001);
	cr_assert(restart_watchdog_ok(ws, 3, 1500, 1000));
	/* A worker waiting for its restart counts from its last beat. */
	cr_assert_eq(restart_worker_died(&ws[2], &p, W_EXITCODE(1, 0), 1600,
	    &delay), RESTART_AGAIN);
	cr_assert(restart_watchdog_ok(ws, 3, 1800, 1000));
	restart_worker_beat(&ws[0], true, 2500);
	restart_worker_beat(&ws[1], true, 2500);
	cr_assert_not(restart_watchdog_ok(ws, 3, 2500, 1000));
	/* A worker gone for good stops it at once. */
	restart_worker_started(&ws[2], 20, 2500);
	cr_assert(restart_watchdog_ok(ws, 3, 2500, 1000));
	cr_assert_eq(restart_worker_died(&ws[2], &p, W_EXITCODE(78, 0), 2600,
	    &delay), RESTART_PERMANENT);
	cr_assert_not(restart_watchdog_ok(ws, 3, 2600, 1000));
}

Test(restart, policy_from_env)
{
	char err[256] = "";

	env = (const char *const[]){ "IPAMD_RESTART_MIN_RUN_MS", "500",
	    "IPAMD_RESTART_FLOOR_MS", "10", "IPAMD_RESTART_CAP_MS", "80",
	    "IPAMD_RESTART_RESET_MS", "2000", "IPAMD_RESTART_MAX_DEATHS", "3",
	    "IPAMD_RESTART_WINDOW_MS", "9000", NULL };
	cr_assert_eq(restart_policy_load(&p, fake_get, err, sizeof(err)), 0, "%s",
	    err);
	cr_assert_eq(p.min_run_ms, 500);
	cr_assert_eq(p.floor_ms, 10);
	cr_assert_eq(p.cap_ms, 80);
	cr_assert_eq(p.reset_ms, 2000);
	cr_assert_eq(p.max_deaths, 3);
	cr_assert_eq(p.window_ms, 9000);
	env = (const char *const[]){ "IPAMD_RESTART_FLOOR_MS", "", NULL };
	cr_assert_eq(restart_policy_load(&p, fake_get, err, sizeof(err)), 0);
	cr_assert_eq(p.floor_ms, 100);
}

Test(restart, policy_bad_values_name_the_variable)
{
	static const char *const bad[][3] = {
		{ "IPAMD_RESTART_FLOOR_MS", "abc" },
		{ "IPAMD_RESTART_FLOOR_MS", "0" },
		{ "IPAMD_RESTART_FLOOR_MS", "10ms" },
		{ "IPAMD_RESTART_FLOOR_MS", " 10" },
		{ "IPAMD_RESTART_CAP_MS", "-5" },
		{ "IPAMD_RESTART_MIN_RUN_MS", "99999999999999999999" },
		{ "IPAMD_RESTART_RESET_MS", "1e3" },
		{ "IPAMD_RESTART_MAX_DEATHS", "0" },
		{ "IPAMD_RESTART_MAX_DEATHS", "64" },
		{ "IPAMD_RESTART_WINDOW_MS", "0" },
		{ "IPAMD_RESTART_CAP_MS", "50" },	/* below the floor */
	};
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		env = bad[i];	/* the third entry is the NULL end */
		err[0] = '\0';
		cr_assert_eq(restart_policy_load(&p, fake_get, err, sizeof(err)),
		    -1, "%s=%s accepted", bad[i][0], bad[i][1]);
		cr_assert_neq(strstr(err, bad[i][0]), NULL, "%s", err);
		cr_assert_null(strchr(err, '\n'));
	}
}

Test(restart, describe_exit)
{
	char buf[64];

	restart_describe_exit(W_EXITCODE(3, 0), buf, sizeof(buf));
	cr_assert_str_eq(buf, "exit 3");
	restart_describe_exit(W_EXITCODE(0, SIGKILL), buf, sizeof(buf));
	cr_assert_str_eq(buf, "signal 9 (Killed)");
	restart_describe_exit(W_EXITCODE(0, SIGSEGV) | WCOREFLAG, buf,
	    sizeof(buf));
	cr_assert_str_eq(buf, "signal 11 (Segmentation fault), core dumped");
}

Test(restart, alive_while_it_has_a_process)
{
	cr_assert_not(restart_worker_alive(&w));
	restart_worker_started(&w, 5, 0);
	cr_assert(restart_worker_alive(&w));
	restart_worker_died(&w, &p, W_EXITCODE(1, 0), 10, &delay);
	cr_assert_not(restart_worker_alive(&w));
	restart_worker_started(&w, 6, 200);
	restart_worker_stopping(&w);
	cr_assert(restart_worker_alive(&w));
	restart_worker_died(&w, &p, W_EXITCODE(0, 0), 300, &delay);
	cr_assert_not(restart_worker_alive(&w));
}

Test(restart, cancel_only_pending_starts)
{
	cr_assert(restart_worker_cancel(&w));
	cr_assert_eq(w.state, RESTART_GONE);
	restart_worker_init(&w);
	restart_worker_started(&w, 7, 0);
	cr_assert_not(restart_worker_cancel(&w));
	cr_assert_eq(w.state, RESTART_RUNNING);
	cr_assert_eq(run_and_die(10, W_EXITCODE(1, 0)), RESTART_AGAIN);
	cr_assert(restart_worker_cancel(&w));
	cr_assert_not(restart_worker_due(&w, now + delay));
}
