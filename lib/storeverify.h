/*
 * storeverify.h - the damaged-page check at open (used by store.c).
 */
#ifndef IPAM_STOREVERIFY_H
#define IPAM_STOREVERIFY_H

#include <stddef.h>

struct store;

/* Runs sqlite's quick_check while reading the rows for the first
 * store_load into st->prefetch. Returns 0, or -1 with err set when the
 * file is damaged or cannot be read. */
int storeverify_run(struct store *st, char *err, size_t errlen);

#endif
