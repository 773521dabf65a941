/*
 * httpd.h - serves one read-only page over HTTP/1.1, for a scraper.
 *
 * A thread of its own polls a listening socket and at most max_conns
 * non-blocking connections. A connection carries one request: GET or
 * HEAD of the page's path is answered with what render returns, and the
 * connection is closed. Other paths get 404, other methods 405 (Allow:
 * GET, HEAD), a malformed request 400, a head of more than HTTPD_HEAD_MAX
 * bytes 431, an HTTP version other than 1.x 505. Request bodies are never
 * read. A connection not answered and closed within timeout_ms of its
 * accept is closed, so slow or idle clients cannot hold the server; at
 * the cap, the oldest connection not yet being answered makes room for a
 * new one. No logging.
 */
#ifndef IPAM_HTTPD_H
#define IPAM_HTTPD_H

#include <stdbool.h>
#include <stddef.h>

#define HTTPD_HEAD_MAX 8192	/* request line + headers, bytes */

/*
 * What to answer to the request head at the start of buf (len bytes):
 * 0 while the head is not complete and nothing seen so far is wrong;
 * 200 for GET or HEAD of path (*head_only set for HEAD); else the error
 * status (400, 404, 405, 431, 505). Pure: used by the server, public to
 * be tested alone.
 */
int httpd_parse(const char *buf, size_t len, const char *path,
    bool *head_only);

/* The page: a malloc'd buffer of *len bytes, or NULL (answered 500).
 * Runs on the server's thread: while it runs, other connections wait. */
typedef char *httpd_render_fn(void *arg, size_t *len);

/* What httpd_start needs. */
struct httpd_opts {
	const char *host;		/* numeric address to bind, or NULL
					 * for all: [::] dual stack, or
					 * 0.0.0.0 without IPv6 */
	unsigned port;			/* TCP port; 0 picks a free one */
	unsigned max_conns;		/* connections at once (>= 1) */
	unsigned timeout_ms;		/* from accept to close (>= 1) */
	const char *path;		/* the page's path, e.g. "/metrics" */
	const char *type;		/* the page's Content-Type */
	httpd_render_fn *render;	/* makes the page */
	void *arg;			/* render's first argument */
};

/* A running server (opaque). */
struct httpd;

/*
 * Binds, listens and starts the server's thread. NULL with err set when
 * the address cannot be bound (in use, bad host), on bad options or out
 * of memory.
 */
struct httpd *httpd_start(const struct httpd_opts *o, char *err,
    size_t errlen);

/* The port the server listens on (useful after port 0). */
unsigned httpd_port(const struct httpd *h);

/* Stops the thread (after the render in progress, if any), closes every
 * connection and frees h. Accepts NULL. */
void httpd_stop(struct httpd *h);

#endif
