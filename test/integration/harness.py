"""Shared helpers for the integration tests of meridio-ipam.

The tests drive the real binaries (the supervisor build/bin/meridio-ipam and
the workers it fork+execs beside it) over loopback with an independent
client: Debian's python3-grpcio and stubs generated at build time.

Environment (set by ctest, see test/CMakeLists.txt):
  IPAM_BIN_DIR   directory holding meridio-ipam and its workers
  IPAM_PYGEN     directory of the generated python stubs
  IPAM_TEST_TMP  scratch directory for data dirs and logs

Every wait here is bounded; nothing sleeps blindly where it can poll.
"""

import glob
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(os.path.dirname(_HERE))

BIN_DIR = os.environ.get("IPAM_BIN_DIR") or os.path.join(_REPO, "build", "bin")
PYGEN = os.environ.get("IPAM_PYGEN") or os.path.join(_REPO, "build", "pygen")
TEST_TMP = os.environ.get("IPAM_TEST_TMP") or tempfile.gettempdir()

# The generated stubs import each other as top-level packages (nsp.v1, ...).
if PYGEN not in sys.path:
    sys.path.insert(0, PYGEN)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import grpc  # noqa: E402
from ipam.v1 import ipam_pb2, ipam_pb2_grpc  # noqa: E402
import health_pb2  # noqa: E402
import health_pb2_grpc  # noqa: E402
import fakensp  # noqa: E402

SUPERVISOR = "meridio-ipam"
ROLES = ("db", "api", "nsp")
TRENCH = "default"

# Default geometry of the address space (issue 2, section 6).
V4, V6 = 4, 6

# Generous bounds: the suite runs on small CI machines, in parallel.
START_TIMEOUT = 30.0
RPC_TIMEOUT = 10.0


# ---------------------------------------------------------------------------
# Ports and files


def free_port():
    """A TCP port free on both loopback families at the time of the call.

    The daemon listens on [::]:port, so the port is taken from a dual-stack
    socket bound to port 0 and then checked on 127.0.0.1 as well.
    """
    for _ in range(50):
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s6.bind(("::", 0))
            port = s6.getsockname()[1]
        finally:
            s6.close()
        s4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s4.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s4.close()
    raise RuntimeError("no free loopback port found")


def run(cmd, timeout=300, **kw):
    """Runs cmd with a time bound, capturing text output."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def make_tmpdir(prefix="ipam-it-"):
    """A fresh scratch directory under IPAM_TEST_TMP (created if needed)."""
    os.makedirs(TEST_TMP, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix, dir=TEST_TMP)


def json_lines(text):
    """The JSON objects among the lines of a log, in order."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def why_no_other_user():
    """None when a process of another user can run programs here; else
    why not. A root (or /usr) directory that only root may enter, as in a
    chroot unpacked into a `mktemp -d` directory, stops every program of
    another user before it starts (its libraries cannot be opened)."""
    for d in ("/", "/usr", "/usr/lib", "/tmp"):
        if not os.stat(d).st_mode & 0o001:
            return ("%s is mode %o here: no other user can run a program "
                    "(a chroot in a 0700 directory?)"
                    % (d, os.stat(d).st_mode & 0o7777))
    return None


def why_no_private_mounts():
    """None when `unshare --mount` makes a private mount namespace here
    (root, / a mount point); else its error (e.g. inside a chroot whose
    root is no mount point: 'cannot change root filesystem propagation')."""
    if os.geteuid() != 0:
        return "needs root for a mount namespace"
    try:
        r = subprocess.run(["unshare", "--mount", "true"],
                           capture_output=True, text=True, timeout=30)
    except OSError as e:
        return "unshare: %s" % e
    return None if r.returncode == 0 else r.stderr.strip()


