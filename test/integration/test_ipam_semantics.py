"""Meridio's IPAM semantics, end to end through the public gRPC API.

Each test starts the real daemon with static conduits (IPAM_CONDUITS) and a
fresh data directory, so every address below is exact: first-fit from the
lowest address with the default geometry (169.255.0.0/16 -> /20 -> /24 and
fd00::/48 -> /56 -> /64).
"""

import ipaddress
import threading
import time
import unittest
from concurrent import futures

import grpc

import harness
from harness import V4, V6, DaemonTest, RpcError, child_msg, expect_code

SC = grpc.StatusCode


def node_id(node, conduit, fam=V4):
    return "%s-%s-default-%d" % (node, conduit, 0 if fam == V4 else 1)


def child_id(name, node, conduit, fam=V4):
    return "%s-%s" % (name, node_id(node, conduit, fam))


class FirstFit(DaemonTest):
    """Exact addresses: conduit prefixes in list order, node prefixes in
    order of first use, children lowest first."""

    def setUp(self):
        super().setUp()
        self.d = self.daemon()
        self.c = self.d.client

    def test_first_fit_ipv4_over_conduits_and_nodes(self):
        a = self.c.allocate
        self.assertEqual(a("conduit-a", "worker-1", "p1"), ("169.255.0.1", 24))
        self.assertEqual(a("conduit-a", "worker-1", "p2"), ("169.255.0.2", 24))
        self.assertEqual(a("conduit-a", "worker-2", "p1"), ("169.255.1.1", 24))
        # conduit-b is listed second: 169.255.16.0/20; its nodes in the
        # order of their first Allocate, not by name.
        self.assertEqual(a("conduit-b", "worker-2", "p1"), ("169.255.16.1", 24))
        self.assertEqual(a("conduit-b", "worker-1", "p1"), ("169.255.17.1", 24))
        self.assertEqual(a("conduit-a", "worker-1", "p3"), ("169.255.0.3", 24))

        rows = self.d.rows()
        self.assertSound(rows)
        self.assertEqual(rows["default-0"]["cidr"], "169.255.0.0/16")
        self.assertEqual(rows["default-0"]["parent_id"], "")
        self.assertEqual(rows["conduit-a-default-0"]["cidr"], "169.255.0.0/20")
        self.assertEqual(rows["conduit-b-default-0"]["cidr"], "169.255.16.0/20")
        self.assertEqual(rows[node_id("worker-1", "conduit-a")]["cidr"], "169.255.0.0/24")
        self.assertEqual(rows[node_id("worker-1", "conduit-b")]["cidr"], "169.255.17.0/24")
        # Children are stored as host prefixes, as Meridio stores them.
        r = rows[child_id("p2", "worker-1", "conduit-a")]
        self.assertEqual((r["name"], r["cidr"], r["parent_id"]),
                         ("p2", "169.255.0.2/32", node_id("worker-1", "conduit-a")))
        self.assertEqual(int(r["expirable"]), 1)
        self.assertEqual(int(rows[node_id("worker-1", "conduit-a")]["expirable"]), 1)
        self.assertRegex(r["updated_at"], harness.UPDATED_AT_RE)

    def test_first_fit_ipv6_over_conduits_and_nodes(self):
        a = self.c.allocate
        self.assertEqual(a("conduit-a", "worker-1", "p1", V6), ("fd00::1", 64))
        self.assertEqual(a("conduit-a", "worker-1", "p2", V6), ("fd00::2", 64))
        self.assertEqual(a("conduit-a", "worker-2", "p1", V6), ("fd00:0:0:1::1", 64))
        self.assertEqual(a("conduit-b", "worker-1", "p1", V6), ("fd00:0:0:100::1", 64))
        self.assertEqual(a("conduit-b", "worker-2", "p1", V6), ("fd00:0:0:101::1", 64))
        rows = self.d.rows()
        self.assertSound(rows)
        self.assertEqual(rows["default-1"]["cidr"], "fd00::/48")
        self.assertEqual(rows["conduit-a-default-1"]["cidr"], "fd00::/56")
        self.assertEqual(rows["conduit-b-default-1"]["cidr"], "fd00:0:0:100::/56")
        self.assertEqual(rows[child_id("p1", "worker-2", "conduit-b", V6)]["cidr"],
                         "fd00:0:0:101::1/128")

    def test_families_are_independent(self):
        a = self.c.allocate
        self.assertEqual(a("conduit-b", "worker-9", "p1", V6), ("fd00:0:0:100::1", 64))
        self.assertEqual(a("conduit-b", "worker-9", "p1", V4), ("169.255.16.1", 24))
        self.assertEqual(a("conduit-b", "worker-9", "p2", V4), ("169.255.16.2", 24))
        self.assertEqual(a("conduit-b", "worker-9", "p2", V6), ("fd00:0:0:100::2", 64))

    def test_allocate_is_idempotent(self):
        a = self.c.allocate
        first = a("conduit-a", "worker-1", "proxy")
        before = self.d.rows()
        for _ in range(3):
            self.assertEqual(a("conduit-a", "worker-1", "proxy"), first)
        # The same child again refreshes it but creates nothing.
        self.assertEqual(harness.structural(self.d.rows()), harness.structural(before))
        self.assertEqual(a("conduit-a", "worker-1", "other"), ("169.255.0.2", 24))

    def test_allocate_refreshes_child_and_damps_node(self):
        a = self.c.allocate
        a("conduit-a", "worker-1", "proxy")
        cid, nid = child_id("proxy", "worker-1", "conduit-a"), node_id("worker-1", "conduit-a")
        rows = self.d.rows()
        child_t, node_t = rows[cid]["updated_at"], rows[nid]["updated_at"]
        time.sleep(0.05)   # updated_at has nanoseconds: a later write differs
        a("conduit-a", "worker-1", "proxy")
        a("conduit-a", "worker-1", "other")
        rows = self.d.rows()
        self.assertGreater(rows[cid]["updated_at"], child_t, "child not refreshed")
        # Node refreshes are damped (once a minute with the default GC).
        self.assertEqual(rows[nid]["updated_at"], node_t, "node rewritten on every Allocate")

    def test_renewal_refresh_damps_child_writes(self):
        # IPAM_RENEWAL_REFRESH (off by default, as Meridio): a renewal
        # within that time of the last refresh writes nothing
        d = self.daemon(env={"IPAM_RENEWAL_REFRESH": "1500ms"})
        c = d.client
        cid = child_id("proxy", "worker-1", "conduit-a")
        first = c.allocate("conduit-a", "worker-1", "proxy")
        t0 = d.rows()[cid]["updated_at"]
        time.sleep(0.3)
        self.assertEqual(c.allocate("conduit-a", "worker-1", "proxy"), first)
        self.assertEqual(d.rows()[cid]["updated_at"], t0, "renewal wrote updated_at")
        time.sleep(1.4)
        self.assertEqual(c.allocate("conduit-a", "worker-1", "proxy"), first)
        self.assertGreater(d.rows()[cid]["updated_at"], t0, "no refresh after the interval")

    def test_concurrent_allocates_of_one_name_agree(self):
        with futures.ThreadPoolExecutor(max_workers=20) as ex:
            got = list(ex.map(lambda _: self.c.allocate("conduit-a", "worker-1", "same"),
                              range(20)))
        self.assertEqual(set(got), {("169.255.0.1", 24)})
        kids = [r for r in self.d.rows().values()
                if r["parent_id"] == node_id("worker-1", "conduit-a")]
        self.assertEqual(len(kids), 1)

    def test_release_then_lowest_first_reuse(self):
        a, rel = self.c.allocate, self.c.release
        for i, n in enumerate(["x", "y", "z", "w"], 1):
            self.assertEqual(a("conduit-a", "worker-1", n), ("169.255.0.%d" % i, 24))
        rel("conduit-a", "worker-1", "z")
        rel("conduit-a", "worker-1", "y")
        rows = self.d.rows()
        self.assertNotIn(child_id("y", "worker-1", "conduit-a"), rows)
        self.assertNotIn(child_id("z", "worker-1", "conduit-a"), rows)
        # Lowest free first: .2 then .3 then .5.
        self.assertEqual(a("conduit-a", "worker-1", "n1"), ("169.255.0.2", 24))
        self.assertEqual(a("conduit-a", "worker-1", "n2"), ("169.255.0.3", 24))
        self.assertEqual(a("conduit-a", "worker-1", "n3"), ("169.255.0.5", 24))
        # A released name that comes back is a new child: lowest free.
        rel("conduit-a", "worker-1", "x")
        self.assertEqual(a("conduit-a", "worker-1", "y"), ("169.255.0.1", 24))
        # Same in IPv6.
        self.assertEqual(a("conduit-a", "worker-1", "x", V6), ("fd00::1", 64))
        self.assertEqual(a("conduit-a", "worker-1", "y", V6), ("fd00::2", 64))
        rel("conduit-a", "worker-1", "x", V6)
        self.assertEqual(a("conduit-a", "worker-1", "q", V6), ("fd00::1", 64))
        self.assertSound(self.d.rows())

    def test_release_is_per_family_and_node(self):
        a, rel = self.c.allocate, self.c.release
        self.assertEqual(a("conduit-a", "worker-1", "p"), ("169.255.0.1", 24))
        self.assertEqual(a("conduit-a", "worker-1", "p", V6), ("fd00::1", 64))
        self.assertEqual(a("conduit-a", "worker-2", "p"), ("169.255.1.1", 24))
        rel("conduit-a", "worker-1", "p", V6)
        rows = self.d.rows()
        self.assertNotIn(child_id("p", "worker-1", "conduit-a", V6), rows)
        self.assertIn(child_id("p", "worker-1", "conduit-a", V4), rows)
        self.assertIn(child_id("p", "worker-2", "conduit-a", V4), rows)
        self.assertEqual(a("conduit-a", "worker-1", "p"), ("169.255.0.1", 24))
        self.assertEqual(a("conduit-a", "worker-2", "p"), ("169.255.1.1", 24))

    def test_release_of_unknown_succeeds_and_creates_nothing(self):
        a, rel = self.c.allocate, self.c.release
        self.assertEqual(a("conduit-a", "worker-1", "keep"), ("169.255.0.1", 24))
        before = harness.structural(self.d.rows())
        rel("conduit-zz", "worker-1", "keep")                          # unknown conduit
        rel("conduit-a", "worker-7", "keep")                           # unknown node
        rel("conduit-b", "worker-1", "keep")                           # conduit, no node
        rel("conduit-a", "worker-1", "ghost")                          # unknown child
        rel("conduit-a", "worker-1", "keep", V6)                       # no v6 node
        after = harness.structural(self.d.rows())
        self.assertEqual(after, before)
        self.assertEqual(a("conduit-a", "worker-1", "keep"), ("169.255.0.1", 24))

    def test_release_in_unknown_trench_succeeds(self):
        # Issue 3: Release succeeds when the trench is unknown (only
        # Allocate answers NOT_FOUND for it) and touches nothing.
        self.assertEqual(self.c.allocate("conduit-a", "worker-1", "keep"), ("169.255.0.1", 24))
        before = harness.structural(self.d.rows())
        self.c.release("conduit-a", "worker-1", "keep", trench="other-trench")
        self.assertEqual(harness.structural(self.d.rows()), before)
        self.assertEqual(self.c.allocate("conduit-a", "worker-1", "keep"), ("169.255.0.1", 24))

    def test_static_conduits_in_list_order(self):
        # IPAM_CONDUITS=conduit-a,conduit-b: both exist before any Allocate.
        rows = self.d.rows()
        self.assertEqual(rows["conduit-a-default-0"]["cidr"], "169.255.0.0/20")
        self.assertEqual(rows["conduit-b-default-0"]["cidr"], "169.255.16.0/20")
        self.assertEqual(rows["conduit-a-default-1"]["cidr"], "fd00::/56")
        self.assertEqual(rows["conduit-b-default-1"]["cidr"], "fd00:0:0:100::/56")
        for i in ("conduit-a-default-0", "conduit-b-default-1"):
            self.assertEqual(int(rows[i]["expirable"]), 0, i)
        self.assertSound(rows)


