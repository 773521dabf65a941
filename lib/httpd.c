/*
 * httpd.c - a small HTTP/1.1 server: a pure request-head parser and
 * response-head formatter, and one poll(2) thread that serves non-blocking
 * connections with them (see httpd.h for the behaviour).
 *
 * Connection life: READ (collecting a request head, at most
 * HTTPD_HEAD_MAX bytes) -> WRITE (the answer, head and body in one
 * sendmsg when the socket takes it) -> READ again when kept alive, or
 * LINGER: our side shut down for writing, input read and thrown away until
 * the client closes or a short time passes, so that unread bytes (a body
 * we did not want) do not turn our close into a reset that would destroy
 * the answer before the client reads it.
 *
 * Every connection has one deadline: timeout_ms after it was accepted,
 * after its last request arrived and after its last answer was written.
 * Past it, the connection is closed whatever its state.
 */
#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "errbuf.h"
#include "now.h"

#define HTTPD_LINGER_MS 2000	/* at most this long in LINGER */
#define HTTPD_PAUSE_MS 100	/* no accept this long after EMFILE */
#define HTTPD_BACKLOG 64	/* listen backlog */
#define HTTPD_REPLY_HEAD 512	/* room for a formatted response head */

/* ---- parsing ------------------------------------------------------------ */

/* True for a character of an RFC 9110 token (methods, header names). */
static bool
httpd_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Case-insensitive comparison of p[0..n) with the lowercase word w. */
static bool
httpd_is(const char *p, size_t n, const char *w)
{
	if (strlen(w) != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		if (c != (unsigned char)w[i])
			return false;
	}
	return true;
}

/*
 * The path of a request target (t, n bytes, all visible ASCII): origin
 * form "/p?q", absolute form "http://host/p?q" (HTTP/1.1 servers must take
 * it) or "*". Returns 1, or -400 / -414.
 */
static int
httpd_parse_target(const char *t, size_t n, struct httpd_req *req)
{
	size_t i = 0, k;

	if (n == 1 && t[0] == '*') {
		memcpy(req->path, "*", 2);
		return 1;
	}
	if (t[0] != '/') {
		/* scheme "://" authority, then the path (or none: "/") */
		while (i < n && t[i] != ':')
			i++;
		if (!httpd_is(t, i, "http") && !httpd_is(t, i, "https"))
			return -400;
		if (n - i < 3 || memcmp(t + i, "://", 3) != 0)
			return -400;
		i += 3;
		if (i == n || t[i] == '/' || t[i] == '?')
			return -400;	/* no host */
		while (i < n && t[i] != '/' && t[i] != '?')
			i++;
		if (i == n || t[i] == '?') {
			memcpy(req->path, "/", 2);
			return 1;
		}
	}
	for (k = i; k < n && t[k] != '?' && t[k] != '#'; k++)
		;
	if (k - i >= HTTPD_PATH_MAX)
		return -414;
	memcpy(req->path, t + i, k - i);
	req->path[k - i] = '\0';
	return 1;
}

/*
 * The request line p[0..n) (its CR LF cut off): method SP target SP
 * HTTP/d.d. When complete is false the line is still arriving: what is
 * there is checked, so that garbage is refused before a whole head
 * (or the cap) has been read. Returns 1 (complete and good), 0 (good so
 * far), or minus a status.
 */
static int
httpd_parse_line(const char *p, size_t n, bool complete,
    struct httpd_req *req)
{
	static const char ver[] = "HTTP/d.d";
	size_t i = 0, t0, tn;

	while (i < n && httpd_tchar((unsigned char)p[i]))
		i++;
	if (i >= HTTPD_METHOD_MAX)
		return -501;
	if (i == n)
		return complete ? -400 : 0;
	if (p[i] != ' ' || i == 0)
		return -400;
	memcpy(req->method, p, i);
	req->method[i] = '\0';
	t0 = ++i;
	while (i < n && (unsigned char)p[i] > 0x20 &&
	    (unsigned char)p[i] < 0x7f)
		i++;
	tn = i - t0;
	if (i == n)
		return complete ? -400 : 0;
	if (p[i] != ' ' || tn == 0)
		return -400;
	i++;
	for (size_t k = 0; k < sizeof(ver) - 1; k++, i++) {
		if (i == n)
			return complete ? -400 : 0;
		if (ver[k] == 'd' ? (p[i] < '0' || p[i] > '9') :
		    p[i] != ver[k])
			return -400;
	}
	if (i != n)
		return -400;
	if (!complete)
		return 0;
	if (p[i - 3] != '1')
		return -505;
	req->minor = p[i - 1] == '0' ? 0 : 1;	/* 1.2+ is served as 1.1 */
	return httpd_parse_target(p + t0, tn, req);
}

