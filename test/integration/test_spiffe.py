"""SPIFFE mTLS with SVIDs from the Workload API (SPIFFE_ENDPOINT_SOCKET).

The real daemon gets its SVID from a fake SPIRE agent (fakespire.py,
python3-grpcio on a Unix socket) and serves the port with mTLS only. The
client that checks the daemon by SPIFFE ID without host names, as Meridio's
go-spiffe clients do, is node's grpc-js (spiffe_client.js; npm installs it
into build/node on first use): Python's grpcio cannot turn host-name checks
off. Python clients are used where they are refused, and in one separate
case with a DNS name added to the server's SVID.
"""

import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import unittest

import harness
from harness import (BIN_DIR, PYGEN, DaemonTest, RpcError, poll,
                     child_msg)
import fakespire
import grpc
from ipam.v1 import ipam_pb2_grpc

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(os.path.dirname(_HERE))
NODE_DIR = os.path.join(os.path.dirname(BIN_DIR), "node")
NODE_PKGS = ["@grpc/grpc-js@1.14.7", "@grpc/proto-loader@0.8.1"]

TD = "spiffe://example.org"
IPAM_ID = TD + "/ns/trench-a/sa/ipam"
PROXY_ID = TD + "/ns/trench-a/sa/proxy"
NSP_ID = TD + "/ns/trench-a/sa/nsp"


def ensure_node():
    """Installs grpc-js into build/node once (a folder git ignores)."""
    if os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@grpc",
                                  "grpc-js")):
        return
    os.makedirs(NODE_DIR, exist_ok=True)
    subprocess.run(["npm", "install", "--prefix", NODE_DIR, "--no-save",
                    "--no-audit", "--no-fund", "--no-package-lock"]
                   + NODE_PKGS, check=True, stdout=subprocess.DEVNULL,
                   timeout=300)


