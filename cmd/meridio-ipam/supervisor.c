/*
 * supervisor.c - one poll loop over a signalfd and the workers' status
 * channels. Workers are rows of a table, started with fork + exec; the
 * restart decisions come from lib/supervise, the process contract is the
 * comment at the top of ipcmsg.h.
 */
#include "supervisor.h"

#include <dirent.h>
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
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ipc.h"
#include "ipcmsg.h"
#include "log.h"
#include "sdnotify.h"
#include "store.h"

#ifndef IPAM_LIBEXECDIR
#define IPAM_LIBEXECDIR "/usr/local/libexec/meridio-ipam"
#endif

/* The policy module cannot include the generated messages; keep the two
 * names of the contract's permanent-failure status equal. */
_Static_assert(SUP_EXIT_PERMANENT == IPCMSG_EXIT_PERMANENT,
    "exit status for a permanent failure differs between modules");

#define SV_TERM_DB_MS 2000	/* stop: SIGTERM to the db worker after this */
#define SV_KILL_MS 4500		/* stop: SIGKILL whatever is left after this */
#define SV_BACKLOG 64		/* listen backlog of the db socket */
#define SV_ENV_WRAPPER "IPAMD_WORKER_WRAPPER"	/* tests: run workers under */
#define SV_LOCK_WAIT_MS 5000	/* start: wait for a stopping holder this long */
#define SV_LOCK_POLL_MS 50	/* ... trying again this often */

extern char **environ;

/* One row of the worker table: adding a worker is adding a row. */
struct sv_row {
	const char *name;	/* short name for logs and STATUS= */
	const char *binary;	/* executable file name */
	bool gets_listen_fd;	/* receives the db socket as fd 4 */
	bool stops_last;	/* stopped after the others are gone */
	bool needs_nsp;		/* runs only when an NSP service is set */
};

static const struct sv_row sv_rows[] = {
	{ "db", "meridio-ipam-db", true, true, false },
	{ "api", "meridio-ipam-api", false, false, false },
	{ "nsp", "meridio-ipam-nsp", false, false, true },
};

#define SV_N (sizeof(sv_rows) / sizeof(sv_rows[0]))

/* What the supervisor keeps per worker besides the policy state. */
struct sv_worker {
	const struct sv_row *row;	/* its row in sv_rows */
	char path[PATH_MAX];		/* resolved executable */
	struct ipc_conn *chan;		/* our end of fd 3, NULL when closed */
	char status[256];		/* last status text it reported */
	uint64_t starts;		/* times started in this run */
};

struct sv {
	struct sup_policy policy;	/* restart numbers */
	struct sv_worker w[SV_N];	/* the rows this instance runs */
	struct sup_worker st[SV_N];	/* their policy state */
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
	int exit_code;			/* what sv_run returns */
};

static int64_t
sv_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Finds a worker binary beside our own executable (a build tree, or a
 * package that installs everything in one directory), then in
 * ../libexec/meridio-ipam relative to it (an install under any prefix, even
 * one moved after the build), else in IPAM_LIBEXECDIR. 0, or -1 when none
 * is executable.
 */
static int
sv_find_binary(const char *binary, char *out, size_t outlen)
{
	static const char *const rel[] = { "", "/../libexec/meridio-ipam" };
	char self[PATH_MAX], *slash;
	ssize_t n;
	size_t i;

	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash != NULL) {
			*slash = '\0';
			for (i = 0; i < sizeof(rel) / sizeof(rel[0]); i++)
				if ((size_t)snprintf(out, outlen, "%s%s/%s",
				    self, rel[i], binary) < outlen &&
				    access(out, X_OK) == 0)
					return 0;
		}
	}
	if ((size_t)snprintf(out, outlen, "%s/%s", IPAM_LIBEXECDIR, binary) <
	    outlen && access(out, X_OK) == 0)
		return 0;
	return -1;
}

/*
 * The workers' environment: ours without anything that would let a worker
 * talk to systemd itself, plus IPAMD_RUNDIR. Built once, before any fork.
 */
