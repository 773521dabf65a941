/*
 * restart.c - restart policy and worker state of the supervisor (see
 * restart.h). Pure: times come in as arguments, nothing is logged.
 */
#include "restart.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/*
 * Reads one variable as a decimal integer in [min, max] into *out; an
 * unset or empty variable leaves *out alone. -1 with a message on error.
 */
static int
restart_env_int(const char *(*get)(const char *), const char *name, int64_t min,
    int64_t max, int64_t *out, char *err, size_t errlen)
{
	const char *s = get(name);
	char *end;
	long long v;

	if (s == NULL || *s == '\0')
		return 0;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || end == s || s[0] == ' ' ||
	    v < min || v > max) {
		snprintf(err, errlen, "%s=\"%s\": expected an integer from %lld"
		    " to %lld", name, s, (long long)min, (long long)max);
		return -1;
	}
	*out = v;
	return 0;
}

/* The defaults of restart.h, then the environment. The bounds keep every
 * later sum and doubling far from overflow. */
int
restart_policy_load(struct restart_policy *p, const char *(*get)(const char *),
    char *err, size_t errlen)
{
	const int64_t day = 86400000;
	int64_t deaths;

	*p = (struct restart_policy){ .min_run_ms = 1000, .floor_ms = 100,
	    .cap_ms = 5000, .reset_ms = 30000, .max_deaths = 10,
	    .window_ms = 60000 };
	deaths = p->max_deaths;
	if (restart_env_int(get, "IPAMD_RESTART_MIN_RUN_MS", 0, day,
	    &p->min_run_ms, err, errlen) < 0 ||
	    restart_env_int(get, "IPAMD_RESTART_FLOOR_MS", 1, day,
	    &p->floor_ms, err, errlen) < 0 ||
	    restart_env_int(get, "IPAMD_RESTART_CAP_MS", 1, day,
	    &p->cap_ms, err, errlen) < 0 ||
	    restart_env_int(get, "IPAMD_RESTART_RESET_MS", 0, day,
	    &p->reset_ms, err, errlen) < 0 ||
	    restart_env_int(get, "IPAMD_RESTART_MAX_DEATHS", 1,
	    RESTART_TALLY_MAX - 1, &deaths, err, errlen) < 0 ||
	    restart_env_int(get, "IPAMD_RESTART_WINDOW_MS", 1, day,
	    &p->window_ms, err, errlen) < 0)
		return -1;
	p->max_deaths = (unsigned)deaths;
	if (p->cap_ms < p->floor_ms) {
		snprintf(err, errlen, "IPAMD_RESTART_CAP_MS=\"%lld\": expected at"
		    " least IPAMD_RESTART_FLOOR_MS (%lld)",
		    (long long)p->cap_ms, (long long)p->floor_ms);
		return -1;
	}
	return 0;
}

void
restart_worker_init(struct restart_worker *w)
{
	memset(w, 0, sizeof(*w));	/* RESTART_IDLE is 0 */
}

void
restart_worker_started(struct restart_worker *w, pid_t pid, int64_t now)
{
	w->state = RESTART_RUNNING;
	w->pid = pid;
	w->ready = false;
	w->started_ms = now;
	w->last_beat_ms = now;
	w->starts++;
}

bool
restart_worker_beat(struct restart_worker *w, bool ready, int64_t now)
{
	bool became = ready && !w->ready;

	w->last_beat_ms = now;
	if (ready)
		w->ready = true;
	return became;
}

void
restart_worker_stopping(struct restart_worker *w)
{
	w->state = RESTART_STOPPING;
}

bool
restart_worker_cancel(struct restart_worker *w)
{
	if (w->state != RESTART_IDLE && w->state != RESTART_WAITING)
		return false;
	w->state = RESTART_GONE;
	return true;
}

/* Adds a death at now to the tally, dropping those older than the window.
 * Returns the number of deaths within the window, this one included. */
