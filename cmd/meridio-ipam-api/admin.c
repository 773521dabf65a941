/*
 * admin.c - ipamadmin.v1.Admin, served on a Unix socket only.
 *
 * A grpc_server of its own, bound to unix:<rundir>/admin.sock and nothing
 * else, with two completion queues: one for the notification of new calls
 * (registered with the server) and one bound to the call being served, so
 * that the admin thread can run each call's batches one after the other
 * and wait for each. Calls are served one at a time: operators' requests
 * are rare, and the db worker answers them from its in-memory index.
 *
 * Every call opens its own connection to the db worker (role CTL): the
 * api worker's connection, with its pending table and reply matching for
 * Ipam calls, stays untouched.
 */
#include "admin.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "bounds.h"
#include "grpcx.h"
#include "ipamadmin/v1/admin.pb-c.h"
#include "ipc.h"
#include "ipcmsg.h"
#include "log.h"
#include "now.h"

#define ADMIN_DB_TIMEOUT_MS 10000	/* longest wait for the db worker */
#define ADMIN_BATCH_TIMEOUT_MS 30000	/* longest wait for one batch (a
					   client that stops reading) */
#define ADMIN_HELLO_ID 1		/* request ids on a db connection */
#define ADMIN_REQ_ID 2

enum admin_method {
	ADMIN_DUMP,
	ADMIN_CHECK,
	ADMIN_RELEASE,
	ADMIN_INFO,
	ADMIN_GENERIC,		/* anything else: UNIMPLEMENTED */
	ADMIN_NMETHODS,
};

static const char *const admin_paths[ADMIN_GENERIC] = {
	"/ipamadmin.v1.Admin/Dump",
	"/ipamadmin.v1.Admin/Check",
	"/ipamadmin.v1.Admin/Release",
	"/ipamadmin.v1.Admin/Info",
};

/* One posted request, then the call that landed in it. */
struct admin_call {
	enum admin_method method;	/* what was posted */
	grpc_call *call;		/* the call, once it arrived */
	gpr_timespec deadline;		/* registered calls: client deadline */
	grpc_call_details details;	/* generic calls: method, deadline */
	grpc_metadata_array md;		/* request metadata (unused) */
	grpc_byte_buffer *payload;	/* request body, NULL if none */
	bool md_sent;			/* initial metadata went out */
};

struct admin {
	char db_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
					/* the db worker's socket */
	char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
					/* our socket */
	const struct cfg *cfg;		/* configuration, for Info */
	bool systemd;			/* sock_path in $RUNTIME_DIRECTORY */
	bool bound;			/* sock_path is ours: remove it */
	grpc_server *server;		/* the Admin server */
	grpc_completion_queue *cq;	/* new calls and the shutdown tag */
	grpc_completion_queue *call_cq;	/* batches of the call served */
	void *methods[ADMIN_GENERIC];	/* registered method handles */
	unsigned posted;		/* requests posted, not completed */
	pthread_t thread;		/* serves the calls */
	bool thread_started;		/* thread must be joined */
	atomic_bool stop;		/* admin_begin_stop was called */
};

static int admin_shutdown_tag;		/* tag of shutdown_and_notify */

/* ---- the db client ------------------------------------------------------ */

