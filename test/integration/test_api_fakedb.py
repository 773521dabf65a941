"""The API worker alone, in front of a fake db worker written here.

The test plays both neighbours of meridio-ipam-api: the supervisor (fd 3,
a socketpair on which the worker sends WorkerStatus frames) and the db
worker (a Unix socket at $IPAMD_RUNDIR/db.sock speaking 4-byte big-endian
length + ipamd.v1 protobuf). It drives the worker's gRPC port with
python3-grpcio and ipamctl. Every wait is bounded.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from concurrent import futures

BIN_DIR = os.environ.get("IPAM_BIN_DIR") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "build", "bin")
PYGEN = os.environ.get("IPAM_PYGEN") or os.path.join(os.path.dirname(BIN_DIR), "pygen")
TEST_TMP = os.environ.get("IPAM_TEST_TMP") or tempfile.gettempdir()
if PYGEN not in sys.path:
    sys.path.insert(0, PYGEN)

import grpc  # noqa: E402
from ipam.v1 import ipam_pb2, ipam_pb2_grpc  # noqa: E402
from ipamd.v1 import ipamd_pb2  # noqa: E402
from nsp.v1 import model_pb2  # noqa: E402
import health_pb2  # noqa: E402
import health_pb2_grpc  # noqa: E402
import harness  # noqa: E402  (the internal frame codec)

API = os.path.join(BIN_DIR, "meridio-ipam-api")
CTL = os.path.join(BIN_DIR, "ipamctl")
SC = grpc.StatusCode
HS = health_pb2.HealthCheckResponse


def wait_for(pred, timeout=10.0, step=0.02):
    """Polls pred until it is true or timeout passes; returns its value."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)


