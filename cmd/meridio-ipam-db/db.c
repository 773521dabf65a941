/*
 * db.c - the db worker's loop.
 *
 * One thread, one poll loop. Every turn reads all the requests that are
 * ready on every connection, answers at once what changes nothing (Hello,
 * Ping, Dump, Check, Stats) and hands the changes, checked and allowed for
 * their sender, to one batch (lib/batch: one commit, then the answers).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <grpc/status.h>

#include "batch.h"
#include "bounds.h"
#include "db.h"
#include "ipcmsg.h"
#include "log.h"
#include "now.h"

#define DB_MAX_CLIENTS 64		/* connections served at once */
#define DB_MAX_BATCH 4096		/* requests applied in one commit */
#define DB_NS_PER_MS 1000000LL		/* nanoseconds in a millisecond */
#define DB_DUMP_CHUNK 1000		/* records per Dump reply frame */
#define DB_MAX_PROBLEMS 2000		/* problems listed by one Check */
#define DB_SUMMARY_MS 60000		/* a lasting failure: a line per minute */
#define DB_ENV_SUMMARY_MS "IPAMD_FAILURE_SUMMARY_MS" /* tests: shorter */

/* One connection to the db worker. */
struct client {
	struct ipc_conn *conn;		/* NULL when the slot is free */
	uint64_t gen;			/* bumped when the slot is reused */
	int role;			/* Ipamd__V1__Role, 0 before Hello */
};

/*
 * A failure that repeats while its cause lasts (a full disk, a checkpoint
 * that cannot write): one line when it starts, a summary per interval
 * while it lasts, one line when it ends, whatever the request rate. It
 * ends with a success after a quarter of the interval without a failure:
 * a nearly full disk lets some commits through between failures, and that
 * is one condition, not one per failure.
 */
struct cond {
	const char *what;		/* e.g. "storage writes" */
	bool on;			/* failing now */
	int64_t since;			/* CLOCK_MONOTONIC ns it began */
	int64_t next_summary;		/* when the next summary is due */
	int64_t last_fail;		/* when it last failed */
	bool ok_seen;			/* a success since then */
	uint64_t total;			/* failures since it began */
	uint64_t window;		/* failures since the last line */
	char last[512];			/* latest error text */
};

struct db {
	const struct cfg *cfg;		/* configuration */
	struct store *st;		/* the file */
	struct reg *reg;		/* the tree */
	struct client cl[DB_MAX_CLIENTS]; /* connection slots */
	struct batch *b;		/* the changes of this turn, parked */
	uint64_t requests;		/* requests answered */
	uint64_t gc_runs;		/* garbage collection runs */
	uint64_t gc_reaped;		/* records they removed */
	struct cond writes;		/* commits failing */
	struct cond ckpts;		/* checkpoints failing */
	uint64_t ckpt_seen;		/* checkpoint failures already counted */
	uint64_t ckpt_runs_seen;	/* checkpoints run at the last look */
	int64_t summary_ns;		/* interval of cond summaries */
	bool files_gone;		/* the data file is not ours: stop */
};

/* Notes n failures of c (err: the latest); logs only when c starts. */
static void
db_cond_fail(struct db *d, struct cond *c, uint64_t n, const char *err)
{
	int64_t mono = now_ns(CLOCK_MONOTONIC);

	snprintf(c->last, sizeof(c->last), "%s", err);
	c->total += n;
	c->window += n;
	c->last_fail = mono;
	c->ok_seen = false;
	if (c->on)
		return;
	c->on = true;
	c->since = mono;
	c->next_summary = mono + d->summary_ns;
	c->window = 0;
	log_kv(LOGL_WARNING, c->what, "state", "failing", "error", err,
	    NULL);
}

/* Notes that c works; logs the end of a failure once it is over. */
static void
db_cond_ok(struct db *d, struct cond *c)
{
	char secs[24];
	int64_t mono = now_ns(CLOCK_MONOTONIC);

	if (!c->on)
		return;
	c->ok_seen = true;
	if (mono - c->last_fail < d->summary_ns / 4)
		return;
	snprintf(secs, sizeof(secs), "%.1f", (double)(mono - c->since) / 1e9);
	log_kv(LOGL_INFO, c->what, "state", "recovered",
	    LOG_INT("failures", c->total), "seconds", secs, NULL);
	c->on = false;
	c->total = c->window = 0;
}

