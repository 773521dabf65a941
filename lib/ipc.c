/*
 * ipc.c - length-prefixed frames on Unix stream sockets.
 *
 * Input is read in chunks into one growing buffer and cut into frames in
 * place; output frames are appended to a queue that is written as far as
 * the socket takes it. No logging, no exit: errors are return codes with
 * errno set, or a message in the caller's buffer.
 */
#include "errbuf.h"
#include "ipc.h"
#include "now.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#define IPC_HDR 4			/* bytes of the length header */
#define IPC_CHUNK 65536			/* bytes asked of read() at once */
/* Most input ever buffered: one maximal frame, its header and one chunk.
 * A well-behaved caller drains ipc_conn_next after each fill, so more
 * than this means the peer outruns it. */
#define IPC_IN_LIMIT (BOUNDS_FRAME_MAX + IPC_HDR + IPC_CHUNK)

/* A growable byte buffer; bytes before off are consumed. */
struct ipc_buf {
	uint8_t *data;			/* storage, NULL until first use */
	size_t off;			/* first byte not yet consumed */
	size_t len;			/* bytes stored (consumed included) */
	size_t cap;			/* allocated size of data */
};

struct ipc_conn {
	int fd;				/* the socket, non-blocking, owned */
	struct ipc_buf in;		/* received bytes, cut into frames */
	struct ipc_buf out;		/* queued frames not yet written */
};

/* Drops the consumed bytes at the front of b. */
static void
ipc_buf_compact(struct ipc_buf *b)
{
	if (b->off == 0)
		return;
	memmove(b->data, b->data + b->off, b->len - b->off);
	b->len -= b->off;
	b->off = 0;
}

/* Makes room for extra more bytes after len. 0, or -1 (ENOMEM). */
static int
ipc_buf_reserve(struct ipc_buf *b, size_t extra)
{
	size_t need = b->len + extra;
	size_t cap = b->cap ? b->cap : 4096;
	uint8_t *p;

	if (need <= b->cap)
		return 0;
	while (cap < need)
		cap *= 2;
	if ((p = realloc(b->data, cap)) == NULL)
		return -1;
	b->data = p;
	b->cap = cap;
	return 0;
}

static void
ipc_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t
ipc_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

struct ipc_conn *
ipc_conn_new(int fd)
{
	struct ipc_conn *c;
	int fl;

	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->fd = fd;
	return c;
}

void
ipc_conn_free(struct ipc_conn *c)
{
	if (c == NULL)
		return;
	close(c->fd);
	free(c->in.data);
	free(c->out.data);
	free(c);
}

int
ipc_conn_fd(const struct ipc_conn *c)
{
	return c->fd;
}

/*
 * One read of at most IPC_CHUNK bytes into the input buffer. The buffer is
 * compacted first, so frame pointers handed out earlier become invalid, as
 * the header says. Refuses to buffer more than IPC_IN_LIMIT (ENOBUFS): the
 * caller is expected to take frames out between fills.
 */
ssize_t
ipc_conn_fill(struct ipc_conn *c)
{
	ssize_t n;

	ipc_buf_compact(&c->in);
	if (c->in.len >= IPC_IN_LIMIT) {
		errno = ENOBUFS;
		return -1;
	}
	if (ipc_buf_reserve(&c->in, IPC_CHUNK) < 0)
		return -1;
	do
		n = read(c->fd, c->in.data + c->in.len, IPC_CHUNK);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		c->in.len += (size_t)n;
	return n;
}

/*
 * Cuts the next frame out of the buffered input without copying. The
 * length is checked against BOUNDS_FRAME_MAX as soon as its four bytes are
 * there, before waiting for (or allocating room for) the payload.
 */
