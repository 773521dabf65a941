/*
 * test_httpd.c - the request-head parser and response-head formatter
 * alone, then the server on loopback: keep-alive, close, pipelining, HEAD,
 * refusals, the head cap, timeouts, the connection cap, slow readers and
 * unread bodies.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "httpd.h"

/* ---- parser ------------------------------------------------------------- */

static int
parse(const char *s, struct httpd_req *r)
{
	return httpd_parse(s, strlen(s), HTTPD_HEAD_MAX, r);
}

Test(parse, simple_get)
{
	const char *s = "GET /metrics HTTP/1.1\r\nHost: x\r\n"
	    "User-Agent: t\r\n\r\n";
	struct httpd_req r;

	cr_assert_eq(parse(s, &r), (int)strlen(s));
	cr_assert_str_eq(r.method, "GET");
	cr_assert_str_eq(r.path, "/metrics");
	cr_assert_eq(r.minor, 1);
	cr_assert(r.keep_alive);
	cr_assert_not(r.has_body);
}

Test(parse, every_prefix_is_incomplete)
{
	const char *s = "\r\nHEAD /a?b HTTP/1.0\r\nHost: x\r\n"
	    "Connection: keep-alive\r\n\r\n";
	struct httpd_req r;

	for (size_t n = 0; n < strlen(s); n++)
		cr_assert_eq(httpd_parse(s, n, HTTPD_HEAD_MAX, &r), 0,
		    "prefix of %zu bytes", n);
	cr_assert_eq(parse(s, &r), (int)strlen(s));
	cr_assert_str_eq(r.method, "HEAD");
	cr_assert_str_eq(r.path, "/a");
	cr_assert_eq(r.minor, 0);
	cr_assert(r.keep_alive);
}

Test(parse, pipelined_returns_the_first)
{
	const char *a = "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n";
	char s[256];
	struct httpd_req r;

	snprintf(s, sizeof(s), "%sGET /2 HTTP/1.1\r\nHost: x\r\n\r\n", a);
	cr_assert_eq(parse(s, &r), (int)strlen(a));
	cr_assert_str_eq(r.path, "/1");
}

Test(parse, bare_lf_lines)
{
	const char *s = "GET / HTTP/1.1\nHost: x\n\n";
	struct httpd_req r;

	cr_assert_eq(parse(s, &r), (int)strlen(s));
	cr_assert_str_eq(r.path, "/");
}

Test(parse, target_forms)
{
	struct httpd_req r;

	cr_assert_gt(parse("GET http://h:9/metrics?x HTTP/1.1\r\nHost: h\r\n"
	    "\r\n", &r), 0);
	cr_assert_str_eq(r.path, "/metrics");
	cr_assert_gt(parse("GET HTTP://h HTTP/1.1\r\nHost: h\r\n\r\n", &r), 0);
	cr_assert_str_eq(r.path, "/");
	cr_assert_gt(parse("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", &r), 0);
	cr_assert_str_eq(r.path, "*");
	cr_assert_gt(parse("GET /a#f HTTP/1.1\r\nHost: h\r\n\r\n", &r), 0);
	cr_assert_str_eq(r.path, "/a");
	cr_assert_eq(parse("GET metrics HTTP/1.1\r\nHost: h\r\n\r\n", &r),
	    -400);
	cr_assert_eq(parse("GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", &r),
	    -400);
	cr_assert_eq(parse("GET http:/// HTTP/1.1\r\nHost: h\r\n\r\n", &r),
	    -400);
}

Test(parse, connection_tokens)
{
	struct httpd_req r;

	cr_assert_gt(parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, "
	    "CLOSE \r\n\r\n", &r), 0);
	cr_assert_not(r.keep_alive);
	cr_assert_gt(parse("GET / HTTP/1.0\r\n\r\n", &r), 0);
	cr_assert_not(r.keep_alive);
	cr_assert_gt(parse("GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n",
	    &r), 0);
	cr_assert(r.keep_alive);
	cr_assert_gt(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n"
	    "Connection: close\r\n\r\n", &r), 0);
	cr_assert_not(r.keep_alive);
	/* a later minor version is served as 1.1 */
	cr_assert_gt(parse("GET / HTTP/1.7\r\nHost: x\r\n\r\n", &r), 0);
	cr_assert_eq(r.minor, 1);
	cr_assert(r.keep_alive);
}