class StaticConduitList(DaemonTest):

    def test_static_conduits_from_env(self):
        d = self.daemon(conduits="zeta,alpha,mid")
        rows = d.rows()
        # List order, not name order.
        self.assertEqual(rows["zeta-default-0"]["cidr"], "169.255.0.0/20")
        self.assertEqual(rows["alpha-default-0"]["cidr"], "169.255.16.0/20")
        self.assertEqual(rows["mid-default-0"]["cidr"], "169.255.32.0/20")
        self.assertEqual(rows["mid-default-1"]["cidr"], "fd00:0:0:200::/56")
        self.assertEqual(d.client.allocate("mid", "n", "p"), ("169.255.32.1", 24))
        self.assertEqual(d.client.allocate("alpha", "n", "p", V6), ("fd00:0:0:100::1", 64))

    def test_unknown_conduit_waits_for_the_deadline(self):
        d = self.daemon()
        t0 = time.monotonic()
        with self.assertRaises(RpcError) as cm:
            d.client.allocate("conduit-x", "worker-1", "p", timeout=2.0)
        took = time.monotonic() - t0
        self.assertIn(cm.exception.code, (SC.DEADLINE_EXCEEDED, SC.NOT_FOUND),
                      cm.exception.details)
        self.assertGreaterEqual(took, 1.5, "did not wait for the conduit")
        self.assertLess(took, 6.0, "waited far beyond the client's deadline")
        self.assertNotIn("conduit-x-default-0", d.rows())
        # Still serving afterwards.
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "p"), ("169.255.0.1", 24))

    def test_unknown_conduit_without_client_deadline_waits_30s(self):
        d = self.daemon()
        t0 = time.monotonic()
        with self.assertRaises(RpcError) as cm:
            d.client.allocate("conduit-x", "worker-1", "p", timeout=None)
        took = time.monotonic() - t0
        self.assertIn(cm.exception.code, (SC.DEADLINE_EXCEEDED, SC.NOT_FOUND),
                      cm.exception.details)
        self.assertIn("conduit-x", cm.exception.details)
        self.assertGreater(took, 28.0)
        self.assertLess(took, 40.0)

    def test_ipv4_only_instance_refuses_ipv6(self):
        d = self.daemon(env={"IPAM_IP_FAMILY": "ipv4"})
        e = expect_code(self, SC.FAILED_PRECONDITION, d.client.allocate,
                        "conduit-a", "worker-1", "p", V6)
        self.assertTrue(e.details, "no message")
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "p"), ("169.255.0.1", 24))
        rows = d.rows()
        self.assertFalse([i for i, r in rows.items() if ":" in r["cidr"]],
                         "IPv6 records in an ipv4-only instance")


