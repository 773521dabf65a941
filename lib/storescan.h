/*
 * storescan.h - the rows of one store_load, read in one pass and handed out
 * parents first (see store_load in store.h).
 */
#ifndef IPAM_STORESCAN_H
#define IPAM_STORESCAN_H

#include <stddef.h>

#include <sqlite3.h>

#include "store.h"

struct storescan;

/* Reads every row s returns (columns id, name, cidr, parent_id,
 * updated_at, expirable), in rowid order, then resets s. Returns 0, or -1
 * with err set (path names the file); *out is to be freed either way. */
int storescan_read(sqlite3_stmt *s, const char *path, struct storescan **out,
    char *err, size_t errlen);

/* Calls fn for each row as store_load describes; returns what it does. */
int storescan_walk(struct storescan *sc, const char *path,
    int (*fn)(void *arg, const struct store_row *row), void *arg,
    char *err, size_t errlen);

/* Frees a scan. Accepts NULL. */
void storescan_free(struct storescan *sc);

#endif