static char **
sv_worker_env(const char *rundir)
{
	static const char *const drop[] = { "NOTIFY_SOCKET=", "WATCHDOG_USEC=",
	    "WATCHDOG_PID=", IPCMSG_ENV_RUNDIR "=" };
	size_t n = 0, k = 0;
	char **envp;

	while (environ[n] != NULL)
		n++;
	envp = calloc(n + 2, sizeof(*envp));
	if (envp == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		bool skip = false;

		for (size_t d = 0; d < sizeof(drop) / sizeof(drop[0]); d++)
			if (strncmp(environ[i], drop[d], strlen(drop[d])) == 0)
				skip = true;
		if (!skip)
			envp[k++] = environ[i];
	}
	if (asprintf(&envp[k], "%s=%s", IPCMSG_ENV_RUNDIR, rundir) < 0) {
		free(envp);
		return NULL;
	}
	return envp;
}

static void
sv_free_env(char **envp)
{
	size_t n = 0;

	if (envp == NULL)
		return;
	while (envp[n] != NULL)
		n++;
	if (n > 0)
		free(envp[n - 1]);	/* the IPAMD_RUNDIR entry we made */
	free(envp);
}

/*
 * A debugging aid for tests (valgrind, strace): with $IPAMD_WORKER_WRAPPER
 * set to a command line ("valgrind --leak-check=full"), a worker runs as
 * that command followed by the worker's path. Words are split on spaces,
 * the first is looked up in PATH. Returns only when the variable is unset
 * or empty; a wrapper that cannot be run ends the child with 127.
 */
static void
sv_exec_wrapped(const struct sv *sv, const struct sv_worker *w)
{
	const char *wrap = getenv(SV_ENV_WRAPPER);
	char buf[1024], *argv[34], *word;
	size_t n = 0;

	if (wrap == NULL || wrap[0] == '\0')
		return;
	if (strlen(wrap) >= sizeof(buf))
		_exit(127);
	memcpy(buf, wrap, strlen(wrap) + 1);
	for (word = strtok(buf, " "); word != NULL && n < 32;
	    word = strtok(NULL, " "))
		argv[n++] = word;
	if (n == 0 || word != NULL)
		_exit(127);
	argv[n++] = (char *)w->path;
	argv[n] = NULL;
	execvpe(argv[0], argv, sv->envp);
	_exit(127);
}

/*
 * In the child between fork and exec: die with the supervisor, no new
 * privileges, default signals but SIGINT ignored, and exactly fds 0-2, 3 (status channel)
 * and, for the db worker, 4 (listening socket). Sources are first moved
 * above 10 so that dup2 onto 3 and 4 cannot clobber one another.
 */
static void __attribute__((noreturn))
sv_child(const struct sv *sv, const struct sv_worker *w, int chan,
    pid_t parent)
{
	char *argv[] = { (char *)w->row->binary, NULL };
	struct sigaction sa = { .sa_handler = SIG_DFL };
	sigset_t none;
	int a, b = -1, l = -1, first_free = IPCMSG_SUPERVISOR_FD + 1;

	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
		_exit(127);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		_exit(127);
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &sa, NULL);
	/* A terminal's Ctrl-C reaches the whole foreground process group;
	 * only the supervisor acts on it (the orderly stop, in order). An
	 * ignored signal stays ignored across exec and never reaches the
	 * workers' signalfd; SIGTERM from the supervisor still does. */
	sa.sa_handler = SIG_IGN;
	sigaction(SIGINT, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	a = fcntl(chan, F_DUPFD, 10);
	if (w->row->gets_listen_fd)
		b = fcntl(sv->listen_fd, F_DUPFD, 10);
	if (w->row->gets_listen_fd && sv->lock_fd >= 0)
		l = fcntl(sv->lock_fd, F_DUPFD, 10);
	if (a < 0 || (w->row->gets_listen_fd && b < 0) ||
	    (w->row->gets_listen_fd && sv->lock_fd >= 0 && l < 0))
		_exit(127);
	if (dup2(a, IPCMSG_SUPERVISOR_FD) < 0)
		_exit(127);
	if (b >= 0) {
		if (dup2(b, IPCMSG_DB_LISTEN_FD) < 0)
			_exit(127);
		first_free = IPCMSG_DB_LISTEN_FD + 1;
	}
	if (l >= 0) {
		if (dup2(l, IPCMSG_DB_LOCK_FD) < 0)
			_exit(127);
		first_free = IPCMSG_DB_LOCK_FD + 1;
	}
	if (syscall(SYS_close_range, first_free, ~0U, 0) < 0)
		for (int fd = first_free; fd < 65536; fd++)
			close(fd);
	sv_exec_wrapped(sv, w);
	execve(w->path, argv, sv->envp);
	_exit(127);
}