class Geometry(DaemonTest):
    """The configured prefixes and lengths, and a change of them between runs."""

    def test_ipv6_only_instance_refuses_ipv4(self):
        d = self.daemon(env={"IPAM_IP_FAMILY": "IPv6"})
        expect_code(self, SC.FAILED_PRECONDITION, d.client.allocate,
                    "conduit-a", "worker-1", "p", V4)
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "p", V6), ("fd00::1", 64))
        self.assertNotIn("default-0", d.rows())

    def test_custom_prefixes_and_lengths(self):
        d = self.daemon(env={"IPAM_PREFIX_IPV4": "10.10.0.0/16",
                             "IPAM_CONDUIT_PREFIX_LENGTH_IPV4": "24",
                             "IPAM_NODE_PREFIX_LENGTH_IPV4": "30",
                             "IPAM_PREFIX_IPV6": "fd12:3456::/32",
                             "IPAM_CONDUIT_PREFIX_LENGTH_IPV6": "40",
                             "IPAM_NODE_PREFIX_LENGTH_IPV6": "126"})
        a = d.client.allocate
        # A /30 node has two usable addresses.
        self.assertEqual(a("conduit-a", "w1", "p1"), ("10.10.0.1", 30))
        self.assertEqual(a("conduit-a", "w1", "p2"), ("10.10.0.2", 30))
        e = expect_code(self, SC.RESOURCE_EXHAUSTED, a, "conduit-a", "w1", "p3")
        self.assertIn("10.10.0.0/30", e.details)
        self.assertEqual(a("conduit-a", "w2", "p1"), ("10.10.0.5", 30))
        self.assertEqual(a("conduit-b", "w1", "p1"), ("10.10.1.1", 30))
        self.assertEqual(a("conduit-a", "w1", "p1", V6), ("fd12:3456::1", 126))
        self.assertEqual(a("conduit-a", "w1", "p2", V6), ("fd12:3456::2", 126))
        expect_code(self, SC.RESOURCE_EXHAUSTED, a, "conduit-a", "w1", "p3", V6)
        self.assertEqual(a("conduit-b", "w1", "p1", V6), ("fd12:3456:100::1", 126))
        rows = d.rows()
        self.assertEqual(rows["default-0"]["cidr"], "10.10.0.0/16")
        self.assertEqual(rows["conduit-b-default-1"]["cidr"], "fd12:3456:100::/40")
        self.assertSound(rows)

    def test_node_length_changed_between_runs(self):
        d = self.daemon()
        a = d.client.allocate
        self.assertEqual(a("conduit-a", "w1", "p"), ("169.255.0.1", 24))
        self.assertEqual(a("conduit-a", "w2", "p"), ("169.255.1.1", 24))
        d.client.release("conduit-a", "w1", "p")
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        d.env["IPAM_NODE_PREFIX_LENGTH_IPV4"] = "25"
        d.start()
        a = d.client.allocate
        # Old nodes keep their length; new ones are /25, first-fit around them.
        self.assertEqual(a("conduit-a", "w2", "p"), ("169.255.1.1", 24))
        self.assertEqual(a("conduit-a", "w1", "q"), ("169.255.0.1", 24))
        self.assertEqual(a("conduit-a", "w3", "p"), ("169.255.2.1", 25))
        self.assertEqual(a("conduit-a", "w4", "p"), ("169.255.2.129", 25))
        self.assertSound(d.rows())


