/*
 * tls.c - TLS credentials from PEM files, read again when they change
 * (see tls.h).
 */
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpc/grpc_security.h>

/* Which file of a struct tls. */
enum tls_pem_kind {
	TLS_CERT,			/* certificate chain */
	TLS_KEY,			/* private key */
	TLS_CA,			/* CA bundle */
	TLS_NPEM
};

/* What a file must hold, by kind (the end of its BEGIN line). */
static const char *const tls_pem_marker[TLS_NPEM] = {
	"CERTIFICATE-----", "PRIVATE KEY-----", "CERTIFICATE-----",
};

/* Names of the kinds, for error messages. */
static const char *const tls_pem_what[TLS_NPEM] = {
	"certificate", "private key", "CA",
};

/* What tells one version of a file from the next. */
struct tls_stamp {
	dev_t dev;			/* device of the file */
	ino_t ino;			/* inode: a renamed-in file differs */
	off_t size;			/* length in bytes */
	struct timespec mtime;		/* last write */
	struct timespec ctime;		/* last status change */
};

/* One PEM file. */
struct tls_pem {
	char *path;			/* file path, NULL when not used */
	struct tls_stamp stamp;	/* version whose contents are in data */
	char *data;			/* contents, NUL-terminated */
};

struct tls {
	pthread_mutex_t mu;		/* guards everything below */
	struct tls_pem pem[TLS_NPEM]; /* the files, by kind */
	uint64_t generation;		/* successful reads so far */
	uint64_t served;		/* generation last given to the server */
	tls_notify_fn notify;	/* the fetcher's reports, or NULL */
	void *notify_arg;		/* its first argument */
	char notified[256];		/* last error reported, "" if none */
};

/* The stamp of a stat result. */
static void
tls_stamp_of(const struct stat *st, struct tls_stamp *s)
{
	memset(s, 0, sizeof(*s));
	s->dev = st->st_dev;
	s->ino = st->st_ino;
	s->size = st->st_size;
	s->mtime = st->st_mtim;
	s->ctime = st->st_ctim;
}

