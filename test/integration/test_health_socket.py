"""IPAM_HEALTH_SOCKET: grpc.health.v1 in plaintext on a Unix socket, as
Meridio's exec probes expect (`grpc_health_probe -addr=unix:///tmp/health.sock
-service=Startup`), with the names and statuses of the port and nothing else.

Every daemon of the suite gets a socket of its own (harness.Daemon); the
client is Debian's python3-grpcio over the socket.
"""

import json
import os
import shutil
import socket
import stat
import subprocess
import time
import unittest

import grpc

import harness
from harness import DaemonTest, RpcError, expect_code, poll
import health_pb2
import health_pb2_grpc
from ipam.v1 import ipam_pb2_grpc

NAMES = ("", "ipam.v1.Ipam", "Startup", "Readiness", "Liveness")
STATUS = health_pb2.HealthCheckResponse.ServingStatus


class SockClient:
    """Health and Ipam stubs on unix:<path>."""

    def __init__(self, path):
        self.channel = grpc.insecure_channel(
            "unix:" + path, options=[("grpc.enable_retries", 0),
                                     ("grpc.use_local_subchannel_pool", 1)])
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.ipam = ipam_pb2_grpc.IpamStub(self.channel)

    def close(self):
        self.channel.close()

    def check(self, service, timeout=2.0):
        """Status name of Check(service); raises RpcError."""
        try:
            r = self.health.Check(health_pb2.HealthCheckRequest(service=service),
                                  timeout=timeout)
        except grpc.RpcError as e:
            raise RpcError(e.code(), e.details()) from None
        return STATUS.Name(r.status)

    def watch_first(self, service, timeout=2.0):
        """Status name of the first message of Watch(service)."""
        it = self.health.Watch(health_pb2.HealthCheckRequest(service=service),
                               timeout=timeout)
        try:
            return STATUS.Name(next(it).status)
        finally:
            it.cancel()


def check_once(path, service=""):
    """Check over a fresh channel (a failed connect is not retried)."""
    c = SockClient(path)
    try:
        return c.check(service, timeout=1.0)
    finally:
        c.close()



def assert_stopped_for_socket(tc, d, path, bound=5.0):
    """d exits non-zero within bound seconds (a live socket is given 5 s
    to go first), with exactly one log line naming IPAM_HEALTH_SOCKET and
    the path, and without an api restart."""
    t0 = time.monotonic()
    try:
        rc = d.proc.wait(15)
    except subprocess.TimeoutExpired:
        tc.fail("daemon still running 15 s after start\n" + d.log_tail())
    took = time.monotonic() - t0
    tc.assertNotEqual(rc, 0)
    tc.assertLess(took, bound, d.log_tail())
    lines = d.log_records()
    named = [l for l in lines if "IPAM_HEALTH_SOCKET" in json.dumps(l)]
    tc.assertEqual(len(named), 1, d.log_tail())
    tc.assertIn(path, json.dumps(named[0]))
    started = [l for l in lines if l.get("message") == "worker started"
               and l.get("extra_data", {}).get("worker") == "api"]
    tc.assertEqual(len(started), 1, "the api worker was restarted")