def why_no_npm_registry():
    """None when npm reaches its registry; else npm's own words (no npm,
    no DNS, or a TLS interception whose CA this system lacks)."""
    try:
        r = subprocess.run(["npm", "ping"], capture_output=True, text=True,
                           timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "npm: %s" % e
    if r.returncode == 0:
        return None
    lines = [l for l in (r.stderr + r.stdout).splitlines() if l.strip()]
    return "npm cannot reach its registry: %s" % (
        " / ".join(lines[-3:]) if lines else "exit %d" % r.returncode)


def needs(why):
    """Skips a test or test class, with why()'s reason, where this machine
    cannot give what it needs (why() returns None where it can)."""
    reason = why()
    return unittest.skipIf(reason is not None, reason or "")


def reachable_tmpdir(prefix="ipam-any-"):
    """A fresh directory under /tmp that every user may enter (0755), for
    tests that run the daemon as another user: the checkout (and so
    IPAM_TEST_TMP) may sit under a directory only root can enter, such as
    root's home or a `mktemp -d`. The caller removes it."""
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o755)
    return d


def _reachable_by_all(path):
    """True if every directory from / down to path lets others through."""
    p = os.path.abspath(path)
    while True:
        if not os.stat(p).st_mode & 0o001:
            return False
        if p == "/":
            return True
        p = os.path.dirname(p)


_bin_copy = []


def reachable_bin_dir():
    """BIN_DIR when every user can reach it; else a copy of its programs in
    a reachable directory under /tmp (made once per test process, removed
    when it exits), so that another user can run the daemon, whose
    supervisor starts the workers that lie beside it."""
    if _reachable_by_all(BIN_DIR):
        return BIN_DIR
    if not _bin_copy:
        d = reachable_tmpdir("ipam-bin-")
        for name in os.listdir(BIN_DIR):
            src = os.path.join(BIN_DIR, name)
            if os.path.isfile(src):
                shutil.copy2(src, os.path.join(d, name))
        import atexit
        atexit.register(shutil.rmtree, d, True)
        _bin_copy.append(d)
    return _bin_copy[0]


def poll(predicate, timeout, interval=0.05, what="condition"):
    """Calls predicate() until it returns a true value, at most timeout s.

    Returns that value; raises AssertionError naming `what` (a string, or
    a callable giving one at the time of failure) on timeout.
    Exceptions raised by predicate count as "not yet".
    """
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = predicate()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - "not yet" by design
            last_exc = e
        if time.monotonic() >= deadline:
            extra = " (last error: %r)" % (last_exc,) if last_exc else ""
            if callable(what):
                what = what()
            raise AssertionError("timed out after %.1fs waiting for %s%s"
                                 % (timeout, what, extra))
        time.sleep(interval)


# ---------------------------------------------------------------------------
# Processes found through /proc


def _proc_stat(pid):
    """(comm, state, ppid, pgrp) of pid, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    # comm is in parentheses and may contain spaces or parentheses.
    lp, rp = data.index("("), data.rindex(")")
    rest = data[rp + 2:].split()
    return data[lp + 1:rp], rest[0], int(rest[1]), int(rest[2])


def pid_alive(pid):
    """True when pid exists and is not a zombie."""
    st = _proc_stat(pid)
    return st is not None and st[1] not in ("Z", "X")


def _exe_name(pid):
    """Basename of the program pid runs (exe link, else argv[0])."""
    try:
        return os.path.basename(os.readlink("/proc/%d/exe" % pid))
    except OSError:
        pass
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv0 = f.read().split(b"\0")[0].decode(errors="replace")
        return os.path.basename(argv0)
    except OSError:
        return ""


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def children_of(pid):
    """Live child pids of pid: /proc/<pid>/task/*/children when the kernel
    has it, otherwise a scan of /proc/*/stat for the parent pid."""
    kids = set()
    paths = glob.glob("/proc/%d/task/*/children" % pid)
    if paths:
        for p in paths:
            try:
                with open(p) as f:
                    kids.update(int(x) for x in f.read().split())
            except OSError:
                pass
    else:
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            st = _proc_stat(int(d))
            if st is not None and st[2] == pid:
                kids.add(int(d))
    return sorted(k for k in kids if pid_alive(k))


def role_of(pid):
    """Worker role (db, api, nsp) of a child of the supervisor, or None.

    Workers are separate binaries meridio-ipam-<role>; a re-exec of the
    supervisor with the role as an argument is recognised too.
    """
    exe = _exe_name(pid)
    m = re.match(r"^meridio-ipam-(db|api|nsp)$", exe)
    if m:
        return m.group(1)
    for arg in _cmdline(pid)[1:]:
        a = arg.lstrip("-")
        if a in ROLES:
            return a
        m = re.match(r"^(?:role=)?(db|api|nsp)$", a)
        if m:
            return m.group(1)
    return None


def pids_in_group(pgid):
    """Live pids whose process group is pgid."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = _proc_stat(int(d))
        if st is not None and st[3] == pgid and st[1] not in ("Z", "X"):
            out.append(int(d))
    return sorted(out)


