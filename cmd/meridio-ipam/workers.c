/*
 * workers.c - meridio-ipam, the supervisor: main validates the
 * configuration, then one poll loop over a signalfd and the workers'
 * status channels runs the db, api and nsp workers. Workers are rows of
 * a table, started with fork + exec (spawn.c) and given a private runtime
 * directory with the db socket; the restart decisions come from
 * lib/restart, the process contract is the comment at the top of
 * ipcmsg.h. systemd hears of it through libsystemd, loaded only when
 * systemd asks.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "config.h"
#include "configjson.h"
#include "datalock.h"
#include "ipc.h"
#include "ipcmsg.h"
#include "log.h"
#include "now.h"
#include "restart.h"
#include "spawn.h"

/* The policy module cannot include the generated messages; keep the two
 * names of the contract's permanent-failure status equal. */
_Static_assert(RESTART_EXIT_PERMANENT == IPCMSG_EXIT_PERMANENT,
    "exit status for a permanent failure differs between modules");

#define WORKERS_TERM_DB_MS 2000	/* stop: SIGTERM to the db worker after this */
#define WORKERS_KILL_MS 4500	/* stop: SIGKILL what is left after this */
#define WORKERS_BACKLOG 64	/* listen backlog of the db socket */
#define WORKERS_LIBSYSTEMD "libsystemd.so.0"	/* libsystemd0's soname */

/* One row of the worker table: adding a worker is adding a row. */
struct workers_row {
	const char *name;	/* short name for logs and STATUS= */
	const char *binary;	/* executable file name */
	bool gets_listen_fd;	/* receives the db socket as fd 4 */
	bool stops_last;	/* stopped after the others are gone */
	bool needs_nsp;		/* runs only when an NSP service is set */
};

static const struct workers_row workers_rows[] = {
	{ "db", "meridio-ipam-db", true, true, false },
	{ "api", "meridio-ipam-api", false, false, false },
	{ "nsp", "meridio-ipam-nsp", false, false, true },
};

#define WORKERS_N (sizeof(workers_rows) / sizeof(workers_rows[0]))

/* What the supervisor keeps per worker besides the policy state. */
struct workers_proc {
	const struct workers_row *row;	/* its row in workers_rows */
	char path[PATH_MAX];		/* resolved executable */
	struct ipc_conn *chan;		/* our end of fd 3, NULL when closed */
	char status[256];		/* last status text it reported */
	uint64_t starts;		/* times started in this run */
};

struct workers {
	struct restart_policy policy;	/* restart numbers */
	struct workers_proc w[WORKERS_N]; /* the rows this instance runs */
	struct restart_worker st[WORKERS_N];	/* their policy state */
	size_t n;			/* entries used in w and st */
	char serving[64];		/* STATUS= suffix once all are ready */
	char rundir[PATH_MAX];		/* private runtime dir, "" if none */
	char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
					/* db socket path inside rundir */
	int listen_fd;			/* db socket, listening; -1 if none */
	int lock_fd;			/* data file, flock held; -1 if none */
	bool lock_created;		/* we created the (empty) data file, and
					 * no db worker served it yet */
	const char *data_path;		/* IPAM_DATA_SOURCE */
	int sig_fd;			/* signalfd for TERM, INT, CHLD */
	char **envp;			/* environment given to workers */
	int64_t wd_ms;			/* WATCHDOG_USEC in ms, 0 = off */
	int64_t wd_next;		/* next watchdog tick */
	bool wd_withheld;		/* last tick withheld the ping */
	bool ready_sent;		/* READY=1 was sent */
	char status[512];		/* last STATUS= sent */
	bool stopping;			/* an orderly stop is under way */
	int64_t stop_at;		/* when the stop began */
	bool last_termed;		/* stops_last workers got SIGTERM */
	bool killed;			/* SIGKILL was sent */
	int exit_code;			/* what workers_run returns */
};

/* sd_notify from libsystemd; NULL unless systemd listens (see
 * workers_sd_open). */
static int (*workers_sd_notify)(int, const char *);