static void
sv_close_chan(struct sv_worker *w)
{
	ipc_conn_free(w->chan);
	w->chan = NULL;
}

static void
sv_signal(struct sv *sv, size_t i, int sig)
{
	if (sup_worker_alive(&sv->st[i]) && sv->st[i].pid > 0)
		kill(sv->st[i].pid, sig);
}

/*
 * Begins the orderly stop: nothing is started any more, workers that do
 * not stop last get SIGTERM now. The first caller's exit code wins.
 */
static void
sv_begin_stop(struct sv *sv, int code, const char *why, int64_t now)
{
	if (sv->stopping)
		return;
	sv->stopping = true;
	sv->exit_code = code;
	sv->stop_at = now;
	log_kv(code == 0 ? LOGL_INFO : LOGL_ERROR, "stopping", "reason", why,
	    NULL);
	sdn_notify("STOPPING=1");
	for (size_t i = 0; i < sv->n; i++) {
		sup_worker_cancel(&sv->st[i]);
		if (!sv->w[i].row->stops_last && sv->st[i].state == SUP_RUNNING) {
			sv_signal(sv, i, SIGTERM);
			sup_worker_stopping(&sv->st[i]);
		}
	}
}

/*
 * Rewrites <rundir>/restarts with every worker's restart count (starts
 * after the first), through a temporary file and rename so that a reader
 * never sees half a file. A failure only costs the metric: logged.
 */
static void
sv_write_restarts(struct sv *sv)
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
sv_start(struct sv *sv, size_t i, int64_t now)
{
	struct sv_worker *w = &sv->w[i];
	int sp[2] = { -1, -1 };
	int64_t delay;
	pid_t pid, self = getpid();

	w->starts++;
	sv_write_restarts(sv);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		goto fail;
	pid = fork();
	if (pid < 0)
		goto fail;
	if (pid == 0)
		sv_child(sv, w, sp[1], self);
	close(sp[1]);
	w->chan = ipc_conn_new(sp[0]);
	if (w->chan == NULL)
		close(sp[0]);
	w->status[0] = '\0';
	sup_worker_started(&sv->st[i], pid, now);
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
	sup_worker_started(&sv->st[i], 0, now);
	if (sup_worker_died(&sv->st[i], &sv->policy, 127 << 8, now, &delay) ==
	    SUP_RESTART)
		log_kv(LOGL_WARNING, "restart scheduled", "worker",
		    w->row->name, LOG_INT("restart_in_ms", delay), NULL);
	else
		sv_begin_stop(sv, 1, "a worker cannot be started", now);
}

/* Moves the stop along: SIGTERM to the last ones when the others are gone
 * or SV_TERM_DB_MS passed, SIGKILL to everyone at SV_KILL_MS. */
static void
sv_advance_stop(struct sv *sv, int64_t now)
{
	bool others_alive = false;

	for (size_t i = 0; i < sv->n; i++)
		if (!sv->w[i].row->stops_last && sup_worker_alive(&sv->st[i]))
			others_alive = true;
	if (!sv->last_termed &&
	    (!others_alive || now - sv->stop_at >= SV_TERM_DB_MS)) {
		sv->last_termed = true;
		for (size_t i = 0; i < sv->n; i++)
			if (sv->st[i].state == SUP_RUNNING) {
				sv_signal(sv, i, SIGTERM);
				sup_worker_stopping(&sv->st[i]);
			}
	}
	if (!sv->killed && now - sv->stop_at >= SV_KILL_MS) {
		sv->killed = true;
		for (size_t i = 0; i < sv->n; i++)
			if (sup_worker_alive(&sv->st[i])) {
				log_kv(LOGL_WARNING, "worker did not stop; "
				    "killing it", "worker", sv->w[i].row->name,
				    NULL);
				sv_signal(sv, i, SIGKILL);
			}
	}
}

