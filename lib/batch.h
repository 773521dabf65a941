/*
 * batch.h - the db worker's group commit.
 *
 * The changes asked by the requests of one turn (Allocate, Release,
 * SyncConduits) are applied in one registry transaction, one commit, and
 * only then answered: an answer means the change is on disk. If any change
 * hits a storage error or the commit fails, the batch is undone and its
 * requests are applied again one transaction each, so that one bad request
 * cannot fail its neighbours. An Allocate for a conduit that is not known
 * yet, with a wait_ms, is parked until a SyncConduits adds the conduit or
 * its wait runs out.
 *
 * Requests reach the batch already checked by the caller (allowed for
 * their sender, a child with a known family and names within bounds, the
 * served trench). No sockets, no logging: answers and notes go to the
 * caller's functions.
 */
#ifndef IPAM_BATCH_H
#define IPAM_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ipamd/v1/ipamd.pb-c.h"
#include "registry.h"

#define BATCH_SIZE_BUCKETS 13		/* batch sizes 1, 2, 4, ... 4096 */

/* One request and, once applied, its answer. */
struct batch_req {
	Ipamd__V1__Request *req;	/* the request; the batch owns it */
	int slot;			/* the caller's: who asked */
	uint64_t gen;			/* the caller's: who asked */
	bool strict;			/* Release: NOT_FOUND naming the first
					 * missing level if nothing matches,
					 * and the address released */
	int64_t deadline;		/* parked: CLOCK_MONOTONIC ns limit */
	bool park;			/* waiting for its conduit */
	bool created;			/* Allocate: a new child record */
	int code;			/* answer: grpc_status_code */
	unsigned plen;			/* Allocate: node prefix length */
	char addr[PFX_ADDRSTRLEN];	/* Allocate, strict Release: address */
	char msg[512];			/* error text; SyncConduits: the last
					 * conduit that did not fit */
};

/* Counters since batch_new. */
struct batch_stats {
	uint64_t batches;		/* batches applied */
	uint64_t batched;		/* requests in them */
	uint64_t sizes[BATCH_SIZE_BUCKETS]; /* batches of size <= 2^i */
};

/* Receives an answered request; the batch frees r->req afterwards. */
typedef void (*batch_answer_fn)(void *arg, struct batch_req *r);

/* A SyncConduits side effect for the caller's log, as it is applied:
 * conduit removed (err NULL), or conduit does not fit and is skipped
 * (err: why). */
typedef void (*batch_note_fn)(void *arg, const char *conduit,
    const char *err);

/* Says whether a parked request is still wanted (its asker is there). */
typedef bool (*batch_keep_fn)(void *arg, const struct batch_req *r);

/* A batch over reg (not owned). NULL when out of memory. */
struct batch *batch_new(struct reg *reg, batch_note_fn note, void *arg);

/* Frees b and every request it holds, unanswered. Accepts NULL. */
void batch_free(struct batch *b);

/* Queues a copy of r (req, slot, gen, strict; the rest zero) for the next
 * batch_run and takes r->req. Returns 0, or -1 out of memory (r->req stays
 * the caller's). */
int batch_add(struct batch *b, const struct batch_req *r);

/* Frees r->req. */
void batch_req_free(struct batch_req *r);

/* Requests queued for the next batch_run. */
size_t batch_len(const struct batch *b);

/* Earliest deadline of the parked requests, INT64_MAX if none. */
int64_t batch_next_deadline(const struct batch *b);

/*
 * Queues again the parked requests whose deadline is at or before mono,
 * or every one of them when a SyncConduits was applied since the last
 * call. Those keep() says are no longer wanted are dropped unanswered.
 */
void batch_revisit(struct batch *b, int64_t mono, batch_keep_fn keep,
    void *arg);

/*
 * Applies the queued requests at now (CLOCK_REALTIME ns; mono is
 * CLOCK_MONOTONIC ns, for wait deadlines) and fills their answers; nothing
 * is answered yet (batch_answer). Returns the transactions that failed (0:
 * all committed), with the latest storage error in err; *any_ok tells
 * whether one committed.
 */
uint64_t batch_run(struct batch *b, int64_t now, int64_t mono, bool *any_ok,
    char *err, size_t errlen);

/* Makes the answer of every queued request (and, with parked, of every
 * parked one) the error code, msg, whatever was applied. */
void batch_fail(struct batch *b, int code, const char *msg, bool parked);

/* Hands every queued request that is not parked to fn, frees it, and parks
 * the others. The queue is empty afterwards. */
void batch_answer(struct batch *b, batch_answer_fn fn, void *arg);

/* The counters. */
const struct batch_stats *batch_stats(const struct batch *b);

#endif