/* While c lasts: one summary line per interval. */
static void
db_cond_tick(struct db *d, struct cond *c, int64_t mono)
{
	if (c->on && c->ok_seen) {
		db_cond_ok(d, c);
		if (!c->on)
			return;
	}
	if (!c->on || mono < c->next_summary)
		return;
	log_kv(LOGL_WARNING, c->what, "state", "still failing",
	    LOG_INT("failures_since_last_line", c->window),
	    LOG_INT("failures", c->total), "error", c->last, NULL);
	c->window = 0;
	c->next_summary = mono + d->summary_ns;
}

/* Checkpoints run inside the store (a thread of its own, or after a
 * commit): looks at what they did since the last look. */
static void
db_check_ckpts(struct db *d)
{
	struct store_health h;

	store_health(d->st, &h);
	if (h.ckpt_failures > d->ckpt_seen)
		db_cond_fail(d, &d->ckpts, h.ckpt_failures - d->ckpt_seen,
		    h.ckpt_error[0] ? h.ckpt_error : "checkpoint failed");
	else if (!h.ckpt_failing && h.ckpt_runs > d->ckpt_runs_seen)
		db_cond_ok(d, &d->ckpts);
	d->ckpt_seen = h.ckpt_failures;
	d->ckpt_runs_seen = h.ckpt_runs;
}

static void
db_client_close(struct db *d, int slot, const char *why)
{
	struct client *c = &d->cl[slot];

	if (c->conn == NULL)
		return;
	log_kv(LOGL_DEBUG, "connection closed", "reason", why, NULL);
	ipc_conn_free(c->conn);
	c->conn = NULL;
	c->gen++;
	c->role = 0;
}

/* Queues r as an answer to p, if p's client is still there. */
static void
db_send(struct db *d, const struct batch_req *p, Ipamd__V1__Reply *r)
{
	struct client *c = &d->cl[p->slot];

	r->id = p->req->id;
	if (c->conn != NULL && c->gen == p->gen &&
	    ipcmsg_queue_reply(c->conn, r) != 0)
		db_client_close(d, p->slot, "cannot queue a reply");
}

/* Answers p with its code, message and address. */
static void
db_reply(struct db *d, struct batch_req *p)
{
	Ipamd__V1__Reply r = IPAMD__V1__REPLY__INIT;

	d->requests++;
	r.code = p->code;
	r.message = p->msg;
	r.address = p->addr;
	r.prefix_length = (int32_t)p->plen;
	db_send(d, p, &r);
}

static void
db_fail(struct batch_req *p, int code, const char *fmt, ...)
{
	va_list ap;

	p->code = code;
	va_start(ap, fmt);
	vsnprintf(p->msg, sizeof(p->msg), fmt, ap);
	va_end(ap);
}

/* Refuses an empty name or one longer than max. */
static bool
db_name_ok(struct batch_req *p, const char *what, const char *name, size_t max)
{
	if (name[0] != '\0' && strlen(name) <= max)
		return true;
	db_fail(p, GRPC_STATUS_INVALID_ARGUMENT, "%s %s", what, name[0] ?
	    "too long" : "empty");
	return false;
}

/*
 * Checks a change before it joins the batch: the child of an Allocate or
 * a Release (a known family, names within bounds, the served trench), the
 * names a SyncConduits adds. A refusal fills p's answer and nothing
 * changes. Returns true if p may go on.
 */
