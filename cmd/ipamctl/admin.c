/*
 * admin.c - ipamctl's client of ipamadmin.v1.Admin: finding the admin
 * socket of the running daemon, Dump (server streaming) and Check.
 */
#include "ctl.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>

#define CTL_SCAN_MAX 16			/* instances listed when ambiguous */
#define CTL_SUN_PATH sizeof(((struct sockaddr_un *)0)->sun_path)

/* True if a process accepts connections on the Unix socket at path. */
static bool
ctl_sock_live(const char *path)
{
	struct sockaddr_un sa;
	int fd;
	bool ok;

	if (strlen(path) >= sizeof(sa.sun_path))
		return false;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path));
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

/* Found sockets of a scan. */
struct ctl_found {
	char path[CTL_SCAN_MAX][CTL_SUN_PATH];	/* the first ones */
	size_t n;				/* how many in all */
};

/* Adds path if it is a live admin socket not listed yet; mine: only if
 * it belongs to our uid. */
static void
ctl_found_add(struct ctl_found *f, const char *path, bool mine)
{
	struct stat sb;
	size_t n = strlen(path);

	if (n >= CTL_SUN_PATH || lstat(path, &sb) != 0 ||
	    !S_ISSOCK(sb.st_mode) || (mine && sb.st_uid != geteuid()))
		return;
	for (size_t i = 0; i < f->n && i < CTL_SCAN_MAX; i++)
		if (strcmp(f->path[i], path) == 0)
			return;
	if (!ctl_sock_live(path))
		return;
	if (f->n < CTL_SCAN_MAX)
		memcpy(f->path[f->n], path, n + 1);
	f->n++;
}

/*
 * Adds the live admin sockets of base/meridio-ipam*: the private
 * directories meridio-ipam.XXXXXX of our uid, and the runtime directories
 * of systemd units (meridio-ipam, meridio-ipam-b, ...: any owner, the
 * socket's permissions decide).
 */
static void
ctl_scan_dir(const char *base, struct ctl_found *f)
{
	char path[1024];
	struct dirent *e;
	int n;
	DIR *d;

	d = opendir(base);
	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "meridio-ipam", 12) != 0)
			continue;
		n = snprintf(path, sizeof(path), "%s/%s/%s", base, e->d_name,
		    CTL_ADMIN_SOCK);
		if (n < 0 || (size_t)n >= CTL_SUN_PATH)
			continue;
		ctl_found_add(f, path, e->d_name[12] == '.');
	}
	closedir(d);
}

/*
 * Every live admin socket ipamctl finds by itself: $RUNTIME_DIRECTORY's,
 * then meridio-ipam* under /run, $XDG_RUNTIME_DIR, $TMPDIR and /tmp.
 */
static void
ctl_scan_all(struct ctl_found *f)
{
	const char *bases[] = { CTL_SYSTEM_RUNDIR, getenv("XDG_RUNTIME_DIR"),
	    getenv("TMPDIR"), "/tmp" }, *rundir;

	/* Inside a unit (or as it): its runtime directory. */
	rundir = getenv("RUNTIME_DIRECTORY");
	if (rundir != NULL && rundir[0] == '/') {
		char p[1024];

		snprintf(p, sizeof(p), "%.*s/%s", (int)strcspn(rundir, ":"),
		    rundir, CTL_ADMIN_SOCK);
		ctl_found_add(f, p, false);
	}
	/* each directory once; unset and empty variables skipped */
	for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
		bool skip = bases[i] == NULL || bases[i][0] == '\0';

		for (size_t k = 0; k < i && !skip; k++)
			skip = bases[k] != NULL &&
			    strcmp(bases[k], bases[i]) == 0;
		if (!skip)
			ctl_scan_dir(bases[i], f);
	}
}

/*
 * One line on the instance behind admin socket sock, into buf: the path,
 * port, data file and pid (Info), or why it did not answer. Returns the
 * length written. Needs grpc_init.
 */
