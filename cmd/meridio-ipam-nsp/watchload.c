/*
 * watchload.c - finds and loads the watch module nsp-watch.so (watch.h).
 *
 * The module sits with the worker binaries, so it is looked up the way
 * the supervisor looks them up (cmd/meridio-ipam/supervisor.c): beside our
 * own executable (a build tree, or a package that installs everything in
 * one directory), in ../libexec/meridio-ipam relative to it, else in the
 * configured libexec directory. The first file that exists is the one:
 * one that fails to load is an error, not a reason to try an older copy
 * elsewhere.
 */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "nsp.h"
#include "watch.h"

#ifndef IPAM_LIBEXECDIR
#define IPAM_LIBEXECDIR "/usr/local/libexec/meridio-ipam"
#endif

/*
 * Fills path with the first NSPW_FILE that exists in the lookup order.
 * Returns 0, or -1 with err listing the directories searched.
 */
static int
nsp_watch_find(char *path, size_t pathlen, char *err, size_t errlen)
{
	char self[PATH_MAX], *slash;
	char dirs[3][PATH_MAX + 32];
	size_t i, ndirs = 0;
	ssize_t n;

	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash != NULL) {
			*slash = '\0';
			snprintf(dirs[ndirs++], sizeof(dirs[0]), "%s", self);
			snprintf(dirs[ndirs++], sizeof(dirs[0]),
			    "%s/../libexec/meridio-ipam", self);
		}
	}
	snprintf(dirs[ndirs++], sizeof(dirs[0]), "%s", IPAM_LIBEXECDIR);
	for (i = 0; i < ndirs; i++)
		if ((size_t)snprintf(path, pathlen, "%s/%s", dirs[i],
		    NSPW_FILE) < pathlen && access(path, F_OK) == 0)
			return 0;
	if (ndirs == 3)
		snprintf(err, errlen, "%s not found in %s, %s or %s", NSPW_FILE,
		    dirs[0], dirs[1], dirs[2]);
	else
		snprintf(err, errlen, "%s not found in %s", NSPW_FILE,
		    dirs[0]);
	return -1;
}

/*
 * See nsp.h. RTLD_NOW: a module whose libraries or symbols are missing
 * fails here, with dlerror's reason, and not at its first call. The
 * handle is never closed: gRPC is not made to be unloaded, and after an
 * error the worker exits.
 */
const struct nspw_ops *
nsp_watch_load(char *path, size_t pathlen, char *err, size_t errlen)
{
	const struct nspw_ops *ops;
	nspw_entry_fn entry;
	const char *why;
	void *h, *sym;

	if (nsp_watch_find(path, pathlen, err, errlen) < 0)
		return NULL;
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		why = dlerror();
		snprintf(err, errlen, "%s", why != NULL ? why : path);
		return NULL;
	}
	sym = dlsym(h, NSPW_ENTRY);
	if (sym == NULL) {
		snprintf(err, errlen, "%s: no symbol %s (not a watch module)",
		    path, NSPW_ENTRY);
		return NULL;
	}
	/* POSIX's way from a data pointer to a function pointer. */
	memcpy(&entry, &sym, sizeof(entry));
	ops = entry();
	if (ops == NULL || ops->abi != NSPW_ABI ||
	    ops->cfg_size != sizeof(struct cfg) ||
	    strcmp(ops->version, IPAM_VERSION) != 0) {
		snprintf(err, errlen, "%s: built for another meridio-ipam-nsp "
		    "(interface %u, version %s; this one: %u, %s)", path,
		    ops != NULL ? ops->abi : 0,
		    ops != NULL && ops->abi == NSPW_ABI ? ops->version : "?",
		    NSPW_ABI, IPAM_VERSION);
		return NULL;
	}
	return ops;
}
