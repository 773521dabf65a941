/*
 * batch.c - group commit of the db worker's changes, with parking of
 * allocations that wait for their conduit. See batch.h.
 */
#include "batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/status.h>

#define BATCH_NS_PER_MS 1000000LL

/*
 * An ipamd.v1 Family goes straight to the registry and the prefix
 * functions as a PFX_V4/PFX_V6 family: the numbers must stay equal. The
 * public ipam.v1 IPFamily (IPV4 = 0, IPV6 = 1) differs by design and is
 * mapped by validate_child.
 */
_Static_assert((int)IPAMD__V1__FAMILY__FAMILY_IPV4 == (int)PFX_V4,
    "ipamd.v1 FAMILY_IPV4 must equal PFX_V4");
_Static_assert((int)IPAMD__V1__FAMILY__FAMILY_IPV6 == (int)PFX_V6,
    "ipamd.v1 FAMILY_IPV6 must equal PFX_V6");

/* A growable array of requests. */
struct batch_list {
	struct batch_req *v;		/* entries */
	size_t n, cap;			/* used and allocated */
};

struct batch {
	struct reg *reg;		/* the index and its store */
	batch_note_fn note;		/* SyncConduits side effects */
	void *arg;			/* note's argument */
	struct batch_list queue;	/* requests of this turn */
	struct batch_list parked;	/* waiting for their conduit */
	bool conduits_changed;		/* a SyncConduits since batch_revisit */
	struct batch_stats stats;	/* counters */
};

static int
batch_push(struct batch_list *l, const struct batch_req *r)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct batch_req *v = realloc(l->v, cap * sizeof(*v));
		if (v == NULL)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = *r;
	return 0;
}

void
batch_req_free(struct batch_req *r)
{
	if (r->req != NULL)
		ipamd__v1__request__free_unpacked(r->req, NULL);
	r->req = NULL;
}

static void
batch_list_free(struct batch_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		batch_req_free(&l->v[i]);
	free(l->v);
}

/* Makes r's answer the error code, msg. */
static void
batch_set(struct batch_req *r, int code, const char *msg)
{
	r->created = false;
	r->addr[0] = '\0';
	r->plen = 0;
	r->code = code;
	snprintf(r->msg, sizeof(r->msg), "%s", msg);
}

struct batch *
batch_new(struct reg *reg, batch_note_fn note, void *arg)
{
	struct batch *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	b->reg = reg;
	b->note = note;
	b->arg = arg;
	return b;
}

void
batch_free(struct batch *b)
{
	if (b == NULL)
		return;
	batch_list_free(&b->queue);
	batch_list_free(&b->parked);
	free(b);
}

int
batch_add(struct batch *b, const struct batch_req *r)
{
	return batch_push(&b->queue, r);
}

size_t
batch_len(const struct batch *b)
{
	return b->queue.n;
}

int64_t
batch_next_deadline(const struct batch *b)
{
	int64_t t = INT64_MAX;
	size_t i;

	for (i = 0; i < b->parked.n; i++)
		if (b->parked.v[i].deadline < t)
			t = b->parked.v[i].deadline;
	return t;
}

void
batch_revisit(struct batch *b, int64_t mono, batch_keep_fn keep, void *arg)
{
	size_t i, kept = 0;

	for (i = 0; i < b->parked.n; i++) {
		struct batch_req *r = &b->parked.v[i];
		if (!keep(arg, r))
			batch_req_free(r);
		else if ((!b->conduits_changed && mono < r->deadline) ||
		    batch_push(&b->queue, r) != 0)
			b->parked.v[kept++] = *r;
	}
	b->parked.n = kept;
	b->conduits_changed = false;
}

/* What batch_lookup looks for and what it saw, during the walk. */
struct batch_seen {
	const Ipamd__V1__Child *ch;	/* the child asked for */
	bool trench, conduit, node;	/* levels seen in its family */
	char node_id[1024];		/* id of the node record */
	pfx_addr addr;			/* the child's address */
};

static int
batch_lookup_one(void *arg, const struct reg_record *rec)
{
	struct batch_seen *x = arg;
	const Ipamd__V1__Child *ch = x->ch;

	if (rec->cidr.family != (int)ch->family)
		return 0;
	switch (rec->level) {
	case 0:
		x->trench = true;
		break;
	case 1:
		x->conduit = x->conduit || strcmp(rec->name, ch->conduit) == 0;
		break;
	case 2:
		if (strcmp(rec->name, ch->node) == 0) {
			x->node = true;
			snprintf(x->node_id, sizeof(x->node_id), "%s",
			    rec->id);
		}
		break;
	default:
		if (x->node && strcmp(rec->parent_id, x->node_id) == 0 &&
		    strcmp(rec->name, ch->name) == 0) {
			x->addr = rec->cidr.addr;
			return 1;
		}
		break;
	}
	return 0;
}