/* What the header fields say, as far as this server cares. */
struct httpd_fields {
	unsigned hosts;			/* Host fields seen */
	bool conn_close;		/* Connection: close */
	bool conn_keep;			/* Connection: keep-alive */
	bool has_te;			/* a Transfer-Encoding field */
	bool has_cl;			/* a Content-Length field */
	uint64_t cl;			/* its value */
};

/* The tokens of a Connection value v[0..n): close and keep-alive. */
static void
httpd_parse_connection(const char *v, size_t n, struct httpd_fields *f)
{
	size_t i = 0;

	while (i < n) {
		size_t s, e;

		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < n && v[i] != ',')
			i++;
		e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (httpd_is(v + s, e - s, "close"))
			f->conn_close = true;
		else if (httpd_is(v + s, e - s, "keep-alive"))
			f->conn_keep = true;
	}
}

/*
 * One header line p[0..n) (CR LF cut off): name ":" OWS value OWS. No
 * space before the colon, no line folding, no control characters (RFC
 * 9112 5.1 and 5.2). Returns 0 or -400.
 */
static int
httpd_parse_field(const char *p, size_t n, struct httpd_fields *f)
{
	size_t i = 0, vs, ve;
	uint64_t cl = 0;

	while (i < n && httpd_tchar((unsigned char)p[i]))
		i++;
	if (i == 0 || i == n || p[i] != ':')
		return -400;
	vs = i + 1;
	while (vs < n && (p[vs] == ' ' || p[vs] == '\t'))
		vs++;
	ve = n;
	while (ve > vs && (p[ve - 1] == ' ' || p[ve - 1] == '\t'))
		ve--;
	for (size_t k = vs; k < ve; k++) {
		unsigned char c = (unsigned char)p[k];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return -400;
	}
	if (httpd_is(p, i, "host")) {
		f->hosts++;
	} else if (httpd_is(p, i, "connection")) {
		httpd_parse_connection(p + vs, ve - vs, f);
	} else if (httpd_is(p, i, "transfer-encoding")) {
		f->has_te = true;
	} else if (httpd_is(p, i, "content-length")) {
		if (vs == ve)
			return -400;
		for (size_t k = vs; k < ve; k++) {
			if (p[k] < '0' || p[k] > '9' ||
			    cl > (UINT64_MAX - 9) / 10)
				return -400;
			cl = cl * 10 + (uint64_t)(p[k] - '0');
		}
		if (f->has_cl && f->cl != cl)
			return -400;
		f->has_cl = true;
		f->cl = cl;
	}
	return 0;
}

/*
 * Finds the head (skipping empty lines before it, RFC 9112 2.2), checks
 * the request line as it arrives, then parses the whole head at once.
 * Lines may end in LF alone; a CR anywhere else is an error.
 */
