"""ipam-bench as a correctness check (no timing is asserted here):
a short run against the real daemon gives no error and no duplicate, and
what it reports matches the database; against a fake server that hands out
the same address twice, or moves a renewed name, it reports the fault."""

import os
import re
import subprocess
import threading
import unittest
from concurrent import futures

import grpc

import harness
from harness import DaemonTest

from ipam.v1 import ipam_pb2, ipam_pb2_grpc
from google.protobuf import empty_pb2

BENCH = os.path.join(harness.BIN_DIR, "ipam-bench")
CONDUITS = "conduit-a,conduit-b"
# Room for a few 10k names per node, as scripts/bench.sh gives it.
WIDE = {"IPAM_LOG_LEVEL": "INFO", "IPAM_PREFIX_IPV4": "10.0.0.0/8",
        "IPAM_CONDUIT_PREFIX_LENGTH_IPV4": "12",
        "IPAM_NODE_PREFIX_LENGTH_IPV4": "20"}


def run_bench(mode, target, *args, timeout=60):
    """Runs ipam-bench; returns (exit code, stdout, {key: value} of its
    machine-readable last line)."""
    p = subprocess.run([BENCH, mode, "--target", target] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    out = p.stdout.decode()
    lines = out.strip().splitlines()
    last = dict(kv.split("=", 1) for kv in lines[-1].split()) if lines else {}
    return p.returncode, out + p.stderr.decode(), last


def calls_total(out):
    """The number of calls of a run, warm-up included."""
    m = re.search(r"\((\d+) calls with the warm-up\)", out)
    return int(m.group(1)) if m else -1


class AgainstDaemon(DaemonTest):

    def test_allocate_new_gives_distinct_stored_addresses(self):
        d = self.daemon(env=WIDE, conduits=CONDUITS)
        rc, out, last = run_bench("allocate-new", d.target, "--duration", "2",
                                  "--warmup", "0.2", "--concurrency", "16",
                                  "--nodes", "8", "--conduits", CONDUITS,
                                  "--tag", "smoke")
        self.assertEqual(rc, 0, out)
        self.assertEqual(last["mode"], "allocate-new", out)
        self.assertEqual(last["conc"], "16", out)
        self.assertEqual(last["errors"], "0", out)
        self.assertEqual(last["duplicates"], "0", out)
        self.assertGreater(float(last["ops_per_s"]), 0, out)
        n = calls_total(out)
        self.assertGreater(n, 0, out)
        # Every call made one stored child, all of them distinct and sound.
        rows = d.rows()
        mine = [r for r in rows.values() if r["name"].startswith("smoke-")]
        self.assertEqual(len(mine), n, out)
        self.assertEqual(len({r["cidr"] for r in mine}), n)
        self.assertEqual({r["name"] for r in mine},
                         {"smoke-%d" % i for i in range(n)})
        nodes = {rows[r["parent_id"]]["name"] for r in mine}
        self.assertEqual(nodes, {"bench-node-%d" % i for i in range(8)})
        self.assertEqual(harness.check_invariants(rows), [])

    def test_existing_release_and_health(self):
        d = self.daemon(env=WIDE, conduits=CONDUITS)
        rc, out, last = run_bench("allocate-existing", d.target,
                                  "--duration", "1", "--warmup", "0.2",
                                  "--names", "200", "--conduits", CONDUITS,
                                  "--tag", "ex")
        self.assertEqual(rc, 0, out)
        self.assertEqual((last["errors"], last["duplicates"]), ("0", "0"), out)
        self.assertIn("setup: 200 names allocated first", out)
        self.assertGreater(calls_total(out), 200, out)
        rows = d.rows()
        self.assertEqual(len([r for r in rows.values()
                              if r["name"].startswith("ex-")]), 200)

        rc, out, last = run_bench("release", d.target, "--duration", "5",
                                  "--warmup", "0", "--names", "300",
                                  "--conduits", CONDUITS, "--tag", "rel")
        self.assertEqual(rc, 0, out)
        self.assertEqual(last["errors"], "0", out)
        self.assertEqual(calls_total(out), 300, out)
        rows = d.rows()
        self.assertEqual([r for r in rows.values()
                          if r["name"].startswith("rel-")], [])
        self.assertEqual(len([r for r in rows.values()
                              if r["name"].startswith("ex-")]), 200)

        rc, out, last = run_bench("health", d.target, "--duration", "0.5",
                                  "--warmup", "0", "--concurrency", "4")
        self.assertEqual(rc, 0, out)
        self.assertEqual(last["errors"], "0", out)
        self.assertGreater(float(last["ops_per_s"]), 0, out)

    def test_ready_reports_serving_time(self):
        d = self.daemon(conduits=CONDUITS)
        rc, out, last = run_bench("ready", d.target, "--duration", "5")
        self.assertEqual(rc, 0, out)
        self.assertEqual(last["mode"], "ready")
        self.assertGreater(int(last["ready_ns"]), 0)
        d.stop()
        # Nobody listening: ready gives up after --duration with exit 1.
        rc, out, _ = run_bench("ready", d.target, "--duration", "0.3")
        self.assertEqual(rc, 1, out)
        self.assertIn("not SERVING", out)


class FaultyIpam(ipam_pb2_grpc.IpamServicer):
    """Answers Allocate with a fixed address (duplicates), or with a new
    address on every call (renewals that move)."""

    def __init__(self, moving):
        self.moving = moving
        self.n = 0
        self.mu = threading.Lock()

    def Allocate(self, request, context):
        with self.mu:
            self.n += 1
            n = self.n
        last = n % 250 + 1 if self.moving else 1
        if request.subnet.ipFamily == ipam_pb2.IPV6:
            return ipam_pb2.Prefix(address="fd00::%x" % last, prefixLength=64)
        return ipam_pb2.Prefix(address="10.0.0.%d" % last, prefixLength=24)

    def Release(self, request, context):
        return empty_pb2.Empty()


class AgainstFaultyServer(unittest.TestCase):

    def serve(self, moving):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        ipam_pb2_grpc.add_IpamServicer_to_server(FaultyIpam(moving), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self.addCleanup(server.stop, None)
        return "127.0.0.1:%d" % port

    def test_duplicates_are_reported(self):
        target = self.serve(moving=False)
        rc, out, last = run_bench("allocate-new", target, "--count", "50",
                                  "--concurrency", "4")
        self.assertEqual(rc, 1, out)
        # Two of the 50 names (one per family) hold the address first.
        self.assertEqual(last["duplicates"], "48", out)
        self.assertIn("given to two names", out)

    def test_moved_renewals_are_errors(self):
        target = self.serve(moving=True)
        rc, out, last = run_bench("allocate-existing", target, "--names",
                                  "10", "--duration", "0.3", "--warmup", "0",
                                  "--concurrency", "2")
        self.assertEqual(rc, 1, out)
        self.assertNotEqual(last["errors"], "0", out)
        self.assertIn("renewal moved", out)


if __name__ == "__main__":
    unittest.main()
