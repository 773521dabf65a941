"""Container image (Dockerfile), without a container engine daemon.

RuntimeLibraries (fast, always): the Dockerfile's shape, its package lists
taken from scripts/deps.sh (no second copy) with apt's lists and caches
removed in the same RUN; every shared library `ldd` shows for each built
binary belongs (dpkg -S) to a package of the runtime group, or to one of
their dependencies or the base system; the group lists nothing else.

ImageBuild (real): podman builds the Dockerfile with the vfs driver and chroot
isolation on a debian:bookworm base made by debootstrap (scripts/tools.sh
--image), then the image is checked from the outside (its configuration),
mounted, and run as a Meridio pod runs it: as the image's USER with
Meridio's fsGroup as a supplementary group, on a read-only root with a /tmp
shared with the probes and a data volume owned by root:fsGroup mode 2775,
with the environment Meridio's operator writes; the probe commands of this
chart and of Meridio's operator, run in the image, must exit 0 once it
serves (one to two minutes, most of it podman build).
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

import fakensp
import harness

TOP = Path(__file__).resolve().parents[2]
DOCKERFILE = TOP / "Dockerfile"
BIN = Path(os.environ.get("IPAM_BIN_DIR", TOP / "build" / "bin"))
TOOLS = Path(os.environ.get("IPAM_TOOLS_DIR", TOP / ".tools"))
CHART = TOP / "helm" / "meridio-ipam"
MERIDIO_VALUES = TOP / "test" / "deploy" / "meridio-values.yaml"
VALIDATE = TOP / "test" / "deploy" / "validate.js"
DEPS = TOP / "scripts" / "deps.sh"
PROGRAMS = ("meridio-ipam", "ipamctl", "grpc_health_probe")
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


def deps_group(name):
    """The packages of one group of scripts/deps.sh (its --list)."""
    r = run(["sh", str(DEPS), "--list", name])
    if r.returncode != 0:
        raise AssertionError(f"deps.sh --list {name}: {r.stderr}")
    return r.stdout.split()


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
        # A numeric USER: Meridio's pods say runAsNonRoot without runAsUser,
        # which the kubelet accepts only for a numeric non-zero UID.
        self.assertIn("USER 10004:10004", rt)
        self.assertIn('VOLUME ["/run/ipam/data"]', rt)
        self.assertIn("EXPOSE 7777", rt)
        self.assertIn('ENTRYPOINT ["/usr/bin/meridio-ipam"]', rt)
        hc = [i for i in rt if i.startswith("HEALTHCHECK")]
        self.assertEqual(len(hc), 1)
        self.assertIn("/bin/grpc_health_probe -addr=unix://", hc[0])
        self.assertIn("-service=Readiness", hc[0])

    def test_example_run_line_serves(self):
        # The run line in the Dockerfile's header, as a reader copies it:
        # its -e variables must make an IPAM that hands out addresses (a
        # conduit source among them), here with the built programs and only
        # the paths and port moved off the container's.
        head = []
        for line in DOCKERFILE.read_text().splitlines():
            if not line.startswith("#"):
                break
            head.append(line.lstrip("# ").rstrip())
        text = " ".join(head).replace("\\ ", " ")
        m = re.search(r"docker run (.*?) meridio-ipam\b(?!-)", text)
        self.assertIsNotNone(m, "no docker run example")
        env = dict(re.findall(r"-e (\w+)=(\S+)", m.group(1)))
        self.assertTrue({"IPAM_CONDUITS", "IPAM_NSP_SERVICE"} & set(env), env)
        self.assertIn("IPAM_CONDUITS", env, "the example runs without NSP")
        conduit = env["IPAM_CONDUITS"].split(",")[0]
        tmp = tempfile.mkdtemp(prefix="run-line-", dir=os.environ.get("IPAM_TEST_TMP"))
        self.addCleanup(shutil.rmtree, tmp, True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env.update(IPAM_PORT=str(port), IPAM_DATA_SOURCE=os.path.join(tmp, "registry.db"),
                   IPAM_HEALTH_SOCKET=os.path.join(tmp, "health.sock"), TMPDIR=tmp,
                   IPAM_LOG_LEVEL="WARNING")
        with open(os.path.join(tmp, "log"), "w") as log:
            proc = subprocess.Popen([str(BIN / "meridio-ipam")], env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
        self.addCleanup(proc.wait, 30)
        self.addCleanup(proc.send_signal, signal.SIGTERM)
        target = ["--target", "localhost:%d" % port]
        deadline = time.monotonic() + 20
        while run([str(BIN / "ipamctl"), "health", *target]).returncode != 0:
            self.assertIsNone(proc.poll(), Path(tmp, "log").read_text())
            self.assertLess(time.monotonic(), deadline, "not SERVING")
            time.sleep(0.1)
        r = run([str(BIN / "ipamctl"), "allocate", "--conduit", conduit, "--node", "worker-1",
                 "--name", "proxy-1", "--trench", env.get("IPAM_TRENCH_NAME", "default"),
                 *target])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout.strip(), r"^\d+\.\d+\.\d+\.\d+/\d+$")
        self.assertNotIn("no conduits", Path(tmp, "log").read_text())

    def test_one_package_list(self):
        # Each stage installs one deps.sh group and names no package itself;
        # every RUN that installs also removes apt's lists and caches, so no
        # layer keeps them.
        for stage, group in zip(dockerfile_stages(), ("build", "runtime")):
            runs = [i for i in stage if i.upper().startswith("RUN ")]
            installs = [i for i in runs if "deps.sh" in i or "apt-get" in i]
            self.assertEqual(len(installs), 1, stage[0])
            self.assertIn(f"deps.sh --only {group}", installs[0])
            self.assertNotIn("apt-get install", installs[0])
            self.assertIn("apt-get clean", installs[0])
            self.assertIn("rm -rf /var/lib/apt/lists/*", installs[0])
            self.assertIn("COPY scripts/deps.sh /tmp/deps.sh", stage)
        self.assertIn("!scripts/deps.sh", (TOP / ".dockerignore").read_text().split())
        # The groups hold what their names say; an unknown one is an error.
        self.assertIn("libgrpc-dev", deps_group("build"))
        self.assertIn("cmake", deps_group("build"))
        self.assertIn("python3-grpcio", deps_group("test"))
        self.assertEqual(run(["sh", str(DEPS), "--list", "nope"]).returncode, 2)
        # No group: build and test, what make installs and test_build_deps reads.
        default = run(["sh", str(DEPS), "--list"]).stdout.split()
        self.assertEqual(default, deps_group("build") + deps_group("test"))

    def test_runtime_packages_cover_ldd(self):
        pkgs = installed_packages()
        runtime = deps_group("runtime")
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


# Runs a command from the mounted image root as a Meridio pod's container
# runs: a private mount namespace in which the root is bound read-only, /tmp
# and the data volume are host directories (shared by the daemon and the
# probes, as a pod's emptyDir and claim are), /dev and /proc the host's;
# then chroot as the image's user 10004 with the fsGroup as a supplementary
# group, as the kubelet starts it.
IN_IMAGE = r"""
set -e
root=$1 data=$2 tmp=$3 mnt=$4 groups=$5; shift 5
mount --make-rprivate /
mount --bind "$root" "$mnt"
mount -o remount,bind,ro "$mnt"
mount --bind "$tmp" "$mnt/tmp"
mount --bind "$data" "$mnt/run/ipam/data"
mount --rbind /dev "$mnt/dev"
mount -t proc proc "$mnt/proc"
if touch "$mnt/usr/ro-probe" 2>/dev/null; then echo "root is writable" >&2; exit 90; fi
exec chroot --userspec=10004:10004 --groups="$groups" "$mnt" "$@"
"""

# Meridio's fsGroup (its chart's default): owner group of the data volume.
FS_GROUP = 3000

# The environment Meridio's operator writes into the ipam container
# (config/templates/charts/meridio/deployment/ipam.yaml filled by
# pkg/controllers/trench/ipam.go) for trench-a in namespace "red", with
# LOG_LEVEL DEBUG and GRPC_PROBE_RPC_TIMEOUT 1s as the operator's own
# deployment (config/operator/operator.yaml) sets them. IPAM_PORT and
# IPAM_NSP_SERVICE are replaced by loopback addresses (a free port, the fake
# NSP); SPIFFE_ENDPOINT_SOCKET is left out (no SPIRE agent here).
OPERATOR_ENV = {
    "IPAM_PORT": "7777",
    "IPAM_DATASOURCE": "/run/ipam/data/registry.db",
    "IPAM_NAMESPACE": "red",
    "IPAM_TRENCH_NAME": "trench-a",
    "IPAM_NSP_SERVICE": "nsp-service-trench-a:7778",
    "IPAM_PREFIX_IPV4": "172.16.0.0/16",
    "IPAM_PREFIX_IPV6": "fd00::/48",
    "IPAM_CONDUIT_PREFIX_LENGTH_IPV4": "20",
    "IPAM_CONDUIT_PREFIX_LENGTH_IPV6": "56",
    "IPAM_NODE_PREFIX_LENGTH_IPV4": "24",
    "IPAM_NODE_PREFIX_LENGTH_IPV6": "64",
    "IPAM_IP_FAMILY": "dualstack",
    "IPAM_LOG_LEVEL": "DEBUG",
    "IPAM_GRPC_PROBE_RPC_TIMEOUT": "1s",
    # Service links (Meridio's pods keep them): the kubelet adds these for
    # the Services of the namespace; the daemon must ignore them.
    "IPAM_SERVICE_TRENCH_A_SERVICE_HOST": "10.96.0.20",
    "IPAM_SERVICE_TRENCH_A_SERVICE_PORT": "7777",
    "IPAM_SERVICE_TRENCH_A_PORT": "tcp://10.96.0.20:7777",
    "IPAM_SERVICE_TRENCH_A_PORT_7777_TCP": "tcp://10.96.0.20:7777",
    "NSP_SERVICE_TRENCH_A_PORT": "tcp://10.96.0.21:7778",
}

# The probe commands of Meridio's operator (pkg/controllers/common,
# GetProbeCommand without SPIFFE): the chart's come from helm template.
OPERATOR_PROBES = [
    ["/bin/grpc_health_probe", "-addr=unix:///tmp/health.sock", f"-service={svc}",
     "-connect-timeout=100ms", "-rpc-timeout=150ms"]
    for svc in ("Startup", "Readiness", "Liveness")
]


def chart_probes():
    """(command, timeoutSeconds) of the startup, readiness and liveness
    probes that helm/meridio-ipam renders with Meridio's values."""
    helm = TOOLS / "bin" / "helm"
    r = run([str(helm), "template", "ipam", str(CHART), "-f", str(MERIDIO_VALUES)])
    if r.returncode != 0:
        raise AssertionError("helm template: " + r.stderr)
    with tempfile.TemporaryDirectory() as d:
        dump = os.path.join(d, "objects.json")
        v = run(["node", str(VALIDATE), "--dump", dump], input=r.stdout)
        if v.returncode != 0:
            raise AssertionError("validate.js: " + v.stdout + v.stderr)
        with open(dump) as f:
            objs = json.load(f)
    sts = [o for o in objs if o["kind"] == "StatefulSet"][0]
    c = sts["spec"]["template"]["spec"]["containers"][0]
    return [(c[p]["exec"]["command"], c[p]["timeoutSeconds"])
            for p in ("startupProbe", "readinessProbe", "livenessProbe")]


