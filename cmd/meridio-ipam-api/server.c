/*
 * server.c - meridio-ipam-api, the API worker, started by the supervisor
 * (see ipcmsg.h for the process contract): main reads the already
 * validated configuration; the gRPC thread sets the server up (port, TLS,
 * health socket, admin), polls its completion queue, and runs the orderly
 * stop.
 */
#include "api.h"
#include "admin.h"
#include "bounds.h"
#include "hsock.h"
#include "metrics.h"
#include "mtls.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <grpc/grpc_security.h>
#include <grpc/support/log.h>

#include "config.h"
#include "grpcx.h"
#include "tls.h"
#include "ipcmsg.h"
#include "log.h"
#include "now.h"
#include "portowner.h"

static int server_shutdown_tag;		/* tag of shutdown_and_notify */
/* Set by the gRPC log hook: the listener gave up accepting. */
static atomic_bool server_accept_dead;
/* True while binding IPAM_PORT: gRPC's own lines about it are DEBUG. */
static atomic_bool server_binding;

static int server_start(struct api *a);

/*
 * gRPC core's own log lines, written as ours (JSON). One of them matters:
 * "Failed accept4" (EMFILE, ENFILE, ...) means the listener gave up for
 * good (gRPC 1.51 never re-arms it), leaving the worker alive but deaf.
 * It is flagged so that the gRPC thread exits and the supervisor starts a
 * fresh worker, which also drops every connection that used up the fds.
 */
static void
server_grpc_log(gpr_log_func_args *args)
{
	enum log_level l = LOGL_DEBUG;

	if (atomic_load(&server_binding))
		l = LOGL_DEBUG;	/* a failed bind is told in one line of ours */
	else if (args->severity == GPR_LOG_SEVERITY_ERROR)
		l = LOGL_ERROR;
	else if (args->severity == GPR_LOG_SEVERITY_INFO)
		l = LOGL_INFO;
	if (strstr(args->message, "Failed accept4") != NULL)
		atomic_store(&server_accept_dead, true);
	/* clients send the service's host name (SNI); SVIDs carry none */
	if (l == LOGL_ERROR && strstr(args->message,
	    "No match found for server name") != NULL)
		l = LOGL_DEBUG;
	log_kv(l, "grpc core", "text", args->message, "file", args->file,
	    NULL);
}

/* One completion-queue event. */
static void
server_dispatch(struct api *a, void *tag, bool success)
{
	struct api_call *c;
	enum api_tag kind;

	if (tag == &server_shutdown_tag) {
		a->shutdown_done = true;
		return;
	}
	if (hsock_take_tag(a->hs, tag))
		return;
	kind = (enum api_tag)((uintptr_t)tag & 3u);
	c = (struct api_call *)((uintptr_t)tag & ~(uintptr_t)3u);
	switch (kind) {
	case API_TAG_NEW:
		a->posted--;
		if (!success) {
			call_free(c);
			return;
		}
		call_on_new(a, c);
		break;
	case API_TAG_DONE:
		if (c->watching) {
			c->busy = false;
			if (!success)
				c->ended = true;
			health_watch_push(a, c);
			health_watch_maybe_free(a, c);
			return;
		}
		a->live--;
		call_free(c);
		break;
	case API_TAG_CLOSE:
		c->closed = true;
		health_watch_maybe_free(a, c);
		break;
	case API_TAG_REPLY:
		api_answer(c, c->reply);
		ipamd__v1__reply__free_unpacked(c->reply, NULL);
		c->reply = NULL;
		break;
	}
}

/*
 * The orderly stop, step one: no new calls, watchers told NOT_SERVING and
 * ended, in-flight calls keep going (the db thread still runs).
 */
