/*
 * api.c - ipam.v1.Ipam's Allocate and Release: checked, forwarded to the
 * db worker, and answered from its Reply.
 */
#include "api.h"

#include <pthread.h>
#include <stdint.h>

#include "google/protobuf/empty.pb-c.h"
#include "grpcx.h"
#include "ipam/v1/ipam.pb-c.h"
#include "now.h"
#include "validate.h"

/*
 * Release in a trench this instance does not serve succeeds (issue 3:
 * Release succeeds when the trench is unknown) without asking the db
 * worker, which holds nothing of it. The fields checked after the trench
 * must still be valid: validate_child runs again with this instance's
 * trench in place of the foreign one. Returns true if the Release is
 * valid that way (the caller answers OK); st then says what is wrong
 * otherwise.
 */
static bool
api_release_foreign(struct api *a, Ipam__V1__Child *ch, int *family,
    struct grpcx_status *st)
{
	Nsp__V1__Trench *t = ch->subnet->conduit->trench;
	char *foreign = t->name;
	int rc;

	t->name = a->cfg->trench;
	rc = validate_child(a->cfg, ch, family, st);
	t->name = foreign;
	return rc == GRPC_STATUS_OK;
}

/*
 * Validates an Allocate or Release call and forwards it to the db worker,
 * or answers it at once (bad input, no db connection). The call moves to
 * the pending table under mu, and from then on only the db thread answers
 * it.
 */
void
api_forward(struct api *a, struct api_call *c)
{
	Ipam__V1__Child *ch;
	Ipamd__V1__Request req = IPAMD__V1__REQUEST__INIT;
	Ipamd__V1__Child dch = IPAMD__V1__CHILD__INIT;
	Ipamd__V1__Allocate al = IPAMD__V1__ALLOCATE__INIT;
	Ipamd__V1__Release rel = IPAMD__V1__RELEASE__INIT;
	struct grpcx_status st;
	int family = 0;
	int64_t left, wait;
	bool wake = false, queued = false;

	ch = (Ipam__V1__Child *)grpcx_unpack(&ipam__v1__child__descriptor,
	    c->payload);
	if (ch == NULL) {
		call_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
		    "malformed request body: not an ipam.v1.Child");
		return;
	}
	if (validate_child(a->cfg, ch, &family, &st) != GRPC_STATUS_OK) {
		if (c->method == API_RELEASE && st.code == GRPC_STATUS_NOT_FOUND &&
		    api_release_foreign(a, ch, &family, &st)) {
			Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;

			call_finish(c, GRPC_STATUS_OK, NULL, &e.base);
			goto out;
		}
		call_fail(c, st.code, st.message);
		goto out;
	}

	left = grpcx_ms_left(c->deadline);
	if (left == INT64_MAX) {
		wait = API_DEFAULT_WAIT_MS;
		c->expire_ms = now_ms() + wait + API_EXPIRE_SLACK_MS;
	} else {
		wait = left > API_DEADLINE_MARGIN_MS ?
		    left - API_DEADLINE_MARGIN_MS : 0;
		if (wait > UINT32_MAX)
			wait = UINT32_MAX;
		c->expire_ms = now_ms() + left + API_AFTER_DEADLINE_MS;
	}

	dch.trench = ch->subnet->conduit->trench->name;
	dch.conduit = ch->subnet->conduit->name;
	dch.node = ch->subnet->node;
	dch.family = family == 4 ? IPAMD__V1__FAMILY__FAMILY_IPV4 :
	    IPAMD__V1__FAMILY__FAMILY_IPV6;
	dch.name = ch->name;
	if (c->method == API_ALLOCATE) {
		al.child = &dch;
		al.wait_ms = (uint32_t)wait;
		req.body_case = IPAMD__V1__REQUEST__BODY_ALLOCATE;
		req.allocate = &al;
	} else {
		rel.child = &dch;
		req.body_case = IPAMD__V1__REQUEST__BODY_RELEASE;
		req.release = &rel;
	}

	pthread_mutex_lock(&a->mu);
	if (a->conn != NULL && !a->conn_broken) {
		req.id = dbconn_next_id(a);
		c->id = req.id;
		a->slots[req.id % API_SLOTS] = c;
		a->npending++;
		if (dbconn_send_locked(a, &req, &wake) == 0) {
			queued = true;
			a->nforwarded++;
		} else {
			a->slots[req.id % API_SLOTS] = NULL;
			a->npending--;
		}
	}
	pthread_mutex_unlock(&a->mu);
	if (wake)
		dbconn_wake(a);
	if (!queued)
		call_fail(c, GRPC_STATUS_UNAVAILABLE, "db worker unavailable");
out:
	ipam__v1__child__free_unpacked(ch, NULL);
}

/*
 * Answers a forwarded call from the db worker's Reply: code 0 gives the
 * method's response (Prefix or Empty), anything else that status and its
 * message. Runs on the thread that owns the call at this point (the gRPC
 * thread once the Reply is handed back).
 */
void
api_answer(struct api_call *c, const Ipamd__V1__Reply *r)
{
	Ipam__V1__Prefix p = IPAM__V1__PREFIX__INIT;
	Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;

	if (r->code != 0) {
		call_fail(c, grpcx_status_code(r->code),
		    r->message[0] != '\0' ? r->message : "db worker error");
		return;
	}
	if (c->method == API_ALLOCATE) {
		p.address = r->address;
		p.prefixlength = r->prefix_length;
		call_finish(c, GRPC_STATUS_OK, NULL, &p.base);
	} else {
		call_finish(c, GRPC_STATUS_OK, NULL, &e.base);
	}
}
