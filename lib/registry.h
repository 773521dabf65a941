/*
 * registry.h - Meridio's IPAM semantics over the allocator index and the
 * store: trench -> conduit -> node -> child, one tree per IP family.
 *
 * The registry is the db worker's state. It keeps every record in memory
 * (each parent with an alloc_pool of its children and a tree of them by
 * name) and writes every change through the store inside a batch:
 *
 *   reg_begin(); reg_allocate(); reg_release(); ...; reg_commit();
 *
 * A failed commit (or reg_rollback) undoes the batch in memory as well as on
 * disk, so memory and file never disagree. Records are Meridio's: ids
 * "<name>-<parent id>", child cidrs /32 or /128, node and child records
 * expirable except a child named "bridge". No logging, no exit.
 */
#ifndef IPAM_REGISTRY_H
#define IPAM_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/status.h>

#include "pfx.h"
#include "store.h"

struct reg;

/* Result codes; reg_grpc_status maps each to the gRPC status in brackets. */
enum reg_status {
	REG_OK = 0,
	REG_EINVAL = -1,	/* bad argument (INVALID_ARGUMENT) */
	REG_EFAMILY = -2,	/* family not served (FAILED_PRECONDITION) */
	REG_ETRENCH = -3,	/* unknown trench (NOT_FOUND) */
	REG_ENOCONDUIT = -4,	/* conduit not known (yet) (NOT_FOUND) */
	REG_EXHAUSTED = -5,	/* no free prefix (RESOURCE_EXHAUSTED) */
	REG_ESTORE = -6,	/* the store failed: roll the batch back (UNAVAILABLE) */
	REG_EMISMATCH = -7,	/* stored trench prefix differs from config */
	REG_ENOMEM = -8,	/* out of memory (INTERNAL) */
	REG_EDATA = -9,		/* a stored row cannot be read */
};

/*
 * The gRPC status the db worker answers for a registry result: the one
 * mapping from enum reg_status to the codes on the wire (ipamd.v1
 * Reply.code), which the api worker passes on to its client. Codes without
 * a client meaning (mismatch, unreadable row, memory, unknown) are INTERNAL.
 */
grpc_status_code reg_grpc_status(int rc);

/* Child records named so never expire (Meridio's rule). */
#define REG_BRIDGE_NAME "bridge"

/* What the registry serves: the trench and, per family, its pool. */
struct reg_params {
	const char *trench;		/* trench name, e.g. "default" */
	struct {
		bool enabled;		/* this family is served */
		struct pfx prefix;	/* trench prefix */
		unsigned conduit_len;	/* length of conduit prefixes */
		unsigned node_len;	/* length of node prefixes */
	} fam[2];			/* [0] IPv4, [1] IPv6 */
	int64_t node_refresh_ns;	/* damping of node updated_at refreshes */
	int64_t child_refresh_ns;	/* the same for a child's renewal; 0 =
					 * every renewal writes (Meridio) */
	int64_t release_cooldown_ns;	/* a released address stays unused this
					 * long (0 = reusable at once) */
};

/*
 * Called once per problem found while loading (orphan, child outside its
 * parent, overlapping siblings, unparsable cidr): the row is left on disk,
 * untouched, and kept out of the index.
 */
typedef void (*reg_problem_fn)(void *arg, const char *id, const char *what);

/*
 * Loads every row of st into memory and checks the tree. Creates the trench
 * record of each served family that is missing (in one commit). Refuses with
 * REG_EMISMATCH when a stored trench record's prefix differs from the
 * configured one (nothing written), and with REG_EDATA when a row cannot
 * be read (err names its id and column). Returns REG_OK and *out, or an error
 * with err set. The registry uses st but does not own it.
 */
int reg_open(struct reg **out, struct store *st, const struct reg_params *p,
    reg_problem_fn problem, void *arg, char *err, size_t errlen);

/* Frees all memory (not the store). Accepts NULL. */
void reg_close(struct reg *r);

/* Starts a batch (a store transaction). */
int reg_begin(struct reg *r, char *err, size_t errlen);