int
httpd_parse(const char *buf, size_t len, size_t cap, struct httpd_req *req)
{
	struct httpd_fields f;
	size_t s = 0, i, ls, end = 0, line_end = 0;
	int r;

	memset(req, 0, sizeof(*req));
	if (len > cap)
		len = cap + 1;	/* only whether there is more matters */
	while (s < len && (buf[s] == '\n' ||
	    (buf[s] == '\r' && s + 1 < len && buf[s + 1] == '\n')))
		s += buf[s] == '\n' ? 1 : 2;
	/* end of the request line, then of the head (an empty line) */
	for (i = s, ls = s; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (line_end == 0)
			line_end = i;
		else if (i == ls || (i == ls + 1 && buf[ls] == '\r')) {
			end = i + 1;
			break;
		}
		ls = i + 1;
	}
	if (end > cap)
		return -431;
	if (end == 0) {
		/* not all there: refuse what is wrong already */
		size_t n = line_end != 0 ? line_end : len;

		if (n > s && buf[n - 1] == '\r')
			n--;
		r = httpd_parse_line(buf + s, n - s, line_end != 0, req);
		if (r < 0)
			return r;
		return len > cap ? -431 : 0;
	}
	r = httpd_parse_line(buf + s, line_end - s -
	    (line_end > s && buf[line_end - 1] == '\r'), true, req);
	if (r < 0)
		return r;
	memset(&f, 0, sizeof(f));
	for (ls = line_end + 1; ls < end; ) {
		size_t e = ls, n;

		while (buf[e] != '\n')
			e++;
		n = e - ls;
		if (n > 0 && buf[e - 1] == '\r')
			n--;
		if (n == 0)
			break;	/* the blank line */
		if (buf[ls] == ' ' || buf[ls] == '\t')
			return -400;	/* obsolete line folding */
		r = httpd_parse_field(buf + ls, n, &f);
		if (r < 0)
			return r;
		ls = e + 1;
	}
	/* RFC 9112 3.2: exactly one Host in HTTP/1.1, never two; 6.3: a
	 * length and a transfer coding together smell of smuggling. */
	if (f.hosts > 1 || (req->minor == 1 && f.hosts == 0) ||
	    (f.has_te && f.has_cl))
		return -400;
	req->keep_alive = !f.conn_close && (req->minor == 1 || f.conn_keep);
	req->has_body = f.has_te || f.cl > 0;
	return (int)end;
}

/* ---- formatting --------------------------------------------------------- */

const char *
httpd_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