/* The pointers' types are sd-daemon.h's prototypes (typeof does not
 * evaluate: no link-time reference to the library). */
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_notify),
    __typeof__(workers_sd_notify)), "sd_notify's type");
_Static_assert(__builtin_types_compatible_p(__typeof__(&sd_watchdog_enabled),
    int (*)(int, uint64_t *)), "sd_watchdog_enabled's type");

/*
 * Only systemd reads what the supervisor notifies. Elsewhere (a container,
 * a shell, a test) libsystemd and the libraries it pulls in (gcrypt,
 * gpg-error, lz4, zstd, lzma, cap) would only cost the supervisor a large
 * share of its resident pages: it is loaded with dlopen when NOTIFY_SOCKET
 * or WATCHDOG_USEC is set. Sets *usec to the watchdog interval (0: none or
 * a bad WATCHDOG_USEC). Returns 0, or -1 with err set when systemd asked
 * and the library or its functions cannot be loaded.
 */
static int
workers_sd_open(uint64_t *usec, char *err, size_t errlen)
{
	static const char *const env[] = { "NOTIFY_SOCKET", "WATCHDOG_USEC" };
	int (*watchdog)(int, uint64_t *);
	const char *var = NULL;
	void *h;

	*usec = 0;
	for (size_t i = 0; i < 2 && var == NULL; i++)
		if (getenv(env[i]) != NULL)
			var = env[i];
	if (var == NULL)
		return 0;
	if ((h = dlopen(WORKERS_LIBSYSTEMD, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		snprintf(err, errlen, "%s is set but %s cannot be loaded: %s",
		    var, WORKERS_LIBSYSTEMD, dlerror());
		return -1;
	}
	*(void **)&workers_sd_notify = dlsym(h, "sd_notify");
	*(void **)&watchdog = dlsym(h, "sd_watchdog_enabled");
	if (workers_sd_notify == NULL || watchdog == NULL) {
		snprintf(err, errlen, "%s is set but %s lacks sd_notify or "
		    "sd_watchdog_enabled", var, WORKERS_LIBSYSTEMD);
		workers_sd_notify = NULL;
		dlclose(h);
		return -1;
	}
	if (watchdog(0, usec) <= 0)
		*usec = 0;
	return 0;
}

/* sd_notify(0, state); nothing when systemd does not listen. */
static void
workers_notify(const char *state)
{
	if (workers_sd_notify != NULL)
		(void)workers_sd_notify(0, state);
}

static void
workers_close_chan(struct workers_proc *w)
{
	ipc_conn_free(w->chan);
	w->chan = NULL;
}

static void
workers_signal(struct workers *sv, size_t i, int sig)
{
	if (restart_worker_alive(&sv->st[i]) && sv->st[i].pid > 0)
		kill(sv->st[i].pid, sig);
}

/*
 * Begins the orderly stop: nothing is started any more, workers that do
 * not stop last get SIGTERM now. The first caller's exit code wins.
 */
static void
workers_begin_stop(struct workers *sv, int code, const char *why, int64_t now)
{
	if (sv->stopping)
		return;
	sv->stopping = true;
	sv->exit_code = code;
	sv->stop_at = now;
	log_kv(code == 0 ? LOGL_INFO : LOGL_ERROR, "stopping", "reason", why,
	    NULL);
	workers_notify("STOPPING=1");
	for (size_t i = 0; i < sv->n; i++) {
		restart_worker_cancel(&sv->st[i]);
		if (!sv->w[i].row->stops_last &&
		    sv->st[i].state == RESTART_RUNNING) {
			workers_signal(sv, i, SIGTERM);
			restart_worker_stopping(&sv->st[i]);
		}
	}
}

/*
 * Rewrites <rundir>/restarts with every worker's restart count (starts
 * after the first), through a temporary file and rename so that a reader
 * never sees half a file. A failure only costs the metric: logged.
 */
static void
workers_write_restarts(struct workers *sv)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	FILE *f;
	size_t i;

	if (sv->rundir[0] == '\0')
		return;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", sv->rundir,
	    IPCMSG_RESTARTS_FILE) >= sizeof(path) || (size_t)snprintf(tmp,
	    sizeof(tmp), "%s/%s.tmp", sv->rundir, IPCMSG_RESTARTS_FILE) >=
	    sizeof(tmp))
		return;
	if ((f = fopen(tmp, "w")) == NULL)
		goto fail;
	for (i = 0; i < sv->n; i++)
		fprintf(f, "%s %llu\n", sv->w[i].row->name, (unsigned long long)
		    (sv->w[i].starts > 0 ? sv->w[i].starts - 1 : 0));
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		goto fail;
	return;