Test(parse, host_rules)
{
	struct httpd_req r;

	cr_assert_eq(parse("GET / HTTP/1.1\r\n\r\n", &r), -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", &r),
	    -400);
	cr_assert_eq(parse("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", &r),
	    -400);
	cr_assert_gt(parse("GET / HTTP/1.0\r\n\r\n", &r), 0);
}

Test(parse, bodies)
{
	struct httpd_req r;

	cr_assert_gt(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3"
	    "\r\n\r\n", &r), 0);
	cr_assert(r.has_body);
	cr_assert_gt(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0"
	    "\r\n\r\n", &r), 0);
	cr_assert_not(r.has_body);
	cr_assert_gt(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
	    "chunked\r\n\r\n", &r), 0);
	cr_assert(r.has_body);
	cr_assert_gt(parse("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
	    "Content-Length: 2\r\n\r\n", &r), 0);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
	    "Content-Length: 3\r\n\r\n", &r), -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1"
	    "\r\n\r\n", &r), -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: a\r\nContent-Length:"
	    "\r\n\r\n", &r), -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: "
	    "99999999999999999999999\r\n\r\n", &r), -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", &r), -400);
}

Test(parse, malformed_heads)
{
	static const char *const bad[] = {
		"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
		"GET / http/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1x\r\nHost: a\r\n\r\n",
		"GET /\r\nHost: a\r\n\r\n",
		"GET\r\n\r\n",
		" GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\001b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n",
		"hello world\r\n\r\n",
	};
	struct httpd_req r;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(parse(bad[i], &r), -400, "%s", bad[i]);
}