# ---------------------------------------------------------------------------
# gRPC helpers


class RpcError(Exception):
    """A failed RPC: code is a grpc.StatusCode, details its message."""

    def __init__(self, code, details):
        super().__init__("%s: %s" % (code.name if code else None, details))
        self.code = code
        self.details = details or ""


def _family(f):
    """Maps 4/6/'ipv4'/'ipv6'/raw enum int to the wire IPFamily value."""
    if f in (4, "ipv4", "IPV4"):
        return ipam_pb2.IPV4
    if f in (6, "ipv6", "IPV6"):
        return ipam_pb2.IPV6
    return int(f)


def child_msg(conduit="conduit-a", node="worker-1", name="proxy-1",
              family=V4, trench=TRENCH, subnet=True):
    """A Child message. conduit=None leaves subnet.conduit unset,
    trench=None leaves conduit.trench unset, subnet=False leaves it unset."""
    c = ipam_pb2.Child(name=name)
    if not subnet:
        return c
    c.subnet.node = node
    c.subnet.ipFamily = _family(family)
    if conduit is not None:
        c.subnet.conduit.name = conduit
        if trench is not None:
            c.subnet.conduit.trench.name = trench
    return c


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def raw_child(name_bytes, conduit="conduit-a", node="worker-1", family=V4,
              trench=TRENCH):
    """A serialized Child whose name is arbitrary bytes (e.g. invalid UTF-8,
    which the python protobuf library refuses to encode)."""
    sub = child_msg(conduit, node, "x", family, trench).subnet.SerializeToString()
    return (b"\x0a" + _varint(len(name_bytes)) + name_bytes
            + b"\x12" + _varint(len(sub)) + sub)


class Client:
    """A gRPC client of one daemon (target host:port)."""

    def __init__(self, target):
        self.target = target
        self.channel = grpc.insecure_channel(
            target, options=[("grpc.max_send_message_length", 1 << 20),
                             ("grpc.enable_retries", 0),
                             # Own subchannels: a fresh Client must not
                             # share another one's reconnect backoff.
                             ("grpc.use_local_subchannel_pool", 1)])
        self.ipam = ipam_pb2_grpc.IpamStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)

    def close(self):
        self.channel.close()

    def allocate_msg(self, child, timeout=RPC_TIMEOUT):
        """Allocate(child) -> (address, prefixLength); raises RpcError."""
        try:
            p = self.ipam.Allocate(child, timeout=timeout)
        except grpc.RpcError as e:
            raise RpcError(e.code(), e.details()) from None
        return p.address, p.prefixLength

    def allocate(self, conduit, node, name, family=V4, trench=TRENCH,
                 timeout=RPC_TIMEOUT):
        """Allocate -> (address, prefixLength); raises RpcError."""
        return self.allocate_msg(child_msg(conduit, node, name, family, trench),
                                 timeout)

    def release_msg(self, child, timeout=RPC_TIMEOUT):
        try:
            self.ipam.Release(child, timeout=timeout)
        except grpc.RpcError as e:
            raise RpcError(e.code(), e.details()) from None

    def release(self, conduit, node, name, family=V4, trench=TRENCH,
                timeout=RPC_TIMEOUT):
        """Release; raises RpcError."""
        self.release_msg(child_msg(conduit, node, name, family, trench), timeout)

    def health(self, service="", timeout=2.0):
        """Health/Check -> status name ("SERVING", ...); raises RpcError."""
        try:
            r = self.health_stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as e:
            raise RpcError(e.code(), e.details()) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)

    def raw_unary(self, method, body, timeout=RPC_TIMEOUT):
        """Calls method with raw request bytes (identity serializers).
        Returns the raw response bytes; raises RpcError."""
        call = self.channel.unary_unary(method, request_serializer=None,
                                        response_deserializer=None)
        try:
            return call(body, timeout=timeout)
        except grpc.RpcError as e:
            raise RpcError(e.code(), e.details()) from None


