/*
 * meridio-ipam-db: the db worker. Started by the supervisor (fork + exec)
 * with the listening IPC socket as fd 4 and the status channel as fd 3.
 * Opens and locks the database, loads and checks it, then serves.
 * Failures that a restart cannot cure (bad data file, lock held by another
 * instance, stored prefix differs from the configuration) exit with
 * IPCMSG_EXIT_PERMANENT so that the supervisor stops instead of looping.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "config.h"
#include "db.h"
#include "ipcmsg.h"
#include "log.h"
#include "now.h"
#include "registry.h"
#include "store.h"

static const char *
env_get(const char *name)
{
	return getenv(name);
}

static void
on_problem(void *arg, const char *id, const char *what)
{
	(void)arg;
	log_kv(LOGL_WARNING, "stored record skipped (left untouched on disk)",
	    "id", id, "problem", what, NULL);
}

/* Writes the migration of an older Meridio file that store_open found
 * (once it loaded), and logs what it did. Returns 0 or -1 (logged). */
static int
migrate(struct store *st, const char *path)
{
	struct store_migration m;
	char err[512];

	if (!store_migration(st, &m))
		return 0;
	if (store_upgrade(st, err, sizeof(err)) != 0) {
		log_kv(LOGL_ERROR, "cannot write the migration of the database",
		    "path", path, "error", err, NULL);
		return -1;
	}
	log_kv(LOGL_INFO, "database migrated as Meridio's start-up does",
	    "path", path, LOG_INT("columns_added", m.columns),
	    LOG_INT("indexes_added", m.indexes),
	    LOG_INT("nodes_made_expirable", m.nodes),
	    LOG_INT("children_made_expirable", m.children), NULL);
	return 0;
}

/*
 * Static conduits (IPAM_CONDUITS), made in one batch before serving, as
 * the first SyncConduits of a run makes them: every listed conduit is
 * added (existing ones are kept), none is removed; one that does not fit
 * is logged and skipped. Returns 0, or -1 (logged).
 */
static int
main_static_conduits(struct reg *reg, const struct cfg *cfg)
{
	int64_t now = now_ns(CLOCK_REALTIME);
	char err[512];
	size_t i;
	int rc;

	if (cfg->nconduits == 0)
		return 0;
	if ((rc = reg_begin(reg, err, sizeof(err))) != REG_OK)
		goto fail;
	for (i = 0; i < cfg->nconduits; i++) {
		rc = reg_add_conduit(reg, cfg->conduits[i], now, err,
		    sizeof(err));
		if (rc == REG_EXHAUSTED)
			log_kv(LOGL_ERROR, "conduit does not fit", "conduit",
			    cfg->conduits[i], "error", err, NULL);
		else if (rc != REG_OK) {
			reg_rollback(reg);
			goto fail;
		}
	}
	if ((rc = reg_commit(reg, err, sizeof(err))) != REG_OK)
		goto fail;
	log_kv(LOGL_INFO, "static conduits", LOG_INT("count",
	    cfg->nconduits), NULL);
	return 0;
fail:
	log_kv(LOGL_ERROR, "cannot add the static conduits", "error", err,
	    NULL);
	return -1;
}

/* The listening socket: fd 4 from the supervisor, or our own when run by
 * hand with only IPAMD_RUNDIR set. */
static int
listen_socket(void)
{
	char path[256], err[256];
	const char *rundir;
	int fd;

	if (fcntl(IPCMSG_DB_LISTEN_FD, F_GETFD) != -1)
		return IPCMSG_DB_LISTEN_FD;
	if ((rundir = getenv(IPCMSG_ENV_RUNDIR)) == NULL ||
	    ipcmsg_db_path(rundir, path, sizeof(path)) != 0)
		log_fatal("no listening socket on fd %d and no usable %s",
		    IPCMSG_DB_LISTEN_FD, IPCMSG_ENV_RUNDIR);
	if ((fd = ipc_listen(path, 128, err, sizeof(err))) < 0)
		log_fatal("%s", err);
	return fd;
}

