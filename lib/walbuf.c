/*
 * walbuf.c - a sqlite VFS that gathers a commit's WAL writes into one
 * write (see walbuf.h for why and when it is safe).
 *
 * Each file opened through it is a struct walbuf_file followed by the
 * wrapped VFS's own file object; every method is handed on to that one.
 * Only files sqlite opens with SQLITE_OPEN_WAL get a gather buffer: one
 * run of contiguous bytes [off, off + len) that later writes extend (or
 * overwrite inside it, as sqlite does when it rewrites a frame of the
 * transaction in progress).
 */
#include "errbuf.h"
#include "walbuf.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

/* Distinct VFS names one process may register. */
#define WALBUF_SLOTS 4

/* Where the wrapped file starts after ours: 16-byte aligned. */
#define WALBUF_HDR ((sizeof(struct walbuf_file) + 15) / 16 * 16)

/* Largest single write handed on, and so the most bytes gathered: sqlite's
 * unix VFS writes at most 0x1ffff bytes per call (it masks the length)
 * and takes a shorter write for a full disk. A commit larger than this
 * goes out one full piece at a time, as many writes as one buffer of its
 * whole size would take, for 124 KiB of memory. */
#define WALBUF_CHUNK (124u << 10)

/* One open file. */
struct walbuf_file {
	sqlite3_file base;		/* our methods; must come first */
	sqlite3_file *real;		/* the wrapped VFS's file (after us) */
	bool gather;			/* a WAL file: writes are gathered */
	unsigned char *buf;		/* WALBUF_CHUNK bytes, or NULL */
	size_t len;			/* bytes gathered */
	sqlite3_int64 off;		/* file offset of buf[0] */
};

/* One registered VFS. */
struct walbuf_vfs {
	sqlite3_vfs vfs;		/* what sqlite sees */
	sqlite3_vfs *real;		/* the wrapped VFS */
	char name[64];			/* vfs.zName */
};

static struct walbuf_vfs walbuf_slot[WALBUF_SLOTS];
static size_t walbuf_nslot;
static pthread_mutex_t walbuf_mu = PTHREAD_MUTEX_INITIALIZER;

static sqlite3_file *
walbuf_real(sqlite3_file *f)
{
	return ((struct walbuf_file *)f)->real;
}

/* Writes what is gathered as one write of the wrapped file. The buffer is
 * empty afterwards even when the write failed: sqlite treats the failed
 * commit as never written (its frames are past the last valid one). */
static int
walbuf_flush(struct walbuf_file *w)
{
	int rc = SQLITE_OK;
	size_t done, n;

	for (done = 0; done < w->len && rc == SQLITE_OK; done += n) {
		n = w->len - done < WALBUF_CHUNK ? w->len - done :
		    WALBUF_CHUNK;
		rc = w->real->pMethods->xWrite(w->real, w->buf + done, (int)n,
		    w->off + (sqlite3_int64)done);
	}
	w->len = 0;
	return rc;
}

/* Allocates the gather buffer, at its full size, on first use. */
static bool
walbuf_reserve(struct walbuf_file *w)
{
	if (w->buf == NULL)
		w->buf = malloc(WALBUF_CHUNK);
	return w->buf != NULL;
}

static int
walbuf_write(sqlite3_file *f, const void *p, int amt, sqlite3_int64 off)
{
	struct walbuf_file *w = (struct walbuf_file *)f;
	size_t n = (size_t)amt;
	int rc;

	if (!w->gather || amt <= 0)
		return w->real->pMethods->xWrite(w->real, p, amt, off);
	/* inside the gathered run: overwrite in place */
	if (w->len > 0 && off >= w->off &&
	    (uint64_t)(off - w->off) + n <= w->len) {
		memcpy(w->buf + (off - w->off), p, n);
		return SQLITE_OK;
	}
	/* right after it, within one write's worth: append */
	if (w->len > 0 && off == w->off + (sqlite3_int64)w->len &&
	    w->len + n <= WALBUF_CHUNK) {
		memcpy(w->buf + w->len, p, n);
		w->len += n;
		return SQLITE_OK;
	}
	/* anything else starts a new run after writing the old one */
	if ((rc = walbuf_flush(w)) != SQLITE_OK)
		return rc;
	if (n > WALBUF_CHUNK || !walbuf_reserve(w))
		return w->real->pMethods->xWrite(w->real, p, amt, off);
	memcpy(w->buf, p, n);
	w->len = n;
	w->off = off;
	return SQLITE_OK;
}