int
ipc_conn_next(struct ipc_conn *c, const uint8_t **data, size_t *len)
{
	size_t avail = c->in.len - c->in.off;
	const uint8_t *p = c->in.data + c->in.off;
	uint32_t n;

	if (avail < IPC_HDR)
		return 0;
	n = ipc_get_be32(p);
	if (n > BOUNDS_FRAME_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	if (avail - IPC_HDR < n)
		return 0;
	*data = p + IPC_HDR;
	*len = n;
	c->in.off += IPC_HDR + n;
	return 1;
}

int
ipc_conn_queue(struct ipc_conn *c, const void *data, size_t len)
{
	if (len > BOUNDS_FRAME_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	if (c->out.off == c->out.len)
		c->out.off = c->out.len = 0;
	else if (c->out.off > c->out.cap / 2)
		ipc_buf_compact(&c->out);	/* amortised: half is dead */
	if (ipc_buf_reserve(&c->out, IPC_HDR + len) < 0)
		return -1;
	ipc_put_be32(c->out.data + c->out.len, (uint32_t)len);
	if (len > 0)
		memcpy(c->out.data + c->out.len + IPC_HDR, data, len);
	c->out.len += IPC_HDR + len;
	return 0;
}

/*
 * Writes queued output until it is all gone or the socket would block
 * (without SIGPIPE: a peer gone is EPIPE). What is left stays queued for
 * the next call after POLLOUT.
 */
int
ipc_conn_flush(struct ipc_conn *c)
{
	ssize_t w;

	while (c->out.off < c->out.len) {
		w = send(c->fd, c->out.data + c->out.off,
		    c->out.len - c->out.off, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 1;
			return -1;
		}
		c->out.off += (size_t)w;
	}
	c->out.off = c->out.len = 0;
	if (c->out.cap > 4 * IPC_CHUNK) {
		/* Give back the memory of an unusually large burst. */
		free(c->out.data);
		c->out.data = NULL;
		c->out.cap = 0;
	}
	return 0;
}

bool
ipc_conn_pending(const struct ipc_conn *c)
{
	return c->out.off < c->out.len;
}

/*
 * Waits until fd is ready for events or the deadline (ms on the monotonic
 * clock, < 0 = none) passes. 0 when ready, -1 with errno (ETIMEDOUT).
 */
static int
ipc_wait(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int timeout, r;

	for (;;) {
		timeout = -1;
		if (deadline >= 0) {
			int64_t left = deadline - now_ms();

			if (left <= 0) {
				errno = ETIMEDOUT;
				return -1;
			}
			timeout = left > 1000000 ? 1000000 : (int)left;
		}
		r = poll(&pfd, 1, timeout);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

/*
 * Writes header and payload with one sendmsg per attempt, waiting for
 * POLLOUT when a non-blocking fd is full; what a partial write took is
 * dropped from the front of the iovecs.
 */
int
ipc_send(int fd, const void *data, size_t len)
{
	uint8_t hdr[IPC_HDR];
	struct iovec iov[2] = { { hdr, IPC_HDR }, { (void *)data, len } };
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };
	ssize_t w;

	if (len > BOUNDS_FRAME_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	ipc_put_be32(hdr, (uint32_t)len);
	while (msg.msg_iovlen > 0) {
		w = sendmsg(fd, &msg, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR || ((errno == EAGAIN ||
			    errno == EWOULDBLOCK) && ipc_wait(fd, POLLOUT, -1) == 0))
				continue;
			return -1;
		}
		for (; msg.msg_iovlen > 0 && (size_t)w >= msg.msg_iov->iov_len;
		    msg.msg_iov++, msg.msg_iovlen--)
			w -= (ssize_t)msg.msg_iov->iov_len;
		if (msg.msg_iovlen > 0) {
			msg.msg_iov->iov_base = (uint8_t *)msg.msg_iov->iov_base + w;
			msg.msg_iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/*
 * Reads exactly n bytes into p before the deadline. Returns n, the number
 * of bytes read before EOF (< n), or -1 with errno.
 */
static ssize_t
ipc_read_full(int fd, uint8_t *p, size_t n, int64_t deadline)
{
	size_t got = 0;
	ssize_t r;

	while (got < n) {
		if (ipc_wait(fd, POLLIN, deadline) < 0)
			return -1;
		r = read(fd, p + got, n - got);
		if (r == 0)
			break;
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN ||
			    errno == EWOULDBLOCK)
				continue;
			return -1;
		}
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/*
 * Reads one frame byte-exactly (nothing past it is consumed, so blocking
 * and buffered use of one socket can follow each other). The length is
 * checked before the payload buffer is allocated.
 */
int
ipc_recv(int fd, uint8_t **data, size_t *len, int timeout_ms)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	uint8_t hdr[IPC_HDR];
	uint8_t *buf;
	uint32_t n;
	ssize_t r;

	r = ipc_read_full(fd, hdr, IPC_HDR, deadline);
	if (r < 0)
		return -1;
	if (r == 0)
		return 0;
	if (r < IPC_HDR) {
		errno = EPROTO;
		return -1;
	}
	n = ipc_get_be32(hdr);
	if (n > BOUNDS_FRAME_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	if ((buf = malloc(n > 0 ? n : 1)) == NULL)
		return -1;
	r = ipc_read_full(fd, buf, n, deadline);
	if (r < 0 || (size_t)r < n) {
		if (r >= 0)
			errno = EPROTO;
		free(buf);
		return -1;
	}
	*data = buf;
	*len = n;
	return 1;
}

/* Fills a sockaddr_un for path. 0, or -1 when the path does not fit. */
static int
ipc_addr(struct sockaddr_un *sun, const char *path, char *err,
    size_t errlen)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path)) {
		errbuf_set(err, errlen, "socket path too long (%zu bytes, at most"
		    " %zu): %s", strlen(path), sizeof(sun->sun_path) - 1,
		    path);
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sun->sun_path, path, strlen(path) + 1);
	return 0;
}

/*
 * A socket file nobody listens on any more (left by an earlier run) is
 * removed; a live one is refused (EADDRINUSE) rather than stolen, and any
 * other kind of file at path is left alone for bind to fail on. The socket
 * is created with mode 0600 through the umask, so there is no window in
 * which it is more open than that.
 */
int
ipc_listen(const char *path, int backlog, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	struct stat st;
	mode_t old;
	int fd, r, saved;

	if (ipc_addr(&sun, path, err, errlen) < 0)
		return -1;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		fd = ipc_connect(path, NULL, 0);
		if (fd >= 0) {
			close(fd);
			errbuf_set(err, errlen, "socket %s is in use", path);
			errno = EADDRINUSE;
			return -1;
		}
		if (unlink(path) < 0) {
			errbuf_set(err, errlen, "remove stale socket %s: %s",
			    path, strerror(errno));
			return -1;
		}
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		errbuf_set(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	old = umask(0177);
	r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	saved = errno;
	umask(old);
	if (r < 0) {
		errbuf_set(err, errlen, "bind %s: %s", path, strerror(saved));
		goto fail;
	}
	if (listen(fd, backlog) < 0) {
		saved = errno;
		errbuf_set(err, errlen, "listen %s: %s", path, strerror(saved));
		unlink(path);
		goto fail;
	}
	return fd;
fail:
	close(fd);
	errno = saved;
	return -1;
}

int
ipc_connect(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	int fd, r, saved;

	if (ipc_addr(&sun, path, err, errlen) < 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		errbuf_set(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	if (r < 0) {
		saved = errno;
		errbuf_set(err, errlen, "connect %s: %s", path, strerror(saved));
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

int
ipc_peer_uid(int fd, uid_t *uid)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -1;
	*uid = cred.uid;
	return 0;
}
