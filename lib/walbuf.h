/*
 * walbuf.h - a sqlite VFS that gathers a commit's WAL writes into one.
 *
 * sqlite writes each WAL frame with two write calls (the 24-byte frame
 * header, then the page), so a commit of 100 pages costs 200 pwrite
 * system calls before its fsync. This VFS wraps another one (the default
 * "unix") and keeps the writes to a WAL file in memory while they are
 * contiguous, handing them to the wrapped VFS in writes of up to 124 KiB
 * (the most the unix VFS takes at once) - when that much is gathered, and
 * before anything that must see them on disk or in order: a sync, a read,
 * a size query, a truncate, a file-control call or the close. A write that
 * is not contiguous flushes what was gathered first.
 *
 * Durability is unchanged: a commit in synchronous=FULL syncs the WAL
 * before sqlite publishes it in the wal-index, and that sync first writes
 * everything gathered; a write error (e.g. a full disk) is returned by the
 * write or the sync that hands the bytes on, so the commit fails as it
 * would have at the write. Only use it
 * with synchronous=FULL (or EXTRA): with NORMAL, sqlite publishes a commit
 * without syncing the WAL, and other connections would read frames still
 * held here. Files other than WAL files pass straight through.
 */
#ifndef IPAM_WALBUF_H
#define IPAM_WALBUF_H

#include <stddef.h>

/*
 * Registers (once per process; later calls return the same answer) a VFS
 * named name that wraps the VFS named base (NULL = sqlite's default).
 * It is not made the default. Returns 0, or -1 with err set.
 */
int walbuf_register(const char *name, const char *base, char *err,
    size_t errlen);

#endif