static void
server_begin_stop(struct api *a)
{
	log_info("stopping: draining calls in flight");
	a->stopping = true;
	if (a->server != NULL)
		grpc_server_shutdown_and_notify(a->server, a->cq,
		    &server_shutdown_tag);
	else
		a->shutdown_done = true;	/* SPIFFE: never served */
	hsock_begin_stop(a->hs);
	/* its queues do not poll: this thread makes its shutdown progress */
	admin_begin_stop(a->adm);
	health_watch_all(a);
}

/*
 * Step two, when the drain time is over: cancel what is left. Pending
 * calls are taken back from the db thread and answered CANCELLED (the
 * batch fails on a cancelled call, which frees it all the same).
 */
static void
server_cancel_rest(struct api *a)
{
	struct api_call **v;
	size_t n;

	log_warn("drain time over: cancelling %u calls", a->live);
	if (a->server != NULL)
		grpc_server_cancel_all_calls(a->server);
	hsock_cancel_all(a->hs);
	pthread_mutex_lock(&a->mu);
	v = dbconn_take_all_locked(a, &n);
	pthread_mutex_unlock(&a->mu);
	for (size_t i = 0; i < n; i++)
		call_finish(v[i], GRPC_STATUS_CANCELLED, "server shutting down",
		    NULL);
	free(v);
}

/*
 * Polls the completion queue until the orderly stop is over. Returns true
 * if everything completed (the server can be destroyed safely).
 */
static bool
server_loop(struct api *a)
{
	grpc_event ev;
	gpr_timespec tick;
	int64_t drain_end = 0, final_end = 0;
	bool cancelled = false;
	int h, rc;

	for (;;) {
		tick = grpcx_deadline_ms(API_TICK_MS);
		ev = grpc_completion_queue_next(a->cq, tick, NULL);
		if (ev.type == GRPC_OP_COMPLETE)
			server_dispatch(a, ev.tag, ev.success != 0);
		else if (ev.type == GRPC_QUEUE_SHUTDOWN)
			return false;

		if (atomic_load(&server_accept_dead)) {
			log_error("the gRPC listener stopped accepting; exiting "
			    "so that the supervisor starts a fresh worker");
			_exit(1);
		}
		if (a->server == NULL && !a->stopping && a->mtls != NULL &&
		    mtls_ready(a->mtls) && (rc = server_start(a)) < 0) {
			log_error("cannot serve the port with the SVID");
			_exit(rc == API_PORT_TAKEN ? IPCMSG_EXIT_PERMANENT : 1);
		}
		if (!a->stopping && atomic_load(&a->stop)) {
			server_begin_stop(a);
			drain_end = now_ms() + API_DRAIN_MS;
			final_end = drain_end + API_FINAL_MS;
		}
		h = health_now(a);
		if (h != a->health_seen) {
			a->health_seen = h;
			health_watch_all(a);
		}
		if (!a->stopping)
			continue;
		if (a->shutdown_done && hsock_stopped(a->hs) && a->live == 0 &&
		    a->posted == 0)
			return true;
		/* Nothing in flight and the queue idle for a tick: only idle
		 * connections hold the shutdown back (gRPC waits for their
		 * clients to leave); close them now. */
		if (!cancelled && a->live == 0 && ev.type == GRPC_QUEUE_TIMEOUT) {
			cancelled = true;
			if (a->server != NULL)
				grpc_server_cancel_all_calls(a->server);
			hsock_cancel_all(a->hs);
		}
		if (!cancelled && now_ms() >= drain_end) {
			cancelled = true;
			server_cancel_rest(a);
		}
		if (now_ms() >= final_end) {
			log_error("stop: %u calls did not complete", a->live);
			return false;
		}
	}
}

/* Logs what the TLS fetcher found when it looked at the files (it runs
 * on a gRPC thread before a handshake). */
static void
server_tls_notify(void *arg, int rc, const char *err)
{
	(void)arg;
	if (rc > 0)
		log_info("TLS files changed and read again (gRPC logs an "
		    "error if it cannot use them)");
	else
		log_kv(LOGL_WARNING, "cannot reload TLS files; serving the "
		    "previous ones", "error", err, NULL);
}

