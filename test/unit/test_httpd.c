/*
 * test_httpd.c - the request check alone, then the server on loopback:
 * one answer per connection then close, HEAD, refusals, the head cap,
 * the deadline, the connection cap, slow readers and unread bodies.
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

/* ---- the request check -------------------------------------------------- */

static int
parse(const char *s, bool *head_only)
{
	return httpd_parse(s, strlen(s), "/metrics", head_only);
}

Test(parse, get_and_head_of_the_page)
{
	static const char *const ok[] = {
		"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /metrics?name[]=up HTTP/1.1\r\nhOsT: x\r\nA: b\r\n\r\n",
		"GET /metrics HTTP/1.0\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /next",
	};
	bool head;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		cr_assert_eq(parse(ok[i], &head), 200, "%s", ok[i]);
		cr_assert_not(head);
	}
	cr_assert_eq(parse("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
	    &head), 200);
	cr_assert(head);
}

Test(parse, every_prefix_is_incomplete)
{
	const char *s = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
	bool head;

	for (size_t n = 0; n < strlen(s); n++)
		cr_assert_eq(httpd_parse(s, n, "/metrics", &head), 0,
		    "prefix of %zu bytes", n);
}

Test(parse, refusals)
{
	static const struct {
		const char *req;
		int status;
	} cases[] = {
		{ "\x16\x03\x01\x00\xa5\x01", 400 },	/* TLS, at once */
		{ "get /metrics", 400 },		/* not a method */
		{ "GET /metrics HTTP/1.1\r\n\r\n", 400 },	/* no Host */
		{ "GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400 },
		{ "GET /metrics\r\nHost: x\r\n\r\n", 400 },
		{ "GET  /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
		{ "GET /metrics HTTP/1.1 \r\nHost: x\r\n\r\n", 400 },
		{ "GET /metrics HTTP/1.x\r\nHost: x\r\n\r\n", 400 },
		{ "GET /met\trics HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
		{ "\r\n\r\n", 400 },
		{ "GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 505 },
		{ "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 405 },
		{ "DELETE /other HTTP/1.1\r\nHost: x\r\n\r\n", 405 },
		{ "GET /metricsx HTTP/1.1\r\nHost: x\r\n\r\n", 404 },
		{ "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 404 },
		{ "GET * HTTP/1.1\r\nHost: x\r\n\r\n", 404 },
	};
	bool head;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(parse(cases[i].req, &head), cases[i].status,
		    "%s", cases[i].req);
}

Test(parse, head_cap)
{
	static char buf[HTTPD_HEAD_MAX + 100];
	const char *start = "GET /metrics HTTP/1.1\r\nHost: x\r\nX: ";
	size_t n = strlen(start);
	bool head;

	/* a head of exactly HTTPD_HEAD_MAX bytes */
	memcpy(buf, start, n);
	memset(buf + n, 'a', HTTPD_HEAD_MAX - n - 4);
	memcpy(buf + HTTPD_HEAD_MAX - 4, "\r\n\r\n", 4);
	cr_assert_eq(httpd_parse(buf, HTTPD_HEAD_MAX, "/metrics", &head), 200);
	/* one byte more, complete or not */
	memset(buf + n, 'a', HTTPD_HEAD_MAX - n - 3);
	memcpy(buf + HTTPD_HEAD_MAX - 3, "\r\n\r\n", 4);
	cr_assert_eq(httpd_parse(buf, HTTPD_HEAD_MAX, "/metrics", &head), 0);
	cr_assert_eq(httpd_parse(buf, HTTPD_HEAD_MAX + 1, "/metrics", &head),
	    431);
	cr_assert_eq(httpd_parse(buf, HTTPD_HEAD_MAX + 4, "/metrics", &head),
	    431);
}

/* ---- the server --------------------------------------------------------- */

#define BIG_LEN (8u << 20)	/* a page more than socket buffers hold */

static atomic_int renders;	/* render calls */
static size_t page_len;		/* 0: "page\n"; else that many 'b' */
static bool render_fails;	/* render returns NULL */
static struct httpd *srv;	/* the server under test */

static char *
render(void *arg, size_t *len)
{
	char *p;

	(void)arg;
	atomic_fetch_add(&renders, 1);
	if (render_fails)
		return NULL;
	if (page_len == 0) {
		*len = 5;
		return strdup("page\n");
	}
	p = malloc(page_len);
	cr_assert_not_null(p);
	memset(p, 'b', page_len);
	*len = page_len;
	return p;
}

static void
start(unsigned max_conns, unsigned timeout_ms)
{
	struct httpd_opts o = { .host = "127.0.0.1", .max_conns = max_conns,
	    .timeout_ms = timeout_ms, .path = "/metrics",
	    .type = "text/plain", .render = render };
	char err[256] = "";

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
dial(int rcvbuf)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
	    .sin_port = htons((uint16_t)httpd_port(srv)),
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	if (rcvbuf > 0)
		cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
		    sizeof(rcvbuf)), 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0,
	    "connect: %s", strerror(errno));
	return fd;
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

/* Reads what fd receives into buf (cap bytes; NULL: thrown away) until
 * the server closes it. Returns the byte count, or -1 when it is not
 * closed within ms or is reset. */
static long
read_to_close(int fd, char *buf, size_t cap, int ms)
{
	static char sink[65536];
	int64_t end = now_ms() + ms;
	long n = 0;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int left = (int)(end - now_ms());
		ssize_t r;

		if (left <= 0 || poll(&p, 1, left) <= 0)
			return -1;
		r = buf != NULL ? recv(fd, buf + n, cap - (size_t)n, 0) :
		    recv(fd, sink, sizeof(sink), 0);
		if (r <= 0)
			return r == 0 ? n : -1;
		n += r;
	}
}

/* An answer, read until the server closed the connection. */
struct answer {
	int status;
	char all[16384];	/* head and body, NUL-terminated */
	const char *body;	/* in all, after the head */
};

/* Sends req on fd and reads the answer, which must end with a close
 * (not a reset) announced by "Connection: close". */
static void
talk_on(int fd, const char *req, struct answer *a)
{
	long n;

	send_str(fd, req);
	n = read_to_close(fd, a->all, sizeof(a->all) - 1, 5000);
	cr_assert_geq(n, 0, "no close within 5 s, or a reset");
	a->all[n] = '\0';
	cr_assert_eq(sscanf(a->all, "HTTP/1.1 %d ", &a->status), 1, "%s",
	    a->all);
	cr_assert(strstr(a->all, "\r\nConnection: close\r\n") != NULL, "%s",
	    a->all);
	a->body = strstr(a->all, "\r\n\r\n") + 4;
}

/* talk_on a fresh connection. */
static void
talk(const char *req, struct answer *a)
{
	int fd = dial(0);

	talk_on(fd, req, a);
	close(fd);
}

TestSuite(server, .fini = stop);

Test(server, get_and_head_answered_then_closed)
{
	struct answer a;

	start(4, 5000);
	talk("GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &a);
	cr_assert_eq(a.status, 200);
	cr_assert_str_eq(a.body, "page\n");
	cr_assert(strstr(a.all, "\r\nContent-Type: text/plain\r\n") != NULL);
	cr_assert(strstr(a.all, "\r\nContent-Length: 5\r\n") != NULL);
	cr_assert(strstr(a.all, " GMT\r\n") != NULL, "no Date: %s", a.all);
	/* a request to keep the connection gets one answer all the same */
	talk("GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &a);
	cr_assert_str_eq(a.body, "page\n");
	talk("HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &a);
	cr_assert_eq(a.status, 200);
	cr_assert(strstr(a.all, "\r\nContent-Length: 5\r\n") != NULL);
	cr_assert_str_eq(a.body, "");
	cr_assert_eq(atomic_load(&renders), 3);
}

Test(server, refusals_then_still_serving)
{
	char big[HTTPD_HEAD_MAX + 200];
	struct answer a;
	int64_t t0;

	start(4, 5000);
	t0 = now_ms();
	talk("\x16\x03\x01 garbage", &a);
	cr_assert_eq(a.status, 400);
	cr_assert_str_eq(a.body, "Bad Request\n");
	cr_assert_lt(now_ms() - t0, 2000, "refused at the deadline only");
	talk("DELETE /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &a);
	cr_assert_eq(a.status, 405);
	cr_assert(strstr(a.all, "\r\nAllow: GET, HEAD\r\n") != NULL);
	talk("GET /other HTTP/1.1\r\nHost: t\r\n\r\n", &a);
	cr_assert_eq(a.status, 404);
	talk("GET /metrics HTTP/3.0\r\nHost: t\r\n\r\n", &a);
	cr_assert_eq(a.status, 505);
	snprintf(big, sizeof(big), "GET /metrics HTTP/1.1\r\nHost: t\r\nX: ");
	memset(big + strlen(big), 'x', sizeof(big) - 1 - strlen(big));
	big[sizeof(big) - 1] = '\0';
	talk(big, &a);
	cr_assert_eq(a.status, 431);
	cr_assert_eq(atomic_load(&renders), 0);
	talk("GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &a);
	cr_assert_eq(a.status, 200);
}

Test(server, render_failure_is_500)
{
	struct answer a;

	render_fails = true;
	start(4, 5000);
	talk("GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &a);
	cr_assert_eq(a.status, 500);
}

Test(server, body_answered_then_closed_without_reset)
{
	static char req[1 << 20];
	struct answer a;
	int n;

	start(4, 5000);
	n = snprintf(req, sizeof(req), "POST /metrics HTTP/1.1\r\nHost: t\r\n"
	    "Content-Length: %d\r\n\r\n", 600000);
	memset(req + n, 'z', 600000);
	req[n + 600000] = '\0';
	/* the body goes unread: the server answers after the head and
	 * drains what we sent before it closes, so the answer survives */
	talk(req, &a);
	cr_assert_eq(a.status, 405);
}

Test(server, idle_and_slow_clients_closed_at_the_deadline)
{
	int64_t t0, cut = -1;
	int idle, slow;
	char c;

	start(4, 300);
	idle = dial(0);
	slow = dial(0);
	t0 = now_ms();
	/* a byte every 50 ms of a header that never ends: progress does not
	 * extend the deadline */
	send_str(slow, "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Slow: ");
	for (int i = 0; i < 60 && cut < 0; i++) {
		if (recv(slow, &c, 1, MSG_DONTWAIT) == 0 ||
		    send(slow, "a", 1, MSG_NOSIGNAL) != 1)
			cut = now_ms() - t0;
		usleep(50 * 1000);
	}
	cr_assert_geq(cut, 250, "closed too early: %lld ms", (long long)cut);
	cr_assert_lt(cut, 1500, "still open after %lld ms", (long long)cut);
	cr_assert_eq(read_to_close(idle, NULL, 0, 2000), 0);
	cr_assert_lt(now_ms() - t0, 2500);
	close(idle);
	close(slow);
}

Test(server, at_the_cap_the_oldest_waiting_makes_room)
{
	struct answer a;
	int i1, i2;
	int64_t t0;

	start(2, 10000);
	i1 = dial(0);
	usleep(50 * 1000);
	i2 = dial(0);
	send_str(i2, "GET /metrics HTTP/1.1\r\n");
	usleep(100 * 1000);
	t0 = now_ms();
	talk("GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &a);
	cr_assert_eq(a.status, 200);
	cr_assert_lt(now_ms() - t0, 1000);
	cr_assert_eq(read_to_close(i1, NULL, 0, 1000), 0, "oldest kept");
	talk_on(i2, "Host: t\r\n\r\n", &a);
	cr_assert_eq(a.status, 200);
	close(i1);
	close(i2);
}

Test(server, at_the_cap_answers_in_progress_are_kept)
{
	struct answer a;
	int b1, b2;
	int64_t t0;
	long got;

	page_len = BIG_LEN;
	start(2, 500);
	/* two readers that do not read: both answers stay in progress */
	b1 = dial(16384);
	b2 = dial(16384);
	send_str(b1, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
	send_str(b2, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
	usleep(100 * 1000);
	t0 = now_ms();
	talk("HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &a);
	cr_assert_eq(a.status, 200);
	cr_assert_geq(now_ms() - t0, 250, "served before a slot freed");
	cr_assert_lt(now_ms() - t0, 3000);
	/* each cut off at its deadline: what was in the buffers, then EOF */
	got = read_to_close(b1, NULL, 0, 5000);
	cr_assert(got > 0 && got < (long)BIG_LEN, "%ld bytes", got);
	close(b1);
	close(b2);
}

Test(server, slow_reader_does_not_hold_others)
{
	struct answer a;
	int64_t t0;
	int slow;

	page_len = BIG_LEN;
	start(4, 1000);
	slow = dial(16384);
	send_str(slow, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
	usleep(200 * 1000);
	t0 = now_ms();
	talk("HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &a);
	cr_assert_eq(a.status, 200);
	cr_assert_lt(now_ms() - t0, 800);
	close(slow);
}

Test(server, stop_with_open_connections)
{
	int fd1, fd2;

	start(4, 60000);
	fd1 = dial(0);
	fd2 = dial(0);
	send_str(fd2, "GET /metr");
	usleep(50 * 1000);
	stop();
	cr_assert_eq(read_to_close(fd1, NULL, 0, 1000), 0);
	cr_assert_eq(read_to_close(fd2, NULL, 0, 1000), 0);
	close(fd1);
	close(fd2);
}

Test(start, ipv6_loopback_and_taken_port)
{
	struct httpd_opts o = { .host = "::1", .max_conns = 1,
	    .timeout_ms = 1000, .path = "/", .type = "text/plain",
	    .render = render };
	struct sockaddr_in6 a = { .sin6_family = AF_INET6 };
	struct httpd *h;
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
	cr_assert_null(httpd_start(&o, err, sizeof(err)));
	cr_assert(strstr(err, "in use") != NULL, "%s", err);
	httpd_stop(h);
}

Test(start, bad_options)
{
	struct httpd_opts o = { .host = "not-an-address", .max_conns = 1,
	    .timeout_ms = 1000, .path = "/", .type = "text/plain",
	    .render = render };
	char err[256] = "";

	cr_assert_null(httpd_start(&o, err, sizeof(err)));
	cr_assert(strstr(err, "bad address") != NULL, "%s", err);
	o.host = "127.0.0.1";
	o.max_conns = 0;
	cr_assert_null(httpd_start(&o, err, sizeof(err)));
	cr_assert_str_eq(err, "bad httpd options");
	o.max_conns = 1;
	o.render = NULL;
	cr_assert_null(httpd_start(&o, err, sizeof(err)));
	httpd_stop(NULL);
}