int
admin_db_call(const char *db_path, Ipamd__V1__Request *req,
    admin_reply_fn fn, void *arg, int timeout_ms, char *err, size_t errlen)
{
	Ipamd__V1__Request hreq = IPAMD__V1__REQUEST__INIT;
	Ipamd__V1__Hello hello = IPAMD__V1__HELLO__INIT;
	Ipamd__V1__Reply *r;
	int64_t end = now_ms() + timeout_ms, left;
	uint8_t *data;
	size_t len;
	int fd, n, v, rc = -1;
	bool more, ours, hello_ok;

	fd = ipc_connect(db_path, err, errlen);
	if (fd < 0)
		return -1;
	hello.role = IPAMD__V1__ROLE__ROLE_CTL;
	hello.pid = (int32_t)getpid();
	hreq.id = ADMIN_HELLO_ID;
	hreq.body_case = IPAMD__V1__REQUEST__BODY_HELLO;
	hreq.hello = &hello;
	req->id = ADMIN_REQ_ID;
	if (ipcmsg_send_request(fd, &hreq) < 0 ||
	    ipcmsg_send_request(fd, req) < 0) {
		snprintf(err, errlen, "cannot write to the db worker: %s",
		    strerror(errno));
		goto out;
	}
	for (;;) {
		left = end - now_ms();
		if (left <= 0) {
			snprintf(err, errlen, "the db worker did not answer "
			    "in %d ms", timeout_ms);
			goto out;
		}
		n = ipc_recv(fd, &data, &len, (int)left);
		if (n == 0) {
			snprintf(err, errlen, "the db worker closed the "
			    "connection");
			goto out;
		}
		if (n < 0) {
			snprintf(err, errlen, "reading from the db worker: %s",
			    strerror(errno));
			goto out;
		}
		r = ipcmsg_unpack_reply(data, len);
		free(data);
		if (r == NULL) {
			snprintf(err, errlen, "malformed reply from the db "
			    "worker");
			goto out;
		}
		ours = r->id == ADMIN_REQ_ID;
		if (ours) {
			more = r->more;
			v = fn(arg, r);
		} else if (r->id != ADMIN_HELLO_ID) {
			snprintf(err, errlen, "reply to an unknown request "
			    "from the db worker");
		} else if (r->code != 0) {
			snprintf(err, errlen, "the db worker refused hello: %s",
			    r->message);
		}
		hello_ok = r->id == ADMIN_HELLO_ID && r->code == 0;
		ipamd__v1__reply__free_unpacked(r, NULL);
		if (!ours && !hello_ok)
			goto out;
		if (ours && (v != 0 || !more)) {
			rc = v;
			goto out;
		}
	}
out:
	close(fd);
	return rc;
}

/* ---- calls -------------------------------------------------------------- */

/* Frees a posted request (never NULL: every tag of ours is one). */
static void
admin_call_free(struct admin_call *c)
{
	if (c->call != NULL)
		grpc_call_unref(c->call);
	grpc_call_details_destroy(&c->details);
	grpc_metadata_array_destroy(&c->md);
	if (c->payload != NULL)
		grpc_byte_buffer_destroy(c->payload);
	free(c);
}

/*
 * Posts one request for method m: notification on cq, the call's batches
 * on call_cq. Returns 0 or -1.
 */
static int
admin_post(struct admin *ad, enum admin_method m)
{
	struct admin_call *c;
	grpc_call_error e;

	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -1;
	c->method = m;
	grpc_metadata_array_init(&c->md);
	grpc_call_details_init(&c->details);
	if (m == ADMIN_GENERIC) {
		e = grpc_server_request_call(ad->server, &c->call, &c->details,
		    &c->md, ad->call_cq, ad->cq, c);
	} else {
		e = grpc_server_request_registered_call(ad->server,
		    ad->methods[m], &c->call, &c->deadline, &c->md, &c->payload,
		    ad->call_cq, ad->cq, c);
	}
	if (e != GRPC_CALL_OK) {
		admin_call_free(c);
		return -1;
	}
	ad->posted++;
	return 0;
}

/*
 * Runs one batch on the served call and waits for it: the call is the
 * only one with batches on call_cq, so its next event is this batch.
 * Calls are served one at a time, so a client that stops reading (flow
 * control holds a send) must not hold the service: after
 * ADMIN_BATCH_TIMEOUT_MS the call is cancelled, which completes the
 * batch. Returns true if the batch succeeded (false: the client is gone,
 * too slow, or the call was cancelled).
 */
