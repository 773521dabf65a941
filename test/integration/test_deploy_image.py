"""Container image (Dockerfile), without a container engine daemon.

RuntimeLibraries (fast, always): every shared library `ldd` shows for each
built binary belongs (dpkg -S) to a package that the runtime stage installs,
or to one of their dependencies or the base system; the runtime stage lists
nothing else (no -dev package, no package whose libraries go unused).

ImageBuild (real): podman builds the Dockerfile with the vfs driver and chroot
isolation on a debian:bookworm base made by debootstrap (scripts/tools.sh
--image), then the image is checked from the outside (its configuration),
mounted, and its own binaries are run as UID 10004 on a read-only root with
a writable /tmp and data volume (a private mount namespace + chroot), until
its own `ipamctl health` says SERVING (about a minute and a half, most of it
podman build).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
DOCKERFILE = TOP / "Dockerfile"
BIN = Path(os.environ.get("IPAM_BIN_DIR", TOP / "build" / "bin"))
TOOLS = Path(os.environ.get("IPAM_TOOLS_DIR", TOP / ".tools"))
PROGRAMS = ("meridio-ipam", "ipamctl")
WORKERS = ("meridio-ipam-db", "meridio-ipam-api", "meridio-ipam-nsp")
# Loaded with dlopen, so ldd does not list it: the supervisor opens
# libsystemd when NOTIFY_SOCKET is set (systemd, or podman --sdnotify).
DLOPENED = ("libsystemd.so.0",)
IMAGE = "localhost/meridio-ipam:deploy-test"


def run(cmd, timeout=300, **kw):
    """Runs cmd with a time bound, capturing text output."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def dockerfile_stages():
    """The Dockerfile as a list of stages, each a list of logical
    instructions (continuation lines joined, comments dropped)."""
    stages, cur, buf = [], None, ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        instr = (buf + line).strip()
        buf = ""
        if instr.upper().startswith("FROM "):
            cur = []
            stages.append(cur)
        if cur is not None:
            cur.append(instr)
    return stages


def apt_packages(stage):
    """Package names given to `apt-get install` in a stage's RUN lines."""
    pkgs = []
    for instr in stage:
        if not instr.upper().startswith("RUN "):
            continue
        for cmd in re.split(r"&&|;", instr[4:]):
            words = cmd.split()
            if "apt-get" in words and "install" in words:
                after = words[words.index("install") + 1:]
                pkgs += [w for w in after if not w.startswith("-") and "=" not in w]
    return pkgs


