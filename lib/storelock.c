/*
 * storelock.c - the database file before sqlite opens it: opened (or
 * created) for the exclusive flock that guards it, the holder named when
 * it is taken, a file that is not an sqlite database refused untouched,
 * and why an open failed said plainly.
 */
#include "errbuf.h"
#include "store.h"
#include "storeint.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* Writes the directory part of path into buf ("." when there is none). */
void
storelock_dirname(const char *path, char *buf, size_t len)
{
	const char *slash = strrchr(path, '/');
	size_t n;

	if (slash == NULL) {
		snprintf(buf, len, ".");
		return;
	}
	n = (size_t)(slash - path);
	if (n == 0)
		n = 1;		/* "/file" lives in "/" */
	if (n >= len)
		n = len - 1;
	memcpy(buf, path, n);
	buf[n] = '\0';
}

/*
 * Finds the pid holding a flock on (dev, ino) in /proc/locks, so that the
 * refusal can name it. Returns the pid, or 0 when it cannot be told (no
 * /proc, a pid from another namespace, ...).
 */
static long
storelock_holder(dev_t dev, ino_t ino)
{
	char line[256];
	FILE *f;
	long found = 0;

	f = fopen("/proc/locks", "re");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		char type[16];
		long pid;
		unsigned maj, min;
		unsigned long long inode;

		if (strstr(line, "->") != NULL)
			continue;	/* a waiter, not a holder */
		if (sscanf(line, "%*d: %15s %*s %*s %ld %x:%x:%llu", type,
		    &pid, &maj, &min, &inode) != 5)
			continue;
		if (strcmp(type, "FLOCK") != 0 || pid <= 0)
			continue;
		if (maj == major(dev) && min == minor(dev) &&
		    inode == (unsigned long long)ino) {
			found = pid;
			break;
		}
	}
	fclose(f);
	return found;
}

/*
 * Checks the first 100 bytes of a non-empty file the way sqlite would read
 * them (magic, page size, format versions, payload fractions), so that a
 * file that is not a database never reaches sqlite, which might otherwise
 * create -wal/-shm files next to it. An empty file is a valid new database.
 */
int
storelock_check_header(int fd, const char *path, off_t size, char *err,
    size_t errlen)
{
	static const char magic[16] = "SQLite format 3";
	unsigned char h[100];
	unsigned pgsz;
	ssize_t n;

	if (size == 0)
		return 0;
	if (size < (off_t)sizeof(h))
		goto notdb;
	n = pread(fd, h, sizeof(h), 0);
	if (n < 0) {
		errbuf_set(err, errlen, "%s: cannot read: %s", path,
		    strerror(errno));
		return -1;
	}
	if (n != (ssize_t)sizeof(h) || memcmp(h, magic, sizeof(magic)) != 0)
		goto notdb;
	pgsz = (unsigned)h[16] << 8 | h[17];
	if (pgsz == 1)
		pgsz = 65536;
	if (pgsz < 512 || (pgsz & (pgsz - 1)) != 0)
		goto notdb;
	if (h[18] < 1 || h[18] > 2 || h[19] < 1 || h[19] > 2)
		goto notdb;
	if (h[21] != 64 || h[22] != 32 || h[23] != 32)
		goto notdb;
	return 0;
notdb:
	errbuf_set(err, errlen, "%s: not an sqlite database (bad header); "
	    "left untouched", path);
	return -1;
}

/*
 * Says why path could not be opened read-write or created (errno e), naming
 * what is wrong rather than repeating strerror: the directory missing or
 * not a directory, a file system that is read-only or takes no new files
 * (/proc, /sys), the file or directory not writable by this uid.
 */
