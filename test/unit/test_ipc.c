/*
 * test_ipc.c - framing: reassembly across short reads, the size cap,
 * partial writes, the blocking helpers and the Unix socket helpers.
 */
#include <criterion/criterion.h>

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
#include <time.h>
#include <unistd.h>

#include "ipc.h"

/* A connected pair: sv[0] is wrapped by the code under test. */
static int sv[2] = { -1, -1 };
static char tmpdir[256];

static void
setup_pair(void)
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
}

static void
teardown_pair(void)
{
	if (sv[1] >= 0)
		close(sv[1]);
	sv[0] = sv[1] = -1;
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
}

static void
teardown_dir(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

/* Writes all of p on fd (blocking). */
static void
write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0) {
		ssize_t w = write(fd, b, n);

		cr_assert_gt(w, 0, "write: %s", strerror(errno));
		b += w;
		n -= (size_t)w;
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
	buf[*off] = (uint8_t)(n >> 24);
	buf[*off + 1] = (uint8_t)(n >> 16);
	buf[*off + 2] = (uint8_t)(n >> 8);
	buf[*off + 3] = (uint8_t)n;
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
drain_expected(struct ipc_conn *c, size_t *seen)
{
	const uint8_t *data;
	size_t len;
	int r;

	while ((r = ipc_conn_next(c, &data, &len)) == 1) {
		cr_assert_lt(*seen, 3);
		cr_assert_eq(len, strlen(split_payload[*seen]));
		cr_assert_eq(memcmp(data, split_payload[*seen], len), 0);
		(*seen)++;
	}
	cr_assert_eq(r, 0);
}

Test(ipc, split_at_every_byte, .init = setup_pair, .fini = teardown_pair)
{
	uint8_t buf[128];
	size_t n = split_stream(buf);

	for (size_t cut = 0; cut <= n; cut++) {
		int p[2];
		struct ipc_conn *c;
		size_t seen = 0;

		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, p), 0);
		c = ipc_conn_new(p[0]);
		cr_assert_not_null(c);
		if (cut > 0) {
			write_all(p[1], buf, cut);
			cr_assert_eq(ipc_conn_fill(c), (ssize_t)cut);
			drain_expected(c, &seen);
		}
		write_all(p[1], buf + cut, n - cut);
		if (cut < n)
			cr_assert_eq(ipc_conn_fill(c), (ssize_t)(n - cut));
		drain_expected(c, &seen);
		cr_assert_eq(seen, 3, "cut at %zu", cut);
		close(p[1]);
		ipc_conn_free(c);
	}
}

Test(ipc, one_byte_at_a_time, .init = setup_pair, .fini = teardown_pair)
{
	uint8_t buf[128];
	size_t n = split_stream(buf), seen = 0;
	struct ipc_conn *c = ipc_conn_new(sv[0]);

	cr_assert_not_null(c);
	for (size_t i = 0; i < n; i++) {
		write_all(sv[1], buf + i, 1);
		cr_assert_eq(ipc_conn_fill(c), 1);
		drain_expected(c, &seen);
	}
	cr_assert_eq(seen, 3);
	ipc_conn_free(c);
}

Test(ipc, many_frames_in_one_read, .init = setup_pair, .fini = teardown_pair)
{
	uint8_t buf[100 * 8];
	size_t off = 0, len;
	const uint8_t *data;
	struct ipc_conn *c = ipc_conn_new(sv[0]);
	uint32_t v;

	cr_assert_not_null(c);
	for (uint32_t i = 0; i < 100; i++)
		put_frame(buf, &off, &i, sizeof(i));
	write_all(sv[1], buf, off);
	cr_assert_eq(ipc_conn_fill(c), (ssize_t)off);
	for (uint32_t i = 0; i < 100; i++) {
		cr_assert_eq(ipc_conn_next(c, &data, &len), 1);
		cr_assert_eq(len, sizeof(v));
		memcpy(&v, data, sizeof(v));
		cr_assert_eq(v, i);
	}
	cr_assert_eq(ipc_conn_next(c, &data, &len), 0);
	ipc_conn_free(c);
}

