"""Integration tests of the NSP watcher worker (meridio-ipam-nsp) alone.

The real binary runs as the supervisor would start it: $IPAMD_RUNDIR names
a temporary runtime directory whose db.sock is served by a fake db worker in
this process (frames: 4-byte big-endian length + ipamd.v1 protobuf), fd 3 is
a socketpair whose other end this test reads (WorkerStatus frames), and the
NSP service is fakensp.py on a free loopback port. Every wait is bounded.
"""

import json
import os
import re
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import unittest
from concurrent import futures

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(os.path.dirname(_HERE))
BIN_DIR = os.environ.get("IPAM_BIN_DIR") or os.path.join(_REPO, "build", "bin")
PYGEN = os.environ.get("IPAM_PYGEN") or os.path.join(_REPO, "build", "pygen")
TEST_TMP = os.environ.get("IPAM_TEST_TMP") or tempfile.gettempdir()
for _p in (PYGEN, _HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import grpc  # noqa: E402
import fakensp  # noqa: E402
from ipamd.v1 import ipamd_pb2  # noqa: E402
from nsp.v1 import model_pb2  # noqa: E402

NSP_BIN = os.path.join(BIN_DIR, "meridio-ipam-nsp")
TIMEOUT = 10.0          # generous bound for anything that should be quick


def _recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_frame(sock):
    """One frame's payload, or None on EOF."""
    hdr = _recv_exact(sock, 4)
    if hdr is None:
        return None
    (length,) = struct.unpack(">I", hdr)
    if length > (1 << 20):
        raise ValueError("oversized frame: %d" % length)
    return _recv_exact(sock, length) if length else b""


def write_frame(sock, payload):
    sock.sendall(struct.pack(">I", len(payload)) + payload)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeDb:
    """The db worker's side of db.sock: answers Hello and SyncConduits,
    records what it got, keeps the resulting conduit list, and can refuse
    or drop requests on demand."""

    def __init__(self, path):
        self.path = path
        self.cond = threading.Condition()
        self.hellos = []        # roles of the Hellos received
        self.syncs = []         # (add list, remove list) per SyncConduits
        self.conduits = []      # the db's conduits after the syncs, in order
        self.fail_codes = []    # codes to answer to the next syncs
        self.drop_syncs = 0     # next syncs: close the connection instead
        self.bad = []           # anything unexpected
        self._conns = []
        self._stop = False
        self._lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._lsock.bind(path)
        self._lsock.listen(8)
        self._lsock.settimeout(0.1)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self._lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.cond:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,),
                             daemon=True).start()

    def _serve(self, conn):
        first = True
        try:
            while True:
                data = read_frame(conn)
                if data is None:
                    return
                req = ipamd_pb2.Request()
                req.ParseFromString(data)
                body = req.WhichOneof("body")
                rep = ipamd_pb2.Reply(id=req.id, code=0)
                with self.cond:
                    if first and body != "hello":
                        self.bad.append("first request is %s" % body)
                    first = False
                    if body == "hello":
                        self.hellos.append(req.hello.role)
                    elif body == "sync_conduits":
                        add = list(req.sync_conduits.add)
                        rem = list(req.sync_conduits.remove)
                        self.syncs.append((add, rem))
                        if self.drop_syncs > 0:
                            self.drop_syncs -= 1
                            self.cond.notify_all()
                            conn.close()
                            return
                        if self.fail_codes:
                            rep.code = self.fail_codes.pop(0)
                            rep.message = "injected failure"
                        else:
                            self._apply(add, rem)
                    else:
                        self.bad.append("unexpected request %s" % body)
                        rep.code = 12
                    self.cond.notify_all()
                write_frame(conn, rep.SerializeToString())
        except OSError:
            return
        finally:
            conn.close()

    def _apply(self, add, rem):
        self.conduits = [c for c in self.conduits if c not in rem]
        for c in add:
            if c not in self.conduits:
                self.conduits.append(c)

    def wait_syncs(self, n, timeout=TIMEOUT):
        """Waits for at least n SyncConduits; returns them all."""
        with self.cond:
            self.cond.wait_for(lambda: len(self.syncs) >= n, timeout)
            return list(self.syncs)

    def wait_hellos(self, n, timeout=TIMEOUT):
        with self.cond:
            self.cond.wait_for(lambda: len(self.hellos) >= n, timeout)
            return list(self.hellos)

    def close_connections(self):
        """Drops every open connection, as a restarting db worker would."""
        with self.cond:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self._stop = True
        self.close_connections()
        self._lsock.close()
        self._thread.join(2)


