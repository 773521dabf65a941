/*
 * spawn.c - how the supervisor makes a worker process: where its binary
 * is, what environment and file descriptors it gets, and the exec.
 */
#include "spawn.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ipcmsg.h"

/* Tests: a command line to run every worker under. */
#define SPAWN_ENV_WRAPPER "IPAMD_WORKER_WRAPPER"

extern char **environ;

/* See spawn.h. Beside us: a build tree, or a package that installs all in
 * one directory; ../libexec: an install under any prefix, even moved. */
int
spawn_find_binary(const char *binary, char *out, size_t outlen)
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

/* See spawn.h. Built once, before any fork. */
char **
spawn_env(const char *rundir)
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

/* See spawn.h. */
void
spawn_env_free(char **envp)
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
spawn_exec_wrapped(const char *path, char **envp)
{
	const char *wrap = getenv(SPAWN_ENV_WRAPPER);
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
	argv[n++] = (char *)path;
	argv[n] = NULL;
	execvpe(argv[0], argv, envp);
	_exit(127);
}

/* See spawn.h. Sources are first moved above 10 so that dup2 onto 3, 4
 * and 5 cannot clobber one another. */
void
spawn_child(const char *path, const char *name, char **envp, int chan,
    int listen_fd, int lock_fd, pid_t parent)
{
	char *argv[] = { (char *)name, NULL };
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
	if (listen_fd >= 0)
		b = fcntl(listen_fd, F_DUPFD, 10);
	if (lock_fd >= 0)
		l = fcntl(lock_fd, F_DUPFD, 10);
	if (a < 0 || (listen_fd >= 0 && b < 0) || (lock_fd >= 0 && l < 0))
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
	spawn_exec_wrapped(path, envp);
	execve(path, argv, envp);
	_exit(127);
}
