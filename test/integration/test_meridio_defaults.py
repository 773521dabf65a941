"""Meridio's defaults and variables: IPAM_NSP_SERVICE defaults to Meridio's
nsp-service:7778, IPAM_CONDUITS selects static conduits and no NSP, a
daemon without any conduit source says so, and IPAM_NAMESPACE (set by
Meridio's chart and operator) is accepted and logged."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import unittest

import harness
from harness import DaemonTest, RpcError


def field(rec, key):
    """A caller's field of a log record (Meridio's extra_data)."""
    return rec["extra_data"].get(key)


def with_message(d, text):
    return [r for r in d.log_records() if text in r.get("message", "")]


class MeridioDefaults(DaemonTest):

    def test_namespace_accepted_and_logged(self):
        d = self.daemon(env={"IPAM_NAMESPACE": "red"})
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "p"), ("169.255.0.1", 24))
        (start,) = with_message(d, "starting")
        self.assertEqual(field(start, "namespace"), "red")
        self.assertEqual(field(start, "trench"), harness.TRENCH)
        self.assertEqual(field(start, "conduits"), "conduit-a,conduit-b")
        self.assertEqual(field(start, "nsp_service"), "")

    def test_nsp_service_defaults_to_meridios(self):
        d = self.daemon(start=False, conduits="")
        del d.env["IPAM_NSP_SERVICE"]
        d.start()
        (start,) = with_message(d, "starting")
        self.assertEqual(field(start, "nsp_service"), "nsp-service:7778")
        self.assertEqual(with_message(d, "no conduits"), [])

    def test_conduits_override_nsp_service_with_a_warning(self):
        d = self.daemon(start=False, env={"IPAM_NSP_SERVICE": "nsp-service-trench-a:7778"})
        d.start()
        d.wait_conduits(["conduit-a", "conduit-b"])
        self.assertEqual(d.client.allocate("conduit-b", "worker-1", "p"), ("169.255.16.1", 24))
        (warn,) = with_message(d, "IPAM_NSP_SERVICE ignored")
        self.assertEqual(warn["severity"], "warning")
        self.assertEqual(field(warn, "IPAM_NSP_SERVICE"), "nsp-service-trench-a:7778")
        (start,) = with_message(d, "starting")
        self.assertEqual(field(start, "nsp_service"), "")

    def test_no_conduit_source_warns(self):
        d = self.daemon(conduits="")
        self.assertEqual(d.env["IPAM_NSP_SERVICE"], "")
        (warn,) = with_message(d, "no conduits")
        self.assertEqual(warn["severity"], "warning")
        self.assertIn("IPAM_CONDUITS", warn["message"])
        self.assertIn("IPAM_NSP_SERVICE", warn["message"])


class MakeRun(unittest.TestCase):
    """scripts/run.sh, what `make run` runs."""

    def run_script(self, env):
        cwd = harness.make_tmpdir()
        rt = tempfile.mkdtemp(prefix="ipam-rt-", dir="/tmp")
        self.addCleanup(shutil.rmtree, cwd, True)
        self.addCleanup(shutil.rmtree, rt, True)
        port = harness.free_port()
        full = {k: v for k, v in os.environ.items() if not k.startswith("IPAM_")}
        full.update({"IPAM_PORT": str(port), "TMPDIR": rt})
        self.rt = rt
        full.update(env)
        self.log_path = os.path.join(cwd, "out.log")
        with open(self.log_path, "wb") as log:
            p = subprocess.Popen(["sh", os.path.join(harness._REPO, "scripts", "run.sh"),
                                  os.path.dirname(harness.BIN_DIR)],
                                 cwd=cwd, env=full, stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=log, start_new_session=True)

        def stop():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(5)
        self.addCleanup(stop)
        self.proc = p
        return port

    def start_record(self):
        def find():
            with open(self.log_path, errors="replace") as f:
                for line in f:
                    if line.startswith("{") and json.loads(line).get("message") == "starting":
                        return json.loads(line)
            return None
        harness.poll(lambda: find() is not None or self.proc.poll() is not None, 20, 0.05,
                     "the start line")
        rec = find()
        self.assertIsNotNone(rec, open(self.log_path, errors="replace").read())
        return rec

    def test_static_conduits_by_default(self):
        port = self.run_script({})
        rec = self.start_record()
        self.assertEqual(field(rec, "conduits"), "conduit-a,conduit-b")
        self.assertEqual(field(rec, "nsp_service"), "")
        c = harness.Client("127.0.0.1:%d" % port)
        self.addCleanup(c.close)
        got = []

        def allocated():
            try:
                got.append(c.allocate("conduit-b", "worker-1", "proxy-1"))
                return True
            except RpcError:
                return False
        harness.poll(allocated, 20, 0.1, "an allocation on conduit-b")
        self.assertEqual(got[-1], ("169.255.16.1", 24))

    def test_nsp_service_of_the_caller_is_used(self):
        self.run_script({"IPAM_NSP_SERVICE": "127.0.0.1:%d" % harness.free_port()})
        rec = self.start_record()
        self.assertTrue(field(rec, "nsp_service").startswith("127.0.0.1:"), rec)
        self.assertEqual(field(rec, "conduits"), "")

    def test_printed_commands_work_as_printed(self):
        # From another shell of the same user (same TMPDIR): allocate in
        # both families, then release prints both addresses and frees them;
        # release names this instance's admin socket, so another instance
        # whose socket ipamctl would also find (same TMPDIR) changes nothing.
        port = self.run_script({})
        other = harness.Daemon(env={"TMPDIR": self.rt})
        self.addCleanup(other.stop)
        other.start()
        self.start_record()
        c = harness.Client("127.0.0.1:%d" % port)
        self.addCleanup(c.close)

        def serving():
            try:
                return c.health() == "SERVING"
            except RpcError:
                return False
        harness.poll(serving, 20, 0.1, "SERVING")
        with open(self.log_path, errors="replace") as f:
            cmds = [l.split() for l in f if l.startswith("  ") and "/ipamctl " in l]
        self.assertEqual([cmd[1] for cmd in cmds],
                         ["allocate", "allocate", "release", "health"], cmds)
        env = {k: v for k, v in os.environ.items() if not k.startswith("IPAM_")}
        env["TMPDIR"] = self.rt
        outs = []
        for cmd in cmds:
            r = subprocess.run(cmd, env=env, capture_output=True,
                               text=True, timeout=30)
            self.assertEqual(r.returncode, 0, (cmd, r.stderr))
            outs.append(r.stdout)
        self.assertEqual(outs, ["169.255.0.1/24\n", "fd00::1/64\n",
                                "169.255.0.1\nfd00::1\n", "SERVING\n"])


if __name__ == "__main__":
    unittest.main()