static bool
db_check(struct db *d, struct batch_req *p)
{
	const Ipamd__V1__Request *q = p->req;
	const Ipamd__V1__SyncConduits *s = q->sync_conduits;
	const Ipamd__V1__Child *ch;
	size_t i;

	if (q->body_case == IPAMD__V1__REQUEST__BODY_SYNC_CONDUITS) {
		for (i = 0; i < s->n_add; i++) {
			if (s->add[i][0] == '\0' ||
			    strlen(s->add[i]) > BOUNDS_LABEL_MAX) {
				db_fail(p, GRPC_STATUS_INVALID_ARGUMENT,
				    "bad conduit name %.300s", s->add[i]);
				return false;
			}
		}
		return true;
	}
	ch = q->body_case == IPAMD__V1__REQUEST__BODY_ALLOCATE ?
	    q->allocate->child : q->release->child;
	if (ch == NULL) {
		db_fail(p, GRPC_STATUS_INVALID_ARGUMENT, "no child");
		return false;
	}
	if (ch->family != IPAMD__V1__FAMILY__FAMILY_IPV4 &&
	    ch->family != IPAMD__V1__FAMILY__FAMILY_IPV6) {
		db_fail(p, GRPC_STATUS_INVALID_ARGUMENT, "unknown IP family");
		return false;
	}
	if (!db_name_ok(p, "child name", ch->name, BOUNDS_CHILD_MAX) ||
	    !db_name_ok(p, "node name", ch->node, BOUNDS_LABEL_MAX) ||
	    !db_name_ok(p, "conduit name", ch->conduit, BOUNDS_LABEL_MAX))
		return false;
	if (strcmp(ch->trench, d->cfg->trench) != 0) {
		db_fail(p, GRPC_STATUS_NOT_FOUND, "trench %s not found",
		    ch->trench);
		return false;
	}
	return true;
}

/* Checks that the data file and its WAL are still the ones at the path.
 * When not: one line, and the worker stops for good (a restart would only
 * serve whatever now lies at the path, without what this one
 * acknowledged). Returns true while they are. */
static bool
db_check_files(struct db *d)
{
	char err[512];

	if (d->files_gone || store_check_files(d->st, err, sizeof(err)) == 0)
		return !d->files_gone;
	d->files_gone = true;
	log_kv(LOGL_ERROR, "data file removed or replaced while in use: "
	    "refusing every request and stopping for good", "path",
	    d->cfg->data_source, "error", err, NULL);
	return false;
}

/* Answers a request the batch is done with. */
static void
db_answer(void *arg, struct batch_req *p)
{
	const Ipamd__V1__Child *ch;

	if (p->created) {
		ch = p->req->allocate->child;
		log_kv(LOGL_DEBUG, "allocated", "conduit", ch->conduit, "node",
		    ch->node, "name", ch->name, "address", p->addr, NULL);
	}
	db_reply(arg, p);
}

/* Logs what a SyncConduits changes besides its answer. */
static void
db_note(void *arg, const char *conduit, const char *err)
{
	(void)arg;
	if (err == NULL)
		log_kv(LOGL_INFO, "conduit removed", "conduit", conduit, NULL);
	else
		log_kv(LOGL_ERROR, "conduit does not fit", "conduit", conduit,
		    "error", err, NULL);
}

/* A parked request is wanted while its client is connected. */
static bool
db_keep(void *arg, const struct batch_req *p)
{
	struct db *d = arg;

	return d->cl[p->slot].conn != NULL && d->cl[p->slot].gen == p->gen;
}

/*
 * Applies the changes of this turn and the parked ones whose time has come
 * in one batch, then answers them. Nothing is acknowledged into a file
 * that is not at the path any more (removed, replaced, truncated): a
 * restart would not see it.
 */
static void
db_run_batch(struct db *d)
{
	int64_t mono = now_ns(CLOCK_MONOTONIC);
	char err[512] = "";
	uint64_t nfail;
	bool any_ok;

	batch_revisit(d->b, mono, db_keep, d);
	if (batch_len(d->b) == 0)
		return;
	if (db_check_files(d)) {
		nfail = batch_run(d->b, now_ns(CLOCK_REALTIME), mono, &any_ok,
		    err, sizeof(err));
		if (nfail > 0) {
			log_kv(LOGL_DEBUG, "batch failed, applying its "
			    "requests one by one", "error", err, NULL);
			db_cond_fail(d, &d->writes, nfail, err);
		}
		if (any_ok)
			db_cond_ok(d, &d->writes);
	}
	if (!db_check_files(d))
		batch_fail(d->b, GRPC_STATUS_UNAVAILABLE, "storage: the data "
		    "file was removed or replaced while in use", false);
	batch_answer(d->b, db_answer, d);
}