static bool
admin_batch(struct admin *ad, struct admin_call *c, grpc_op *ops, size_t n)
{
	grpc_event ev;
	gpr_timespec limit = grpcx_deadline_ms(ADMIN_BATCH_TIMEOUT_MS);
	bool cancelled = false;

	if (grpc_call_start_batch(c->call, ops, n, c, NULL) != GRPC_CALL_OK)
		log_fatal("admin: grpc_call_start_batch failed");
	for (;;) {
		ev = grpc_completion_queue_next(ad->call_cq, cancelled ?
		    gpr_inf_future(GPR_CLOCK_MONOTONIC) : limit, NULL);
		if (ev.type == GRPC_OP_COMPLETE)
			return ev.success != 0;
		if (ev.type == GRPC_QUEUE_TIMEOUT && !cancelled) {
			log_warn("admin: a client does not read its answer: "
			    "cancelling the call");
			grpc_call_cancel_with_status(c->call,
			    GRPC_STATUS_DEADLINE_EXCEEDED,
			    "admin client too slow", NULL);
			cancelled = true;
		}
	}
}

/* Sends one message of a response (initial metadata first). */
static bool
admin_send(struct admin *ad, struct admin_call *c, const ProtobufCMessage *m)
{
	grpc_op ops[2];
	grpc_byte_buffer *bb;
	size_t n = 0;
	bool ok;

	bb = grpcx_pack(m);
	if (bb == NULL)
		return false;
	memset(ops, 0, sizeof(ops));
	if (!c->md_sent) {
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
		c->md_sent = true;
	}
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n++].data.send_message.send_message = bb;
	ok = admin_batch(ad, c, ops, n);
	grpc_byte_buffer_destroy(bb);
	return ok;
}

/*
 * Ends a call: initial metadata if not sent yet, the body if any (OK
 * only), the status, and RECV_CLOSE.
 */
static void
admin_finish(struct admin *ad, struct admin_call *c, grpc_status_code code,
    const char *msg, const ProtobufCMessage *body)
{
	grpc_op ops[4];
	grpc_byte_buffer *bb;
	grpc_slice details;
	int cancelled = 0;

	(void)admin_batch(ad, c, ops, grpcx_finish_ops(ops, &c->md_sent, code,
	    msg, body, &bb, &details, &cancelled));
	grpc_slice_unref(details);
	if (bb != NULL)
		grpc_byte_buffer_destroy(bb);
}

/*
 * The body of call c unpacked as desc, or NULL after answering
 * INVALID_ARGUMENT.
 */
static ProtobufCMessage *
admin_request(struct admin *ad, struct admin_call *c,
    const ProtobufCMessageDescriptor *desc)
{
	ProtobufCMessage *m = grpcx_unpack(desc, c->payload);
	char msg[128];

	if (m == NULL) {
		snprintf(msg, sizeof(msg), "malformed request body: not a %s",
		    desc->short_name);
		admin_finish(ad, c, GRPC_STATUS_INVALID_ARGUMENT, msg, NULL);
	}
	return m;
}

/*
 * admin_db_call for the call c, within its deadline (at most
 * ADMIN_DB_TIMEOUT_MS); when the db worker cannot be asked, answers
 * UNAVAILABLE. Returns admin_db_call's result.
 */
static int
admin_ask(struct admin *ad, struct admin_call *c, Ipamd__V1__Request *req,
    admin_reply_fn fn, void *x)
{
	int64_t left = grpcx_ms_left(c->deadline);
	char err[GRPCX_MSG_MAX], msg[GRPCX_MSG_MAX + 32];
	int rc;

	rc = admin_db_call(ad->db_path, req, fn, x, left < ADMIN_DB_TIMEOUT_MS ?
	    (int)left : ADMIN_DB_TIMEOUT_MS, err, sizeof(err));
	if (rc < 0) {
		snprintf(msg, sizeof(msg), "db worker: %s", err);
		admin_finish(ad, c, GRPC_STATUS_UNAVAILABLE, msg, NULL);
	}
	return rc;
}

/* State of one Dump or Check while the db worker's replies come in. */
struct admin_dump {
	struct admin *ad;		/* the service */
	struct admin_call *c;		/* the call */
	int code;			/* Dump: db worker's error, 0 none */
	char msg[GRPCX_MSG_MAX];	/* its message */
};

