/*
 * test_ipc.c - framing: reassembly across short reads, the size cap,
 * partial writes, the blocking helpers and the Unix socket helpers.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ipc.h"
#include "now.h"

/* A connected pair; an end a connection takes over is set to -1. */
static int sv[2] = { -1, -1 };
/* Connections made by a test, freed by the teardown. */
static struct ipc_conn *c, *w, *r;
/* A private directory, a socket path in it and an error buffer. */
static char tmpdir[256], sock[400], err[256];

static void
setup_pair(void)
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
}

/* The pair, with c wrapping sv[0]. */
static void
setup_conn(void)
{
	setup_pair();
	c = ipc_conn_new(sv[0]);
	cr_assert_not_null(c);
	sv[0] = -1;
}

/* The pair with both ends wrapped: w writes, r reads. */
static void
setup_conns(void)
{
	setup_pair();
	w = ipc_conn_new(sv[1]);
	r = ipc_conn_new(sv[0]);
	cr_assert_not_null(w);
	cr_assert_not_null(r);
	sv[0] = sv[1] = -1;
}

/* The same, with buffers so small that flushes are partial. */
static void
setup_tiny_conns(void)
{
	int small = 1024;

	setup_conns();
	cr_assert_eq(setsockopt(ipc_conn_fd(w), SOL_SOCKET, SO_SNDBUF, &small,
	    sizeof(small)), 0);
	cr_assert_eq(setsockopt(ipc_conn_fd(r), SOL_SOCKET, SO_RCVBUF, &small,
	    sizeof(small)), 0);
}

/* Closes end i of the pair. */
static void
close_end(int i)
{
	close(sv[i]);
	sv[i] = -1;
}

static void
teardown_pair(void)
{
	ipc_conn_free(c);
	ipc_conn_free(w);
	ipc_conn_free(r);
	c = w = r = NULL;
	for (int i = 0; i < 2; i++)
		if (sv[i] >= 0)
			close_end(i);
}

/* Makes a private directory under $IPAM_TEST_TMP (or /tmp). */
static void
setup_dir(void)
{
	const char *base = getenv("IPAM_TEST_TMP");

	if (base == NULL || *base == '\0')
		base = "/tmp";
	mkdir(base, 0700);
	snprintf(tmpdir, sizeof(tmpdir), "%s/ipc.XXXXXX", base);
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(sock, sizeof(sock), "%s/s.sock", tmpdir);
	err[0] = '\0';
}

static void
teardown_dir(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

/* ipc_listen and ipc_connect on sock, which must succeed. */
static int
listen_ok(void)
{
	int fd = ipc_listen(sock, 8, err, sizeof(err));

	cr_assert_geq(fd, 0, "%s", err);
	return fd;
}

static int
connect_ok(void)
{
	int fd = ipc_connect(sock, err, sizeof(err));

	cr_assert_geq(fd, 0, "%s", err);
	return fd;
}

/* Writes all of p on fd (blocking). */
static void
write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0) {
		ssize_t k = write(fd, b, n);

		cr_assert_gt(k, 0, "write: %s", strerror(errno));
		b += k;
		n -= (size_t)k;
	}
}

/* Waits (at most 5 s) until fd is readable. */
static void
wait_readable(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	cr_assert_eq(poll(&pfd, 1, 5000), 1, "nothing to read");
}

/* Appends one frame (header + payload) to buf at *off. */
static void
put_frame(uint8_t *buf, size_t *off, const void *p, uint32_t n)
{
	uint32_t be = htonl(n);

	memcpy(buf + *off, &be, 4);
	memcpy(buf + *off + 4, p, n);
	*off += 4 + n;
}

/* The three frames used by the split tests, and their encoding. */
static const char *const split_payload[] = { "hello", "", "a longer frame" };

static size_t
split_stream(uint8_t *buf)
{
	size_t off = 0;

	for (size_t i = 0; i < 3; i++)
		put_frame(buf, &off, split_payload[i],
		    (uint32_t)strlen(split_payload[i]));
	return off;
}