/* Collects Dump records into reply frames of DB_DUMP_CHUNK records. */
struct dump_ctx {
	struct db *d;			/* the worker */
	struct batch_req *p;		/* the Dump request */
	Ipamd__V1__Record recs[DB_DUMP_CHUNK];	/* this chunk */
	char cidrs[DB_DUMP_CHUNK][PFX_STRLEN];	/* its cidr texts */
	char *ids[DB_DUMP_CHUNK][3];	/* its id, name, parent id copies */
	size_t n;			/* records in this chunk */
	bool failed;			/* out of memory: stop */
};

/* Sends the records collected so far as one Reply. */
static void
db_dump_flush(struct dump_ctx *x, bool more)
{
	Ipamd__V1__Reply r = IPAMD__V1__REPLY__INIT;
	Ipamd__V1__Record *ptrs[DB_DUMP_CHUNK];
	size_t i, j;

	for (i = 0; i < x->n; i++)
		ptrs[i] = &x->recs[i];
	r.n_records = x->n;
	r.records = ptrs;
	r.more = more;
	db_send(x->d, x->p, &r);
	for (i = 0; i < x->n; i++)
		for (j = 0; j < 3; j++)
			free(x->ids[i][j]);
	x->n = 0;
}

static int
db_dump_one(void *arg, const struct reg_record *rec)
{
	struct dump_ctx *x = arg;
	Ipamd__V1__Record *o = &x->recs[x->n];
	char **ids = x->ids[x->n];

	ipamd__v1__record__init(o);
	ids[0] = strdup(rec->id);
	ids[1] = strdup(rec->name);
	ids[2] = strdup(rec->parent_id);
	if (ids[0] == NULL || ids[1] == NULL || ids[2] == NULL) {
		free(ids[0]);
		free(ids[1]);
		free(ids[2]);
		x->failed = true;
		return 1;
	}
	pfx_format(&rec->cidr, x->cidrs[x->n]);
	o->id = ids[0];
	o->name = ids[1];
	o->parent_id = ids[2];
	o->cidr = x->cidrs[x->n];
	o->updated_at = rec->updated_at;
	o->expirable = rec->expirable;
	o->level = rec->level;
	o->children = rec->children;
	o->usable = rec->usable;
	if (++x->n == DB_DUMP_CHUNK)
		db_dump_flush(x, true);
	return 0;
}

/* Answers a Dump: the walk is short (in-memory), frames stay capped. */
static void
db_answer_dump(struct db *d, struct batch_req *p)
{
	struct dump_ctx *x = calloc(1, sizeof(*x));
	Ipamd__V1__Dump *q = p->req->dump;

	if (x == NULL) {
		db_fail(p, GRPC_STATUS_INTERNAL, "out of memory");
		db_reply(d, p);
		return;
	}
	x->d = d;
	x->p = p;
	(void)reg_walk(d->reg, q->conduit, q->node, db_dump_one, x);
	if (x->failed) {
		x->n = 0;
		db_fail(p, GRPC_STATUS_INTERNAL, "out of memory");
		db_reply(d, p);
	} else {
		db_dump_flush(x, false);
		d->requests++;
	}
	free(x);
}

/* Collects Check problems. */
struct check_ctx {
	Ipamd__V1__Problem *v;		/* problems, DB_MAX_PROBLEMS at most */
	size_t n;			/* how many */
	size_t total;			/* how many were found */
};

static void
db_check_one(void *arg, const struct reg_problem *pr)
{
	struct check_ctx *x = arg;
	Ipamd__V1__Problem *o;

	if (x->total++ >= DB_MAX_PROBLEMS)
		return;
	o = &x->v[x->n];
	ipamd__v1__problem__init(o);
	o->id = strdup(pr->id);
	o->kind = strdup(pr->kind);
	o->what = strdup(pr->what);
	if (o->id == NULL || o->kind == NULL || o->what == NULL) {
		free(o->id);
		free(o->kind);
		free(o->what);
		return;
	}
	x->n++;
}