@harness.needs(harness.why_no_npm_registry)
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
        # Nothing that would override the IPAM_DATASOURCE Meridio sets.
        self.assertEqual([e for e in cfg["Env"] if e.startswith("IPAM_")], [])
        # Kept by --format docker (the OCI format has no health check).
        hc = info["Healthcheck"]
        self.assertEqual(hc["Test"][0], "CMD")
        self.assertIn("/bin/grpc_health_probe -addr=unix://${IPAM_HEALTH_SOCKET:-/tmp/health.sock}",
                      " ".join(hc["Test"]))

    def test_runtime_stage_is_lean(self):
        root = Path(self.root)
        for exe in PROGRAMS:
            self.assertTrue(os.access(root / "usr" / "bin" / exe, os.X_OK), exe)
        # Meridio's probes run /bin/grpc_health_probe: /bin is /usr/bin
        # (merged /usr), checked as a path inside the image.
        self.assertEqual(os.readlink(root / "bin"), "usr/bin")
        for w in WORKERS:
            self.assertTrue(os.access(root / "usr/libexec/meridio-ipam" / w, os.X_OK), w)
        for absent in ("usr/bin/gcc", "usr/bin/cmake", "usr/bin/protoc-c", "usr/bin/ipam-bench",
                       "usr/include/grpc", "src", "build", "usr/share/doc/meridio-ipam",
                       "tmp/deps.sh"):
            self.assertFalse((root / absent).exists(), absent)
        status = (root / "var/lib/dpkg/status").read_text()
        dev = re.findall(r"(?m)^Package: (\S+-dev)$", status)
        self.assertEqual(dev, [])
        # No apt lists, package caches or downloaded packages left.
        left = [str(p.relative_to(root)) for d in ("var/lib/apt/lists", "var/cache/apt")
                for p in (root / d).rglob("*") if p.is_file() and p.name != "lock"]
        self.assertEqual(left, [])
        data = root / "run/ipam/data"
        st = os.stat(data)
        self.assertEqual((st.st_uid, st.st_gid), (10004, 10004))

    def test_libraries_resolve_in_image(self):
        for exe in ["/usr/bin/" + p for p in PROGRAMS] + \
                   ["/usr/libexec/meridio-ipam/" + w for w in WORKERS]:
            libs, missing = ldd_paths(exe, chroot=self.root)
            self.assertEqual(missing, [], exe)
            self.assertTrue(libs, exe)

    @harness.needs(harness.why_no_other_user)
    @harness.needs(harness.why_no_private_mounts)
    def test_runs_as_meridio_pod(self):
        # The data volume as the kubelet leaves it with fsGroup: owned by
        # root, group fsGroup, setgid and group-writable.
        data = os.path.join(self.tmp, "data")
        os.mkdir(data)
        os.chown(data, 0, FS_GROUP)
        os.chmod(data, 0o2775)
        tmp = os.path.join(self.tmp, "podtmp")
        os.mkdir(tmp)
        os.chmod(tmp, 0o1777)
        mnt = os.path.join(self.tmp, "mnt")
        os.mkdir(mnt)
        script = os.path.join(self.tmp, "in-image.sh")
        with open(script, "w") as f:
            f.write(IN_IMAGE)
        nsp = fakensp.FakeNsp()
        nsp_port = nsp.start(0)
        self.addCleanup(nsp.stop)
        nsp.set_conduits([("conduit-a", "trench-a")])
        port = free_port()
        info = self.inspect()
        cfg = info["Config"]
        env = dict(e.split("=", 1) for e in cfg["Env"])
        env.update(OPERATOR_ENV)
        env.update({"IPAM_PORT": str(port), "IPAM_NSP_SERVICE": f"127.0.0.1:{nsp_port}"})

        def in_image(*argv):
            return ["unshare", "--mount", "sh", script, self.root, data, tmp, mnt,
                    str(FS_GROUP), *argv]

        def probe(cmd, timeout):
            """Runs one probe command in the image; (exit code, seconds)."""
            t0 = time.monotonic()
            r = run(in_image(*cmd), env=env, timeout=15)
            return r.returncode, time.monotonic() - t0

        probes = chart_probes()
        # Nothing serves yet: the probe fails (2: no connection).
        self.assertEqual(probe(probes[0][0], probes[0][1])[0], 2)

        logpath = os.path.join(self.tmp, "daemon.log")
        log = open(logpath, "w")
        self.addCleanup(log.close)
        proc = subprocess.Popen(in_image(*cfg["Entrypoint"]), env=env, stdout=log,
                                stderr=subprocess.STDOUT, cwd="/")
        self.addCleanup(self.stop, proc)

        def daemon_log():
            return Path(logpath).read_text()[-3000:]

        # The startup probe until it passes, as the kubelet runs it.
        startup, startup_timeout = probes[0]
        deadline = time.monotonic() + 30
        rc = None
        while time.monotonic() < deadline and proc.poll() is None:
            rc, _ = probe(startup, startup_timeout)
            if rc == 0:
                break
            time.sleep(0.3)
        self.assertEqual(rc, 0, "startup probe never passed:\n" + daemon_log())
        # Then every probe of the chart and of the operator, each within
        # its probe's timeoutSeconds.
        for cmd, timeout in probes + [(c, 2) for c in OPERATOR_PROBES]:
            rc, secs = probe(cmd, timeout)
            self.assertEqual(rc, 0, f"{cmd}:\n" + daemon_log())
            self.assertLess(secs, timeout, cmd)
        # The image's own health check, as the image's user.
        hc = info["Healthcheck"]["Test"]
        self.assertEqual(hc[0], "CMD")
        self.assertEqual(run(in_image(*hc[1:]), env=env, timeout=15).returncode, 0)
        # An allocation through the image's ipamctl is written to the
        # group-owned volume.
        r = run(in_image("/usr/bin/ipamctl", "allocate", "--target", f"127.0.0.1:{port}",
                         "--trench", "trench-a", "--conduit", "conduit-a", "--node", "node-1",
                         "--name", "pod-1"), env=env, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + daemon_log())
        self.assertEqual(self.stop(proc), 0, daemon_log())
        # With the daemon gone the probes fail.
        self.assertNotEqual(probe(probes[1][0], probes[1][1])[0], 0)
        db = os.path.join(data, "registry.db")
        st = os.stat(db)
        self.assertEqual((st.st_uid, st.st_gid), (10004, FS_GROUP))
        st = os.stat(data)
        self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o7777), (0, FS_GROUP, 0o2775))
        out = run(["sqlite3", db, "select count(*) from prefixes"])
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertGreaterEqual(int(out.stdout), 3)  # conduit, node, address
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