/* Takes every complete frame out of c, checking it against the expected
 * sequence from *seen on. */
static void
drain_expected(size_t *seen)
{
	const uint8_t *data;
	size_t len;
	int rc;

	while ((rc = ipc_conn_next(c, &data, &len)) == 1) {
		cr_assert_lt(*seen, 3);
		cr_assert_eq(len, strlen(split_payload[*seen]));
		cr_assert_eq(memcmp(data, split_payload[*seen], len), 0);
		(*seen)++;
	}
	cr_assert_eq(rc, 0);
}

Test(ipc, split_at_every_byte, .fini = teardown_pair)
{
	uint8_t buf[128];
	size_t n = split_stream(buf);

	for (size_t cut = 0; cut <= n; cut++) {
		size_t seen = 0;

		setup_conn();
		if (cut > 0) {
			write_all(sv[1], buf, cut);
			cr_assert_eq(ipc_conn_fill(c), (ssize_t)cut);
			drain_expected(&seen);
		}
		write_all(sv[1], buf + cut, n - cut);
		if (cut < n)
			cr_assert_eq(ipc_conn_fill(c), (ssize_t)(n - cut));
		drain_expected(&seen);
		cr_assert_eq(seen, 3, "cut at %zu", cut);
		teardown_pair();
	}
}

Test(ipc, oversize_length_refused, .init = setup_conn, .fini = teardown_pair)
{
	/* Only the header: the refusal must not wait for the payload. */
	uint32_t n = htonl(BOUNDS_FRAME_MAX + 1);
	const uint8_t *data;
	size_t len;

	write_all(sv[1], &n, sizeof(n));
	cr_assert_eq(ipc_conn_fill(c), 4);
	errno = 0;
	cr_assert_eq(ipc_conn_next(c, &data, &len), -1);
	cr_assert_eq(errno, EMSGSIZE);
}

Test(ipc, max_size_frame_accepted, .init = setup_conn, .fini = teardown_pair)
{
	uint8_t *big = malloc(BOUNDS_FRAME_MAX);
	const uint8_t *data = NULL;
	size_t len = 0;
	pid_t pid;
	int rc = 0, st, rounds = 0;

	cr_assert_not_null(big);
	for (size_t i = 0; i < BOUNDS_FRAME_MAX; i++)
		big[i] = (uint8_t)(i * 7);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* Non-blocking: ipc_send must wait for POLLOUT between parts. */
		fcntl(sv[1], F_SETFL, O_NONBLOCK);
		_exit(ipc_send(sv[1], big, BOUNDS_FRAME_MAX) == 0 ? 0 : 1);
	}
	while (rc == 0 && rounds++ < 100000) {
		wait_readable(ipc_conn_fd(c));
		cr_assert_gt(ipc_conn_fill(c), 0);
		rc = ipc_conn_next(c, &data, &len);
	}
	cr_assert_eq(rc, 1);
	cr_assert_eq(len, BOUNDS_FRAME_MAX);
	cr_assert_eq(memcmp(data, big, len), 0);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	free(big);
}

Test(ipc, queue_and_send_refuse_oversize, .init = setup_conn,
    .fini = teardown_pair)
{
	static uint8_t big[BOUNDS_FRAME_MAX + 1];

	errno = 0;
	cr_assert_eq(ipc_conn_queue(c, big, sizeof(big)), -1);
	cr_assert_eq(errno, EMSGSIZE);
	cr_assert_not(ipc_conn_pending(c));
	errno = 0;
	cr_assert_eq(ipc_send(sv[1], big, sizeof(big)), -1);
	cr_assert_eq(errno, EMSGSIZE);
}

Test(ipc, eof_mid_frame, .init = setup_conn, .fini = teardown_pair)
{
	uint8_t buf[64];
	size_t off = 0, len;
	const uint8_t *data;

	put_frame(buf, &off, "0123456789", 10);
	write_all(sv[1], buf, 7);
	close_end(1);
	cr_assert_eq(ipc_conn_fill(c), 7);
	cr_assert_eq(ipc_conn_next(c, &data, &len), 0);
	cr_assert_eq(ipc_conn_fill(c), 0);
	cr_assert_eq(ipc_conn_next(c, &data, &len), 0);
}