/* Streams one db Reply of a Dump to the client as one DumpChunk. */
static int
admin_dump_chunk(void *arg, const Ipamd__V1__Reply *r)
{
	struct admin_dump *x = arg;
	Ipamadmin__V1__DumpChunk ch = IPAMADMIN__V1__DUMP_CHUNK__INIT;
	Ipamadmin__V1__Record *recs, **ptrs;
	bool ok;

	if (r->code != 0) {
		x->code = r->code;
		snprintf(x->msg, sizeof(x->msg), "%s", r->message);
		return 1;
	}
	if (r->n_records == 0)
		return 0;
	recs = calloc(r->n_records, sizeof(*recs));
	ptrs = calloc(r->n_records, sizeof(*ptrs));
	if (recs == NULL || ptrs == NULL) {
		free(recs);
		free(ptrs);
		x->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
		snprintf(x->msg, sizeof(x->msg), "out of memory");
		return 1;
	}
	for (size_t i = 0; i < r->n_records; i++) {
		const Ipamd__V1__Record *s = r->records[i];
		Ipamadmin__V1__Record *o = &recs[i];

		ipamadmin__v1__record__init(o);
		o->id = s->id;
		o->name = s->name;
		o->cidr = s->cidr;
		o->parent_id = s->parent_id;
		o->updated_at = s->updated_at;
		o->expirable = s->expirable;
		o->level = s->level;
		o->children = s->children;
		o->usable = s->usable;
		ptrs[i] = o;
	}
	ch.n_records = r->n_records;
	ch.records = ptrs;
	ok = admin_send(x->ad, x->c, &ch.base);
	free(recs);
	free(ptrs);
	return ok ? 0 : 2;
}

/* Dump: the db worker's records, streamed in its chunks. */
static void
admin_dump(struct admin *ad, struct admin_call *c)
{
	Ipamadmin__V1__DumpRequest *rq;
	Ipamd__V1__Request req = IPAMD__V1__REQUEST__INIT;
	Ipamd__V1__Dump dump = IPAMD__V1__DUMP__INIT;
	struct admin_dump x = { .ad = ad, .c = c };

	rq = (Ipamadmin__V1__DumpRequest *)admin_request(ad, c,
	    &ipamadmin__v1__dump_request__descriptor);
	if (rq == NULL)
		return;
	if (strlen(rq->conduit) > BOUNDS_LABEL_MAX ||
	    strlen(rq->node) > BOUNDS_LABEL_MAX) {
		admin_finish(ad, c, GRPC_STATUS_INVALID_ARGUMENT,
		    "conduit or node filter too long", NULL);
		goto out;
	}
	dump.conduit = rq->conduit;
	dump.node = rq->node;
	req.body_case = IPAMD__V1__REQUEST__BODY_DUMP;
	req.dump = &dump;
	if (admin_ask(ad, c, &req, admin_dump_chunk, &x) < 0)
		goto out;
	if (x.code != 0)
		admin_finish(ad, c, grpcx_status_code(x.code), x.msg, NULL);
	else	/* also after a client gone: the status batch just fails */
		admin_finish(ad, c, GRPC_STATUS_OK, NULL, NULL);
out:
	ipamadmin__v1__dump_request__free_unpacked(rq, NULL);
}

