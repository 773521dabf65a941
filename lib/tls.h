/*
 * tls.h - TLS credentials of gRPC servers and clients from PEM files,
 * picked up again when they change on disk. Never logs, never exits.
 */
#ifndef IPAM_TLS_H
#define IPAM_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "grpcx.h"

/*
 * A certificate chain, its private key and a CA bundle, each a PEM file
 * path ("" or NULL = not used), with the contents last read from them.
 * Certificates rotate on disk (SPIRE's helpers, Kubernetes secrets
 * rewrite them): tls_refresh reads the files again when one changed
 * (device, inode, size, mtime or ctime), so new connections use them.
 * Safe to use from several threads.
 */
struct tls;

/* Largest PEM file read (a certificate chain or a CA bundle). */
#define TLS_PEM_MAX (1 << 20)

/*
 * Reads the files now. cert and key go together (both or neither); for a
 * server cert and key are required, ca then means clients must present a
 * certificate it signed; for a client ca is the roots to verify the server
 * against (the system's when unset) and cert/key its own certificate.
 * NULL with err set (naming the file) when a file cannot be read or holds
 * no PEM block of the expected kind.
 */
struct tls *tls_new(const char *cert, const char *key,
    const char *ca, char *err, size_t errlen);

/* Frees t. Accepts NULL. A server using t must be destroyed first. */
void tls_free(struct tls *t);

/*
 * Reads the files again if one changed since the last read. Returns 1
 * when new contents are in place, 0 when nothing changed, -1 with err set
 * when a changed file cannot be read or holds no PEM (the previous
 * contents stay, and the next call tries again).
 */
int tls_refresh(struct tls *t, char *err, size_t errlen);

/* True if t has a certificate and key (a client: presents one). */
bool tls_has_cert(const struct tls *t);

/*
 * What the server's fetcher (below) reports: rc 1 after it read changed
 * files (err ""), rc -1 when changed files could not be read (err says
 * which and why; reported once per distinct error while it lasts). Called
 * on a gRPC thread with t locked: it must not use t, and should be quick.
 * gRPC may still refuse contents that were read (a key that does not match
 * the certificate): it then logs and keeps serving the previous ones.
 */
typedef void (*tls_notify_fn)(void *arg, int rc, const char *err);

/* Sets the function the fetcher reports to (NULL: none). */
void tls_set_notify(struct tls *t, tls_notify_fn fn,
    void *arg);

/*
 * Server credentials that ask t for its contents on every new handshake
 * (gRPC's certificate config fetcher), refreshing them from disk first:
 * a rotated certificate is served without a restart. With a CA, clients
 * must present a certificate signed by it. Use it for one server port;
 * t must outlive that server. NULL if t has no certificate.
 */
grpc_server_credentials *tls_server_credentials(struct tls *t);

/*
 * Channel credentials from t's current contents (call tls_refresh
 * first to pick up new files; a channel keeps the credentials it was made
 * with, so recreate it after a change). Release with
 * grpc_channel_credentials_release.
 */
grpc_channel_credentials *tls_channel_credentials(struct tls *t);

/*
 * Like grpcx_client_new, over TLS with t's contents (plaintext when t is
 * NULL). server_name, when not NULL or "", is the name checked in the
 * server's certificate instead of the target's host.
 */
struct grpcx_client *tls_client_new(const char *target,
    struct tls *t, const char *server_name, char *err, size_t errlen);

#endif