class Worker:
    """meridio-ipam-nsp started like the supervisor does: fd 3 is our
    socketpair, stderr goes to a log file."""

    def __init__(self, rundir, env, binary=NSP_BIN, argv=None):
        self.log_path = os.path.join(rundir, "nsp.log")
        ours, theirs = socket.socketpair()
        self.status_sock = ours
        self.cond = threading.Condition()
        self.statuses = []      # (time, ready, status) per WorkerStatus
        self.status_eof = False
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "IPAMD_RUNDIR": rundir,
                    "IPAM_LOG_LEVEL": "DEBUG",
                    "IPAM_GRPC_MAX_BACKOFF": "1s",
                    "IPAM_DATA_SOURCE": os.path.join(rundir, "registry.db")}
        full_env.update(env)
        logfd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                        0o600)
        nullfd = os.open(os.devnull, os.O_RDONLY)
        try:
            fa = [(os.POSIX_SPAWN_DUP2, nullfd, 0),
                  (os.POSIX_SPAWN_DUP2, logfd, 1),
                  (os.POSIX_SPAWN_DUP2, logfd, 2),
                  (os.POSIX_SPAWN_DUP2, theirs.fileno(), 3)]
            assert theirs.fileno() > 3
            self.pid = os.posix_spawn(binary, argv or [binary], full_env,
                                      file_actions=fa)
        finally:
            os.close(logfd)
            os.close(nullfd)
            theirs.close()
        self.returncode = None
        self._reader = threading.Thread(target=self._read_status, daemon=True)
        self._reader.start()

    def _read_status(self):
        try:
            while True:
                data = read_frame(self.status_sock)
                if data is None:
                    break
                st = ipamd_pb2.WorkerStatus()
                st.ParseFromString(data)
                with self.cond:
                    self.statuses.append((time.monotonic(), st.ready,
                                          st.status))
                    self.cond.notify_all()
        except (OSError, ValueError):
            pass
        with self.cond:
            self.status_eof = True
            self.cond.notify_all()

    def wait_status(self, pred, timeout=TIMEOUT):
        """Waits for a WorkerStatus matching pred(ready, status); returns
        it or None."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for _, ready, status in self.statuses:
                    if pred(ready, status):
                        return (ready, status)
                left = deadline - time.monotonic()
                if left <= 0 or self.status_eof:
                    return None
                self.cond.wait(left)

    def last_status(self):
        with self.cond:
            return self.statuses[-1] if self.statuses else None

    def poll(self):
        if self.returncode is None:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid != 0:
                self.returncode = os.waitstatus_to_exitcode(st)
        return self.returncode

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.returncode

    def kill(self):
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.wait(5)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return "(no log)"


class NspWorkerTest(unittest.TestCase):

    def setUp(self):
        os.makedirs(TEST_TMP, exist_ok=True)
        self.rundir = tempfile.mkdtemp(prefix="nsp-it-", dir=TEST_TMP)
        self.db = FakeDb(os.path.join(self.rundir, "db.sock"))
        self.nsp = None
        self.worker = None

    def tearDown(self):
        if self.worker is not None:
            self.worker.kill()
            self.worker.status_sock.close()
        if self.nsp is not None:
            self.nsp.stop()
        self.db.stop()
        shutil.rmtree(self.rundir, ignore_errors=True)

    # -- helpers ----------------------------------------------------------

    def start_nsp(self, conduits, port=0):
        self.nsp = fakensp.FakeNsp()
        self.nsp.set_conduits(conduits)
        return self.nsp.start(port)

    def start_worker(self, binary=NSP_BIN, argv=None, **env):
        self.worker = Worker(self.rundir, env, binary, argv)
        return self.worker

    def start_watching(self, conduits, trench="default"):
        port = self.start_nsp(conduits)
        self.start_worker(IPAM_NSP_SERVICE="127.0.0.1:%d" % port,
                          IPAM_TRENCH_NAME=trench)
        return port

    def fail_with_log(self, what):
        self.fail("%s\n--- worker log ---\n%s\n--- db: syncs=%r bad=%r"
                  % (what, self.worker.log() if self.worker else "",
                     self.db.syncs, self.db.bad))

    def expect_syncs(self, n):
        syncs = self.db.wait_syncs(n)
        if len(syncs) < n:
            self.fail_with_log("expected %d SyncConduits, got %d"
                               % (n, len(syncs)))
        return syncs

    def expect_status(self, pred, what, timeout=TIMEOUT):
        st = self.worker.wait_status(pred, timeout)
        if st is None:
            self.fail_with_log("no status: %s (last %r)"
                               % (what, self.worker.last_status()))
        return st

    def assert_no_more_syncs(self, n, wait=1.0):
        time.sleep(wait)
        with self.db.cond:
            if len(self.db.syncs) != n:
                self.fail_with_log("expected exactly %d syncs" % n)

    # -- tests ------------------------------------------------------------

    def test_add_remove_readd(self):
        port = self.start_watching(["conduit-a", "conduit-b"])
        self.assertEqual(self.expect_syncs(1)[0],
                         (["conduit-a", "conduit-b"], []))
        self.expect_status(
            lambda r, s: r and s == "nsp: watching 127.0.0.1:%d, 2 conduits"
            % port, "ready and watching")
        self.assertEqual(self.db.hellos, [ipamd_pb2.ROLE_NSP])

        self.nsp.set_conduits(["conduit-a", "conduit-c", "conduit-b"])
        self.assertEqual(self.expect_syncs(2)[1],
                         (["conduit-a", "conduit-c", "conduit-b"], []))
        self.nsp.set_conduits(["conduit-c"])
        self.assertEqual(self.expect_syncs(3)[2],
                         (["conduit-c"], ["conduit-a", "conduit-b"]))
        self.nsp.set_conduits(["conduit-b", "conduit-c"])
        self.assertEqual(self.expect_syncs(4)[3],
                         (["conduit-b", "conduit-c"], []))
        self.nsp.set_conduits(["conduit-c"])
        self.assertEqual(self.expect_syncs(5)[4],
                         (["conduit-c"], ["conduit-b"]))
        self.assertEqual(self.db.conduits, ["conduit-c"])
        self.assertEqual(self.db.bad, [])

    def test_partial_first_list_deletes_nothing(self):
        # The db already holds conduit-x and conduit-y from an earlier run;
        # NSP's first list names only conduit-x, then nothing at all.
        self.db.conduits = ["conduit-x", "conduit-y"]
        self.start_watching(["conduit-x"])
        self.assertEqual(self.expect_syncs(1)[0], (["conduit-x"], []))
        self.nsp.set_conduits([])
        self.assertEqual(self.expect_syncs(2)[1], ([], ["conduit-x"]))
        self.assertEqual(self.db.conduits, ["conduit-y"])

    def test_empty_first_list_deletes_nothing(self):
        self.db.conduits = ["conduit-x"]
        self.start_watching([])
        self.assertEqual(self.expect_syncs(1)[0], ([], []))
        self.expect_status(lambda r, s: r, "ready")
        self.assertEqual(self.db.conduits, ["conduit-x"])

    def test_duplicates_and_bad_names_filtered(self):
        long_name = "x" * 254
        self.start_watching(["a", "", "b", "a", long_name, "y" * 253])
        self.assertEqual(self.expect_syncs(1)[0], (["a", "b", "y" * 253], []))

    def test_trench_name_in_request_other_trenches_ignored(self):
        self.start_watching([("conduit-a", "red"), ("conduit-b", "blue"),
                             "conduit-c"], trench="red")
        self.assertEqual(self.expect_syncs(1)[0],
                         (["conduit-a", "conduit-c"], []))
        self.assertEqual(self.nsp.request_trenches(), ["red"])
        req = self.nsp.requests()[0]
        self.assertEqual(req.name, "")
        self.assertEqual(len(req.destinationPortNats), 0)

    def test_too_many_conduits_ignored(self):
        self.start_watching(["conduit-a"])
        self.expect_syncs(1)
        self.nsp.set_conduits(["c%d" % i for i in range(4097)])
        deadline = time.monotonic() + TIMEOUT
        while ("conduit list too long" not in self.worker.log()
               and time.monotonic() < deadline):
            time.sleep(0.05)
        self.nsp.set_conduits(["conduit-b"])
        syncs = self.expect_syncs(2)
        self.assertEqual(syncs[1], (["conduit-b"], ["conduit-a"]))
        self.assert_no_more_syncs(2, wait=0.5)
        self.assertIn("conduit list too long", self.worker.log())

    def test_nsp_restart_reconnects_and_resyncs(self):
        port = self.start_watching(["conduit-a", "conduit-b"])
        self.expect_syncs(1)
        self.expect_status(lambda r, s: r and "watching" in s, "watching")

        log_before = len(self.worker.log())
        self.nsp.stop()
        self.expect_status(
            lambda r, s: s.startswith("nsp: NSP 127.0.0.1:%d unreachable, "
                                      "retry in " % port), "unreachable")
        # Still ready: readiness never depends on NSP being up.
        self.assertTrue(self.worker.last_status()[1])
        self.assertEqual(len(self.db.syncs), 1)

        restarted = fakensp.FakeNsp()
        restarted.set_conduits(["conduit-a", "conduit-c"])
        self.assertEqual(restarted.start(port), port)
        self.nsp = restarted
        syncs = self.expect_syncs(2)
        self.assertEqual(syncs[1], (["conduit-a", "conduit-c"],
                                    ["conduit-b"]))
        self.expect_status(
            lambda r, s: s == "nsp: watching 127.0.0.1:%d, 2 conduits" % port,
            "watching again")
        self.assertEqual(self.db.conduits, ["conduit-a", "conduit-c"])
        self.assertEqual(self.nsp.request_trenches(), ["default"])
        warnings = [l for l in self.worker.log()[log_before:].splitlines()
                    if '"NSP watch failed"' in l and '"warning"' in l]
        self.assertEqual(len(warnings), 1, warnings)

    def test_ready_without_nsp(self):
        port = free_port()      # nothing listens there
        t0 = time.monotonic()
        self.start_worker(IPAM_NSP_SERVICE="127.0.0.1:%d" % port)
        self.expect_status(lambda r, s: r, "ready without NSP", timeout=6)
        self.assertGreaterEqual(time.monotonic() - t0, 1.5)
        self.expect_status(
            lambda r, s: s.startswith("nsp: NSP 127.0.0.1:%d unreachable" % port),
            "unreachable")
        self.assertEqual(self.db.syncs, [])

    def test_backoff_doubles_from_100ms_to_cap(self):
        port = free_port()
        self.start_worker(IPAM_NSP_SERVICE="127.0.0.1:%d" % port,
                          IPAM_GRPC_MAX_BACKOFF="1s")
        want = ["100ms", "200ms", "400ms", "800ms", "1000ms", "1000ms"]
        deadline = time.monotonic() + TIMEOUT
        delays = []
        while time.monotonic() < deadline:
            delays = [json.loads(l)["extra_data"].get("retry_in")
                      for l in self.worker.log().splitlines()
                      if '"NSP watch failed"' in l]
            if len(delays) >= len(want):
                break
            time.sleep(0.1)
        self.assertEqual(delays[:len(want)], want)
        self.expect_status(lambda r, s: s == "nsp: NSP 127.0.0.1:%d "
                           "unreachable, retry in 1s" % port,
                           "capped retry in the status")

    def test_malformed_message_ignored_stream_kept(self):
        good = model_pb2.ConduitResponse(
            conduits=[model_pb2.Conduit(name="conduit-a")]).SerializeToString()

        def watch(request, context):
            yield b"\x0a\xff\xff\xff"     # field 1, length past the end
            yield good
            while context.is_active():
                time.sleep(0.05)

        handler = grpc.method_handlers_generic_handler(
            "nsp.v1.ConfigurationManager",
            {"WatchConduit": grpc.unary_stream_rpc_method_handler(
                watch, request_deserializer=None,
                response_serializer=None)})
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            self.start_worker(IPAM_NSP_SERVICE="127.0.0.1:%d" % port)
            self.assertEqual(self.expect_syncs(1)[0], (["conduit-a"], []))
            self.assertIn("malformed ConduitResponse", self.worker.log())
            failures = [l for l in self.worker.log().splitlines()
                        if '"NSP watch failed"' in l]
            self.assertEqual(failures, [], "the stream was kept")
        finally:
            server.stop(None).wait(5)

    def expect_no_nsp_exit(self):
        """The worker exits 78 (permanent) with one error line and sends
        nothing: without an NSP service it has nothing to do."""
        rc = self.worker.wait(TIMEOUT)
        if rc != 78:
            self.fail_with_log("exit status %r, not 78" % rc)
        lines = [json.loads(l) for l in self.worker.log().splitlines()]
        errors = [l for l in lines if l.get("severity") in ("error", "critical")]
        self.assertEqual(len(errors), 1, errors)
        self.assertIn("no NSP service", errors[0]["message"])
        self.assertEqual(self.db.syncs, [])

    def test_without_nsp_service_exits_78(self):
        """Static conduits are the db worker's: the supervisor does not
        start this worker, and one started by hand without NSP stops."""
        self.start_worker(IPAM_NSP_SERVICE="", IPAM_CONDUITS="conduit-a")
        self.expect_no_nsp_exit()

    def test_conduits_select_static_over_nsp_service(self):
        """IPAM_CONDUITS set: no NSP, even with IPAM_NSP_SERVICE set
        (Meridio's chart always sets it)."""
        self.start_worker(IPAM_NSP_SERVICE="127.0.0.1:%d" % free_port(),
                          IPAM_CONDUITS="conduit-a")
        self.expect_no_nsp_exit()

    def test_nsp_service_defaults_to_meridios(self):
        """Neither IPAM_NSP_SERVICE nor IPAM_CONDUITS: the worker watches
        Meridio's default NSP, nsp-service:7778."""
        self.start_worker()
        self.expect_status(lambda r, s: "nsp-service:7778" in s, "NSP mode on the default")

    def test_worker_runs_inside_the_unit_sandbox(self):
        """The worker with its gRPC client does nothing the systemd unit
        forbids: every system call is in its SystemCallFilter, and under
        MemoryDenyWriteExecute no mapping is writable and executable and
        none is made executable after the fact (mprotect with PROT_EXEC is
        refused there). The worker runs under strace, NSP configured."""
        import test_deploy_systemd as unit     # the unit's filter, expanded
        allowed = unit.unit_filter()
        self.assertIn("openat", allowed)
        trace = os.path.join(self.rundir, "strace.log")
        port = self.start_nsp(["conduit-a"])
        # In a sanitized build, LeakSanitizer cannot run under ptrace (it
        # reports a fatal error instead of leaks): off for this run only.
        self.start_worker(binary=shutil.which("strace"),
                          argv=["strace", "-f", "-qq", "-s", "256", "-o", trace,
                                NSP_BIN],
                          IPAM_NSP_SERVICE="127.0.0.1:%d" % port,
                          ASAN_OPTIONS="detect_leaks=0")
        self.assertEqual(self.expect_syncs(1)[0], (["conduit-a"], []))
        # Supervisor gone: the worker exits, strace with it.
        self.worker.status_sock.shutdown(socket.SHUT_RDWR)
        if self.worker.wait(TIMEOUT) is None:
            self.fail_with_log("still running after fd 3 EOF")
        calls, wx = set(), []
        with open(trace, errors="replace") as f:
            for line in f:
                m = re.match(r"^\d+\s+([a-z0-9_]+)\((.*)", line)
                if not m:
                    continue
                name, rest = m.groups()
                calls.add(name)
                if name in ("mmap", "mprotect", "pkey_mprotect") and \
                        "PROT_WRITE" in rest and "PROT_EXEC" in rest:
                    wx.append(line)
                if name in ("mprotect", "pkey_mprotect") and "PROT_EXEC" in rest:
                    wx.append(line)
        self.assertIn("connect", calls, "the trace shows no connection")
        self.assertEqual(wx, [], "memory made executable")
        self.assertEqual(sorted(calls - allowed), [],
                         "system calls the unit's filter refuses")

    def test_db_restart_resends_list(self):
        self.start_watching(["conduit-a", "conduit-b"])
        self.expect_syncs(1)
        self.nsp.set_conduits(["conduit-b"])
        self.expect_syncs(2)
        self.db.close_connections()
        self.assertEqual(len(self.db.wait_hellos(2)), 2)
        syncs = self.expect_syncs(3)
        self.assertEqual(syncs[2][0], ["conduit-b"])
        self.assertEqual(self.db.bad, [])

    def test_db_absent_at_start_retried(self):
        path = self.db.path
        self.db.stop()
        os.unlink(path)
        self.start_watching(["conduit-a"])
        time.sleep(0.6)         # several 100 ms connect attempts fail
        self.assertIsNone(self.worker.poll())
        self.expect_status(lambda r, s: not r and "waiting for the db" in s,
                           "not ready without the db")
        self.db = FakeDb(path)
        self.assertEqual(self.expect_syncs(1)[0], (["conduit-a"], []))
        self.expect_status(lambda r, s: r, "ready once the db answers")
        failures = [l for l in self.worker.log().splitlines()
                    if "cannot connect to db" in l]
        self.assertEqual(len(failures), 1, "logged once per outage")

    def test_lost_request_resent_with_removal(self):
        self.start_watching(["conduit-a", "conduit-b"])
        self.expect_syncs(1)
        self.db.drop_syncs = 1          # the removal never reaches the db
        self.nsp.set_conduits(["conduit-a"])
        syncs = self.expect_syncs(3)
        self.assertEqual(syncs[1], (["conduit-a"], ["conduit-b"]))
        self.assertEqual(syncs[2], (["conduit-a"], ["conduit-b"]))
        self.assertEqual(self.db.conduits, ["conduit-a"])

    def test_error_reply_retried_before_next_list(self):
        self.db.fail_codes = [13, 13]
        self.start_watching(["conduit-a"])
        syncs = self.expect_syncs(3)
        self.assertEqual(syncs, [(["conduit-a"], [])] * 3)
        self.assertEqual(self.db.conduits, ["conduit-a"])
        self.nsp.set_conduits(["conduit-b"])
        self.assertEqual(self.expect_syncs(4)[3],
                         (["conduit-b"], ["conduit-a"]))

    def test_heartbeat_every_second(self):
        self.start_watching(["conduit-a"])
        self.expect_status(lambda r, s: r, "ready")
        time.sleep(3.2)
        with self.worker.cond:
            times = [t for t, _, _ in self.worker.statuses]
        recent = [t for t in times if t >= times[-1] - 3.0]
        self.assertGreaterEqual(len(recent), 3, times)
        gaps = [b - a for a, b in zip(times, times[1:])]
        self.assertLess(max(gaps), 1.8, gaps)

    def test_sigterm_exits_zero_quickly(self):
        self.start_watching(["conduit-a"])
        self.expect_syncs(1)
        t0 = time.monotonic()
        os.kill(self.worker.pid, signal.SIGTERM)
        rc = self.worker.wait(5)
        elapsed = time.monotonic() - t0
        if rc != 0:
            self.fail_with_log("exit status %r" % rc)
        self.assertLess(elapsed, 1.0)

    def test_sigterm_while_nsp_down(self):
        self.start_worker(IPAM_NSP_SERVICE="127.0.0.1:%d" % free_port())
        self.expect_status(lambda r, s: " unreachable, retry in " in s,
                           "unreachable")
        t0 = time.monotonic()
        os.kill(self.worker.pid, signal.SIGTERM)
        rc = self.worker.wait(5)
        if rc != 0:
            self.fail_with_log("exit status %r" % rc)
        self.assertLess(time.monotonic() - t0, 1.0)

    def test_supervisor_gone_exits(self):
        self.start_watching(["conduit-a"])
        self.expect_syncs(1)
        self.worker.status_sock.shutdown(socket.SHUT_RDWR)
        rc = self.worker.wait(5)
        if rc is None:
            self.fail_with_log("still running after fd 3 EOF")


if __name__ == "__main__":
    unittest.main()