/*
 * The credentials of the port: plaintext, or TLS from IPAM_TLS_CERT and
 * IPAM_TLS_KEY (clients must present a certificate signed by IPAM_TLS_CA
 * when it is set). gRPC asks a->tls before every handshake, and a->tls
 * reads the files again when they changed: rotated certificates are served
 * to new connections without a restart. NULL (logged) when a file cannot
 * be read at start.
 */
static grpc_server_credentials *
server_creds(struct api *a)
{
	const struct cfg *c = a->cfg;
	grpc_server_credentials *creds;
	char err[512];

	if (a->mtls != NULL)
		return mtls_server_credentials(a->mtls);
	if (c->tls_cert[0] == '\0')
		return grpc_insecure_server_credentials_create();
	a->tls = tls_new(c->tls_cert, c->tls_key, c->tls_ca, err,
	    sizeof(err));
	if (a->tls == NULL) {
		log_kv(LOGL_ERROR, "cannot load TLS files", "error", err, NULL);
		return NULL;
	}
	tls_set_notify(a->tls, server_tls_notify, NULL);
	creds = tls_server_credentials(a->tls);
	if (creds == NULL)
		log_error("cannot make TLS server credentials");
	return creds;
}

/*
 * Says in one line why IPAM_PORT cannot be listened on, naming the process
 * that holds it where /proc tells. A port in use is permanent: a restart
 * of the worker cannot free it.
 */
static void
server_port_failed(const struct api *a, const char *addr)
{
	char what[96], who[96] = "", holder[160] = "";
	int e = portowner_bind_errno(a->cfg->port);

	snprintf(what, sizeof(what), "IPAM_PORT=%u: %s", a->cfg->port,
	    e != 0 ? strerror(e) : "cannot listen");
	what[strcspn(what, ":") + 2] = (char)tolower(
	    (unsigned char)what[strcspn(what, ":") + 2]);
	if (e == EADDRINUSE && portowner_find(a->cfg->port, who, sizeof(who)))
		snprintf(holder, sizeof(holder), "%s listens on it", who);
	else if (e == EADDRINUSE)
		snprintf(holder, sizeof(holder), "another process listens on it");
	log_kv(LOGL_ERROR, what, "address", addr, "holder",
	    holder[0] != '\0' ? holder : NULL, NULL);
}

/*
 * The health socket (IPAM_HEALTH_SOCKET): Check, Watch and nothing else,
 * plaintext, on the completion queue of the port, so that both answer
 * from the same state (NOT_SERVING until the db worker answers). A socket
 * another process serves, or a path that cannot be used, stops the daemon
 * (exit 78: a restart would meet the same socket), with one line naming
 * the variable. Returns 0 or -1 (cannot post, logged).
 */
static int
server_hsock_start(struct api *a)
{
	const char *path = a->cfg->health_socket;
	char err[512];
	enum hsock_rc rc;

	if (path == NULL || path[0] == '\0') {
		log_info("health socket off (IPAM_HEALTH_SOCKET is empty)");
		return 0;
	}
	rc = hsock_open(path, a->cq, &call_paths[API_CHECK], 2, &a->hs, err,
	    sizeof(err));
	if (rc != HSOCK_OK) {
		log_kv(LOGL_ERROR, rc == HSOCK_LIVE ? "IPAM_HEALTH_SOCKET is "
		    "in use: stopping" : "IPAM_HEALTH_SOCKET cannot be served: "
		    "stopping", "path", path, "error", err, NULL);
		_exit(IPCMSG_EXIT_PERMANENT);
	}
	hsock_start(a->hs);
	for (int m = API_CHECK; m < API_NMETHODS; m++)
		for (int i = 0; i < API_POSTED_OTHER; i++)
			if (call_post_on(a, (enum api_method)m, true) < 0) {
				log_error("cannot post a request on the health "
				    "socket");
				return -1;
			}
	log_kv(LOGL_INFO, "health socket listening", "path", path, NULL);
	return 0;
}

