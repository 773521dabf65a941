/*
 * ctl.h - what the files of ipamctl share: exit codes, the Admin client
 * (Unix socket of a running daemon), the read commands and import.
 */
#ifndef IPAM_CTL_H
#define IPAM_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "grpcx.h"
#include "ipamadmin/v1/admin.pb-c.h"

#define CTL_OK 0		/* success */
#define CTL_RPC 1		/* RPC error, problem found, bad input */
#define CTL_USAGE 2		/* bad command line */

/* What the command line asked for. */
struct ctl_args {
	const char *cmd;		/* the command word */
	const char *conduit;		/* --conduit */
	const char *node;		/* --node */
	const char *name;		/* --name */
	const char *trench;		/* --trench, else $IPAM_TRENCH_NAME */
	const char *service;		/* --service (health), "" by default */
	int family;			/* --family: 4, 6; 0 = default */
	char target[300];		/* --target, else 127.0.0.1:$IPAM_PORT */
	int64_t timeout_ms;		/* --timeout */
	const char *tls_ca;		/* --tls-ca: roots for the server */
	const char *tls_cert;		/* --tls-cert: our certificate */
	const char *tls_key;		/* --tls-key: its private key */
	const char *tls_name;		/* --tls-server-name */
	bool tls;			/* any --tls-* given: talk TLS */
	bool spiffe;			/* --spiffe: mTLS with our SVID */
	const char *spiffe_id;		/* --spiffe-id: the server's ID */
	bool json;			/* --json */
	const char *admin;		/* --admin: admin socket */
	const char *data_source;	/* import: --data-source */
	const char *file;		/* import: FILE */
};

#define CTL_ADMIN_SOCK "admin.sock"	/* inside the runtime directory */
#define CTL_EXPORT_FORMAT "meridio-ipam-export/1"
#define CTL_SYSTEM_RUNDIR "/run"	/* where systemd makes RuntimeDirectory= */
#define CTL_NO_CONDUITS "no conduit source (IPAM_NSP_SERVICE empty and " \
	"IPAM_CONDUITS unset): every Allocate fails with NOT_FOUND"
#define CTL_INFO_TIMEOUT_MS 3000	/* Info of one instance, when listing */

/* The records of a Dump, parents first, in the chunks that carry them. */
struct ctl_dump {
	Ipamadmin__V1__DumpChunk **chunks;	/* unpacked chunks (owned) */
	size_t nchunks;				/* how many */
	const Ipamadmin__V1__Record **recs;	/* every record, in order */
	size_t n;				/* how many */
};

/*
 * The admin socket to use: opt (--admin) if given, else
 * $IPAMD_RUNDIR/admin.sock, else the one live admin socket among
 * $RUNTIME_DIRECTORY/admin.sock, the systemd units' /run/meridio-ipam*\/
 * and our meridio-ipam.*\/ under $XDG_RUNTIME_DIR, $TMPDIR and /tmp.
 * Returns 0 with path filled, or -1 with err saying why (none, or several:
 * one line each with port and data file, which needs grpc_init).
 */
int ctl_admin_find(const char *opt, char *path, size_t pathlen, char *err,
    size_t errlen);

/*
 * One unary Admin call on the socket sock: method, request rq, the answer
 * unpacked with desc into *out (NULL on failure). Returns the status code
 * (also in st).
 */
int ctl_admin_call(const char *sock, const char *method,
    const ProtobufCMessage *rq, const ProtobufCMessageDescriptor *desc,
    int64_t timeout_ms, ProtobufCMessage **out, struct grpcx_status *st);

/*
 * Info over the admin socket. Returns the status code (also in st); on OK
 * *out is the reply (ipamadmin__v1__info_reply__free_unpacked).
 */
int ctl_admin_info(const char *sock, int64_t timeout_ms,
    Ipamadmin__V1__InfoReply **out, struct grpcx_status *st);

/* instances: one line per running instance found (ctl_instance_line). */
int ctl_admin_instances(void);

/*
 * Dump over the admin socket sock (filters "" = all). Returns the status
 * code (also in st); on OK *out holds the records (ctl_dump_free).
 */
int ctl_admin_dump(const char *sock, const char *conduit, const char *node,
    int64_t timeout_ms, struct ctl_dump *out, struct grpcx_status *st);

/* Frees what ctl_admin_dump filled. Accepts an empty dump. */
void ctl_dump_free(struct ctl_dump *d);

/* Read commands: print what d holds (text or JSON). Return an exit code.
 * show: info (NULL = unknown) adds the conduit source and its warning. */
int ctl_print_show(const struct ctl_dump *d, bool json,
    const Ipamadmin__V1__InfoReply *info);
int ctl_print_usage(const struct ctl_dump *d, bool json);
int ctl_print_export(const struct ctl_dump *d);
int ctl_print_check(const Ipamadmin__V1__CheckReport *r, bool json);

struct json_object;

/* The conduit source of info (NULL: unknown) as JSON members of doc
 * ("conduit_source", "warnings"), or as a warning on stderr. */
void ctl_json_source(struct json_object *doc,
    const Ipamadmin__V1__InfoReply *info);
void ctl_warn_source(const char *cmd, const Ipamadmin__V1__InfoReply *info);

/* Prints the help of an admin socket command (or import). */
void ctl_op_usage(FILE *f, const char *cmd);

/* Runs a command of the admin socket. Returns the exit code. */
int ctl_op_admin(const struct ctl_args *a);

/*
 * Imports an export file into the sqlite file data_source of a stopped
 * instance, in one transaction. Messages go to stderr. Returns an exit
 * code.
 */
int ctl_import(const char *file, const char *data_source);

#endif
