/*
 * restart.h - the supervisor's restart policy and per-worker state,
 * kept free of processes and clocks so it can be tested alone.
 *
 * A worker that dies after running at least min_run_ms is restarted at
 * once. One that dies sooner waits floor_ms, then twice as long after each
 * further short run, up to cap_ms. A run of reset_ms or more forgets the
 * backoff. More than max_deaths deaths of one worker within window_ms, or
 * an exit with status 78 (IPCMSG_EXIT_PERMANENT), means a restart will not
 * help: the supervisor stops everything and exits 1.
 *
 * The numbers can be overridden from the environment (for tests):
 *   IPAMD_RESTART_MIN_RUN_MS   (1000)  a run this long restarts at once
 *   IPAMD_RESTART_FLOOR_MS     (100)   first delay after a short run, >= 1
 *   IPAMD_RESTART_CAP_MS       (5000)  longest delay, >= the floor
 *   IPAMD_RESTART_RESET_MS     (30000) a run this long resets the backoff
 *   IPAMD_RESTART_MAX_DEATHS   (10)    deaths tolerated in the window, 1-63
 *   IPAMD_RESTART_WINDOW_MS    (60000) the window of the death tally, >= 1
 * Times are milliseconds on a monotonic clock. No logging, no exit.
 */
#ifndef IPAM_RESTART_H
#define IPAM_RESTART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Room in a worker's death tally; max_deaths must be below it. */
#define RESTART_TALLY_MAX 64

/* Exit status that marks a permanent failure (EX_CONFIG). */
#define RESTART_EXIT_PERMANENT 78

struct restart_policy {
	int64_t min_run_ms;	/* a run this long restarts at once */
	int64_t floor_ms;	/* delay after the first short run */
	int64_t cap_ms;		/* longest delay */
	int64_t reset_ms;	/* a run this long resets the backoff */
	unsigned max_deaths;	/* more deaths than this in window: give up */
	int64_t window_ms;	/* length of the death tally's window */
};

/* Where a worker is in its life. */
enum restart_state {
	RESTART_IDLE = 0,		/* not started yet */
	RESTART_RUNNING,		/* started, pid valid */
	RESTART_WAITING,		/* died; restart due at restart_at_ms */
	RESTART_STOPPING,	/* asked to stop, pid valid until reaped */
	RESTART_GONE,		/* stopped for good */
};

/* What to do about a death. */
enum restart_verdict {
	RESTART_AGAIN,		/* start again after the returned delay */
	RESTART_GIVE_UP,		/* too many deaths in the window */
	RESTART_PERMANENT,		/* exit 78: a restart cannot help */
	RESTART_STOPPED,	/* it was asked to stop: nothing to do */
};

struct restart_worker {
	enum restart_state state;	/* see enum restart_state */
	pid_t pid;		/* process id while RUNNING or STOPPING */
	bool ready;		/* reported ready = true since its start */
	int64_t started_ms;	/* time of the last start */
	int64_t last_beat_ms;	/* time of the last status frame (or start) */
	int64_t restart_at_ms;	/* WAITING: when to start it again */
	int64_t backoff_ms;	/* delay for the next short run, 0 = floor */
	unsigned starts;	/* number of starts so far */
	unsigned ndeaths;	/* entries used in deaths[] */
	int64_t deaths[RESTART_TALLY_MAX]; /* death times in the window */
};

/*
 * Defaults overridden by the IPAMD_RESTART_* variables as read by get
 * (getenv in programs). On a bad value writes one line naming the
 * variable, the value and what is expected into err and returns -1.
 */
int restart_policy_load(struct restart_policy *p,
    const char *(*get)(const char *),
    char *err, size_t errlen);

/* A worker that has not run yet. */
void restart_worker_init(struct restart_worker *w);

/* Records a start: RUNNING, not ready, the start counts as a heartbeat. */
void restart_worker_started(struct restart_worker *w, pid_t pid, int64_t now);

/* Records a status frame. Returns true when it made the worker ready. */
bool restart_worker_beat(struct restart_worker *w, bool ready, int64_t now);

/* Records that the worker was asked to stop (SIGTERM sent). */
void restart_worker_stopping(struct restart_worker *w);

/* Cancels a pending (re)start: an IDLE or WAITING worker becomes GONE.
 * Returns true if it did; a running worker is left alone. */
bool restart_worker_cancel(struct restart_worker *w);

/*
 * Records the death of the worker with waitpid status wstatus and decides.
 * RESTART_AGAIN sets *delay_ms and leaves the worker WAITING; the others
 * leave it GONE.
 */
enum restart_verdict restart_worker_died(struct restart_worker *w,
    const struct restart_policy *p, int wstatus, int64_t now,
    int64_t *delay_ms);

/* True while the worker has a process (RUNNING or STOPPING). */
bool restart_worker_alive(const struct restart_worker *w);

/* True when a WAITING worker's restart time has come. */
bool restart_worker_due(const struct restart_worker *w, int64_t now);

/* True when every worker runs and has reported ready. */
bool restart_all_ready(const struct restart_worker *ws, size_t n);

/* True when every worker sent a status frame (or started) within the last
 * interval_ms: the condition for petting systemd's watchdog. */
bool restart_watchdog_ok(const struct restart_worker *ws, size_t n, int64_t now,
    int64_t interval_ms);

/* A waitpid status in words: "exit 1", "signal 9 (Killed)". */
void restart_describe_exit(int wstatus, char *buf, size_t len);

#endif
