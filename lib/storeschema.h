/*
 * storeschema.h - Meridio's schema in a store's connection (used by the
 * files of the store; see storeint.h).
 */
#ifndef IPAM_STORESCHEMA_H
#define IPAM_STORESCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

/* Runs SQL text that returns no rows; err names what failed. */
int storeschema_exec(struct store *st, const char *sql, const char *what,
    char *err, size_t errlen);

/* Runs a query returning one integer into *val; arg binds ?1 when not
 * NULL. Returns 0 or -1 with err set. */
int storeschema_query_int(struct store *st, const char *sql, const char *arg,
    int64_t *val, char *err, size_t errlen);

/* Checks an existing file's schema without writing: *create when it has
 * no table at all; st->upgrade and st->add_cols for what it lacks.
 * Refuses (-1) a file that is not Meridio's. */
int storeschema_check(struct store *st, bool *create, char *err,
    size_t errlen);

/* Starts the migration of an older Meridio file (struct store_migration)
 * in a transaction left open; nothing when there is none. 0 or -1. */
int storeschema_migrate(struct store *st, int64_t now, char *err,
    size_t errlen);

/* Commits the migration held open, if any. Returns 0 or -1. */
int storeschema_mig_commit(struct store *st, char *err, size_t errlen);

/* Switches to WAL and adds the missing indexes (and the table when create
 * is set), outside a transaction. Returns 0 or -1. */
int storeschema_setup(struct store *st, bool create, char *err,
    size_t errlen);

#endif
