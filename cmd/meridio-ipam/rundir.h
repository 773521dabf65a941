/*
 * rundir.h - the instance's private runtime directory, where the workers
 * find the db socket (ipcmsg.h).
 */
#ifndef IPAM_RUNDIR_H
#define IPAM_RUNDIR_H

#include <stddef.h>

/*
 * Makes the directory (mkdtemp: mode 0700, a fresh name per instance)
 * under $XDG_RUNTIME_DIR, else $TMPDIR, else /tmp, into dir, and listens
 * on the db socket in it: its path into sock, its fd into *listen_fd.
 * Returns 0, or -1 (logged; dir is "" when nothing was made).
 */
int rundir_make(char *dir, size_t dirlen, char *sock, size_t socklen,
    int *listen_fd);

/* Removes the directory and what workers left in it (logged on failure).
 * Does nothing for "". */
void rundir_remove(const char *dir);

#endif
