/*
 * rec.h - a record of the registry in memory (used by the files of the
 * registry; see regint.h).
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
#ifndef IPAM_REC_H
#define IPAM_REC_H

#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "prefix.h"

struct reg;

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

/* Writes the id of r, a child of parent (NULL for a trench record),
 * "<name>-<parent id>", into buf. */
void rec_id(const struct rec *r, const struct rec *parent, char *buf,
    size_t len);

/* Writes the id of parent (the parent_id column of its children) into buf;
 * "" for NULL. */
void rec_parent_id(const struct rec *parent, char *buf, size_t len);

/* The child after slot *i (advancing *i) of a name table, or NULL. */
struct rec *rec_names_next(const struct rec_names *t, uint32_t *i);

/* A new record of level, not linked anywhere (leaves from g's slabs), or
 * NULL on no memory. */
struct rec *rec_new(struct reg *g, const char *name, const struct pfx *cidr,
    int level);

/* Frees r and everything below it (NULL accepted). */
void rec_free_tree(struct reg *g, struct rec *r);

/* Adds the records of r's subtree to *nrec and its leaf children to
 * *nchild. */
void rec_count_tree(struct rec *r, size_t *nrec, size_t *nchild);

/* Links r under parent (pool and name table) and counts it in g. Returns
 * an ALLOC_* code. */
int rec_attach(struct reg *g, struct rec *parent, struct rec *r);

/* Unlinks r from parent; r keeps its subtree. */
void rec_detach(struct reg *g, struct rec *parent, struct rec *r);

/* The child called name of parent (NULL: none), or NULL. */
struct rec *rec_find(const struct rec *parent, const char *name);

#endif