/* An IMF-fixdate (RFC 9110 5.6.7), whatever the locale. */
static void
httpd_date(char *out, size_t outlen, time_t now)
{
	static const char days[7][4] = {
		"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat",
	};
	static const char months[12][4] = {
		"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
		"Oct", "Nov", "Dec",
	};
	struct tm tm;

	gmtime_r(&now, &tm);
	snprintf(out, outlen, "%s, %02d %s %04d %02d:%02d:%02d GMT",
	    days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

size_t
httpd_format_head(char *out, size_t outlen, const struct httpd_reply *rep,
    bool keep_alive, int minor, time_t now)
{
	char date[64];
	size_t n = 0;
	int w;

#define HTTPD_ADD(...) do {						\
	w = snprintf(out + n, outlen - n, __VA_ARGS__);			\
	if (w < 0 || (size_t)w >= outlen - n)				\
		return 0;						\
	n += (size_t)w;							\
} while (0)

	if (outlen == 0)
		return 0;
	httpd_date(date, sizeof(date), now);
	HTTPD_ADD("HTTP/1.1 %d %s\r\nDate: %s\r\n", rep->status,
	    httpd_reason(rep->status), date);
	if (rep->type != NULL)
		HTTPD_ADD("Content-Type: %s\r\n", rep->type);
	HTTPD_ADD("Content-Length: %zu\r\n", rep->len);
	if (rep->allow != NULL)
		HTTPD_ADD("Allow: %s\r\n", rep->allow);
	if (!keep_alive)
		HTTPD_ADD("Connection: close\r\n");
	else if (minor == 0)
		HTTPD_ADD("Connection: keep-alive\r\n");
	HTTPD_ADD("\r\n");
#undef HTTPD_ADD
	return n;
}

/* ---- the server --------------------------------------------------------- */

enum httpd_state {
	HTTPD_FREE,		/* slot unused */
	HTTPD_READ,		/* reading a request head */
	HTTPD_WRITE,		/* writing an answer */
	HTTPD_LINGER,		/* answered, closing: reading to EOF */
};

/* One client connection. */
struct httpd_conn {
	int fd;				/* the socket, -1 when free */
	enum httpd_state state;		/* see above */
	int64_t deadline;		/* ms (monotonic): closed after */
	int64_t since;			/* ms: idle since (eviction order) */
	char *in;			/* request bytes (HTTPD_HEAD_MAX) */
	size_t in_len;			/* bytes in in */
	char head[HTTPD_REPLY_HEAD];	/* the answer's head */
	size_t head_len;		/* its length */
	char *body;			/* the answer's body (owned), or NULL */
	size_t body_len;		/* bytes of body to send */
	size_t sent;			/* of head + body, written so far */
	bool close_after;		/* close once the answer is out */
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
httpd_conn_close(struct httpd *h, struct httpd_conn *c)
{
	if (c->state == HTTPD_FREE)
		return;
	close(c->fd);
	free(c->in);
	free(c->body);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->state = HTTPD_FREE;
	h->nconns--;
}

/* Prepares the answer rep on c (takes its body) and enters WRITE. */
static void
httpd_conn_answer(struct httpd *h, struct httpd_conn *c,
    struct httpd_reply *rep, bool head_only, int minor)
{
	int64_t now = now_ms();

	c->head_len = httpd_format_head(c->head, sizeof(c->head), rep,
	    !c->close_after, minor, time(NULL));
	if (c->head_len == 0) {
		/* a Content-Type too long for the head: a bug of the caller */
		struct httpd_reply err = { .status = 500 };

		c->close_after = true;
		c->head_len = httpd_format_head(c->head, sizeof(c->head),
		    &err, false, minor, time(NULL));
		head_only = true;
	}
	free(c->body);
	c->body = rep->body;
	rep->body = NULL;
	c->body_len = head_only ? 0 : rep->len;
	c->sent = 0;
	c->state = HTTPD_WRITE;
	c->deadline = now + h->o.timeout_ms;
}

/* A refusal of the server's own (status >= 400): text body, then close. */
static void
httpd_conn_refuse(struct httpd *h, struct httpd_conn *c, int status,
    int minor)
{
	struct httpd_reply rep = { .status = status,
	    .type = "text/plain; charset=utf-8" };
	const char *text = httpd_reason(status);

	rep.len = strlen(text) + 1;	/* and a newline */
	rep.body = malloc(rep.len + 1);
	if (rep.body != NULL)
		snprintf(rep.body, rep.len + 1, "%s\n", text);
	else
		rep.len = 0;
	c->close_after = true;
	c->in_len = 0;
	httpd_conn_answer(h, c, &rep, false, minor);
}

/*
 * Answers the first request buffered on c, if its head is complete:
 * refusal, or the handler's reply. Returns true when an answer was made.
 */
static bool
httpd_conn_request(struct httpd *h, struct httpd_conn *c)
{
	struct httpd_req req;
	struct httpd_reply rep;
	bool head;
	int r;

	r = httpd_parse(c->in, c->in_len, HTTPD_HEAD_MAX, &req);
	if (r == 0)
		return false;
	if (r < 0) {
		httpd_conn_refuse(h, c, -r, 1);
		return true;
	}
	memset(&rep, 0, sizeof(rep));
	h->o.handler(h->o.arg, &req, &rep);
	if (rep.status < 100 || rep.status > 999) {
		free(rep.body);
		httpd_conn_refuse(h, c, 500, req.minor);
		return true;
	}
	if (rep.body == NULL)
		rep.len = 0;
	head = strcmp(req.method, "HEAD") == 0;
	/* a body is never read: the connection cannot carry another
	 * request after it */
	c->close_after = !req.keep_alive || req.has_body;
	if (c->close_after) {
		c->in_len = 0;
	} else {
		memmove(c->in, c->in + r, c->in_len - (size_t)r);
		c->in_len -= (size_t)r;
	}
	httpd_conn_answer(h, c, &rep, head, req.minor);
	return true;
}

/* Writes what the socket takes. Returns 1 when all is out, 0 when some
 * is left, -1 on error. */
static int
httpd_conn_write(struct httpd_conn *c)
{
	size_t total = c->head_len + c->body_len;

	while (c->sent < total) {
		struct iovec iov[2];
		struct msghdr msg;
		int n = 0;
		ssize_t w;

		if (c->sent < c->head_len) {
			iov[n].iov_base = c->head + c->sent;
			iov[n++].iov_len = c->head_len - c->sent;
		}
		if (c->body_len > 0) {
			size_t off = c->sent > c->head_len ?
			    c->sent - c->head_len : 0;

			iov[n].iov_base = c->body + off;
			iov[n++].iov_len = c->body_len - off;
		}
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = iov;
		msg.msg_iovlen = (size_t)n;
		w = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (w <= 0)
			return -1;
		c->sent += (size_t)w;
	}
	return 1;
}

/*
 * Moves c on as far as it goes without waiting: writes the answer, then
 * either lingers (closing) or answers the next request already buffered
 * (pipelining), one answer at a time.
 */
static void
httpd_conn_run(struct httpd *h, struct httpd_conn *c)
{
	for (;;) {
		if (c->state == HTTPD_WRITE) {
			int r = httpd_conn_write(c);
			int64_t now;

			if (r < 0) {
				httpd_conn_close(h, c);
				return;
			}
			if (r == 0)
				return;
			free(c->body);
			c->body = NULL;
			now = now_ms();
			if (c->close_after) {
				shutdown(c->fd, SHUT_WR);
				c->state = HTTPD_LINGER;
				if (c->deadline > now + HTTPD_LINGER_MS)
					c->deadline = now + HTTPD_LINGER_MS;
				return;
			}
			c->state = HTTPD_READ;
			c->deadline = now + h->o.timeout_ms;
			c->since = now;
		}
		if (c->state != HTTPD_READ || !httpd_conn_request(h, c))
			return;
	}
}

/* Reads from c (READ: into its buffer; LINGER: thrown away). */
static void
httpd_conn_read(struct httpd *h, struct httpd_conn *c)
{
	char sink[4096];
	ssize_t n;
	int k = 0;

	if (c->state == HTTPD_LINGER) {
		/* a bounded gulp: a fast sender must not hold the thread */
		do
			n = recv(c->fd, sink, sizeof(sink), 0);
		while (n > 0 && ++k < 16);
		if (n > 0)
			return;
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR))
			httpd_conn_close(h, c);
		return;
	}
	/* the parser refuses a head at HTTPD_HEAD_MAX + 1 bytes */
	n = recv(c->fd, c->in + c->in_len, HTTPD_HEAD_MAX + 1 - c->in_len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
	    errno == EINTR))
		return;
	if (n <= 0) {
		httpd_conn_close(h, c);
		return;
	}
	c->in_len += (size_t)n;
	httpd_conn_run(h, c);
}

