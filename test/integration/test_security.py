"""Least privilege of the real daemon (issue 4, Security item 2).

- The db worker's socket refuses a peer of another uid (SO_PEERCRED), even
  when the runtime directory and the socket are opened up by mistake.
- Every process (supervisor and workers) runs with PR_SET_NO_NEW_PRIVS.
- Only the db worker opens anything in the data directory (checked with
  strace over a whole run: start, allocate, release, orderly stop), except
  the lock: the supervisor opens the data file itself (creating it empty
  when missing, removing it again only if still empty and never served)
  and holds its flock for the instance's life, and nothing else there.

Needs root (to act as another uid and to trace); CI runs as root.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import harness
from harness import DaemonTest

NOBODY = 65534
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def frame(msg):
    return harness.ipc_frame(msg.SerializeToString())


def rundir_of(pid):
    """The runtime directory the supervisor gave a worker ($IPAMD_RUNDIR)."""
    with open("/proc/%d/environ" % pid, "rb") as f:
        for kv in f.read().split(b"\0"):
            if kv.startswith(b"IPAMD_RUNDIR="):
                return kv.split(b"=", 1)[1].decode()
    raise AssertionError("worker %d has no IPAMD_RUNDIR" % pid)


# Run as the other uid: connect, say Hello and Ping, report what came back.
PEER_SCRIPT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("CONNECT-FAILED", e.errno)
    sys.exit(0)
try:
    s.sendall(bytes.fromhex(sys.argv[2]))
except OSError:
    pass
got = b""
try:
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    print("EOF", len(got))
except socket.timeout:
    print("TIMEOUT", len(got))
except OSError as e:
    print("RESET", len(got))
"""


@unittest.skipUnless(os.geteuid() == 0, "needs root: acts as uid 65534 and traces")
@harness.needs(harness.why_no_other_user)
class PeerCredentials(DaemonTest):

    def setUp(self):
        super().setUp()
        # The daemon's scratch dir in /tmp (not under IPAM_TEST_TMP, which
        # is 0700): another uid must be able to reach the socket's path.
        self.top = tempfile.mkdtemp(prefix="ipam-sec-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.top, True)
        os.chmod(self.top, 0o755)

    def ping(self, path):
        """Hello + Ping as ourselves; the Ping's Reply (or a failure)."""
        from ipamd.v1 import ipamd_pb2 as pb
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.settimeout(10)
        s.connect(path)
        s.sendall(frame(pb.Request(id=1, hello=pb.Hello(role=pb.ROLE_CTL, pid=os.getpid())))
                  + frame(pb.Request(id=7, ping=pb.Ping())))
        while True:
            body = harness.ipc_recv_frame(s)
            self.assertIsNotNone(body, "db worker closed our own connection")
            r = pb.Reply.FromString(body)
            if r.id == 7:
                return r

    def test_other_uid_is_refused(self):
        from ipamd.v1 import ipamd_pb2 as pb
        d = self.daemon(data_dir=self.top)
        db = d.workers()["db"]
        rundir = rundir_of(db)
        path = os.path.join(rundir, "db.sock")
        self.assertEqual(os.stat(rundir).st_mode & 0o777, 0o700)
        self.assertEqual(self.ping(path).code, 0)

        # Open the door on purpose: only the uid check is left.
        os.chmod(rundir, 0o755)
        os.chmod(path, 0o666)
        hello = frame(pb.Request(id=1, hello=pb.Hello(role=pb.ROLE_CTL, pid=1))) + \
            frame(pb.Request(id=7, ping=pb.Ping()))
        r = subprocess.run(["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY,
                            "--clear-groups", "/usr/bin/python3", "-c", PEER_SCRIPT,
                            path, hello.hex()],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        # Closed without a byte of answer (a reset when our request was
        # still unread), not left open.
        self.assertIn(r.stdout.split(), (["EOF", "0"], ["RESET", "0"]),
                      "uid %d was not refused at once: %s" % (NOBODY, r.stdout))
        harness.poll(lambda: "refusing a connection from uid %d" % NOBODY in d.log_text(),
                     10, what="the refusal in the log")
        # Nothing else changed: same db worker, our own uid still served.
        self.assertEqual(d.workers().get("db"), db, "db worker died")
        self.assertEqual(self.ping(path).code, 0)
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "after"), ("169.255.0.1", 24))