static int
walbuf_close(sqlite3_file *f)
{
	struct walbuf_file *w = (struct walbuf_file *)f;
	int rc = walbuf_flush(w);
	int rc2 = w->real->pMethods->xClose(w->real);

	free(w->buf);
	return rc != SQLITE_OK ? rc : rc2;
}

static int
walbuf_read(sqlite3_file *f, void *p, int amt, sqlite3_int64 off)
{
	int rc = walbuf_flush((struct walbuf_file *)f);

	return rc != SQLITE_OK ? rc :
	    walbuf_real(f)->pMethods->xRead(walbuf_real(f), p, amt, off);
}

static int
walbuf_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	int rc = walbuf_flush((struct walbuf_file *)f);

	return rc != SQLITE_OK ? rc :
	    walbuf_real(f)->pMethods->xTruncate(walbuf_real(f), size);
}

static int
walbuf_sync(sqlite3_file *f, int flags)
{
	int rc = walbuf_flush((struct walbuf_file *)f);

	return rc != SQLITE_OK ? rc :
	    walbuf_real(f)->pMethods->xSync(walbuf_real(f), flags);
}

static int
walbuf_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	int rc = walbuf_flush((struct walbuf_file *)f);

	return rc != SQLITE_OK ? rc :
	    walbuf_real(f)->pMethods->xFileSize(walbuf_real(f), size);
}

static int
walbuf_file_control(sqlite3_file *f, int op, void *arg)
{
	int rc = walbuf_flush((struct walbuf_file *)f);

	return rc != SQLITE_OK ? rc :
	    walbuf_real(f)->pMethods->xFileControl(walbuf_real(f), op, arg);
}

/* The methods below only hand on: the WAL file is not locked through
 * them (the wal-index is), and the main file never gathers. */
static int
walbuf_lock(sqlite3_file *f, int level)
{
	return walbuf_real(f)->pMethods->xLock(walbuf_real(f), level);
}

static int
walbuf_unlock(sqlite3_file *f, int level)
{
	return walbuf_real(f)->pMethods->xUnlock(walbuf_real(f), level);
}

static int
walbuf_check_reserved(sqlite3_file *f, int *out)
{
	return walbuf_real(f)->pMethods->xCheckReservedLock(walbuf_real(f),
	    out);
}

static int
walbuf_sector_size(sqlite3_file *f)
{
	return walbuf_real(f)->pMethods->xSectorSize(walbuf_real(f));
}

static int
walbuf_device_chars(sqlite3_file *f)
{
	return walbuf_real(f)->pMethods->xDeviceCharacteristics(
	    walbuf_real(f));
}

static int
walbuf_shm_map(sqlite3_file *f, int pg, int pgsz, int extend,
    void volatile **pp)
{
	sqlite3_file *r = walbuf_real(f);

	if (r->pMethods->iVersion < 2 || r->pMethods->xShmMap == NULL)
		return SQLITE_IOERR_SHMMAP;
	return r->pMethods->xShmMap(r, pg, pgsz, extend, pp);
}

static int
walbuf_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
	sqlite3_file *r = walbuf_real(f);

	if (r->pMethods->iVersion < 2 || r->pMethods->xShmLock == NULL)
		return SQLITE_IOERR_SHMLOCK;
	return r->pMethods->xShmLock(r, offset, n, flags);
}