def ldd_paths(exe, chroot=None):
    """Resolved library paths of exe (ldd), and the names ldd did not find."""
    cmd = ["ldd", exe] if chroot is None else ["chroot", chroot, "ldd", exe]
    r = run(cmd)
    if r.returncode != 0:
        raise AssertionError(f"ldd {exe}: {r.stdout}{r.stderr}")
    found, missing = [], []
    for line in r.stdout.splitlines():
        line = line.strip()
        if "not found" in line:
            missing.append(line.split()[0])
        m = re.match(r"^\S+ => (/\S+) \(0x[0-9a-f]+\)$", line) or \
            re.match(r"^(/\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            found.append(m.group(1))
    return found, missing


def installed_packages():
    """Host's installed packages: name -> (depends alternatives, provides,
    base) where base means Essential or Priority required (debootstrap's
    minbase set)."""
    fmt = "${Package}\\t${Status}\\t${Essential}\\t${Priority}\\t${Pre-Depends}, ${Depends}\\t${Provides}\\n"
    r = run(["dpkg-query", "-W", "-f", fmt])
    pkgs = {}
    for line in r.stdout.splitlines():
        name, status, essential, prio, deps, provides = line.split("\t")
        if not status.endswith(" installed"):
            continue
        alts = []
        for d in deps.split(","):
            d = d.strip()
            if d:
                alts.append([a.split()[0].split(":")[0] for a in d.split("|")])
        prov = [p.split()[0] for p in provides.split(",") if p.strip()]
        pkgs[name] = (alts, prov, essential == "yes" or prio == "required")
    return pkgs


def closure(roots, pkgs):
    """Every installed package reachable from roots through Depends and
    Pre-Depends (any installed alternative, virtual names via Provides)."""
    providers = {}
    for name, (_, prov, _) in pkgs.items():
        for p in prov:
            providers.setdefault(p, []).append(name)
    seen, todo = set(), list(roots)
    while todo:
        n = todo.pop()
        if n in seen or n not in pkgs:
            continue
        seen.add(n)
        for alts in pkgs[n][0]:
            for a in alts:
                todo += [a] + providers.get(a, [])
    return seen


def owner(path):
    """The Debian package that ships a library path (usrmerge aware)."""
    cands = [path, os.path.realpath(path)]
    for c in list(cands):
        if c.startswith("/usr/"):
            cands.append(c[4:])
        else:
            cands.append("/usr" + c)
    for c in cands:
        r = run(["dpkg", "-S", c])
        if r.returncode == 0:
            return r.stdout.split(":")[0].strip()
    return None


class RuntimeLibraries(unittest.TestCase):
    def test_dockerfile_shape(self):
        stages = dockerfile_stages()
        self.assertEqual(len(stages), 2, "build stage + runtime stage")
        self.assertRegex(stages[0][0], r"(?i)^FROM \S+ AS build$")
        self.assertRegex(stages[1][0], r"^FROM ")
        self.assertIn("ARG DEBIAN_IMAGE=debian:bookworm", DOCKERFILE.read_text())
        rt = stages[1]
        self.assertIn("USER 10004:10004", rt)
        self.assertIn('VOLUME ["/run/ipam/data"]', rt)
        self.assertIn("EXPOSE 7777", rt)
        self.assertIn('ENTRYPOINT ["/usr/bin/meridio-ipam"]', rt)
        self.assertTrue(any(i.startswith("HEALTHCHECK") and "ipamctl health" in i for i in rt))
        # Build-time packages stay in the build stage.
        build = apt_packages(stages[0])
        self.assertIn("libgrpc-dev", build)
        self.assertIn("cmake", build)

    def test_runtime_packages_cover_ldd(self):
        pkgs = installed_packages()
        runtime = apt_packages(dockerfile_stages()[-1])
        self.assertTrue(runtime)
        for p in runtime:
            self.assertFalse(p.endswith("-dev"), p)
            self.assertIn(p, pkgs, f"{p} is not installed here, cannot check it")
        base = [n for n, v in pkgs.items() if v[2]]
        have = closure(runtime + base, pkgs)
        used = set()
        for exe in PROGRAMS + WORKERS:
            path = str(BIN / exe)
            self.assertTrue(os.access(path, os.X_OK), f"{path} not built")
            libs, missing = ldd_paths(path)
            self.assertEqual(missing, [], exe)
            self.assertTrue(libs, exe)
            for lib in libs:
                pkg = owner(lib)
                self.assertIsNotNone(pkg, f"{exe}: {lib} belongs to no package")
                pkg = pkg.split(":")[0]
                used.add(pkg)
                self.assertIn(pkg, have, f"{exe}: {lib} ({pkg}) is not in the runtime stage")
        for soname in DLOPENED:
            r = run(["ldconfig", "-p"])
            found = [l for l in r.stdout.splitlines()
                     if l.strip().startswith(soname + " ")]
            # this machine's word size first (ldconfig tags 64-bit entries)
            found.sort(key=lambda l: "64" not in l.split("=>")[0])
            paths = [l.split(" => ")[1].strip() for l in found]
            self.assertTrue(paths, f"{soname} not found by ldconfig")
            pkg = owner(paths[0])
            self.assertIsNotNone(pkg, f"{paths[0]} belongs to no package")
            pkg = pkg.split(":")[0]
            used.add(pkg)
            self.assertIn(pkg, have, f"{soname} ({pkg}) is not in the runtime stage")
        # Nothing listed that no binary loads.
        self.assertEqual(sorted(set(runtime) - used), [], "unused runtime packages")


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Runs a command from the mounted image root: a private mount namespace in
# which the root is bound read-only, /tmp is a fresh tmpfs, the data volume
# a writable host dir, /dev and /proc the host's; then chroot as 10004.
IN_IMAGE = r"""
set -e
root=$1 data=$2 mnt=$3; shift 3
mount --make-rprivate /
mount --bind "$root" "$mnt"
mount -o remount,bind,ro "$mnt"
mount -t tmpfs -o mode=1777,size=16m tmpfs "$mnt/tmp"
mount --bind "$data" "$mnt/run/ipam/data"
mount --rbind /dev "$mnt/dev"
mount -t proc proc "$mnt/proc"
if touch "$mnt/usr/ro-probe" 2>/dev/null; then echo "root is writable" >&2; exit 90; fi
exec chroot --userspec=10004:10004 "$mnt" "$@"
"""


class ImageBuild(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        r = run([str(TOP / "scripts" / "tools.sh"), "--image"], timeout=600)
        if r.returncode != 0:
            raise RuntimeError("scripts/tools.sh --image failed:\n" + r.stderr)
        base = os.environ.get("IPAM_TEST_TMP")
        if base:
            os.makedirs(base, exist_ok=True)
        # Storage of its own, outside the build context, removed afterwards.
        cls.store = tempfile.mkdtemp(prefix="deploy-image-", dir="/var/tmp")
        cls.tmp = tempfile.mkdtemp(prefix="deploy-image-", dir=base)
        cls.podman = ["podman", "--root", os.path.join(cls.store, "root"),
                      "--runroot", os.path.join(cls.store, "run"),
                      "--storage-driver", "vfs"]
        cls.root = None
        try:
            with open(TOOLS / "debian-bookworm-minbase.tar", "rb") as f:
                r = subprocess.run(cls.podman + ["import", "-", "docker.io/library/debian:bookworm"],
                                   stdin=f, capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise RuntimeError("podman import: " + r.stderr)
            t0 = time.monotonic()
            r = run(cls.podman + ["build", "--isolation", "chroot", "--pull=never",
                                  "--layers=false", "--format", "docker", "-t", IMAGE,
                                  str(TOP)], timeout=900)
            cls.build_seconds = time.monotonic() - t0
            with open(os.path.join(cls.tmp, "build.log"), "w") as f:
                f.write(r.stdout + r.stderr)
            if r.returncode != 0:
                raise RuntimeError("podman build failed:\n" + (r.stdout + r.stderr)[-4000:])
            r = run(cls.podman + ["image", "mount", IMAGE])
            if r.returncode != 0:
                raise RuntimeError("podman image mount: " + r.stderr)
            cls.root = r.stdout.strip()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.root:
            run(cls.podman + ["image", "unmount", IMAGE])
        run(cls.podman + ["rmi", "-a", "-f"])
        shutil.rmtree(cls.store, ignore_errors=True)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def inspect(self):
        r = run(self.podman + ["image", "inspect", IMAGE])
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)[0]

    def test_config(self):
        info = self.inspect()
        cfg = info["Config"]
        self.assertEqual(cfg["User"], "10004:10004")
        self.assertEqual(list(cfg["ExposedPorts"]), ["7777/tcp"])
        self.assertEqual(list(cfg["Volumes"]), ["/run/ipam/data"])
        self.assertEqual(cfg["Entrypoint"], ["/usr/bin/meridio-ipam"])
        self.assertIn("IPAM_DATA_SOURCE=/run/ipam/data/registry.db", cfg["Env"])
        hc = info["Healthcheck"]
        self.assertEqual(hc["Test"][0], "CMD")
        self.assertIn("ipamctl health --target 127.0.0.1:${IPAM_PORT:-7777}", " ".join(hc["Test"]))

    def test_runtime_stage_is_lean(self):
        root = Path(self.root)
        for exe in PROGRAMS:
            self.assertTrue(os.access(root / "usr" / "bin" / exe, os.X_OK), exe)
        for w in WORKERS:
            self.assertTrue(os.access(root / "usr/libexec/meridio-ipam" / w, os.X_OK), w)
        for absent in ("usr/bin/gcc", "usr/bin/cmake", "usr/bin/protoc-c",
                       "usr/include/grpc", "src", "build", "usr/share/doc/meridio-ipam"):
            self.assertFalse((root / absent).exists(), absent)
        status = (root / "var/lib/dpkg/status").read_text()
        dev = re.findall(r"(?m)^Package: (\S+-dev)$", status)
        self.assertEqual(dev, [])
        data = root / "run/ipam/data"
        st = os.stat(data)
        self.assertEqual((st.st_uid, st.st_gid), (10004, 10004))

    def test_libraries_resolve_in_image(self):
        for exe in ["/usr/bin/" + p for p in PROGRAMS] + \
                   ["/usr/libexec/meridio-ipam/" + w for w in WORKERS]:
            libs, missing = ldd_paths(exe, chroot=self.root)
            self.assertEqual(missing, [], exe)
            self.assertTrue(libs, exe)

    def test_runs_as_10004_on_read_only_root(self):
        data = os.path.join(self.tmp, "data")
        os.mkdir(data, 0o700)
        os.chown(data, 10004, 10004)
        mnt = os.path.join(self.tmp, "mnt")
        os.mkdir(mnt)
        script = os.path.join(self.tmp, "in-image.sh")
        with open(script, "w") as f:
            f.write(IN_IMAGE)
        port = free_port()
        info = self.inspect()
        cfg = info["Config"]
        env = dict(e.split("=", 1) for e in cfg["Env"])
        env.update({"IPAM_PORT": str(port), "IPAM_CONDUITS": "lb", "IPAM_LOG_LEVEL": "INFO"})

        def in_image(*argv):
            return ["unshare", "--mount", "sh", script, self.root, data, mnt, *argv]

        logpath = os.path.join(self.tmp, "daemon.log")
        log = open(logpath, "w")
        self.addCleanup(log.close)
        proc = subprocess.Popen(in_image(*cfg["Entrypoint"]), env=env, stdout=log,
                                stderr=subprocess.STDOUT, cwd="/")
        self.addCleanup(self.stop, proc)
        # The image's own health check command, as the image's user.
        hc = info["Healthcheck"]["Test"]
        self.assertEqual(hc[0], "CMD")
        ok = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            h = run(in_image(*hc[1:]), env=env, timeout=15)
            if h.returncode == 0:
                ok = True
                break
            time.sleep(0.3)
        self.assertTrue(ok, "image never served:\n" + Path(logpath).read_text()[-3000:])
        self.assertEqual(self.stop(proc), 0, Path(logpath).read_text()[-3000:])
        # With the daemon gone the same health check fails.
        self.assertNotEqual(run(in_image(*hc[1:]), env=env, timeout=15).returncode, 0)
        db = os.path.join(data, "registry.db")
        self.assertTrue(os.path.exists(db))
        self.assertEqual(os.stat(db).st_uid, 10004)
        # The root really was read-only: the probe in the script did not fire.
        self.assertNotIn("root is writable", Path(logpath).read_text())

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


if __name__ == "__main__":
    unittest.main()