Test(ipc, oversize_length_refused, .init = setup_pair, .fini = teardown_pair)
{
	/* Only the header: the refusal must not wait for the payload. */
	uint32_t n = BOUNDS_FRAME_MAX + 1;
	uint8_t hdr[4] = { n >> 24, n >> 16, n >> 8, n };
	struct ipc_conn *c = ipc_conn_new(sv[0]);
	const uint8_t *data;
	size_t len;

	cr_assert_not_null(c);
	write_all(sv[1], hdr, sizeof(hdr));
	cr_assert_eq(ipc_conn_fill(c), 4);
	errno = 0;
	cr_assert_eq(ipc_conn_next(c, &data, &len), -1);
	cr_assert_eq(errno, EMSGSIZE);
	ipc_conn_free(c);
}

Test(ipc, max_size_frame_accepted, .init = setup_pair, .fini = teardown_pair)
{
	struct ipc_conn *c = ipc_conn_new(sv[0]);
	uint8_t *big = malloc(BOUNDS_FRAME_MAX);
	const uint8_t *data = NULL;
	size_t len = 0;
	pid_t pid;
	int r = 0, st, rounds = 0;

	cr_assert_not_null(c);
	cr_assert_not_null(big);
	for (size_t i = 0; i < BOUNDS_FRAME_MAX; i++)
		big[i] = (uint8_t)(i * 7);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(ipc_send(sv[1], big, BOUNDS_FRAME_MAX) == 0 ? 0 : 1);
	while (r == 0 && rounds++ < 100000) {
		wait_readable(sv[0]);
		cr_assert_gt(ipc_conn_fill(c), 0);
		r = ipc_conn_next(c, &data, &len);
	}
	cr_assert_eq(r, 1);
	cr_assert_eq(len, BOUNDS_FRAME_MAX);
	cr_assert_eq(memcmp(data, big, len), 0);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	free(big);
	ipc_conn_free(c);
}

Test(ipc, queue_and_send_refuse_oversize, .init = setup_pair,
    .fini = teardown_pair)
{
	struct ipc_conn *c = ipc_conn_new(sv[0]);
	static uint8_t big[BOUNDS_FRAME_MAX + 1];

	cr_assert_not_null(c);
	errno = 0;
	cr_assert_eq(ipc_conn_queue(c, big, sizeof(big)), -1);
	cr_assert_eq(errno, EMSGSIZE);
	cr_assert_not(ipc_conn_pending(c));
	errno = 0;
	cr_assert_eq(ipc_send(sv[1], big, sizeof(big)), -1);
	cr_assert_eq(errno, EMSGSIZE);
	ipc_conn_free(c);
}

Test(ipc, eof_mid_frame, .init = setup_pair, .fini = teardown_pair)
{
	uint8_t buf[64];
	size_t off = 0, len;
	const uint8_t *data;
	struct ipc_conn *c = ipc_conn_new(sv[0]);

	cr_assert_not_null(c);
	put_frame(buf, &off, "0123456789", 10);
	write_all(sv[1], buf, 7);
	close(sv[1]);
	sv[1] = -1;
	cr_assert_eq(ipc_conn_fill(c), 7);
	cr_assert_eq(ipc_conn_next(c, &data, &len), 0);
	cr_assert_eq(ipc_conn_fill(c), 0);
	cr_assert_eq(ipc_conn_next(c, &data, &len), 0);
	ipc_conn_free(c);
}

