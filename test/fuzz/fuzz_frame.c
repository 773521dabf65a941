/*
 * fuzz_frame.c - libFuzzer target for the internal frame decoder.
 *
 * The input is a byte stream as a peer could write it on an internal
 * socket. Its first byte picks the size of the pieces it arrives in (so
 * frames are split across reads in every way); the rest is the stream. It
 * goes through both decoders of lib/ipc: the non-blocking reassembly
 * (ipc_conn_fill + ipc_conn_next) and the blocking ipc_recv. Every frame is
 * unpacked as each internal message type (lib/ipcmsg), and a decoded
 * Request is packed again and must decode to the same message.
 *
 * Oracles beyond the sanitizers: both decoders must cut the stream into
 * the same frames and stop at the same place, no frame is longer than
 * BOUNDS_FRAME_MAX, and re-encoding a decoded Request is stable.
 */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "ipcmsg.h"

/* Most frames compared between the two decoders for one input. */
#define FF_MAX_FRAMES 4096

/* How the non-blocking decoder cut the stream, for the blocking one to
 * compare with. Both check that each frame is the stream's bytes right
 * after the previous one, so equal lengths mean equal frames. */
static struct {
	size_t n;			/* frames decoded */
	size_t len[FF_MAX_FRAMES];	/* length of each payload */
	int end;			/* 0: clean end, else the errno */
} ff_cut;

/*
 * Packs a decoded Request again through the real queueing code, reads the
 * frame back with ipc_recv and checks that it decodes to the same bytes.
 */
static void
ff_roundtrip(const Ipamd__V1__Request *r)
{
	int sv[2];
	struct ipc_conn *c;
	uint8_t *back = NULL, *again = NULL;
	size_t n = 0;
	Ipamd__V1__Request *r2;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		fuzz_fail("socketpair", strerror(errno));
	if ((c = ipc_conn_new(sv[0])) == NULL)
		fuzz_fail("ipc_conn_new", strerror(errno));
	if (ipcmsg_queue_request(c, r) < 0) {
		if (errno != EMSGSIZE)
			fuzz_fail("ipcmsg_queue_request", "");
		goto out;
	}
	/* A frame below 64 KiB + 4 fits the socket buffer in one go. */
	if (ipc_conn_flush(c) != 0)
		goto out;
	if (ipc_recv(sv[1], &back, &n, 1000) != 1)
		fuzz_fail("ipc_recv of a queued frame", "");
	r2 = ipcmsg_unpack_request(back, n);
	if (r2 == NULL)
		fuzz_fail("a re-encoded Request does not decode", "");
	if (protobuf_c_message_get_packed_size(&r2->base) != n)
		fuzz_fail("re-encoding is not stable (size)", "");
	if ((again = malloc(n > 0 ? n : 1)) == NULL)
		fuzz_fail("malloc", "");
	protobuf_c_message_pack(&r2->base, again);
	if (memcmp(again, back, n) != 0)
		fuzz_fail("re-encoding is not stable (bytes)", "");
	ipamd__v1__request__free_unpacked(r2, NULL);
out:
	free(again);
	free(back);
	ipc_conn_free(c);
	close(sv[1]);
}

/* Unpacks one frame as every internal message type. */
static void
ff_unpack(const uint8_t *p, size_t n)
{
	Ipamd__V1__Request *rq;
	Ipamd__V1__Reply *rp;
	Ipamd__V1__WorkerStatus *st;

	if (n > BOUNDS_FRAME_MAX)
		fuzz_fail("frame above BOUNDS_FRAME_MAX", "");
	if ((rq = ipcmsg_unpack_request(p, n)) != NULL) {
		ff_roundtrip(rq);
		ipamd__v1__request__free_unpacked(rq, NULL);
	}
	if ((rp = ipcmsg_unpack_reply(p, n)) != NULL)
		ipamd__v1__reply__free_unpacked(rp, NULL);
	if ((st = ipcmsg_unpack_status(p, n)) != NULL)
		ipamd__v1__worker_status__free_unpacked(st, NULL);
}