/* What ipc_recv makes of a stream that ends (or not) after some bytes:
 * EOF inside a frame or its header is EPROTO, a clean EOF is 0, and a
 * length above the cap is refused before the payload is read. */
Test(ipc, recv_short_and_oversize_streams, .fini = teardown_pair)
{
	static const struct {
		const char *bytes;	/* what the writer sends */
		size_t n;		/* how many of them */
		bool close;		/* then closes its end */
		int errnum;		/* ipc_recv's errno, 0: returns 0 */
	} cases[] = {
		{ "\0\0\0\x0a" "01234", 9, true, EPROTO },
		{ "\0\0", 2, true, EPROTO },
		{ "", 0, true, 0 },
		{ "\xff\xff\xff\xff", 4, false, EMSGSIZE },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t *data = NULL;
		size_t len;

		setup_pair();
		write_all(sv[1], cases[i].bytes, cases[i].n);
		if (cases[i].close)
			close_end(1);
		errno = 0;
		cr_assert_eq(ipc_recv(sv[0], &data, &len, 1000),
		    cases[i].errnum != 0 ? -1 : 0, "case %zu", i);
		cr_assert_eq(errno, cases[i].errnum, "case %zu", i);
		cr_assert_null(data);
		teardown_pair();
	}
}

Test(ipc, recv_times_out, .init = setup_pair, .fini = teardown_pair)
{
	uint8_t *data = NULL;
	size_t len;
	int64_t ms = now_ms();

	errno = 0;
	cr_assert_eq(ipc_recv(sv[0], &data, &len, 150), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	ms = now_ms() - ms;
	cr_assert_geq(ms, 140);
	cr_assert_lt(ms, 2000);
}

Test(ipc, send_recv_roundtrip_and_zero_length, .init = setup_pair,
    .fini = teardown_pair)
{
	uint8_t *data = NULL;
	size_t len = 99;

	cr_assert_eq(ipc_send(sv[1], "abc", 3), 0);
	cr_assert_eq(ipc_send(sv[1], NULL, 0), 0);
	cr_assert_eq(ipc_recv(sv[0], &data, &len, 1000), 1);
	cr_assert_eq(len, 3);
	cr_assert_eq(memcmp(data, "abc", 3), 0);
	free(data);
	data = NULL;
	cr_assert_eq(ipc_recv(sv[0], &data, &len, 1000), 1);
	cr_assert_eq(len, 0);
	cr_assert_not_null(data);
	free(data);
}

Test(ipc, zero_length_frame, .init = setup_conns, .fini = teardown_pair)
{
	const uint8_t *data = NULL;
	size_t len = 99;

	cr_assert_eq(ipc_conn_queue(w, NULL, 0), 0);
	cr_assert(ipc_conn_pending(w));
	cr_assert_eq(ipc_conn_flush(w), 0);
	cr_assert_not(ipc_conn_pending(w));
	cr_assert_eq(ipc_conn_fill(r), 4);
	cr_assert_eq(ipc_conn_next(r, &data, &len), 1);
	cr_assert_eq(len, 0);
	cr_assert_not_null(data);
	cr_assert_eq(ipc_conn_next(r, &data, &len), 0);
}

/*
 * A tiny send buffer forces partial writes: flush must report what is
 * left, keep it queued, accept more frames meanwhile (the queue compacts
 * behind the written part), and the reader must get every byte in order.
 */
Test(ipc, partial_writes_with_tiny_sndbuf, .init = setup_tiny_conns,
    .fini = teardown_pair)
{
	enum { NFRAMES = 20, FIRST = 5 };
	static uint8_t payload[NFRAMES][30000];
	const uint8_t *data;
	size_t len, got = 0, queued = 0;
	int fr, partial = 0, rounds = 0;

	for (int i = 0; i < NFRAMES; i++) {
		memset(payload[i], 'a' + i, sizeof(payload[i]));
		payload[i][0] = (uint8_t)i;
	}
	for (; queued < FIRST; queued++)
		cr_assert_eq(ipc_conn_queue(w, payload[queued],
		    sizeof(payload[queued])), 0);
	while (got < NFRAMES && rounds++ < 1000000) {
		fr = ipc_conn_flush(w);
		cr_assert_geq(fr, 0);
		if (fr == 1) {
			partial++;
			cr_assert(ipc_conn_pending(w));
		}
		if (queued < NFRAMES) {
			cr_assert_eq(ipc_conn_queue(w, payload[queued],
			    sizeof(payload[queued])), 0);
			queued++;
		}
		if (ipc_conn_fill(r) < 0)
			cr_assert_eq(errno, EAGAIN);
		while (ipc_conn_next(r, &data, &len) == 1) {
			cr_assert_eq(len, sizeof(payload[got]));
			cr_assert_eq(memcmp(data, payload[got], len), 0,
			    "frame %zu", got);
			got++;
		}
	}
	cr_assert_eq(got, NFRAMES);
	cr_assert_gt(partial, NFRAMES);
	cr_assert_eq(ipc_conn_flush(w), 0);
	cr_assert_not(ipc_conn_pending(w));
}

/*
 * Queueing while most of a large frame is written reuses the written part
 * of the queue (it is compacted): the second frame must still arrive
 * intact behind the first.
 */
Test(ipc, queue_behind_a_mostly_written_frame, .init = setup_tiny_conns,
    .fini = teardown_pair)
{
	static uint8_t a[100000], b[100000];
	const uint8_t *data;
	size_t len, read_total = 0, got = 0;
	ssize_t n;
	int rounds = 0;

	for (size_t i = 0; i < sizeof(a); i++) {
		a[i] = (uint8_t)(i * 13);
		b[i] = (uint8_t)(i * 7 + 1);
	}
	cr_assert_eq(ipc_conn_queue(w, a, sizeof(a)), 0);
	/* Let about 70% of a through; it cannot be read as a frame yet. */
	while (read_total < 70000 && rounds++ < 1000000) {
		cr_assert_eq(ipc_conn_flush(w), 1);
		n = ipc_conn_fill(r);
		if (n > 0)
			read_total += (size_t)n;
	}
	cr_assert_geq(read_total, 70000);
	cr_assert(ipc_conn_pending(w));
	cr_assert_eq(ipc_conn_queue(w, b, sizeof(b)), 0);
	while (got < 2 && rounds++ < 1000000) {
		cr_assert_geq(ipc_conn_flush(w), 0);
		ipc_conn_fill(r);
		while (ipc_conn_next(r, &data, &len) == 1) {
			cr_assert_eq(len, sizeof(a));
			cr_assert_eq(memcmp(data, got == 0 ? a : b, len), 0,
			    "frame %zu", got);
			got++;
		}
	}
	cr_assert_eq(got, 2);
}

Test(ipc, flush_reports_peer_gone, .init = setup_conns, .fini = teardown_pair)
{
	ipc_conn_free(r);
	r = NULL;
	cr_assert_eq(ipc_conn_queue(w, "x", 1), 0);
	errno = 0;
	cr_assert_eq(ipc_conn_flush(w), -1);
	cr_assert_eq(errno, EPIPE);
}

/* A reader that never takes frames out is stopped before it buffers
 * without bound. */
Test(ipc, fill_without_draining_is_bounded, .init = setup_conn,
    .fini = teardown_pair)
{
	static uint8_t chunk[65536];
	pid_t pid;
	ssize_t n = 1;
	size_t total = 0;
	int rounds = 0, st;

	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		for (;;)
			if (write(sv[1], chunk, sizeof(chunk)) < 0)
				_exit(0);
	}
	close_end(1);
	while (rounds++ < 100000) {
		wait_readable(ipc_conn_fd(c));
		n = ipc_conn_fill(c);
		if (n <= 0)
			break;
		total += (size_t)n;
	}
	cr_assert_eq(n, -1);
	cr_assert_eq(errno, ENOBUFS);
	cr_assert_geq(total, BOUNDS_FRAME_MAX);
	cr_assert_lt(total, 2 * BOUNDS_FRAME_MAX);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
}

