/*
 * httpd.c - the one-page HTTP server of httpd.h: a pure check of the
 * request head, and one poll(2) thread serving non-blocking connections.
 *
 * A connection reads its request head, writes its answer (head and body
 * from one buffer), then shuts its sending side down and reads what the
 * client still sends until the client closes: closing with unread bytes
 * (a body we did not want) would reset the connection and destroy the
 * answer before the client reads it. The deadline, timeout_ms after the
 * accept, ends a connection at any of these steps.
 */
#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "errbuf.h"
#include "now.h"

#define HTTPD_PAUSE_MS 100	/* no accept this long after EMFILE */
#define HTTPD_BACKLOG 64	/* listen backlog */

/*
 * The request line is checked as it arrives (visible ASCII, a method of
 * capitals), so that garbage such as a TLS hello is refused at once; the
 * rest once the head (lines ending in CR LF) is complete: "METHOD SP
 * target SP HTTP/d.d", one Host field (none needed in HTTP/1.0), then
 * method and path.
 */
int
httpd_parse(const char *buf, size_t len, const char *path, bool *head_only)
{
	const char *eol, *end, *tgt, *ver, *p;
	unsigned hosts = 0;
	size_t n;

	*head_only = false;
	eol = memchr(buf, '\n', len);
	n = eol != NULL ? (size_t)(eol - buf) : len;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)buf[i] < ' ' || (unsigned char)buf[i] > '~')
			return 400;
	for (p = buf; p < buf + n && *p != ' '; p++)
		if (*p < 'A' || *p > 'Z')
			return 400;
	end = memmem(buf, len > HTTPD_HEAD_MAX ? HTTPD_HEAD_MAX : len,
	    "\r\n\r\n", 4);
	if (end == NULL)
		return len > HTTPD_HEAD_MAX ? 431 : 0;
	if (p == buf || p == buf + n)
		return 400;
	tgt = p + 1;
	ver = memchr(tgt, ' ', (size_t)(buf + n - tgt));
	if (ver == NULL || ver == tgt || buf + n - ++ver != 8 ||
	    memcmp(ver, "HTTP/", 5) != 0 || ver[5] < '0' || ver[5] > '9' ||
	    ver[6] != '.' || ver[7] < '0' || ver[7] > '9')
		return 400;
	if (ver[5] != '1')
		return 505;
	for (const char *l = eol + 1; l < end;
	    l = (const char *)memchr(l, '\n', (size_t)(end + 2 - l)) + 1)
		if (strncasecmp(l, "host:", 5) == 0)
			hosts++;
	if (hosts > 1 || (hosts == 0 && ver[7] != '0'))
		return 400;
	if (p - buf == 4 && memcmp(buf, "HEAD", 4) == 0)
		*head_only = true;
	else if (p - buf != 3 || memcmp(buf, "GET", 3) != 0)
		return 405;
	for (p = tgt; *p != ' ' && *p != '?'; p++)
		;
	if ((size_t)(p - tgt) != strlen(path) ||
	    memcmp(tgt, path, (size_t)(p - tgt)) != 0)
		return 404;
	return 200;
}

/* One client connection: reading its request, writing its answer (out
 * set), or draining (answered, its sending side shut down). */
struct httpd_conn {
	int fd;				/* the socket, -1 when free */
	int64_t deadline;		/* ms (monotonic): closed after */
	char in[HTTPD_HEAD_MAX + 1];	/* request bytes (one more than
					 * a head may have) */
	size_t in_len;			/* bytes in in */
	char *out;			/* the answer while it is written */
	size_t out_len;			/* its length */
	size_t sent;			/* bytes of it written */
	bool draining;			/* answered: reading to EOF */
};

struct httpd {
	struct httpd_opts o;		/* copy of the options */
	int lfd;			/* listening socket */
	int wake_fd;			/* eventfd: stop the thread */
	unsigned port;			/* bound port */
	pthread_t th;			/* the server thread */
	struct httpd_conn *conns;	/* max_conns slots */
	unsigned nconns;		/* slots in use */
	int64_t accept_after;		/* ms: no accept before (EMFILE) */
};

static void
httpd_close(struct httpd *h, struct httpd_conn *c)
{
	if (c->fd < 0)
		return;
	close(c->fd);
	free(c->out);
	*c = (struct httpd_conn){ .fd = -1 };
	h->nconns--;
}

static const char *
httpd_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 431: return "Request Header Fields Too Large";
	case 505: return "HTTP Version Not Supported";
	default: return "Internal Server Error";
	}
}

/*
 * Makes c's answer to status: the page for 200 (500 when render fails),
 * else the reason phrase as text; the head alone for HEAD. The Date is
 * formatted in the process's locale, C unless the program changed it.
 * Returns 0, or -1 when out of memory.
 */