class NodeClient:
    """spiffe_client.js, one JSON request and answer per line. prefix
    is a command that runs it, e.g. nsenter into a network namespace."""

    def __init__(self, prefix=()):
        env = dict(os.environ, NODE_PATH=os.path.join(NODE_DIR, "node_modules"),
                   NODE_NO_WARNINGS="1",
                   IPAM_PROTO_DIR=os.path.join(_REPO, "proto"))
        self.proc = subprocess.Popen(
            [*prefix, "node", os.path.join(_HERE, "spiffe_client.js")], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def call(self, req, timeout=20.0):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError("node client: no answer to %s" % req)
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError("node client exited")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.stdout.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@harness.needs(harness.why_no_npm_registry)
class SpiffeTest(DaemonTest):

    @classmethod
    def setUpClass(cls):
        ensure_node()

    def setUp(self):
        super().setUp()
        # Unix socket paths must be short: the agent's lives under /tmp.
        self.sock_dir = tempfile.mkdtemp(prefix="spf-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.sock_dir, True)
        self.files = tempfile.mkdtemp(prefix="spiffe-", dir=harness.TEST_TMP)
        self.addCleanup(shutil.rmtree, self.files, True)
        self.ca = fakespire.Ca("example.org")
        self.agent = fakespire.FakeSpire(
            os.path.join(self.sock_dir, "agent.sock"), self.ca)
        self.addCleanup(self.agent.stop)
        self.agent.set_svid(IPAM_ID)
        self.node = NodeClient()
        self.addCleanup(self.node.close)
        self.proxy = self.svid_files(PROXY_ID, "proxy")

    def svid_files(self, spiffe_id, name, ca=None):
        """PEM files (bundle, key, chain) of a new SVID of ca."""
        return (ca or self.ca).issue(spiffe_id).files(self.files, name)

    def spiffe_daemon(self, env=None, **kwargs):
        e = {"SPIFFE_ENDPOINT_SOCKET": "unix://" + self.agent.path}
        e.update(env or {})
        d = self.daemon(env=e, start=False, **kwargs)
        d.start(wait=False)
        return d

    def req(self, d, method, files=None, expect=None, **kw):
        bundle, key, cert = files or self.proxy
        r = {"target": d.target, "bundle": bundle, "key": key, "cert": cert,
             "expect": expect, "method": method}
        r.update(kw)
        return self.node.call(r)

    def allocate(self, d, name, files=None, expect=IPAM_ID, **kw):
        return self.req(d, "allocate", files, expect, child={
            "name": name, "conduit": "conduit-a", "node": "worker-1",
            "family": 4}, **kw)

    def wait_serving(self, d, timeout=30.0, expect=IPAM_ID):
        """Polls Health over SPIFFE mTLS until SERVING."""
        def serving():
            if not d.running():
                raise AssertionError("daemon exited\n" + d.log_tail())
            r = self.req(d, "health", expect=expect, timeout_ms=1000)
            return r.get("status") == "SERVING"
        poll(serving, timeout, 0.1,
             lambda: "SPIFFE SERVING as %s\n%s" % (expect, d.log_tail()))
        if d.env.get("IPAM_CONDUITS"):
            d.wait_conduits(d.env["IPAM_CONDUITS"].split(","))

    def port_open(self, d):
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex(("127.0.0.1", d.port)) == 0

    # -- cases ------------------------------------------------------------

    def test_allocate_over_mtls(self):
        self.agent.start()
        d = self.spiffe_daemon()
        self.wait_serving(d)
        r = self.allocate(d, "proxy-1")
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["server_id"], IPAM_ID)
        self.assertEqual(r["prefixLength"], 24)
        again = self.allocate(d, "proxy-1")
        self.assertEqual(again["address"], r["address"])
        log = d.log_text()
        self.assertIn("serving with SPIFFE mTLS", log)
        self.assertIn(IPAM_ID, log)
        calls, refused, _ = self.agent.counts()
        self.assertGreaterEqual(calls, 1)   # the api worker (static conduits:
                                            # the nsp worker needs none)
        self.assertEqual(refused, 0)
        # keys never in logs nor in the data directory
        self.assertNotIn("PRIVATE KEY", log)
        for root, _, names in os.walk(d.dir):
            for n in names:
                if not stat.S_ISREG(os.lstat(os.path.join(root, n)).st_mode):
                    continue
                with open(os.path.join(root, n), "rb") as f:
                    self.assertNotIn(b"PRIVATE KEY", f.read(), n)

    def test_agent_refuses_calls_without_header(self):
        """The fake agent is strict, as SPIRE's is."""
        self.agent.start()
        ch = grpc.insecure_channel("unix:" + self.agent.path)
        self.addCleanup(ch.close)
        call = ch.unary_stream("/SpiffeWorkloadAPI/FetchX509SVID",
                               request_serializer=None,
                               response_deserializer=None)
        with self.assertRaises(grpc.RpcError) as cm:
            next(iter(call(b"", timeout=5)))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(self.agent.counts()[1], 1)

    def test_refused_clients(self):
        self.agent.start()
        d = self.spiffe_daemon()
        self.wait_serving(d)
        self.assertTrue(self.allocate(d, "ok")["ok"])
        # plaintext
        c = harness.Client(d.target)
        self.addCleanup(c.close)
        with self.assertRaises(RpcError) as cm:
            c.allocate("conduit-a", "worker-1", "plain", timeout=3)
        self.assertEqual(cm.exception.code, grpc.StatusCode.UNAVAILABLE)
        # TLS without a client certificate
        bundle = self.proxy[0]
        r = self.req(d, "allocate", (bundle, None, None), IPAM_ID,
                     child={"name": "nocert", "conduit": "conduit-a",
                            "node": "worker-1", "family": 4})
        self.assertFalse(r["ok"], r)
        self.assertEqual(r["code"], grpc.StatusCode.UNAVAILABLE.value[0], r)
        # an SVID of a foreign CA (same trust domain name)
        alien = fakespire.Ca("example.org")
        _, key, cert = self.svid_files(PROXY_ID, "alien", alien)
        r = self.req(d, "allocate", (bundle, key, cert), IPAM_ID,
                     child={"name": "alien", "conduit": "conduit-a",
                            "node": "worker-1", "family": 4})
        self.assertFalse(r["ok"], r)
        self.assertEqual(r["code"], grpc.StatusCode.UNAVAILABLE.value[0], r)
        # a client wanting another server ID refuses the daemon
        r = self.allocate(d, "other", expect=TD + "/ns/trench-a/sa/other")
        self.assertFalse(r["ok"], r)
        names = [row for row in d.rows() if row.startswith(("nocert", "alien",
                                                            "plain", "other"))]
        self.assertEqual(names, [])

    def test_nsp_sees_daemon_svid(self):
        self.agent.start()
        nsp_svid = self.ca.issue(NSP_ID)
        creds = grpc.ssl_server_credentials(
            [(nsp_svid.key_pem(), nsp_svid.cert_pem())],
            root_certificates=self.ca.pem(), require_client_auth=True)
        n = harness.FakeNsp()
        n.set_conduits(["conduit-n"])
        self._nsps.append(n)
        n.start(0, credentials=creds)
        d = self.spiffe_daemon(nsp=n.target, conduits="")
        self.wait_serving(d)
        d.wait_conduits(["conduit-n"])
        certs = [c for c in n.peer_certs() if c]
        self.assertTrue(certs, "NSP saw no client certificate")
        self.assertEqual(fakespire.uri_sans_of_pem(certs[-1]), [IPAM_ID])

    def test_nsp_of_foreign_ca_refused(self):
        self.agent.start()
        alien = fakespire.Ca("example.org").issue(NSP_ID)
        creds = grpc.ssl_server_credentials(
            [(alien.key_pem(), alien.cert_pem())],
            root_certificates=self.ca.pem(), require_client_auth=True)
        n = harness.FakeNsp()
        n.set_conduits(["conduit-n"])
        self._nsps.append(n)
        n.start(0, credentials=creds)
        d = self.spiffe_daemon(nsp=n.target, conduits="")
        self.wait_serving(d)
        poll(lambda: "NSP watch failed" in d.log_text(), 15,
             what="the NSP watch failing")
        self.assertEqual(n.requests(), [])
        self.assertFalse(any(r.startswith("conduit-n") for r in d.rows()))

    def test_rotation_reaches_new_connections(self):
        self.agent.start()
        d = self.spiffe_daemon()
        self.wait_serving(d)
        api_pid = d.workers()["api"]
        first = self.allocate(d, "before", keep="old")
        self.assertTrue(first["ok"], first)
        rotated = TD + "/ns/trench-a/sa/ipam-rotated"
        t0 = time.monotonic()
        self.agent.set_svid(rotated)
        poll(lambda: self.req(d, "health", expect=rotated,
                              timeout_ms=1000).get("status") == "SERVING",
             5.0, 0.05, "a new connection served with the rotated SVID")
        self.assertLess(time.monotonic() - t0, 5.0)
        # the open connection keeps working; nothing restarted or lost
        kept = self.allocate(d, "after", keep="old")
        self.assertTrue(kept["ok"], kept)
        again = self.allocate(d, "before", expect=rotated)
        self.assertEqual(again["address"], first["address"])
        old = self.allocate(d, "x", expect=IPAM_ID)
        self.assertFalse(old["ok"], "the old SVID is still served")
        self.assertEqual(d.workers()["api"], api_pid)
        self.assertEqual(d.starts, 1)

    def test_agent_restart(self):
        self.agent.start()
        d = self.spiffe_daemon()
        self.wait_serving(d)
        a = self.allocate(d, "p1")
        self.agent.stop()
        poll(lambda: "keeping the last SVID" in d.log_text(), 10,
             what="the outage logged")
        # the last SVID keeps serving new connections
        r = self.allocate(d, "p2")
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["server_id"], IPAM_ID)
        new_id = TD + "/ns/trench-a/sa/ipam-new"
        self.agent.set_svid(new_id)
        self.agent.start()
        self.wait_serving(d, 15, expect=new_id)
        b = self.allocate(d, "p1", expect=new_id)
        self.assertEqual(b["address"], a["address"])

    def test_started_before_agent(self):
        d = self.spiffe_daemon()
        poll(lambda: "Workload API unavailable" in d.log_text(), 15,
             what="the missing agent logged")
        time.sleep(2.5)      # several reconnect attempts (backoff cap 1s)
        self.assertTrue(d.running(), d.log_tail())
        self.assertFalse(self.port_open(d), "port open without an SVID")
        self.assertEqual(d.log_text().count("Workload API unavailable: no "
                                            "SVID yet"), 1,
                         "one warning per outage")
        self.assertIn("waiting for an SVID", d.log_text())
        # Meridio's exec probe on the health socket: alive, not ready.
        self.assertEqual(self.probe(d, "Readiness").returncode, 4,
                         "the health socket must say NOT_SERVING")
        self.agent.start()
        self.wait_serving(d)
        self.assertTrue(self.allocate(d, "late")["ok"])
        # Probes carry no certificate: the health socket answers them
        # once the port serves (SPIFFE guards the port, not the socket).
        for service in ("Startup", "Readiness", "Liveness"):
            r = self.probe(d, service)
            self.assertEqual(r.returncode, 0, "%s: %s" % (service, r.stderr))

    def probe(self, d, service):
        """grpc_health_probe as Meridio's pods run it, on d's socket."""
        return subprocess.run(
            [os.path.join(harness.BIN_DIR, "grpc_health_probe"),
             "-addr=unix://" + d.env["IPAM_HEALTH_SOCKET"],
             "-service=" + service], capture_output=True, text=True,
            timeout=30)

    def test_probe_spiffe_flag(self):
        """grpc_health_probe -spiffe on the port: the SVID from the agent,
        the server checked by chain and SPIFFE ID, no host name. Exit 20
        without an SVID (grpc-health-probe's code), 2 when the server's
        chain is not the bundle's."""
        def run(addr, env=None, *extra):
            e = {k: v for k, v in os.environ.items()
                 if k != "SPIFFE_ENDPOINT_SOCKET"}
            e.update(env or {})
            return subprocess.run(
                [os.path.join(harness.BIN_DIR, "grpc_health_probe"),
                 "-addr=" + addr, "-spiffe", "-rpc-timeout=2s"] + list(extra),
                env=e, capture_output=True, text=True, timeout=30)
        agent_env = {"SPIFFE_ENDPOINT_SOCKET": "unix://" + self.agent.path}
        self.agent.start()
        d = self.spiffe_daemon()
        self.wait_serving(d)
        r = run(d.target, agent_env, "-v")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('SVID): "%s"' % IPAM_ID, r.stderr)
        self.assertIn("status: SERVING", r.stdout + r.stderr)
        # No agent variable, or an agent that is gone: exit 20.
        r = run(d.target)
        self.assertEqual(r.returncode, 20, r.stderr)
        self.assertIn("SPIFFE_ENDPOINT_SOCKET is not set", r.stderr)
        r = run(d.target, {"SPIFFE_ENDPOINT_SOCKET": "unix://" +
                           os.path.join(self.sock_dir, "none.sock")})
        self.assertEqual(r.returncode, 20, r.stderr)
        self.assertIn("failed to initialize tls credentials with spiffe", r.stderr)
        # A server of another CA (same trust domain name): refused.
        alien = fakespire.Ca("example.org").issue(IPAM_ID)
        creds = grpc.ssl_server_credentials(
            [(alien.key_pem(), alien.cert_pem())],
            root_certificates=self.ca.pem(), require_client_auth=True)
        other = harness.FakeNsp()
        self._nsps.append(other)
        other.start(0, credentials=creds)
        r = run(other.target, agent_env)
        self.assertEqual(r.returncode, 2, r.stderr)

    def test_ipamctl_spiffe(self):
        """ipamctl --spiffe / --spiffe-id: our SVID from the agent, the
        server checked by chain and SPIFFE ID, no host name."""
        def ctl(*args, env=None):
            e = {k: v for k, v in os.environ.items()
                 if k != "SPIFFE_ENDPOINT_SOCKET"}
            e.update(env if env is not None else
                     {"SPIFFE_ENDPOINT_SOCKET": "unix://" + self.agent.path})
            return subprocess.run(
                [os.path.join(harness.BIN_DIR, "ipamctl")] + list(args) +
                ["--target", d.target, "--timeout", "5s"],
                env=e, capture_output=True, text=True, timeout=30)
        self.agent.start()
        d = self.spiffe_daemon()
        self.wait_serving(d)
        child = ["--conduit", "conduit-a", "--node", "worker-1", "--name", "ctl"]
        r = ctl("allocate", *child, "--spiffe-id", IPAM_ID)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "169.255.0.1/24"),
                         r.stderr)
        self.assertEqual(r.stderr, "", "gRPC chatter on stderr")
        r = ctl("health", "--spiffe")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "SERVING"), r.stderr)
        # Another ID expected: the handshake fails, nothing is allocated.
        r = ctl("allocate", "--conduit", "conduit-a", "--node", "worker-1",
                "--name", "wrong", "--spiffe-id", TD + "/ns/other/sa/ipam")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertNotIn("wrong", "".join(d.rows()))
        # Without the agent variable: a usage error naming it.
        r = ctl("health", "--spiffe", env={})
        self.assertEqual(r.returncode, 2)
        self.assertIn("SPIFFE_ENDPOINT_SOCKET is not set", r.stderr)
        r = ctl("health", "--spiffe", "--tls-ca", "/x")
        self.assertEqual(r.returncode, 2)
        self.assertIn("exclude each other", r.stderr)
        # Plaintext, as before SPIFFE, is refused by the port.
        r = ctl("health", env={})
        self.assertNotEqual(r.returncode, 0)

    def test_orderly_stop_before_first_svid(self):
        d = self.spiffe_daemon()
        poll(lambda: "waiting for an SVID" in d.log_text(), 15,
             what="the api worker waiting")
        rc, took = d.stop(timeout=10)
        self.assertEqual(rc, 0, d.log_tail())
        self.assertLess(took, 5.0)

    def test_allowed_ids(self):
        self.agent.start()
        d = self.spiffe_daemon(env={
            "IPAM_SPIFFE_ALLOWED_IDS":
                TD + "/ns/trench-b/, " + TD + "/ns/trench-a/sa/proxy-ok"})
        self.wait_serving(d)     # Health: any ID of the trust domain
        r = self.allocate(d, "denied")
        self.assertFalse(r["ok"], r)
        self.assertEqual(r["code"], grpc.StatusCode.PERMISSION_DENIED.value[0])
        self.assertIn(PROXY_ID, r["details"])
        poll(lambda: "caller not allowed" in d.log_text() and
             PROXY_ID in d.log_text(), 5, what="the refusal logged")
        ok = self.svid_files(TD + "/ns/trench-a/sa/proxy-ok", "ok")
        self.assertTrue(self.allocate(d, "exact", ok)["ok"])
        under = self.svid_files(TD + "/ns/trench-b/sa/proxy", "b")
        self.assertTrue(self.allocate(d, "prefixed", under)["ok"])
        self.assertFalse(any(r.startswith("denied") for r in d.rows()))

    def test_spiffe_and_tls_files_conflict(self):
        d = self.spiffe_daemon(env={"IPAM_TLS_CERT": "/c.pem",
                                    "IPAM_TLS_KEY": "/k.pem"})
        rc = d.proc.wait(10)
        self.assertNotEqual(rc, 0)
        log = d.log_text()
        self.assertIn("SPIFFE_ENDPOINT_SOCKET", log)
        self.assertIn("IPAM_TLS_CERT", log)

    def test_endpoint_not_unix_refused(self):
        d = self.daemon(env={"SPIFFE_ENDPOINT_SOCKET": "tcp://127.0.0.1:8081"},
                        start=False)
        d.start(wait=False)
        self.assertNotEqual(d.proc.wait(10), 0)
        self.assertIn("SPIFFE_ENDPOINT_SOCKET=", d.log_text())
        self.assertIn("tcp://127.0.0.1:8081", d.log_text())

    def test_python_client_with_dns_name_added(self):
        """A separate case: grpcio (no way to skip host names) against a
        server SVID that also carries a DNS name."""
        self.agent.set_svid(IPAM_ID, dns=["ipam.test"])
        self.agent.start()
        d = self.spiffe_daemon()
        self.wait_serving(d)
        bundle, key, cert = self.proxy
        with open(bundle, "rb") as f1, open(key, "rb") as f2, \
                open(cert, "rb") as f3:
            creds = grpc.ssl_channel_credentials(f1.read(), f2.read(),
                                                  f3.read())
        ch = grpc.secure_channel(d.target, creds, options=[
            ("grpc.ssl_target_name_override", "ipam.test")])
        self.addCleanup(ch.close)
        p = ipam_pb2_grpc.IpamStub(ch).Allocate(
            child_msg("conduit-a", "worker-1", "py"), timeout=10)
        self.assertEqual(p.prefixLength, 24)


if __name__ == "__main__":
    unittest.main()