Test(ipc, conn_new_bad_fd_and_free_null)
{
	cr_assert_null(ipc_conn_new(-1));
	ipc_conn_free(NULL);
}

Test(ipc, conn_sets_nonblocking, .init = setup_conn, .fini = teardown_pair)
{
	int fd = ipc_conn_fd(c);

	cr_assert(fcntl(fd, F_GETFL) & O_NONBLOCK);
	errno = 0;
	cr_assert_eq(ipc_conn_fill(c), -1);
	cr_assert_eq(errno, EAGAIN);
	ipc_conn_free(c);
	c = NULL;
	/* The connection owned the fd. */
	cr_assert_eq(fcntl(fd, F_GETFD), -1);
}

Test(ipc, listen_connect_peer_uid, .init = setup_dir, .fini = teardown_dir)
{
	struct stat st;
	int l = listen_ok(), fd = connect_ok(), a;
	uid_t uid = (uid_t)-1;
	uint8_t *data = NULL;
	size_t len;

	cr_assert_eq(stat(sock, &st), 0);
	cr_assert(S_ISSOCK(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
	cr_assert(fcntl(l, F_GETFD) & FD_CLOEXEC);
	a = accept(l, NULL, NULL);
	cr_assert_geq(a, 0);
	cr_assert_eq(ipc_peer_uid(a, &uid), 0);
	cr_assert_eq(uid, getuid());
	cr_assert_eq(ipc_send(fd, "ping", 4), 0);
	cr_assert_eq(ipc_recv(a, &data, &len, 1000), 1);
	cr_assert_eq(len, 4);
	cr_assert_eq(memcmp(data, "ping", 4), 0);
	free(data);
	close(a);
	close(fd);
	close(l);
	cr_assert_eq(ipc_peer_uid(-1, &uid), -1);
}

/* A socket someone listens on is refused, not stolen; once its listener
 * is gone, the file left behind is stale and replaced. */
Test(ipc, listen_refuses_live_replaces_stale_socket, .init = setup_dir,
    .fini = teardown_dir)
{
	int l = listen_ok();

	errno = 0;
	cr_assert_eq(ipc_listen(sock, 8, err, sizeof(err)), -1);
	cr_assert_eq(errno, EADDRINUSE);
	cr_assert_neq(strstr(err, "in use"), NULL, "%s", err);
	/* The first listener still owns the path. */
	close(connect_ok());
	close(l);
	l = listen_ok();
	close(connect_ok());
	close(l);
}

Test(ipc, listen_keeps_regular_file, .init = setup_dir, .fini = teardown_dir)
{
	struct stat st;
	int fd = open(sock, O_CREAT | O_WRONLY, 0600);

	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(ipc_listen(sock, 8, err, sizeof(err)), -1);
	cr_assert_neq(strstr(err, sock), NULL, "%s", err);
	cr_assert_eq(stat(sock, &st), 0);
	cr_assert(S_ISREG(st.st_mode));
}

Test(ipc, path_too_long_and_connect_refused, .init = setup_dir,
    .fini = teardown_dir)
{
	char path[201];

	memset(path, 'x', 200);
	path[200] = '\0';
	cr_assert_eq(ipc_listen(path, 8, err, sizeof(err)), -1);
	cr_assert_neq(strstr(err, "too long"), NULL, "%s", err);
	err[0] = '\0';
	cr_assert_eq(ipc_connect(path, err, sizeof(err)), -1);
	cr_assert_neq(strstr(err, "too long"), NULL, "%s", err);
	cr_assert_eq(ipc_connect(sock, err, sizeof(err)), -1);
	cr_assert_neq(strstr(err, "s.sock"), NULL, "%s", err);
	cr_assert_eq(errno, ENOENT);
}