class HealthSocket(DaemonTest):

    def sock(self, d):
        return d.env["IPAM_HEALTH_SOCKET"]

    def client(self, path):
        c = SockClient(path)
        self.addCleanup(c.close)
        return c

    def test_every_name_serving_on_check_and_watch(self):
        d = self.daemon()
        path = self.sock(d)
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode))
        c = self.client(path)
        for name in NAMES:
            self.assertEqual(c.check(name), "SERVING", name)
            self.assertEqual(c.watch_first(name), "SERVING", name)
            # the same answer as the port's
            self.assertEqual(d.client.health(name), "SERVING", name)
        e = expect_code(self, grpc.StatusCode.NOT_FOUND, c.check, "nsp.v1.Nope")
        self.assertIn("nsp.v1.Nope", e.details)
        self.assertEqual(c.watch_first("nsp.v1.Nope"), "SERVICE_UNKNOWN")

    def test_ipam_not_callable_over_the_socket(self):
        d = self.daemon()
        c = self.client(self.sock(d))
        child = harness.child_msg("conduit-a", "worker-1", "over-socket")
        for call in (c.ipam.Allocate, c.ipam.Release):
            with self.assertRaises(grpc.RpcError) as cm:
                call(child, timeout=5)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        # Nothing was allocated through the socket: over the port, the same
        # child gets the first address of a new node prefix.
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "over-socket"),
                         ("169.255.0.1", 24))
        self.assertEqual(c.check("Readiness"), "SERVING")

    def test_not_serving_until_the_db_worker_is_ready(self):
        """The db worker is held back by a wrapper until a gate file exists:
        meanwhile the socket answers NOT_SERVING for every name, a Watch
        sees NOT_SERVING then SERVING once the gate opens."""
        d = harness.Daemon()
        self._daemons.append(d)
        gate = os.path.join(d.dir, "gate")
        wrapper = os.path.join(d.dir, "hold-db.sh")
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\ncase "$1" in *meridio-ipam-db)\n'
                    '  while [ ! -e "$HOLD_GATE" ]; do sleep 0.05; done;;\n'
                    'esac\nexec "$@"\n')
        os.chmod(wrapper, 0o755)
        d.env.update({"IPAMD_WORKER_WRAPPER": wrapper, "HOLD_GATE": gate})
        d.start(wait=False)
        path = self.sock(d)
        poll(lambda: check_once(path) is not None, 20, what="health socket up")
        c = self.client(path)
        for name in NAMES:
            self.assertEqual(c.check(name), "NOT_SERVING", name)
        watch = c.health.Watch(health_pb2.HealthCheckRequest(service="Startup"),
                               timeout=30)
        self.assertEqual(STATUS.Name(next(watch).status), "NOT_SERVING")
        # still held: no change in a while
        time.sleep(0.5)
        self.assertEqual(c.check("Readiness"), "NOT_SERVING")
        open(gate, "w").close()
        self.assertEqual(STATUS.Name(next(watch).status), "SERVING")
        watch.cancel()
        for name in NAMES:
            self.assertEqual(c.check(name), "SERVING", name)

    def test_stale_socket_file_replaced(self):
        d = harness.Daemon()
        self._daemons.append(d)
        path = self.sock(d)
        # What a killed process leaves: a socket file nobody listens on.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.close()
        # a second name keeps the inode taken: a new socket gets another
        os.link(path, path + ".old")
        old = os.lstat(path).st_ino
        d.start()
        self.assertEqual(check_once(path, "Liveness"), "SERVING")
        self.assertNotEqual(os.lstat(path).st_ino, old)
        # The api worker killed leaves its socket behind: the next one
        # takes it over.
        pid = d.kill_worker("api")
        d.wait_worker("api", not_pid=pid)
        poll(lambda: check_once(path, "Readiness") == "SERVING", 20,
             what="SERVING on the socket after an api worker restart")

    def test_second_instance_on_a_live_socket_stops(self):
        a = self.daemon()
        path = self.sock(a)
        b = harness.Daemon(env={"IPAM_HEALTH_SOCKET": path})
        self._daemons.append(b)
        b.start(wait=False)
        assert_stopped_for_socket(self, b, path, bound=9.0)
        # The first instance keeps its socket and serves on it.
        self.assertEqual(check_once(path, "Startup"), "SERVING")
        self.assertEqual(a.client.allocate("conduit-a", "worker-1", "c1"),
                         ("169.255.0.1", 24))

    def test_other_program_listening_is_left_alone(self):
        d = harness.Daemon()
        self._daemons.append(d)
        path = self.sock(d)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.bind(path)
        s.listen(1)
        ino = os.lstat(path).st_ino
        d.start(wait=False)
        assert_stopped_for_socket(self, d, path, bound=9.0)
        self.assertEqual(os.lstat(path).st_ino, ino, "a live socket was replaced")

    def test_socket_of_a_stopping_instance_is_waited_for(self):
        """A restart right after the old instance was killed: its api
        worker may still be stopping with the socket open. A socket that
        goes within a few seconds is taken over, not a reason to stop."""
        d = harness.Daemon()
        self._daemons.append(d)
        path = self.sock(d)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.bind(path)
        s.listen(1)
        d.start(wait=False)
        time.sleep(1.5)
        s.close()          # the old worker is gone; its file stays behind
        d.wait_serving()
        self.assertEqual(check_once(path, "Readiness"), "SERVING")

    def test_path_that_is_no_socket_is_left_alone(self):
        d = harness.Daemon()
        self._daemons.append(d)
        path = self.sock(d)
        with open(path, "w") as f:
            f.write("keep me\n")
        d.start(wait=False)
        assert_stopped_for_socket(self, d, path)
        with open(path) as f:
            self.assertEqual(f.read(), "keep me\n")

    def test_empty_turns_it_off(self):
        d = harness.Daemon(env={"IPAM_HEALTH_SOCKET": ""})
        self._daemons.append(d)
        d.start()
        off = [l for l in d.log_records()
               if "health socket off" in l.get("message", "")]
        self.assertEqual(len(off), 1, d.log_tail())
        socks = []
        for root in d.socket_roots():
            for dirpath, _, files in os.walk(root):
                socks += [f for f in files
                          if stat.S_ISSOCK(os.lstat(os.path.join(dirpath, f)).st_mode)]
        # only the private sockets of the runtime directory
        self.assertEqual(sorted(socks), ["admin.sock", "db.sock"])
        self.assertEqual(d.client.health("Readiness"), "SERVING")

    def test_socket_removed_on_orderly_stop(self):
        d = self.daemon()
        path = self.sock(d)
        self.assertTrue(os.path.exists(path))
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        self.assertFalse(os.path.exists(path))


