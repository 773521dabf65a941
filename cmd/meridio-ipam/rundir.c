/*
 * rundir.c - the instance's private runtime directory and the db socket
 * in it.
 */
#include "rundir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ipc.h"
#include "ipcmsg.h"
#include "log.h"

#define RUNDIR_BACKLOG 64	/* listen backlog of the db socket */

/* See rundir.h. */
int
rundir_make(char *dir, size_t dirlen, char *sock, size_t socklen,
    int *listen_fd)
{
	const char *base = getenv("XDG_RUNTIME_DIR");
	char err[256];

	if (base == NULL || *base == '\0')
		base = getenv("TMPDIR");
	if (base == NULL || *base == '\0')
		base = "/tmp";
	if ((size_t)snprintf(dir, dirlen,
	    "%s/meridio-ipam.XXXXXX", base) >= dirlen ||
	    mkdtemp(dir) == NULL) {
		log_kv(LOGL_ERROR, "cannot create runtime directory", "base",
		    base, "error", strerror(errno), NULL);
		dir[0] = '\0';
		return -1;
	}
	if (ipcmsg_db_path(dir, sock, socklen) < 0) {
		log_kv(LOGL_ERROR, "runtime directory path too long for a "
		    "Unix socket", "path", dir, NULL);
		return -1;
	}
	*listen_fd = ipc_listen(sock, RUNDIR_BACKLOG, err, sizeof(err));
	if (*listen_fd < 0) {
		log_kv(LOGL_ERROR, "cannot listen on db socket", "error", err,
		    NULL);
		return -1;
	}
	log_kv(LOGL_INFO, "runtime directory", "path", dir, NULL);
	return 0;
}

/* See rundir.h; one level: nothing in the contract makes subdirectories. */
void
rundir_remove(const char *rundir)
{
	struct dirent *de;
	DIR *d;

	if (rundir[0] == '\0')
		return;
	d = opendir(rundir);
	if (d != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			if (unlinkat(dirfd(d), de->d_name, 0) < 0 &&
			    errno == EISDIR)
				unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
		}
		closedir(d);
	}
	if (rmdir(rundir) < 0)
		log_kv(LOGL_WARNING, "cannot remove runtime directory", "path",
		    rundir, "error", strerror(errno), NULL);
}