static void
storelock_explain_open(const char *path, int e, char *err, size_t errlen)
{
	char dir[PATH_MAX], up[PATH_MAX], child[PATH_MAX];
	struct stat sb;
	bool exists = stat(path, &sb) == 0;

	storelock_dirname(path, dir, sizeof(dir));
	if (e == EISDIR || (exists && S_ISDIR(sb.st_mode))) {
		errbuf_set(err, errlen, "%s: is a directory, not a database "
		    "file", path);
	} else if (e == ENOENT || e == ENOTDIR) {
		/* the nearest ancestor that exists tells which case it is */
		snprintf(up, sizeof(up), "%s", dir);
		while (stat(up, &sb) != 0 && strcmp(up, "/") != 0 &&
		    strcmp(up, ".") != 0) {
			snprintf(child, sizeof(child), "%s", up);
			storelock_dirname(child, up, sizeof(up));
		}
		if (stat(up, &sb) == 0 && !S_ISDIR(sb.st_mode))
			errbuf_set(err, errlen, "%s: cannot create: %s is not "
			    "a directory", path, up);
		else if (strcmp(up, dir) != 0)
			errbuf_set(err, errlen, "%s: cannot create: directory "
			    "%s does not exist", path, dir);
		else
			errbuf_set(err, errlen, "%s: cannot create: directory "
			    "%s exists but takes no new files (a virtual file "
			    "system such as /proc or /sys?)", path, dir);
	} else if (e == EROFS) {
		errbuf_set(err, errlen, "%s: cannot %s: %s is on a read-only "
		    "file system", path, exists ? "open for writing" :
		    "create", exists ? "the file" : dir);
	} else if ((e == EACCES || e == EPERM) && exists) {
		errbuf_set(err, errlen, "%s: cannot open for writing: the file "
		    "(owner uid %u, mode %04o) is not writable by uid %u: %s",
		    path, (unsigned)sb.st_uid, (unsigned)(sb.st_mode & 07777),
		    (unsigned)geteuid(), strerror(e));
	} else if ((e == EACCES || e == EPERM) && stat(dir, &sb) == 0) {
		errbuf_set(err, errlen, "%s: cannot create: directory %s "
		    "(owner uid %u, mode %04o) is not writable by uid %u: %s",
		    path, dir, (unsigned)sb.st_uid,
		    (unsigned)(sb.st_mode & 07777), (unsigned)geteuid(),
		    strerror(e));
	} else {
		errbuf_set(err, errlen, "%s: cannot open: %s", path,
		    strerror(e));
	}
}

/*
 * Opens path read-write for the lock, creating it (O_EXCL) when it is
 * missing and creation is allowed. Sets *created when this call made the
 * file. Returns the fd or -1 with err set.
 */
int
storelock_open(const char *path, int flags, bool *created, char *err,
    size_t errlen)
{
	int fd;

	*created = false;
	for (int tries = 0; tries < 3; tries++) {
		fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
		if (fd >= 0)
			return fd;
		if (errno != ENOENT)
			break;
		if (flags & STORE_NO_CREATE) {
			errbuf_set(err, errlen, "%s: does not exist", path);
			return -1;
		}
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC |
		    O_NOCTTY, 0644);
		if (fd >= 0) {
			*created = true;
			return fd;
		}
		if (errno != EEXIST)
			break;
		/* created by someone else meanwhile: open that one */
	}
	storelock_explain_open(path, errno, err, errlen);
	return -1;
}

/*
 * Takes flock(LOCK_EX|LOCK_NB) on fd, a descriptor of path. Returns 0; 1
 * when another process holds it (*holder: its pid, 0 if unknown; err says
 * so); -1 with err set when it cannot be taken.
 */
int
storelock_take(int fd, const char *path, long *holder, char *err,
    size_t errlen)
{
	struct stat sb;

	/* A holder that exits between the flock and the /proc/locks read
	 * is listed nowhere: try the lock again before calling it taken. */
	for (int tries = 0; tries < 3; tries++) {
		*holder = 0;
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK) {
			errbuf_set(err, errlen, "%s: cannot lock: %s", path,
			    strerror(errno));
			return -1;
		}
		if (fstat(fd, &sb) == 0)
			*holder = storelock_holder(sb.st_dev, sb.st_ino);
		if (*holder > 0)
			break;
	}
	if (*holder > 0)
		errbuf_set(err, errlen, "%s: in use by another meridio-ipam "
		    "(pid %ld)", path, *holder);
	else
		errbuf_set(err, errlen, "%s: locked by another process", path);
	return 1;
}