static unsigned
restart_tally(struct restart_worker *w, const struct restart_policy *p,
    int64_t now)
{
	unsigned i, keep = 0;

	for (i = 0; i < w->ndeaths; i++)
		if (now - w->deaths[i] < p->window_ms)
			w->deaths[keep++] = w->deaths[i];
	if (keep == RESTART_TALLY_MAX) {
		/* Only reachable with max_deaths >= RESTART_TALLY_MAX, which
		 * restart_policy_load refuses; keep the newest anyway. */
		memmove(w->deaths, w->deaths + 1,
		    (RESTART_TALLY_MAX - 1) * sizeof(w->deaths[0]));
		keep--;
	}
	w->deaths[keep++] = now;
	w->ndeaths = keep;
	return keep;
}

/*
 * The decision, in order: a death that was asked for is final; every other
 * death is tallied; exit 78 is permanent; too many deaths give up; a long
 * run restarts at once (a very long one also forgets the backoff); a short
 * run waits the current backoff, which then doubles up to the cap.
 */
enum restart_verdict
restart_worker_died(struct restart_worker *w, const struct restart_policy *p,
    int wstatus, int64_t now, int64_t *delay_ms)
{
	int64_t ran = now - w->started_ms, delay;
	bool permanent = WIFEXITED(wstatus) &&
	    WEXITSTATUS(wstatus) == RESTART_EXIT_PERMANENT;
	enum restart_state was = w->state;
	unsigned deaths;

	w->pid = 0;
	w->ready = false;
	w->state = RESTART_GONE;
	if (was == RESTART_STOPPING)
		return RESTART_STOPPED;
	deaths = restart_tally(w, p, now);
	if (permanent)
		return RESTART_PERMANENT;
	if (deaths > p->max_deaths)
		return RESTART_GIVE_UP;
	if (ran >= p->reset_ms)
		w->backoff_ms = 0;
	if (ran >= p->min_run_ms) {
		delay = 0;
	} else {
		delay = w->backoff_ms > p->floor_ms ? w->backoff_ms :
		    p->floor_ms;
		if (delay > p->cap_ms)
			delay = p->cap_ms;
		w->backoff_ms = delay * 2 > p->cap_ms ? p->cap_ms : delay * 2;
	}
	w->state = RESTART_WAITING;
	w->restart_at_ms = now + delay;
	*delay_ms = delay;
	return RESTART_AGAIN;
}

bool
restart_worker_alive(const struct restart_worker *w)
{
	return w->state == RESTART_RUNNING || w->state == RESTART_STOPPING;
}

bool
restart_worker_due(const struct restart_worker *w, int64_t now)
{
	return w->state == RESTART_WAITING && now >= w->restart_at_ms;
}

bool
restart_all_ready(const struct restart_worker *ws, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ws[i].state != RESTART_RUNNING || !ws[i].ready)
			return false;
	return true;
}

/* A worker waiting for its restart still counts from its last beat, so a
 * quick restart does not stop the watchdog, a long outage does. */
bool
restart_watchdog_ok(const struct restart_worker *ws, size_t n, int64_t now,
    int64_t interval_ms)
{
	for (size_t i = 0; i < n; i++)
		if (ws[i].state == RESTART_IDLE || ws[i].state == RESTART_GONE ||
		    now - ws[i].last_beat_ms > interval_ms)
			return false;
	return true;
}

void
restart_describe_exit(int wstatus, char *buf, size_t len)
{
	if (WIFEXITED(wstatus))
		snprintf(buf, len, "exit %d", WEXITSTATUS(wstatus));
	else if (WIFSIGNALED(wstatus))
		snprintf(buf, len, "signal %d (%s)%s", WTERMSIG(wstatus),
		    strsignal(WTERMSIG(wstatus)),
		    WCOREDUMP(wstatus) ? ", core dumped" : "");
	else
		snprintf(buf, len, "status 0x%x", (unsigned)wstatus);
}