Test(ipc, recv_eof_mid_frame_is_eproto, .init = setup_pair,
    .fini = teardown_pair)
{
	uint8_t buf[64], *data = NULL;
	size_t off = 0, len;

	put_frame(buf, &off, "0123456789", 10);
	write_all(sv[1], buf, 9);
	close(sv[1]);
	sv[1] = -1;
	errno = 0;
	cr_assert_eq(ipc_recv(sv[0], &data, &len, 1000), -1);
	cr_assert_eq(errno, EPROTO);
	close(sv[0]);
}

Test(ipc, recv_eof_in_header_is_eproto, .init = setup_pair,
    .fini = teardown_pair)
{
	uint8_t *data = NULL;
	size_t len;

	write_all(sv[1], "\0\0", 2);
	close(sv[1]);
	sv[1] = -1;
	errno = 0;
	cr_assert_eq(ipc_recv(sv[0], &data, &len, 1000), -1);
	cr_assert_eq(errno, EPROTO);
	close(sv[0]);
}

Test(ipc, recv_clean_eof_is_zero, .init = setup_pair, .fini = teardown_pair)
{
	uint8_t *data = NULL;
	size_t len;

	close(sv[1]);
	sv[1] = -1;
	cr_assert_eq(ipc_recv(sv[0], &data, &len, 1000), 0);
	close(sv[0]);
}

Test(ipc, recv_oversize_refused, .init = setup_pair, .fini = teardown_pair)
{
	uint32_t n = 0xffffffffu;
	uint8_t hdr[4] = { n >> 24, n >> 16, n >> 8, n }, *data = NULL;
	size_t len;

	write_all(sv[1], hdr, sizeof(hdr));
	errno = 0;
	cr_assert_eq(ipc_recv(sv[0], &data, &len, 1000), -1);
	cr_assert_eq(errno, EMSGSIZE);
	cr_assert_null(data);
	close(sv[0]);
}

Test(ipc, recv_times_out, .init = setup_pair, .fini = teardown_pair)
{
	uint8_t *data = NULL;
	size_t len;
	struct timespec a, b;
	long ms;

	clock_gettime(CLOCK_MONOTONIC, &a);
	errno = 0;
	cr_assert_eq(ipc_recv(sv[0], &data, &len, 150), -1);
	cr_assert_eq(errno, ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	cr_assert_geq(ms, 140);
	cr_assert_lt(ms, 2000);
	close(sv[0]);
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
	close(sv[0]);
}

Test(ipc, zero_length_frame, .init = setup_pair, .fini = teardown_pair)
{
	struct ipc_conn *w = ipc_conn_new(sv[1]);
	struct ipc_conn *r = ipc_conn_new(sv[0]);
	const uint8_t *data = NULL;
	size_t len = 99;

	cr_assert_not_null(w);
	cr_assert_not_null(r);
	cr_assert_eq(ipc_conn_queue(w, NULL, 0), 0);
	cr_assert(ipc_conn_pending(w));
	cr_assert_eq(ipc_conn_flush(w), 0);
	cr_assert_not(ipc_conn_pending(w));
	cr_assert_eq(ipc_conn_fill(r), 4);
	cr_assert_eq(ipc_conn_next(r, &data, &len), 1);
	cr_assert_eq(len, 0);
	cr_assert_not_null(data);
	cr_assert_eq(ipc_conn_next(r, &data, &len), 0);
	ipc_conn_free(w);
	ipc_conn_free(r);
	sv[1] = -1;
}

/*
 * A tiny send buffer forces partial writes: flush must report what is
 * left, keep it queued, accept more frames meanwhile (the queue compacts
 * behind the written part), and the reader must get every byte in order.
 */
Test(ipc, partial_writes_with_tiny_sndbuf, .init = setup_pair,
    .fini = teardown_pair)
{
	enum { NFRAMES = 20, FIRST = 5 };
	int small = 1024;
	struct ipc_conn *w, *r;
	static uint8_t payload[NFRAMES][30000];
	const uint8_t *data;
	size_t len, got = 0, queued = 0;
	int fr, partial = 0, rounds = 0;

	cr_assert_eq(setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small,
	    sizeof(small)), 0);
	cr_assert_eq(setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &small,
	    sizeof(small)), 0);
	w = ipc_conn_new(sv[1]);
	r = ipc_conn_new(sv[0]);
	cr_assert_not_null(w);
	cr_assert_not_null(r);
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
			if (queued < NFRAMES) {
				cr_assert_eq(ipc_conn_queue(w, payload[queued],
				    sizeof(payload[queued])), 0);
				queued++;
			}
		} else if (queued < NFRAMES) {
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
	ipc_conn_free(w);
	ipc_conn_free(r);
	sv[1] = -1;
}