/* Answers the Check call from the db worker's one Reply. */
static int
admin_check_reply(void *arg, const Ipamd__V1__Reply *r)
{
	struct admin_dump *x = arg;
	Ipamadmin__V1__CheckReport rep = IPAMADMIN__V1__CHECK_REPORT__INIT;
	Ipamadmin__V1__Problem *pv, **ptrs;

	if (r->code != 0) {
		admin_finish(x->ad, x->c, grpcx_status_code(r->code),
		    r->message, NULL);
		return 1;
	}
	pv = calloc(r->n_problems + 1, sizeof(*pv));
	ptrs = calloc(r->n_problems + 1, sizeof(*ptrs));
	if (pv == NULL || ptrs == NULL) {
		free(pv);
		free(ptrs);
		admin_finish(x->ad, x->c, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "out of memory", NULL);
		return 1;
	}
	for (size_t i = 0; i < r->n_problems; i++) {
		ipamadmin__v1__problem__init(&pv[i]);
		pv[i].id = r->problems[i]->id;
		pv[i].kind = r->problems[i]->kind;
		pv[i].what = r->problems[i]->what;
		ptrs[i] = &pv[i];
	}
	rep.n_problems = r->n_problems;
	rep.problems = ptrs;
	rep.records = r->record_count;
	admin_finish(x->ad, x->c, GRPC_STATUS_OK, NULL, &rep.base);
	free(pv);
	free(ptrs);
	return 1;
}

/* Check: the db worker's audit of its index. */
static void
admin_check(struct admin *ad, struct admin_call *c)
{
	Ipamd__V1__Request req = IPAMD__V1__REQUEST__INIT;
	Ipamd__V1__Check chk = IPAMD__V1__CHECK__INIT;
	struct admin_dump x = { .ad = ad, .c = c };
	ProtobufCMessage *rq;

	/* an empty message, unpacked only to refuse a malformed body */
	rq = admin_request(ad, c, &ipamadmin__v1__check_request__descriptor);
	if (rq == NULL)
		return;
	protobuf_c_message_free_unpacked(rq, NULL);
	req.body_case = IPAMD__V1__REQUEST__BODY_CHECK;
	req.check = &chk;
	(void)admin_ask(ad, c, &req, admin_check_reply, &x);
}

/* What the db worker answered to one family's Release. */
struct admin_rel {
	int code;			/* its code */
	char addr[64];			/* OK: the address released */
	char msg[GRPCX_MSG_MAX];	/* else: why */
};

static int
admin_release_reply(void *arg, const Ipamd__V1__Reply *r)
{
	struct admin_rel *x = arg;

	x->code = r->code;
	snprintf(x->addr, sizeof(x->addr), "%s", r->address);
	snprintf(x->msg, sizeof(x->msg), "%s", r->message);
	return 1;
}

/*
 * Release: one db Release per family asked (IPv4, then IPv6), as role CTL
 * so that the db worker says what it released or what did not match.
 * OK when something was released; else the first error other than
 * NOT_FOUND, or NOT_FOUND with every family's reason.
 */
static void
admin_release(struct admin *ad, struct admin_call *c)
{
	Ipamadmin__V1__ReleaseRequest *rq;
	Ipamadmin__V1__ReleaseReply rep = IPAMADMIN__V1__RELEASE_REPLY__INIT;
	Ipamd__V1__Request req = IPAMD__V1__REQUEST__INIT;
	Ipamd__V1__Child ch = IPAMD__V1__CHILD__INIT;
	Ipamd__V1__Release rel = IPAMD__V1__RELEASE__INIT;
	struct admin_rel x[2];
	char *released[2], *missing[2], why[2][GRPCX_MSG_MAX + 8];
	char msg[2 * GRPCX_MSG_MAX + 32];
	static const int fams[2] = { 4, 6 };
	size_t nf = 0;

	rq = (Ipamadmin__V1__ReleaseRequest *)admin_request(ad, c,
	    &ipamadmin__v1__release_request__descriptor);
	if (rq == NULL)
		return;
	if (rq->family != 0 && rq->family != 4 && rq->family != 6) {
		admin_finish(ad, c, GRPC_STATUS_INVALID_ARGUMENT,
		    "family must be 4, 6 or 0 (both)", NULL);
		goto out;
	}
	ch.trench = rq->trench;
	ch.conduit = rq->conduit;
	ch.node = rq->node;
	ch.name = rq->name;
	rel.child = &ch;
	req.body_case = IPAMD__V1__REQUEST__BODY_RELEASE;
	req.release = &rel;
	for (int i = 0; i < 2; i++) {
		if (rq->family != 0 && (int)rq->family != fams[i])
			continue;
		ch.family = fams[i] == 4 ? IPAMD__V1__FAMILY__FAMILY_IPV4 :
		    IPAMD__V1__FAMILY__FAMILY_IPV6;
		if (admin_ask(ad, c, &req, admin_release_reply, &x[nf]) < 0)
			goto out;
		if (x[nf].code == 0) {
			released[rep.n_released++] = x[nf].addr;
		} else if (x[nf].code == GRPC_STATUS_NOT_FOUND) {
			snprintf(why[rep.n_missing], sizeof(why[0]),
			    "ipv%d: %s", fams[i], x[nf].msg);
			missing[rep.n_missing] = why[rep.n_missing];
			rep.n_missing++;
		} else {
			admin_finish(ad, c, grpcx_status_code(x[nf].code),
			    x[nf].msg, NULL);
			goto out;
		}
		nf++;
	}
	rep.released = released;
	rep.missing = missing;
	if (rep.n_released > 0) {
		admin_finish(ad, c, GRPC_STATUS_OK, NULL, &rep.base);
		goto out;
	}
	snprintf(msg, sizeof(msg), "nothing released: %s%s%s",
	    rep.n_missing > 0 ? missing[0] : "",
	    rep.n_missing > 1 ? "; " : "", rep.n_missing > 1 ? missing[1] : "");
	admin_finish(ad, c, GRPC_STATUS_NOT_FOUND, msg, NULL);
out:
	ipamadmin__v1__release_request__free_unpacked(rq, NULL);
}

