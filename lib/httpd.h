/*
 * httpd.h - a small HTTP/1.1 server for read-only endpoints (metrics).
 *
 * One thread of its own polls a listening socket and at most max_conns
 * non-blocking connections. A request head is capped (HTTPD_HEAD_MAX);
 * a connection that does not complete a request, or does not take its
 * answer, within timeout_ms is closed, so slow or idle clients cannot
 * hold the server. Keep-alive is honoured (HTTP/1.1 by default, HTTP/1.0
 * on "Connection: keep-alive"), and so is "Connection: close". Requests
 * are answered in order, one at a time; a request with a body is answered
 * and the connection closed (the body is never read). Malformed input is
 * answered with a 4xx and the connection closed.
 *
 * The handler routes: it sees the method and the path and fills a reply.
 * HEAD is passed to it like GET; the server sends the head only.
 *
 * httpd_parse and httpd_format_head are pure (no I/O) and used by the
 * server; they are public so that they can be tested alone. No logging.
 */
#ifndef IPAM_HTTPD_H
#define IPAM_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define HTTPD_HEAD_MAX 8192	/* request line + headers, bytes */
#define HTTPD_METHOD_MAX 24	/* longest method + 1 (longer: 501) */
#define HTTPD_PATH_MAX 1024	/* longest path + 1 (longer: 414) */

/* A parsed request head. */
struct httpd_req {
	char method[HTTPD_METHOD_MAX];	/* as sent (methods are
					 * case-sensitive) */
	char path[HTTPD_PATH_MAX];	/* the target's path: no query, no
					 * scheme or authority */
	int minor;			/* HTTP/1.minor: 0 or 1 */
	bool keep_alive;		/* the client lets the connection
					 * stay open after the answer */
	bool has_body;			/* Content-Length > 0 or a
					 * Transfer-Encoding */
};

/*
 * Parses the request head at the start of buf (len bytes, of which at
 * most cap may belong to the head). Leading empty lines are skipped.
 * Returns the head's length in bytes (> 0, the blank line included) with
 * *req filled; 0 when the head is not complete yet and nothing seen so far
 * is wrong; or minus an HTTP status when the request must be refused:
 * -400 (malformed, including a missing or repeated Host in HTTP/1.1),
 * -414 (path too long), -431 (head longer than cap), -501 (method too
 * long to be one we know), -505 (not HTTP/1.x).
 */
int httpd_parse(const char *buf, size_t len, size_t cap,
    struct httpd_req *req);

/* The reason phrase of status ("Unknown" for one not used here). */
const char *httpd_reason(int status);

/* An answer, filled by the handler. */
struct httpd_reply {
	int status;			/* HTTP status code */
	const char *type;		/* Content-Type, or NULL */
	const char *allow;		/* Allow header (for 405), or NULL */
	char *body;			/* malloc'd body, or NULL; the
					 * server frees it */
	size_t len;			/* body length (also for HEAD) */
};

/*
 * Writes the status line and headers of rep (Date from now, Content-Type,
 * Content-Length, Allow, Connection) and the blank line into out. minor
 * is the request's HTTP minor version: an HTTP/1.0 connection kept open
 * is told so with "Connection: keep-alive", and any connection about to
 * close with "Connection: close". Returns the length written (out is NUL
 * terminated), or 0 when outlen is too small.
 */
size_t httpd_format_head(char *out, size_t outlen,
    const struct httpd_reply *rep, bool keep_alive, int minor, time_t now);

/* Fills rep for req (status 0 is taken as 500). Runs on the server's
 * thread: while it runs, other connections wait. */
typedef void httpd_handler_fn(void *arg, const struct httpd_req *req,
    struct httpd_reply *rep);

/* What httpd_start needs. */
struct httpd_opts {
	const char *host;		/* numeric address to bind, or NULL
					 * for all: [::] dual stack, or
					 * 0.0.0.0 without IPv6 */
	unsigned port;			/* TCP port; 0 picks a free one */
	unsigned max_conns;		/* connections at once (>= 1) */
	unsigned timeout_ms;		/* per request: to send its head
					 * and take the answer (>= 1) */
	httpd_handler_fn *handler;	/* routes requests */
	void *arg;			/* handler's first argument */
};

/* A running server (opaque). */
struct httpd;

/*
 * Binds, listens and starts the server's thread. NULL with err set when
 * the address cannot be bound (in use, bad host) or on out of memory.
 */
struct httpd *httpd_start(const struct httpd_opts *o, char *err,
    size_t errlen);

/* The port the server listens on (useful after port 0). */
unsigned httpd_port(const struct httpd *h);

/* Stops the thread (after the handler call in progress, if any), closes
 * every connection and frees h. Accepts NULL. */
void httpd_stop(struct httpd *h);

#endif