/* Answers a Check from the index. */
static void
db_answer_check(struct db *d, struct batch_req *p)
{
	Ipamd__V1__Reply r = IPAMD__V1__REPLY__INIT;
	Ipamd__V1__Problem *ptrs[DB_MAX_PROBLEMS];
	struct check_ctx x = { 0 };
	char msg[128];
	size_t i;

	x.v = calloc(DB_MAX_PROBLEMS, sizeof(*x.v));
	if (x.v == NULL) {
		db_fail(p, GRPC_STATUS_INTERNAL, "out of memory");
		db_reply(d, p);
		return;
	}
	(void)reg_check(d->reg, now_ns(CLOCK_REALTIME), d->cfg->gc_enabled ?
	    d->cfg->gc_threshold_ns : 0, db_check_one, &x);
	for (i = 0; i < x.n; i++)
		ptrs[i] = &x.v[i];
	snprintf(msg, sizeof(msg), x.total > x.n ? "%zu problems, first %zu "
	    "listed" : "%zu problems", x.total, x.n);
	r.message = msg;
	r.n_problems = x.n;
	r.problems = ptrs;
	r.record_count = reg_count(d->reg);
	db_send(d, p, &r);
	d->requests++;
	for (i = 0; i < x.n; i++) {
		free(x.v[i].id);
		free(x.v[i].kind);
		free(x.v[i].what);
	}
	free(x.v);
}

/* Answers a Stats request: the counters the metrics endpoint shows. */
static void
db_answer_stats(struct db *d, struct batch_req *p)
{
	Ipamd__V1__Reply r = IPAMD__V1__REPLY__INIT;
	Ipamd__V1__DbStats s = IPAMD__V1__DB_STATS__INIT;
	const struct batch_stats *bs = batch_stats(d->b);
	struct store_health h;

	d->requests++;
	s.commits = store_commit_count(d->st);
	s.batches = bs->batches;
	s.batched = bs->batched;
	s.requests = d->requests;
	s.gc_runs = d->gc_runs;
	s.gc_reaped = d->gc_reaped;
	s.cooling = reg_count_cooling(d->reg);
	s.records = reg_count(d->reg);
	s.n_batch_sizes = BATCH_SIZE_BUCKETS;
	s.batch_sizes = (uint64_t *)bs->sizes;
	store_health(d->st, &h);
	s.commit_failures = h.commit_failures;
	s.checkpoint_failures = h.ckpt_failures;
	r.stats = &s;
	db_send(d, p, &r);
}

/*
 * What each role may ask (Hello aside, which must come first and once):
 * the api worker allocates and releases for its gRPC clients; the nsp
 * worker alone changes the conduit list; the admin path (ipamctl through
 * the api's Admin service, tests) reads and releases. Any role may Ping and
 * ask for Stats.
 */
static bool
db_role_allows(int role, Ipamd__V1__Request__BodyCase body)
{
	if (body == IPAMD__V1__REQUEST__BODY_PING ||
	    body == IPAMD__V1__REQUEST__BODY_STATS)
		return true;
	switch (role) {
	case IPAMD__V1__ROLE__ROLE_API:
		return body == IPAMD__V1__REQUEST__BODY_ALLOCATE ||
		    body == IPAMD__V1__REQUEST__BODY_RELEASE;
	case IPAMD__V1__ROLE__ROLE_NSP:
		return body == IPAMD__V1__REQUEST__BODY_SYNC_CONDUITS;
	case IPAMD__V1__ROLE__ROLE_CTL:
		return body == IPAMD__V1__REQUEST__BODY_DUMP ||
		    body == IPAMD__V1__REQUEST__BODY_CHECK ||
		    body == IPAMD__V1__REQUEST__BODY_RELEASE;
	default:
		return false;
	}
}