class BadInput(DaemonTest):
    """Each invalid request and its status code; none changes the data."""

    def setUp(self):
        super().setUp()
        self.d = self.daemon()
        self.c = self.d.client
        self.before = harness.structural(self.d.rows())

    def tearDown(self):
        if self.d.running():
            self.assertEqual(harness.structural(self.d.rows()), self.before,
                             "a refused request changed the database")

    def bad(self, child, code=SC.INVALID_ARGUMENT, field=None, not_field=None):
        e = expect_code(self, code, self.c.allocate_msg, child)
        if field:
            self.assertRegex(e.details.lower(), field,
                             "message does not name the field: %r" % e.details)
        if not_field:
            self.assertNotIn(not_field, e.details.lower(),
                             "checks not in order: %r" % e.details)
        return e

    def test_missing_subnet(self):
        self.bad(child_msg(subnet=False), field="subnet|conduit")

    def test_missing_conduit(self):
        self.bad(child_msg(conduit=None), field="conduit")

    def test_missing_trench(self):
        self.bad(child_msg(trench=None), field="trench")

    def test_empty_name(self):
        self.bad(child_msg(name=""), field="name")

    def test_name_too_long(self):
        self.bad(child_msg(name="n" * 513), field="name")
        # 512 bytes is fine.
        self.assertEqual(self.c.allocate("conduit-a", "worker-1", "n" * 512),
                         ("169.255.0.1", 24))
        self.before = harness.structural(self.d.rows())

    def test_name_length_counts_bytes(self):
        self.bad(child_msg(name="\u00e9" * 257), field="name")    # 514 bytes
        self.assertEqual(self.c.allocate("conduit-a", "worker-1", "\u00e9" * 256),
                         ("169.255.0.1", 24))
        self.before = harness.structural(self.d.rows())

    def test_name_invalid_utf8(self):
        for bad_name in (b"\xff\xfe", b"ok\xc3", b"\xed\xa0\x80", b"\xc0\xaf"):
            e = expect_code(self, SC.INVALID_ARGUMENT, self.c.raw_unary,
                            "/ipam.v1.Ipam/Allocate", harness.raw_child(bad_name))
            self.assertIn("name", e.details.lower())

    def test_empty_node(self):
        self.bad(child_msg(node=""), field="node")

    def test_node_too_long(self):
        self.bad(child_msg(node="n" * 254), field="node")
        self.assertEqual(self.c.allocate("conduit-a", "n" * 253, "p"), ("169.255.0.1", 24))
        self.before = harness.structural(self.d.rows())

    def test_bad_family(self):
        self.bad(child_msg(family=7), field="family")
        self.bad(child_msg(family=2), field="family")

    def test_checks_in_order(self):
        self.bad(child_msg(trench=None, name=""), field="trench")
        self.bad(child_msg(name="", family=7), field="name", not_field="family")
        self.bad(child_msg(node="", family=7), field="node", not_field="family")
        # Validation comes before the trench lookup.
        self.bad(child_msg(name="", trench="other"), field="name")

    def test_unknown_trench(self):
        e = self.bad(child_msg(trench="other"), code=SC.NOT_FOUND)
        self.assertIn("other", e.details)

    def test_malformed_protobuf_body(self):
        api = self.d.workers().get("api")
        bodies = [b"\x0a\x05ab",                       # length beyond the end
                  b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # bad varint
                  b"\x12\x03\x0a\x09x",                # nested length overflow
                  b"\x07"]                             # wire type 7
        for body in bodies:
            for m in ("/ipam.v1.Ipam/Allocate", "/ipam.v1.Ipam/Release"):
                expect_code(self, SC.INVALID_ARGUMENT, self.c.raw_unary, m, body)
        self.assertEqual(self.c.health(), "SERVING")
        self.assertEqual(self.d.workers().get("api"), api, "api worker restarted")
        self.assertEqual(self.c.allocate("conduit-a", "worker-1", "p"), ("169.255.0.1", 24))
        self.before = harness.structural(self.d.rows())

    def test_unknown_method_and_oversized_request(self):
        api = self.d.workers().get("api")
        expect_code(self, SC.UNIMPLEMENTED, self.c.raw_unary, "/ipam.v1.Ipam/Frobnicate",
                    child_msg().SerializeToString())
        # 64 KiB is the request cap.
        big = child_msg(name="n" * (70 * 1024)).SerializeToString()
        expect_code(self, SC.RESOURCE_EXHAUSTED, self.c.raw_unary,
                    "/ipam.v1.Ipam/Allocate", big)
        self.assertEqual(self.d.workers().get("api"), api, "api worker restarted")
        self.assertEqual(self.c.allocate("conduit-a", "worker-1", "p"), ("169.255.0.1", 24))
        self.before = harness.structural(self.d.rows())


