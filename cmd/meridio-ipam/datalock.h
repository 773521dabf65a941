/*
 * datalock.h - the data file's lock (flock), taken by the supervisor at
 * start so that no other instance can take the file while a db worker
 * restarts (the contract in ipcmsg.h).
 */
#ifndef IPAM_DATALOCK_H
#define IPAM_DATALOCK_H

#include <stdbool.h>

/*
 * Takes the lock on path into *fd (*created: we made the empty file). A
 * lock held by a process of ours that is stopping (the workers of a
 * supervisor killed just before) is waited for, 5 s at most; any other
 * holder refuses the start at once. A file that cannot be opened is left
 * to the db worker, which reports why (*fd stays -1). Returns 0, or -1
 * after logging why the start is refused.
 */
int datalock_take(const char *path, int *fd, bool *created);

/*
 * Drops the lock (*fd becomes -1); removes the file if created and
 * nothing wrote to it (a start refused before the db worker made a
 * database). Does nothing when *fd is -1.
 */
void datalock_release(const char *path, int *fd, bool created);

#endif
