/*
 * hsock.c - the health socket: a second grpc_server, plaintext, bound to
 * one Unix socket, with only the methods its caller registers.
 *
 * A socket file nobody listens on is what a killed process leaves: it is
 * replaced. A socket somebody listens on belongs to another instance (or
 * another program): it is never taken over, since two servers behind one
 * path would answer probes for one another. gRPC itself unlinks any
 * socket file in its way when it binds, so the check comes first.
 */
#include "hsock.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "grpcx.h"

#define HSOCK_MAX_MESSAGE 4096	/* a HealthCheckRequest is tiny */
#define HSOCK_NMETHODS 4	/* room for registered methods */
#define HSOCK_LIVE_WAIT_MS 5000	/* how long a live socket may take to go */

struct hsock {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
					/* the socket file */
	dev_t dev;			/* its device and inode once bound: */
	ino_t ino;			/* removed at the end only if unchanged */
	grpc_server *server;		/* serves nothing but methods[] */
	grpc_completion_queue *cq;	/* the caller's, for the shutdown tag */
	void *methods[HSOCK_NMETHODS];	/* registered method handles */
	int shutdown_tag;		/* its address: the shutdown tag */
	bool stopping;			/* shutdown_and_notify was called */
	bool stopped;			/* the shutdown tag arrived */
};

/*
 * Frees the way to path: nothing there, or a stale socket removed. A
 * socket that accepts a connection is live. Connecting is how a stale
 * file is told from a live one: the kernel refuses connections to a
 * socket file whose listener is gone (ECONNREFUSED); a full backlog
 * (EAGAIN) still means somebody listens.
 */
static enum hsock_rc
hsock_claim(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	struct stat sb;
	int fd, r, e;

	if (lstat(path, &sb) < 0) {
		if (errno == ENOENT)
			return HSOCK_OK;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return HSOCK_ERROR;
	}
	if (!S_ISSOCK(sb.st_mode)) {
		snprintf(err, errlen, "%s exists and is not a socket: left "
		    "alone", path);
		return HSOCK_ERROR;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return HSOCK_ERROR;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path));
	r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	e = errno;
	close(fd);
	if (r == 0 || e == EAGAIN || e == EINPROGRESS) {
		snprintf(err, errlen, "%s: another process serves this socket "
		    "(another instance?)", path);
		return HSOCK_LIVE;
	}
	if (e != ECONNREFUSED) {
		snprintf(err, errlen, "%s: cannot tell whether another process "
		    "serves it: %s", path, strerror(e));
		return HSOCK_ERROR;
	}
	if (unlink(path) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "cannot remove the stale socket %s: %s",
		    path, strerror(errno));
		return HSOCK_ERROR;
	}
	return HSOCK_OK;
}

/* Checks that the socket can be made in path's directory, so that a
 * failure is reported with its cause (gRPC only says it failed). */
static int
hsock_dir_ok(const char *path, char *err, size_t errlen)
{
	char buf[sizeof(((struct hsock *)0)->path)], *dir;

	snprintf(buf, sizeof(buf), "%s", path);
	dir = dirname(buf);
	if (access(dir, W_OK | X_OK) < 0) {
		snprintf(err, errlen, "cannot create %s: directory %s: %s",
		    path, dir, strerror(errno));
		return -1;
	}
	return 0;
}

enum hsock_rc
hsock_open(const char *path, grpc_completion_queue *cq,
    const char *const *paths, size_t n, struct hsock **out, char *err,
    size_t errlen)
{
	struct hsock *hs;
	grpc_server_credentials *creds;
	char addr[sizeof(hs->path) + 8];
	struct stat sb;
	enum hsock_rc rc;
	int port;

	*out = NULL;
	if (strlen(path) >= sizeof(hs->path) || n > HSOCK_NMETHODS) {
		snprintf(err, errlen, "%s: path too long for a Unix socket",
		    path);
		return HSOCK_ERROR;
	}
	/* A live socket may be a worker of an instance that is stopping
	 * (its supervisor was killed, a restart follows at once): give it
	 * HSOCK_LIVE_WAIT_MS to go before calling it another instance. */
	for (int waited = 0; (rc = hsock_claim(path, err, errlen)) ==
	    HSOCK_LIVE && waited < HSOCK_LIVE_WAIT_MS; waited += 100)
		usleep(100 * 1000);
	if (rc == HSOCK_LIVE)
		snprintf(err, errlen, "%s: another process still serves this "
		    "socket after %d s (another instance?)", path,
		    HSOCK_LIVE_WAIT_MS / 1000);
	if (rc != HSOCK_OK)
		return rc;
	if (hsock_dir_ok(path, err, errlen) < 0)
		return HSOCK_ERROR;
	hs = calloc(1, sizeof(*hs));
	if (hs == NULL) {
		snprintf(err, errlen, "out of memory");
		return HSOCK_ERROR;
	}
	snprintf(hs->path, sizeof(hs->path), "%s", path);
	hs->cq = cq;
	hs->server = grpcx_server_new(HSOCK_MAX_MESSAGE);
	grpc_server_register_completion_queue(hs->server, cq, NULL);
	for (size_t i = 0; i < n; i++)
		hs->methods[i] = grpc_server_register_method(hs->server,
		    paths[i], NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
		    0);
	snprintf(addr, sizeof(addr), "unix:%s", path);
	creds = grpc_insecure_server_credentials_create();
	port = grpc_server_add_http2_port(hs->server, addr, creds);
	grpc_server_credentials_release(creds);
	if (port == 0 || lstat(path, &sb) < 0) {
		snprintf(err, errlen, "cannot listen on %s", addr);
		grpc_server_destroy(hs->server);
		free(hs);
		return HSOCK_ERROR;
	}
	hs->dev = sb.st_dev;
	hs->ino = sb.st_ino;
	*out = hs;
	return HSOCK_OK;
}

void
hsock_start(struct hsock *hs)
{
	grpc_server_start(hs->server);
}

grpc_server *
hsock_server(const struct hsock *hs)
{
	return hs->server;
}

void *
hsock_method(const struct hsock *hs, size_t i)
{
	return i < HSOCK_NMETHODS ? hs->methods[i] : NULL;
}

void
hsock_begin_stop(struct hsock *hs)
{
	if (hs == NULL || hs->stopping)
		return;
	hs->stopping = true;
	grpc_server_shutdown_and_notify(hs->server, hs->cq, &hs->shutdown_tag);
}

bool
hsock_take_tag(struct hsock *hs, void *tag)
{
	if (hs == NULL || tag != &hs->shutdown_tag)
		return false;
	hs->stopped = true;
	return true;
}

bool
hsock_stopped(const struct hsock *hs)
{
	return hs == NULL || hs->stopped;
}

void
hsock_cancel_all(struct hsock *hs)
{
	if (hs != NULL)
		grpc_server_cancel_all_calls(hs->server);
}

void
hsock_free(struct hsock *hs)
{
	struct stat sb;

	if (hs == NULL)
		return;
	grpc_server_destroy(hs->server);
	if (lstat(hs->path, &sb) == 0 && sb.st_dev == hs->dev &&
	    sb.st_ino == hs->ino)
		(void)unlink(hs->path);
	free(hs);
}