/* Name of a role for logs. */
static const char *
db_role_name(int role)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
	    &ipamd__v1__role__descriptor, role);

	return v != NULL ? v->name : "unknown";
}

/*
 * Refuses, with PERMISSION_DENIED and a log line, a request its sender's
 * role may not make (a second Hello included); the connection stays open
 * and nothing changes. Returns true if it did (p's answer is filled).
 */
static bool
db_refuse(struct db *d, struct batch_req *p)
{
	struct client *c = &d->cl[p->slot];
	Ipamd__V1__Request *q = p->req;
	const ProtobufCFieldDescriptor *f;

	if (q->body_case == IPAMD__V1__REQUEST__BODY_HELLO ? c->role == 0 :
	    db_role_allows(c->role, q->body_case))
		return false;
	f = protobuf_c_message_descriptor_get_field(
	    &ipamd__v1__request__descriptor, (unsigned)q->body_case);
	log_kv(LOGL_WARNING, "request refused: not allowed for the sender's "
	    "role", "request", f != NULL ? f->name : "?", "role",
	    db_role_name(c->role), NULL);
	db_fail(p, GRPC_STATUS_PERMISSION_DENIED, "%s is not allowed for role %s",
	    f != NULL ? f->name : "this request", db_role_name(c->role));
	return true;
}

/*
 * The one dispatch of a request: refused if its sender's role may not
 * make it, answered at once if it changes nothing, else checked and queued
 * for this turn's batch. Takes p->req. Returns 0, or -1 when the request
 * cannot be queued (out of memory; p->req is freed).
 */
static int
db_dispatch(struct db *d, struct batch_req *p)
{
	struct client *c = &d->cl[p->slot];
	Ipamd__V1__Request *q = p->req;

	if (db_refuse(d, p)) {
		db_reply(d, p);
	} else if (q->body_case == IPAMD__V1__REQUEST__BODY_HELLO) {
		c->role = q->hello->role;
		log_fmt(LOGL_DEBUG, "hello from role %d pid %d", c->role,
		    q->hello->pid);
		db_reply(d, p);
	} else if (q->body_case == IPAMD__V1__REQUEST__BODY_PING) {
		db_reply(d, p);
	} else if (q->body_case == IPAMD__V1__REQUEST__BODY_DUMP) {
		db_answer_dump(d, p);
	} else if (q->body_case == IPAMD__V1__REQUEST__BODY_CHECK) {
		db_answer_check(d, p);
	} else if (q->body_case == IPAMD__V1__REQUEST__BODY_STATS) {
		db_answer_stats(d, p);
	} else if (!db_check(d, p)) {
		db_reply(d, p);
	} else {
		p->strict = c->role == IPAMD__V1__ROLE__ROLE_CTL;
		if (batch_add(d->b, p) == 0)
			return 0;
		batch_req_free(p);
		return -1;
	}
	batch_req_free(p);
	return 0;
}

/* Reads every complete frame of one client into the batch. */
static void
db_client_read(struct db *d, int slot)
{
	struct client *c = &d->cl[slot];
	const uint8_t *data;
	size_t len;
	ssize_t n;
	int rc;

	for (;;) {
		n = ipc_conn_fill(c->conn);
		if (n == 0) {
			db_client_close(d, slot, "peer closed");
			return;
		}
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			db_client_close(d, slot, strerror(errno));
			return;
		}
		while ((rc = ipc_conn_next(c->conn, &data, &len)) == 1) {
			struct batch_req p = { .slot = slot, .gen = c->gen };
			p.req = ipcmsg_unpack_request(data, len);
			if (p.req == NULL || (c->role == 0 &&
			    p.req->body_case != IPAMD__V1__REQUEST__BODY_HELLO)) {
				log_kv(LOGL_WARNING, "malformed request frame "
				    "or no hello: closing the connection",
				    "role", db_role_name(c->role), NULL);
				batch_req_free(&p);
				db_client_close(d, slot, "protocol error");
				return;
			}
			if (db_dispatch(d, &p) != 0) {
				db_client_close(d, slot, "out of memory");
				return;
			}
		}
		if (rc < 0) {
			log_warn("oversized frame: closing the connection");
			db_client_close(d, slot, "oversized frame");
			return;
		}
		if (n < 0 || batch_len(d->b) >= DB_MAX_BATCH)
			return;
	}
}

