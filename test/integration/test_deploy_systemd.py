"""systemd unit, example env file and the install rules.

The unit is checked with the real systemd-analyze (verify, and the offline
security exposure). The install rules are run for real: `cmake --install
--prefix` and `make install DESTDIR=`; the DESTDIR copy is then run in place
(a private mount namespace binds it over the prefix) and must serve. The notify protocol itself (READY=1, STATUS=,
WATCHDOG=1) is covered by test_supervisor.py.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

import harness

TOP = Path(__file__).resolve().parents[2]
UNIT = TOP / "systemd" / "meridio-ipam.service"
ENV_EXAMPLE = TOP / "systemd" / "meridio-ipam.env"
BIN = Path(os.environ.get("IPAM_BIN_DIR", TOP / "build" / "bin"))
BUILD = BIN.parent
WORKERS = ("meridio-ipam-db", "meridio-ipam-api", "meridio-ipam-nsp")
DYN_UID = 61234         # in systemd's DynamicUser= range, owned by nobody here


def unit_entries(text):
    """(section, key, value) for every assignment of a unit file, in order."""
    out, section = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def example_env():
    """The example env file with every line uncommented, as a dict."""
    env = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^#?((?:IPAM|SPIFFE)_[A-Z0-9_]+)=(.*)$", line)
        if m:
            env[m.group(1)] = m.group(2)
    return env


class Base(unittest.TestCase):
    def setUp(self):
        base = os.environ.get("IPAM_TEST_TMP")
        if base:
            os.makedirs(base, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix="deploy-sd-", dir=base)
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def verify(self, text):
        """systemd-analyze verify on a copy of a unit; returns the result."""
        d = tempfile.mkdtemp(dir=self.tmp)
        p = os.path.join(d, "meridio-ipam.service")
        with open(p, "w") as f:
            f.write(text)
        return harness.run(["systemd-analyze", "verify", p])


class Unit(Base):
    def test_verify_clean(self):
        # ExecStart must name a real executable for verify: use the build's.
        exe = BIN / "meridio-ipam"
        self.assertTrue(os.access(exe, os.X_OK), f"{exe} not built")
        text = re.sub(r"(?m)^ExecStart=.*$", f"ExecStart={exe}", UNIT.read_text())
        r = self.verify(text)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr.strip(), "", "verify warned")

    def test_verify_catches_mistakes(self):
        # The clean check above means something: verify reports a bad key,
        # a bad value and a missing executable.
        good = re.sub(r"(?m)^ExecStart=.*$", "ExecStart=/bin/true", UNIT.read_text())
        self.assertEqual(self.verify(good).stderr.strip(), "")
        r = self.verify(good.replace("\nType=notify", "\nTpye=notify"))
        self.assertIn("Unknown key", r.stderr)
        r = self.verify(good.replace("\nKillMode=mixed", "\nKillMode=gently"))
        self.assertIn("kill mode", r.stderr)
        r = self.verify(good.replace("ExecStart=/bin/true", "ExecStart=/nonexistent/ipam"))
        self.assertNotEqual(r.returncode, 0)

    def test_security_exposure(self):
        d = tempfile.mkdtemp(dir=self.tmp)
        p = os.path.join(d, "meridio-ipam.service")
        with open(p, "w") as f:
            f.write(re.sub(r"(?m)^ExecStart=.*$", "ExecStart=/bin/true", UNIT.read_text()))
        r = harness.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", p])
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", r.stdout)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        self.assertLessEqual(float(m.group(1)), 2.0, r.stdout)
        for line in ("PrivateDevices=", "ProtectSystem=", "NoNewPrivileges=",
                     "MemoryDenyWriteExecute=", "SystemCallArchitectures=",
                     "RestrictAddressFamilies=~AF_PACKET", "ProtectKernelModules="):
            self.assertRegex(r.stdout, r"✓ " + re.escape(line), line)

    def test_settings(self):
        entries = unit_entries(UNIT.read_text())
        svc = {}
        for section, k, v in entries:
            if section == "Service":
                svc.setdefault(k, []).append(v)
        one = {k: v[-1] for k, v in svc.items()}
        self.assertEqual(one["Type"], "notify")
        self.assertEqual(one["NotifyAccess"], "main")
        self.assertEqual(one["Restart"], "on-failure")
        self.assertEqual(one["KillMode"], "mixed")
        self.assertRegex(one["WatchdogSec"], r"^[1-9][0-9]*s$")
        self.assertEqual(one["DynamicUser"], "yes")
        self.assertEqual(one["CapabilityBoundingSet"], "")
        self.assertEqual(one["RestrictAddressFamilies"], "AF_UNIX AF_INET AF_INET6")
        self.assertIn("@system-service", svc["SystemCallFilter"])
        for k in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices",
                  "MemoryDenyWriteExecute", "LockPersonality", "RestrictNamespaces",
                  "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs"):
            self.assertEqual(one[k], "yes", k)
        self.assertEqual(one["ProtectSystem"], "strict")
        self.assertEqual(one["SystemCallArchitectures"], "native")
        # The data file lives in the StateDirectory, the runtime dir in the
        # RuntimeDirectory: the only places ProtectSystem=strict lets it write.
        env = dict(v.split("=", 1) for v in svc["Environment"])
        self.assertEqual(os.path.dirname(env["IPAM_DATA_SOURCE"]),
                         "/var/lib/" + one["StateDirectory"])
        self.assertEqual(env["XDG_RUNTIME_DIR"], "%t/" + one["RuntimeDirectory"])
        # The env file is optional and comes after Environment= (it wins).
        self.assertEqual(one["EnvironmentFile"], "-/etc/meridio-ipam/env")
        keys = [k for s, k, _ in entries if s == "Service"]
        self.assertLess(max(i for i, k in enumerate(keys) if k == "Environment"),
                        keys.index("EnvironmentFile"))

    def test_env_example_shows_defaults(self):
        # Uncommenting the whole example changes nothing but the two values
        # it sets on purpose: every other line is the daemon's default.
        exe = str(BIN / "meridio-ipam")
        ex = example_env()
        for k in ("IPAM_PORT", "IPAM_TRENCH_NAME", "IPAM_PREFIX_IPV4", "IPAM_PREFIX_IPV6",
                  "IPAM_IP_FAMILY", "IPAM_LOG_LEVEL", "IPAM_NSP_SERVICE", "IPAM_CONDUITS",
                  "IPAM_GARBAGE_COLLECTION_THRESHOLD", "IPAM_GRPC_MAX_BACKOFF"):
            self.assertIn(k, ex)
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        chosen = {k: ex[k] for k in ("IPAM_DATA_SOURCE", "IPAM_CONDUITS")}
        a = harness.run([exe, "--debug"], timeout=30, env={**base, **ex})
        b = harness.run([exe, "--debug"], timeout=30, env={**base, **chosen})
        self.assertEqual(a.returncode, 0, a.stderr)
        self.assertEqual(b.returncode, 0, b.stderr)
        self.assertEqual(json.loads(a.stdout), json.loads(b.stdout))
        # And it is complete: every variable the daemon reports is in it.
        self.assertEqual(sorted(set(json.loads(a.stdout)) - set(ex)), [])


def syscall_groups():
    """systemd's syscall groups as systemd-analyze lists them, expanded."""
    r = harness.run(["systemd-analyze", "syscall-filter", "--no-pager"])
    raw, cur = {}, None
    for line in r.stdout.splitlines():
        if line.startswith("@"):
            cur = line.strip()
            raw[cur] = []
        elif not line.startswith(" "):
            cur = None          # a top-level comment ends the group
        elif cur and line.strip() and not line.strip().startswith("#"):
            raw[cur].append(line.strip())

    def expand(name, seen=()):
        out = set()
        for e in raw.get(name, []):
            out |= expand(e, seen + (name,)) if e.startswith("@") and e not in seen else {e}
        return out
    return {g: expand(g) for g in raw}


