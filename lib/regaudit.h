/*
 * regaudit.h - reading the registry for operators (used by registry.c).
 */
#ifndef IPAM_REGAUDIT_H
#define IPAM_REGAUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "registry.h"

/* reg_walk. */
int regaudit_walk(struct reg *g, const char *conduit, const char *node,
    int (*fn)(void *arg, const struct reg_record *rec), void *arg);

/* reg_check. */
size_t regaudit_check(struct reg *g, int64_t now, int64_t threshold_ns,
    void (*fn)(void *arg, const struct reg_problem *p), void *arg);

#endif