static size_t
ctl_instance_line(const char *sock, char *buf, size_t len)
{
	Ipamadmin__V1__InfoReply *in = NULL;
	struct grpcx_status st;
	int n;

	if (ctl_admin_info(sock, CTL_INFO_TIMEOUT_MS, &in, &st) !=
	    GRPC_STATUS_OK)
		n = snprintf(buf, len, "%s  (no answer: %s)", sock,
		    grpcx_status_name(st.code));
	else
		n = snprintf(buf, len, "%s  port %u  data %s  pid %d", sock,
		    in->port, in->data_source, in->pid);
	ipamadmin__v1__info_reply__free_unpacked(in, NULL);
	if (n < 0)
		return 0;
	return (size_t)n < len ? (size_t)n : len - 1;
}

int
ctl_admin_instances(void)
{
	struct ctl_found f = { .n = 0 };
	char line[1024];

	ctl_scan_all(&f);
	for (size_t i = 0; i < f.n && i < CTL_SCAN_MAX; i++) {
		ctl_instance_line(f.path[i], line, sizeof(line));
		printf("%s\n", line);
	}
	if (f.n == 0)
		fprintf(stderr, "ipamctl: instances: no running meridio-ipam "
		    "found\n");
	return CTL_OK;
}

int
ctl_admin_find(const char *opt, char *path, size_t pathlen, char *err,
    size_t errlen)
{
	const char *rundir;
	struct ctl_found f = { .n = 0 };
	size_t used;

	if (opt != NULL || ((rundir = getenv("IPAMD_RUNDIR")) != NULL &&
	    rundir[0] != '\0')) {
		if (opt != NULL)
			used = (size_t)snprintf(path, pathlen, "%s", opt);
		else
			used = (size_t)snprintf(path, pathlen, "%s/%s", rundir,
			    CTL_ADMIN_SOCK);
		if (used >= pathlen || used >= CTL_SUN_PATH) {
			snprintf(err, errlen, "admin socket path too long");
			return -1;
		}
		return 0;
	}
	ctl_scan_all(&f);
	if (f.n == 1) {
		snprintf(path, pathlen, "%s", f.path[0]);
		return 0;
	}
	if (f.n == 0) {
		snprintf(err, errlen, "no running meridio-ipam found (looked "
		    "for meridio-ipam*/%s in $RUNTIME_DIRECTORY and under "
		    CTL_SYSTEM_RUNDIR ", $XDG_RUNTIME_DIR, $TMPDIR and /tmp): "
		    "give --admin PATH or set IPAMD_RUNDIR", CTL_ADMIN_SOCK);
	} else {
		size_t off = (size_t)snprintf(err, errlen, "%zu running "
		    "instances, pick one with --admin PATH:", f.n);

		for (size_t i = 0; i < f.n && i < CTL_SCAN_MAX &&
		    off < errlen; i++) {
			off += (size_t)snprintf(err + off, errlen - off,
			    "\n  ");
			if (off < errlen)
				off += ctl_instance_line(f.path[i], err + off,
				    errlen - off);
		}
	}
	return -1;
}

int
ctl_admin_call(const char *sock, const char *method,
    const ProtobufCMessage *rq, const ProtobufCMessageDescriptor *desc,
    int64_t timeout_ms, ProtobufCMessage **out, struct grpcx_status *st)
{
	struct grpcx_client *cl;
	char target[CTL_SUN_PATH + 8], err[256];

	*out = NULL;
	snprintf(target, sizeof(target), "unix:%s", sock);
	cl = grpcx_client_new(target, err, sizeof(err));
	if (cl == NULL) {
		grpcx_status_set(st, GRPC_STATUS_INTERNAL, "%s", err);
		return st->code;
	}
	if (grpcx_call(cl, method, rq, desc, timeout_ms, out, st) !=
	    GRPC_STATUS_OK)
		*out = NULL;
	grpcx_client_free(cl);
	return st->code;
}

int
ctl_admin_info(const char *sock, int64_t timeout_ms,
    Ipamadmin__V1__InfoReply **out, struct grpcx_status *st)
{
	Ipamadmin__V1__InfoRequest rq = IPAMADMIN__V1__INFO_REQUEST__INIT;

	return ctl_admin_call(sock, "/ipamadmin.v1.Admin/Info", &rq.base,
	    &ipamadmin__v1__info_reply__descriptor, timeout_ms,
	    (ProtobufCMessage **)out, st);
}

/* Waits for the batch just started (e, the only one in flight). False
 * if it did not start or failed. */