@unittest.skipUnless(os.geteuid() == 0, "needs root to run as another user")
@harness.needs(harness.why_no_other_user)
class NonRoot(DaemonTest):
    """As in a pod: a non-root user, the socket in a world-writable sticky
    directory (/tmp, an emptyDir)."""

    UID = 10004

    def as_user(self):
        """A daemon to be run as UID, its socket in a sticky 1777 dir. Its
        files and programs are where UID can reach them."""
        top = harness.reachable_tmpdir("ipam-hs-")
        self.addCleanup(shutil.rmtree, top, True)
        d = harness.Daemon(data_dir=top)
        self._daemons.append(d)
        tmp = os.path.join(d.rt_dir, "tmp")
        os.mkdir(tmp)
        os.chmod(tmp, 0o1777)
        for p in {d.dir, d.rt_dir}:
            os.chown(p, self.UID, self.UID)
        d.env["IPAM_HEALTH_SOCKET"] = os.path.join(tmp, "health.sock")
        # Daemon.start runs [d.bin]: a script that drops to UID first.
        script = os.path.join(d.dir, "as-user.sh")
        with open(script, "w") as f:
            f.write('#!/bin/sh\nexec setpriv --reuid=%d --regid=%d --clear-groups '
                    '--no-new-privs "%s"\n'
                    % (self.UID, self.UID,
                       os.path.join(harness.reachable_bin_dir(), harness.SUPERVISOR)))
        os.chmod(script, 0o755)
        d.bin = script
        return d, d.env["IPAM_HEALTH_SOCKET"]

    def test_non_root_in_sticky_dir(self):
        d, path = self.as_user()
        d.start()
        self.assertEqual(os.lstat(path).st_uid, self.UID)
        self.assertEqual(check_once(path, "Readiness"), "SERVING")
        # the exec probe runs as the same user, as in the pod
        probe = os.path.join(harness.reachable_bin_dir(), "grpc_health_probe")
        r = subprocess.run(["setpriv", "--reuid=%d" % self.UID, "--regid=%d" % self.UID,
                            "--clear-groups", probe, "-addr=unix://" + path,
                            "-service=Startup"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        rc, _ = d.stop()
        self.assertEqual(rc, 0, d.log_tail())
        self.assertFalse(os.path.exists(path))

    def test_stale_socket_of_another_user_in_sticky_dir(self):
        """A stale socket it may not remove (sticky bit, owned by root):
        the daemon stops with one line naming the variable."""
        d, path = self.as_user()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.close()
        d.start(wait=False)
        assert_stopped_for_socket(self, d, path)
        self.assertTrue(os.path.exists(path))


if __name__ == "__main__":
    unittest.main()
