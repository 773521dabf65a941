/*
 * commands.c - ipamctl's commands over the Admin socket of the running
 * daemon (show, usage, check, export, release, instances), and the help
 * of those and of import.
 */
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>

/* How the admin socket is found, in every command's help. */
#define CTL_ADMIN_HELP \
	"  --admin PATH     the daemon's admin socket; default\n" \
	"                   $IPAMD_RUNDIR/admin.sock, else the one live\n" \
	"                   $RUNTIME_DIRECTORY/admin.sock or\n" \
	"                   meridio-ipam*/admin.sock under /run,\n" \
	"                   $XDG_RUNTIME_DIR, $TMPDIR or /tmp (see\n" \
	"                   `ipamctl instances`)\n" \
	"  --timeout D      deadline as a Go duration (default 30s)\n"

void
ctl_op_usage(FILE *f, const char *cmd)
{
	if (strcmp(cmd, "show") == 0)
		fprintf(f,
		    "usage: ipamctl show [--conduit C] [--node N] [--json] "
		    "[--admin PATH]\n\n"
		    "The tree trench / conduit / node / children: names, "
		    "prefixes,\nlast refresh, and used / usable child blocks.\n"
		    "\n"
		    "  --conduit C      only conduit C (and the trench records)\n"
		    "  --node N         only node N\n"
		    "  --json           {\"trench\", \"tree\": [record with "
		    "\"below\": [...]]}\n"
		    CTL_ADMIN_HELP);
	else if (strcmp(cmd, "usage") == 0)
		fprintf(f,
		    "usage: ipamctl usage [--conduit C] [--node N] [--json] "
		    "[--admin PATH]\n\n"
		    "Used / usable / percent per conduit (node prefixes) and "
		    "node\n(addresses), fullest first.\n\n"
		    "  --conduit C      only conduit C\n"
		    "  --node N         only node N\n"
		    "  --json           {\"usage\": [{kind, family, conduit, "
		    "node, used,\n"
		    "                   usable, percent}]}\n"
		    CTL_ADMIN_HELP);
	else if (strcmp(cmd, "check") == 0)
		fprintf(f,
		    "usage: ipamctl check [--json] [--admin PATH]\n\n"
		    "Online audit of the running daemon: rows left out at load "
		    "(orphans,\nchildren outside their parent, overlapping "
		    "siblings, bad cidrs or\nids) and records garbage "
		    "collection would reap now.\nPrints \"ok: N records\" and "
		    "exits 0 when clean; else one line per\nproblem (\"KIND "
		    "ID: WHAT\") and exit 1.\n\n"
		    "  --json           {\"ok\", \"records\", \"problems\": "
		    "[{id, kind, what}]}\n"
		    CTL_ADMIN_HELP);
	else if (strcmp(cmd, "export") == 0)
		fprintf(f,
		    "usage: ipamctl export [--admin PATH]\n\n"
		    "Every record as JSON on stdout, parents first:\n"
		    "  {\"format\": \"%s\", \"trench\": T,\n"
		    "   \"records\": [{\"id\", \"name\", \"cidr\", "
		    "\"parent_id\",\n"
		    "                \"updated_at\" (go-sqlite3 text or null), "
		    "\"expirable\"}]}\n\n"
		    CTL_ADMIN_HELP, CTL_EXPORT_FORMAT);
	else if (strcmp(cmd, "instances") == 0)
		fprintf(f,
		    "usage: ipamctl instances\n\n"
		    "One line per running meridio-ipam that ipamctl finds "
		    "by itself:\nits admin socket, port, data file and "
		    "supervisor pid. Looks at\n$RUNTIME_DIRECTORY/admin.sock, "
		    "then meridio-ipam*/admin.sock under\n/run (systemd units), "
		    "$XDG_RUNTIME_DIR, $TMPDIR and /tmp.\n");
	else if (strcmp(cmd, "release") == 0)
		fprintf(f,
		    "usage: ipamctl release --conduit C --node N --name X "
		    "[--family F]\n"
		    "       [--trench T] [--admin PATH]\n\n"
		    "Releases the address of child X on node N of conduit C, "
		    "in both\nfamilies (or only F), over the admin socket, and "
		    "prints each address\nreleased, one a line. Exit 1 with a "
		    "message when the trench, conduit,\nnode or child matched "
		    "nothing (unlike the Ipam API's Release).\n\n"
		    "  --conduit C      conduit name (required)\n"
		    "  --node N         node name (required)\n"
		    "  --name X         child name (required)\n"
		    "  --family F       ipv4 or ipv6 (default: both)\n"
		    "  --trench T       trench name (default $IPAM_TRENCH_NAME "
		    "or \"default\")\n"
		    CTL_ADMIN_HELP);
	else
		fprintf(f,
		    "usage: ipamctl import FILE [--data-source PATH]\n\n"
		    "Writes the records of an export FILE into the sqlite file "
		    "of a STOPPED\ninstance (its lock refuses a running one), "
		    "in one transaction. Refuses\nmalformed records, ids that "
		    "exist with other contents, missing parents,\nchildren "
		    "outside their parent and overlapping siblings: then "
		    "nothing is\nwritten. Records identical to stored rows are "
		    "skipped.\n\n"
		    "  --data-source P  the sqlite file (default "
		    "$IPAM_DATA_SOURCE)\n");
}

