/*
 * main.c - meridio-ipam-nsp, the NSP watcher worker of meridio-ipam.
 *
 * Started by the supervisor (fork + exec) with the status channel on fd 3
 * and $IPAMD_RUNDIR naming the runtime directory. Reads the configuration
 * the supervisor already validated, drops what it does not need, and runs
 * the loop in nsp.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "config.h"
#include "ipcmsg.h"
#include "log.h"
#include "nsp.h"

/* getenv with the constness config_load expects. */
static const char *
main_getenv(const char *name)
{
	return getenv(name);
}

int
main(int argc, char **argv)
{
	struct cfg cfg;
	char err[512];
	const char *rundir;
	sigset_t sigs;
	int sigfd, statusfd = IPCMSG_SUPERVISOR_FD, rc;

	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		printf("meridio-ipam-nsp %s\n", IPAM_VERSION);
		return 0;
	}
	if (argc > 1) {
		fprintf(stderr, "usage: %s (started by meridio-ipam)\n",
		    argv[0]);
		return 2;
	}
	log_init("nsp", LOGL_INFO, 2);
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 ||
	    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		log_fatal("prctl: %s", strerror(errno));

	/* SIGTERM arrives on a signalfd (SIGINT is the supervisor's: it
	 * comes ignored); blocked before any thread
	 * (gRPC's included) exists, so every thread inherits the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &sigs, NULL) < 0)
		log_fatal("sigprocmask: %s", strerror(errno));
	sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0)
		log_fatal("signalfd: %s", strerror(errno));
	signal(SIGPIPE, SIG_IGN);

	if (config_load(&cfg, main_getenv, err, sizeof(err)) < 0)
		log_fatal("configuration: %s", err);
	log_init("nsp", cfg.log_level, 2);
	rundir = getenv(IPCMSG_ENV_RUNDIR);
	if (rundir == NULL || rundir[0] == '\0')
		log_fatal("%s is not set", IPCMSG_ENV_RUNDIR);
	if (fcntl(statusfd, F_GETFD) < 0) {
		log_warn("no status channel on fd %d; running without one",
		    statusfd);
		statusfd = -1;
	} else {
		fcntl(statusfd, F_SETFD, FD_CLOEXEC);
	}

	rc = nsp_run(&cfg, rundir, sigfd, statusfd);
	config_free(&cfg);
	close(sigfd);
	return rc;
}