static bool
sv_any_alive(const struct sv *sv)
{
	for (size_t i = 0; i < sv->n; i++)
		if (sup_worker_alive(&sv->st[i]))
			return true;
	return false;
}

/*
 * Where the conduits come from when no nsp worker runs, for STATUS=:
 * the db worker applied IPAM_CONDUITS at start, or there is no source.
 */
static void
sv_serving_note(struct sv *sv, const struct cfg *cfg)
{
	if (cfg->nsp_service[0] != '\0')
		sv->serving[0] = '\0';
	else if (cfg->nconduits > 0)
		snprintf(sv->serving, sizeof(sv->serving), ", %zu static "
		    "conduit%s", cfg->nconduits, cfg->nconduits == 1 ? "" : "s");
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
sv_update_status(struct sv *sv)
{
	char text[sizeof(sv->status)], msg[sizeof(sv->status) + 16];
	size_t off;

	if (sv->stopping) {
		snprintf(text, sizeof(text), "stopping");
	} else if (sup_all_ready(sv->st, sv->n)) {
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

			if (sv->st[i].state == SUP_WAITING)
				what = "restarting";
			else if (sv->st[i].state == SUP_RUNNING &&
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
	if (!sv->ready_sent && !sv->stopping && sup_all_ready(sv->st, sv->n)) {
		sv->ready_sent = true;
		snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", text);
		log_kv(LOGL_INFO, "all workers ready", NULL);
	} else {
		snprintf(msg, sizeof(msg), "STATUS=%s", text);
	}
	sdn_notify(msg);
}

/*
 * Handles a death reported by waitpid: logs it with the status and the
 * restart delay, and stops everything on a permanent failure or when the
 * tally says the worker dies too often.
 */
static void
sv_reaped(struct sv *sv, pid_t pid, int wstatus, int64_t now)
{
	char how[96], why[160];
	enum sup_verdict v;
	int64_t delay = 0;
	size_t i;

	for (i = 0; i < sv->n; i++)
		if (sup_worker_alive(&sv->st[i]) && sv->st[i].pid == pid)
			break;
	if (i == sv->n)
		return;
	sv_close_chan(&sv->w[i]);
	sup_describe_exit(wstatus, how, sizeof(how));
	v = sup_worker_died(&sv->st[i], &sv->policy, wstatus, now, &delay);
	switch (v) {
	case SUP_STOPPED:
		log_kv(LOGL_INFO, "worker stopped", "worker", sv->w[i].row->name,
		    LOG_INT("pid", pid), "status", how, NULL);
		break;
	case SUP_RESTART:
		log_kv(LOGL_WARNING, "worker died", "worker", sv->w[i].row->name,
		    LOG_INT("pid", pid), "status", how,
		    LOG_INT("restart_in_ms", delay), NULL);
		if (sv->stopping)
			sup_worker_cancel(&sv->st[i]);
		break;
	case SUP_PERMANENT:
		log_kv(LOGL_ERROR, "worker failed permanently", "worker",
		    sv->w[i].row->name, LOG_INT("pid", pid), "status", how, NULL);
		snprintf(why, sizeof(why), "%s worker failed permanently (%s)",
		    sv->w[i].row->name, how);
		sv_begin_stop(sv, 1, why, now);
		break;
	case SUP_GIVE_UP:
		log_kv(LOGL_ERROR, "worker died too often", "worker",
		    sv->w[i].row->name, LOG_INT("pid", pid), "status", how,
		    LOG_INT("deaths", sv->st[i].ndeaths), NULL);
		snprintf(why, sizeof(why), "%s worker died more than %u times"
		    " within %lld ms", sv->w[i].row->name, sv->policy.max_deaths,
		    (long long)sv->policy.window_ms);
		sv_begin_stop(sv, 1, why, now);
		break;
	}
}

static void
sv_reap(struct sv *sv, int64_t now)
{
	pid_t pid;
	int st;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
		sv_reaped(sv, pid, st, now);
}

/*
 * Reads worker i's status channel. Every WorkerStatus frame is a
 * heartbeat; anything else is a bug in the worker: it is killed, and the
 * restart policy takes over when it is reaped.
 */
static void
sv_read_chan(struct sv *sv, size_t i, int64_t now)
{
	struct sv_worker *w = &sv->w[i];
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
		sv_close_chan(w);
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
		if (sup_worker_beat(&sv->st[i], m->ready, now))
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
		sv_signal(sv, i, SIGKILL);
		sv_close_chan(w);
	}
}

/* Reads the signalfd: TERM and INT begin the stop, CHLD reaps. */
static void
sv_read_signals(struct sv *sv, int64_t now)
{
	struct signalfd_siginfo si;
	char why[64];

	while (read(sv->sig_fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGCHLD) {
			sv_reap(sv, now);
		} else {
			snprintf(why, sizeof(why), "signal %s",
			    si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
			sv_begin_stop(sv, 0, why, now);
		}
	}
}

/* Pets systemd's watchdog every half interval, only while every worker
 * beat within the interval. */
static void
sv_watchdog(struct sv *sv, int64_t now)
{
	bool ok;

	if (sv->wd_ms == 0 || now < sv->wd_next)
		return;
	sv->wd_next = now + sv->wd_ms / 2;
	ok = sup_watchdog_ok(sv->st, sv->n, now, sv->wd_ms);
	if (ok)
		sdn_notify("WATCHDOG=1");
	if (ok == sv->wd_withheld)
		log_kv(ok ? LOGL_INFO : LOGL_WARNING, ok ?
		    "watchdog pings resumed" : "watchdog ping withheld: a "
		    "worker is silent", NULL);
	sv->wd_withheld = !ok;
}

/* Milliseconds until the next timed event (restart, watchdog, stop
 * phase), at most 1 s. */
static int
sv_timeout(const struct sv *sv, int64_t now)
{
	int64_t next = now + 1000;

	for (size_t i = 0; i < sv->n; i++)
		if (sv->st[i].state == SUP_WAITING &&
		    sv->st[i].restart_at_ms < next)
			next = sv->st[i].restart_at_ms;
	if (sv->wd_ms > 0 && !sv->stopping && sv->wd_next < next)
		next = sv->wd_next;
	if (sv->stopping) {
		if (!sv->last_termed && sv->stop_at + SV_TERM_DB_MS < next)
			next = sv->stop_at + SV_TERM_DB_MS;
		if (!sv->killed && sv->stop_at + SV_KILL_MS < next)
			next = sv->stop_at + SV_KILL_MS;
	}
	return next <= now ? 0 : (int)(next - now);
}

/* The loop: signals, status frames, restarts, watchdog, until the stop is
 * complete. */
static void
sv_loop(struct sv *sv)
{
	struct pollfd pfd[1 + SV_N];
	size_t idx[1 + SV_N], n;
	int64_t now;

	for (;;) {
		now = sv_now();
		if (sv->stopping) {
			sv_advance_stop(sv, now);
			if (!sv_any_alive(sv))
				break;
		} else {
			for (size_t i = 0; i < sv->n; i++)
				if (sup_worker_due(&sv->st[i], now) ||
				    sv->st[i].state == SUP_IDLE)
					sv_start(sv, i, now);
			sv_watchdog(sv, now);
		}
		sv_update_status(sv);
		pfd[0] = (struct pollfd){ .fd = sv->sig_fd, .events = POLLIN };
		n = 1;
		for (size_t i = 0; i < sv->n; i++)
			if (sv->w[i].chan != NULL) {
				pfd[n] = (struct pollfd){ .events = POLLIN,
				    .fd = ipc_conn_fd(sv->w[i].chan) };
				idx[n++] = i;
			}
		if (poll(pfd, n, sv_timeout(sv, now)) < 0 && errno != EINTR) {
			log_kv(LOGL_ERROR, "poll", "error", strerror(errno),
			    NULL);
			sv_begin_stop(sv, 1, "poll failed", now);
			continue;
		}
		now = sv_now();
		for (size_t k = 1; k < n; k++)
			if (pfd[k].revents != 0 && sv->w[idx[k]].chan != NULL)
				sv_read_chan(sv, idx[k], now);
		if (pfd[0].revents != 0)
			sv_read_signals(sv, now);
	}
}

/* Removes the runtime directory and what workers left in it (one level:
 * nothing in the contract makes subdirectories). */
static void
sv_remove_rundir(const char *rundir)
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
 * Makes the private runtime directory (mkdtemp: mode 0700, a fresh name
 * per instance) under $XDG_RUNTIME_DIR, else $TMPDIR, else /tmp, and binds
 * the db socket in it.
 */
static int
sv_setup_rundir(struct sv *sv)
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
	sv->listen_fd = ipc_listen(sv->sock, SV_BACKLOG, err, sizeof(err));
	if (sv->listen_fd < 0) {
		log_kv(LOGL_ERROR, "cannot listen on db socket", "error", err,
		    NULL);
		return -1;
	}
	log_kv(LOGL_INFO, "runtime directory", "path", sv->rundir, NULL);
	return 0;
}

/* Reads /proc/<pid>/comm into buf; false when the process is gone. */
static bool
sv_comm(long pid, char *buf, size_t len)
{
	char path[64];
	FILE *f;
	bool ok;

	snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
	if ((f = fopen(path, "re")) == NULL)
		return false;
	ok = fgets(buf, (int)len, f) != NULL;
	fclose(f);
	if (ok)
		buf[strcspn(buf, "\n")] = '\0';
	return ok;
}

/* The parent pid of pid, 0 if unknown (from /proc/<pid>/stat, after the
 * command name, which may hold spaces and parentheses). */
static long
sv_ppid(long pid)
{
	char path[64], line[512], *p;
	long ppid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if ((f = fopen(path, "re")) == NULL)
		return 0;
	if (fgets(line, sizeof(line), f) != NULL &&
	    (p = strrchr(line, ')')) != NULL)
		(void)sscanf(p + 1, " %*c %ld", &ppid);
	fclose(f);
	return ppid;
}

/*
 * Whether the lock on the data file is held by one of our own processes
 * that is on its way out, so that waiting a little is worth it: the pid
 * that took the lock is gone (its children inherited the lock: a killed
 * supervisor's db worker, which stops when it sees its supervisor gone),
 * or it is a worker of ours whose supervisor is gone. A live supervisor,
 * a worker with its supervisor, or another program: false.
 */
static bool
sv_holder_stopping(long pid, char *name, size_t len)
{
	char parent[32];

	snprintf(name, len, "?");
	if (pid <= 0)
		return false;
	if (!sv_comm(pid, name, len)) {
		snprintf(name, len, "exited");
		return true;
	}
	if (strncmp(name, "meridio-ipam-", 13) != 0)
		return false;
	return !sv_comm(sv_ppid(pid), parent, sizeof(parent)) ||
	    strcmp(parent, "meridio-ipam") != 0;
}

/*
 * Takes the data file's lock for the instance's whole life (see the
 * contract in ipcmsg.h). A lock held by a process of ours that is
 * stopping (the workers of a supervisor killed just before) is waited
 * for, SV_LOCK_WAIT_MS at most; any other holder refuses the start at
 * once. A file that cannot be opened is left to the db worker, which
 * reports why. Returns 0, or -1 after logging why the start is refused.
 */
static int
sv_lock_data(struct sv *sv)
{
	int64_t deadline = sv_now() + SV_LOCK_WAIT_MS, t0 = sv_now();
	char err[512], name[32];
	bool waited = false;
	long holder;
	int rc;

	for (;;) {
		rc = store_lock_file(sv->data_path, 0, &sv->lock_fd,
		    &sv->lock_created, &holder, err, sizeof(err));
		if (rc == 0) {
			if (waited)
				log_kv(LOGL_INFO, "data file released: locked",
				    "path", sv->data_path, LOG_INT("waited_ms",
				    sv_now() - t0), NULL);
			return 0;
		}
		if (rc < 0) {
			log_kv(LOGL_DEBUG, "cannot lock the data file; the db "
			    "worker will tell why", "error", err, NULL);
			return 0;
		}
		if (!sv_holder_stopping(holder, name, sizeof(name)) ||
		    sv_now() >= deadline)
			break;
		if (!waited)
			log_kv(LOGL_WARNING, "data file locked by a stopping "
			    "meridio-ipam process: waiting for it", "path",
			    sv->data_path, LOG_INT("pid", holder), "holder",
			    name, LOG_INT("wait_ms", SV_LOCK_WAIT_MS), NULL);
		waited = true;
		usleep(SV_LOCK_POLL_MS * 1000);
	}
	if (waited) {
		snprintf(err + strlen(err), sizeof(err) - strlen(err),
		    "; still held after %d ms", SV_LOCK_WAIT_MS);
	}
	log_kv(LOGL_ERROR, "cannot open the database", "path", sv->data_path,
	    "error", err, NULL);
	return -1;
}

/* Drops the lock; removes the data file if we created it and nothing
 * wrote to it (a start refused before the db worker made a database). */
static void
sv_unlock_data(struct sv *sv)
{
	struct stat a, b;

	if (sv->lock_fd < 0)
		return;
	if (sv->lock_created && fstat(sv->lock_fd, &a) == 0 &&
	    a.st_size == 0 && stat(sv->data_path, &b) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		unlink(sv->data_path);
	close(sv->lock_fd);
	sv->lock_fd = -1;
}

/* Blocks TERM, INT and CHLD into a signalfd; ignores SIGPIPE. */
static int
sv_setup_signals(struct sv *sv)
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

int
sv_run(const struct cfg *cfg, const struct sup_policy *policy)
{
	struct sv sv = { .policy = *policy, .listen_fd = -1, .sig_fd = -1,
	    .lock_fd = -1, .exit_code = 1, .data_path = cfg->data_source };
	uint64_t usec = 0;
	char err[512];

	/* workers read the same, validated, environment */
	for (size_t r = 0; r < SV_N; r++) {
		struct sv_worker *w = &sv.w[sv.n];

		if (sv_rows[r].needs_nsp && cfg->nsp_service[0] == '\0')
			continue;
		w->row = &sv_rows[r];
		sup_worker_init(&sv.st[sv.n++]);
		if (sv_find_binary(w->row->binary, w->path,
		    sizeof(w->path)) < 0) {
			log_kv(LOGL_ERROR, "worker binary not found beside the"
			    " supervisor nor in " IPAM_LIBEXECDIR, "binary",
			    w->row->binary, NULL);
			return 1;
		}
	}
	sv_serving_note(&sv, cfg);
	if (sv_setup_signals(&sv) < 0) {
		log_kv(LOGL_ERROR, "cannot set up signals", "error",
		    strerror(errno), NULL);
		goto out;
	}
	if (sv_lock_data(&sv) < 0)
		goto out;
	if (sv_setup_rundir(&sv) < 0)
		goto out;
	sv.envp = sv_worker_env(sv.rundir);
	if (sv.envp == NULL) {
		log_kv(LOGL_ERROR, "out of memory", NULL);
		goto out;
	}
	if (sdn_open(err, sizeof(err)) < 0) {
		log_kv(LOGL_ERROR, "cannot notify systemd", "error", err,
		    NULL);
		goto out;
	}
	if (sdn_watchdog_enabled(&usec) > 0 && usec > 0) {
		sv.wd_ms = (int64_t)(usec / 1000) > 1 ?
		    (int64_t)(usec / 1000) : 2;
		sv.wd_next = sv_now();
		log_kv(LOGL_INFO, "watchdog enabled",
		    LOG_INT("interval_ms", sv.wd_ms), NULL);
	}
	sv.exit_code = 0;
	sv_loop(&sv);
	sv_update_status(&sv);
out:
	for (size_t i = 0; i < sv.n; i++)
		sv_close_chan(&sv.w[i]);
	if (sv.listen_fd >= 0)
		close(sv.listen_fd);
	if (sv.sig_fd >= 0)
		close(sv.sig_fd);
	sv_unlock_data(&sv);
	sv_remove_rundir(sv.rundir);
	sv_free_env(sv.envp);
	log_kv(LOGL_INFO, "exiting", LOG_INT("code", sv.exit_code), NULL);
	return sv.exit_code;
}