/*
 * Queueing while most of a large frame is written reuses the written part
 * of the queue (it is compacted): the second frame must still arrive
 * intact behind the first.
 */
Test(ipc, queue_behind_a_mostly_written_frame, .init = setup_pair,
    .fini = teardown_pair)
{
	int small = 1024;
	struct ipc_conn *w, *r;
	static uint8_t a[100000], b[100000];
	const uint8_t *data;
	size_t len, read_total = 0, got = 0;
	ssize_t n;
	int rounds = 0;

	cr_assert_eq(setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small,
	    sizeof(small)), 0);
	cr_assert_eq(setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &small,
	    sizeof(small)), 0);
	w = ipc_conn_new(sv[1]);
	r = ipc_conn_new(sv[0]);
	cr_assert_not_null(w);
	cr_assert_not_null(r);
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
	ipc_conn_free(w);
	ipc_conn_free(r);
	sv[1] = -1;
}

Test(ipc, flush_reports_peer_gone, .init = setup_pair, .fini = teardown_pair)
{
	struct ipc_conn *w = ipc_conn_new(sv[1]);

	cr_assert_not_null(w);
	close(sv[0]);
	cr_assert_eq(ipc_conn_queue(w, "x", 1), 0);
	errno = 0;
	cr_assert_eq(ipc_conn_flush(w), -1);
	cr_assert_eq(errno, EPIPE);
	ipc_conn_free(w);
	sv[1] = -1;
}

/* A reader that never takes frames out is stopped before it buffers
 * without bound. */
Test(ipc, fill_without_draining_is_bounded, .init = setup_pair,
    .fini = teardown_pair)
{
	struct ipc_conn *c = ipc_conn_new(sv[0]);
	static uint8_t chunk[65536];
	pid_t pid;
	ssize_t n = 1;
	size_t total = 0;
	int rounds = 0, st;

	cr_assert_not_null(c);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		for (;;)
			if (write(sv[1], chunk, sizeof(chunk)) < 0)
				_exit(0);
	}
	close(sv[1]);
	sv[1] = -1;
	while (rounds++ < 100000) {
		wait_readable(sv[0]);
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
	ipc_conn_free(c);
}

Test(ipc, conn_new_bad_fd_and_free_null)
{
	cr_assert_null(ipc_conn_new(-1));
	ipc_conn_free(NULL);
}

Test(ipc, conn_sets_nonblocking, .init = setup_pair, .fini = teardown_pair)
{
	struct ipc_conn *c = ipc_conn_new(sv[0]);

	cr_assert_not_null(c);
	cr_assert_eq(ipc_conn_fd(c), sv[0]);
	cr_assert(fcntl(sv[0], F_GETFL) & O_NONBLOCK);
	errno = 0;
	cr_assert_eq(ipc_conn_fill(c), -1);
	cr_assert_eq(errno, EAGAIN);
	ipc_conn_free(c);
	/* The connection owned the fd. */
	cr_assert_eq(fcntl(sv[0], F_GETFD), -1);
}

