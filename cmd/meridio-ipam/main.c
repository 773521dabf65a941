/*
 * meridio-ipam - the supervisor: validates the configuration, then runs
 * the db, api and nsp workers (see workers.c and ipcmsg.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "config.h"
#include "configjson.h"
#include "log.h"
#include "restart.h"
#include "workers.h"

static const char *
main_getenv(const char *name)
{
	return getenv(name);
}

static void
main_usage(FILE *f)
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
main_log_start(const struct cfg *c)
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
			main_usage(stdout);
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
			main_usage(stderr);
			return 2;
		}
	}
	if (config_load(&cfg, main_getenv, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	if (restart_policy_load(&policy, main_getenv, err, sizeof(err)) < 0) {
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
	main_log_start(&cfg);
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