Test(parse, garbage_refused_before_the_head_ends)
{
	static const char tls[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03";
	struct httpd_req r;

	cr_assert_eq(httpd_parse(tls, sizeof(tls) - 1, HTTPD_HEAD_MAX, &r),
	    -400);
	cr_assert_eq(parse("GET /\001", &r), -400);
	cr_assert_eq(parse("GET / XTTP", &r), -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: a\r\n", &r), 0);
	cr_assert_eq(parse("GET / HTTP/1.1\r\n", &r), 0);
}

Test(parse, status_refusals)
{
	char s[HTTPD_HEAD_MAX + 64];
	struct httpd_req r;

	cr_assert_eq(parse("GET / HTTP/2.0\r\nHost: a\r\n\r\n", &r), -505);
	cr_assert_eq(parse("ABCDEFGHIJKLMNOPQRSTUVWXYZ / HTTP/1.1\r\n\r\n",
	    &r), -501);
	memset(s, 0, sizeof(s));
	memcpy(s, "GET /", 5);
	memset(s + 5, 'a', HTTPD_PATH_MAX);
	strcat(s, " HTTP/1.1\r\nHost: a\r\n\r\n");
	cr_assert_eq(parse(s, &r), -414);
}

Test(parse, head_cap)
{
	char s[HTTPD_HEAD_MAX + 64];
	const char *l = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
	size_t n = strlen(l);
	struct httpd_req r;

	memcpy(s, l, n);
	memset(s + n, 'v', sizeof(s) - n);
	/* no end yet: waits until the cap, then refuses */
	cr_assert_eq(httpd_parse(s, HTTPD_HEAD_MAX, HTTPD_HEAD_MAX, &r), 0);
	cr_assert_eq(httpd_parse(s, HTTPD_HEAD_MAX + 1, HTTPD_HEAD_MAX, &r),
	    -431);
	/* a head that ends one byte past the cap */
	memcpy(s + HTTPD_HEAD_MAX + 1 - 4, "\r\n\r\n", 4);
	cr_assert_eq(httpd_parse(s, HTTPD_HEAD_MAX + 1, HTTPD_HEAD_MAX, &r),
	    -431);
	/* and one that ends right at it */
	cr_assert_eq(httpd_parse(s, HTTPD_HEAD_MAX + 1, HTTPD_HEAD_MAX + 1,
	    &r), HTTPD_HEAD_MAX + 1);
}

/* ---- formatting --------------------------------------------------------- */

Test(format, full_head)
{
	struct httpd_reply rep = { .status = 405, .type = "text/plain",
	    .allow = "GET, HEAD", .len = 19 };
	char out[512];
	size_t n;

	n = httpd_format_head(out, sizeof(out), &rep, false, 1, 0);
	cr_assert_str_eq(out, "HTTP/1.1 405 Method Not Allowed\r\n"
	    "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
	    "Content-Type: text/plain\r\nContent-Length: 19\r\n"
	    "Allow: GET, HEAD\r\nConnection: close\r\n\r\n");
	cr_assert_eq(n, strlen(out));
}

Test(format, connection_header)
{
	struct httpd_reply rep = { .status = 200 };
	char out[512];

	cr_assert_gt(httpd_format_head(out, sizeof(out), &rep, true, 1,
	    1795000000), 0);
	cr_assert_str_eq(out, "HTTP/1.1 200 OK\r\n"
	    "Date: Wed, 18 Nov 2026 11:06:40 GMT\r\n"
	    "Content-Length: 0\r\n\r\n");
	cr_assert_gt(httpd_format_head(out, sizeof(out), &rep, true, 0, 0), 0);
	cr_assert(strstr(out, "\r\nConnection: keep-alive\r\n") != NULL);
}

Test(format, too_small)
{
	struct httpd_reply rep = { .status = 200, .type = "text/plain" };
	char out[512];
	size_t n;

	n = httpd_format_head(out, sizeof(out), &rep, true, 1, 0);
	cr_assert_gt(n, 0);
	cr_assert_eq(httpd_format_head(out, n, &rep, true, 1, 0), 0);
	cr_assert_eq(httpd_format_head(out, n + 1, &rep, true, 1, 0), n);
}

Test(format, reasons)
{
	cr_assert_str_eq(httpd_reason(404), "Not Found");
	cr_assert_str_eq(httpd_reason(431), "Request Header Fields Too Large");
	cr_assert_str_eq(httpd_reason(299), "Unknown");
}

/* ---- server ------------------------------------------------------------- */

#define BIG_LEN (8u << 20)	/* /big: more than socket buffers hold */

static atomic_int calls;	/* handler calls */
static struct httpd *srv;	/* the server under test */

/* "/status/N" answers N; "/big" 8 MiB; anything else echoes method
 * and path. */
static void
handler(void *arg, const struct httpd_req *req, struct httpd_reply *rep)
{
	atomic_fetch_add(&calls, 1);
	if (strncmp(req->path, "/status/", 8) == 0) {
		rep->status = atoi(req->path + 8);
		return;
	}
	rep->status = 200;
	rep->type = "text/plain";
	if (strcmp(req->path, "/big") == 0) {
		rep->body = malloc(BIG_LEN);
		cr_assert_not_null(rep->body);
		memset(rep->body, 'b', BIG_LEN);
		rep->len = BIG_LEN;
		return;
	}
	rep->len = (size_t)asprintf(&rep->body, "%s %s\n", req->method,
	    req->path);
}

static void
start(unsigned max_conns, unsigned timeout_ms)
{
	struct httpd_opts o = { .host = "127.0.0.1", .max_conns = max_conns,
	    .timeout_ms = timeout_ms, .handler = handler };
	char err[256] = "";

	atomic_store(&calls, 0);
	srv = httpd_start(&o, err, sizeof(err));
	cr_assert_not_null(srv, "%s", err);
	cr_assert_gt(httpd_port(srv), 0);
}

static void
stop(void)
{
	httpd_stop(srv);
	srv = NULL;
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A connection to the server; rcvbuf > 0 fixes the receive buffer. */
static int
dial_rcvbuf(int rcvbuf)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	if (rcvbuf > 0)
		cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
		    sizeof(rcvbuf)), 0);
	a.sin_port = htons((uint16_t)httpd_port(srv));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0,
	    "connect: %s", strerror(errno));
	return fd;
}

