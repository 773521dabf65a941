/*
 * portowner.h - why a TCP port cannot be listened on, and who holds it.
 *
 * Used when a bind fails, to say so in one line a person can act on:
 * "address already in use (pid 812 (meridio-ipam-api) listens on it)".
 * Reads /proc of the caller's network namespace; never logs.
 */
#ifndef IPAM_PORTOWNER_H
#define IPAM_PORTOWNER_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Binds a fresh IPv6 dual-stack TCP socket to [::]:port with SO_REUSEADDR
 * and without SO_REUSEPORT (as the daemon's listeners do), then closes it.
 * Returns 0 when that works, else the bind's errno (EADDRINUSE, EACCES...).
 */
int portowner_bind_errno(unsigned port);

/*
 * Finds a process with a listening TCP socket (IPv4 or IPv6) on port and
 * writes "pid <pid> (<command name>)" into buf. Returns false, buf "",
 * when none is visible (another user's process without privileges, a
 * listener in another namespace).
 */
bool portowner_find(unsigned port, char *buf, size_t len);

#endif
