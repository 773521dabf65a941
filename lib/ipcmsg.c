/*
 * ipcmsg.c - ipamd.v1 messages packed into ipc frames, and unpacked with
 * the checks protobuf-c alone does not make. No logging, no exit.
 */
#include "ipcmsg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/un.h>

/* Most bytes packed on the stack; larger messages are malloc'd. */
#define IPCMSG_STACK 1024

/*
 * Packs m into a buffer (stack when it fits, else heap) and hands the bytes
 * to either the connection queue (c) or a blocking send on fd. Messages
 * that would exceed BOUNDS_FRAME_MAX are refused before packing (EMSGSIZE).
 */
static int
ipcmsg_emit(struct ipc_conn *c, int fd, const ProtobufCMessage *m)
{
	uint8_t stack[IPCMSG_STACK], *buf = stack;
	size_t n = protobuf_c_message_get_packed_size(m);
	int r, saved;

	if (n > BOUNDS_FRAME_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	if (n > sizeof(stack)) {
		if ((buf = malloc(n)) == NULL)
			return -1;
	}
	protobuf_c_message_pack(m, buf);
	r = c != NULL ? ipc_conn_queue(c, buf, n) : ipc_send(fd, buf, n);
	saved = errno;
	if (buf != stack)
		free(buf);
	errno = saved;
	return r;
}

int
ipcmsg_queue_request(struct ipc_conn *c, const Ipamd__V1__Request *r)
{
	return ipcmsg_emit(c, -1, &r->base);
}

int
ipcmsg_queue_reply(struct ipc_conn *c, const Ipamd__V1__Reply *r)
{
	return ipcmsg_emit(c, -1, &r->base);
}

int
ipcmsg_send_request(int fd, const Ipamd__V1__Request *r)
{
	return ipcmsg_emit(NULL, fd, &r->base);
}

/*
 * A Request must carry a body: an empty or body-less frame is not a
 * request the db worker could act on, so it is refused here like garbage.
 */
Ipamd__V1__Request *
ipcmsg_unpack_request(const uint8_t *data, size_t len)
{
	Ipamd__V1__Request *r;

	r = ipamd__v1__request__unpack(NULL, len, data);
	if (r == NULL)
		return NULL;
	/* protobuf-c is lenient: it takes over-long varint tags and field
	 * number 0 as unknown fields, which then re-encode to other bytes.
	 * Our senders write canonical frames: one that does not re-encode to
	 * its own length is refused, so that what is handled is what was
	 * sent. */
	if (r->body_case == IPAMD__V1__REQUEST__BODY__NOT_SET ||
	    protobuf_c_message_get_packed_size(&r->base) != len) {
		ipamd__v1__request__free_unpacked(r, NULL);
		return NULL;
	}
	return r;
}

Ipamd__V1__Reply *
ipcmsg_unpack_reply(const uint8_t *data, size_t len)
{
	return ipamd__v1__reply__unpack(NULL, len, data);
}

Ipamd__V1__WorkerStatus *
ipcmsg_unpack_status(const uint8_t *data, size_t len)
{
	return ipamd__v1__worker_status__unpack(NULL, len, data);
}

int
ipcmsg_send_status(int fd, bool ready, const char *status)
{
	Ipamd__V1__WorkerStatus s = IPAMD__V1__WORKER_STATUS__INIT;

	s.ready = ready;
	s.status = (char *)(status != NULL ? status : "");
	return ipcmsg_emit(NULL, fd, &s.base);
}

/* The path must also fit sun_path, or ipc_listen/ipc_connect would fail
 * later with a less clear error. */
int
ipcmsg_db_path(const char *rundir, char *buf, size_t buflen)
{
	struct sockaddr_un sun;
	int n;

	n = snprintf(buf, buflen, "%s/%s", rundir, IPCMSG_DB_SOCK);
	if (n < 0 || (size_t)n >= buflen || (size_t)n >= sizeof(sun.sun_path))
		return -1;
	return 0;
}