static void
walbuf_shm_barrier(sqlite3_file *f)
{
	sqlite3_file *r = walbuf_real(f);

	if (r->pMethods->iVersion >= 2 && r->pMethods->xShmBarrier != NULL)
		r->pMethods->xShmBarrier(r);
}

static int
walbuf_shm_unmap(sqlite3_file *f, int del)
{
	sqlite3_file *r = walbuf_real(f);

	if (r->pMethods->iVersion < 2 || r->pMethods->xShmUnmap == NULL)
		return SQLITE_OK;
	return r->pMethods->xShmUnmap(r, del);
}

static int
walbuf_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **pp)
{
	sqlite3_file *r = walbuf_real(f);

	*pp = NULL;
	if (r->pMethods->iVersion < 3 || r->pMethods->xFetch == NULL)
		return SQLITE_OK;	/* sqlite then reads with xRead */
	return r->pMethods->xFetch(r, off, amt, pp);
}

static int
walbuf_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
	sqlite3_file *r = walbuf_real(f);

	if (r->pMethods->iVersion < 3 || r->pMethods->xUnfetch == NULL)
		return SQLITE_OK;
	return r->pMethods->xUnfetch(r, off, p);
}

static const sqlite3_io_methods walbuf_io = {
	.iVersion = 3,
	.xClose = walbuf_close,
	.xRead = walbuf_read,
	.xWrite = walbuf_write,
	.xTruncate = walbuf_truncate,
	.xSync = walbuf_sync,
	.xFileSize = walbuf_file_size,
	.xLock = walbuf_lock,
	.xUnlock = walbuf_unlock,
	.xCheckReservedLock = walbuf_check_reserved,
	.xFileControl = walbuf_file_control,
	.xSectorSize = walbuf_sector_size,
	.xDeviceCharacteristics = walbuf_device_chars,
	.xShmMap = walbuf_shm_map,
	.xShmLock = walbuf_shm_lock,
	.xShmBarrier = walbuf_shm_barrier,
	.xShmUnmap = walbuf_shm_unmap,
	.xFetch = walbuf_fetch,
	.xUnfetch = walbuf_unfetch,
};

/* Opens name through the wrapped VFS; the wrapped file lives right after
 * our struct (szOsFile covers both). */
static int
walbuf_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags,
    int *outflags)
{
	struct walbuf_vfs *v = vfs->pAppData;
	struct walbuf_file *w = (struct walbuf_file *)f;
	int rc;

	memset(w, 0, sizeof(*w));
	w->real = (sqlite3_file *)((char *)w + WALBUF_HDR);
	rc = v->real->xOpen(v->real, name, w->real, flags, outflags);
	if (w->real->pMethods == NULL) {
		w->base.pMethods = NULL;	/* sqlite must not close it */
		return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
	}
	w->gather = (flags & SQLITE_OPEN_WAL) != 0;
	w->base.pMethods = &walbuf_io;
	return rc;
}

/* The VFS methods that are not about one file: handed on. */
#define WALBUF_REAL(vfs) (((struct walbuf_vfs *)(vfs)->pAppData)->real)

static int
walbuf_delete(sqlite3_vfs *vfs, const char *name, int sync)
{
	return WALBUF_REAL(vfs)->xDelete(WALBUF_REAL(vfs), name, sync);
}

static int
walbuf_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	return WALBUF_REAL(vfs)->xAccess(WALBUF_REAL(vfs), name, flags, out);
}

static int
walbuf_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	return WALBUF_REAL(vfs)->xFullPathname(WALBUF_REAL(vfs), name, n,
	    out);
}

static void *
walbuf_dlopen(sqlite3_vfs *vfs, const char *name)
{
	return WALBUF_REAL(vfs)->xDlOpen(WALBUF_REAL(vfs), name);
}

static void
walbuf_dlerror(sqlite3_vfs *vfs, int n, char *out)
{
	WALBUF_REAL(vfs)->xDlError(WALBUF_REAL(vfs), n, out);
}

