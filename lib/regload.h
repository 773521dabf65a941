/*
 * regload.h - loading the registry from its store (used by registry.c).
 */
#ifndef IPAM_REGLOAD_H
#define IPAM_REGLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "registry.h"

/* Builds g's records from every row of its store; see regload.c. */
int regload_rows(struct reg *g, reg_problem_fn problem, void *arg, char *err,
    size_t errlen);

/* Creates, in one commit, the trench record of each served family that
 * has none. Returns REG_OK, REG_ESTORE or REG_ENOMEM with err set. */
int regload_roots(struct reg *g, int64_t now, char *err, size_t errlen);

#endif
