/*
 * storelock.h - the database file's lock and the checks made before
 * sqlite sees the file (used by store.c).
 */
#ifndef IPAM_STORELOCK_H
#define IPAM_STORELOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Writes the directory part of path into buf ("." when there is none). */
void storelock_dirname(const char *path, char *buf, size_t len);

/* Opens path read-write for the lock, creating it unless flags has
 * STORE_NO_CREATE (*created then set). Returns the fd (close-on-exec), or
 * -1 with err saying what is wrong with the path. */
int storelock_open(const char *path, int flags, bool *created, char *err,
    size_t errlen);

/* Takes flock(LOCK_EX|LOCK_NB) on fd. Returns 0; 1 when another process
 * holds it (*holder: its pid or 0; err says so); -1 with err set. */
int storelock_take(int fd, const char *path, long *holder, char *err,
    size_t errlen);

/* Refuses (-1, err set) a non-empty file of size bytes whose sqlite header
 * is not one sqlite would read; an empty file passes. */
int storelock_check_header(int fd, const char *path, off_t size, char *err,
    size_t errlen);

#endif