/* The idle connection (between requests, nothing buffered) idle the
 * longest, or NULL. */
static struct httpd_conn *
httpd_idlest(struct httpd *h)
{
	struct httpd_conn *best = NULL;

	for (unsigned i = 0; i < h->o.max_conns; i++) {
		struct httpd_conn *c = &h->conns[i];

		if (c->state == HTTPD_READ && c->in_len == 0 &&
		    (best == NULL || c->since < best->since))
			best = c;
	}
	return best;
}

/*
 * Accepts what is waiting. At the connection cap, the connection idle the
 * longest makes room (an idle client cannot keep a scraper out); when none
 * is idle, the rest wait in the backlog until a slot frees or times out.
 */
static void
httpd_accept(struct httpd *h)
{
	for (unsigned k = 0; k < h->o.max_conns; k++) {
		struct httpd_conn *c = NULL;
		int64_t now;
		int fd, one = 1;

		if (h->nconns == h->o.max_conns && httpd_idlest(h) == NULL)
			return;
		fd = accept4(h->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM)
				h->accept_after = now_ms() +
				    HTTPD_PAUSE_MS;
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return;
		}
		/* only now that someone is there: make room */
		if (h->nconns == h->o.max_conns) {
			c = httpd_idlest(h);
			httpd_conn_close(h, c);
		}
		for (unsigned i = 0; c == NULL && i < h->o.max_conns; i++)
			if (h->conns[i].state == HTTPD_FREE)
				c = &h->conns[i];
		c->in = malloc(HTTPD_HEAD_MAX + 1);
		if (c->in == NULL) {
			close(fd);
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		now = now_ms();
		c->fd = fd;
		c->state = HTTPD_READ;
		c->deadline = now + h->o.timeout_ms;
		c->since = now;
		h->nconns++;
	}
}

/*
 * The server thread: closes connections past their deadline, polls the
 * rest (and the listener, unless full of busy connections or paused after
 * EMFILE), and moves each ready connection on, until woken to stop.
 */