static int
httpd_answer(struct httpd *h, struct httpd_conn *c, int status,
    bool head_only)
{
	const char *type = "text/plain; charset=utf-8";
	char *page = NULL, date[64];
	size_t len = 0;
	time_t t = time(NULL);
	struct tm tm;
	FILE *f;

	if (status == 200) {
		page = h->o.render(h->o.arg, &len);
		type = h->o.type;
		if (page == NULL)
			status = 500;
	}
	if (page == NULL)
		len = strlen(httpd_reason(status)) + 1;
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT",
	    gmtime_r(&t, &tm));
	f = open_memstream(&c->out, &c->out_len);
	if (f != NULL) {
		fprintf(f, "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\n"
		    "Content-Length: %zu\r\n%sConnection: close\r\n\r\n",
		    status, httpd_reason(status), date, type, len,
		    status == 405 ? "Allow: GET, HEAD\r\n" : "");
		if (!head_only && page != NULL)
			fwrite(page, 1, len, f);
		else if (!head_only)
			fprintf(f, "%s\n", httpd_reason(status));
		if (fclose(f) != 0) {
			free(c->out);
			c->out = NULL;
		}
	}
	free(page);
	return c->out != NULL ? 0 : -1;
}

/* Writes what the socket takes of c's answer; when all is out, shuts the
 * sending side down and drains. */
static void
httpd_write(struct httpd *h, struct httpd_conn *c)
{
	while (c->sent < c->out_len) {
		ssize_t w = send(c->fd, c->out + c->sent, c->out_len - c->sent,
		    MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (w <= 0) {
			httpd_close(h, c);
			return;
		}
		c->sent += (size_t)w;
	}
	free(c->out);
	c->out = NULL;
	c->draining = true;
	shutdown(c->fd, SHUT_WR);
}

/* Reads from c: request bytes, answered as soon as they decide the
 * answer, or (draining) bytes thrown away until the client closes. */
static void
httpd_read(struct httpd *h, struct httpd_conn *c)
{
	bool head_only;
	ssize_t n;
	int status;

	if (c->draining)
		c->in_len = 0;
	n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
	    errno == EINTR))
		return;
	if (n <= 0) {
		httpd_close(h, c);
		return;
	}
	if (c->draining)
		return;
	c->in_len += (size_t)n;
	status = httpd_parse(c->in, c->in_len, h->o.path, &head_only);
	if (status == 0)
		return;
	if (httpd_answer(h, c, status, head_only) != 0)
		httpd_close(h, c);
	else
		httpd_write(h, c);
}

/* The oldest connection not being answered (reading or draining), or
 * NULL. */
static struct httpd_conn *
httpd_oldest(struct httpd *h)
{
	struct httpd_conn *best = NULL;

	for (unsigned i = 0; i < h->o.max_conns; i++) {
		struct httpd_conn *c = &h->conns[i];

		if (c->fd >= 0 && c->out == NULL &&
		    (best == NULL || c->deadline < best->deadline))
			best = c;
	}
	return best;
}

/*
 * Accepts one waiting connection. At the cap, the oldest connection not
 * being answered makes room, so that idle clients cannot keep a scraper
 * out; when every one is being answered, the new one waits in the
 * backlog.
 */
static void
httpd_accept(struct httpd *h)
{
	struct httpd_conn *c = NULL;
	int fd, one = 1;

	if (h->nconns == h->o.max_conns && httpd_oldest(h) == NULL)
		return;
	fd = accept4(h->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
		    errno == ENOMEM)
			h->accept_after = now_ms() + HTTPD_PAUSE_MS;
		return;
	}
	if (h->nconns == h->o.max_conns)
		httpd_close(h, httpd_oldest(h));
	for (unsigned i = 0; c == NULL; i++)
		if (h->conns[i].fd < 0)
			c = &h->conns[i];
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fd = fd;
	c->deadline = now_ms() + h->o.timeout_ms;
	h->nconns++;
}

/*
 * The server thread: closes connections past their deadline, polls the
 * rest (slot i of pfd is connection i; a free slot's fd is -1, which poll
 * skips), the wake eventfd and the listener, and moves each ready
 * connection on, until woken to stop.
 */
