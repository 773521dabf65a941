/*
 * ctl.h - what the files of ipamctl share: exit codes, the Admin client
 * (Unix socket of a running daemon), the read commands and import.
 */
#ifndef IPAM_CTL_H
#define IPAM_CTL_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "grpcx.h"
#include "ipamadmin/v1/admin.pb-c.h"

#define CTL_OK 0		/* success */
#define CTL_RPC 1		/* RPC error, problem found, bad input */
#define CTL_USAGE 2		/* bad command line */

/* Every long option of ipamctl (ctl_options); each command takes some. */
enum ctl_opt {
	CTL_O_CONDUIT = 1, CTL_O_NODE, CTL_O_NAME, CTL_O_FAMILY, CTL_O_TRENCH,
	CTL_O_SERVICE, CTL_O_JSON, CTL_O_ADMIN, CTL_O_TARGET, CTL_O_TIMEOUT,
	CTL_O_HELP, CTL_O_TLS_CA, CTL_O_TLS_CERT, CTL_O_TLS_KEY, CTL_O_TLS_NAME,
	CTL_O_SPIFFE, CTL_O_SPIFFE_ID, CTL_O_DATA,
};

/* The getopt_long table of every option, values enum ctl_opt. */
extern const struct option ctl_options[];

/* --timeout: a positive Go duration, in ms rounded up. Returns 0 or -1. */
int ctl_timeout_ms(const char *arg, int64_t *ms);

/* Prints "ipamctl: CMD: " and the usage error; returns CTL_USAGE. */
int ctl_bad(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* --family: 4 for ipv4, 6 for ipv6 (any case), else 0. */
int ctl_family(const char *arg);

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

/*
 * One line on the instance behind admin socket sock, into buf: the path,
 * port, data file and pid (Info), or why it did not answer. Returns the
 * length written. Needs grpc_init.
 */
size_t ctl_instance_line(const char *sock, char *buf, size_t len);

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

/* True if cmd is one of the operator commands of commands.c. */
bool ctl_is_op(const char *cmd);

/* Runs an operator command; argv[0] is the command. Returns the exit code. */
int ctl_op_main(int argc, char **argv);

/*
 * Imports an export file into the sqlite file data_source of a stopped
 * instance, in one transaction. Messages go to stderr. Returns an exit
 * code.
 */
int ctl_import(const char *file, const char *data_source);

#endif