fail:
	log_kv(LOGL_WARNING, "cannot write the restart counts", "path", path,
	    "error", strerror(errno), NULL);
	(void)unlink(tmp);
}

/*
 * Starts worker i. A failure to fork counts as an immediate death so the
 * usual backoff and tally apply.
 */
static void
workers_start(struct workers *sv, size_t i, int64_t now)
{
	struct workers_proc *w = &sv->w[i];
	int sp[2] = { -1, -1 };
	int64_t delay;
	pid_t pid, self = getpid();

	w->starts++;
	workers_write_restarts(sv);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		goto fail;
	pid = fork();
	if (pid < 0)
		goto fail;
	if (pid == 0)
		spawn_child(w->path, w->row->binary, sv->envp, sp[1],
		    w->row->gets_listen_fd ? sv->listen_fd : -1,
		    w->row->gets_listen_fd ? sv->lock_fd : -1, self);
	close(sp[1]);
	w->chan = ipc_conn_new(sp[0]);
	if (w->chan == NULL)
		close(sp[0]);
	w->status[0] = '\0';
	restart_worker_started(&sv->st[i], pid, now);
	log_kv(LOGL_INFO, "worker started", "worker", w->row->name,
	    LOG_INT("pid", pid), "path", w->path, NULL);
	return;
fail:
	log_kv(LOGL_ERROR, "cannot start worker", "worker", w->row->name,
	    "error", strerror(errno), NULL);
	if (sp[0] >= 0) {
		close(sp[0]);
		close(sp[1]);
	}
	restart_worker_started(&sv->st[i], 0, now);
	if (restart_worker_died(&sv->st[i], &sv->policy, 127 << 8, now,
	    &delay) == RESTART_AGAIN)
		log_kv(LOGL_WARNING, "restart scheduled", "worker",
		    w->row->name, LOG_INT("restart_in_ms", delay), NULL);
	else
		workers_begin_stop(sv, 1, "a worker cannot be started", now);
}

/* Moves the stop along: SIGTERM to the last ones when the others are gone
 * or WORKERS_TERM_DB_MS passed, SIGKILL to everyone at WORKERS_KILL_MS. */
static void
workers_advance_stop(struct workers *sv, int64_t now)
{
	bool others_alive = false;

	for (size_t i = 0; i < sv->n; i++)
		if (!sv->w[i].row->stops_last &&
		    restart_worker_alive(&sv->st[i]))
			others_alive = true;
	if (!sv->last_termed &&
	    (!others_alive || now - sv->stop_at >= WORKERS_TERM_DB_MS)) {
		sv->last_termed = true;
		for (size_t i = 0; i < sv->n; i++)
			if (sv->st[i].state == RESTART_RUNNING) {
				workers_signal(sv, i, SIGTERM);
				restart_worker_stopping(&sv->st[i]);
			}
	}
	if (!sv->killed && now - sv->stop_at >= WORKERS_KILL_MS) {
		sv->killed = true;
		for (size_t i = 0; i < sv->n; i++)
			if (restart_worker_alive(&sv->st[i])) {
				log_kv(LOGL_WARNING, "worker did not stop; "
				    "killing it", "worker", sv->w[i].row->name,
				    NULL);
				workers_signal(sv, i, SIGKILL);
			}
	}
}

static bool
workers_any_alive(const struct workers *sv)
{
	for (size_t i = 0; i < sv->n; i++)
		if (restart_worker_alive(&sv->st[i]))
			return true;
	return false;
}