def expect_code(testcase, code, fn, *args, **kwargs):
    """Runs fn and asserts it raises RpcError with `code`; returns it."""
    with testcase.assertRaises(RpcError, msg="expected %s" % code.name) as cm:
        fn(*args, **kwargs)
    testcase.assertEqual(cm.exception.code, code,
                         "expected %s, got %s: %s"
                         % (code.name, cm.exception.code, cm.exception.details))
    return cm.exception


# ---------------------------------------------------------------------------
# The daemon


class Daemon:
    """The real supervisor with a temporary data directory.

    env: extra environment (IPAM_* values as strings). By default the daemon
    serves the static conduits conduit-a,conduit-b, logs at DEBUG, and keeps
    its data in <dir>/registry.db. The process runs in a session of its own
    so that a final cleanup can reach workers it left behind.
    """

    def __init__(self, env=None, data_dir=None, port=None, conduits="conduit-a,conduit-b",
                 nsp=None):
        self.bin = os.path.join(BIN_DIR, SUPERVISOR)
        self.own_dir = data_dir is None
        self.dir = data_dir or make_tmpdir()
        self.port = port or free_port()
        self.db_path = os.path.join(self.dir, "registry.db")
        self.log_path = os.path.join(self.dir, "stderr.log")
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("IPAM_") and k not in (
                        "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                        "XDG_RUNTIME_DIR")}
        self.env.update({
            "IPAM_PORT": str(self.port),
            "IPAM_DATA_SOURCE": self.db_path,
            "IPAM_TRENCH_NAME": TRENCH,
            "IPAM_LOG_LEVEL": "DEBUG",
            "IPAM_CONDUITS": conduits or "",
            "IPAM_GRPC_MAX_BACKOFF": "1s",
            "TMPDIR": self.tmp_dir(),
            # A health socket of its own: the default /tmp/health.sock
            # would be shared by every daemon of a parallel test run.
            "IPAM_HEALTH_SOCKET": os.path.join(self.rt_dir, "health.sock"),
        })
        # IPAM_CONDUITS selects static conduits and no NSP by itself;
        # without either, IPAM_NSP_SERVICE set empty says "no NSP" (unset,
        # the daemon would watch Meridio's nsp-service:7778).
        if nsp is not None:
            self.env["IPAM_NSP_SERVICE"] = nsp
        elif not conduits:
            self.env["IPAM_NSP_SERVICE"] = ""
        self.env.update(env or {})
        self.proc = None
        self.pgid = None
        self.pgids = []
        self.client = None
        self.starts = 0
        self._log_fh = None

    @property
    def target(self):
        return "127.0.0.1:%d" % self.port

    def tmp_dir(self):
        """TMPDIR for the daemon, where it makes its runtime directory.
        The data dir when its path is short; otherwise a short directory
        under /tmp, since a Unix socket path must fit in 108 bytes."""
        if len(self.dir) <= 48:
            self.rt_dir = self.dir
        else:
            self.rt_dir = tempfile.mkdtemp(prefix="ipam-rt-", dir="/tmp")
        return self.rt_dir

    def socket_roots(self):
        """Directories under which the daemon's runtime directory lies."""
        return sorted({self.dir, self.rt_dir})

    def start(self, wait=True, timeout=START_TIMEOUT):
        """Starts the supervisor; with wait, until Health/Check SERVING."""
        if not os.access(self.bin, os.X_OK):
            raise AssertionError("daemon binary not built: %s" % self.bin)
        if self._log_fh is not None:
            self._log_fh.close()
        self._log_fh = open(self.log_path, "ab")
        self._log_fh.write(b"==== start %d ====\n" % (self.starts + 1))
        self._log_fh.flush()
        self.proc = subprocess.Popen([self.bin], env=self.env, cwd=self.dir,
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._log_fh, stderr=self._log_fh,
                                     start_new_session=True)
        self.pgid = self.proc.pid
        self.pgids.append(self.pgid)
        self.starts += 1
        if self.client is None:
            self.client = Client(self.target)
        if wait:
            self.wait_serving(timeout)
            # Static conduits are applied asynchronously after start: wait
            # for their records so that tests start from a settled state.
            if self.env.get("IPAM_CONDUITS"):
                self.wait_conduits(self.env["IPAM_CONDUITS"].split(","), timeout)
        return self

    def families(self):
        """Trench record suffixes this instance serves (0: IPv4, 1: IPv6)."""
        fam = self.env.get("IPAM_IP_FAMILY", "dualstack").lower()
        return {"ipv4": [0], "ipv6": [1]}.get(fam, [0, 1])

    def wait_conduits(self, names, timeout=START_TIMEOUT):
        """Polls the database until every conduit in names has its record
        in every served family."""
        want = ["%s-%s-%d" % (n.strip(), self.env["IPAM_TRENCH_NAME"], f)
                for n in names if n.strip() for f in self.families()]

        def present():
            rows = self.rows()
            return all(w in rows for w in want)
        poll(present, timeout, 0.05, "conduit records %s" % want)

    def wait_serving(self, timeout=START_TIMEOUT, service=""):
        """Polls Health/Check until SERVING; fails early if the supervisor
        exits, with its log in the message."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("daemon exited with %s before serving\n%s"
                                     % (self.proc.returncode, self.log_tail()))
            # A fresh channel per probe: a channel that failed to connect
            # sits in gRPC's reconnect backoff (seconds) whatever its options.
            probe = Client(self.target)
            try:
                last = probe.health(service, timeout=1.0)
            except RpcError as e:
                last = e
            finally:
                probe.close()
            if last == "SERVING":
                if self.client is not None:
                    self.client.close()
                self.client = Client(self.target)
                return
            time.sleep(0.05)
        raise AssertionError("daemon not SERVING after %.0fs (last: %s)\n%s"
                             % (timeout, last, self.log_tail()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Sends sig to the supervisor and waits for it to exit.

        Returns (exit code, seconds taken); the code is negative for a
        signal death, None if it did not exit within timeout (it is then
        killed). Worker pids seen before the stop are kept in
        self.last_workers for the caller to check.
        """
        if self.proc is None:
            return None, 0.0
        self.last_workers = self.workers() if self.running() else {}
        t0 = time.monotonic()
        try:
            self.proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.monotonic() - t0
        if rc is None:
            self.kill_all()
        return rc, took

    def kill_all(self):
        """SIGKILLs the supervisor and everything left in its process group."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for pid in self.leftovers():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def leftovers(self):
        """Pids still alive from this daemon: its process groups (one per
        start) plus the worker pids last seen (a worker might have left the
        group)."""
        pids = set()
        for pgid in self.pgids:
            pids.update(pids_in_group(pgid))
        for pid in getattr(self, "last_workers", {}).values():
            if pid_alive(pid) and role_of(pid) is not None:
                pids.add(pid)
        return sorted(pids)

    def close(self):
        """Final cleanup: stop, kill what is left, remove the scratch dir."""
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.running():
            self.stop(timeout=5.0)
        self.kill_all()
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def remove_dir(self):
        if self.rt_dir != self.dir:
            shutil.rmtree(self.rt_dir, ignore_errors=True)
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- workers --------------------------------------------------------

    def roles(self):
        """The workers this daemon runs: the nsp worker only when an NSP
        is in effect (IPAM_NSP_SERVICE not empty, IPAM_CONDUITS unset)."""
        nsp = not self.env.get("IPAM_CONDUITS") and self.env.get("IPAM_NSP_SERVICE") != ""
        return {r for r in ROLES if r != "nsp" or nsp}

    def workers(self):
        """{role: pid} of the supervisor's live worker children."""
        out = {}
        if not self.running():
            return out
        for pid in children_of(self.proc.pid):
            r = role_of(pid)
            if r is not None:
                out[r] = pid
        return out

    def wait_worker(self, role, not_pid=None, timeout=START_TIMEOUT):
        """Waits until a worker of role runs (other than not_pid); its pid."""
        def found():
            pid = self.workers().get(role)
            return pid if pid and pid != not_pid else None
        return poll(found, timeout, what="%s worker (not pid %s)" % (role, not_pid))

    def kill_worker(self, role, sig=signal.SIGKILL):
        """Sends sig to the worker of role; returns its pid."""
        pid = self.wait_worker(role, timeout=10.0)
        os.kill(pid, sig)
        return pid

    # -- logs -----------------------------------------------------------

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_records(self):
        """The JSON log records of this daemon, in order (Meridio's keys:
        severity, message, extra_data...)."""
        return json_lines(self.log_text())

    def log_tail(self, lines=80):
        text = self.log_text().splitlines()
        return "---- daemon stderr (%s, last %d lines) ----\n%s\n----" % (
            self.log_path, min(lines, len(text)), "\n".join(text[-lines:]))

    # -- data -----------------------------------------------------------

    def rows(self):
        return read_prefixes(self.db_path)


# ---------------------------------------------------------------------------
# sqlite helpers


PREFIX_COLUMNS = ("id", "name", "cidr", "parent_id", "updated_at", "expirable")

MERIDIO_DDL = [
    "CREATE TABLE `prefixes` (`id` text,`name` text,`cidr` text,`parent_id` text,"
    "`updated_at` datetime,`expirable` numeric DEFAULT false,PRIMARY KEY (`id`),"
    "CONSTRAINT `fk_prefixes_parent` FOREIGN KEY (`parent_id`) REFERENCES `prefixes`(`id`))",
    "CREATE INDEX `idx_prefixes_expirable` ON `prefixes`(`expirable`)",
    "CREATE INDEX `idx_prefixes_updated_at` ON `prefixes`(`updated_at`)",
    "CREATE UNIQUE INDEX `idx_parent_id_cidr` ON `prefixes`(`cidr`,`parent_id`)",
    "CREATE INDEX `idx_prefixes_parent_id` ON `prefixes`(`parent_id`)",
    "CREATE INDEX `idx_prefixes_name` ON `prefixes`(`name`)",
]

# go-sqlite3's text form of a UTC time: fraction without trailing zeros.
UPDATED_AT_RE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{0,8}[1-9])?\+00:00$")