/* Info: the configuration that identifies this instance. */
static void
admin_info(struct admin *ad, struct admin_call *c)
{
	Ipamadmin__V1__InfoReply rep = IPAMADMIN__V1__INFO_REPLY__INIT;
	const struct cfg *cfg = ad->cfg;

	rep.version = (char *)IPAM_VERSION;
	rep.pid = (int32_t)getppid();
	rep.port = cfg->port;
	rep.data_source = cfg->data_source;
	rep.trench = cfg->trench;
	rep.nsp_service = cfg->nsp_service;
	rep.conduits = cfg->conduits;
	rep.n_conduits = cfg->nconduits;
	rep.conduit_source = (char *)(cfg->nconduits > 0 ? "static" :
	    cfg->nsp_service[0] != '\0' ? "nsp" : "none");
	admin_finish(ad, c, GRPC_STATUS_OK, NULL, &rep.base);
}

/* Serves one call to its end. */
static void
admin_serve(struct admin *ad, struct admin_call *c)
{
	char msg[300];
	int len;

	log_kv(LOGL_DEBUG, "admin call", "method", c->method < ADMIN_GENERIC ?
	    admin_paths[c->method] : "generic", NULL);
	switch (c->method) {
	case ADMIN_DUMP:
		admin_dump(ad, c);
		break;
	case ADMIN_CHECK:
		admin_check(ad, c);
		break;
	case ADMIN_RELEASE:
		admin_release(ad, c);
		break;
	case ADMIN_INFO:
		admin_info(ad, c);
		break;
	default:
		len = (int)GRPC_SLICE_LENGTH(c->details.method);
		snprintf(msg, sizeof(msg), "unknown method %.*s",
		    len > 200 ? 200 : len,
		    (const char *)GRPC_SLICE_START_PTR(c->details.method));
		admin_finish(ad, c, GRPC_STATUS_UNIMPLEMENTED, msg, NULL);
		break;
	}
}

/*
 * The admin thread: waits for calls, re-posts for the method, serves the
 * call. Returns once the server's shutdown completed and every posted
 * request came back.
 */