/*
 * Where the conduits come from when no nsp worker runs, for STATUS=:
 * the db worker applied IPAM_CONDUITS at start, or there is no source.
 */
static void
workers_serving_note(struct workers *sv, const struct cfg *cfg)
{
	if (cfg->nsp_service[0] != '\0')
		sv->serving[0] = '\0';
	else if (cfg->nconduits > 0)
		snprintf(sv->serving, sizeof(sv->serving), ", %zu static "
		    "conduit%s", cfg->nconduits,
		    cfg->nconduits == 1 ? "" : "s");
	else
		snprintf(sv->serving, sizeof(sv->serving),
		    ", no conduit source");
}

/*
 * Sends STATUS= when the summary changed, and READY=1 the first time
 * every worker is ready: "serving: db api nsp ready" ("serving: db api
 * ready, 2 static conduits" without NSP), otherwise what is being waited
 * for ("restarting api", "starting nsp").
 */
static void
workers_update_status(struct workers *sv)
{
	char text[sizeof(sv->status)], msg[sizeof(sv->status) + 16];
	size_t off;

	if (sv->stopping) {
		snprintf(text, sizeof(text), "stopping");
	} else if (restart_all_ready(sv->st, sv->n)) {
		off = (size_t)snprintf(text, sizeof(text), "serving:");
		for (size_t i = 0; i < sv->n && off < sizeof(text); i++)
			off += (size_t)snprintf(text + off, sizeof(text) - off,
			    " %s", sv->w[i].row->name);
		if (off < sizeof(text))
			snprintf(text + off, sizeof(text) - off, " ready%s",
			    sv->serving);
	} else {
		off = 0;
		text[0] = '\0';
		for (size_t i = 0; i < sv->n && off < sizeof(text); i++) {
			const char *what = NULL;

			if (sv->st[i].state == RESTART_WAITING)
				what = "restarting";
			else if (sv->st[i].state == RESTART_RUNNING &&
			    !sv->st[i].ready)
				what = "starting";
			if (what != NULL)
				off += (size_t)snprintf(text + off,
				    sizeof(text) - off, "%s%s %s",
				    off > 0 ? ", " : "", what,
				    sv->w[i].row->name);
		}
	}
	if (strcmp(text, sv->status) == 0)
		return;
	snprintf(sv->status, sizeof(sv->status), "%s", text);
	log_kv(LOGL_INFO, "status", "status", text, NULL);
	if (!sv->ready_sent && !sv->stopping &&
	    restart_all_ready(sv->st, sv->n)) {
		sv->ready_sent = true;
		snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", text);
		log_kv(LOGL_INFO, "all workers ready", NULL);
	} else {
		snprintf(msg, sizeof(msg), "STATUS=%s", text);
	}
	workers_notify(msg);
}

/*
 * Handles a death reported by waitpid: logs it with the status and the
 * restart delay, and stops everything on a permanent failure or when the
 * tally says the worker dies too often.
 */
static void
workers_reaped(struct workers *sv, pid_t pid, int wstatus, int64_t now)
{
	char how[96], why[160];
	const char *name;
	enum restart_verdict v;
	int64_t delay = 0;
	size_t i;

	for (i = 0; i < sv->n; i++)
		if (restart_worker_alive(&sv->st[i]) && sv->st[i].pid == pid)
			break;
	if (i == sv->n)
		return;
	name = sv->w[i].row->name;
	workers_close_chan(&sv->w[i]);
	restart_describe_exit(wstatus, how, sizeof(how));
	v = restart_worker_died(&sv->st[i], &sv->policy, wstatus, now, &delay);
	switch (v) {
	case RESTART_STOPPED:
		log_kv(LOGL_INFO, "worker stopped", "worker", name,
		    LOG_INT("pid", pid), "status", how, NULL);
		break;
	case RESTART_AGAIN:
		log_kv(LOGL_WARNING, "worker died", "worker", name,
		    LOG_INT("pid", pid), "status", how,
		    LOG_INT("restart_in_ms", delay), NULL);
		if (sv->stopping)
			restart_worker_cancel(&sv->st[i]);
		break;
	case RESTART_PERMANENT:
		log_kv(LOGL_ERROR, "worker failed permanently", "worker",
		    name, LOG_INT("pid", pid), "status", how, NULL);
		snprintf(why, sizeof(why), "%s worker failed permanently (%s)",
		    name, how);
		workers_begin_stop(sv, 1, why, now);
		break;
	case RESTART_GIVE_UP:
		log_kv(LOGL_ERROR, "worker died too often", "worker",
		    name, LOG_INT("pid", pid), "status", how,
		    LOG_INT("deaths", sv->st[i].ndeaths), NULL);
		snprintf(why, sizeof(why), "%s worker died more than %u times"
		    " within %lld ms", name, sv->policy.max_deaths,
		    (long long)sv->policy.window_ms);
		workers_begin_stop(sv, 1, why, now);
		break;
	}
}