class Load(DaemonTest):

    def test_200_concurrent_allocates_are_distinct(self):
        d = self.daemon()
        n = 200
        barrier = threading.Barrier(n, timeout=30)

        def one(i):
            barrier.wait()
            return d.client.allocate("conduit-a", "worker-1", "pod-%03d" % i, timeout=30)

        with futures.ThreadPoolExecutor(max_workers=n) as ex:
            got = list(ex.map(one, range(n)))
        addrs = [g[0] for g in got]
        self.assertEqual(len(set(addrs)), n, "duplicate addresses")
        self.assertEqual({g[1] for g in got}, {24})
        # First-fit: exactly the n lowest host addresses of the node.
        self.assertEqual(sorted(addrs, key=lambda s: int(ipaddress.ip_address(s))),
                         ["169.255.0.%d" % i for i in range(1, n + 1)])
        # Each answer is what the child is (idempotent re-ask).
        for i in (0, 57, 199):
            self.assertEqual(d.client.allocate("conduit-a", "worker-1", "pod-%03d" % i), got[i])
        rows = d.rows()
        self.assertSound(rows)
        kids = [r for r in rows.values() if r["parent_id"] == node_id("worker-1", "conduit-a")]
        self.assertEqual(len(kids), n)

    def test_a_failing_request_fails_alone(self):
        """Meridio's ids can collide (node x on conduit a-b and node x-a on
        conduit b are both x-a-b-default-0). Whatever the daemon answers the
        colliding call, the calls batched with it succeed and the data stay
        sound."""
        d = self.daemon(conduits="a-b,b")
        self.assertEqual(d.client.allocate("a-b", "x", "first"), ("169.255.0.1", 24))

        def one(i):
            try:
                if i % 4 == 0:
                    return ("collide", d.client.allocate("b", "x-a", "c%d" % i))
                return ("ok", d.client.allocate("a-b", "x", "n%d" % i))
            except RpcError as e:
                return ("err", (i, e.code))

        with futures.ThreadPoolExecutor(max_workers=24) as ex:
            got = list(ex.map(one, range(48)))
        errs = [g[1] for g in got if g[0] == "err"]
        self.assertFalse([e for e in errs if e[0] % 4 != 0], "good calls failed: %s" % errs)
        good = [g[1] for g in got if g[0] == "ok"]
        self.assertEqual(len(good), 36)
        self.assertEqual(len(set(good)), 36, "duplicate addresses")
        self.assertTrue(d.running())
        self.assertSound(d.rows())
        self.assertEqual(d.client.allocate("a-b", "x", "first"), ("169.255.0.1", 24))

    def test_node_exhausted_after_254(self):
        d = self.daemon()
        with futures.ThreadPoolExecutor(max_workers=16) as ex:
            got = list(ex.map(lambda i: d.client.allocate("conduit-a", "worker-1", "c%d" % i,
                                                          timeout=30), range(254)))
        self.assertEqual(sorted(int(g[0].rsplit(".", 1)[1]) for g in got),
                         list(range(1, 255)), "not the 254 usable addresses of the /24")
        e = expect_code(self, SC.RESOURCE_EXHAUSTED, d.client.allocate,
                        "conduit-a", "worker-1", "one-too-many")
        self.assertIn("169.255.0.0/24", e.details)
        # Other nodes are unaffected; a release makes room for one more.
        self.assertEqual(d.client.allocate("conduit-a", "worker-2", "p"), ("169.255.1.1", 24))
        d.client.release("conduit-a", "worker-1", "c99")
        freed = got[99][0]
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "one-too-many"), (freed, 24))
        expect_code(self, SC.RESOURCE_EXHAUSTED, d.client.allocate,
                    "conduit-a", "worker-1", "and-another")
        self.assertSound(d.rows())