Test(ipc, listen_connect_peer_uid, .init = setup_dir, .fini = teardown_dir)
{
	char path[400], err[256] = "";
	struct stat st;
	int l, c, a;
	uid_t uid = (uid_t)-1;

	snprintf(path, sizeof(path), "%s/s.sock", tmpdir);
	l = ipc_listen(path, 8, err, sizeof(err));
	cr_assert_geq(l, 0, "%s", err);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert(S_ISSOCK(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
	cr_assert(fcntl(l, F_GETFD) & FD_CLOEXEC);
	c = ipc_connect(path, err, sizeof(err));
	cr_assert_geq(c, 0, "%s", err);
	a = accept(l, NULL, NULL);
	cr_assert_geq(a, 0);
	cr_assert_eq(ipc_peer_uid(a, &uid), 0);
	cr_assert_eq(uid, getuid());
	cr_assert_eq(ipc_send(c, "ping", 4), 0);
	{
		uint8_t *data = NULL;
		size_t len;

		cr_assert_eq(ipc_recv(a, &data, &len, 1000), 1);
		cr_assert_eq(len, 4);
		cr_assert_eq(memcmp(data, "ping", 4), 0);
		free(data);
	}
	close(a);
	close(c);
	close(l);
	cr_assert_eq(ipc_peer_uid(-1, &uid), -1);
}

Test(ipc, listen_replaces_stale_socket, .init = setup_dir,
    .fini = teardown_dir)
{
	char path[400], err[256] = "";
	int l1, l2, c;

	snprintf(path, sizeof(path), "%s/s.sock", tmpdir);
	l1 = ipc_listen(path, 8, err, sizeof(err));
	cr_assert_geq(l1, 0, "%s", err);
	close(l1);	/* the socket file stays behind, stale */
	l2 = ipc_listen(path, 8, err, sizeof(err));
	cr_assert_geq(l2, 0, "%s", err);
	c = ipc_connect(path, err, sizeof(err));
	cr_assert_geq(c, 0, "%s", err);
	close(c);
	close(l2);
}

Test(ipc, listen_refuses_live_socket, .init = setup_dir,
    .fini = teardown_dir)
{
	char path[400], err[256] = "";
	int l1, c;

	snprintf(path, sizeof(path), "%s/s.sock", tmpdir);
	l1 = ipc_listen(path, 8, err, sizeof(err));
	cr_assert_geq(l1, 0, "%s", err);
	errno = 0;
	cr_assert_eq(ipc_listen(path, 8, err, sizeof(err)), -1);
	cr_assert_eq(errno, EADDRINUSE);
	cr_assert_neq(strstr(err, "in use"), NULL, "%s", err);
	/* The first listener still owns the path. */
	c = ipc_connect(path, err, sizeof(err));
	cr_assert_geq(c, 0, "%s", err);
	close(c);
	close(l1);
}

Test(ipc, listen_keeps_regular_file, .init = setup_dir, .fini = teardown_dir)
{
	char path[400], err[256] = "";
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "%s/data", tmpdir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(ipc_listen(path, 8, err, sizeof(err)), -1);
	cr_assert_neq(strstr(err, path), NULL, "%s", err);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert(S_ISREG(st.st_mode));
}

Test(ipc, path_too_long_and_connect_refused, .init = setup_dir,
    .fini = teardown_dir)
{
	char path[400], err[256] = "";

	memset(path, 'x', 200);
	path[200] = '\0';
	cr_assert_eq(ipc_listen(path, 8, err, sizeof(err)), -1);
	cr_assert_neq(strstr(err, "too long"), NULL, "%s", err);
	err[0] = '\0';
	cr_assert_eq(ipc_connect(path, err, sizeof(err)), -1);
	cr_assert_neq(strstr(err, "too long"), NULL, "%s", err);
	snprintf(path, sizeof(path), "%s/none.sock", tmpdir);
	cr_assert_eq(ipc_connect(path, err, sizeof(err)), -1);
	cr_assert_neq(strstr(err, "none.sock"), NULL, "%s", err);
	cr_assert_eq(errno, ENOENT);
}