static void
workers_reap(struct workers *sv, int64_t now)
{
	pid_t pid;
	int st;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
		workers_reaped(sv, pid, st, now);
}

/*
 * Reads worker i's status channel. Every WorkerStatus frame is a
 * heartbeat; anything else is a bug in the worker: it is killed, and the
 * restart policy takes over when it is reaped.
 */
static void
workers_read_chan(struct workers *sv, size_t i, int64_t now)
{
	struct workers_proc *w = &sv->w[i];
	Ipamd__V1__WorkerStatus *m;
	const uint8_t *data;
	const char *bad = NULL;
	size_t len;
	ssize_t n;
	int r;

	n = ipc_conn_fill(w->chan);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n <= 0) {
		log_kv(LOGL_DEBUG, "status channel closed", "worker",
		    w->row->name, "error", n < 0 ? strerror(errno) : "eof",
		    NULL);
		workers_close_chan(w);
		return;
	}
	while (bad == NULL && (r = ipc_conn_next(w->chan, &data, &len)) != 0) {
		if (r < 0) {
			bad = "oversize frame";
			break;
		}
		m = ipcmsg_unpack_status(data, len);
		if (m == NULL) {
			bad = "frame is not a WorkerStatus";
			break;
		}
		if (m->ready && sv->w[i].row->gets_listen_fd)
			sv->lock_created = false;	/* the db's file now */
		if (restart_worker_beat(&sv->st[i], m->ready, now))
			log_kv(LOGL_INFO, "worker ready", "worker",
			    w->row->name, NULL);
		if (strcmp(m->status, w->status) != 0) {
			snprintf(w->status, sizeof(w->status), "%s", m->status);
			log_kv(LOGL_DEBUG, "worker status", "worker",
			    w->row->name, "status", w->status, NULL);
		}
		ipamd__v1__worker_status__free_unpacked(m, NULL);
	}
	if (bad != NULL) {
		log_kv(LOGL_ERROR, "nonsense on status channel; killing worker",
		    "worker", w->row->name, LOG_INT("pid", sv->st[i].pid),
		    "error", bad, NULL);
		workers_signal(sv, i, SIGKILL);
		workers_close_chan(w);
	}
}