static int
dial(void)
{
	return dial_rcvbuf(0);
}

static void
send_str(int fd, const char *s)
{
	size_t n = strlen(s);

	while (n > 0) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);

		cr_assert_gt(w, 0, "send: %s", strerror(errno));
		s += w;
		n -= (size_t)w;
	}
}

static int read_err;	/* errno of the last failed recv (a reset) */

/* Reads into buf (cap bytes) until the peer closes, want bytes are there,
 * or ms pass. Returns the byte count; *eof tells whether it closed (or
 * reset: read_err). */
static size_t
read_some(int fd, char *buf, size_t cap, size_t want, int ms, bool *eof)
{
	int64_t end = now_ms() + ms;
	size_t n = 0;

	*eof = false;
	while (n < want && n < cap) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = end - now_ms();
		ssize_t r;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		r = recv(fd, buf + n, cap - n, 0);
		if (r < 0)
			read_err = errno;
		if (r <= 0) {
			*eof = true;
			break;
		}
		n += (size_t)r;
	}
	return n;
}

/* One answer from fd: status, headers (NUL-terminated copy in head),
 * body (NUL-terminated in body). Fails the test after 5 s. */
struct answer {
	int status;
	char head[1024];
	char body[4096];
	size_t body_len;
};

static void
read_answer(int fd, struct answer *a, bool head_only)
{
	size_t n = 0, cl;
	char *p;
	bool eof;

	/* byte by byte: what follows the answer stays in the socket */
	memset(a, 0, sizeof(*a));
	while (n < 4 || memcmp(a->head + n - 4, "\r\n\r\n", 4) != 0) {
		cr_assert_lt(n, sizeof(a->head) - 1, "no head in %zu bytes", n);
		cr_assert_eq(read_some(fd, a->head + n, 1, 1, 5000, &eof), 1,
		    "no whole head (eof %d): %s", eof, a->head);
		n++;
	}
	cr_assert_eq(sscanf(a->head, "HTTP/1.1 %d ", &a->status), 1, "%s",
	    a->head);
	p = strstr(a->head, "Content-Length: ");
	cr_assert_not_null(p);
	cl = strtoul(p + 16, NULL, 10);
	if (head_only)
		cl = 0;
	cr_assert_lt(cl, sizeof(a->body));
	while (a->body_len < cl) {
		size_t r = read_some(fd, a->body + a->body_len,
		    cl - a->body_len, cl - a->body_len, 5000, &eof);

		cr_assert_gt(r, 0, "body cut short");
		a->body_len += r;
	}
}

/* True if the server closed fd within ms (EOF, after any bytes), without
 * a reset. */
static bool
closed_within(int fd, int ms)
{
	char buf[4096];
	int64_t end = now_ms() + ms;
	bool eof = false;

	read_err = 0;
	while (!eof && now_ms() < end)
		read_some(fd, buf, sizeof(buf), sizeof(buf),
		    (int)(end - now_ms()), &eof);
	return eof && read_err == 0;
}

TestSuite(server, .fini = stop);

Test(server, keep_alive_two_requests_one_connection)
{
	struct answer a;
	int fd;

	start(4, 5000);
	fd = dial();
	send_str(fd, "GET /one HTTP/1.1\r\nHost: t\r\n\r\n");
	read_answer(fd, &a, false);
	cr_assert_eq(a.status, 200);
	cr_assert_str_eq(a.body, "GET /one\n");
	cr_assert(strstr(a.head, "Content-Type: text/plain\r\n") != NULL);
	cr_assert(strstr(a.head, "Connection:") == NULL);
	send_str(fd, "GET /two HTTP/1.1\r\nHost: t\r\n\r\n");
	read_answer(fd, &a, false);
	cr_assert_str_eq(a.body, "GET /two\n");
	cr_assert_eq(atomic_load(&calls), 2);
	close(fd);
}