static void *
httpd_main(void *arg)
{
	struct httpd *h = arg;
	unsigned m = h->o.max_conns;
	struct pollfd *pfd;

	pfd = calloc(m + 2, sizeof(*pfd));
	if (pfd == NULL)
		return NULL;
	pfd[m].fd = h->wake_fd;
	pfd[m].events = pfd[m + 1].events = POLLIN;
	for (;;) {
		int64_t now = now_ms(), next = now + 1000;
		int r;

		for (unsigned i = 0; i < m; i++) {
			struct httpd_conn *c = &h->conns[i];

			if (c->fd >= 0 && c->deadline <= now)
				httpd_close(h, c);
			if (c->fd >= 0 && c->deadline < next)
				next = c->deadline;
			pfd[i].fd = c->fd;
			pfd[i].events = c->out != NULL ? POLLOUT : POLLIN;
		}
		pfd[m + 1].fd = -1;
		if (now < h->accept_after)
			next = h->accept_after < next ? h->accept_after : next;
		else if (h->nconns < m || httpd_oldest(h) != NULL)
			pfd[m + 1].fd = h->lfd;
		r = poll(pfd, m + 2, (int)(next - now));
		if (r < 0 && errno != EINTR)
			break;
		if (r <= 0)
			continue;
		if (pfd[m].revents != 0)
			break;
		for (unsigned i = 0; i < m; i++) {
			if (pfd[i].revents == 0)
				continue;
			if (h->conns[i].out != NULL)
				httpd_write(h, &h->conns[i]);
			else
				httpd_read(h, &h->conns[i]);
		}
		if (pfd[m + 1].revents != 0)
			httpd_accept(h);
	}
	free(pfd);
	return NULL;
}

/*
 * A listening socket on host:port (see httpd_opts). Returns the fd or -1
 * with err set.
 */
static int
httpd_listen(const char *host, unsigned port, char *err, size_t errlen)
{
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6,
	    .sin6_port = htons((uint16_t)port), .sin6_addr = in6addr_any };
	struct sockaddr_in a4 = { .sin_family = AF_INET,
	    .sin_port = htons((uint16_t)port) };
	int fd, off = 0, one = 1, family = AF_INET6, e;

	if (host != NULL && inet_pton(AF_INET6, host, &a6.sin6_addr) != 1) {
		family = AF_INET;
		if (inet_pton(AF_INET, host, &a4.sin_addr) != 1) {
			errbuf_set(err, errlen, "bad address %s", host);
			return -1;
		}
	}
	for (;;) {
		fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
		if (fd >= 0) {
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
			    sizeof(one));
			if (family == AF_INET6 && host == NULL)
				setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off,
				    sizeof(off));
			if ((family == AF_INET6 ?
			    bind(fd, (struct sockaddr *)&a6, sizeof(a6)) :
			    bind(fd, (struct sockaddr *)&a4, sizeof(a4))) == 0 &&
			    listen(fd, HTTPD_BACKLOG) == 0)
				return fd;
			e = errno;
			close(fd);
			errno = e;
		}
		/* all addresses on a host without IPv6: IPv4 alone */
		if (host == NULL && family == AF_INET6 &&
		    (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL)) {
			family = AF_INET;
			continue;
		}
		errbuf_set(err, errlen, "cannot listen on %s port %u: %s",
		    host != NULL ? host : "all addresses", port,
		    strerror(errno));
		return -1;
	}
}

struct httpd *
httpd_start(const struct httpd_opts *o, char *err, size_t errlen)
{
	struct httpd *h;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (o->render == NULL || o->path == NULL || o->type == NULL ||
	    o->max_conns == 0 || o->timeout_ms == 0 || o->port > 65535) {
		errbuf_set(err, errlen, "bad httpd options");
		return NULL;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL || (h->conns = calloc(o->max_conns,
	    sizeof(*h->conns))) == NULL) {
		free(h);
		errbuf_set(err, errlen, "out of memory");
		return NULL;
	}
	h->o = *o;
	h->wake_fd = -1;
	for (unsigned i = 0; i < o->max_conns; i++)
		h->conns[i].fd = -1;
	h->lfd = httpd_listen(o->host, o->port, err, errlen);
	if (h->lfd < 0)
		goto fail;
	if (getsockname(h->lfd, (struct sockaddr *)&ss, &sl) == 0)
		h->port = ntohs(ss.ss_family == AF_INET6 ?
		    ((struct sockaddr_in6 *)&ss)->sin6_port :
		    ((struct sockaddr_in *)&ss)->sin_port);
	h->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (h->wake_fd < 0) {
		errbuf_set(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	if (pthread_create(&h->th, NULL, httpd_main, h) != 0) {
		errbuf_set(err, errlen, "cannot start the http thread");
		goto fail;
	}
	return h;
fail:
	if (h->lfd >= 0)
		close(h->lfd);
	if (h->wake_fd >= 0)
		close(h->wake_fd);
	free(h->conns);
	free(h);
	return NULL;
}

unsigned
httpd_port(const struct httpd *h)
{
	return h->port;
}

void
httpd_stop(struct httpd *h)
{
	uint64_t one = 1;

	if (h == NULL)
		return;
	while (write(h->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	pthread_join(h->th, NULL);
	for (unsigned i = 0; i < h->o.max_conns; i++)
		httpd_close(h, &h->conns[i]);
	close(h->lfd);
	close(h->wake_fd);
	free(h->conns);
	free(h);
}