static void *
httpd_main(void *arg)
{
	struct httpd *h = arg;
	struct pollfd *pfd;
	unsigned *slot;

	pfd = calloc(h->o.max_conns + 2, sizeof(*pfd));
	slot = calloc(h->o.max_conns + 2, sizeof(*slot));
	if (pfd == NULL || slot == NULL)
		goto out;
	for (;;) {
		int64_t now = now_ms(), next = now + 1000;
		nfds_t n = 0;
		int r;

		for (unsigned i = 0; i < h->o.max_conns; i++) {
			struct httpd_conn *c = &h->conns[i];

			if (c->state == HTTPD_FREE)
				continue;
			if (c->deadline <= now) {
				httpd_conn_close(h, c);
				continue;
			}
			if (c->deadline < next)
				next = c->deadline;
			pfd[n].fd = c->fd;
			pfd[n].events = c->state == HTTPD_WRITE ? POLLOUT :
			    POLLIN;
			slot[n++] = i;
		}
		pfd[n].fd = h->wake_fd;
		pfd[n++].events = POLLIN;
		if (now < h->accept_after) {
			if (h->accept_after < next)
				next = h->accept_after;
		} else if (h->nconns < h->o.max_conns || httpd_idlest(h)) {
			pfd[n].fd = h->lfd;
			pfd[n++].events = POLLIN;
		}
		r = poll(pfd, n, (int)(next - now));
		if (r < 0 && errno != EINTR)
			break;
		if (r <= 0)
			continue;
		for (nfds_t i = 0; i < n; i++) {
			if (pfd[i].revents == 0)
				continue;
			if (pfd[i].fd == h->wake_fd)
				goto out;
			if (pfd[i].fd == h->lfd) {
				httpd_accept(h);
				continue;
			}
			struct httpd_conn *c = &h->conns[slot[i]];

			if (c->state == HTTPD_WRITE)
				httpd_conn_run(h, c);
			else
				httpd_conn_read(h, c);
		}
	}
out:
	free(pfd);
	free(slot);
	return NULL;
}

/*
 * A listening socket on host:port (see httpd_opts). Returns the fd or -1
 * with err set.
 */
static int
httpd_listen(const char *host, unsigned port, char *err, size_t errlen)
{
	struct sockaddr_in6 a6;
	struct sockaddr_in a4;
	struct sockaddr *sa;
	socklen_t salen;
	int fd = -1, off = 0, one = 1, family, e;

	memset(&a6, 0, sizeof(a6));
	memset(&a4, 0, sizeof(a4));
	a6.sin6_family = AF_INET6;
	a6.sin6_port = htons((uint16_t)port);
	a4.sin_family = AF_INET;
	a4.sin_port = htons((uint16_t)port);
	if (host == NULL) {
		a6.sin6_addr = in6addr_any;
		a4.sin_addr.s_addr = htonl(INADDR_ANY);
		family = AF_INET6;
	} else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
		family = AF_INET6;
	} else if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
		family = AF_INET;
	} else {
		errbuf_set(err, errlen, "bad address %s", host);
		return -1;
	}
	for (;;) {
		sa = family == AF_INET6 ? (struct sockaddr *)&a6 :
		    (struct sockaddr *)&a4;
		salen = family == AF_INET6 ? sizeof(a6) : sizeof(a4);
		fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
		if (fd >= 0) {
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
			    sizeof(one));
			if (family == AF_INET6 && host == NULL)
				setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off,
				    sizeof(off));
			if (bind(fd, sa, salen) == 0 &&
			    listen(fd, HTTPD_BACKLOG) == 0)
				return fd;
			e = errno;
			close(fd);
			errno = e;
			fd = -1;
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

	if (o->handler == NULL || o->max_conns == 0 || o->timeout_ms == 0 ||
	    o->port > 65535) {
		errbuf_set(err, errlen, "bad httpd options");
		return NULL;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL)
		goto oom;
	h->o = *o;
	h->lfd = h->wake_fd = -1;
	h->conns = calloc(o->max_conns, sizeof(*h->conns));
	if (h->conns == NULL)
		goto oom;
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
oom:
	errbuf_set(err, errlen, "out of memory");
fail:
	if (h != NULL) {
		if (h->lfd >= 0)
			close(h->lfd);
		if (h->wake_fd >= 0)
			close(h->wake_fd);
		free(h->conns);
		free(h);
	}
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
		httpd_conn_close(h, &h->conns[i]);
	close(h->lfd);
	close(h->wake_fd);
	free(h->conns);
	free(h);
}
