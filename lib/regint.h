/*
 * regint.h - what the files of the registry share: its records, the
 * inside of a struct reg, and the functions of rec.c (each documented
 * where it is defined). regload.c defines reg_open, regaudit.c reg_walk
 * and reg_check. Nothing else includes it.
 *
 * Every record is a struct rec. A parent keeps its children twice: in an
 * alloc_pool by address (to find free blocks) and in a hash table by name
 * (to find a child by name). Ids are not stored: "<name>-<parent id>" is
 * rebuilt when the store needs it.
 *
 * One block per record: the record embeds its alloc_node, which is both
 * its prefix and its link in the parent's pool (the pool allocates nothing
 * per child and keeps no by-address hash), its name is stored inline, and
 * what only a parent needs (pool, children by name) sits in a struct
 * rec_ext allocated in front of the records that are parents. Leaf records
 * come from slabs. The name index is an open-addressing table of tagged
 * pointers (8 bytes a slot, at most 3/4 full) instead of a tree link in
 * every child.
 */
#ifndef IPAM_REGINT_H
#define IPAM_REGINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "pfx.h"
#include "registry.h"
#include "slab.h"

enum rec_level {
	LVL_TRENCH = 0,
	LVL_CONDUIT,
	LVL_NODE,
	LVL_CHILD,
	LVL_COOL,	/* a released address cooling down (not a record) */
};

/*
 * A record. It does not point at its parent: every path to an address
 * record comes from its parent, which is passed along (parents keep theirs
 * in their rec_ext), and 8 bytes are a tenth of an address record.
 */
struct rec {
	struct alloc_node node;		/* the record's prefix, and its link in
					 * the parent's pool (first member) */
	int64_t updated_at;		/* ns since the epoch; 0 = NULL */
	char name[];			/* record name, NUL-terminated */
};

/* The record's level (enum rec_level) and whether GC may reap it, kept in
 * the node's owner bytes: a struct rec then has no padding at all. */
#define REC_LEVEL(r) ((r)->node.an_user[0])
#define REC_EXPIRABLE(r) ((r)->node.an_user[1])

/*
 * Children by name: open addressing with linear probing, at most 3/4 full.
 * A slot is a record pointer whose low 3 bits (zero: records are 8-byte
 * aligned) hold 3 bits of the name's hash, so that most probes of other
 * names are rejected without reading their record.
 */
struct rec_names {
	uintptr_t *slot;		/* cap slots, 0 = empty */
	uint32_t cap;			/* slots; 0 before the first child */
	uint32_t used;			/* children */
};

/* What only a parent record (trench, conduit, node) has. It is allocated
 * in the same block, right before the struct rec. */
struct rec_ext {
	struct rec_names kids;		/* children by name */
	struct alloc_pool *pool;	/* children by address */
	struct rec *parent;		/* NULL for a trench record */
	uint32_t ncool;			/* cooling addresses in pool */
};

/* Room taken by a rec_ext in front of a parent record (keeps alignment). */
#define REC_EXT_SIZE ((sizeof(struct rec_ext) + _Alignof(struct rec) - 1) & \
    ~(_Alignof(struct rec) - 1))

/* Tag bits of a name table slot (records are 8-byte aligned). */
#define REC_TAG_MASK ((uintptr_t)7)

_Static_assert(offsetof(struct rec, node) == 0,
    "a pool's node pointer is its record");
_Static_assert(_Alignof(struct rec) > REC_TAG_MASK,
    "name table tags need 8-byte aligned records");

/* The parent part of a trench, conduit or node record. */
static inline struct rec_ext *
rec_ext(const struct rec *r)
{
	return (struct rec_ext *)((char *)(uintptr_t)r - REC_EXT_SIZE);
}

/* The parent of a trench, conduit or node record (NULL for a trench). */
static inline struct rec *
rec_up(const struct rec *r)
{
	return rec_ext(r)->parent;
}

/* The record's prefix. */
static inline struct pfx
rec_cidr(const struct rec *r)
{
	return alloc_node_pfx(&r->node);
}

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

/* rec.c: a record in memory and its links to its parent. */
void rec_id(const struct rec *r, const struct rec *parent, char *buf,
    size_t len);
void rec_parent_id(const struct rec *parent, char *buf, size_t len);
struct rec *rec_names_next(const struct rec_names *t, uint32_t *i);
struct rec *rec_new(struct reg *g, const char *name, const struct pfx *cidr,
    int level);
void rec_free_tree(struct reg *g, struct rec *r);
void rec_count_tree(struct rec *r, size_t *nrec, size_t *nchild);
int rec_attach(struct reg *g, struct rec *parent, struct rec *r);
void rec_detach(struct reg *g, struct rec *parent, struct rec *r);
struct rec *rec_find(const struct rec *parent, const char *name);

#endif