/* Reads the signalfd: TERM and INT begin the stop, CHLD reaps. */
static void
workers_read_signals(struct workers *sv, int64_t now)
{
	struct signalfd_siginfo si;
	char why[64];

	while (read(sv->sig_fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGCHLD) {
			workers_reap(sv, now);
		} else {
			snprintf(why, sizeof(why), "signal %s",
			    si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
			workers_begin_stop(sv, 0, why, now);
		}
	}
}

/* Pets systemd's watchdog every half interval, only while every worker
 * beat within the interval. */
static void
workers_watchdog(struct workers *sv, int64_t now)
{
	bool ok;

	if (sv->wd_ms == 0 || now < sv->wd_next)
		return;
	sv->wd_next = now + sv->wd_ms / 2;
	ok = restart_watchdog_ok(sv->st, sv->n, now, sv->wd_ms);
	if (ok)
		workers_notify("WATCHDOG=1");
	if (ok == sv->wd_withheld)
		log_kv(ok ? LOGL_INFO : LOGL_WARNING, ok ?
		    "watchdog pings resumed" : "watchdog ping withheld: a "
		    "worker is silent", NULL);
	sv->wd_withheld = !ok;
}

/* Milliseconds until the next timed event (restart, watchdog, stop
 * phase), at most 1 s. */
static int
workers_timeout(const struct workers *sv, int64_t now)
{
	int64_t next = now + 1000;

	for (size_t i = 0; i < sv->n; i++)
		if (sv->st[i].state == RESTART_WAITING &&
		    sv->st[i].restart_at_ms < next)
			next = sv->st[i].restart_at_ms;
	if (sv->wd_ms > 0 && !sv->stopping && sv->wd_next < next)
		next = sv->wd_next;
	if (sv->stopping) {
		if (!sv->last_termed && sv->stop_at + WORKERS_TERM_DB_MS < next)
			next = sv->stop_at + WORKERS_TERM_DB_MS;
		if (!sv->killed && sv->stop_at + WORKERS_KILL_MS < next)
			next = sv->stop_at + WORKERS_KILL_MS;
	}
	return next <= now ? 0 : (int)(next - now);
}

/* The loop: signals, status frames, restarts, watchdog, until the stop is
 * complete. */
static void
workers_loop(struct workers *sv)
{
	struct pollfd pfd[1 + WORKERS_N];
	size_t idx[1 + WORKERS_N], n;
	int64_t now;

	for (;;) {
		now = now_ms();
		if (sv->stopping) {
			workers_advance_stop(sv, now);
			if (!workers_any_alive(sv))
				break;
		} else {
			for (size_t i = 0; i < sv->n; i++)
				if (restart_worker_due(&sv->st[i], now) ||
				    sv->st[i].state == RESTART_IDLE)
					workers_start(sv, i, now);
			workers_watchdog(sv, now);
		}
		workers_update_status(sv);
		pfd[0] = (struct pollfd){ .fd = sv->sig_fd, .events = POLLIN };
		n = 1;
		for (size_t i = 0; i < sv->n; i++)
			if (sv->w[i].chan != NULL) {
				pfd[n] = (struct pollfd){ .events = POLLIN,
				    .fd = ipc_conn_fd(sv->w[i].chan) };
				idx[n++] = i;
			}
		if (poll(pfd, n, workers_timeout(sv, now)) < 0 &&
		    errno != EINTR) {
			log_kv(LOGL_ERROR, "poll", "error", strerror(errno),
			    NULL);
			workers_begin_stop(sv, 1, "poll failed", now);
			continue;
		}
		now = now_ms();
		for (size_t k = 1; k < n; k++)
			if (pfd[k].revents != 0 && sv->w[idx[k]].chan != NULL)
				workers_read_chan(sv, idx[k], now);
		if (pfd[0].revents != 0)
			workers_read_signals(sv, now);
	}
}

/* Blocks TERM, INT and CHLD into a signalfd; ignores SIGPIPE. */
static int
workers_setup_signals(struct workers *sv)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -1;
	signal(SIGPIPE, SIG_IGN);
	sv->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	return sv->sig_fd < 0 ? -1 : 0;
}

/*
 * Makes the instance's private runtime directory (mkdtemp: mode 0700, a
 * fresh name per instance) under $XDG_RUNTIME_DIR, else $TMPDIR, else
 * /tmp, and listens on the db socket in it. Returns 0, or -1 (logged;
 * sv->rundir is "" when nothing was made).
 */