/*
 * Accepts every waiting connection. A peer of another uid than ours is
 * refused (SO_PEERCRED): the 0700 runtime directory keeps other users out
 * already, this still holds if its mode or the socket's is loosened.
 */
static void
db_accept(struct db *d, int lfd)
{
	int fd, slot;
	uid_t uid;

	while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >=
	    0) {
		if (ipc_peer_uid(fd, &uid) != 0) {
			log_warn("refusing a connection: SO_PEERCRED: %s",
			    strerror(errno));
			close(fd);
			continue;
		}
		if (uid != geteuid()) {
			log_warn("refusing a connection from uid %lu (only uid "
			    "%lu may connect)", (unsigned long)uid,
			    (unsigned long)geteuid());
			close(fd);
			continue;
		}
		for (slot = 0; slot < DB_MAX_CLIENTS; slot++)
			if (d->cl[slot].conn == NULL)
				break;
		if (slot == DB_MAX_CLIENTS) {
			log_warn("too many connections (%d): refusing one",
			    DB_MAX_CLIENTS);
			close(fd);
			continue;
		}
		if ((d->cl[slot].conn = ipc_conn_new(fd)) == NULL) {
			close(fd);
			continue;
		}
		d->cl[slot].role = 0;
	}
}

static void
db_heartbeat(struct db *d, int status_fd)
{
	char status[160];

	if (status_fd < 0)
		return;
	snprintf(status, sizeof(status), "db: %zu records, %zu addresses, "
	    "%llu commits, %zu cooling", reg_count(d->reg),
	    reg_count_children(d->reg),
	    (unsigned long long)store_commit_count(d->st),
	    reg_count_cooling(d->reg));
	if (ipcmsg_send_status(status_fd, true, status) != 0)
		log_warn("cannot write to the supervisor: %s", strerror(errno));
}

static void
db_gc(struct db *d)
{
	char err[512];
	size_t reaped = 0;
	int64_t now = now_ns(CLOCK_REALTIME);

	if (reg_begin(d->reg, err, sizeof(err)) != REG_OK ||
	    reg_gc(d->reg, now, d->cfg->gc_threshold_ns, &reaped, err,
	    sizeof(err)) != REG_OK) {
		reg_rollback(d->reg);
		log_kv(LOGL_DEBUG, "garbage collection failed", "error", err,
		    NULL);
		db_cond_fail(d, &d->writes, 1, err);
		return;
	}
	if (reg_commit(d->reg, err, sizeof(err)) != REG_OK) {
		log_kv(LOGL_DEBUG, "garbage collection commit failed", "error",
		    err, NULL);
		db_cond_fail(d, &d->writes, 1, err);
		return;
	}
	db_cond_ok(d, &d->writes);
	(void)db_check_files(d);
	d->gc_runs++;
	d->gc_reaped += reaped;
	log_kv(reaped ? LOGL_INFO : LOGL_DEBUG, "garbage collection",
	    LOG_INT("reaped", reaped), NULL);
}