int
main(int argc, char **argv)
{
	struct cfg cfg;
	struct store *st = NULL;
	struct reg *reg = NULL;
	struct reg_params rp = { 0 };
	char err[512];
	sigset_t mask;
	int rc, status_fd, fi, lock_fd;

	(void)argc;
	(void)argv;
	log_init("db", LOGL_INFO, 2);
	if (config_load(&cfg, env_get, err, sizeof(err)) != 0) {
		log_kv(LOGL_ERROR, "bad configuration", "error", err, NULL);
		return IPCMSG_EXIT_PERMANENT;
	}
	log_init("db", cfg.log_level, 2);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	signal(SIGPIPE, SIG_IGN);
	/* A write past RLIMIT_FSIZE must fail (EFBIG: the batch answers
	 * UNAVAILABLE, as on a full disk), not kill the worker each time. */
	signal(SIGXFSZ, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	status_fd = fcntl(IPCMSG_SUPERVISOR_FD, F_GETFD) != -1 ?
	    IPCMSG_SUPERVISOR_FD : -1;

	/* The supervisor holds the file's lock and hands it down as fd 5. */
	lock_fd = status_fd >= 0 && fcntl(IPCMSG_DB_LOCK_FD, F_GETFD) != -1 ?
	    IPCMSG_DB_LOCK_FD : -1;
	if (store_open_locked(&st, cfg.data_source, lock_fd, 0, err,
	    sizeof(err)) != 0) {
		log_kv(LOGL_ERROR, "cannot open the database", "path",
		    cfg.data_source, "error", err, NULL);
		config_free(&cfg);
		return IPCMSG_EXIT_PERMANENT;
	}
	rp.trench = cfg.trench;
	for (fi = 0; fi < 2; fi++) {
		const struct cfg_pool *pool = fi ? &cfg.v6 : &cfg.v4;
		rp.fam[fi].enabled = config_pool_of(&cfg, fi ? PFX_V6 : PFX_V4) !=
		    NULL;
		rp.fam[fi].prefix = pool->prefix;
		rp.fam[fi].conduit_len = pool->conduit_len;
		rp.fam[fi].node_len = pool->node_len;
	}
	/* Node refreshes are damped, but never so much that GC could reap a
	 * node whose children are still being renewed. */
	rp.node_refresh_ns = 60LL * 1000000000;
	rp.release_cooldown_ns = cfg.release_cooldown_ns;
	rp.child_refresh_ns = cfg.renewal_refresh_ns;
	if (cfg.gc_enabled && cfg.gc_threshold_ns / 4 < rp.node_refresh_ns)
		rp.node_refresh_ns = cfg.gc_threshold_ns / 4;
	/* Likewise a renewal's refresh (IPAM_RENEWAL_REFRESH): a child that
	 * keeps being renewed is never older than a quarter of the GC age. */
	if (cfg.gc_enabled && cfg.gc_threshold_ns / 4 < rp.child_refresh_ns) {
		log_fmt(LOGL_WARNING, "IPAM_RENEWAL_REFRESH is capped at a "
		    "quarter of IPAM_GARBAGE_COLLECTION_THRESHOLD (%lld ms)",
		    (long long)(cfg.gc_threshold_ns / 4 / 1000000));
		rp.child_refresh_ns = cfg.gc_threshold_ns / 4;
	}
	rc = reg_open(&reg, st, &rp, on_problem, NULL, err, sizeof(err));
	if (rc != REG_OK) {
		log_kv(LOGL_ERROR, "cannot load the database", "path",
		    cfg.data_source, "error", err, NULL);
		store_close(st);
		config_free(&cfg);
		return rc == REG_ESTORE || rc == REG_ENOMEM ? 1 :
		    IPCMSG_EXIT_PERMANENT;
	}
	if (migrate(st, cfg.data_source) != 0) {
		reg_close(reg);
		store_close(st);
		config_free(&cfg);
		return 1;
	}
	log_kv(LOGL_INFO, "database loaded", "path", cfg.data_source,
	    LOG_INT("records", reg_count(reg)),
	    LOG_INT("addresses", reg_count_children(reg)), NULL);
	/* Loading freed its scan buffers between the records it keeps: give
	 * those pages back (VmRSS 42 -> 27 MB with 70k records). */
	malloc_trim(0);
	rc = main_static_conduits(reg, &cfg) != 0 ? 1 :
	    db_serve(&cfg, st, reg, listen_socket(), status_fd);
	reg_close(reg);
	store_close(st);
	config_free(&cfg);
	return rc;
}
