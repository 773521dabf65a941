/*
 * spawn.h - how the supervisor makes a worker process (fork + exec): the
 * process contract of ipcmsg.h on the child's side of fork.
 */
#ifndef IPAM_SPAWN_H
#define IPAM_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

/* Where workers are installed when not beside the supervisor. */
#ifndef IPAM_LIBEXECDIR
#define IPAM_LIBEXECDIR "/usr/local/libexec/meridio-ipam"
#endif

/*
 * Finds a worker binary beside our own executable, then in
 * ../libexec/meridio-ipam relative to it, else in IPAM_LIBEXECDIR, and
 * writes its path to out. 0, or -1 when none is executable.
 */
int spawn_find_binary(const char *binary, char *out, size_t outlen);

/*
 * The workers' environment: ours without anything that would let a worker
 * talk to systemd itself, plus IPAMD_RUNDIR=rundir. NULL on out of memory.
 */
char **spawn_env(const char *rundir);

/* Frees what spawn_env made. Accepts NULL. */
void spawn_env_free(char **envp);

/*
 * In the child between fork and exec: die with the supervisor, no new
 * privileges, default signals but SIGINT ignored, and exactly fds 0-2,
 * chan as 3 (status channel), listen_fd as 4 and lock_fd as 5 when they
 * are not -1 (the db worker's). Then execs path (under
 * $IPAMD_WORKER_WRAPPER when set) as argv[0] name with envp. Ends the
 * child with 127 on any failure. parent is the supervisor's pid.
 */
void spawn_child(const char *path, const char *name, char **envp, int chan,
    int listen_fd, int lock_fd, pid_t parent) __attribute__((noreturn));

#endif