static bool
ctl_wait(grpc_call_error e, grpc_completion_queue *cq)
{
	grpc_event ev;

	if (e != GRPC_CALL_OK)
		return false;
	do {
		ev = grpc_completion_queue_next(cq,
		    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	} while (ev.type != GRPC_OP_COMPLETE);
	return ev.success != 0;
}

/* Appends a chunk and its records to d. Returns 0 or -1. */
static int
ctl_dump_add(struct ctl_dump *d, Ipamadmin__V1__DumpChunk *ch)
{
	Ipamadmin__V1__DumpChunk **cv;
	const Ipamadmin__V1__Record **rv;

	cv = realloc(d->chunks, (d->nchunks + 1) * sizeof(*cv));
	if (cv == NULL)
		return -1;
	d->chunks = cv;
	rv = realloc(d->recs, (d->n + ch->n_records + 1) * sizeof(*rv));
	if (rv == NULL)
		return -1;
	d->recs = rv;
	d->chunks[d->nchunks++] = ch;
	for (size_t i = 0; i < ch->n_records; i++)
		d->recs[d->n++] = ch->records[i];
	return 0;
}

void
ctl_dump_free(struct ctl_dump *d)
{
	if (d == NULL)
		return;
	for (size_t i = 0; i < d->nchunks; i++)
		ipamadmin__v1__dump_chunk__free_unpacked(d->chunks[i], NULL);
	free(d->chunks);
	free(d->recs);
	memset(d, 0, sizeof(*d));
}

/*
 * The streaming call, batch by batch: send the request and read the
 * initial metadata, read messages until there is none, then the status.
 */
int
ctl_admin_dump(const char *sock, const char *conduit, const char *node,
    int64_t timeout_ms, struct ctl_dump *out, struct grpcx_status *st)
{
	Ipamadmin__V1__DumpRequest rq = IPAMADMIN__V1__DUMP_REQUEST__INIT;
	grpc_channel_credentials *creds;
	grpc_channel *ch;
	grpc_completion_queue *cq;
	grpc_call *call;
	struct grpcx_ccall u;
	grpc_slice method;
	char target[CTL_SUN_PATH + 8];
	bool failed = false;
	size_t n;

	memset(out, 0, sizeof(*out));
	grpcx_status_set(st, GRPC_STATUS_UNKNOWN, "%s", "");
	snprintf(target, sizeof(target), "unix:%s", sock);
	creds = grpc_insecure_credentials_create();
	ch = grpc_channel_create(target, creds, NULL);
	grpc_channel_credentials_release(creds);
	cq = grpc_completion_queue_create_for_next(NULL);
	method = grpc_slice_from_static_string("/ipamadmin.v1.Admin/Dump");
	call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
	    method, NULL, grpcx_deadline_ms(timeout_ms), NULL);
	grpc_slice_unref(method);
	rq.conduit = (char *)(conduit != NULL ? conduit : "");
	rq.node = (char *)(node != NULL ? node : "");
	(void)ctl_wait(grpcx_stream_start(call, grpcx_pack(&rq.base), &u, &u),
	    cq);
	for (;;) {
		Ipamadmin__V1__DumpChunk *c;

		if (!ctl_wait(grpcx_stream_next(call, &u, &u), cq) ||
		    u.recv == NULL)
			break;
		c = (Ipamadmin__V1__DumpChunk *)grpcx_unpack(
		    &ipamadmin__v1__dump_chunk__descriptor, u.recv);
		if (c == NULL || ctl_dump_add(out, c) < 0) {
			ipamadmin__v1__dump_chunk__free_unpacked(c, NULL);
			failed = true;
			grpc_call_cancel(call, NULL);
			break;
		}
	}
	(void)ctl_wait(grpcx_stream_finish(call, &u, &u), cq);
	n = GRPC_SLICE_LENGTH(u.details);
	grpcx_status_set(st, u.status, "%.*s", (int)(n > 400 ? 400 : n),
	    (const char *)GRPC_SLICE_START_PTR(u.details));
	if (failed)
		grpcx_status_set(st, GRPC_STATUS_INTERNAL,
		    "malformed DumpChunk or out of memory");
	if (st->code != GRPC_STATUS_OK)
		ctl_dump_free(out);

	grpcx_ccall_clear(&u);
	grpc_call_unref(call);
	grpcx_cq_drain(cq, NULL);
	grpc_completion_queue_destroy(cq);
	grpc_channel_destroy(ch);
	return st->code;
}