/*
 * A strict release must say what it did: finds the child in the index.
 * Found: its address goes in the answer and true is returned. Else the
 * answer is NOT_FOUND naming the first level missing (family not served,
 * conduit, node or child) and false is returned.
 */
static bool
batch_lookup(struct batch *b, struct batch_req *r, const Ipamd__V1__Child *ch)
{
	struct batch_seen x;

	memset(&x, 0, sizeof(x));
	x.ch = ch;
	if (reg_walk(b->reg, ch->conduit, ch->node, batch_lookup_one, &x) ==
	    1) {
		pfx_format_addr((int)ch->family, x.addr, r->addr);
		return true;
	}
	r->code = GRPC_STATUS_NOT_FOUND;
	if (!x.trench)
		snprintf(r->msg, sizeof(r->msg), "trench %.200s serves no "
		    "IPv%d", ch->trench, (int)ch->family);
	else if (!x.conduit)
		snprintf(r->msg, sizeof(r->msg), "no conduit %.200s in trench "
		    "%.200s", ch->conduit, ch->trench);
	else if (!x.node)
		snprintf(r->msg, sizeof(r->msg), "no node %.200s in conduit "
		    "%.200s", ch->node, ch->conduit);
	else
		snprintf(r->msg, sizeof(r->msg), "no child %.100s on node "
		    "%.150s of conduit %.150s", ch->name, ch->node,
		    ch->conduit);
	return false;
}

/* Applies an Allocate; parks it when its conduit is unknown and it may
 * still wait. */
static int
batch_allocate(struct batch *b, struct batch_req *r, int64_t now,
    int64_t mono, char *err, size_t errlen)
{
	const Ipamd__V1__Allocate *a = r->req->allocate;
	const Ipamd__V1__Child *ch = a->child;
	struct reg_result res;
	size_t n;
	int rc;

	rc = reg_allocate(b->reg, ch->family, ch->conduit, ch->node, ch->name,
	    now, &res, err, errlen);
	if (rc == REG_ENOCONDUIT && a->wait_ms > 0) {
		if (r->deadline == 0)
			r->deadline = mono + a->wait_ms * BATCH_NS_PER_MS;
		if (mono < r->deadline) {
			r->park = true;
			return REG_OK;
		}
		n = strlen(err);
		snprintf(err + n, errlen - n, " (waited %u ms)", a->wait_ms);
	}
	if (rc == REG_OK) {
		memcpy(r->addr, res.address, sizeof(r->addr));
		r->plen = res.prefix_len;
		r->created = res.created;
	}
	return rc;
}

/* Applies a SyncConduits: removals first, then additions in list order. A
 * conduit that does not fit must not block the others, nor later lists:
 * it is skipped (and tried again with the next list), the rest applies. */
static int
batch_sync(struct batch *b, struct batch_req *r, int64_t now, char *err,
    size_t errlen)
{
	const Ipamd__V1__SyncConduits *s = r->req->sync_conduits;
	size_t i;
	int rc = REG_OK;

	for (i = 0; rc == REG_OK && i < s->n_remove; i++) {
		rc = reg_remove_conduit(b->reg, s->remove[i], err, errlen);
		if (rc == REG_OK && b->note != NULL)
			b->note(b->arg, s->remove[i], NULL);
	}
	for (i = 0; rc == REG_OK && i < s->n_add; i++) {
		rc = reg_add_conduit(b->reg, s->add[i], now, err, errlen);
		if (rc != REG_EXHAUSTED)
			continue;
		if (b->note != NULL)
			b->note(b->arg, s->add[i], err);
		snprintf(r->msg, sizeof(r->msg), "%.100s does not fit: %.300s",
		    s->add[i], err);
		rc = REG_OK;
	}
	b->conduits_changed = true;
	return rc;
}

/*
 * Applies one request inside the open transaction and fills its answer.
 * Returns the registry status (REG_ESTORE: roll the transaction back).
 */