def unit_filter():
    """The syscalls the unit allows: its SystemCallFilter= lines in order
    (an allow list, then ~ removals), as systemd applies them."""
    groups = syscall_groups()
    allowed = None
    for section, k, v in unit_entries(UNIT.read_text()):
        if section != "Service" or k != "SystemCallFilter":
            continue
        deny = v.startswith("~")
        names = set()
        for w in v.lstrip("~").split():
            names |= groups[w] if w.startswith("@") else {w}
        if deny:
            allowed = (allowed if allowed is not None else set()) - names
        else:
            allowed = (allowed or set()) | names
    return allowed


@harness.needs(harness.why_no_other_user)
class Sandbox(Base):
    """Runs the daemon under strace through start, health, allocate, release
    and stop, and checks what it did against what the unit permits: the
    system-call filter, the address families, W^X memory, and writes only
    below the data and runtime directories (ProtectSystem=strict)."""

    def test_daemon_stays_inside_the_unit(self):
        r = harness.run([str(TOP / "scripts" / "deps.sh"), "strace"])
        self.assertEqual(r.returncode, 0, r.stderr)
        allowed = unit_filter()
        self.assertIn("openat", allowed)
        self.assertNotIn("setuid", allowed)
        port = harness.free_port()
        # The daemon's user must reach its files and program even when the
        # checkout sits under a directory only root can enter.
        self.tmp = harness.reachable_tmpdir("deploy-sd-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        data = os.path.join(self.tmp, "data")
        rt = os.path.join(self.tmp, "rt")
        os.mkdir(data)
        os.mkdir(rt)
        env = {"PATH": "/usr/bin:/bin", "IPAM_PORT": str(port),
               "IPAM_DATA_SOURCE": os.path.join(data, "registry.db"),
               "XDG_RUNTIME_DIR": rt, "IPAM_CONDUITS": "lb", "IPAM_LOG_LEVEL": "INFO",
               # systemd sets it for RuntimeDirectory=: the admin socket's home
               "RUNTIME_DIRECTORY": rt,
               # the unit's Environment= puts it in the runtime directory
               "IPAM_HEALTH_SOCKET": os.path.join(rt, "health.sock")}
        exe = os.path.join(harness.reachable_bin_dir(), "meridio-ipam")
        trace = os.path.join(self.tmp, "strace.log")
        logpath = os.path.join(self.tmp, "daemon.log")
        log = open(logpath, "w")
        self.addCleanup(log.close)
        # As the unit runs it: a user of its own (DynamicUser=), no new
        # privileges, umask 0077; strace runs as that user too, so that only
        # the daemon's own calls are traced.
        for d in (self.tmp, data, rt):
            os.chown(d, DYN_UID, DYN_UID)
        os.chmod(self.tmp, 0o755)
        proc = subprocess.Popen(["setpriv", f"--reuid={DYN_UID}", f"--regid={DYN_UID}",
                                 "--clear-groups", "--no-new-privs",
                                 "strace", "-f", "-qq", "-s", "256", "-o", trace,
                                 exe],
                                preexec_fn=lambda: os.umask(0o077),
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd="/")
        self.addCleanup(Install.stop, proc)
        ctl = [str(BIN / "ipamctl")]
        target = ["--target", f"127.0.0.1:{port}"]
        ok = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if harness.run(ctl + ["health"] + target, timeout=10).returncode == 0:
                ok = True
                break
            time.sleep(0.5)
        self.assertTrue(ok, Path(logpath).read_text()[-3000:])
        for fam in ("ipv4", "ipv6"):
            a = harness.run(ctl + ["allocate", "--conduit", "lb", "--node", "n1", "--name", "c1",
                           "--family", fam, "--timeout", "20s"] + target, timeout=30)
            self.assertEqual(a.returncode, 0, a.stdout + a.stderr)
            # ipamctl (root) finds $RUNTIME_DIRECTORY/admin.sock by itself.
            r = harness.run(ctl + ["release", "--conduit", "lb", "--node", "n1", "--name", "c1",
                           "--family", fam, "--timeout", "20s"], timeout=30,
                    env={"PATH": "/usr/bin:/bin", "RUNTIME_DIRECTORY": rt})
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertEqual(r.stdout.strip(), a.stdout.strip().split("/")[0])
        # SIGTERM goes to the supervisor (strace's child), as systemd's
        # KillMode=mixed does; strace exits with its exit status.
        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        self.assertEqual(len(kids), 1, kids)
        os.kill(int(kids[0]), signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            code = None
        self.assertEqual(code, 0, Path(logpath).read_text()[-3000:])

        calls, families, wx, writes, devs = set(), set(), [], set(), set()
        for line in Path(trace).read_text(errors="replace").splitlines():
            m = re.match(r"^\d+\s+([a-z0-9_]+)\((.*)", line)
            if not m:
                continue
            name, rest = m.groups()
            calls.add(name)
            if name in ("socket", "socketpair"):
                families.add(rest.split(",")[0])
            if name in ("mmap", "mprotect", "pkey_mprotect") and \
                    "PROT_WRITE" in rest and "PROT_EXEC" in rest:
                wx.append(line)
            o = re.match(r'^(?:AT_FDCWD|\d+)?,?\s*"([^"]*)", ([A-Z_|]+)', rest)
            if name in ("openat", "open", "creat") and o:
                path, flags = o.groups()
                if path.startswith("/dev/"):
                    devs.add(path)
                if re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", flags) and \
                        not path.startswith("/dev/"):
                    writes.add(path)
            if name in ("mkdir", "mkdirat", "unlink", "unlinkat", "rename", "renameat",
                        "renameat2", "bind"):
                for path in re.findall(r'"(/[^"]*)"', rest):
                    writes.add(path)
        # The trace is the daemon's whole life: it bound, served and wrote.
        self.assertTrue({"bind", "listen", "execve"} <= calls, sorted(calls))
        self.assertIn(env["IPAM_DATA_SOURCE"], writes)
        # execve, exit_group and the like are in every filter; the rest must
        # be in the unit's.
        self.assertEqual(sorted(calls - allowed), [], "system calls the unit's filter refuses")
        self.assertTrue(families, "no socket seen")
        unit_families = [v for sec, k, v in unit_entries(UNIT.read_text())
                         if sec == "Service" and k == "RestrictAddressFamilies"]
        self.assertEqual(sorted(families - set(unit_families[-1].split())), [])
        self.assertEqual(wx, [], "writable and executable memory")
        outside = sorted(p for p in writes
                         if not (p.startswith(data + "/") or p.startswith(rt + "/")))
        self.assertEqual(outside, [], "writes outside the state and runtime dirs")
        # PrivateDevices= leaves only the pseudo devices.
        self.assertEqual(sorted(devs - {"/dev/null", "/dev/zero", "/dev/full", "/dev/random",
                                        "/dev/urandom", "/dev/tty"}), [])


class Install(Base):
    def check_tree(self, root, prefix):
        """Binaries, workers, unit and env example under root; the unit's
        ExecStart names <prefix>/bin/meridio-ipam."""
        root = Path(root)
        for exe in ("meridio-ipam", "ipamctl"):
            self.assertTrue(os.access(root / "bin" / exe, os.X_OK), exe)
        for w in WORKERS:
            self.assertTrue(os.access(root / "libexec" / "meridio-ipam" / w, os.X_OK), w)
            self.assertFalse((root / "bin" / w).exists(), w + " must not be in bin")
        unit = root / "lib" / "systemd" / "system" / "meridio-ipam.service"
        text = unit.read_text()
        execs = re.findall(r"(?m)^ExecStart=(.*)$", text)
        self.assertEqual(execs, [f"{prefix}/bin/meridio-ipam"])
        # Apart from ExecStart the installed unit is the source unit.
        src = UNIT.read_text()
        self.assertEqual(re.sub(r"(?m)^ExecStart=.*$", "", text),
                         re.sub(r"(?m)^ExecStart=.*$", "", src))
        self.assertEqual((root / "share" / "doc" / "meridio-ipam" / "meridio-ipam.env").read_text(),
                         ENV_EXAMPLE.read_text())
        return unit

    def test_cmake_install_prefix(self):
        prefix = os.path.join(self.tmp, "prefix")
        r = harness.run(["cmake", "--install", str(BUILD), "--prefix", prefix])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        unit = self.check_tree(prefix, prefix)
        # The installed unit verifies as it is: its ExecStart is real.
        v = harness.run(["systemd-analyze", "verify", str(unit)])
        self.assertEqual(v.returncode, 0, v.stderr)
        self.assertEqual(v.stderr.strip(), "")
        # Installed under a prefix other than the configured one, the
        # supervisor still finds its workers (in ../libexec/meridio-ipam).
        self.assert_serves([prefix + "/bin/meridio-ipam"], prefix + "/bin/ipamctl")


    @staticmethod
    def stop(proc):
        """SIGTERM, bounded wait, SIGKILL as a last resort; returns the code."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        return proc.returncode

    @harness.needs(harness.why_no_private_mounts)
    def test_make_install_destdir(self):
        cache = (BUILD / "CMakeCache.txt").read_text()
        prefix = re.search(r"(?m)^CMAKE_INSTALL_PREFIX:PATH=(.*)$", cache).group(1)
        dest = os.path.join(self.tmp, "dest")
        r = harness.run(["make", "-C", str(TOP), "install", f"BUILD={BUILD}", f"DESTDIR={dest}"],
                timeout=600)
        self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
        # Everything lands under DESTDIR; nothing names DESTDIR inside.
        self.check_tree(dest + prefix, prefix)
        self.assertEqual(os.listdir(dest), [prefix.strip("/").split("/")[0]])

        # Run what was installed as if it were in place: in a private mount
        # namespace, DESTDIR's copy is bound over the prefix (its libexec
        # when the host has one), so the supervisor, started from DESTDIR's
        # bin (no workers beside it), must find the installed workers in the
        # configured libexec dir. Nothing on the host changes.
        target = prefix + "/libexec" if os.path.isdir(prefix + "/libexec") else prefix
        self.assertTrue(os.path.isdir(target), target)
        self.assertNotEqual(target, "/usr", "refusing to bind over /usr")
        script = 'mount --make-rprivate / && mount --bind "$1" "$2" && shift 2 && exec "$@"'
        self.assert_serves(["unshare", "--mount", "sh", "-c", script, "sh", dest + target,
                            target, dest + prefix + "/bin/meridio-ipam"],
                           dest + prefix + "/bin/ipamctl")

    def assert_serves(self, cmd, ipamctl):
        """Runs the daemon command until `ipamctl health` says SERVING, then
        stops it with SIGTERM and expects exit 0."""
        port = harness.free_port()
        data = tempfile.mkdtemp(prefix="data-", dir=self.tmp)
        env = {"PATH": "/usr/bin:/bin", "IPAM_PORT": str(port),
               "IPAM_DATA_SOURCE": os.path.join(data, "registry.db"),
               "XDG_RUNTIME_DIR": self.tmp, "IPAM_CONDUITS": "lb",
               "IPAM_LOG_LEVEL": "INFO", "IPAM_HEALTH_SOCKET": ""}
        logpath = os.path.join(data, "daemon.log")
        log = open(logpath, "w")
        self.addCleanup(log.close)
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd="/")
        self.addCleanup(self.stop, proc)
        ok = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            h = harness.run([ipamctl, "health", "--target", f"127.0.0.1:{port}"], timeout=10)
            if h.returncode == 0:
                ok = True
                break
            time.sleep(0.3)
        self.assertTrue(ok, "installed daemon never served:\n" + Path(logpath).read_text()[-3000:])
        self.assertTrue(os.path.exists(env["IPAM_DATA_SOURCE"]))
        self.assertEqual(self.stop(proc), 0, Path(logpath).read_text()[-3000:])


if __name__ == "__main__":
    unittest.main()