/*
 * Creates, binds and starts the server. SO_REUSEPORT is off (gRPC turns it
 * on by default): a second instance on the same port would otherwise bind
 * too and the kernel would split clients between two daemons that hand out
 * the same addresses. Returns 0, -1 (logged), or API_PORT_TAKEN.
 */
static int
server_start(struct api *a)
{
	grpc_server_credentials *creds;
	char addr[32];
	int port;

	creds = server_creds(a);
	if (creds == NULL)
		return -1;
	a->server = grpcx_server_new(BOUNDS_API_MESSAGE_MAX);
	if (a->cq == NULL)
		a->cq = grpc_completion_queue_create_for_next(NULL);
	grpc_server_register_completion_queue(a->server, a->cq, NULL);
	for (int m = 0; m < API_GENERIC; m++)
		a->methods[m] = grpc_server_register_method(a->server,
		    call_paths[m], NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
		    0);
	snprintf(addr, sizeof(addr), "[::]:%u", a->cfg->port);
	atomic_store(&server_binding, true);
	port = grpc_server_add_http2_port(a->server, addr, creds);
	atomic_store(&server_binding, false);
	grpc_server_credentials_release(creds);
	if (port == 0) {
		server_port_failed(a, addr);
		return API_PORT_TAKEN;
	}
	grpc_server_start(a->server);
	for (int m = 0; m < API_NMETHODS; m++) {
		int k = m == API_ALLOCATE || m == API_RELEASE ?
		    API_POSTED_UNARY : API_POSTED_OTHER;

		for (int i = 0; i < k; i++)
			if (call_post(a, (enum api_method)m) < 0)
				return -1;
	}
	log_kv(LOGL_INFO, "listening", "address", addr, "tls", a->mtls != NULL ?
	    "spiffe" : a->tls == NULL ? "off" : a->cfg->tls_ca[0] != '\0' ?
	    "mutual" : "on", NULL);
	atomic_store(&a->port_up, true);
	return 0;
}

/*
 * Shuts the completion queue down and frees whatever it still returns,
 * then destroys server and queue. Only when the stop completed: destroying
 * a server with calls alive crashes.
 */