@unittest.skipUnless(os.geteuid() == 0, "needs root: acts as uid 65534 and traces")
@harness.needs(harness.why_no_other_user)
class Privileges(DaemonTest):

    def test_no_new_privs_in_every_process(self):
        d = self.daemon()
        pids = {"supervisor": d.proc.pid}
        pids.update(d.workers())
        self.assertEqual(sorted(pids), ["api", "db", "supervisor"])
        for role, pid in pids.items():
            with open("/proc/%d/status" % pid) as f:
                m = re.search(r"^NoNewPrivs:\s*(\d)", f.read(), re.M)
            self.assertIsNotNone(m)
            self.assertEqual(m.group(1), "1", "%s (pid %d) may gain privileges" % (role, pid))

    def test_only_db_worker_touches_data_dir(self):
        r = subprocess.run([os.path.join(_REPO, "scripts", "deps.sh"), "strace"],
                           capture_output=True, text=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stderr)
        d = harness.Daemon()
        self._daemons.append(d)
        data = os.path.join(d.dir, "data")
        os.mkdir(data, 0o700)
        d.env["IPAM_DATA_SOURCE"] = os.path.join(data, "registry.db")
        d.db_path = d.env["IPAM_DATA_SOURCE"]
        # In a sanitized build: LeakSanitizer cannot run under ptrace.
        d.env["ASAN_OPTIONS"] = "detect_leaks=0"
        trace = os.path.join(d.dir, "strace.log")
        log = open(d.log_path, "ab")
        self.addCleanup(log.close)
        proc = subprocess.Popen(["strace", "-f", "-qq", "-s", "512", "-o", trace,
                                 "-e", "trace=%file", d.bin],
                                env=d.env, cwd=d.dir, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True)
        d.proc = proc
        d.pgids.append(proc.pid)
        d.client = harness.Client(d.target)
        d.wait_serving(60)
        d.wait_conduits(["conduit-a"], 60)
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "c1"), ("169.255.0.1", 24))
        d.client.release("conduit-a", "worker-1", "c1")
        # strace's child is the supervisor: SIGTERM it as systemd would.
        with open("/proc/%d/task/%d/children" % (proc.pid, proc.pid)) as f:
            kids = f.read().split()
        self.assertEqual(len(kids), 1, kids)
        os.kill(int(kids[0]), signal.SIGTERM)
        self.assertEqual(proc.wait(30), 0, d.log_tail())

        role = {}      # pid -> program it last exec'd
        touched = {}   # program -> calls naming a path in the data dir
        with open(trace, errors="replace") as f:
            lines = f.read().splitlines()
        for line in lines:
            m = re.match(r"^(\d+)\s+([a-z0-9_]+)\((.*)", line)
            if not m:
                continue
            pid, call, rest = int(m.group(1)), m.group(2), m.group(3)
            # An execve that failed is "= -1"; an unfinished one succeeds
            # (the supervisor execs only binaries it found executable).
            if call == "execve" and "= -1" not in rest:
                role[pid] = os.path.basename(rest.split('"')[1])
                continue
            if data in rest:
                prog = role.get(pid, "supervisor-or-fork-of-pid-%d" % pid)
                touched.setdefault(prog, []).append(line.strip())
        self.assertIn("meridio-ipam-db", touched, "the db worker never opened its data")
        # The supervisor's lock: open (or create) the data file itself, no
        # other name in the directory, no other call.
        lock = re.compile(r'^\d+\s+openat\(AT_FDCWD, "%s", O_RDWR\|' % re.escape(d.db_path))
        sup = touched.pop("meridio-ipam", [])
        self.assertTrue(sup, "the supervisor never took the lock")
        self.assertEqual([c for c in sup if not lock.match(c)], [],
                         "the supervisor touched more than the data file's lock")
        others = {k: v[:3] for k, v in touched.items() if k != "meridio-ipam-db"}
        self.assertEqual(others, {}, "processes other than the db worker touched the data dir")


if __name__ == "__main__":
    unittest.main()