static void *
admin_main(void *arg)
{
	struct admin *ad = arg;
	struct admin_call *c;
	grpc_event ev;
	bool shut = false;

	while (!shut || ad->posted > 0) {
		ev = grpc_completion_queue_next(ad->cq,
		    gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		if (ev.tag == &admin_shutdown_tag) {
			shut = true;
			continue;
		}
		c = ev.tag;
		ad->posted--;
		if (!ev.success) {
			admin_call_free(c);
			continue;
		}
		if (!atomic_load(&ad->stop) && admin_post(ad, c->method) < 0)
			log_error("admin: cannot post a request");
		admin_serve(ad, c);
		admin_call_free(c);
	}
	return NULL;
}

/* ---- setup and teardown ------------------------------------------------- */

/* A tag left in a queue at teardown: a call, or the shutdown notice. */
static void
admin_free_tag(void *tag)
{
	if (tag != &admin_shutdown_tag)
		admin_call_free(tag);
}

/* The end of teardown, in grpc's order: queues drained, server destroyed,
 * then the queues; the socket file removed. */
static void
admin_free(struct admin *ad)
{
	grpcx_cq_drain(ad->cq, admin_free_tag);
	grpcx_cq_drain(ad->call_cq, admin_free_tag);
	if (ad->server != NULL)
		grpc_server_destroy(ad->server);
	if (ad->cq != NULL)
		grpc_completion_queue_destroy(ad->cq);
	if (ad->call_cq != NULL)
		grpc_completion_queue_destroy(ad->call_cq);
	if (ad->bound)
		(void)unlink(ad->sock_path);
	free(ad);
}

/*
 * Under systemd with an admin group: the socket 0660 of that group, and
 * its directory passable by the group (0710). The daemon must be in that
 * group (SupplementaryGroups=); failing that, the socket stays 0600 and
 * the reason is logged.
 */
static void
admin_let_group_in(const struct admin *ad)
{
	char dir[sizeof(ad->sock_path)], *slash;
	gid_t gid = (gid_t)ad->cfg->admin_gid;

	snprintf(dir, sizeof(dir), "%s", ad->sock_path);
	slash = strrchr(dir, '/');
	if (slash != NULL)
		*slash = '\0';
	if (chown(ad->sock_path, (uid_t)-1, gid) < 0 ||
	    chown(dir, (uid_t)-1, gid) < 0 || chmod(dir, 0710) < 0 ||
	    chmod(ad->sock_path, 0660) < 0) {
		log_kv(LOGL_WARNING, "admin socket not opened to "
		    "IPAM_ADMIN_GROUP: is the daemon in that group "
		    "(SupplementaryGroups=)?", "IPAM_ADMIN_GROUP",
		    ad->cfg->admin_group, "socket", ad->sock_path, "error",
		    strerror(errno), NULL);
		(void)chmod(ad->sock_path, 0600);
	}
}

/*
 * Creates the server and binds it to the socket (created with mode 0600
 * under a tight umask; a stale socket file is removed first).
 */
static int
admin_bind(struct admin *ad, grpc_completion_queue *poll_cq, char *err,
    size_t errlen)
{
	grpc_server_credentials *creds;
	char addr[sizeof(ad->sock_path) + 8];
	struct stat sb;
	mode_t old;
	int port, fd;

	/* Queues that do not poll: the API's gRPC thread polls every
	 * connection, ours included (accepted through poll_cq); a second
	 * poller would take half of the API's reads (BENCHMARKS.md). */
	ad->cq = grpcx_cq_quiet();
	ad->call_cq = grpcx_cq_quiet();
	if (ad->cq == NULL || ad->call_cq == NULL) {
		snprintf(err, errlen, "cannot create a completion queue");
		return -1;
	}
	ad->server = grpcx_server_new(BOUNDS_ADMIN_MESSAGE_MAX);
	grpc_server_register_completion_queue(ad->server, poll_cq, NULL);
	grpc_server_register_completion_queue(ad->server, ad->cq, NULL);
	for (int m = 0; m < ADMIN_GENERIC; m++)
		ad->methods[m] = grpc_server_register_method(ad->server,
		    admin_paths[m], NULL,
		    GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
	if (lstat(ad->sock_path, &sb) == 0 && S_ISSOCK(sb.st_mode)) {
		if ((fd = ipc_connect(ad->sock_path, NULL, 0)) >= 0) {
			close(fd);
			snprintf(err, errlen, "%s is the admin socket of "
			    "another running instance", ad->sock_path);
			return -1;
		}
		(void)unlink(ad->sock_path);
	}
	snprintf(addr, sizeof(addr), "unix:%s", ad->sock_path);
	creds = grpc_insecure_server_credentials_create();
	old = umask(0177);
	port = grpc_server_add_http2_port(ad->server, addr, creds);
	umask(old);
	grpc_server_credentials_release(creds);
	if (port == 0) {
		snprintf(err, errlen, "cannot listen on %s", addr);
		return -1;
	}
	ad->bound = true;
	return 0;
}

struct admin *
admin_start(const char *rundir, const char *db_path, const struct cfg *cfg,
    grpc_completion_queue *poll_cq, char *err, size_t errlen)
{
	const char *sd = getenv("RUNTIME_DIRECTORY");
	struct admin *ad;
	int n;

	if (rundir == NULL || rundir[0] == '\0') {
		snprintf(err, errlen, "%s is not set", IPCMSG_ENV_RUNDIR);
		return NULL;
	}
	ad = calloc(1, sizeof(*ad));
	if (ad == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	atomic_init(&ad->stop, false);
	ad->cfg = cfg;
	/* systemd's RUNTIME_DIRECTORY lists the unit's runtime directories,
	 * separated by colons: the first one is ours. */
	ad->systemd = sd != NULL && sd[0] == '/';
	if (ad->systemd)
		n = snprintf(ad->sock_path, sizeof(ad->sock_path), "%.*s/%s",
		    (int)strcspn(sd, ":"), sd, ADMIN_SOCK);
	else
		n = snprintf(ad->sock_path, sizeof(ad->sock_path), "%s/%s",
		    rundir, ADMIN_SOCK);
	if (n < 0 || (size_t)n >= sizeof(ad->sock_path) ||
	    strlen(db_path) >= sizeof(ad->db_path)) {
		snprintf(err, errlen, "%s: path too long for a Unix socket",
		    rundir);
		free(ad);
		return NULL;
	}
	snprintf(ad->db_path, sizeof(ad->db_path), "%s", db_path);
	if (admin_bind(ad, poll_cq, err, errlen) < 0)
		goto fail;
	grpc_server_start(ad->server);
	if (chmod(ad->sock_path, 0600) < 0) {
		snprintf(err, errlen, "chmod %s: %s", ad->sock_path,
		    strerror(errno));
		goto fail_started;
	}
	if (ad->systemd && cfg->admin_gid >= 0)
		admin_let_group_in(ad);
	log_kv(LOGL_INFO, "admin socket", "path", ad->sock_path, NULL);
	for (int m = 0; m < ADMIN_NMETHODS; m++)
		if (admin_post(ad, (enum admin_method)m) < 0) {
			snprintf(err, errlen, "cannot post a request");
			goto fail_started;
		}
	if (pthread_create(&ad->thread, NULL, admin_main, ad) != 0) {
		snprintf(err, errlen, "pthread_create: %s", strerror(errno));
		goto fail_started;
	}
	ad->thread_started = true;
	return ad;

fail_started:
	admin_stop(ad);
	return NULL;
fail:
	admin_free(ad);
	return NULL;
}

/*
 * Shutdown as grpc wants it: shutdown_and_notify, cancel what is in
 * flight (the admin thread's batch then fails and it moves on). Once.
 */
void
admin_begin_stop(struct admin *ad)
{
	if (ad == NULL || atomic_exchange(&ad->stop, true))
		return;
	grpc_server_shutdown_and_notify(ad->server, ad->cq, &admin_shutdown_tag);
	grpc_server_cancel_all_calls(ad->server);
}

/* Then wait for the thread to see the tag and the posted requests come
 * back, drain the queues and destroy. */
void
admin_stop(struct admin *ad)
{
	if (ad == NULL)
		return;
	admin_begin_stop(ad);
	if (ad->thread_started)
		pthread_join(ad->thread, NULL);
	admin_free(ad);
}