static int
workers_rundir_make(struct workers *sv)
{
	const char *base = getenv("XDG_RUNTIME_DIR");
	char err[256];

	if (base == NULL || *base == '\0')
		base = getenv("TMPDIR");
	if (base == NULL || *base == '\0')
		base = "/tmp";
	if ((size_t)snprintf(sv->rundir, sizeof(sv->rundir),
	    "%s/meridio-ipam.XXXXXX", base) >= sizeof(sv->rundir) ||
	    mkdtemp(sv->rundir) == NULL) {
		log_kv(LOGL_ERROR, "cannot create runtime directory", "base",
		    base, "error", strerror(errno), NULL);
		sv->rundir[0] = '\0';
		return -1;
	}
	if (ipcmsg_db_path(sv->rundir, sv->sock, sizeof(sv->sock)) < 0) {
		log_kv(LOGL_ERROR, "runtime directory path too long for a "
		    "Unix socket", "path", sv->rundir, NULL);
		return -1;
	}
	sv->listen_fd = ipc_listen(sv->sock, WORKERS_BACKLOG, err,
	    sizeof(err));
	if (sv->listen_fd < 0) {
		log_kv(LOGL_ERROR, "cannot listen on db socket", "error", err,
		    NULL);
		return -1;
	}
	log_kv(LOGL_INFO, "runtime directory", "path", sv->rundir, NULL);
	return 0;
}

/* Removes the runtime directory and what workers left in it, one level:
 * nothing in the contract makes subdirectories. Nothing for "". */
static void
workers_rundir_remove(const char *rundir)
{
	struct dirent *de;
	DIR *d;

	if (rundir[0] == '\0')
		return;
	d = opendir(rundir);
	if (d != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			if (unlinkat(dirfd(d), de->d_name, 0) < 0 &&
			    errno == EISDIR)
				unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
		}
		closedir(d);
	}
	if (rmdir(rundir) < 0)
		log_kv(LOGL_WARNING, "cannot remove runtime directory", "path",
		    rundir, "error", strerror(errno), NULL);
}

/*
 * Runs until SIGTERM/SIGINT (returns 0 after an orderly stop) or until a
 * worker fails for good or too often, or setup fails (returns 1).
 */
static int
workers_run(const struct cfg *cfg, const struct restart_policy *policy)
{
	struct workers sv = { .policy = *policy, .listen_fd = -1, .sig_fd = -1,
	    .lock_fd = -1, .exit_code = 1, .data_path = cfg->data_source };
	uint64_t usec = 0;
	char err[512];

	/* workers read the same, validated, environment */
	for (size_t r = 0; r < WORKERS_N; r++) {
		struct workers_proc *w = &sv.w[sv.n];

		if (workers_rows[r].needs_nsp && cfg->nsp_service[0] == '\0')
			continue;
		w->row = &workers_rows[r];
		restart_worker_init(&sv.st[sv.n++]);
		if (spawn_find_binary(w->row->binary, w->path,
		    sizeof(w->path)) < 0) {
			log_kv(LOGL_ERROR, "worker binary not found beside the"
			    " supervisor nor in " IPAM_LIBEXECDIR, "binary",
			    w->row->binary, NULL);
			return 1;
		}
	}
	workers_serving_note(&sv, cfg);
	if (workers_setup_signals(&sv) < 0) {
		log_kv(LOGL_ERROR, "cannot set up signals", "error",
		    strerror(errno), NULL);
		goto out;
	}
	if (datalock_take(sv.data_path, &sv.lock_fd, &sv.lock_created) < 0)
		goto out;
	if (workers_rundir_make(&sv) < 0)
		goto out;
	sv.envp = spawn_env(sv.rundir);
	if (sv.envp == NULL) {
		log_kv(LOGL_ERROR, "out of memory", NULL);
		goto out;
	}
	if (workers_sd_open(&usec, err, sizeof(err)) < 0) {
		log_kv(LOGL_ERROR, "cannot notify systemd", "error", err,
		    NULL);
		goto out;
	}
	if (usec > 0) {
		sv.wd_ms = (int64_t)(usec / 1000) > 1 ?
		    (int64_t)(usec / 1000) : 2;
		sv.wd_next = now_ms();
		log_kv(LOGL_INFO, "watchdog enabled",
		    LOG_INT("interval_ms", sv.wd_ms), NULL);
	}
	sv.exit_code = 0;
	workers_loop(&sv);
	workers_update_status(&sv);
out:
	for (size_t i = 0; i < sv.n; i++)
		workers_close_chan(&sv.w[i]);
	if (sv.listen_fd >= 0)
		close(sv.listen_fd);
	if (sv.sig_fd >= 0)
		close(sv.sig_fd);
	datalock_release(sv.data_path, &sv.lock_fd, sv.lock_created);
	workers_rundir_remove(sv.rundir);
	spawn_env_free(sv.envp);
	log_kv(LOGL_INFO, "exiting", LOG_INT("code", sv.exit_code), NULL);
	return sv.exit_code;
}

