/*
 * meridio-ipam-api - the API worker, started by the supervisor (see
 * ipcmsg.h for the process contract): reads the already validated
 * configuration, drops what it does not need, and serves (api.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "api.h"
#include "config.h"
#include "ipcmsg.h"
#include "log.h"

static const char *
main_getenv(const char *name)
{
	return getenv(name);
}

static void
main_usage(FILE *f)
{
	fprintf(f,
	    "usage: meridio-ipam-api [--help | --version]\n"
	    "\n"
	    "The API worker of meridio-ipam: serves ipam.v1.Ipam and\n"
	    "grpc.health.v1.Health on [::]:$IPAM_PORT (and Health alone on\n"
	    "$IPAM_HEALTH_SOCKET) and forwards calls to the db worker at\n"
	    "$%s/%s. Started by the meridio-ipam supervisor, which\n"
	    "passes its status channel as fd %d.\n",
	    IPCMSG_ENV_RUNDIR, IPCMSG_DB_SOCK, IPCMSG_SUPERVISOR_FD);
}

int
main(int argc, char **argv)
{
	struct cfg cfg;
	char err[512], path[256];
	const char *rundir;
	sigset_t sigs;
	int status_fd, rc;

	if (argc > 1) {
		if (strcmp(argv[1], "--help") == 0 ||
		    strcmp(argv[1], "-h") == 0) {
			main_usage(stdout);
			return 0;
		}
		if (strcmp(argv[1], "--version") == 0) {
			printf("meridio-ipam-api %s\n", IPAM_VERSION);
			return 0;
		}
		main_usage(stderr);
		return 2;
	}

	log_init("api", LOGL_INFO, 2);
	if (config_load(&cfg, main_getenv, err, sizeof(err)) < 0)
		log_fatal("configuration: %s", err);
	log_init("api", cfg.log_level, 2);

	/* No privilege gain through exec, and die with the supervisor. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		log_fatal("PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
	if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) < 0)
		log_fatal("PR_SET_PDEATHSIG: %s", strerror(errno));

	rundir = getenv(IPCMSG_ENV_RUNDIR);
	if (rundir == NULL || rundir[0] == '\0')
		log_fatal("%s is not set: the supervisor starts this worker",
		    IPCMSG_ENV_RUNDIR);
	if (ipcmsg_db_path(rundir, path, sizeof(path)) < 0)
		log_fatal("%s: path too long for a Unix socket", rundir);

	status_fd = IPCMSG_SUPERVISOR_FD;
	if (fcntl(status_fd, F_SETFD, FD_CLOEXEC) < 0) {
		log_warn("no supervisor channel on fd %d: running alone",
		    status_fd);
		status_fd = -1;
	}

	/*
	 * Signals are taken by the db thread through a signalfd: block them
	 * here, before gRPC starts threads that would inherit the mask.
	 */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0)
		log_fatal("pthread_sigmask failed");

	rc = server_run(&cfg, path, status_fd);
	config_free(&cfg);
	return rc;
}