class GarbageCollection(DaemonTest):

    def test_gc_reaps_stale_keeps_bridge_and_refreshed(self):
        d = self.daemon(env={"IPAM_GARBAGE_COLLECTION_ENABLED": "true",
                             "IPAM_GARBAGE_COLLECTION_INTERVAL": "1s",
                             "IPAM_GARBAGE_COLLECTION_THRESHOLD": "2s"})
        c = d.client
        self.assertEqual(c.allocate("conduit-a", "worker-1", "stale"), ("169.255.0.1", 24))
        self.assertEqual(c.allocate("conduit-a", "worker-1", "bridge"), ("169.255.0.2", 24))
        self.assertEqual(c.allocate("conduit-a", "worker-1", "fresh"), ("169.255.0.3", 24))
        self.assertEqual(c.allocate("conduit-a", "worker-2", "lonely"), ("169.255.1.1", 24))
        rows = d.rows()
        self.assertEqual(int(rows[child_id("bridge", "worker-1", "conduit-a")]["expirable"]), 0)
        self.assertEqual(int(rows[child_id("stale", "worker-1", "conduit-a")]["expirable"]), 1)

        stop = threading.Event()
        errors = []

        def refresher():
            while not stop.is_set():
                try:
                    got = c.allocate("conduit-a", "worker-1", "fresh")
                    if got != ("169.255.0.3", 24):
                        errors.append("refresh moved: %s" % (got,))
                except RpcError as e:
                    errors.append(str(e))
                stop.wait(0.3)

        t = threading.Thread(target=refresher)
        t.start()
        try:
            stale = child_id("stale", "worker-1", "conduit-a")
            harness.poll(lambda: stale not in d.rows(), 20, 0.2, "GC to reap %s" % stale)
            harness.poll(lambda: node_id("worker-2", "conduit-a") not in d.rows(), 10, 0.2,
                         "GC to reap the un-refreshed node worker-2")
            # Two more GC rounds with the refresher running.
            time.sleep(2.5)
            rows = d.rows()
        finally:
            stop.set()
            t.join(10)
        self.assertEqual(errors, [])
        self.assertIn(child_id("fresh", "worker-1", "conduit-a"), rows, "refreshed child reaped")
        self.assertIn(child_id("bridge", "worker-1", "conduit-a"), rows, "bridge reaped")
        self.assertNotIn(child_id("lonely", "worker-2", "conduit-a"), rows)
        self.assertIn("conduit-a-default-0", rows, "conduit reaped")
        self.assertSound(rows)
        # The reaped child's address is free again: lowest first.
        self.assertEqual(c.allocate("conduit-a", "worker-1", "newcomer"), ("169.255.0.1", 24))
        self.assertEqual(c.allocate("conduit-a", "worker-1", "bridge"), ("169.255.0.2", 24))


if __name__ == "__main__":
    unittest.main()