static void (*walbuf_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
	return WALBUF_REAL(vfs)->xDlSym(WALBUF_REAL(vfs), h, sym);
}

static void
walbuf_dlclose(sqlite3_vfs *vfs, void *h)
{
	WALBUF_REAL(vfs)->xDlClose(WALBUF_REAL(vfs), h);
}

static int
walbuf_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	return WALBUF_REAL(vfs)->xRandomness(WALBUF_REAL(vfs), n, out);
}

static int
walbuf_sleep(sqlite3_vfs *vfs, int us)
{
	return WALBUF_REAL(vfs)->xSleep(WALBUF_REAL(vfs), us);
}

static int
walbuf_current_time(sqlite3_vfs *vfs, double *out)
{
	return WALBUF_REAL(vfs)->xCurrentTime(WALBUF_REAL(vfs), out);
}

static int
walbuf_last_error(sqlite3_vfs *vfs, int n, char *out)
{
	sqlite3_vfs *r = WALBUF_REAL(vfs);

	return r->xGetLastError != NULL ? r->xGetLastError(r, n, out) : 0;
}

static int
walbuf_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
	sqlite3_vfs *r = WALBUF_REAL(vfs);
	double d;
	int rc;

	if (r->iVersion >= 2 && r->xCurrentTimeInt64 != NULL)
		return r->xCurrentTimeInt64(r, out);
	rc = r->xCurrentTime(r, &d);
	*out = (sqlite3_int64)(d * 86400000.0);
	return rc;
}

int
walbuf_register(const char *name, const char *base, char *err,
    size_t errlen)
{
	struct walbuf_vfs *v;
	sqlite3_vfs *real;
	int rc = -1;

	if (name == NULL || strlen(name) >= sizeof(v->name)) {
		errbuf_set(err, errlen, "walbuf: bad VFS name");
		return -1;
	}
	pthread_mutex_lock(&walbuf_mu);
	for (size_t i = 0; i < walbuf_nslot; i++) {
		if (strcmp(walbuf_slot[i].name, name) == 0) {
			rc = 0;
			goto out;
		}
	}
	if (walbuf_nslot == WALBUF_SLOTS) {
		errbuf_set(err, errlen, "walbuf: too many VFSes");
		goto out;
	}
	if (sqlite3_initialize() != SQLITE_OK ||
	    (real = sqlite3_vfs_find(base)) == NULL) {
		errbuf_set(err, errlen, "walbuf: no sqlite VFS named \"%s\"",
		    base != NULL ? base : "(default)");
		goto out;
	}
	v = &walbuf_slot[walbuf_nslot];
	strcpy(v->name, name);
	v->real = real;
	/* our struct, then the wrapped file, 16-byte aligned (WALBUF_HDR) */
	v->vfs = (sqlite3_vfs){ .iVersion = 2,
	    .szOsFile = (int)WALBUF_HDR + real->szOsFile,
	    .mxPathname = real->mxPathname, .zName = v->name, .pAppData = v,
	    .xOpen = walbuf_open, .xDelete = walbuf_delete,
	    .xAccess = walbuf_access, .xFullPathname = walbuf_full_pathname,
	    .xDlOpen = walbuf_dlopen, .xDlError = walbuf_dlerror,
	    .xDlSym = walbuf_dlsym, .xDlClose = walbuf_dlclose,
	    .xRandomness = walbuf_randomness, .xSleep = walbuf_sleep,
	    .xCurrentTime = walbuf_current_time,
	    .xGetLastError = walbuf_last_error,
	    .xCurrentTimeInt64 = walbuf_current_time64 };
	if (sqlite3_vfs_register(&v->vfs, 0) != SQLITE_OK) {
		errbuf_set(err, errlen, "walbuf: cannot register VFS %s",
		    name);
		goto out;
	}
	walbuf_nslot++;
	rc = 0;
out:
	pthread_mutex_unlock(&walbuf_mu);
	return rc;
}
