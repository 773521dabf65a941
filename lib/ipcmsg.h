/*
 * ipcmsg.h - the internal messages (proto/ipamd/v1) on top of ipc framing,
 * and the contract between the supervisor and its workers.
 *
 * Process contract:
 *  - The supervisor creates a private runtime directory (mode 0700) and
 *    passes its path in $IPAMD_RUNDIR to every worker. The db worker's
 *    socket is $IPAMD_RUNDIR/db.sock (IPCMSG_DB_SOCK); the supervisor binds
 *    and listens on it and hands the listening fd to the db worker as fd 4,
 *    so clients queue rather than fail while the db worker restarts.
 *  - The supervisor takes the data file's lock (flock) at start and holds
 *    it for its whole life, so that no other instance can take the file
 *    while the db worker restarts; the db worker gets that descriptor as
 *    fd 5 and uses it as its lock. (When the supervisor cannot open the
 *    file, fd 5 is closed and the db worker opens it and reports why.)
 *  - Every worker gets fd 3: a Unix stream socket to the supervisor. The
 *    worker sends WorkerStatus frames on it: ready = true once it serves, and
 *    at least one frame a second as a heartbeat. EOF on fd 3 means the
 *    supervisor is gone: the worker exits.
 *  - The supervisor sets PR_SET_PDEATHSIG(SIGTERM) and PR_SET_NO_NEW_PRIVS
 *    before exec (workers may set them again), resets the signal mask and
 *    handlers, and closes every other fd. NOTIFY_SOCKET and WATCHDOG_* are
 *    removed from a worker's environment: only the supervisor talks to
 *    systemd.
 *  - SIGTERM asks a worker for an orderly stop; it exits 0. On SIGTERM the
 *    supervisor stops api and nsp first, the db worker when they are gone
 *    (or after 2 s), and SIGKILLs what is left at 4.5 s.
 *  - Exit status 78 (IPCMSG_EXIT_PERMANENT, EX_CONFIG) means a permanent
 *    failure that a restart cannot fix (bad data file, locked database,
 *    prefix mismatch): log why, then exit 78. The supervisor then stops the
 *    other workers and exits 1 at once, without restarting anything.
 *  - Any other death is restarted with a floor and a doubling backoff
 *    (see restart.h); too many deaths in a window stop everything.
 *  - A frame on fd 3 that is not a WorkerStatus is a bug: the supervisor
 *    logs it and kills and restarts that worker.
 *  - Configuration reaches workers through the same environment variables
 *    (already validated by the supervisor).
 *  - The supervisor keeps $IPAMD_RUNDIR/restarts (IPCMSG_RESTARTS_FILE)
 *    up to date: one line "<worker> <restarts>" per worker, replaced whole
 *    (rename) at every start, so the api worker can export the counts.
 */
#ifndef IPAM_IPCMSG_H
#define IPAM_IPCMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ipamd/v1/ipamd.pb-c.h"
#include "ipc.h"

#define IPCMSG_SUPERVISOR_FD 3		/* worker's end of the status channel */
#define IPCMSG_DB_LISTEN_FD 4		/* db worker: the listening socket */
#define IPCMSG_DB_LOCK_FD 5		/* db worker: the data file, locked */
#define IPCMSG_ENV_RUNDIR "IPAMD_RUNDIR"	/* runtime directory variable */
#define IPCMSG_DB_SOCK "db.sock"	/* db socket, inside the runtime dir */
#define IPCMSG_EXIT_PERMANENT 78	/* worker exit: do not restart, stop all */
#define IPCMSG_RESTARTS_FILE "restarts"	/* restart counts, inside the runtime dir */

/* Packs r and queues it as one frame on c. Returns 0 or -1. */
int ipcmsg_queue_request(struct ipc_conn *c, const Ipamd__V1__Request *r);
int ipcmsg_queue_reply(struct ipc_conn *c, const Ipamd__V1__Reply *r);

/* Packs and writes one frame, blocking. Returns 0 or -1 with errno. */
int ipcmsg_send_request(int fd, const Ipamd__V1__Request *r);

/*
 * Unpacks a frame (data as ipc_conn_next or ipc_recv hand it out, never
 * NULL). NULL if the bytes are not a well-formed message of that type
 * (the caller closes the connection). Free with the matching
 * ipamd__v1__*__free_unpacked(m, NULL).
 */
Ipamd__V1__Request *ipcmsg_unpack_request(const uint8_t *data, size_t len);
Ipamd__V1__Reply *ipcmsg_unpack_reply(const uint8_t *data, size_t len);
Ipamd__V1__WorkerStatus *ipcmsg_unpack_status(const uint8_t *data, size_t len);

/* Sends a WorkerStatus frame on fd (blocking). Returns 0 or -1. */
int ipcmsg_send_status(int fd, bool ready, const char *status);

/* Path of the db socket for a runtime dir into buf. Returns 0 or -1 when
 * it does not fit (sun_path is short). */
int ipcmsg_db_path(const char *rundir, char *buf, size_t buflen);

#endif
