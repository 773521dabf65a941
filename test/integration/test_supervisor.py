"""The supervisor (build/bin/meridio-ipam) against fake workers.

A copy of the real supervisor runs from a temporary bin directory beside
supervisor_fake_worker.py installed as meridio-ipam-db/api/nsp, so that it
finds them through /proc/self/exe. The fakes log what they see to an events
file and are steered through control files (see the fake's docstring).
systemd is replaced by a datagram socket bound by the test (NOTIFY_SOCKET).
"""
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import unittest

BIN_DIR = os.environ.get("IPAM_BIN_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin"))
HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "supervisor_fake_worker.py")
WORKERS = ("db", "api", "nsp")


def wait_for(pred, timeout, step=0.05):
    """Polls pred until it returns something true or timeout passes."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)


def alive(pid):
    """True if pid runs (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Notify:
    """A NOTIFY_SOCKET stand-in: collects (time, fields) of every datagram."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.msgs = []
        self.lock = threading.Lock()
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(l.split("=", 1) for l in data.decode().splitlines() if "=" in l)
            with self.lock:
                self.msgs.append((time.monotonic(), fields))

    def with_key(self, key, since=0.0):
        with self.lock:
            return [(t, f) for t, f in self.msgs if key in f and t >= since]

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


class SupervisorTest(unittest.TestCase):
    def setUp(self):
        base = os.environ.get("IPAM_TEST_TMP")
        if base:
            os.makedirs(base, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix="sup.", dir=base)
        self.bin = os.path.join(self.tmp, "bin")
        self.ctl = os.path.join(self.tmp, "ctl")
        self.run_dir = os.path.join(self.tmp, "run")
        for d in (self.bin, self.ctl, self.run_dir):
            os.mkdir(d)
        shutil.copy2(os.path.join(BIN_DIR, "meridio-ipam"), self.bin)
        for name in WORKERS:
            dst = os.path.join(self.bin, "meridio-ipam-" + name)
            shutil.copy(FAKE, dst)
            os.chmod(dst, 0o755)
        self.proc = None
        self.notify = None
        self.stderr_path = os.path.join(self.tmp, "stderr")

    def tearDown(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for name in WORKERS:
            for pid in self.pids(name):
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
        if self.notify is not None:
            self.notify.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers ---------------------------------------------------------

    def start(self, notify=False, watchdog_usec=None, ignore_hup=False, **extra):
        env = {
            "PATH": "/usr/bin:/bin",
            "IPAM_DATA_SOURCE": os.path.join(self.tmp, "registry.db"),
            "IPAM_LOG_LEVEL": "DEBUG",
            "XDG_RUNTIME_DIR": self.run_dir,
            "FAKE_DIR": self.ctl,
        }
        if notify:
            self.notify = Notify(os.path.join(self.tmp, "notify.sock"))
            env["NOTIFY_SOCKET"] = self.notify.path
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        env.update({k: str(v) for k, v in extra.items()})
        env = {k: v for k, v in env.items() if extra.get(k, "") is not None}
        argv = [os.path.join(self.bin, "meridio-ipam")]
        if ignore_hup:
            # Started with SIGHUP ignored: the workers must not inherit it.
            argv = ["/bin/sh", "-c", 'trap "" HUP; exec "$0"'] + argv
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(argv, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.stderr)
        self.stderr.close()
        self.t0 = time.monotonic()

    def control(self, name, what, content=""):
        with open(os.path.join(self.ctl, "%s.%s" % (name, what)), "w") as f:
            f.write(content)

    def events(self):
        try:
            with open(os.path.join(self.ctl, "events")) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            parts = line.split(" ", 4)
            out.append((float(parts[0]), parts[1], int(parts[2]), parts[3],
                        parts[4] if len(parts) > 4 else ""))
        return out

    def starts(self, name):
        return [e for e in self.events() if e[1] == name and e[3] == "start"]

    def pids(self, name):
        return [e[2] for e in self.starts(name)]

    def logs(self, message=None):
        out = []
        with open(self.stderr_path) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue    # not ours: e.g. a library writing to stderr
                if message is None or rec.get("message") == message:
                    out.append(rec)
        return out

    def wait_ready(self, timeout=10):
        if not wait_for(lambda: self.logs("all workers ready"), timeout):
            with open(self.stderr_path) as f:
                self.fail("workers never all ready; log:\n" + f.read())

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.fail("supervisor still running after %.1f s" % timeout)

    def all_worker_pids(self):
        return [p for name in WORKERS for p in self.pids(name)]

    def rundirs(self):
        return os.listdir(self.run_dir)

    # -- tests -----------------------------------------------------------

    def test_workers_get_the_contract(self):
        self.start(ignore_hup=True)
        self.wait_ready()
        rundirs = self.rundirs()
        self.assertEqual(len(rundirs), 1)
        self.assertTrue(rundirs[0].startswith("meridio-ipam."))
        rundir = os.path.join(self.run_dir, rundirs[0])
        self.assertEqual(stat.S_IMODE(os.stat(rundir).st_mode), 0o700)
        sock = os.path.join(rundir, "db.sock")
        self.assertEqual(stat.S_IMODE(os.stat(sock).st_mode), 0o600)
        # The listening socket is the supervisor's: a client can connect.
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(sock)
        c.close()
        for name in WORKERS:
            (start,) = self.starts(name)
            facts = dict(kv.split("=", 1) for kv in start[4].split())
            self.assertEqual(facts["fds"], "0,1,2,3,4,5" if name == "db" else "0,1,2,3", name)
            self.assertEqual(facts["rundir"], rundir)
            self.assertEqual(facts["pdeathsig"], str(int(signal.SIGTERM)))
            self.assertEqual(facts["nnp"], "1")
            self.assertEqual(int(facts["sigblk"], 16), 0)
            self.assertEqual(int(facts["sigign"], 16) & (1 << (signal.SIGHUP - 1)), 0,
                             "SIGHUP still ignored in " + name)
            self.assertEqual(facts["listen"], "1" if name == "db" else "-")

    def test_runtime_dir_falls_back_to_tmpdir_then_tmp(self):
        self.start(XDG_RUNTIME_DIR=None, TMPDIR=self.run_dir)
        self.wait_ready()
        (rundir,) = self.rundirs()
        self.assertEqual(self.starts("db")[0][4].split("rundir=")[1].split()[0],
                         os.path.join(self.run_dir, rundir))
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.wait_exit(5), 0)
        self.assertEqual(self.rundirs(), [])
        os.unlink(os.path.join(self.ctl, "events"))
        self.start(XDG_RUNTIME_DIR=None)
        self.wait_ready()
        used = self.starts("db")[0][4].split("rundir=")[1].split()[0]
        self.assertTrue(used.startswith("/tmp/meridio-ipam."), used)
        self.assertTrue(os.path.isdir(used))
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.wait_exit(5), 0)
        self.assertFalse(os.path.exists(used))

    def test_notify_ready_status_watchdog(self):
        self.start(notify=True, watchdog_usec=400000)
        ok = wait_for(lambda: self.notify.with_key("READY"), 10)
        self.assertTrue(ok, "no READY=1")
        (_, ready), = ok
        self.assertEqual(ready["READY"], "1")
        self.assertEqual(ready.get("STATUS"), "serving: db api nsp ready")
        self.assertTrue(wait_for(lambda: len(self.notify.with_key("WATCHDOG")) >= 3, 5))
        for _, f in self.notify.with_key("WATCHDOG"):
            self.assertEqual(f["WATCHDOG"], "1")
        for name in WORKERS:
            facts = self.starts(name)[0][4]
            self.assertIn("notify=- watchdog=-", facts, "systemd variables leaked to " + name)
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.wait_exit(5), 0)
        self.assertTrue(wait_for(lambda: self.notify.with_key("STOPPING"), 2))

    def maps_libsystemd(self):
        with open("/proc/%d/maps" % self.proc.pid) as f:
            return "libsystemd.so" in f.read()

    def test_libsystemd_loaded_only_for_systemd(self):
        # Without NOTIFY_SOCKET or WATCHDOG_USEC nobody listens: the
        # supervisor must not map libsystemd (and its dependencies).
        self.start()
        self.assertTrue(wait_for(lambda: self.logs("all workers ready"), 10))
        self.assertFalse(self.maps_libsystemd())
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.wait_exit(5), 0)
        for extra in ({"notify": True}, {"watchdog_usec": 5000000}):
            self.start(**extra)
            self.assertTrue(wait_for(lambda: self.logs("all workers ready"), 10))
            self.assertTrue(self.maps_libsystemd(), str(extra))
            self.proc.send_signal(signal.SIGTERM)
            self.assertEqual(self.wait_exit(5), 0)

    def test_unusable_libsystemd_is_a_clear_error(self):
        # NOTIFY_SOCKET set and the library found lacks sd_notify: the
        # supervisor says so and exits instead of never reporting READY.
        libdir = os.path.join(self.tmp, "lib")
        os.mkdir(libdir)
        src = os.path.join(libdir, "empty.c")
        with open(src, "w") as f:
            f.write("int ipam_test_nothing;\n")
        subprocess.run(["cc", "-shared", "-fPIC", "-o",
                        os.path.join(libdir, "libsystemd.so.0"), src], check=True)
        self.start(notify=True, LD_LIBRARY_PATH=libdir)
        self.assertEqual(self.wait_exit(5), 1)
        (rec,) = self.logs("cannot notify systemd")
        self.assertIn("NOTIFY_SOCKET is set but libsystemd.so.0 lacks sd_notify",
                      rec["extra_data"]["error"])
        self.assertEqual(self.starts("db") + self.starts("api"), [])

    def test_watchdog_stops_when_a_worker_is_silent(self):
        self.start(notify=True, watchdog_usec=600000)
        self.assertTrue(wait_for(lambda: len(self.notify.with_key("WATCHDOG")) >= 2, 10))
        self.control("nsp", "mute")
        # Pings may go on for up to one interval after the last beat.
        time.sleep(1.0)
        quiet_from = time.monotonic()
        time.sleep(1.5)
        self.assertEqual(self.notify.with_key("WATCHDOG", since=quiet_from), [])
        self.assertTrue(self.logs("watchdog ping withheld: a worker is silent"))
        self.assertEqual(self.proc.poll(), None)
        os.unlink(os.path.join(self.ctl, "nsp.mute"))
        resumed = time.monotonic()
        self.assertTrue(wait_for(lambda: self.notify.with_key("WATCHDOG", since=resumed), 3),
                        "pings did not resume")

    def test_restart_after_kill_9(self):
        self.start(notify=True, IPAMD_RESTART_MIN_RUN_MS=300)
        self.wait_ready()
        time.sleep(0.4)
        (old,) = self.pids("api")
        os.kill(old, signal.SIGKILL)
        self.assertTrue(wait_for(lambda: len(self.pids("api")) == 2, 5), "api not restarted")
        new = self.pids("api")[1]
        self.assertNotEqual(new, old)
        self.assertTrue(alive(new))
        died = [r for r in self.logs("worker died") if r["extra_data"]["worker"] == "api"]
        self.assertEqual(len(died), 1)
        self.assertEqual(died[0]["extra_data"]["pid"], old)
        self.assertEqual(died[0]["extra_data"]["status"], "signal 9 (Killed)")
        self.assertEqual(died[0]["extra_data"]["restart_in_ms"], 0)
        # db and nsp were left alone, and the supervisor is ready again.
        self.assertEqual(len(self.pids("db")), 1)
        self.assertEqual(len(self.pids("nsp")), 1)
        self.assertTrue(wait_for(lambda: len(self.logs("worker ready")) >= 4, 5))
        self.assertEqual(self.proc.poll(), None)

    def test_backoff_grows_to_the_cap(self):
        self.control("api", "exit", "1")
        # A worker that ran for IPAMD_RESTART_MIN_RUN_MS (1 s by default) is
        # restarted at once; a fake worker slowed past that by a loaded CI
        # machine then broke the series with a 0. Make it unreachable here.
        self.start(notify=True, IPAMD_RESTART_FLOOR_MS=100, IPAMD_RESTART_CAP_MS=800,
                   IPAMD_RESTART_MAX_DEATHS=63, IPAMD_RESTART_MIN_RUN_MS=60000)
        self.assertTrue(wait_for(lambda: len(self.pids("api")) >= 7, 15))
        delays = [r["extra_data"]["restart_in_ms"] for r in self.logs("worker died") if r["extra_data"]["worker"] == "api"]
        self.assertEqual(delays[:6], [100, 200, 400, 800, 800, 800])
        t = [e[0] for e in self.starts("api")]
        gaps = [b - a for a, b in zip(t, t[1:])]
        for gap, want in zip(gaps, [0.1, 0.2, 0.4, 0.8, 0.8]):
            self.assertGreaterEqual(gap, want - 0.01)
            self.assertLess(gap, want + 0.6)
        self.assertTrue(self.notify.with_key("STATUS"))
        self.assertIn("restarting api", [f["STATUS"] for _, f in self.notify.with_key("STATUS")])
        self.assertEqual(self.proc.poll(), None)

    def test_gives_up_after_the_death_limit(self):
        self.control("api", "exit", "1")
        self.start(IPAMD_RESTART_FLOOR_MS=10, IPAMD_RESTART_CAP_MS=20, IPAMD_RESTART_MAX_DEATHS=3)
        self.assertEqual(self.wait_exit(10), 1)
        self.assertEqual(len(self.pids("api")), 4)
        self.assertTrue(self.logs("worker died too often"))
        for pid in self.all_worker_pids():
            self.assertTrue(wait_for(lambda: not alive(pid), 2), "worker %d left" % pid)
        self.assertEqual(self.rundirs(), [])

    def test_exit_78_stops_everything_at_once(self):
        self.control("db", "exit", "78")
        self.start()
        self.assertEqual(self.wait_exit(3), 1)
        self.assertLess(time.monotonic() - self.t0, 2.5)
        self.assertEqual(len(self.pids("db")), 1, "a permanent failure was restarted")
        self.assertTrue(self.logs("worker failed permanently"))
        for pid in self.all_worker_pids():
            self.assertTrue(wait_for(lambda: not alive(pid), 2), "worker %d left" % pid)
        self.assertEqual(self.rundirs(), [])

    def test_sigterm_orderly_stop(self):
        self.start()
        self.wait_ready()
        pids = self.all_worker_pids()
        t = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.wait_exit(5), 0)
        self.assertLess(time.monotonic() - t, 5.0)
        for pid in pids:
            self.assertFalse(alive(pid), "worker %d left" % pid)
        terms = {e[1]: e[0] for e in self.events() if e[3] == "term"}
        self.assertEqual(set(terms), set(WORKERS))
        self.assertGreaterEqual(terms["db"], terms["api"])
        self.assertGreaterEqual(terms["db"], terms["nsp"])
        self.assertEqual(self.rundirs(), [])

    def test_sigterm_kills_a_stubborn_worker(self):
        self.control("api", "ignoreterm")
        self.start()
        self.wait_ready()
        (api,) = self.pids("api")
        t = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        self.assertEqual(self.wait_exit(6), 0)
        took = time.monotonic() - t
        self.assertGreaterEqual(took, 4.4)
        self.assertLess(took, 5.0)
        self.assertFalse(alive(api))
        self.assertTrue(self.logs("worker did not stop; killing it"))
        # db was asked after 2 s even though api was still there.
        terms = {e[1]: e[0] for e in self.events() if e[3] == "term"}
        self.assertIn("db", terms)
        self.assertGreaterEqual(terms["db"] - t, 1.9)

    def test_workers_die_with_a_killed_supervisor(self):
        self.start(FAKE_IGNORE_EOF=1)
        self.wait_ready()
        pids = self.all_worker_pids()
        self.proc.kill()
        self.proc.wait(5)
        for pid in pids:
            self.assertTrue(wait_for(lambda: not alive(pid), 3), "worker %d outlived it" % pid)
        # They were told by PR_SET_PDEATHSIG (EOF on fd 3 is ignored here).
        terms = {e[1] for e in self.events() if e[3] == "term"}
        self.assertEqual(terms, set(WORKERS))

    def test_garbage_on_status_channel_restarts_the_worker(self):
        self.control("api", "garbage")
        self.start()
        self.assertTrue(wait_for(lambda: len(self.pids("api")) == 2, 5), "api not restarted")
        first = self.pids("api")[0]
        self.assertTrue(self.logs("nonsense on status channel; killing worker"))
        died = [r for r in self.logs("worker died") if r["extra_data"]["worker"] == "api"]
        self.assertEqual(died[0]["extra_data"]["pid"], first)
        self.assertEqual(died[0]["extra_data"]["status"], "signal 9 (Killed)")
        self.wait_ready()
        self.assertEqual(self.proc.poll(), None)

    def test_bad_env_exits_2_and_creates_nothing(self):
        for var, value in (("IPAM_PORT", "0"), ("IPAMD_RESTART_CAP_MS", "soon")):
            self.start(**{var: value})
            self.assertEqual(self.wait_exit(5), 2)
            with open(self.stderr_path) as f:
                lines = f.read().splitlines()
            self.assertEqual(len(lines), 1, lines)
            self.assertIn(var, lines[0])
            self.assertIn(value, lines[0])
            self.assertEqual(self.rundirs(), [])
            self.assertEqual(self.events(), [])

    def test_missing_worker_binary(self):
        os.unlink(os.path.join(self.bin, "meridio-ipam-nsp"))
        self.start()
        self.assertEqual(self.wait_exit(5), 1)
        (rec,) = [r for r in self.logs() if r["message"].startswith("worker binary not found")]
        self.assertEqual(rec["extra_data"]["binary"], "meridio-ipam-nsp")
        self.assertIn("libexec", rec["message"])
        self.assertEqual(self.rundirs(), [])
        self.assertEqual(self.events(), [])

    def test_static_conduits_run_no_nsp_worker(self):
        """IPAM_CONDUITS: the db worker makes the conduits, so the nsp
        worker is neither looked for nor started, and STATUS= says where
        the conduits come from."""
        os.unlink(os.path.join(self.bin, "meridio-ipam-nsp"))
        self.start(notify=True, IPAM_CONDUITS="a,b",
                   IPAM_NSP_SERVICE="nsp-service:7778")
        ok = wait_for(lambda: self.notify.with_key("READY"), 10)
        self.assertTrue(ok, "no READY=1")
        self.assertEqual(ok[0][1].get("STATUS"), "serving: db api ready, 2 static conduits")
        self.assertEqual(len(self.starts("db")), 1)
        self.assertEqual(len(self.starts("api")), 1)
        self.assertEqual(self.starts("nsp"), [])
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.wait_exit(5), 0)

    def test_no_conduit_source_runs_no_nsp_worker(self):
        self.start(notify=True, IPAM_NSP_SERVICE="")
        ok = wait_for(lambda: self.notify.with_key("READY"), 10)
        self.assertTrue(ok, "no READY=1")
        self.assertEqual(ok[0][1].get("STATUS"), "serving: db api ready, no conduit source")
        self.assertEqual(self.starts("nsp"), [])
        with open(os.path.join(self.run_dir, self.rundirs()[0], "restarts")) as f:
            self.assertEqual(f.read(), "db 0\napi 0\n")

    def test_real_workers_restart_and_stop(self):
        """The same supervisor with the real db and api workers (static
        conduits: no nsp worker)."""
        for name in WORKERS:
            shutil.copy2(os.path.join(BIN_DIR, "meridio-ipam-" + name), self.bin)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        self.start(notify=True, watchdog_usec=2000000, IPAM_PORT=port, IPAM_CONDUITS="a,b",
                   IPAM_LOG_LEVEL="INFO", IPAMD_RESTART_MIN_RUN_MS=100)
        serving = "serving: db api ready, 2 static conduits"
        self.assertTrue(wait_for(lambda: self.notify.with_key("READY"), 15), "no READY=1")
        for name in ("db", "api"):
            time.sleep(0.2)
            pid = [r["extra_data"]["pid"] for r in self.logs("worker started") if r["extra_data"]["worker"] == name][-1]
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            again = wait_for(lambda: [f for _, f in self.notify.with_key("STATUS", since=killed_at)
                                      if f["STATUS"] == serving], 15)
            self.assertTrue(again, "not serving again after kill -9 of " + name)
            died = [r for r in self.logs("worker died") if r["extra_data"]["pid"] == pid]
            self.assertEqual(died[0]["extra_data"]["worker"], name)
        self.assertTrue(self.notify.with_key("WATCHDOG"))
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.wait_exit(5), 0)
        stopped = {r["extra_data"]["worker"]: r["extra_data"]["status"] for r in self.logs("worker stopped")}
        self.assertEqual(stopped, {"db": "exit 0", "api": "exit 0"})
        self.assertEqual(self.rundirs(), [])

    def test_flags(self):
        exe = os.path.join(self.bin, "meridio-ipam")
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=5)
        self.assertEqual(out.returncode, 0)
        self.assertTrue(out.stdout.startswith("meridio-ipam "))
        out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=5)
        self.assertEqual(out.returncode, 0)
        self.assertIn("IPAM_PORT", out.stdout)
        env = {"PATH": "/usr/bin:/bin", "IPAM_PORT": "8888", "XDG_RUNTIME_DIR": self.run_dir}
        out = subprocess.run([exe, "--debug"], capture_output=True, text=True, timeout=5, env=env)
        self.assertEqual(out.returncode, 0)
        self.assertEqual(str(json.loads(out.stdout)["IPAM_PORT"]), "8888")
        self.assertEqual(self.rundirs(), [])
        out = subprocess.run([exe, "--nonsense"], capture_output=True, text=True, timeout=5)
        self.assertEqual(out.returncode, 2)


if __name__ == "__main__":
    unittest.main()