/* Commits the batch. On failure the batch is undone in memory too and an
 * error is returned. */
int reg_commit(struct reg *r, char *err, size_t errlen);

/* Undoes the batch in memory and on disk. */
void reg_rollback(struct reg *r);

/* Outcome of reg_allocate. */
struct reg_result {
	char address[PFX_ADDRSTRLEN];	/* the child's address */
	unsigned prefix_len;		/* the node prefix length */
	bool created;			/* a new child record was made */
};

/*
 * Allocates (or renews) child name on (conduit, node) of family (PFX_V4 or
 * PFX_V6) inside a batch; now is the time in ns since the epoch.
 */
int reg_allocate(struct reg *r, int family, const char *conduit,
    const char *node, const char *name, int64_t now, struct reg_result *res,
    char *err, size_t errlen);

/* Releases child name at now (ns); unknown conduit/node/child is not an
 * error. With a release cooldown its address stays unused for a while. */
int reg_release(struct reg *r, int family, const char *conduit,
    const char *node, const char *name, int64_t now, char *err,
    size_t errlen);

/* Makes sure conduit exists in every served family (first-fit). Returns
 * REG_OK when it already exists. */
int reg_add_conduit(struct reg *r, const char *conduit, int64_t now,
    char *err, size_t errlen);

/* Removes conduit with everything below it, in every family. */
int reg_remove_conduit(struct reg *r, const char *conduit, char *err,
    size_t errlen);

/* True if conduit exists in the given family. */
bool reg_has_conduit(const struct reg *r, int family, const char *conduit);

/*
 * Removes every expirable record (not named "bridge") whose updated_at is
 * set and older than now - threshold_ns, with everything below it. Sets
 * *reaped to the number of records removed (descendants included).
 */
int reg_gc(struct reg *r, int64_t now, int64_t threshold_ns, size_t *reaped,
    char *err, size_t errlen);

/* Record counts: all records, and children (leaf addresses). */
size_t reg_count(const struct reg *r);
size_t reg_count_children(const struct reg *r);

/*
 * Makes addresses whose release cooldown has passed by now usable again.
 * Call it outside a batch, before each one. Returns how many were freed.
 */
size_t reg_expire_cooldowns(struct reg *r, int64_t now);

/* Released addresses still cooling down. */
size_t reg_count_cooling(const struct reg *r);

/* A record as reg_walk shows it; valid during the callback only. */
struct reg_record {
	const char *id;			/* Meridio's id */
	const char *name;		/* record name */
	const char *parent_id;		/* "" for a trench record */
	struct pfx cidr;		/* the record's prefix */
	int64_t updated_at;		/* ns since the epoch; 0 = NULL */
	bool expirable;			/* GC may reap it */
	unsigned level;			/* 0 trench, 1 conduit, 2 node, 3 child */
	size_t children;		/* direct children */
	size_t usable;			/* child blocks it can hold (node: its
					 * addresses but the first and last) */
};

/*
 * Calls fn for every record of the served trenches, parents first (children
 * in address order), or only for the records on the way to and below
 * conduit and/or node (NULL or "" = no filter). fn returning non-zero stops
 * the walk and is returned.
 */
int reg_walk(struct reg *r, const char *conduit, const char *node,
    int (*fn)(void *arg, const struct reg_record *rec), void *arg);

/* A problem found by reg_check. */
struct reg_problem {
	const char *id;			/* record concerned */
	const char *kind;		/* orphan, outside, overlap, bad-cidr,
					 * bad-id, stale, index */
	const char *what;		/* one line for people */
};

/*
 * Audits the registry without changing it: rows left out at load (they are
 * still on disk), any broken invariant of the index (a child outside its
 * parent, overlapping siblings), and, when threshold_ns > 0, records that
 * garbage collection would reap at now. Calls fn per problem; returns the
 * number of problems.
 */
size_t reg_check(struct reg *r, int64_t now, int64_t threshold_ns,
    void (*fn)(void *arg, const struct reg_problem *p), void *arg);

#endif