/*
 * The non-blocking path, as the db worker runs it: the stream arrives in
 * pieces of `piece` bytes, and after each piece every complete frame is
 * taken out. The socket's reader and the frames it hands out are checked
 * against the stream, byte for byte.
 */
static void
ff_via_conn(const uint8_t *s, size_t len, size_t piece)
{
	int sv[2];
	struct ipc_conn *c;
	size_t sent = 0, taken = 0;
	bool eof = false;

	ff_cut.n = 0;
	ff_cut.end = 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		fuzz_fail("socketpair", strerror(errno));
	if ((c = ipc_conn_new(sv[0])) == NULL)
		fuzz_fail("ipc_conn_new", strerror(errno));
	while (!eof) {
		const uint8_t *p;
		size_t n;
		ssize_t r;
		int k;

		if (sent < len) {
			size_t m = len - sent < piece ? len - sent : piece;
			if (write(sv[1], s + sent, m) != (ssize_t)m)
				fuzz_fail("write to socketpair", "");
			sent += m;
		} else if (sv[1] >= 0) {
			close(sv[1]);
			sv[1] = -1;
		}
		do
			r = ipc_conn_fill(c);
		while (r > 0);
		if (r == 0)
			eof = true;
		else if (errno != EAGAIN)
			fuzz_fail("ipc_conn_fill", "");
		while ((k = ipc_conn_next(c, &p, &n)) == 1) {
			/* The frame is the stream's bytes after a header. */
			if (taken + 4 + n > sent || memcmp(p, s + taken + 4,
			    n) != 0)
				fuzz_fail("frame differs from the stream", "");
			if (ff_cut.n < FF_MAX_FRAMES)
				ff_cut.len[ff_cut.n] = n;
			ff_cut.n++;
			ff_unpack(p, n);
			taken += 4 + n;
		}
		if (k < 0) {
			if (errno != EMSGSIZE)
				fuzz_fail("ipc_conn_next: unexpected errno", "");
			ff_cut.end = EMSGSIZE;
			break;
		}
	}
	/* EOF inside a header or a payload: ipc_recv calls that EPROTO. */
	if (ff_cut.end == 0 && taken < len)
		ff_cut.end = EPROTO;
	ipc_conn_free(c);
	if (sv[1] >= 0)
		close(sv[1]);
}

/*
 * The blocking path: the whole stream is written, the writer closes, and
 * ipc_recv takes frames until EOF or an error; they and where it stops
 * must be those of ff_via_conn.
 */
static void
ff_via_recv(const uint8_t *s, size_t len)
{
	int sv[2], end = 0;
	size_t taken = 0, i = 0;
	int sndbuf = (int)len + 4096;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		fuzz_fail("socketpair", strerror(errno));
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	if (len > 0 && write(sv[1], s, len) != (ssize_t)len)
		fuzz_fail("write to socketpair", "");
	close(sv[1]);
	for (;;) {
		uint8_t *p = NULL;
		size_t n = 0;
		int r = ipc_recv(sv[0], &p, &n, 1000);

		if (r == 0)
			break;
		if (r < 0) {
			if (errno != EMSGSIZE && errno != EPROTO)
				fuzz_fail("ipc_recv: unexpected errno", "");
			end = errno;
			break;
		}
		if (taken + 4 + n > len || memcmp(p, s + taken + 4, n) != 0)
			fuzz_fail("ipc_recv frame differs from the stream", "");
		if (i >= ff_cut.n || (i < FF_MAX_FRAMES && ff_cut.len[i] != n))
			fuzz_fail("the two decoders cut different frames", "");
		i++;
		taken += 4 + n;
		free(p);
	}
	close(sv[0]);
	if (i != ff_cut.n)
		fuzz_fail("the two decoders cut a different number of frames", "");
	if (end != ff_cut.end)
		fuzz_fail("the two decoders stop differently", "");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t piece;

	if (size < 1)
		return 0;
	/* Pieces of 1..256 bytes, or the whole stream at once for 0. */
	piece = data[0] == 0 ? size : (size_t)data[0];
	ff_via_conn(data + 1, size - 1, piece);
	ff_via_recv(data + 1, size - 1);
	return 0;
}
