/*
 * storeckpt.h - checkpoints of a store's WAL (used by store.c).
 */
#ifndef IPAM_STORECKPT_H
#define IPAM_STORECKPT_H

#include <stddef.h>

#include <sqlite3.h>

struct store;

/* Runs one checkpoint of mode on db and notes the outcome for
 * store_health. Returns 0 (also when busy) or -1. */
int storeckpt_run(struct store *st, sqlite3 *db, int mode);

/* sqlite3_wal_hook callback (arg: the store): wakes the checkpointer
 * thread, started on first need, or checkpoints in place past the hard
 * limit. */
int storeckpt_hook(void *arg, sqlite3 *db, const char *name, int frames);

/* Sets journal_size_limit to the hard WAL size when it is off by half or
 * more (outside a transaction). Returns 0 or -1 with err set. */
int storeckpt_wal_limit(struct store *st, char *err, size_t errlen);

/* Stops the checkpointer thread, if it runs. */
void storeckpt_stop(struct store *st);

#endif
