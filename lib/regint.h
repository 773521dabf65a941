/*
 * regint.h - the inside of a struct reg, shared by the files of the
 * registry (registry.c, rec.c, regload.c, regaudit.c); nothing else
 * includes it.
 */
#ifndef IPAM_REGINT_H
#define IPAM_REGINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rec.h"
#include "registry.h"
#include "slab.h"

enum undo_kind {
	UNDO_INSERT,	/* rec was attached: detach and free it */
	UNDO_DETACH,	/* rec was detached: attach it again */
	UNDO_TOUCH,	/* rec's timestamp changed: restore it */
	UNDO_COOL,	/* rec is the newest cooling entry: drop it */
};

struct undo {
	enum undo_kind kind;	/* what to undo */
	struct rec *rec;	/* the record concerned */
	struct rec *parent;	/* its parent (INSERT, DETACH) */
	int64_t updated_at;	/* UNDO_TOUCH: the old value */
	bool expirable;		/* UNDO_TOUCH: the old value */
};

struct reg {
	struct store *st;		/* the file (not owned) */
	struct reg_params p;		/* what we serve (trench name copied) */
	char *trench;			/* owned copy of p.trench */
	struct rec *root[2];		/* our trench record per family, or NULL */
	struct rec **foreign;		/* trench records of other trenches */
	size_t nforeign;		/* entries in foreign */
	struct undo *undo;		/* undo log of the open batch */
	size_t nundo, capundo;		/* its length and capacity */
	bool in_batch;			/* between reg_begin and commit/rollback */
	size_t nrec;			/* attached records */
	size_t nchild;			/* attached child (address) records */
	/* Cooling addresses, oldest first: entries [cool_head, cool_n) of
	 * cool. The cooldown is the same for all, so expiry follows order. */
	struct reg_cool *cool;		/* LVL_COOL placeholders */
	size_t cool_head, cool_n, cool_cap;
	struct reg_loadprob *probs;	/* rows left out at load */
	size_t nprobs;			/* entries in probs */
	struct slab_set slabs;		/* leaf records' memory */
	bool closing;			/* reg_close is freeing everything */
};

/* A cooling address: its placeholder record in a node's pool. */
struct reg_cool {
	struct rec *rec;		/* the LVL_COOL placeholder */
	struct rec *node;		/* its node; NULL once the node is
					 * freed (the entry is dead) */
};

/* A row left out at load, kept for reg_check. */
struct reg_loadprob {
	char *id;			/* the row's id */
	const char *kind;		/* static string */
	char *what;			/* the problem */
};

/* Index of family in struct reg_params.fam and struct reg.root. */
static inline int
reg_fam_index(int family)
{
	return family == PFX_V6 ? 1 : 0;
}

#endif