def query_db_copy(db_path, sql):
    """The rows of sql, run on a copy of the database and its WAL.

    The daemon may hold the file with an exclusive lock, so the database and
    its WAL are copied to a scratch directory and the copy is read (sqlite
    rebuilds the WAL index from the WAL file and ignores an unfinished tail);
    the daemon's own file stays untouched.
    """
    tmp = tempfile.mkdtemp(prefix="ipam-db-", dir=TEST_TMP if os.path.isdir(TEST_TMP) else None)
    try:
        copy = os.path.join(tmp, "copy.db")
        shutil.copyfile(db_path, copy)
        if os.path.exists(db_path + "-wal"):
            shutil.copyfile(db_path + "-wal", copy + "-wal")
        con = sqlite3.connect(copy)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_prefixes(db_path):
    """All rows of the prefixes table as a {id: dict} map (query_db_copy)."""
    rows = {}
    for r in query_db_copy(db_path, "SELECT %s FROM prefixes" % ",".join(PREFIX_COLUMNS)):
        d = dict(zip(PREFIX_COLUMNS, r))
        rows[d["id"]] = d
    return rows


def structural(rows):
    """The rows without updated_at: what must not change on a no-op."""
    return {i: (r["name"], r["cidr"], r["parent_id"], int(r["expirable"]))
            for i, r in rows.items()}