def free_port():
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.bind(("::", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def frame(msg):
    return harness.ipc_frame(msg.SerializeToString())


class FakeDb:
    """A db worker: answers Hello and Ping, records every other Request
    and answers it through `handler` (a function Request -> Reply, or None
    to hold it; held requests are answered later with `answer`)."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Condition()
        self.requests = []      # (conn, Request) of Allocate/Release
        self.hellos = []        # Hello messages seen
        self.pings = 0
        self.answer_pings = True
        self.handler = self.default_handler
        self.conns = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @staticmethod
    def default_handler(req):
        if req.WhichOneof("body") == "allocate":
            return ipamd_pb2.Reply(id=req.id, code=0, address="169.255.0.7",
                                   prefix_length=24)
        return ipamd_pb2.Reply(id=req.id, code=0)

    def _accept(self):
        while True:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        while True:
            try:
                data = harness.ipc_recv_frame(c)
            except OSError:
                return
            if data is None:
                return
            req = ipamd_pb2.Request.FromString(data)
            kind = req.WhichOneof("body")
            with self.lock:
                if kind == "hello":
                    self.hellos.append(req.hello)
                    self.lock.notify_all()
                    self.send(c, ipamd_pb2.Reply(id=req.id))
                    continue
                if kind == "ping":
                    self.pings += 1
                    if self.answer_pings:
                        self.send(c, ipamd_pb2.Reply(id=req.id))
                    continue
                self.requests.append((c, req))
                self.lock.notify_all()
                handler = self.handler
            rep = handler(req)
            if rep is not None:
                self.send(c, rep)

    def send(self, c, rep):
        try:
            c.sendall(frame(rep))
        except OSError:
            pass

    def answer(self, index, rep):
        """Answers the index-th recorded request."""
        c, _ = self.requests[index]
        self.send(c, rep)

    def wait_requests(self, n, timeout=10.0):
        with self.lock:
            self.lock.wait_for(lambda: len(self.requests) >= n, timeout)
            return [r for _, r in self.requests]

    def drop_connections(self):
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def close(self):
        self.listener.close()
        self.drop_connections()


class Api:
    """meridio-ipam-api started directly, fd 3 a socketpair read here."""

    def __init__(self, rundir, port, env_extra=None, logname="api.log"):
        self.port = port
        self.statuses = []
        self.status_lock = threading.Lock()
        self.sup, child = socket.socketpair()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "IPAM_PORT": str(port),
            "IPAMD_RUNDIR": rundir,
            "IPAM_LOG_LEVEL": "DEBUG",
            # not the shared default /tmp/health.sock
            "IPAM_HEALTH_SOCKET": os.path.join(rundir, "health.sock"),
        }
        env.update(env_extra or {})
        self.log_path = os.path.join(rundir, logname)
        self.log = open(self.log_path, "wb")
        fd = child.fileno()

        def to_fd3():
            os.dup2(fd, 3)

        # close_fds=False: fd 3 made by dup2 must survive; Python's own fds
        # are close-on-exec anyway.
        self.proc = subprocess.Popen([API], env=env, stdout=self.log, stderr=self.log,
                                     preexec_fn=to_fd3, close_fds=False)
        child.close()
        threading.Thread(target=self._read_status, daemon=True).start()

    def _read_status(self):
        while True:
            try:
                data = harness.ipc_recv_frame(self.sup)
            except OSError:
                return
            if data is None:
                return
            st = ipamd_pb2.WorkerStatus.FromString(data)
            with self.status_lock:
                self.statuses.append((time.monotonic(), st))

    def ready(self):
        with self.status_lock:
            return any(s.ready for _, s in self.statuses)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.sup.close()
        self.log.close()
        return self.proc.returncode

    def logtext(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


def child(name="proxy-a", conduit="conduit-a", node="node-1", family=ipam_pb2.IPV4,
          trench="default"):
    return ipam_pb2.Child(name=name, subnet=ipam_pb2.Subnet(
        conduit=model_pb2.Conduit(name=conduit, trench=model_pb2.Trench(name=trench)),
        node=node, ipFamily=family))


def raw_string(field, value):
    """A length-delimited protobuf field with arbitrary bytes."""
    out = bytes([(field << 3) | 2])
    n = len(value)
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            out += bytes([b])
            break
    return out + value


class ApiCase(unittest.TestCase):
    """Fresh fake db + api worker per test."""

    env_extra = None
    with_db = True

    def setUp(self):
        os.makedirs(TEST_TMP, exist_ok=True)
        self.rundir = tempfile.mkdtemp(prefix="api-", dir=TEST_TMP)
        self.db = FakeDb(os.path.join(self.rundir, "db.sock")) if self.with_db else None
        self.api = Api(self.rundir, free_port(), self.env_extra)
        self.target = "127.0.0.1:%d" % self.api.port
        self.channel = grpc.insecure_channel(self.target)
        self.ipam = ipam_pb2_grpc.IpamStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        if self.with_db:
            ok = wait_for(self.api.ready, 15)
            self.assertTrue(ok, "api not ready:\n" + self.api.logtext())
        else:
            self.assertTrue(wait_for(self.port_open, 15), self.api.logtext())

    def port_open(self):
        try:
            socket.create_connection(("127.0.0.1", self.api.port), 0.2).close()
            return True
        except OSError:
            return False

    def tearDown(self):
        self.channel.close()
        rc = self.api.stop()
        if self.db:
            self.db.close()
        log = self.api.logtext()
        for name in os.listdir(self.rundir):
            os.unlink(os.path.join(self.rundir, name))
        os.rmdir(self.rundir)
        # every test ends with an orderly stop (SIGTERM, or the supervisor
        # channel closed): exit 0, also under sanitizers (leaks exit non-zero)
        self.assertEqual(rc, 0, log)

    def code_of(self, fn, req, timeout=5):
        with self.assertRaises(grpc.RpcError) as cm:
            fn(req, timeout=timeout)
        return cm.exception.code(), cm.exception.details()

    def ctl(self, *args, env=None):
        e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "IPAM_PORT": str(self.api.port)}
        e.update(env or {})
        return subprocess.run([CTL] + list(args), env=e, capture_output=True, text=True,
                              timeout=30)


class TestForwarding(ApiCase):

    def test_status_ready_and_heartbeat(self):
        self.assertTrue(wait_for(lambda: len(self.api.statuses) >= 3, 5))
        with self.api.status_lock:
            sts = list(self.api.statuses)
        self.assertTrue(sts[-1][1].ready)
        self.assertIn("db answering", sts[-1][1].status)
        gaps = [b[0] - a[0] for a, b in zip(sts[1:], sts[2:])]
        self.assertTrue(all(g < 1.6 for g in gaps), gaps)

    def test_hello_names_role_and_pid(self):
        self.assertTrue(wait_for(lambda: self.db.hellos, 5))
        h = self.db.hellos[0]
        self.assertEqual(h.role, ipamd_pb2.ROLE_API)
        self.assertEqual(h.pid, self.api.proc.pid)

    def test_allocate_forwards_fields_and_maps_reply(self):
        p = self.ipam.Allocate(child("proxy-x", "c1", "worker-7", ipam_pb2.IPV4), timeout=5)
        self.assertEqual((p.address, p.prefixLength), ("169.255.0.7", 24))
        p6 = self.ipam.Allocate(child("proxy-y", "c2", "worker-8", ipam_pb2.IPV6), timeout=5)
        self.assertEqual(p6.address, "169.255.0.7")
        reqs = self.db.wait_requests(2)
        a4, a6 = reqs[0].allocate.child, reqs[1].allocate.child
        self.assertEqual(reqs[0].WhichOneof("body"), "allocate")
        self.assertEqual((a4.trench, a4.conduit, a4.node, a4.family, a4.name),
                         ("default", "c1", "worker-7", ipamd_pb2.FAMILY_IPV4, "proxy-x"))
        self.assertEqual((a6.conduit, a6.node, a6.family, a6.name),
                         ("c2", "worker-8", ipamd_pb2.FAMILY_IPV6, "proxy-y"))
        self.assertNotEqual(reqs[0].id, reqs[1].id)

    def test_release_forwards_and_returns_empty(self):
        r = self.ipam.Release(child("gone", "c1", "n1", ipam_pb2.IPV6), timeout=5)
        self.assertEqual(r.ByteSize(), 0)
        rq = self.db.wait_requests(1)[0]
        self.assertEqual(rq.WhichOneof("body"), "release")
        rc = rq.release.child
        self.assertEqual((rc.trench, rc.conduit, rc.node, rc.family, rc.name),
                         ("default", "c1", "n1", ipamd_pb2.FAMILY_IPV6, "gone"))

    def test_db_error_code_and_message(self):
        self.db.handler = lambda req: ipamd_pb2.Reply(
            id=req.id, code=8, message="node prefix 169.255.1.0/24 is full")
        code, msg = self.code_of(self.ipam.Allocate, child())
        self.assertEqual(code, SC.RESOURCE_EXHAUSTED)
        self.assertEqual(msg, "node prefix 169.255.1.0/24 is full")
        self.db.handler = lambda req: ipamd_pb2.Reply(id=req.id, code=99, message="odd")
        self.assertEqual(self.code_of(self.ipam.Release, child()), (SC.UNKNOWN, "odd"))

    def test_deadline_becomes_wait_ms(self):
        self.ipam.Allocate(child(name="a"), timeout=3.0)
        self.ipam.Allocate(child(name="b"))
        reqs = self.db.wait_requests(2)
        self.assertGreater(reqs[0].allocate.wait_ms, 2000)
        self.assertLessEqual(reqs[0].allocate.wait_ms, 2980)
        self.assertEqual(reqs[1].allocate.wait_ms, 30000)

    def test_late_reply_is_dropped_and_worker_keeps_serving(self):
        self.db.handler = lambda req: None
        code, _ = self.code_of(self.ipam.Allocate, child(), timeout=1.0)
        self.assertEqual(code, SC.DEADLINE_EXCEEDED)
        req = self.db.wait_requests(1)[0]
        self.db.answer(0, ipamd_pb2.Reply(id=req.id, address="169.255.0.9", prefix_length=24))
        self.db.handler = FakeDb.default_handler
        p = self.ipam.Allocate(child(name="next"), timeout=5)
        self.assertEqual(p.address, "169.255.0.7")
        self.assertIsNone(self.api.proc.poll())

    def test_replies_out_of_order(self):
        self.db.handler = lambda req: None
        with futures.ThreadPoolExecutor(2) as ex:
            f1 = ex.submit(self.ipam.Allocate, child(name="one"), timeout=10)
            self.db.wait_requests(1)
            f2 = ex.submit(self.ipam.Allocate, child(name="two"), timeout=10)
            reqs = self.db.wait_requests(2)
            self.db.answer(1, ipamd_pb2.Reply(id=reqs[1].id, address="10.0.0.2", prefix_length=24))
            self.db.answer(0, ipamd_pb2.Reply(id=reqs[0].id, address="10.0.0.1", prefix_length=24))
            self.assertEqual(f1.result().address, "10.0.0.1")
            self.assertEqual(f2.result().address, "10.0.0.2")

    def test_concurrent_allocates_get_their_own_answers(self):
        def by_name(req):
            n = int(req.allocate.child.name.split("-")[1])
            return ipamd_pb2.Reply(id=req.id, address="169.255.%d.%d" % (n // 250, n % 250 + 1),
                                   prefix_length=24)
        self.db.handler = by_name
        with futures.ThreadPoolExecutor(32) as ex:
            fs = [ex.submit(self.ipam.Allocate, child(name="c-%d" % i), timeout=20)
                  for i in range(200)]
            got = [f.result().address for f in fs]
        want = ["169.255.%d.%d" % (i // 250, i % 250 + 1) for i in range(200)]
        self.assertEqual(got, want)
        self.assertEqual(len({r.id for r in self.db.wait_requests(200)}), 200)

    def test_calls_in_flight_are_capped(self):
        self.db.handler = lambda req: None
        futs = [self.ipam.Allocate.future(child(name="h-%d" % i), timeout=60)
                for i in range(4096 + 20)]
        self.assertTrue(wait_for(lambda: len(self.db.requests) >= 4096, 30))
        self.assertTrue(wait_for(lambda: sum(f.done() for f in futs) >= 20, 10))
        refused = [f for f in futs if f.done()]
        self.assertEqual(len(refused), 20)
        for f in refused:
            self.assertEqual(f.code(), SC.RESOURCE_EXHAUSTED)
            self.assertIn("too many calls", f.details())
        self.assertEqual(len(self.db.requests), 4096)
        # the db connection drops: every held call ends, capacity comes back
        self.db.handler = FakeDb.default_handler
        self.db.drop_connections()
        for f in futs:
            if f not in refused:
                self.assertEqual(f.code(), SC.UNAVAILABLE)
        self.assertTrue(wait_for(lambda: len(self.db.hellos) >= 2, 5))
        self.assertEqual(self.ipam.Allocate(child(), timeout=5).prefixLength, 24)

    def test_calls_past_their_deadline_free_their_place(self):
        # 4096 calls the db never answers fill every place; a second after
        # their deadline the worker forgets them and forwards new calls.
        self.db.handler = lambda req: None
        futs = [self.ipam.Allocate.future(child(name="h-%d" % i), timeout=2.0)
                for i in range(4096)]
        self.assertTrue(wait_for(lambda: len(self.db.requests) >= 4096, 30))
        for f in futs:
            self.assertEqual(f.code(), SC.DEADLINE_EXCEEDED)
        self.db.handler = FakeDb.default_handler
        self.assertTrue(wait_for(lambda: self.ok_allocate("again"), 4.5, 0.2))

    def ok_allocate(self, name):
        try:
            return self.ipam.Allocate(child(name=name), timeout=5).prefixLength == 24
        except grpc.RpcError:
            return False

    def test_ipv6_loopback(self):
        with grpc.insecure_channel("[::1]:%d" % self.api.port) as ch:
            p = ipam_pb2_grpc.IpamStub(ch).Allocate(child(), timeout=5)
        self.assertEqual(p.prefixLength, 24)


class TestValidation(ApiCase):

    def bad(self, c, code, fragment, method="Allocate"):
        got, msg = self.code_of(getattr(self.ipam, method), c)
        self.assertEqual(got, code, msg)
        self.assertIn(fragment, msg)

    def test_each_bad_field_in_order(self):
        for method in ("Allocate", "Release"):
            self.bad(ipam_pb2.Child(name="x"), SC.INVALID_ARGUMENT,
                     "child.subnet: missing", method)
            self.bad(ipam_pb2.Child(name="x", subnet=ipam_pb2.Subnet(node="n")),
                     SC.INVALID_ARGUMENT, "child.subnet.conduit: missing", method)
            self.bad(ipam_pb2.Child(name="x", subnet=ipam_pb2.Subnet(
                conduit=model_pb2.Conduit(name="c"), node="n")),
                SC.INVALID_ARGUMENT, "child.subnet.conduit.trench: missing", method)
            # name is checked before node
            self.bad(child(name="", node=""), SC.INVALID_ARGUMENT, "child.name: empty", method)
            self.bad(child(name="x" * 513), SC.INVALID_ARGUMENT, "child.name:", method)
            self.bad(child(node=""), SC.INVALID_ARGUMENT, "child.subnet.node: empty", method)
            self.bad(child(node="n" * 254), SC.INVALID_ARGUMENT, "child.subnet.node:", method)
            self.bad(child(family=7), SC.INVALID_ARGUMENT, "child.subnet.ipFamily", method)
            self.bad(child(conduit=""), SC.INVALID_ARGUMENT, "child.subnet.conduit.name: empty",
                     method)
        # Allocate: the trench is checked before the conduit name
        self.bad(child(trench="other", conduit=""), SC.NOT_FOUND, "other")
        # Release: another trench is no error, but a bad field after it still is
        self.bad(child(trench="other", conduit=""), SC.INVALID_ARGUMENT,
                 "child.subnet.conduit.name: empty", "Release")
        self.assertEqual(self.db.requests, [])

    def test_release_in_another_trench_succeeds_without_the_db(self):
        r = self.ipam.Release(child(trench="other"), timeout=5)
        self.assertEqual(r.ByteSize(), 0)
        self.assertEqual(self.db.requests, [])

    def test_limits_are_inclusive(self):
        self.ipam.Allocate(child(name="x" * 512, node="n" * 253), timeout=5)
        self.ipam.Allocate(child(name="ü" * 256), timeout=5)  # 512 bytes
        reqs = self.db.wait_requests(2)
        self.assertEqual(len(reqs[0].allocate.child.name), 512)
        self.assertEqual(reqs[1].allocate.child.name, "ü" * 256)

    def test_invalid_utf8_name(self):
        c = child(name="placeholder")
        body = c.SerializeToString()
        good = raw_string(1, b"placeholder")
        self.assertTrue(body.startswith(good))
        body = raw_string(1, b"bad\xc3\x28") + body[len(good):]
        call = self.channel.unary_unary("/ipam.v1.Ipam/Allocate")
        with self.assertRaises(grpc.RpcError) as cm:
            call(body, timeout=5)
        self.assertEqual(cm.exception.code(), SC.INVALID_ARGUMENT)
        self.assertIn("child.name: not valid UTF-8", cm.exception.details())
        self.assertEqual(self.db.requests, [])

    def test_malformed_body(self):
        for path in ("/ipam.v1.Ipam/Allocate", "/ipam.v1.Ipam/Release",
                     "/grpc.health.v1.Health/Check"):
            call = self.channel.unary_unary(path)
            with self.assertRaises(grpc.RpcError) as cm:
                call(b"\x0a\x0a\x01", timeout=5)
            self.assertEqual(cm.exception.code(), SC.INVALID_ARGUMENT, path)
            self.assertIn("malformed", cm.exception.details())

    def test_oversize_request_rejected(self):
        code, _ = self.code_of(self.ipam.Allocate, child(name="x" * 70000))
        self.assertEqual(code, SC.RESOURCE_EXHAUSTED)
        self.assertEqual(self.db.requests, [])
        # the worker still serves
        self.assertEqual(self.ipam.Allocate(child(), timeout=5).prefixLength, 24)

    def test_unknown_methods_unimplemented(self):
        for path in ("/ipam.v1.Ipam/Nope", "/foo.Bar/Baz"):
            call = self.channel.unary_unary(path)
            with self.assertRaises(grpc.RpcError) as cm:
                call(b"", timeout=5)
            self.assertEqual(cm.exception.code(), SC.UNIMPLEMENTED, path)


class TestFamilyNotServed(ApiCase):
    env_extra = {"IPAM_IP_FAMILY": "ipv4", "IPAM_TRENCH_NAME": "t-1"}

    def test_family_and_trench(self):
        code, msg = self.code_of(self.ipam.Allocate, child(family=ipam_pb2.IPV6, trench="t-1"))
        self.assertEqual(code, SC.FAILED_PRECONDITION)
        self.assertIn("IPV6", msg)
        code, _ = self.code_of(self.ipam.Allocate, child(trench="default"))
        self.assertEqual(code, SC.NOT_FOUND)
        self.assertEqual(self.ipam.Allocate(child(trench="t-1"), timeout=5).prefixLength, 24)
        self.assertEqual(self.db.wait_requests(1)[0].allocate.child.trench, "t-1")


class TestHealth(ApiCase):

    def check(self, service):
        return self.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status

    def test_names(self):
        for name in ("", "ipam.v1.Ipam", "Liveness", "Readiness", "Startup"):
            self.assertEqual(self.check(name), HS.SERVING, name)
        code, _ = self.code_of(self.health.Check, health_pb2.HealthCheckRequest(service="nope"))
        self.assertEqual(code, SC.NOT_FOUND)
        stream = self.health.Watch(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
        self.assertEqual(next(stream).status, HS.SERVICE_UNKNOWN)
        stream.cancel()

    def test_not_serving_while_db_silent_and_watch_follows(self):
        stream = self.health.Watch(health_pb2.HealthCheckRequest(service="Readiness"), timeout=30)
        self.assertEqual(next(stream).status, HS.SERVING)
        self.db.answer_pings = False
        self.assertEqual(next(stream).status, HS.NOT_SERVING)
        self.assertEqual(self.check(""), HS.NOT_SERVING)
        with self.api.status_lock:
            last = self.api.statuses[-1][1]
        self.assertTrue(wait_for(lambda: "unavailable" in self.api.statuses[-1][1].status, 3),
                        last)
        self.db.answer_pings = True
        self.assertEqual(next(stream).status, HS.SERVING)
        self.assertEqual(self.check("Liveness"), HS.SERVING)
        stream.cancel()

    def test_ctl_health(self):
        r = self.ctl("health")
        self.assertEqual((r.returncode, r.stdout), (0, "SERVING\n"), r.stderr)
        r = self.ctl("health", "--service", "Readiness", "--target", self.target)
        self.assertEqual((r.returncode, r.stdout), (0, "SERVING\n"), r.stderr)
        r = self.ctl("health", "--service", "nope")
        self.assertEqual(r.returncode, 1)
        self.assertIn("NOT_FOUND", r.stderr)
        self.db.answer_pings = False
        self.assertTrue(wait_for(lambda: self.check("") == HS.NOT_SERVING, 5))
        r = self.ctl("health")
        self.assertEqual((r.returncode, r.stdout), (1, "NOT_SERVING\n"))


class TestDbConnection(ApiCase):

    def test_drop_fails_in_flight_and_reconnects(self):
        self.db.handler = lambda req: None
        with futures.ThreadPoolExecutor(1) as ex:
            f = ex.submit(self.ipam.Allocate, child(), timeout=10)
            self.db.wait_requests(1)
            t0 = time.monotonic()
            self.db.drop_connections()
            with self.assertRaises(grpc.RpcError) as cm:
                f.result()
        self.assertEqual(cm.exception.code(), SC.UNAVAILABLE)
        self.assertEqual(cm.exception.details(), "db worker unavailable")
        self.assertTrue(wait_for(lambda: len(self.db.hellos) >= 2, 5))
        self.assertLess(time.monotonic() - t0, 2.0)
        self.db.handler = FakeDb.default_handler
        self.assertEqual(self.ipam.Allocate(child(), timeout=5).address, "169.255.0.7")


class TestNoDb(ApiCase):
    with_db = False

    def test_unavailable_and_not_ready(self):
        code, msg = self.code_of(self.ipam.Allocate, child())
        self.assertEqual((code, msg), (SC.UNAVAILABLE, "db worker unavailable"))
        st = self.health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        self.assertEqual(st, HS.NOT_SERVING)
        self.assertFalse(self.api.ready())
        # the db worker appears: the worker connects within a few tries
        self.db = FakeDb(os.path.join(self.rundir, "db.sock"))
        self.assertTrue(wait_for(self.api.ready, 5))
        self.assertEqual(self.ipam.Allocate(child(), timeout=5).prefixLength, 24)


class TestStop(ApiCase):

    def test_sigterm_lets_in_flight_finish_and_exits_0(self):
        self.db.handler = lambda req: None
        with futures.ThreadPoolExecutor(1) as ex:
            f = ex.submit(self.ipam.Allocate, child(), timeout=10)
            req = self.db.wait_requests(1)[0]
            self.api.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            self.db.answer(0, ipamd_pb2.Reply(id=req.id, address="169.255.0.3",
                                              prefix_length=24))
            self.assertEqual(f.result().address, "169.255.0.3")
        self.assertEqual(self.api.proc.wait(5), 0)

    def test_sigterm_cancels_what_does_not_finish(self):
        self.db.handler = lambda req: None
        stream = self.health.Watch(health_pb2.HealthCheckRequest(), timeout=30)
        self.assertEqual(next(stream).status, HS.SERVING)
        with futures.ThreadPoolExecutor(1) as ex:
            f = ex.submit(self.ipam.Allocate, child(), timeout=20)
            self.db.wait_requests(1)
            t0 = time.monotonic()
            self.api.proc.send_signal(signal.SIGTERM)
            self.assertEqual(next(stream).status, HS.NOT_SERVING)
            with self.assertRaises(grpc.RpcError) as cm:
                f.result()
            self.assertIn(cm.exception.code(), (SC.CANCELLED, SC.UNAVAILABLE))
        self.assertEqual(self.api.proc.wait(5), 0)
        self.assertLess(time.monotonic() - t0, 4.0)

    def test_supervisor_gone_stops(self):
        self.api.sup.shutdown(socket.SHUT_RDWR)
        self.assertEqual(self.api.proc.wait(5), 0)


class TestIpamctl(ApiCase):

    def test_allocate_release(self):
        r = self.ctl("allocate", "--conduit", "c1", "--node", "n1", "--name", "p1")
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "169.255.0.7/24\n", ""))
        r = self.ctl("allocate", "--conduit", "c1", "--node", "n1", "--name", "p2",
                     "--family", "ipv6", "--target", "[::1]:%d" % self.api.port)
        self.assertEqual(r.returncode, 0, r.stderr)
        reqs = self.db.wait_requests(2)
        a, a6 = reqs[0].allocate.child, reqs[1].allocate.child
        wait_ms = reqs[0].allocate.wait_ms
        self.assertEqual((a.trench, a.conduit, a.node, a.name, a.family),
                         ("default", "c1", "n1", "p1", ipamd_pb2.FAMILY_IPV4))
        self.assertEqual((a6.conduit, a6.node, a6.name, a6.family),
                         ("c1", "n1", "p2", ipamd_pb2.FAMILY_IPV6))
        # release is an admin-socket command (it says what it released):
        # it has no --target.
        r = self.ctl("release", "--conduit", "c1", "--node", "n1", "--name", "p1",
                     "--target", "[::1]:%d" % self.api.port)
        self.assertEqual(r.returncode, 2, r.stderr)
        # 5 s by default
        # (gRPC rounds the timeout it sends up by up to 10 ms; the api
        # answers 20 ms before the deadline it sees)
        self.assertGreater(wait_ms, 4000)
        self.assertLess(wait_ms, 5000)

    def test_trench_env_timeout_and_errors(self):
        r = self.ctl("allocate", "--conduit", "c1", "--node", "n1", "--name", "p1",
                     "--timeout", "2s", env={"IPAM_TRENCH_NAME": "other"})
        self.assertEqual(r.returncode, 1)
        self.assertIn("NOT_FOUND", r.stderr)
        r = self.ctl("allocate", "--conduit", "c1", "--node", "n1", "--name", "p1",
                     "--trench", "default", "--timeout", "2s", env={"IPAM_TRENCH_NAME": "other"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertLess(self.db.wait_requests(1)[0].allocate.wait_ms, 2000)
        self.db.handler = lambda req: ipamd_pb2.Reply(id=req.id, code=8, message="pool full")
        r = self.ctl("allocate", "--conduit", "c1", "--node", "n1", "--name", "p2")
        self.assertEqual((r.returncode, r.stdout), (1, ""))
        self.assertIn("RESOURCE_EXHAUSTED: pool full", r.stderr)

    def test_usage(self):
        for args in (["allocate", "--node", "n", "--name", "x"],
                     ["allocate", "--conduit", "c", "--name", "x"],
                     ["release", "--conduit", "c", "--node", "n"],
                     ["allocate", "--conduit", "c", "--node", "n", "--name", "x",
                      "--family", "ipv5"],
                     ["allocate", "--conduit", "c", "--node", "n", "--name", "x",
                      "--timeout", "soon"],
                     ["health", "--bogus"], ["frobnicate"], []):
            r = self.ctl(*args)
            self.assertEqual(r.returncode, 2, (args, r.stdout, r.stderr))
            self.assertNotEqual(r.stderr, "")
        for args in (["--help"], ["allocate", "--help"], ["release", "--help"],
                     ["health", "--help"]):
            r = self.ctl(*args)
            self.assertEqual(r.returncode, 0, args)
            self.assertIn("usage: ipamctl", r.stdout)
        self.assertIn("--conduit", self.ctl("allocate", "--help").stdout)
        self.assertIn("--service", self.ctl("health", "--help").stdout)
        self.assertEqual(self.db.requests, [])

    def test_bad_ipam_port(self):
        bad = {"IPAM_PORT": "77x"}
        r = self.ctl("health", env=bad)
        self.assertEqual(r.returncode, 2)
        self.assertIn("IPAM_PORT=77x", r.stderr)
        self.assertEqual(self.ctl("health", "--help", env=bad).returncode, 0)
        r = self.ctl("health", "--target", self.target, env=bad)
        self.assertEqual((r.returncode, r.stdout), (0, "SERVING\n"), r.stderr)

    def test_unreachable_target(self):
        r = self.ctl("health", "--target", "127.0.0.1:1", "--timeout", "2s")
        self.assertEqual(r.returncode, 1)
        self.assertIn("UNAVAILABLE", r.stderr)


if __name__ == "__main__":
    unittest.main()