Test(server, connection_close_and_http10)
{
	struct answer a;
	int fd;

	start(4, 5000);
	fd = dial();
	send_str(fd, "GET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
	read_answer(fd, &a, false);
	cr_assert_str_eq(a.body, "GET /c\n");
	cr_assert(strstr(a.head, "Connection: close\r\n") != NULL);
	cr_assert(closed_within(fd, 2000));
	close(fd);
	fd = dial();
	send_str(fd, "GET /d HTTP/1.0\r\n\r\n");
	read_answer(fd, &a, false);
	cr_assert_str_eq(a.body, "GET /d\n");
	cr_assert(closed_within(fd, 2000));
	close(fd);
	/* HTTP/1.0 asking for keep-alive gets it */
	fd = dial();
	send_str(fd, "GET /e HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	read_answer(fd, &a, false);
	cr_assert(strstr(a.head, "Connection: keep-alive\r\n") != NULL);
	send_str(fd, "GET /f HTTP/1.0\r\n\r\n");
	read_answer(fd, &a, false);
	cr_assert_str_eq(a.body, "GET /f\n");
	cr_assert(closed_within(fd, 2000));
	close(fd);
}

Test(server, head_sends_no_body)
{
	struct answer a;
	int fd;

	start(4, 5000);
	fd = dial();
	send_str(fd, "HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n");
	read_answer(fd, &a, true);
	cr_assert_eq(a.status, 200);
	cr_assert(strstr(a.head, "Content-Length: 8\r\n") != NULL);
	/* the next answer follows the head directly */
	send_str(fd, "GET /g HTTP/1.1\r\nHost: t\r\n\r\n");
	read_answer(fd, &a, false);
	cr_assert_str_eq(a.body, "GET /g\n");
	close(fd);
}

Test(server, pipelined_answers_in_order)
{
	struct answer a;
	int fd;

	start(4, 5000);
	fd = dial();
	send_str(fd, "GET /1 HTTP/1.1\r\nHost: t\r\n\r\n"
	    "GET /2 HTTP/1.1\r\nHost: t\r\n\r\n"
	    "GET /3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
	read_answer(fd, &a, false);
	cr_assert_str_eq(a.body, "GET /1\n");
	read_answer(fd, &a, false);
	cr_assert_str_eq(a.body, "GET /2\n");
	read_answer(fd, &a, false);
	cr_assert_str_eq(a.body, "GET /3\n");
	cr_assert(closed_within(fd, 2000));
	close(fd);
}

Test(server, refusals_close)
{
	char big[HTTPD_HEAD_MAX + 200];
	struct answer a;
	int fd;

	start(4, 5000);
	fd = dial();
	send_str(fd, "\x16\x03\x01 garbage");
	read_answer(fd, &a, false);
	cr_assert_eq(a.status, 400);
	cr_assert(strstr(a.head, "Connection: close\r\n") != NULL);
	cr_assert(closed_within(fd, 2000));
	close(fd);

	fd = dial();
	snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: t\r\nX: ");
	memset(big + strlen(big), 'x', HTTPD_HEAD_MAX);
	big[sizeof(big) - 1] = '\0';
	send_str(fd, big);
	read_answer(fd, &a, false);
	cr_assert_eq(a.status, 431);
	cr_assert(closed_within(fd, 2000));
	close(fd);

	fd = dial();
	send_str(fd, "GET / HTTP/3.0\r\nHost: t\r\n\r\n");
	read_answer(fd, &a, false);
	cr_assert_eq(a.status, 505);
	close(fd);
	cr_assert_eq(atomic_load(&calls), 0);
}

Test(server, bad_status_from_handler_is_500)
{
	struct answer a;
	int fd;

	start(4, 5000);
	fd = dial();
	send_str(fd, "GET /status/0 HTTP/1.1\r\nHost: t\r\n\r\n");
	read_answer(fd, &a, false);
	cr_assert_eq(a.status, 500);
	close(fd);
	fd = dial();
	send_str(fd, "GET /status/404 HTTP/1.1\r\nHost: t\r\n\r\n");
	read_answer(fd, &a, false);
	cr_assert_eq(a.status, 404);
	cr_assert_eq(a.body_len, 0);
	close(fd);
}

Test(server, body_answered_then_closed_without_reset)
{
	static char req[1 << 20];
	struct answer a;
	int n, fd;

	start(4, 5000);
	fd = dial();
	n = snprintf(req, sizeof(req), "POST /p HTTP/1.1\r\nHost: t\r\n"
	    "Content-Length: %d\r\n\r\n", 600000);
	memset(req + n, 'z', 600000);
	req[n + 600000] = '\0';
	/* the body goes unread: the server answers after the head and
	 * closes, draining what we sent so that the answer survives */
	send_str(fd, req);
	read_answer(fd, &a, false);
	cr_assert_eq(a.status, 200);
	cr_assert_str_eq(a.body, "POST /p\n");
	cr_assert(strstr(a.head, "Connection: close\r\n") != NULL);
	cr_assert(closed_within(fd, 3000));
	close(fd);
}

Test(server, idle_and_slow_clients_time_out)
{
	int64_t t0, cut = -1;
	int idle, slow;
	char c;

	start(4, 300);
	idle = dial();
	slow = dial();
	t0 = now_ms();
	/* a byte every 50 ms of a header that never ends: progress does not
	 * extend the deadline, the connection goes at 300 ms */
	send_str(slow, "GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ");
	for (int i = 0; i < 60 && cut < 0; i++) {
		if (recv(slow, &c, 1, MSG_DONTWAIT) == 0 ||
		    send(slow, "a", 1, MSG_NOSIGNAL) != 1)
			cut = now_ms() - t0;
		usleep(50 * 1000);
	}
	cr_assert_geq(cut, 250, "closed too early: %lld ms", (long long)cut);
	cr_assert_lt(cut, 1500, "still open after %lld ms", (long long)cut);
	cr_assert(closed_within(idle, 2000));
	cr_assert_lt(now_ms() - t0, 2500);
	close(idle);
	close(slow);
}

Test(server, idle_connections_make_room_at_the_cap)
{
	struct answer a;
	int i1, i2, fd;
	int64_t t0;

	start(2, 10000);
	i1 = dial();
	i2 = dial();
	usleep(100 * 1000);
	t0 = now_ms();
	fd = dial();
	send_str(fd, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
	read_answer(fd, &a, false);
	cr_assert_str_eq(a.body, "GET /x\n");
	cr_assert_lt(now_ms() - t0, 1000);
	/* the one idle the longest went */
	cr_assert(closed_within(i1, 1000));
	close(i1);
	close(i2);
	close(fd);
}

Test(server, no_room_made_below_the_cap)
{
	struct answer a;
	int i1, fd;

	start(2, 10000);
	i1 = dial();
	usleep(100 * 1000);
	fd = dial();
	send_str(fd, "GET /y HTTP/1.1\r\nHost: t\r\n\r\n");
	read_answer(fd, &a, false);
	cr_assert_str_eq(a.body, "GET /y\n");
	/* two connections fit two slots: the idle one stays */
	cr_assert_not(closed_within(i1, 300));
	send_str(i1, "GET /z HTTP/1.1\r\nHost: t\r\n\r\n");
	read_answer(i1, &a, false);
	cr_assert_str_eq(a.body, "GET /z\n");
	close(i1);
	close(fd);
}

Test(server, busy_connections_at_the_cap_wait_for_the_timeout)
{
	struct answer a;
	int b1, b2, fd;
	int64_t t0;

	start(2, 500);
	b1 = dial();
	b2 = dial();
	send_str(b1, "GET /partial HTTP/1.1\r\n");
	send_str(b2, "GET /partial HTTP/1.1\r\n");
	usleep(100 * 1000);
	t0 = now_ms();
	fd = dial();	/* waits in the backlog */
	send_str(fd, "GET /late HTTP/1.1\r\nHost: t\r\n\r\n");
	read_answer(fd, &a, false);
	cr_assert_str_eq(a.body, "GET /late\n");
	cr_assert_geq(now_ms() - t0, 250, "served before a slot freed");
	cr_assert_lt(now_ms() - t0, 3000);
	close(b1);
	close(b2);
	close(fd);
}

Test(server, slow_reader_does_not_hold_others)
{
	static char sink[BIG_LEN];
	struct answer a;
	int slow, fd;
	int64_t t0;
	size_t got;
	bool eof;

	start(4, 1000);
	/* a small receive buffer: the 8 MiB answer cannot all be sent */
	slow = dial_rcvbuf(16384);
	send_str(slow, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
	usleep(200 * 1000);
	t0 = now_ms();
	fd = dial();
	send_str(fd, "GET /quick HTTP/1.1\r\nHost: t\r\n\r\n");
	read_answer(fd, &a, false);
	cr_assert_str_eq(a.body, "GET /quick\n");
	cr_assert_lt(now_ms() - t0, 800);
	/* the reader that does not read is cut off at its deadline: it
	 * gets what was in the buffers, then the end */
	usleep(1500 * 1000);
	got = read_some(slow, sink, sizeof(sink), sizeof(sink), 5000, &eof);
	cr_assert(eof);
	cr_assert_gt(got, 0);
	cr_assert_lt(got, BIG_LEN, "the whole answer went out");
	close(slow);
	close(fd);
}

Test(server, stop_with_open_connections)
{
	int fd1, fd2;

	start(4, 60000);
	fd1 = dial();
	fd2 = dial();
	send_str(fd2, "GET /partial");
	usleep(50 * 1000);
	stop();
	cr_assert(closed_within(fd1, 1000));
	cr_assert(closed_within(fd2, 1000));
	close(fd1);
	close(fd2);
}

Test(start, ipv6_loopback_and_taken_port)
{
	struct httpd_opts o = { .host = "::1", .max_conns = 1,
	    .timeout_ms = 1000, .handler = handler };
	struct sockaddr_in6 a = { .sin6_family = AF_INET6 };
	struct httpd *h, *h2;
	char err[256] = "";
	int fd;

	h = httpd_start(&o, err, sizeof(err));
	if (h == NULL) {
		/* a host without IPv6: the error says why */
		cr_assert(strstr(err, "::1") != NULL, "%s", err);
		return;
	}
	fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	a.sin6_port = htons((uint16_t)httpd_port(h));
	a.sin6_addr = in6addr_loopback;
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	close(fd);
	o.port = httpd_port(h);
	h2 = httpd_start(&o, err, sizeof(err));
	cr_assert_null(h2);
	cr_assert(strstr(err, "in use") != NULL, "%s", err);
	httpd_stop(h);
}

Test(start, bad_options)
{
	struct httpd_opts o = { .host = "127.0.0.1", .max_conns = 1,
	    .timeout_ms = 1000, .handler = handler };
	char err[256] = "";

	o.host = "not-an-address";
	cr_assert_null(httpd_start(&o, err, sizeof(err)));
	cr_assert(strstr(err, "bad address") != NULL, "%s", err);
	o.host = "127.0.0.1";
	o.max_conns = 0;
	cr_assert_null(httpd_start(&o, err, sizeof(err)));
	o.max_conns = 1;
	o.handler = NULL;
	cr_assert_null(httpd_start(&o, err, sizeof(err)));
	httpd_stop(NULL);
}
