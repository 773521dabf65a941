/*
 * datalock.c - the data file's lock, held by the supervisor for the
 * instance's whole life and handed to every db worker it starts.
 */
#include "datalock.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "now.h"
#include "store.h"

#define DATALOCK_WAIT_MS 5000	/* wait for a stopping holder this long */
#define DATALOCK_POLL_MS 50	/* ... trying again this often */

/* Reads /proc/<pid>/comm into buf; false when the process is gone. */
static bool
datalock_comm(long pid, char *buf, size_t len)
{
	char path[64];
	FILE *f;
	bool ok;

	snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
	if ((f = fopen(path, "re")) == NULL)
		return false;
	ok = fgets(buf, (int)len, f) != NULL;
	fclose(f);
	if (ok)
		buf[strcspn(buf, "\n")] = '\0';
	return ok;
}

/* The parent pid of pid, 0 if unknown (from /proc/<pid>/stat, after the
 * command name, which may hold spaces and parentheses). */
static long
datalock_ppid(long pid)
{
	char path[64], line[512], *p;
	long ppid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if ((f = fopen(path, "re")) == NULL)
		return 0;
	if (fgets(line, sizeof(line), f) != NULL &&
	    (p = strrchr(line, ')')) != NULL)
		(void)sscanf(p + 1, " %*c %ld", &ppid);
	fclose(f);
	return ppid;
}

/*
 * Whether the lock on the data file is held by one of our own processes
 * that is on its way out, so that waiting a little is worth it: the pid
 * that took the lock is gone (its children inherited the lock: a killed
 * supervisor's db worker, which stops when it sees its supervisor gone),
 * or it is a worker of ours whose supervisor is gone. A live supervisor,
 * a worker with its supervisor, or another program: false.
 */
static bool
datalock_holder_stopping(long pid, char *name, size_t len)
{
	char parent[32];

	snprintf(name, len, "?");
	if (pid <= 0)
		return false;
	if (!datalock_comm(pid, name, len)) {
		snprintf(name, len, "exited");
		return true;
	}
	if (strncmp(name, "meridio-ipam-", 13) != 0)
		return false;
	return !datalock_comm(datalock_ppid(pid), parent, sizeof(parent)) ||
	    strcmp(parent, "meridio-ipam") != 0;
}

/* See datalock.h. */
int
datalock_take(const char *path, int *fd, bool *created)
{
	int64_t deadline = now_ms() + DATALOCK_WAIT_MS, t0 = now_ms();
	char err[512], name[32];
	bool waited = false;
	long holder;
	int rc;

	for (;;) {
		rc = store_lock_file(path, 0, fd, created, &holder, err,
		    sizeof(err));
		if (rc == 0) {
			if (waited)
				log_kv(LOGL_INFO, "data file released: locked",
				    "path", path, LOG_INT("waited_ms",
				    now_ms() - t0), NULL);
			return 0;
		}
		if (rc < 0) {
			log_kv(LOGL_DEBUG, "cannot lock the data file; the db "
			    "worker will tell why", "error", err, NULL);
			return 0;
		}
		if (!datalock_holder_stopping(holder, name, sizeof(name)) ||
		    now_ms() >= deadline)
			break;
		if (!waited)
			log_kv(LOGL_WARNING, "data file locked by a stopping "
			    "meridio-ipam process: waiting for it", "path",
			    path, LOG_INT("pid", holder), "holder",
			    name, LOG_INT("wait_ms", DATALOCK_WAIT_MS), NULL);
		waited = true;
		usleep(DATALOCK_POLL_MS * 1000);
	}
	if (waited) {
		snprintf(err + strlen(err), sizeof(err) - strlen(err),
		    "; still held after %d ms", DATALOCK_WAIT_MS);
	}
	log_kv(LOGL_ERROR, "cannot open the database", "path", path,
	    "error", err, NULL);
	return -1;
}

/* See datalock.h. */
void
datalock_release(const char *path, int *fd, bool created)
{
	struct stat a, b;

	if (*fd < 0)
		return;
	if (created && fstat(*fd, &a) == 0 &&
	    a.st_size == 0 && stat(path, &b) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		unlink(path);
	close(*fd);
	*fd = -1;
}