def check_invariants(rows):
    """Problems of a prefixes table (a list of strings; empty when sound):
    every parent exists, every record lies inside its parent, no two
    children of one parent share or overlap a cidr, ids are Meridio's."""
    problems = []
    nets = {}
    for i, r in rows.items():
        try:
            nets[i] = ipaddress.ip_network(r["cidr"], strict=True)
        except ValueError as e:
            problems.append("%s: bad cidr %r (%s)" % (i, r["cidr"], e))
    by_parent = {}
    for i, r in rows.items():
        p = r["parent_id"] or ""
        if p == "":
            if r["name"] != i:
                problems.append("trench record %s has name %s" % (i, r["name"]))
            continue
        if i != "%s-%s" % (r["name"], p):
            problems.append("id %s is not <name>-<parent id>" % i)
        if p not in rows:
            problems.append("%s: parent %s missing" % (i, p))
            continue
        if i in nets and p in nets:
            if nets[i].version != nets[p].version or not nets[i].subnet_of(nets[p]):
                problems.append("%s (%s) not inside parent %s (%s)"
                                % (i, nets[i], p, nets[p]))
        by_parent.setdefault(p, []).append(i)
    for p, kids in by_parent.items():
        ks = sorted((k for k in kids if k in nets),
                    key=lambda k: (nets[k].version, int(nets[k].network_address)))
        for a, b in zip(ks, ks[1:]):
            if nets[a].version == nets[b].version and nets[a].overlaps(nets[b]):
                problems.append("children of %s overlap: %s %s and %s %s"
                                % (p, a, nets[a], b, nets[b]))
    return problems


