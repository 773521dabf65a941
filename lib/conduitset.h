/*
 * conduitset.h - the NSP worker's memory of conduits and the diff that
 * turns one full conduit list into a SyncConduits request.
 *
 * NSP streams the whole conduit list of the trench on every change. The
 * worker sends every listed conduit as "add" (the db ignores existing ones)
 * and removes only conduits that an earlier list of this run named and the
 * current one does not. A worker that restarts remembers nothing, so an
 * empty or partial first list deletes nothing.
 *
 * Removal is two-phase: conduitset_diff reports a conduit as removed, and
 * it is forgotten only by conduitset_commit once the db acknowledged the
 * request. A request lost on the way is therefore recomputed with the same
 * removals. No logging, no exit.
 */
#ifndef IPAM_CONDUITSET_H
#define IPAM_CONDUITSET_H

#include <stdbool.h>
#include <stddef.h>

#include "bounds.h"

#define CONDUITSET_MAX 4096		/* most entries accepted in one list */

/* The conduits seen in this run (opaque). */
struct conduitset;

/* The result of one list: what to send to the db. Owns its strings. */
struct conduitset_diff {
	char **add;		/* listed conduits, list order, no duplicates */
	size_t nadd;		/* entries in add */
	char **remove;		/* seen before, not listed now; name order */
	size_t nremove;		/* entries in remove */
	size_t nskipped;	/* entries ignored: empty or too long name */
	size_t ndup;		/* entries ignored: repeated name */
};

/* An empty set. NULL on out of memory. */
struct conduitset *conduitset_new(void);

/* Frees the set. Accepts NULL. */
void conduitset_free(struct conduitset *s);

/*
 * Takes the full list names[0..n) as the current one and fills d (which
 * the caller zeroed or cleared). Invalid names and repeats are counted and
 * left out. Every valid listed name becomes "seen". Returns 0, or -1 with
 * errno E2BIG (n > CONDUITSET_MAX: the set is unchanged) or ENOMEM (d is
 * cleared; names may already be marked seen, which only ever allows their
 * removal later, as intended for listed names).
 */
int conduitset_diff(struct conduitset *s, const char *const *names, size_t n,
    struct conduitset_diff *d);

/*
 * Forgets the conduits of d->remove after the db removed them, except any
 * that the latest list names again. Call it with the diff of the latest
 * list only.
 */
void conduitset_commit(struct conduitset *s, const struct conduitset_diff *d);

/* Frees the strings of d and zeroes it. Accepts a zeroed diff. */
void conduitset_diff_clear(struct conduitset_diff *d);

/* Number of distinct valid conduits in the latest list. */
size_t conduitset_listed(const struct conduitset *s);

/* Number of conduits remembered: listed now, or removed but not committed. */
size_t conduitset_seen(const struct conduitset *s);

/* True if name is remembered (see conduitset_seen). */
bool conduitset_contains(const struct conduitset *s, const char *name);

#endif