/* Prints a failed call; returns CTL_RPC. */
static int
ctl_op_rpc_error(const struct ctl_args *op, const char *sock,
    const struct grpcx_status *st)
{
	fprintf(stderr, "ipamctl: %s: %s: %s (admin socket %s)\n", op->cmd,
	    grpcx_status_name(st->code), st->message[0] != '\0' ?
	    st->message : "(no message)", sock);
	return CTL_RPC;
}

/*
 * release: prints each address released; NOT_FOUND (nothing matched) is
 * exit 1 with the daemon's reason per family.
 */
static int
ctl_op_release(const struct ctl_args *op, const char *sock)
{
	Ipamadmin__V1__ReleaseRequest rq = IPAMADMIN__V1__RELEASE_REQUEST__INIT;
	Ipamadmin__V1__ReleaseReply *rep = NULL;
	struct grpcx_status st;

	rq.trench = (char *)op->trench;
	rq.conduit = (char *)op->conduit;
	rq.node = (char *)op->node;
	rq.name = (char *)op->name;
	rq.family = op->family;
	if (ctl_admin_call(sock, "/ipamadmin.v1.Admin/Release", &rq.base,
	    &ipamadmin__v1__release_reply__descriptor, op->timeout_ms,
	    (ProtobufCMessage **)&rep, &st) != GRPC_STATUS_OK) {
		if (st.code == GRPC_STATUS_NOT_FOUND) {
			fprintf(stderr, "ipamctl: release: %s\n", st.message);
			return CTL_RPC;
		}
		return ctl_op_rpc_error(op, sock, &st);
	}
	for (size_t i = 0; i < rep->n_released; i++)
		printf("%s\n", rep->released[i]);
	for (size_t i = 0; i < rep->n_missing; i++)
		fprintf(stderr, "ipamctl: release: not released in %s\n",
		    rep->missing[i]);
	ipamadmin__v1__release_reply__free_unpacked(rep, NULL);
	return CTL_OK;
}

/*
 * A --conduit or --node filter that matched nothing is a mistake to say,
 * not an empty tree. Returns CTL_OK or CTL_RPC after the message.
 */
static int
ctl_op_filters_found(const struct ctl_args *op, const struct ctl_dump *d)
{
	bool conduit = op->conduit[0] == '\0', node = op->node[0] == '\0';

	for (size_t i = 0; i < d->n; i++) {
		const Ipamadmin__V1__Record *r = d->recs[i];

		if (r->level == 1 && strcmp(r->name, op->conduit) == 0)
			conduit = true;
		if (r->level == 2 && strcmp(r->name, op->node) == 0)
			node = true;
	}
	if (conduit && node)
		return CTL_OK;
	if (!conduit)
		fprintf(stderr, "ipamctl: %s: no conduit %s\n", op->cmd,
		    op->conduit);
	else
		fprintf(stderr, "ipamctl: %s: no node %s%s%s\n", op->cmd,
		    op->node, op->conduit[0] != '\0' ? " in conduit " : "",
		    op->conduit);
	return CTL_RPC;
}

int
ctl_op_admin(const struct ctl_args *op)
{
	char sock[256], err[4096];
	struct grpcx_status st;
	struct ctl_dump d;
	Ipamadmin__V1__CheckReport *rep = NULL;
	Ipamadmin__V1__InfoReply *info = NULL;
	int rc;

	grpc_init();
	if (strcmp(op->cmd, "instances") == 0) {
		rc = ctl_admin_instances();
		goto out;
	}
	if (ctl_admin_find(op->admin, sock, sizeof(sock), err,
	    sizeof(err)) < 0) {
		fprintf(stderr, "ipamctl: %s: %s\n", op->cmd, err);
		rc = CTL_RPC;
		goto out;
	}
	if (strcmp(op->cmd, "release") == 0) {
		rc = ctl_op_release(op, sock);
		goto out;
	}
	if (strcmp(op->cmd, "check") == 0) {
		Ipamadmin__V1__CheckRequest rq =
		    IPAMADMIN__V1__CHECK_REQUEST__INIT;

		if (ctl_admin_call(sock, "/ipamadmin.v1.Admin/Check", &rq.base,
		    &ipamadmin__v1__check_report__descriptor, op->timeout_ms,
		    (ProtobufCMessage **)&rep, &st) != GRPC_STATUS_OK) {
			rc = ctl_op_rpc_error(op, sock, &st);
		} else {
			rc = ctl_print_check(rep, op->json);
			ipamadmin__v1__check_report__free_unpacked(rep, NULL);
		}
		goto out;
	}
	if (ctl_admin_dump(sock, op->conduit, op->node, op->timeout_ms, &d,
	    &st) != GRPC_STATUS_OK) {
		rc = ctl_op_rpc_error(op, sock, &st);
		goto out;
	}
	if ((rc = ctl_op_filters_found(op, &d)) != CTL_OK) {
		ctl_dump_free(&d);
		goto out;
	}
	if (strcmp(op->cmd, "show") == 0) {
		/* A daemon without Info (older) just gets no warning. */
		(void)ctl_admin_info(sock, op->timeout_ms, &info, &st);
		rc = ctl_print_show(&d, op->json, info);
		ipamadmin__v1__info_reply__free_unpacked(info, NULL);
	} else if (strcmp(op->cmd, "usage") == 0) {
		rc = ctl_print_usage(&d, op->json);
	} else {
		rc = ctl_print_export(&d);
	}
	ctl_dump_free(&d);
out:
	grpc_shutdown_blocking();	/* gRPC threads gone before exit() */
	return rc;
}
