"""Container image (Dockerfile), without a container engine daemon.

RuntimeLibraries (fast, always): the Dockerfile's shape, its package lists
taken from scripts/deps.sh (no second copy) with apt's lists and caches
removed in the same RUN; every shared library `ldd` shows for each built
binary belongs (dpkg -S) to a package of the runtime group, or to one of
their dependencies or the base system; the group lists nothing else.

ImageBuild (real): podman builds the Dockerfile with the vfs driver and chroot
isolation on a debian:bookworm base made by debootstrap (scripts/tools.sh
--image), then the image is checked from the outside (its configuration),
mounted, and run as the ipam container of a Meridio pod (class Pod): in a
network namespace of its own, as the image's USER with Meridio's fsGroup as
a supplementary group, on a read-only root with a /tmp shared with the
probes, a data volume owned by root:fsGroup mode 2775 and the SPIRE agent's
socket directory mounted read-only, with exactly the environment Meridio's
operator writes, or the one this chart renders from Meridio's values. A
fake SPIRE agent (fakespire.py) serves the Workload API on that socket, a
fake NSP requires SPIFFE mTLS, a proxy-like grpc-js client checks the
daemon's SPIFFE ID. The probe commands of Meridio's operator and of this
chart, run in the image, fail while the daemon has no SVID and pass once it
serves (about two minutes, most of it podman build).
"""
import ctypes
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
import fakespire
import grpc
import harness
from harness import poll
from test_spiffe import NodeClient, ensure_node

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
    r = harness.run(["sh", str(DEPS), "--list", name])
    if r.returncode != 0:
        raise AssertionError(f"deps.sh --list {name}: {r.stderr}")
    return r.stdout.split()