/* True if two stamps name the same version of a file. */
static bool
tls_stamp_eq(const struct tls_stamp *a, const struct tls_stamp *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	    a->mtime.tv_sec == b->mtime.tv_sec &&
	    a->mtime.tv_nsec == b->mtime.tv_nsec &&
	    a->ctime.tv_sec == b->ctime.tv_sec &&
	    a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/*
 * Reads one PEM file whole into *data (NUL-terminated, caller frees) and
 * its stamp into *stamp. The stamp is taken from the open file before and
 * after reading: a file that changed meanwhile (a writer in the middle of
 * a rotation) is refused, so the next refresh reads it again. Also refused:
 * not a regular file, over TLS_PEM_MAX, a NUL byte, no BEGIN line of
 * the expected kind, no END line after it (a file cut short). The blocks
 * themselves are parsed by gRPC. Returns 0, or -1 with err set.
 */
static int
tls_pem_read(const char *path, enum tls_pem_kind kind, char **data,
    struct tls_stamp *stamp, char *err, size_t errlen)
{
	struct stat st;
	struct tls_stamp after;
	char *buf = NULL, msg[80];
	const char *begin, *why = NULL;
	size_t len = 0;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		why = strerror(errno);
	} else if (!S_ISREG(st.st_mode) || st.st_size > TLS_PEM_MAX) {
		snprintf(msg, sizeof(msg), "not a regular file of at most %d "
		    "bytes", TLS_PEM_MAX);
		why = msg;
	} else if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		why = "out of memory";
	}
	if (why != NULL)
		goto fail;
	tls_stamp_of(&st, stamp);
	while (len < (size_t)st.st_size) {
		n = read(fd, buf + len, (size_t)st.st_size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	if (fstat(fd, &st) < 0)
		memset(&st, 0, sizeof(st));
	tls_stamp_of(&st, &after);
	if (len != (size_t)st.st_size || !tls_stamp_eq(stamp, &after)) {
		why = "changed while being read";
		goto fail;
	}
	buf[len] = '\0';
	begin = strstr(buf, "-----BEGIN ");
	if (strlen(buf) != len || begin == NULL ||
	    strstr(begin, tls_pem_marker[kind]) == NULL ||
	    strstr(begin, "-----END ") == NULL) {
		snprintf(msg, sizeof(msg), "no PEM %s in it",
		    tls_pem_what[kind]);
		why = msg;
		goto fail;
	}
	close(fd);
	*data = buf;
	return 0;
fail:
	snprintf(err, errlen, "%s file %s: %s", tls_pem_what[kind], path, why);
	free(buf);
	if (fd >= 0)
		close(fd);
	return -1;
}

/*
 * The body of tls_refresh, with t->mu held: finds the files whose
 * stamp changed (or that cannot be stat'ed), reads them all, and only if
 * every one was read replaces the contents. All or nothing, so a server
 * never pairs a new certificate with a key that failed to read.
 */
static int
tls_refresh_locked(struct tls *t, bool force, char *err,
    size_t errlen)
{
	char *data[TLS_NPEM] = { NULL };
	struct tls_stamp stamp[TLS_NPEM], now;
	bool changed[TLS_NPEM] = { false }, any = false;
	struct stat st;
	int k, rc = -1;

	for (k = 0; k < TLS_NPEM; k++) {
		if (t->pem[k].path == NULL)
			continue;
		if (!force && stat(t->pem[k].path, &st) == 0) {
			tls_stamp_of(&st, &now);
			if (tls_stamp_eq(&now, &t->pem[k].stamp))
				continue;
		}
		changed[k] = any = true;
	}
	if (!any)
		return 0;
	for (k = 0; k < TLS_NPEM; k++) {
		if (changed[k] && tls_pem_read(t->pem[k].path,
		    (enum tls_pem_kind)k, &data[k], &stamp[k], err,
		    errlen) != 0)
			goto out;
	}
	for (k = 0; k < TLS_NPEM; k++) {
		if (!changed[k])
			continue;
		free(t->pem[k].data);
		t->pem[k].data = data[k];
		t->pem[k].stamp = stamp[k];
		data[k] = NULL;
	}
	t->generation++;
	rc = 1;
out:
	for (k = 0; k < TLS_NPEM; k++)
		free(data[k]);
	return rc;
}

/* A copy of path in *out, NULL for "" or NULL. Returns 0 or -1. */
static int
tls_path_copy(const char *path, char **out)
{
	*out = NULL;
	if (path == NULL || path[0] == '\0')
		return 0;
	*out = strdup(path);
	return *out != NULL ? 0 : -1;
}

struct tls *
tls_new(const char *cert, const char *key, const char *ca, char *err,
    size_t errlen)
{
	struct tls *t;
	bool has_cert = cert != NULL && cert[0] != '\0';
	bool has_key = key != NULL && key[0] != '\0';

	if (has_cert != has_key) {
		snprintf(err, errlen, "a %s file needs a %s file too",
		    has_cert ? "certificate" : "private key",
		    has_cert ? "private key" : "certificate");
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&t->mu, NULL);
	if (tls_path_copy(cert, &t->pem[TLS_CERT].path) != 0 ||
	    tls_path_copy(key, &t->pem[TLS_KEY].path) != 0 ||
	    tls_path_copy(ca, &t->pem[TLS_CA].path) != 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (tls_refresh_locked(t, true, err, errlen) < 0)
		goto fail;
	t->generation = 1;
	return t;
fail:
	tls_free(t);
	return NULL;
}

void
tls_free(struct tls *t)
{
	if (t == NULL)
		return;
	for (int k = 0; k < TLS_NPEM; k++) {
		free(t->pem[k].path);
		free(t->pem[k].data);
	}
	pthread_mutex_destroy(&t->mu);
	free(t);
}

int
tls_refresh(struct tls *t, char *err, size_t errlen)
{
	int rc;

	pthread_mutex_lock(&t->mu);
	rc = tls_refresh_locked(t, false, err, errlen);
	pthread_mutex_unlock(&t->mu);
	return rc;
}

bool
tls_has_cert(const struct tls *t)
{
	return t->pem[TLS_CERT].path != NULL;
}

/*
 * gRPC's certificate config fetcher: called when the server port is bound
 * and then before every new handshake. It refreshes from disk (a failed
 * read keeps the previous contents, and is reported to t->notify once per
 * distinct error) and hands gRPC a new config only when
 * the contents changed since the last one it got. gRPC keeps its current
 * config when the new one does not load (say, a key not matching the
 * certificate while a rotation is half done).
 */
static grpc_ssl_certificate_config_reload_status
tls_fetch(void *arg, grpc_ssl_server_certificate_config **config)
{
	struct tls *t = arg;
	grpc_ssl_pem_key_cert_pair pair;
	grpc_ssl_certificate_config_reload_status rs;
	char err[256];
	int rc;

	pthread_mutex_lock(&t->mu);
	err[0] = '\0';
	rc = tls_refresh_locked(t, false, err, sizeof(err));
	if (rc > 0) {
		t->notified[0] = '\0';
		if (t->notify != NULL)
			t->notify(t->notify_arg, 1, "");
	} else if (rc < 0 && strcmp(err, t->notified) != 0) {
		snprintf(t->notified, sizeof(t->notified), "%s", err);
		if (t->notify != NULL)
			t->notify(t->notify_arg, -1, err);
	}
	rs = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
	if (t->served != t->generation) {
		pair.private_key = t->pem[TLS_KEY].data;
		pair.cert_chain = t->pem[TLS_CERT].data;
		/* gRPC asserts that a fetched config has roots, even when
		 * clients are not asked for certificates; then our own chain
		 * stands in, and is never used. */
		*config = grpc_ssl_server_certificate_config_create(
		    t->pem[TLS_CA].data != NULL ? t->pem[TLS_CA].data :
		    t->pem[TLS_CERT].data, &pair, 1);
		rs = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
		if (*config != NULL) {
			t->served = t->generation;
			rs = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
		}
	}
	pthread_mutex_unlock(&t->mu);
	return rs;
}

void
tls_set_notify(struct tls *t, tls_notify_fn fn, void *arg)
{
	pthread_mutex_lock(&t->mu);
	t->notify = fn;
	t->notify_arg = arg;
	pthread_mutex_unlock(&t->mu);
}

grpc_server_credentials *
tls_server_credentials(struct tls *t)
{
	grpc_ssl_server_credentials_options *opts;
	grpc_ssl_client_certificate_request_type req;

	if (!tls_has_cert(t))
		return NULL;
	pthread_mutex_lock(&t->mu);
	t->served = 0;
	req = t->pem[TLS_CA].path != NULL ?
	    GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY :
	    GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
	pthread_mutex_unlock(&t->mu);
	opts = grpc_ssl_server_credentials_create_options_using_config_fetcher(
	    req, tls_fetch, t);
	if (opts == NULL)
		return NULL;
	return grpc_ssl_server_credentials_create_with_options(opts);
}

grpc_channel_credentials *
tls_channel_credentials(struct tls *t)
{
	grpc_ssl_pem_key_cert_pair pair;
	grpc_channel_credentials *creds;

	pthread_mutex_lock(&t->mu);
	pair.private_key = t->pem[TLS_KEY].data;
	pair.cert_chain = t->pem[TLS_CERT].data;
	creds = grpc_ssl_credentials_create_ex(t->pem[TLS_CA].data,
	    pair.cert_chain != NULL ? &pair : NULL, NULL, NULL);
	pthread_mutex_unlock(&t->mu);
	return creds;
}

/*
 * The channel is made from credentials that are released at once: gRPC
 * keeps its own reference, and copies the PEM strings when they are made.
 */
struct grpcx_client *
tls_client_new(const char *target, struct tls *t,
    const char *server_name, char *err, size_t errlen)
{
	grpc_channel_credentials *creds;
	grpc_arg arg;
	grpc_channel_args args = { .num_args = 0, .args = &arg };

	if (t != NULL && server_name != NULL && server_name[0] != '\0') {
		arg.type = GRPC_ARG_STRING;
		arg.key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
		arg.value.string = (char *)server_name;
		args.num_args = 1;
	}
	creds = t != NULL ? tls_channel_credentials(t) :
	    grpc_insecure_credentials_create();
	if (creds == NULL) {
		snprintf(err, errlen, "cannot make TLS credentials");
		return NULL;
	}
	return grpcx_client_new_creds(target, creds, &args, err, errlen);
}
