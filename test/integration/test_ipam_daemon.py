"""The daemon as a set of processes: health, orderly stop, restarts,
workers killed with SIGKILL, and the NSP conduit watch (fake NSP)."""

import json
import os
import shutil
import signal
import stat
import socket
import threading
import time
import unittest
from concurrent import futures

import grpc

import harness
from harness import V4, V6, DaemonTest, RpcError

import health_pb2

SC = grpc.StatusCode


def allocate_many(client, names=5):
    """A spread of allocations over conduits, nodes and families:
    {(conduit, node, name, family): (address, length)}."""
    out = {}
    for conduit in ("conduit-a", "conduit-b"):
        for node in ("worker-1", "worker-2"):
            for fam in (V4, V6):
                for i in range(names):
                    k = (conduit, node, "pod-%d" % i, fam)
                    out[k] = client.allocate(*k)
    return out


def port_free(port):
    """True when nothing listens on port. SO_REUSEADDR, as a daemon would
    use it: connections in TIME_WAIT do not count as taken."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Health(DaemonTest):

    def test_health_names(self):
        d = self.daemon()
        for name in ("", "ipam.v1.Ipam", "Liveness", "Readiness", "Startup"):
            self.assertEqual(d.client.health(name), "SERVING", name)
        # Unknown names: the standard NOT_FOUND status, or SERVICE_UNKNOWN.
        for name in ("nope", "ipam.v1.Nope"):
            try:
                st = d.client.health(name)
            except RpcError as e:
                self.assertEqual(e.code, SC.NOT_FOUND, e.details)
            else:
                self.assertEqual(st, "SERVICE_UNKNOWN", name)

    def test_health_watch(self):
        d = self.daemon()
        it = d.client.health_stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=5)
        first = next(it)
        self.assertEqual(first.status, health_pb2.HealthCheckResponse.SERVING)
        it.cancel()
        it = d.client.health_stub.Watch(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
        self.assertEqual(next(it).status, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
        it.cancel()

    def test_not_serving_while_db_worker_does_not_answer(self):
        d = self.daemon()
        # A Watch stream sees the same transitions as Check. Its own
        # channel: wait_serving() replaces d.client.
        wc = harness.Client(d.target)
        self.addCleanup(wc.close)
        watch = wc.health_stub.Watch(health_pb2.HealthCheckRequest(service="Readiness"),
                                     timeout=60)
        seen = []

        def follow():
            try:
                for m in watch:
                    seen.append(health_pb2.HealthCheckResponse.ServingStatus.Name(m.status))
            except grpc.RpcError:
                pass

        t = threading.Thread(target=follow)
        t.start()
        self.addCleanup(t.join, 10)
        self.addCleanup(watch.cancel)
        harness.poll(lambda: seen[:1] == ["SERVING"], 5, 0.05, "first Watch message")
        db = d.wait_worker("db")
        os.kill(db, signal.SIGSTOP)
        try:
            harness.poll(lambda: d.client.health("", timeout=3.0) == "NOT_SERVING",
                         15, 0.1, "health NOT_SERVING with the db worker stopped")
            # Kept stopped until the stream has said so too (a status that
            # flips back at once may be coalesced by a Watch).
            harness.poll(lambda: "NOT_SERVING" in seen, 10, 0.05,
                         lambda: "Watch to report NOT_SERVING (saw %s)" % seen)
        finally:
            try:
                os.kill(db, signal.SIGCONT)
            except ProcessLookupError:
                pass
        d.wait_serving(30)
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "p"), ("169.255.0.1", 24))
        harness.poll(lambda: seen[-1:] == ["SERVING"], 10, 0.05,
                     lambda: "Watch to report SERVING again (saw %s)" % seen)


class Lifecycle(DaemonTest):

    def stop_cleanly(self, d, sig=signal.SIGTERM):
        workers = d.workers()
        self.assertEqual(set(workers), d.roles(), "workers: %s" % workers)
        rc, took = d.stop(sig)
        self.assertEqual(rc, 0, "exit code after %s" % sig.name)
        self.assertLess(took, 5.0, "stop took %.2fs" % took)
        # The supervisor has exited; its workers must be gone at once
        # (a short grace for the kernel to finish reaping them).
        deadline = time.monotonic() + 1.0
        while d.leftovers() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(d.leftovers(), [], "processes left after stop")
        self.assertTrue(port_free(d.port), "port still taken")

    def test_sigterm_exits_zero_within_5s(self):
        d = self.daemon()
        d.client.allocate("conduit-a", "worker-1", "p")
        self.stop_cleanly(d, signal.SIGTERM)

    def test_sigint_exits_zero(self):
        d = self.daemon()
        self.stop_cleanly(d, signal.SIGINT)

    def test_ctrl_c_on_a_terminal_stops_in_order(self):
        """Ctrl-C on the terminal of `make run`: the tty sends SIGINT to the
        whole foreground process group, workers included. Only the
        supervisor may act on it (the documented orderly stop: api drains,
        then the db worker closes), so: exit 0 and not one warning."""
        import pty
        d = self.daemon(start=False)
        pid, fd = pty.fork()
        if pid == 0:  # the child: session leader on the new terminal
            try:
                os.execve(d.bin, [d.bin], d.env)
            finally:
                os._exit(127)
        out = []

        def reader():
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    return
                if not data:
                    return
                out.append(data)
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        try:
            harness.poll(lambda: b"worker ready" in b"".join(out) and
                         harness.Client(d.target).health() == "SERVING",
                         harness.START_TIMEOUT, 0.2, "the daemon on a pty to serve")
            c = harness.Client(d.target)
            self.addCleanup(c.close)
            self.assertEqual(c.allocate("conduit-a", "worker-1", "tty"),
                             ("169.255.0.1", 24))
            os.write(fd, b"\x03")  # ^C: the line discipline sends SIGINT
            _, status = os.waitpid(pid, 0)
            pid = None
        finally:
            if pid is not None:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        t.join(5)
        os.close(fd)
        text = b"".join(out).decode("utf-8", "replace")
        self.assertTrue(os.WIFEXITED(status), "killed by a signal:\n" + text)
        self.assertEqual(os.WEXITSTATUS(status), 0, text)
        warnings = [l for l in text.splitlines()
                    if '"level":"warning"' in l or '"level":"error"' in l
                    or '"severity":"warning"' in l or '"severity":"error"' in l]
        self.assertEqual(warnings, [], "warnings on Ctrl-C:\n" + text)
        self.assertIn("SIGINT", text)

    def test_sigterm_under_load_drains_and_keeps_acknowledged(self):
        d = self.daemon()
        acked = {}
        codes = set()
        stop = threading.Event()

        def load(k):
            i = 0
            while not stop.is_set():
                name = "t%d-%d" % (k, i)
                i += 1
                try:
                    acked[name] = d.client.allocate("conduit-a", "w%d" % k, name, timeout=5)
                except RpcError as e:
                    codes.add(e.code)
                    stop.wait(0.02)

        ts = [threading.Thread(target=load, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        try:
            harness.poll(lambda: len(acked) >= 40, 20, 0.05, "allocations under way")
            rc, took = d.stop()
        finally:
            stop.set()
            for t in ts:
                t.join(15)
        self.assertEqual(rc, 0)
        self.assertLess(took, 5.0)
        self.assertLessEqual(codes, {SC.UNAVAILABLE, SC.CANCELLED, SC.DEADLINE_EXCEEDED})
        d.start()
        for name, v in acked.items():
            k = int(name[1:].split("-")[0])
            self.assertEqual(d.client.allocate("conduit-a", "w%d" % k, name), v, name)
        self.assertSound(d.rows())

    def test_restart_keeps_every_allocation(self):
        d = self.daemon()
        before = allocate_many(d.client)
        rows_before = harness.structural(d.rows())
        self.stop_cleanly(d)
        d.start()
        for k, v in before.items():
            self.assertEqual(d.client.allocate(*k), v, k)
        self.assertEqual(harness.structural(d.rows()), rows_before)
        # New children continue first-fit after the kept ones.
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "new"), ("169.255.0.6", 24))
        self.assertEqual(d.client.allocate("conduit-b", "worker-2", "new", V6),
                         ("fd00:0:0:101::6", 64))
        self.assertSound(d.rows())

    def test_workers_die_with_the_supervisor(self):
        d = self.daemon()
        workers = d.workers()
        self.assertEqual(set(workers), d.roles())
        os.kill(d.proc.pid, signal.SIGKILL)
        d.proc.wait(5)
        harness.poll(lambda: not any(harness.pid_alive(p) for p in workers.values()),
                     5, 0.05, "workers to exit after the supervisor died")
        harness.poll(lambda: port_free(d.port), 5, 0.05, "port to be released")
        # The lock is released too: a new instance starts on the same data.
        d.start()
        self.assertEqual(d.client.health(), "SERVING")

    def test_second_instance_on_same_data_is_refused(self):
        d = self.daemon()
        d.client.allocate("conduit-a", "worker-1", "p")
        other = self.daemon(data_dir=d.dir, start=False)
        other.log_path = os.path.join(d.dir, "stderr-second.log")
        other.start(wait=False)
        harness.poll(lambda: other.proc.poll() is not None, 20, 0.1,
                     "second instance to exit")
        self.assertNotEqual(other.proc.returncode, 0)
        self.assertEqual(other.leftovers(), [], "second instance left processes")
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "p"), ("169.255.0.1", 24))
        self.assertEqual(d.client.health(), "SERVING")

    def test_second_instance_on_same_port_is_refused(self):
        """Another data file, the same IPAM_PORT: the second bind must fail
        (gRPC turns SO_REUSEPORT on by default, and the kernel would then
        split clients between two daemons that hand out the same
        addresses). The second instance stops at once with one line naming
        IPAM_PORT and the process that holds it; every name keeps a
        distinct address."""
        d = self.daemon()
        other = self.daemon(port=d.port, start=False)
        started = time.monotonic()
        other.start(wait=False)
        harness.poll(lambda: other.proc.poll() is not None, 20, 0.1,
                     "second instance to exit")
        self.assertNotEqual(other.proc.returncode, 0)
        self.assertLess(time.monotonic() - started, 5.0,
                        "a taken port is permanent: no restart loop")
        self.assertEqual(other.leftovers(), [], "second instance left processes")
        log = other.log_text()
        lines = [json.loads(l) for l in log.splitlines() if l.startswith("{")]
        named = [l for l in lines if "IPAM_PORT=%d" % d.port in json.dumps(l)]
        self.assertTrue(named, "no line names IPAM_PORT:\n" + log)
        api_pid = d.workers()["api"]
        self.assertIn("pid %d" % api_pid, json.dumps(named[0]),
                      "the holder is not named:\n" + log)
        self.assertLess(log.count("api worker died"), 1,
                        "restarted the api worker:\n" + log)
        # One listener: every client reaches the first instance.
        addrs = set()
        for i in range(20):
            c = harness.Client(d.target)
            try:
                addrs.add(c.allocate("conduit-a", "worker-1", "pod-%d" % i))
            finally:
                c.close()
        self.assertEqual(len(addrs), 20, "duplicate addresses: %s" % addrs)

    def test_port_taken_by_another_program(self):
        """A port held by something else: one line naming IPAM_PORT and
        exit at once, not a crash loop."""
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::", 0))
        s.listen(1)
        port = s.getsockname()[1]
        try:
            other = self.daemon(port=port, start=False)
            started = time.monotonic()
            other.start(wait=False)
            harness.poll(lambda: other.proc.poll() is not None, 20, 0.1,
                         "daemon to exit")
            self.assertNotEqual(other.proc.returncode, 0)
            self.assertLess(time.monotonic() - started, 5.0)
            log = other.log_text()
            self.assertIn("IPAM_PORT=%d" % port, log)
            self.assertIn("address already in use", log)
            self.assertIn("pid %d" % os.getpid(), log)
        finally:
            s.close()


class Process(DaemonTest):
    """What the daemon shows the outside: its runtime directory, its logs
    and its messages to systemd."""

    def test_private_runtime_dir(self):
        d = self.daemon()
        socks = []
        for root, _dirs, files in (w for r in d.socket_roots() for w in os.walk(r)):
            for f in files:
                p = os.path.join(root, f)
                if stat.S_ISSOCK(os.lstat(p).st_mode):
                    socks.append(p)
        self.assertTrue(socks, "no internal socket under %s" % d.socket_roots())
        for p in socks:
            mode = stat.S_IMODE(os.stat(os.path.dirname(p)).st_mode)
            self.assertEqual(mode, 0o700, "%s: mode %o" % (os.path.dirname(p), mode))

    def test_logs_are_json_lines_filtered_by_level(self):
        d = self.daemon(env={"IPAM_LOG_LEVEL": "INFO"})
        d.client.allocate("conduit-a", "worker-1", "p")
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        lines = [ln for ln in d.log_text().splitlines()
                 if ln and not ln.startswith("==== start")]
        self.assertTrue(lines, "no log lines")
        procs = set()
        for ln in lines:
            try:
                o = json.loads(ln)
            except ValueError:
                self.fail("not a JSON line: %r" % ln)
            # Meridio's keys (its pkg/log), the fields under extra_data.
            for k in ("timestamp", "severity", "service_id", "message", "version",
                      "extra_data"):
                self.assertIn(k, o, ln)
            self.assertEqual(o["service_id"], "Meridio-ipam", ln)
            self.assertIn(o["severity"], ("info", "warning", "error", "critical"), ln)
            procs.add(o["extra_data"]["process"])
        for role in ("db", "api", "supervisor"):
            self.assertTrue(any(role in p for p in procs), "no %s lines in %s" % (role, procs))

    def test_api_worker_returns_heap_after_a_burst_once_idle(self):
        # issue 5 (memory): after a burst of forwarded calls the api worker
        # gives its freed heap back (malloc_trim) once a whole second went
        # by without calls - once per burst, never while calls flow
        d = self.daemon()
        marker = "freed heap returned to the system"

        def trims():
            return d.log_text().count(marker)

        base = trims()
        deadline = time.monotonic() + 1.5
        n = 0
        while time.monotonic() < deadline:
            d.client.allocate("conduit-a", "worker-1", "burst-%d" % (n % 100))
            n += 1
        self.assertEqual(trims(), base, "trimmed while calls were flowing")
        harness.poll(lambda: trims() == base + 1, 5.0, what="a trim after the burst")
        time.sleep(2.5)
        self.assertEqual(trims(), base + 1, "trimmed again while idle")
        d.client.allocate("conduit-a", "worker-1", "burst-again")
        harness.poll(lambda: trims() == base + 2, 5.0,
                     what="a trim after the 2nd burst")

    def test_sd_notify_ready_status_watchdog(self):
        tmp = harness.make_tmpdir("ipam-notify-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "notify.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        s.bind(path)
        s.settimeout(0.1)
        self.daemon(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
        got = []
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                got.extend(s.recv(4096).decode(errors="replace").split("\n"))
            except socket.timeout:
                pass
            if "READY=1" in got and got.count("WATCHDOG=1") >= 3:
                break
        self.assertIn("READY=1", got)
        self.assertTrue([m for m in got if m.startswith("STATUS=")], "no STATUS= line")
        # Half of WATCHDOG_USEC: a ping every 0.5 s while all workers live.
        self.assertGreaterEqual(got.count("WATCHDOG=1"), 3, got)


class InternalSocket(DaemonTest):
    """The db worker's Unix socket: frames are a 4-byte big-endian length
    and a protobuf payload. Bad frames close that connection only."""

    def db_sock(self, d):
        for top in d.socket_roots():
            for root, _dirs, files in os.walk(top):
                if "db.sock" in files:
                    return os.path.join(root, "db.sock")
        self.fail("db.sock not found under %s" % d.socket_roots())

    def connect(self, path):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.settimeout(5.0)
        s.connect(path)
        return s

    def test_bad_frames_close_only_that_connection(self):
        from ipamd.v1 import ipamd_pb2 as pb
        d = self.daemon()
        d.client.allocate("conduit-a", "worker-1", "keep")
        db = d.workers()["db"]
        before = harness.structural(d.rows())
        path = self.db_sock(d)
        hello = pb.Request(id=1, hello=pb.Hello(role=pb.ROLE_API, pid=os.getpid()))
        alloc = pb.Request(id=2, allocate=pb.Allocate(child=pb.Child(
            trench="default", conduit="conduit-a", node="worker-1",
            family=pb.FAMILY_IPV4, name="sneaky")))
        bad = {
            "oversized length": b"\xff\xff\xff\xff" + b"x" * 16,
            "length above the cap": (2 << 20).to_bytes(4, "big"),
            "not protobuf": harness.ipc_frame(b"\xff\xff\xff"),
            "no hello first": harness.ipc_frame(alloc.SerializeToString()),
        }
        for what, data in bad.items():
            s = self.connect(path)
            s.sendall(data)
            try:
                got = harness.ipc_recv_frame(s)
            except socket.timeout:
                self.fail("%s: connection left open" % what)
            except ConnectionResetError:
                got = None
            if got is not None:
                r = pb.Reply.FromString(got)
                self.assertNotEqual(r.code, 0, "%s: answered OK" % what)
                self.assertIsNone(harness.ipc_recv_frame(s), "%s: connection left open" % what)
        self.assertEqual(d.workers().get("db"), db, "db worker died")
        self.assertEqual(harness.structural(d.rows()), before, "data changed")
        # A well-formed conversation still works on a new connection.
        s = self.connect(path)
        s.sendall(harness.ipc_frame(hello.SerializeToString()) + harness.ipc_frame(alloc.SerializeToString()))
        replies = {}
        while 2 not in replies:
            body = harness.ipc_recv_frame(s)
            self.assertIsNotNone(body, "db worker closed a good connection")
            r = pb.Reply.FromString(body)
            replies[r.id] = r
        self.assertEqual((replies[2].code, replies[2].address, replies[2].prefix_length),
                         (0, "169.255.0.2", 24))
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "sneaky"), ("169.255.0.2", 24))

    def converse(self, path, role, *requests):
        """Hello as role, then requests (ids from 2); {id: Reply}."""
        from ipamd.v1 import ipamd_pb2 as pb
        s = self.connect(path)
        data = harness.ipc_frame(pb.Request(id=1, hello=pb.Hello(
            role=role, pid=os.getpid())).SerializeToString())
        for i, r in enumerate(requests):
            r.id = i + 2
            data += harness.ipc_frame(r.SerializeToString())
        s.sendall(data)
        replies = {}
        while not all(i + 2 in replies for i in range(len(requests))):
            body = harness.ipc_recv_frame(s)
            self.assertIsNotNone(body, "db worker closed the connection")
            r = pb.Reply.FromString(body)
            replies[r.id] = r
        s.close()
        return replies

    def test_requests_outside_the_senders_role_are_refused(self):
        """Only the nsp worker may change the conduit list, only the api
        worker may allocate, the admin path reads and releases; a second
        Hello cannot change a role. Refused: PERMISSION_DENIED, logged,
        nothing changed, the connection still served."""
        from ipamd.v1 import ipamd_pb2 as pb
        d = self.daemon()
        d.client.allocate("conduit-a", "worker-1", "keep")
        db = d.workers()["db"]
        before = harness.structural(d.rows())
        path = self.db_sock(d)

        def sync():
            return pb.Request(sync_conduits=pb.SyncConduits(remove=["conduit-a"]))

        def alloc():
            return pb.Request(allocate=pb.Allocate(child=pb.Child(
                trench="default", conduit="conduit-a", node="worker-1",
                family=pb.FAMILY_IPV4, name="sneaky")))
        cases = [
            (pb.ROLE_CTL, sync(), "sync_conduits", "ROLE_CTL"),
            (pb.ROLE_CTL, alloc(), "allocate", "ROLE_CTL"),
            (pb.ROLE_API, sync(), "sync_conduits", "ROLE_API"),
            (pb.ROLE_API, pb.Request(dump=pb.Dump()), "dump", "ROLE_API"),
            (pb.ROLE_NSP, alloc(), "allocate", "ROLE_NSP"),
            (pb.ROLE_CTL, pb.Request(hello=pb.Hello(role=pb.ROLE_NSP)),
             "hello", "ROLE_CTL"),
        ]
        for role, req, what, rname in cases:
            r = self.converse(path, role, req, pb.Request(ping=pb.Ping()))
            self.assertEqual(r[2].code, grpc.StatusCode.PERMISSION_DENIED.value[0],
                             "%s as %s: %s" % (what, rname, r[2]))
            self.assertIn("%s is not allowed for role %s" % (what, rname), r[2].message)
            self.assertEqual(r[3].code, 0, "%s: the connection is not served after" % what)
        # A Hello without a role is no Hello: the next request closes.
        s = self.connect(path)
        s.sendall(harness.ipc_frame(pb.Request(id=1, hello=pb.Hello(
            role=pb.ROLE_UNKNOWN)).SerializeToString()) +
            harness.ipc_frame(pb.Request(id=2, release=pb.Release(child=pb.Child(
                trench="default", conduit="conduit-a", node="worker-1",
                family=pb.FAMILY_IPV4, name="keep"))).SerializeToString()))
        got = []
        try:
            while True:
                body = harness.ipc_recv_frame(s)
                if body is None:
                    break
                got.append(pb.Reply.FromString(body).id)
        except ConnectionResetError:
            pass
        self.assertNotIn(2, got, "a release without a role was answered")
        s.close()
        self.assertEqual(harness.structural(d.rows()), before, "data changed")
        self.assertEqual(d.workers().get("db"), db, "db worker died")
        log = d.log_text()
        self.assertIn("not allowed for the sender's role", log)
        # What each role may do still works.
        r = self.converse(path, pb.ROLE_CTL, pb.Request(release=pb.Release(child=pb.Child(
            trench="default", conduit="conduit-a", node="worker-1",
            family=pb.FAMILY_IPV4, name="keep"))))
        self.assertEqual(r[2].code, 0)
        r = self.converse(path, pb.ROLE_API, alloc())
        self.assertEqual((r[2].code, r[2].address), (0, "169.255.0.1"))
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "sneaky"),
                         ("169.255.0.1", 24))

    def test_name_limits_are_the_same_in_the_api_and_the_db_worker(self):
        """lib/bounds.h is the one place for the name limits: a name at the
        limit is served through the public API and on a raw ipamd frame;
        one byte over is INVALID_ARGUMENT from both and changes nothing."""
        import re
        from ipamd.v1 import ipamd_pb2 as pb
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "..", "..", "lib", "bounds.h")) as f:
            text = f.read()
        child_max = int(re.search(r"#define BOUNDS_CHILD_MAX (\d+)", text).group(1))
        label_max = int(re.search(r"#define BOUNDS_LABEL_MAX (\d+)", text).group(1))
        d = self.daemon()
        path = self.db_sock(d)

        def raw(conduit, node, name):
            r = self.converse(path, pb.ROLE_API, pb.Request(allocate=pb.Allocate(child=pb.Child(
                trench="default", conduit=conduit, node=node,
                family=pb.FAMILY_IPV4, name=name))))
            return r[2]

        # At the limit: accepted by both paths.
        self.assertEqual(d.client.allocate("conduit-a", "n" * label_max, "c" * child_max)[1], 24)
        self.assertEqual(raw("conduit-a", "m" * label_max, "d" * child_max).code, 0)
        before = harness.structural(d.rows())
        over = {
            "child name": ("conduit-a", "worker-1", "x" * (child_max + 1)),
            "node name": ("conduit-a", "y" * (label_max + 1), "pod"),
            "conduit name": ("z" * (label_max + 1), "worker-1", "pod"),
        }
        for what, (conduit, node, name) in over.items():
            with self.assertRaises(RpcError, msg=what) as cm:
                d.client.allocate(conduit, node, name)
            self.assertEqual(cm.exception.code, SC.INVALID_ARGUMENT, "api: %s: %s" % (what, cm.exception.details))
            r = raw(conduit, node, name)
            self.assertEqual(r.code, SC.INVALID_ARGUMENT.value[0], "db worker: %s: %s" % (what, r.message))
            self.assertIn(what, r.message)
        self.assertEqual(harness.structural(d.rows()), before, "data changed")


class KillWorkers(DaemonTest):
    """SIGKILL of each worker: the supervisor restarts it and nothing that
    was acknowledged is lost."""

    def kill_and_check(self, role, d):
        before = allocate_many(d.client, names=3)
        old = d.kill_worker(role)
        new = d.wait_worker(role, not_pid=old)
        self.assertNotEqual(new, old)
        self.assertTrue(d.running(), "supervisor died")
        d.wait_serving(30)
        for k, v in before.items():
            got = harness.poll(lambda: d.client.allocate(*k), 30, 0.1, "allocate %s" % (k,))
            self.assertEqual(got, v, k)
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "after"), ("169.255.0.4", 24))
        self.assertSound(d.rows())

    def test_kill9_api_worker(self):
        self.kill_and_check("api", self.daemon())

    def test_kill9_nsp_worker(self):
        nsp = self.nsp(["conduit-a", "conduit-b"])
        d = self.daemon(conduits="", nsp=nsp.target)
        self.kill_and_check("nsp", d)
        # The restarted watcher follows the NSP again.
        nsp.set_conduits(["conduit-a", "conduit-b", "conduit-c"])
        self.assertEqual(d.client.allocate("conduit-c", "worker-1", "p", timeout=15),
                         ("169.255.32.1", 24))

    def test_kill9_db_worker(self):
        self.kill_and_check("db", self.daemon())

    def test_kill9_db_worker_under_load(self):
        """Allocations run while the db worker is killed: every one that
        was answered OK is answered the same afterwards."""
        d = self.daemon()
        acked = {}
        stop = threading.Event()
        failures = []
        # The node prefix holds 254 addresses: the load pauses at cap, so
        # that a slow poll on a busy machine cannot fill it.
        cap = [120]

        def load():
            i = 0
            while not stop.is_set():
                if len(acked) >= cap[0]:
                    time.sleep(0.01)
                    continue
                name = "load-%d" % i
                i += 1
                try:
                    acked[name] = d.client.allocate("conduit-a", "worker-1", name, timeout=5)
                except RpcError as e:
                    failures.append(e.code)

        t = threading.Thread(target=load)
        t.start()
        try:
            harness.poll(lambda: len(acked) >= 20, 20, 0.05, "some allocations")
            old = d.kill_worker("db")
            d.wait_worker("db", not_pid=old)
            n = len(acked)
            cap[0] = n + 20
            harness.poll(lambda: len(acked) >= n + 20, 30, 0.05, "allocations after restart")
        finally:
            stop.set()
            t.join(30)
        for code in failures:
            self.assertIn(code, (SC.UNAVAILABLE, SC.DEADLINE_EXCEEDED), failures)
        for name, v in acked.items():
            self.assertEqual(d.client.allocate("conduit-a", "worker-1", name), v, name)
        self.assertEqual(len(set(acked.values())), len(acked), "duplicate addresses")
        self.assertSound(d.rows())

    def test_kill9_of_everything_keeps_what_was_acknowledged(self):
        """An answer means the allocation is on disk: SIGKILL of the whole
        process group right after the answers loses none of them."""
        d = self.daemon()
        with futures.ThreadPoolExecutor(max_workers=20) as ex:
            names = ["crash-%d" % i for i in range(60)]
            got = dict(zip(names, ex.map(
                lambda n: d.client.allocate("conduit-b", "worker-3", n, timeout=20), names)))
        os.killpg(d.pgid, signal.SIGKILL)
        d.proc.wait(5)
        harness.poll(lambda: not d.leftovers(), 5, 0.05, "all processes gone")
        d.start()
        for n, v in got.items():
            self.assertEqual(d.client.allocate("conduit-b", "worker-3", n), v, n)
        self.assertEqual(d.client.allocate("conduit-b", "worker-3", "next"), ("169.255.16.61", 24))
        self.assertSound(d.rows())

    def test_supervisor_gives_up_on_a_worker_that_keeps_dying(self):
        """Too many deaths in a window: everything stops and the supervisor
        exits non-zero (for systemd or the kubelet to take over)."""
        d = self.daemon()
        deadline = time.monotonic() + 120
        kills = 0
        while d.running() and time.monotonic() < deadline:
            pid = d.workers().get("db")
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        self.assertFalse(d.running(), "still restarting after %d kills" % kills)
        self.assertGreater(d.proc.returncode, 0)
        self.assertGreater(kills, 1)
        harness.poll(lambda: not d.leftovers(), 5, 0.05, "workers to be gone")
        self.assertTrue(port_free(d.port), "port still taken")

    def test_each_worker_killed_in_turn(self):
        nsp = self.nsp(["conduit-a", "conduit-b"])
        d = self.daemon(conduits="", nsp=nsp.target)
        before = allocate_many(d.client, names=2)
        for role in ("db", "api", "nsp", "db"):
            old = d.kill_worker(role)
            d.wait_worker(role, not_pid=old)
            d.wait_serving(30)
        for k, v in before.items():
            self.assertEqual(harness.poll(lambda: d.client.allocate(*k), 30, 0.1, str(k)), v, k)
        rc, took = d.stop()
        self.assertEqual(rc, 0)


class NspWatch(DaemonTest):
    """Conduits from a fake NSP that the test changes while the daemon runs."""

    def test_conduit_added_removed_readded(self):
        nsp = self.nsp(["conduit-a"])
        d = self.daemon(conduits="", nsp=nsp.target)
        c = d.client
        self.assertEqual(c.allocate("conduit-a", "worker-1", "p", timeout=15), ("169.255.0.1", 24))
        self.assertEqual(c.allocate("conduit-a", "worker-1", "p", V6), ("fd00::1", 64))
        nsp.set_conduits(["conduit-a", "conduit-b"])
        self.assertEqual(c.allocate("conduit-b", "worker-1", "p", timeout=15),
                         ("169.255.16.1", 24))
        # conduit-a goes: its prefix, nodes and children go with it.
        nsp.set_conduits(["conduit-b"])
        harness.poll(lambda: "conduit-a-default-0" not in d.rows(), 15, 0.1,
                     "conduit-a to be removed")
        rows = d.rows()
        self.assertFalse([i for i in rows if i.endswith("conduit-a-default-0")
                          or i.endswith("conduit-a-default-1")], "left below conduit-a")
        self.assertIn("conduit-b-default-0", rows)
        self.assertSound(rows)
        with self.assertRaises(RpcError) as cm:
            c.allocate("conduit-a", "worker-1", "p", timeout=1.5)
        self.assertIn(cm.exception.code, (SC.DEADLINE_EXCEEDED, SC.NOT_FOUND))
        # Re-added: lowest free /20 again, fresh nodes and children.
        nsp.set_conduits(["conduit-b", "conduit-a"])
        self.assertEqual(c.allocate("conduit-a", "worker-9", "q", timeout=15), ("169.255.0.1", 24))
        self.assertEqual(c.allocate("conduit-a", "worker-9", "q", V6), ("fd00::1", 64))
        self.assertEqual(c.allocate("conduit-b", "worker-1", "p"), ("169.255.16.1", 24))

    def test_conduit_removed_under_load_leaves_nothing_below(self):
        """Allocations race the removal of their conduit: afterwards nothing
        is left below it and no record is orphaned."""
        nsp = self.nsp(["conduit-a", "conduit-b"])
        d = self.daemon(conduits="", nsp=nsp.target)
        d.client.allocate("conduit-a", "w0", "p", timeout=15)
        stop = threading.Event()
        counts = {"ok": 0, "codes": set()}

        def load(k):
            i = 0
            while not stop.is_set():
                try:
                    d.client.allocate("conduit-a", "w%d" % (i % 5), "p%d-%d" % (k, i), timeout=2)
                    counts["ok"] += 1
                except RpcError as e:
                    counts["codes"].add(e.code)
                i += 1

        ts = [threading.Thread(target=load, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        try:
            harness.poll(lambda: counts["ok"] >= 50, 15, 0.05, "allocations under way")
            nsp.set_conduits(["conduit-b"])
            harness.poll(lambda: counts["codes"], 15, 0.05, "allocations to be refused")
        finally:
            stop.set()
            for t in ts:
                t.join(15)
        self.assertLessEqual(counts["codes"], {SC.NOT_FOUND, SC.DEADLINE_EXCEEDED})
        rows = d.rows()
        self.assertFalse([i for i in rows if "conduit-a" in i], "records left below conduit-a")
        self.assertSound(rows)

    def test_allocate_waits_for_a_conduit_that_appears(self):
        nsp = self.nsp(["conduit-a"])
        d = self.daemon(conduits="", nsp=nsp.target)
        d.client.allocate("conduit-a", "worker-1", "p", timeout=15)
        result = {}

        def ask():
            t0 = time.monotonic()
            try:
                result["ok"] = d.client.allocate("conduit-new", "worker-1", "p", timeout=15)
            except RpcError as e:
                result["err"] = e
            result["took"] = time.monotonic() - t0

        t = threading.Thread(target=ask)
        t.start()
        time.sleep(1.0)   # the call must be waiting when the conduit comes
        self.assertTrue(t.is_alive(), "Allocate did not wait: %s" % result)
        nsp.set_conduits(["conduit-a", "conduit-new"])
        t.join(20)
        self.assertFalse(t.is_alive())
        self.assertEqual(result.get("ok"), ("169.255.16.1", 24), result)
        self.assertLess(result["took"], 10)

    def test_nsp_restart_watcher_reconnects(self):
        nsp = self.nsp(["conduit-a"])
        port = nsp.port
        d = self.daemon(conduits="", nsp=nsp.target)
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "p", timeout=15),
                         ("169.255.0.1", 24))
        nsp.stop()
        # Serving goes on without the NSP.
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "p2"), ("169.255.0.2", 24))
        nsp2 = self.nsp(["conduit-a", "conduit-c"], port=port)
        self.assertEqual(nsp2.port, port)
        self.assertEqual(d.client.allocate("conduit-c", "worker-1", "p", timeout=20),
                         ("169.255.16.1", 24))
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "p"), ("169.255.0.1", 24))

    def test_a_conduit_that_does_not_fit_blocks_no_later_list(self):
        """169.255.0.0/16 holds sixteen /20 conduits. A list of seventeen
        places the first sixteen in list order; the next list, which drops
        c00 and fits, must then be applied (c00 removed, c16 placed in the
        freed /20) rather than the worker retrying the old list forever."""
        names = ["c%02d" % i for i in range(17)]
        nsp = self.nsp(names)
        d = self.daemon(conduits="", nsp=nsp.target)
        harness.poll(lambda: "c15-default-0" in d.rows(), 15, 0.1, "the first 16 conduits")
        rows = d.rows()
        self.assertEqual(rows["c00-default-0"]["cidr"], "169.255.0.0/20")
        self.assertEqual(rows["c15-default-0"]["cidr"], "169.255.240.0/20")
        self.assertNotIn("c16-default-0", rows)
        self.assertEqual(d.client.allocate("c15", "w", "p"), ("169.255.240.1", 24))
        nsp.set_conduits(names[1:])
        harness.poll(lambda: "c16-default-0" in d.rows(), 15, 0.1,
                     lambda: "c16 placed after c00 left the list (conduit rows: %s)"
                     % sorted(i for i, r in d.rows().items() if r["parent_id"] == "default-0"))
        rows = d.rows()
        self.assertNotIn("c00-default-0", rows)
        self.assertEqual(rows["c16-default-0"]["cidr"], "169.255.0.0/20")
        self.assertEqual(d.client.allocate("c16", "w", "p"), ("169.255.0.1", 24))
        self.assertSound(rows)

    def test_first_list_after_restart_deletes_nothing(self):
        nsp = self.nsp(["conduit-a", "conduit-b"])
        d = self.daemon(conduits="", nsp=nsp.target)
        self.assertEqual(d.client.allocate("conduit-b", "worker-1", "p", timeout=15),
                         ("169.255.16.1", 24))
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        # Restart while the NSP lists nothing, then only conduit-a and a new
        # one: conduit-b was not listed in this run, so it stays.
        nsp.set_conduits([])
        d.start()
        nsp.set_conduits(["conduit-a", "conduit-c"])
        harness.poll(lambda: "conduit-c-default-0" in d.rows(), 15, 0.1, "conduit-c")
        rows = d.rows()
        self.assertIn("conduit-b-default-0", rows)
        self.assertEqual(rows["conduit-c-default-0"]["cidr"], "169.255.32.0/20")
        self.assertEqual(d.client.allocate("conduit-b", "worker-1", "p"), ("169.255.16.1", 24))
        # Now conduit-b is listed and later dropped: that removes it.
        nsp.set_conduits(["conduit-a", "conduit-b", "conduit-c"])
        self.assertEqual(d.client.allocate("conduit-b", "worker-1", "p"), ("169.255.16.1", 24))
        nsp.set_conduits(["conduit-a", "conduit-b", "conduit-c", "conduit-d"])
        # conduit-d showing up proves the list naming conduit-b was applied.
        harness.poll(lambda: "conduit-d-default-0" in d.rows(), 15, 0.1, "conduit-d")
        nsp.set_conduits(["conduit-a", "conduit-c", "conduit-d"])
        harness.poll(lambda: "conduit-b-default-0" not in d.rows(), 15, 0.1,
                     "conduit-b removed")


if __name__ == "__main__":
    unittest.main()