int
db_serve(const struct cfg *cfg, struct store *st, struct reg *reg,
    int lfd, int status_fd)
{
	struct db d = { .cfg = cfg, .st = st, .reg = reg,
	    .writes = { .what = "storage writes" },
	    .ckpts = { .what = "checkpoints" } };
	const char *ev = getenv(DB_ENV_SUMMARY_MS);
	struct pollfd pfd[3 + DB_MAX_CLIENTS];
	int map[3 + DB_MAX_CLIENTS];
	int64_t mono, next_hb, next_gc, wake;
	sigset_t mask;
	int sfd, n, i, timeout;
	bool stop = false;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	if ((sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) < 0)
		log_fatal("signalfd: %s", strerror(errno));
	/* The inherited listening socket may be blocking: db_accept
	 * loops until EAGAIN. */
	if (fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK) < 0)
		log_fatal("listening socket: %s", strerror(errno));
	d.summary_ns = DB_SUMMARY_MS * DB_NS_PER_MS;
	if (ev != NULL && atoll(ev) > 0)
		d.summary_ns = atoll(ev) * DB_NS_PER_MS;
	mono = now_ns(CLOCK_MONOTONIC);
	next_hb = mono;
	next_gc = cfg->gc_enabled ? mono + cfg->gc_interval_ns : INT64_MAX;
	if ((d.b = batch_new(reg, db_note, NULL)) == NULL)
		log_fatal("out of memory");
	log_info("serving");

	while (!stop) {
		n = 0;
		pfd[n++] = (struct pollfd){ .fd = sfd, .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = status_fd, .events = POLLIN };
		for (i = 0; i < DB_MAX_CLIENTS; i++) {
			if (d.cl[i].conn == NULL)
				continue;
			map[n] = i;
			pfd[n++] = (struct pollfd){
			    .fd = ipc_conn_fd(d.cl[i].conn),
			    .events = POLLIN | (ipc_conn_pending(d.cl[i].conn) ?
			    POLLOUT : 0) };
		}
		mono = now_ns(CLOCK_MONOTONIC);
		wake = next_hb;
		if (next_gc < wake)
			wake = next_gc;
		if (batch_next_deadline(d.b) < wake)
			wake = batch_next_deadline(d.b);
		timeout = wake <= mono ? 0 : (int)((wake - mono) / DB_NS_PER_MS + 1);
		if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR)
			log_fatal("poll: %s", strerror(errno));

		if (pfd[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) > 0)
				log_fmt(LOGL_INFO, "signal %u: stopping",
				    si.ssi_signo);
			stop = true;
		}
		if (status_fd >= 0 && pfd[2].revents) {
			char b[256];
			ssize_t r = read(status_fd, b, sizeof(b));
			if (r == 0 || (r < 0 && errno != EAGAIN)) {
				log_warn("supervisor gone: stopping");
				stop = true;
			}
		}
		if (pfd[1].revents & POLLIN)
			db_accept(&d, lfd);
		for (i = 3; i < n; i++) {
			int slot = map[i];
			if (d.cl[slot].conn == NULL)
				continue;
			if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
				db_client_read(&d, slot);
		}
		db_run_batch(&d);
		/* A conduit added by this batch may release parked calls. */
		db_run_batch(&d);
		for (i = 0; i < DB_MAX_CLIENTS; i++)
			if (d.cl[i].conn != NULL &&
			    ipc_conn_pending(d.cl[i].conn) &&
			    ipc_conn_flush(d.cl[i].conn) < 0)
				db_client_close(&d, i, "write failed");
		if (d.files_gone)
			stop = true;
		mono = now_ns(CLOCK_MONOTONIC);
		if (mono >= next_gc) {
			db_gc(&d);
			next_gc = mono + cfg->gc_interval_ns;
		}
		if (mono >= next_hb) {
			db_check_ckpts(&d);
			db_cond_tick(&d, &d.writes, mono);
			db_cond_tick(&d, &d.ckpts, mono);
			(void)db_check_files(&d);
			db_heartbeat(&d, status_fd);
			next_hb = mono + 1000 * DB_NS_PER_MS;
		}
	}
	/* Everything acknowledged is committed; parked calls cannot wait. */
	batch_fail(d.b, GRPC_STATUS_UNAVAILABLE, "db worker stopping", true);
	batch_answer(d.b, db_answer, &d);
	for (i = 0; i < DB_MAX_CLIENTS; i++) {
		if (d.cl[i].conn != NULL)
			(void)ipc_conn_flush(d.cl[i].conn);
		db_client_close(&d, i, "stopping");
	}
	close(sfd);
	log_fmt(LOGL_INFO, "stopped after %llu batches, %llu requests",
	    (unsigned long long)batch_stats(d.b)->batches,
	    (unsigned long long)d.requests);
	batch_free(d.b);
	return d.files_gone ? IPCMSG_EXIT_PERMANENT : 0;
}