static void
server_destroy(struct api *a)
{
	grpc_event ev;

	grpc_completion_queue_shutdown(a->cq);
	do {
		ev = grpc_completion_queue_next(a->cq,
		    gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		if (ev.type == GRPC_OP_COMPLETE && ev.tag != &server_shutdown_tag &&
		    !hsock_take_tag(a->hs, ev.tag))
			call_free((struct api_call *)((uintptr_t)ev.tag &
			    ~(uintptr_t)3u));
	} while (ev.type != GRPC_QUEUE_SHUTDOWN);
	if (a->server != NULL)
		grpc_server_destroy(a->server);
	hsock_free(a->hs);
	a->hs = NULL;
	grpc_completion_queue_destroy(a->cq);
}

/*
 * Serves on [::]:cfg->port until SIGTERM (which main has blocked in every
 * thread) or until the supervisor's status channel (status_fd, -1 when
 * there is none) closes; forwards calls to the db worker at db_path. Sets
 * up signals (signalfd), the server and the db thread, serves until the
 * orderly stop is over, then tears down in reverse order. The server is
 * destroyed only when every call completed. Returns the exit status.
 */
static int
server_run(const struct cfg *cfg, const char *db_path, int status_fd)
{
	struct api *a;
	struct dbconn d;
	pthread_t th;
	sigset_t sigs;
	struct metrics *mx = NULL;	/* metrics endpoint, NULL if off */
	char err[512];
	bool clean;
	int rc = 1;

	a = calloc(1, sizeof(*a));
	if (a == NULL)
		log_fatal("out of memory");
	a->cfg = cfg;
	a->db_path = db_path;
	a->status_fd = status_fd;
	a->next_id = 1;
	a->health_seen = HEALTH_NOT_SERVING;
	atomic_init(&a->health, HEALTH_NOT_SERVING);
	atomic_init(&a->port_up, false);
	atomic_init(&a->stop, false);
	atomic_init(&a->db_quit, false);
	pthread_mutex_init(&a->mu, NULL);
	memset(&d, 0, sizeof(d));
	d.a = a;

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	d.sig_fd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
	a->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (d.sig_fd < 0 || a->wake_fd < 0)
		log_fatal("signalfd/eventfd: %s", strerror(errno));

	gpr_set_log_function(server_grpc_log);
	(void)grpcx_init();
	/* Metrics are for monitoring: a port that is taken must not stop
	 * allocations. Logged as an error; the endpoint stays off. */
	if (cfg->metrics_port != 0 && (mx = metrics_start(cfg->metrics_port,
	    db_path, err, sizeof(err))) == NULL)
		log_kv(LOGL_ERROR, "cannot serve metrics: endpoint off", "error",
		    err, NULL);
	/* The health socket serves from the start (NOT_SERVING until the
	 * db worker answers and the port is up). With SPIFFE the port is
	 * bound by server_loop once an SVID came. */
	a->cq = grpc_completion_queue_create_for_next(NULL);
	if (cfg->spiffe_socket[0] != '\0')
		a->mtls = mtls_start(cfg);
	if ((rc = server_hsock_start(a)) < 0 ||
	    (a->mtls == NULL && (rc = server_start(a)) < 0)) {
		rc = rc == API_PORT_TAKEN ? IPCMSG_EXIT_PERMANENT : 1;
		a->stopping = true;
		if (a->server != NULL) {
			grpc_server_shutdown_and_notify(a->server, a->cq,
			    &server_shutdown_tag);
			grpc_server_cancel_all_calls(a->server);
		}
		hsock_begin_stop(a->hs);
		hsock_cancel_all(a->hs);
		server_destroy(a);
		goto out_grpc;
	}
	a->adm = admin_start(getenv(IPCMSG_ENV_RUNDIR), db_path, cfg, a->cq,
	    err, sizeof(err));
	if (a->adm == NULL)
		log_kv(LOGL_ERROR, "no admin service", "error", err, NULL);
	if (pthread_create(&th, NULL, dbconn_main, &d) != 0)
		log_fatal("pthread_create: %s", strerror(errno));

	clean = server_loop(a);
	admin_stop(a->adm);
	a->adm = NULL;
	metrics_stop(mx);
	mx = NULL;

	atomic_store(&a->db_quit, true);
	dbconn_wake(a);
	pthread_join(th, NULL);
	pthread_mutex_lock(&a->mu);
	ipc_conn_free(a->conn);
	a->conn = NULL;
	pthread_mutex_unlock(&a->mu);
	if (!clean) {
		/* calls still alive: leave the rest to exit */
		log_warn("stopped with calls alive");
		return 0;
	}
	server_destroy(a);
	rc = 0;
	log_info("stopped");
out_grpc:
	metrics_stop(mx);
	mtls_stop(a->mtls);	/* the server that used it is gone */
	grpc_shutdown();
	tls_free(a->tls);	/* gRPC's fetcher used it until here */
	close(a->wake_fd);
	close(d.sig_fd);
	pthread_mutex_destroy(&a->mu);
	free(a);
	return rc;
}

static const char *
server_getenv(const char *name)
{
	return getenv(name);
}

static void
server_usage(FILE *f)
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
			server_usage(stdout);
			return 0;
		}
		if (strcmp(argv[1], "--version") == 0) {
			printf("meridio-ipam-api %s\n", IPAM_VERSION);
			return 0;
		}
		server_usage(stderr);
		return 2;
	}

	log_init("api", LOGL_INFO, 2);
	if (config_load(&cfg, server_getenv, err, sizeof(err)) < 0)
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