static const char *
workers_getenv(const char *name)
{
	return getenv(name);
}

static void
workers_usage(FILE *f)
{
	fprintf(f, "usage: meridio-ipam [--help | --version | --check | "
	    "--debug]\n"
	    "  --check    validate the configuration in the environment "
	    "and exit without\n"
	    "             serving: 0 when valid, 2 and one line naming the "
	    "bad variable\n"
	    "  --debug    as --check, printing the effective configuration "
	    "as JSON\n");
}

/*
 * The first lines: what this instance serves and where its conduits come
 * from (NSP or IPAM_CONDUITS), with a warning when they come from nowhere
 * or when IPAM_CONDUITS overrides a configured NSP.
 */
static void
workers_log_start(const struct cfg *c)
{
	char conduits[1024] = "";
	size_t i, o = 0;

	for (i = 0; i < c->nconduits && o < sizeof(conduits); i++)
		o += (size_t)snprintf(conduits + o, sizeof(conduits) - o,
		    "%s%s", i ? "," : "", c->conduits[i]);
	log_kv(LOGL_INFO, "starting", "release", IPAM_VERSION, "trench",
	    c->trench, "namespace", c->k8s_namespace, "nsp_service",
	    c->nsp_service, "conduits", conduits, NULL);
	if (c->nsp_ignored)
		log_kv(LOGL_WARNING, "IPAM_NSP_SERVICE ignored: IPAM_CONDUITS "
		    "selects static conduits and no NSP", "IPAM_NSP_SERVICE",
		    getenv("IPAM_NSP_SERVICE"), "IPAM_CONDUITS", conduits,
		    NULL);
	if (c->nsp_service[0] == '\0' && c->nconduits == 0)
		log_kv(LOGL_WARNING, "no conduits: IPAM_NSP_SERVICE is empty "
		    "and IPAM_CONDUITS unset, so every Allocate fails", NULL);
}

/*
 * Flags first (they need no valid environment, except --debug which shows
 * it), then the configuration and the restart policy: a bad value prints
 * one line and exits 2 before anything is created.
 */
int
main(int argc, char **argv)
{
	struct cfg cfg = { 0 };
	struct restart_policy policy;
	char err[512];
	bool debug = false, check = false;
	char *json;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			workers_usage(stdout);
			fputs(config_help(), stdout);
			return 0;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("meridio-ipam %s\n", IPAM_VERSION);
			return 0;
		} else if (strcmp(argv[i], "--debug") == 0) {
			debug = true;
		} else if (strcmp(argv[i], "--check") == 0) {
			check = true;
		} else {
			fprintf(stderr, "meridio-ipam: unknown argument: %s\n",
			    argv[i]);
			workers_usage(stderr);
			return 2;
		}
	}
	if (config_load(&cfg, workers_getenv, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	if (restart_policy_load(&policy, workers_getenv, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		config_free(&cfg);
		return 2;
	}
	if (check && !debug) {
		printf("meridio-ipam: configuration is valid\n");
		config_free(&cfg);
		return 0;
	}
	if (debug) {
		json = configjson_text(&cfg);
		rc = json != NULL && printf("%s\n", json) > 0 ? 0 : 1;
		free(json);
		config_free(&cfg);
		return rc;
	}
	log_init("supervisor", cfg.log_level, 2);
	workers_log_start(&cfg);
	/* No process of the daemon ever needs to gain privileges (setuid
	 * binaries, file capabilities); workers inherit this. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		log_error("PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		config_free(&cfg);
		return 1;
	}
	rc = workers_run(&cfg, &policy);
	config_free(&cfg);
	return rc;
}