def ipc_frame(payload):
    """One frame of the daemon's internal sockets: 4-byte big-endian length
    + payload (bytes)."""
    return len(payload).to_bytes(4, "big") + payload


def ipc_recv_frame(s):
    """One frame's payload read from socket s, or None when the peer closed."""
    buf = b""
    while len(buf) < 4:
        chunk = s.recv(4 - len(buf))
        if not chunk:
            return None
        buf += chunk
    n = int.from_bytes(buf, "big")
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return body


def meridio_id(*names):
    """Meridio's id of a record: names from the record up to the trench
    record, e.g. meridio_id('worker-1', 'conduit-a', 'default-0')."""
    return "-".join(names)


def write_meridio_db(path, rows):
    """Creates a registry.db as Meridio writes it: its DDL and the given rows
    (id, name, cidr, parent_id, updated_at, expirable)."""
    con = sqlite3.connect(path)
    try:
        for stmt in MERIDIO_DDL:
            con.execute(stmt)
        con.executemany("INSERT INTO `prefixes` (`id`,`name`,`cidr`,`parent_id`,"
                        "`updated_at`,`expirable`) VALUES (?,?,?,?,?,?)", rows)
        con.commit()
    finally:
        con.close()


# ---------------------------------------------------------------------------
# Fake NSP


class FakeNsp(fakensp.FakeNsp):
    """The team's fake NSP server (fakensp.py: start(port), set_conduits,
    stop()) with the address the daemon is given."""

    @property
    def target(self):
        return "127.0.0.1:%d" % self.port


# ---------------------------------------------------------------------------
# Test base class


class DaemonTest(unittest.TestCase):
    """Base class: tracks the daemons and fake NSPs a test starts, prints
    their logs when the test fails, and always cleans them up (through
    addCleanup, so also when setUp fails half way)."""

    def setUp(self):
        self._daemons = []
        self._nsps = []
        self.addCleanup(self._cleanup_all)

    def daemon(self, **kwargs):
        """A started Daemon (see Daemon.__init__), registered for cleanup."""
        start = kwargs.pop("start", True)
        d = Daemon(**kwargs)
        self._daemons.append(d)
        if start:
            d.start()
        return d

    def nsp(self, conduits=(), port=None):
        """A started FakeNsp listing `conduits`, registered for cleanup."""
        n = FakeNsp()
        n.set_conduits(list(conduits))
        self._nsps.append(n)
        n.start(port or 0)
        return n

    def _cleanup_all(self):
        outcome = getattr(self, "_outcome", None)
        failed = outcome is not None and not getattr(outcome, "success", True)
        for d in self._daemons:
            if failed and d.proc is not None:
                sys.stderr.write("\n" + d.log_tail(200) + "\n")
            d.close()
        for n in self._nsps:
            n.stop()
        for d in self._daemons:
            d.remove_dir()

    def assertSound(self, rows):
        problems = check_invariants(rows)
        self.assertEqual(problems, [], "database invariants broken")