def ldd_paths(exe, chroot=None):
    """Resolved library paths of exe (ldd), and the names ldd did not find."""
    cmd = ["ldd", exe] if chroot is None else ["chroot", chroot, "ldd", exe]
    r = harness.run(cmd)
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
    r = harness.run(["dpkg-query", "-W", "-f", fmt])
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
        r = harness.run(["dpkg", "-S", c])
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
        target = ["--target", "127.0.0.1:%d" % port]
        deadline = time.monotonic() + 20
        while harness.run([str(BIN / "ipamctl"), "health", *target]).returncode != 0:
            self.assertIsNone(proc.poll(), Path(tmp, "log").read_text())
            self.assertLess(time.monotonic(), deadline, "not SERVING")
            time.sleep(0.1)
        r = harness.run([str(BIN / "ipamctl"), "allocate", "--conduit", conduit, "--node", "worker-1",
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
        self.assertEqual(harness.run(["sh", str(DEPS), "--list", "nope"]).returncode, 2)
        # No group: build and test, what make installs and test_build_deps reads.
        default = harness.run(["sh", str(DEPS), "--list"]).stdout.split()
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
            r = harness.run(["ldconfig", "-p"])
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


# Runs a command from the mounted image root as a container of a Meridio
# pod runs (the caller puts it in the pod's network namespace, see Pod): a
# private mount namespace where the image's root lies under an overlay
# whose upper layer takes the mount points the runtime makes
# (/run/spire/sockets, /etc/hosts), never the image itself; the root is then
# read-only. /etc/hosts is the pod's (the kubelet mounts it too), /tmp and
# the data volume are host directories shared by the daemon and the probes
# (as a pod's emptyDir and claim), the SPIRE agent's socket directory is
# bound read-only (Meridio's hostPath with readOnly: true), /dev and /proc
# are the host's; then chroot as the image's user 10004 with the fsGroup as
# a supplementary group, as the kubelet starts it.
IN_IMAGE = r"""
set -e
root=$1 work=$2 hosts=$3 tmp=$4 data=$5 spire=$6 groups=$7; shift 7
mount --make-rprivate /
ov=$(mktemp -d "$work/root.XXXXXX")
mkdir "$ov/upper" "$ov/work" "$ov/mnt"
mnt=$ov/mnt
mount -t overlay overlay -o "lowerdir=$root,upperdir=$ov/upper,workdir=$ov/work" "$mnt"
[ -e "$mnt/etc/hosts" ] || : >"$mnt/etc/hosts"
[ -z "$spire" ] || mkdir -p "$mnt/run/spire/sockets"
mount -o remount,ro "$mnt"
if touch "$mnt/usr/ro-probe" 2>/dev/null; then echo "root is writable" >&2; exit 90; fi
mount --bind "$hosts" "$mnt/etc/hosts"
mount --bind "$tmp" "$mnt/tmp"
mount --bind "$data" "$mnt/run/ipam/data"
if [ -n "$spire" ]; then
	mount --bind "$spire" "$mnt/run/spire/sockets"
	mount -o remount,bind,ro "$mnt/run/spire/sockets"
fi
mount --rbind /dev "$mnt/dev"
mount -t proc proc "$mnt/proc"
exec chroot --userspec=10004:10004 --groups="$groups" "$mnt" "$@"
"""

# The fsGroup of the StatefulSet Meridio's operator writes: owner group of
# the data volume. (Meridio's chart and this one say 3000, read from the
# rendered chart.)
OPERATOR_FS_GROUP = 2000

# The environment Meridio's operator writes into the ipam container
# (config/templates/charts/meridio/deployment/ipam.yaml filled by
# pkg/controllers/trench/ipam.go with the defaults of
# pkg/controllers/common) for trench-a in namespace "red", with LOG_LEVEL
# DEBUG and GRPC_PROBE_RPC_TIMEOUT 1s as the operator's own deployment
# (config/operator/operator.yaml) sets them. Nothing is replaced: the pod
# has its own network namespace, so port 7777 is free, and the NSP
# Service's name resolves (the pod's /etc/hosts) to the fake NSP there.
OPERATOR_ENV = {
    "SPIFFE_ENDPOINT_SOCKET": "unix:///run/spire/sockets/agent.sock",
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
}

# What the kubelet adds to every container: the pod's host name and the API
# server's address.
KUBELET_ENV = {
    "HOSTNAME": "ipam-trench-a-0",
    "KUBERNETES_SERVICE_HOST": "10.96.0.1",
    "KUBERNETES_SERVICE_PORT": "443",
    "KUBERNETES_PORT": "tcp://10.96.0.1:443",
}

# And, unless the pod says enableServiceLinks: false (this chart does,
# Meridio's operator does not), variables for the Services of the
# namespace; the daemon must ignore them.
SERVICE_LINKS = {
    "IPAM_SERVICE_TRENCH_A_SERVICE_HOST": "10.96.0.20",
    "IPAM_SERVICE_TRENCH_A_SERVICE_PORT": "7777",
    "IPAM_SERVICE_TRENCH_A_PORT": "tcp://10.96.0.20:7777",
    "IPAM_SERVICE_TRENCH_A_PORT_7777_TCP": "tcp://10.96.0.20:7777",
    "NSP_SERVICE_TRENCH_A_PORT": "tcp://10.96.0.21:7778",
}

# The probes of Meridio's operator as (command, timeoutSeconds): those of
# its StatefulSet template, which the operator keeps, and the ones it puts
# in when a template has none (pkg/controllers/common GetProbeCommand
# without SPIFFE, with the timers of StartUpTimer, ReadinessTimer,
# LivenessTimer).
OPERATOR_PROBES = [
    (["/bin/grpc_health_probe", "-addr=unix:///tmp/health.sock", f"-service={svc}",
      "-connect-timeout=400ms", "-rpc-timeout=400ms"], timeout)
    for svc, timeout in (("Startup", 2), ("Readiness", 3), ("Liveness", 3))
] + [
    (["/bin/grpc_health_probe", "-addr=unix:///tmp/health.sock", f"-service={svc}",
      "-connect-timeout=100ms", "-rpc-timeout=150ms"], 2)
    for svc in ("Startup", "Readiness", "Liveness")
]

# How Meridio's components probe a SPIFFE port of their own (its chart's
# probe helpers with spiffe: true, the ipam's internal probe of ":<port>"):
# the image's probe takes an SVID from the agent and checks the server's.
SPIFFE_PORT_PROBE = ["/bin/grpc_health_probe", "-addr=:7777", "-service=ipam.v1.Ipam",
                     "-spiffe", "-rpc-timeout=1s", "-connect-timeout=400ms"]

TD = "spiffe://example.org"
IPAM_ID = TD + "/ns/red/sa/default"
PROXY_ID = TD + "/ns/red/sa/meridio-proxy"
NSP_ID = TD + "/ns/red/sa/meridio-nsp"

# setns(2) flag of a network namespace.
CLONE_NEWNET = 0x40000000


def chart_objects(*args):
    """The objects helm/meridio-ipam renders with Meridio's values (and
    args, e.g. --set), checked against the Kubernetes schemas."""
    helm = TOOLS / "bin" / "helm"
    r = harness.run([str(helm), "template", "ipam", str(CHART), "-f", str(MERIDIO_VALUES), *args])
    if r.returncode != 0:
        raise AssertionError("helm template: " + r.stderr)
    with tempfile.TemporaryDirectory() as d:
        dump = os.path.join(d, "objects.json")
        v = harness.run(["node", str(VALIDATE), "--dump", dump], input=r.stdout)
        if v.returncode != 0:
            raise AssertionError("validate.js: " + v.stdout + v.stderr)
        with open(dump) as f:
            return json.load(f)


def chart_pod(*args):
    """The pod spec of the chart's StatefulSet, and its ipam container."""
    objs = chart_objects(*args)
    sts = [o for o in objs if o["kind"] == "StatefulSet"][0]
    spec = sts["spec"]["template"]["spec"]
    return spec, spec["containers"][0]


def chart_probes(container):
    """(command, timeoutSeconds) of the startup, readiness and liveness
    probes of a container."""
    return [(container[p]["exec"]["command"], container[p]["timeoutSeconds"])
            for p in ("startupProbe", "readinessProbe", "livenessProbe")]


def chart_env(container, namespace):
    """The container's environment as the kubelet fills it in a pod of
    namespace: values, and the downward API's metadata.namespace."""
    env = {}
    for e in container["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[e["name"]] = namespace
        else:
            raise AssertionError(f"cannot fill env {e}")
    return env


class Pod:
    """One pod of the ipam StatefulSet run from the mounted image root: a
    network namespace of its own (loopback only), its /etc/hosts naming
    Services on loopback, /tmp, the data volume as the kubelet leaves it
    with fs_group (root:fsGroup, setgid, group-writable) and, with spire,
    a host directory for the SPIRE agent's socket. The daemon is the PID 1
    of a PID namespace, stopped by SIGTERM to it. env is the container's
    whole environment."""

    def __init__(self, test, root, base, env, entrypoint, fs_group, services=(),
                 spire=False):
        self.root = root
        self.env = env
        self.entrypoint = entrypoint
        self.fs_group = fs_group
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix="pod-", dir=base)
        self.data = os.path.join(self.dir, "data")
        os.mkdir(self.data)
        os.chown(self.data, 0, fs_group)
        os.chmod(self.data, 0o2775)
        self.tmp = os.path.join(self.dir, "tmp")
        os.mkdir(self.tmp)
        os.chmod(self.tmp, 0o1777)
        self.spire = ""
        if spire:
            self.spire = os.path.join(self.dir, "spire")
            os.mkdir(self.spire)
            os.chmod(self.spire, 0o755)
        self.hosts = os.path.join(self.dir, "hosts")
        with open(self.hosts, "w") as f:
            f.write("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n")
            for name in services:
                f.write(f"127.0.0.1\t{name}\n")
        self.script = os.path.join(self.dir, "in-image.sh")
        with open(self.script, "w") as f:
            f.write(IN_IMAGE)
        self.logpath = os.path.join(self.dir, "daemon.log")
        self.holder = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", "ip link set lo up && echo up && exec sleep 3600"],
            stdout=subprocess.PIPE, text=True)
        test.addCleanup(self.close)
        if self.holder.stdout.readline().strip() != "up":
            raise AssertionError("no network namespace for the pod")
        self.netns = f"/proc/{self.holder.pid}/ns/net"

    def nsenter(self):
        """A command prefix that runs in the pod's network namespace."""
        return ["nsenter", "--net=" + self.netns]

    def argv(self, *cmd, pid1=False):
        """cmd in the image; with pid1, as PID 1 of a PID namespace of its
        own (killed with the unshare that waits for it)."""
        ns = ["--mount", "--pid", "--fork", "--kill-child"] if pid1 else ["--mount"]
        return [*self.nsenter(), "unshare", *ns, "sh", self.script, self.root,
                self.dir, self.hosts, self.tmp, self.data, self.spire, str(self.fs_group), *cmd]

    def run(self, *cmd, timeout=15):
        """Runs cmd in the image as a container of the pod (kubectl exec)."""
        return harness.run(self.argv(*cmd), env=self.env, timeout=timeout)

    def probe(self, cmd):
        """Runs one probe command in the image; (exit code, seconds)."""
        t0 = time.monotonic()
        r = self.run(*cmd)
        return r.returncode, time.monotonic() - t0

    def in_netns(self, fn):
        """Calls fn in the pod's network namespace (sockets it makes stay
        there), e.g. to start a server the daemon reaches on loopback."""
        libc = ctypes.CDLL(None, use_errno=True)
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        pod = os.open(self.netns, os.O_RDONLY)
        try:
            if libc.setns(pod, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns " + self.netns)
            try:
                return fn()
            finally:
                if libc.setns(own, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back")
        finally:
            os.close(own)
            os.close(pod)

    def start(self):
        """Starts the image's entrypoint (the daemon) as PID 1, as a
        container's entrypoint runs."""
        with open(self.logpath, "w") as log:
            self.proc = subprocess.Popen(self.argv(*self.entrypoint, pid1=True), env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT, cwd="/")

    def pid1(self):
        """The host's PID of the pod's PID 1, or None (not forked yet, or
        gone)."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                kids = f.read().split()
        except FileNotFoundError:
            return None
        return int(kids[0]) if kids else None

    def log(self):
        return Path(self.logpath).read_text() if os.path.exists(self.logpath) else ""

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM to PID 1, as the kubelet stops a container; bounded
        wait, SIGKILL as a last resort; returns the code."""
        if self.proc.poll() is None:
            pid = self.pid1()
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def close(self):
        if self.proc is not None:
            self.stop()
        self.holder.kill()
        self.holder.wait()
        self.holder.stdout.close()

    def rows(self):
        """(name, cidr) of the records in the volume's registry.db."""
        out = harness.run(["sqlite3", "-separator", " ", os.path.join(self.data, "registry.db"),
                   "select name, cidr from prefixes"])
        if out.returncode != 0:
            raise AssertionError(out.stderr)
        return [tuple(line.split(" ", 1)) for line in out.stdout.splitlines()]


@harness.needs(harness.why_no_npm_registry)
class ImageBuild(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        ensure_node()
        r = harness.run([str(TOP / "scripts" / "tools.sh"), "--image"], timeout=600)
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
            r = harness.run(cls.podman + ["build", "--isolation", "chroot", "--pull=never",
                                  "--layers=false", "--format", "docker", "-t", IMAGE,
                                  str(TOP)], timeout=900)
            cls.build_seconds = time.monotonic() - t0
            with open(os.path.join(cls.tmp, "build.log"), "w") as f:
                f.write(r.stdout + r.stderr)
            if r.returncode != 0:
                raise RuntimeError("podman build failed:\n" + (r.stdout + r.stderr)[-4000:])
            r = harness.run(cls.podman + ["image", "mount", IMAGE])
            if r.returncode != 0:
                raise RuntimeError("podman image mount: " + r.stderr)
            cls.root = r.stdout.strip()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.root:
            harness.run(cls.podman + ["image", "unmount", IMAGE])
        harness.run(cls.podman + ["rmi", "-a", "-f"])
        shutil.rmtree(cls.store, ignore_errors=True)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def inspect(self):
        r = harness.run(self.podman + ["image", "inspect", IMAGE])
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

    # -- the image run as the ipam container of a Meridio pod ---------------

    def pod(self, env, fs_group, spire=False, links=True):
        """A Pod of this image with env over the image's own, the
        kubelet's variables (with links, SERVICE_LINKS too) and NSP's
        Service name in its /etc/hosts."""
        cfg = self.inspect()["Config"]
        full = dict(e.split("=", 1) for e in cfg["Env"])
        full.update(KUBELET_ENV)
        if links:
            full.update(SERVICE_LINKS)
        full.update(env)
        nsp_host = env["IPAM_NSP_SERVICE"].rsplit(":", 1)[0]
        return Pod(self, self.root, self.tmp, full, cfg["Entrypoint"], fs_group,
                   services=[nsp_host], spire=spire)

    def nsp(self, pod, credentials=None):
        """A fake NSP listing conduit-a of trench-a, in the pod's network
        namespace at the port of IPAM_NSP_SERVICE."""
        n = fakensp.FakeNsp()
        n.set_conduits([("conduit-a", "trench-a")])
        port = int(pod.env["IPAM_NSP_SERVICE"].rsplit(":", 1)[1])
        pod.in_netns(lambda: n.start(port, credentials))
        self.addCleanup(n.stop)
        return n

    def spiffe_nsp(self, pod, ca):
        """The fake NSP with an SVID of its own, requiring SPIFFE mTLS of
        its clients: a certificate chaining to the trust bundle."""
        svid = ca.issue(NSP_ID)
        creds = grpc.ssl_server_credentials([(svid.key_pem(), svid.cert_pem())],
                                            root_certificates=ca.pem(),
                                            require_client_auth=True)
        return self.nsp(pod, creds)

    def agent(self, pod, ca):
        """A fake SPIRE agent (not started) whose socket lands in the pod's
        /run/spire/sockets, handing out the ipam's SVID."""
        a = fakespire.FakeSpire(os.path.join(pod.spire, "agent.sock"), ca)
        a.set_svid(IPAM_ID)
        self.addCleanup(a.stop)
        return a

    @staticmethod
    def start_agent(agent):
        agent.start()
        # Connectable by any user, as SPIRE's agent leaves its socket: the
        # daemon runs as 10004.
        os.chmod(agent.path, 0o777)

    def spiffe_client(self, pod, ca):
        """A proxy's SPIFFE mTLS client (grpc-js) in the pod's network
        namespace, accepting only the ipam's SPIFFE ID; returns a function
        that allocates a child's address (the answer as a dict)."""
        client = NodeClient(prefix=pod.nsenter())
        self.addCleanup(client.close)
        bundle, key, cert = ca.issue(PROXY_ID).files(pod.dir, "proxy")

        def allocate(name, family=4):
            return client.call({
                "target": "127.0.0.1:" + pod.env["IPAM_PORT"], "bundle": bundle,
                "key": key, "cert": cert, "expect": IPAM_ID, "method": "allocate",
                "timeout_ms": 5000,
                "child": {"name": name, "conduit": "conduit-a", "node": "worker-1",
                          "family": family, "trench": pod.env["IPAM_TRENCH_NAME"]}})
        return allocate

    def wait_started(self, pod, startup):
        """Runs the startup probe until it passes, as the kubelet does."""
        deadline = time.monotonic() + 30
        rc = None
        while time.monotonic() < deadline and pod.running():
            rc, _ = pod.probe(startup)
            if rc == 0:
                return
            time.sleep(0.3)
        self.fail(f"startup probe never passed (last exit {rc}):\n" + pod.log()[-3000:])

    def check_probes(self, pod, probes, want=0):
        """Every probe exits want, each within its probe's timeoutSeconds."""
        for cmd, timeout in probes:
            rc, secs = pod.probe(cmd)
            self.assertEqual(rc, want, f"{cmd}:\n" + pod.log()[-3000:])
            self.assertLess(secs, timeout, cmd)

    def check_stopped(self, pod, probe, names):
        """An orderly stop; the probe fails then; the volume holds
        registry.db with names, as fsGroup leaves it; the root stayed
        read-only."""
        self.assertEqual(pod.stop(), 0, pod.log()[-3000:])
        # Each worker stopped by itself, before PID 1 ended the namespace.
        stopped = {}
        for line in pod.log().splitlines():
            if line.startswith("{") and '"worker stopped"' in line:
                extra = json.loads(line)["extra_data"]
                stopped[extra["worker"]] = extra["status"]
        self.assertEqual(stopped, {"db": "exit 0", "api": "exit 0", "nsp": "exit 0"})
        self.assertNotEqual(pod.probe(probe)[0], 0)
        st = os.stat(os.path.join(pod.data, "registry.db"))
        self.assertEqual((st.st_uid, st.st_gid), (10004, pod.fs_group))
        st = os.stat(pod.data)
        self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o7777),
                         (0, pod.fs_group, 0o2775))
        have = [name for name, _ in pod.rows()]
        for n in names:
            self.assertIn(n, have)
        self.assertNotIn("root is writable", pod.log())

    @harness.needs(harness.why_no_other_user)
    @harness.needs(harness.why_no_private_mounts)
    def test_operator_pod_with_spire(self):
        # The StatefulSet Meridio's operator writes, SPIRE agent started
        # after the daemon, NSP requiring SPIFFE mTLS.
        pod = self.pod(OPERATOR_ENV, OPERATOR_FS_GROUP, spire=True)
        ca = fakespire.Ca("example.org")
        agent = self.agent(pod, ca)
        nsp = self.spiffe_nsp(pod, ca)
        allocate = self.spiffe_client(pod, ca)
        # Nothing runs yet: no socket, no connection (2).
        self.assertEqual(pod.probe(OPERATOR_PROBES[0][0])[0], 2)
        pod.start()
        poll(lambda: "waiting for an SVID" in pod.log() or not pod.running(), 20,
             what="the daemon waiting for an SVID")
        self.assertTrue(pod.running(), pod.log()[-3000:])
        # The daemon is the container's PID 1.
        pid = pod.pid1()
        self.assertRegex(Path(f"/proc/{pid}/status").read_text(), r"(?m)^NSpid:\s+\d+\s+1$")
        self.assertEqual(Path(f"/proc/{pid}/cmdline").read_text().split("\0")[0],
                         pod.entrypoint[0])
        # Alive without an SVID: every probe says NOT_SERVING (4), the port
        # takes no call.
        self.check_probes(pod, OPERATOR_PROBES, want=4)
        early = allocate("early")
        self.assertFalse(early["ok"], early)
        self.assertEqual(early["code"], grpc.StatusCode.UNAVAILABLE.value[0], early)
        self.start_agent(agent)
        self.wait_started(pod, OPERATOR_PROBES[0][0])
        self.check_probes(pod, OPERATOR_PROBES)
        # The image's own health check, and a SPIFFE probe of the port, as
        # the image's user through the agent's socket.
        hc = self.inspect()["Healthcheck"]["Test"]
        self.assertEqual(hc[0], "CMD")
        self.assertEqual(pod.run(*hc[1:]).returncode, 0)
        r = pod.run(*SPIFFE_PORT_PROBE)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # A proxy's Allocate over SPIFFE mTLS, in both families (dualstack).
        v4 = allocate("proxy-a")
        self.assertTrue(v4["ok"], str(v4) + pod.log()[-3000:])
        self.assertEqual(v4["server_id"], IPAM_ID)
        self.assertEqual(v4["prefixLength"], 24)
        self.assertTrue(v4["address"].startswith("172.16."), v4)
        v6 = allocate("proxy-a", family=6)
        self.assertTrue(v6["ok"], v6)
        self.assertEqual(v6["prefixLength"], 64)
        self.assertTrue(v6["address"].startswith("fd00:"), v6)
        self.assertEqual(allocate("proxy-a")["address"], v4["address"])
        # NSP was reached by its Service name, over mTLS with the daemon's SVID.
        certs = [c for c in nsp.peer_certs() if c]
        self.assertTrue(certs, "NSP saw no client certificate")
        self.assertEqual(fakespire.uri_sans_of_pem(certs[-1]), [IPAM_ID])
        self.assertEqual(nsp.request_trenches()[-1], "trench-a")
        self.check_stopped(pod, OPERATOR_PROBES[1][0], ["conduit-a", "proxy-a"])
        # Both addresses the proxy got are the ones on the volume.
        cidrs = [cidr for name, cidr in pod.rows() if name == "proxy-a"]
        for a in (v4, v6):
            ip = a["address"].split("/")[0]
            self.assertTrue([c for c in cidrs if c.split("/")[0] == ip], (a, cidrs))

    @harness.needs(harness.why_no_other_user)
    @harness.needs(harness.why_no_private_mounts)
    def test_chart_pod_with_spire(self):
        # This chart rendered with Meridio's values: its environment and
        # mounts, the agent up first.
        spec, c = chart_pod()
        env = chart_env(c, "red")
        self.assertEqual(env["SPIFFE_ENDPOINT_SOCKET"], OPERATOR_ENV["SPIFFE_ENDPOINT_SOCKET"])
        mounts = {m["mountPath"]: m.get("readOnly", False) for m in c["volumeMounts"]}
        self.assertEqual(mounts, {"/run/spire/sockets": True, "/run/ipam/data": False,
                                  "/tmp": False})
        probes = chart_probes(c)
        pod = self.pod(env, spec["securityContext"]["fsGroup"], spire=True,
                       links=spec.get("enableServiceLinks", True))
        ca = fakespire.Ca("example.org")
        self.start_agent(self.agent(pod, ca))
        nsp = self.spiffe_nsp(pod, ca)
        allocate = self.spiffe_client(pod, ca)
        pod.start()
        self.wait_started(pod, probes[0][0])
        self.check_probes(pod, probes)
        r = allocate("proxy-b")
        self.assertTrue(r["ok"], str(r) + pod.log()[-3000:])
        self.assertEqual(r["server_id"], IPAM_ID)
        self.assertEqual(r["prefixLength"], 24)
        self.assertTrue(nsp.peer_certs(), "NSP never called")
        self.check_stopped(pod, probes[1][0], ["conduit-a", "proxy-b"])

    @harness.needs(harness.why_no_other_user)
    @harness.needs(harness.why_no_private_mounts)
    def test_chart_pod_without_spire(self):
        # spiffe.enabled=false, for clusters without SPIRE: plaintext
        # port and NSP; the image's ipamctl allocates, as a user would
        # with kubectl exec.
        spec, c = chart_pod("--set", "spiffe.enabled=false")
        env = chart_env(c, "red")
        self.assertNotIn("SPIFFE_ENDPOINT_SOCKET", env)
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        self.assertEqual(mounts, {"/run/ipam/data", "/tmp"})
        probes = chart_probes(c)
        pod = self.pod(env, spec["securityContext"]["fsGroup"],
                       links=spec.get("enableServiceLinks", True))
        self.nsp(pod)
        self.assertEqual(pod.probe(probes[0][0])[0], 2)
        pod.start()
        self.wait_started(pod, probes[0][0])
        self.check_probes(pod, probes)
        r = pod.run("/usr/bin/ipamctl", "allocate", "--conduit", "conduit-a",
                    "--node", "node-1", "--name", "pod-1", timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + pod.log()[-3000:])
        self.assertTrue(r.stdout.startswith("172.16."), r.stdout)
        self.check_stopped(pod, probes[1][0], ["conduit-a", "pod-1"])


if __name__ == "__main__":
    unittest.main()