static int
batch_apply(struct batch *b, struct batch_req *r, int64_t now, int64_t mono)
{
	Ipamd__V1__Request *q = r->req;
	char err[512] = "";
	int rc;

	r->park = r->created = false;
	r->code = GRPC_STATUS_OK;
	r->msg[0] = r->addr[0] = '\0';
	r->plen = 0;
	switch (q->body_case) {
	case IPAMD__V1__REQUEST__BODY_ALLOCATE:
		rc = batch_allocate(b, r, now, mono, err, sizeof(err));
		break;
	case IPAMD__V1__REQUEST__BODY_RELEASE: {
		const Ipamd__V1__Child *ch = q->release->child;
		if (r->strict && !batch_lookup(b, r, ch))
			return REG_OK;
		rc = reg_release(b->reg, ch->family, ch->conduit, ch->node,
		    ch->name, now, err, sizeof(err));
		break;
	}
	case IPAMD__V1__REQUEST__BODY_SYNC_CONDUITS:
		rc = batch_sync(b, r, now, err, sizeof(err));
		break;
	default:
		batch_set(r, GRPC_STATUS_INVALID_ARGUMENT,
		    "unexpected request");
		return REG_OK;
	}
	if (rc != REG_OK)
		batch_set(r, reg_grpc_status(rc), err);
	return rc;
}

/*
 * Applies the queued requests from..to-1 in one transaction. Returns 0,
 * or -1 with err when it was undone: a request that hit a storage error
 * keeps that error as its answer; a failed begin or commit is the answer
 * of every one of them.
 */
static int
batch_txn(struct batch *b, size_t from, size_t to, int64_t now,
    int64_t mono, char *err, size_t errlen)
{
	struct batch_req *v = b->queue.v;
	char msg[sizeof(v->msg)];
	size_t i;

	if (reg_begin(b->reg, err, errlen) != REG_OK)
		goto fail;
	for (i = from; i < to; i++) {
		if (batch_apply(b, &v[i], now, mono) == REG_ESTORE) {
			reg_rollback(b->reg);
			snprintf(err, errlen, "%s", v[i].msg);
			return -1;
		}
	}
	if (reg_commit(b->reg, err, errlen) == REG_OK)
		return 0;
fail:
	snprintf(msg, sizeof(msg), "storage: %.400s", err);
	for (i = from; i < to; i++) {
		v[i].park = false;
		batch_set(&v[i], GRPC_STATUS_UNAVAILABLE, msg);
	}
	return -1;
}

uint64_t
batch_run(struct batch *b, int64_t now, int64_t mono, bool *any_ok,
    char *err, size_t errlen)
{
	size_t i, n = b->queue.n;
	uint64_t nfail = 0;

	*any_ok = false;
	if (n == 0)
		return 0;
	reg_expire_cooldowns(b->reg, now);
	if (batch_txn(b, 0, n, now, mono, err, errlen) == 0) {
		*any_ok = true;
	} else {
		/* One transaction each: one bad request fails alone. */
		for (nfail = 1, i = 0; i < n; i++) {
			if (batch_txn(b, i, i + 1, now, mono, err, errlen) < 0)
				nfail++;
			else
				*any_ok = true;
		}
	}
	b->stats.batches++;
	b->stats.batched += n;
	for (i = 0; i < BATCH_SIZE_BUCKETS - 1 && ((size_t)1 << i) < n; i++)
		;
	b->stats.sizes[i]++;
	return nfail;
}

void
batch_fail(struct batch *b, int code, const char *msg, bool parked)
{
	size_t i;

	if (parked) {
		for (i = 0; i < b->parked.n; i++)
			if (batch_push(&b->queue, &b->parked.v[i]) != 0)
				batch_req_free(&b->parked.v[i]);
		b->parked.n = 0;
	}
	for (i = 0; i < b->queue.n; i++) {
		b->queue.v[i].park = false;
		batch_set(&b->queue.v[i], code, msg);
	}
}

void
batch_answer(struct batch *b, batch_answer_fn fn, void *arg)
{
	size_t i;

	for (i = 0; i < b->queue.n; i++) {
		struct batch_req *r = &b->queue.v[i];
		if (r->park && batch_push(&b->parked, r) == 0)
			continue;
		if (r->park) {
			r->park = false;
			batch_set(r, GRPC_STATUS_INTERNAL, "out of memory");
		}
		fn(arg, r);
		batch_req_free(r);
	}
	b->queue.n = 0;
}

const struct batch_stats *
batch_stats(const struct batch *b)
{
	return &b->stats;
}
