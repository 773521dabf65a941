"""grpc_health_probe (cmd/grpc_health_probe): grpc-health-probe's flags and
exit statuses, against the real daemon on its health socket and on its
port (plaintext and file TLS), and against python3-grpcio servers that
answer slowly or not at all.

Exit statuses: 0 SERVING, 1 bad arguments, 2 connection failed, 3 RPC
failed, 4 not SERVING.
"""

import os
import socket
import subprocess
import threading
import time
import unittest
from concurrent import futures

import grpc

import harness
from harness import DaemonTest, poll
import health_pb2

PROBE = os.path.join(harness.BIN_DIR, "grpc_health_probe")
NAMES = ("", "ipam.v1.Ipam", "Startup", "Readiness", "Liveness")


def probe(*args, timeout=30):
    """Runs the probe; returns (exit status, stderr, stdout, seconds)."""
    t0 = time.monotonic()
    r = subprocess.run([PROBE] + list(args), capture_output=True, text=True,
                       timeout=timeout, env={"PATH": "/usr/bin:/bin"})
    return r.returncode, r.stderr, r.stdout, time.monotonic() - t0


def openssl(args, cwd):
    r = subprocess.run(["openssl"] + args, cwd=cwd, capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("openssl %s: %s" % (" ".join(args), r.stderr))


def make_cert(d, name, ca=None):
    """<d>/<name>.crt/.key: a CA (ca None) or a leaf for 127.0.0.1 and
    localhost signed by ca."""
    args = ["req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", "/CN=" + name, "-keyout", name + ".key", "-out", name + ".crt"]
    if ca is None:
        args += ["-addext", "basicConstraints=critical,CA:TRUE"]
    else:
        args += ["-CA", ca + ".crt", "-CAkey", ca + ".key",
                 "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                 "-addext", "basicConstraints=critical,CA:FALSE"]
    openssl(args, d)


def hold_db(d):
    """Makes d start its db worker only once the returned gate file exists:
    until then the daemon is up but NOT_SERVING."""
    gate = os.path.join(d.dir, "gate")
    wrapper = os.path.join(d.dir, "hold-db.sh")
    with open(wrapper, "w") as f:
        f.write('#!/bin/sh\ncase "$1" in *meridio-ipam-db)\n'
                '  while [ ! -e "$HOLD_GATE" ]; do sleep 0.05; done;;\n'
                'esac\nexec "$@"\n')
    os.chmod(wrapper, 0o755)
    d.env.update({"IPAMD_WORKER_WRAPPER": wrapper, "HOLD_GATE": gate})
    return gate


class SlowHealth:
    """A python3-grpcio server whose Health/Check never answers in time
    (it waits until the server stops), on TCP or a Unix socket; with
    health=False it serves no Health at all."""

    def __init__(self, addr, health=True):
        self.release = threading.Event()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        if health:
            def check(request, context):
                self.release.wait(30)
                return health_pb2.HealthCheckResponse(
                    status=health_pb2.HealthCheckResponse.SERVING)
            handler = grpc.method_handlers_generic_handler(
                "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(
                    check,
                    request_deserializer=health_pb2.HealthCheckRequest.FromString,
                    response_serializer=health_pb2.HealthCheckResponse.SerializeToString)})
            self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port(addr)
        self.server.start()

    def stop(self):
        self.release.set()
        self.server.stop(0)


class Plain(DaemonTest):
    """The daemon without TLS: its socket and its port (by address: a
    machine without /etc/hosts resolves no localhost)."""

    def setUp(self):
        super().setUp()
        self.d = self.daemon()
        self.sock = self.d.env["IPAM_HEALTH_SOCKET"]
        # ":port", an empty host, is the local host as Go dials it (no
        # name to resolve).
        self.addrs = ("unix://" + self.sock, "unix:" + self.sock,
                      "127.0.0.1:%d" % self.d.port, "[::1]:%d" % self.d.port,
                      ":%d" % self.d.port)

    def assertExit(self, want, args, text=None):
        rc, err, out, took = probe(*args)
        self.assertEqual(rc, want, "probe %s: %s%s" % (" ".join(args), err, out))
        if text is not None:
            self.assertIn(text, err, " ".join(args))
        return err, took

    def test_serving_every_name_exit_0(self):
        for addr in self.addrs:
            for name in NAMES:
                self.assertExit(0, ["-addr=" + addr, "-service=" + name],
                                "status: SERVING")

    def test_meridio_probe_commands(self):
        """The exec probes of Meridio's chart and operator, verbatim but
        for the socket's path."""
        for name in ("Startup", "Readiness", "Liveness"):
            self.assertExit(0, ["-addr=unix://" + self.sock, "-service=" + name])

    def test_unknown_service_exit_3(self):
        for addr in self.addrs[::2]:
            self.assertExit(3, ["-addr", addr, "-service", "no.such.Service"],
                            "NOT_FOUND")

    def test_connection_failed_exit_2(self):
        stale = os.path.join(self.d.dir, "stale.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(stale)
        s.close()
        closed = harness.free_port()
        for addr in ("unix://" + os.path.join(self.d.dir, "none.sock"),
                     "unix://" + stale, "127.0.0.1:%d" % closed):
            err, took = self.assertExit(2, ["-addr=" + addr,
                                            "-connect-timeout=300ms"],
                                        "within 300ms")
            self.assertLess(took, 5.0)

    def test_listener_that_never_speaks_exit_2(self):
        """Accepted by the kernel, never an HTTP/2 answer: no connection."""
        path = os.path.join(self.d.dir, "mute.sock")
        for family, addr, target in (
                (socket.AF_UNIX, path, "unix://" + path),
                (socket.AF_INET, ("127.0.0.1", 0), None)):
            s = socket.socket(family, socket.SOCK_STREAM)
            self.addCleanup(s.close)
            s.bind(addr)
            s.listen(8)
            if target is None:
                target = "127.0.0.1:%d" % s.getsockname()[1]
            err, took = self.assertExit(2, ["-addr", target,
                                            "-connect-timeout", "500ms"])
            self.assertGreaterEqual(took, 0.4)
            self.assertLess(took, 5.0)

    def test_rpc_timeout_exit_3(self):
        path = os.path.join(self.d.dir, "slow.sock")
        tcp = SlowHealth("127.0.0.1:0")
        self.addCleanup(tcp.stop)
        uds = SlowHealth("unix:" + path)
        self.addCleanup(uds.stop)
        for target in ("127.0.0.1:%d" % tcp.port, "unix://" + path):
            err, took = self.assertExit(3, ["-addr=" + target, "-rpc-timeout=300ms"],
                                        "within 300ms")
            self.assertIn("timeout", err)
            self.assertLess(took, 5.0)

    def test_no_health_service_exit_3(self):
        other = SlowHealth("127.0.0.1:0", health=False)
        self.addCleanup(other.stop)
        self.assertExit(3, ["-addr=127.0.0.1:%d" % other.port], "UNIMPLEMENTED")

    def test_plaintext_probe_on_tls_less_port_with_tls_exit_2(self):
        self.assertExit(2, ["-addr=127.0.0.1:%d" % self.d.port, "-tls",
                            "-tls-no-verify", "-connect-timeout=300ms"])

    def test_flag_forms_of_go(self):
        port = "127.0.0.1:%d" % self.d.port
        for args in (["-addr", port], ["--addr", port], ["--addr=" + port],
                     ["-addr=" + port, "-rpc-timeout", "1m30s"],
                     ["-addr=" + port, "--connect-timeout=1.5s", "-rpc-timeout=500ms"],
                     ["-addr=" + port, "-tls=false", "-v=false"],
                     ["-addr=" + port, "-v"],
                     ["-addr=" + port, "-service", "Startup", "--"],
                     ["-addr=nowhere:1", "-addr=" + port]):
            self.assertExit(0, args)

    def test_verbose_says_what_it_does(self):
        err, _ = self.assertExit(0, ["-addr=unix://" + self.sock, "-v"])
        self.assertIn("-connect-timeout=1s", err)
        self.assertIn("-rpc-timeout=1s", err)
        self.assertIn("connected in", err)

    def test_bad_arguments_exit_1(self):
        port = "127.0.0.1:%d" % self.d.port
        cases = [
            ([], "-addr not specified"),
            (["-service=Startup"], "-addr not specified"),
            (["-addr"], "-addr needs a value"),
            (["-addr=" + port, "-nope"], "unknown flag -nope"),
            (["-addr=" + port, "extra"], "unexpected argument \"extra\""),
            (["-addr=" + port, "--", "extra"], "unexpected argument \"extra\""),
            (["---addr=" + port], "bad flag syntax"),
            (["-addr=" + port, "-tls", "false"], "unexpected argument \"false\""),
            (["-addr=" + port, "-tls=maybe"], "-tls: invalid boolean"),
            (["-addr=" + port, "-rpc-timeout=1x"], "-rpc-timeout: invalid duration \"1x\""),
            (["-addr=" + port, "-rpc-timeout", "10"], "invalid duration \"10\""),
            (["-addr=" + port, "-connect-timeout=1.s.5"], "invalid duration"),
            (["-addr=" + port, "-connect-timeout=0"], "greater than zero (specified: 0s)"),
            (["-addr=" + port, "-rpc-timeout=-1s"], "greater than zero (specified: -1s)"),
            (["-addr=" + port, "-tls-no-verify"], "-tls-no-verify needs -tls"),
            (["-addr=" + port, "-tls-ca-cert=/x"], "-tls-ca-cert needs -tls"),
            (["-addr=" + port, "-tls-server-name=x"], "-tls-server-name needs -tls"),
            (["-addr=" + port, "-tls", "-tls-client-cert=/c"],
             "-tls-client-cert needs -tls-client-key"),
            (["-addr=" + port, "-tls", "-tls-client-key=/k"],
             "-tls-client-key needs -tls-client-cert"),
            (["-addr=" + port, "-tls", "-tls-no-verify", "-tls-ca-cert=/x"], "exclude"),
            (["-addr=" + port, "-tls", "-tls-ca-cert=/no/such/ca.pem"],
             "/no/such/ca.pem"),
            (["-addr=" + port, "-spiffe", "-tls"], "-spiffe and -tls exclude each other"),
        ]
        for args, text in cases:
            rc, err, out, _ = probe(*args)
            self.assertEqual(rc, 1, "%s: %s" % (args, err))
            self.assertIn(text, err, args)
            self.assertEqual(len(err.strip().splitlines()), 1, err)

    def test_help_exit_0(self):
        for flag in ("-h", "--help", "-help"):
            rc, err, out, _ = probe(flag)
            self.assertEqual(rc, 0)
            for name in ("-addr", "-service", "-connect-timeout", "-rpc-timeout",
                         "-tls", "-tls-no-verify", "-tls-ca-cert", "-tls-client-cert",
                         "-tls-client-key", "-tls-server-name", "-spiffe", "-v"):
                self.assertIn("  %s" % name, out)


class NotServing(DaemonTest):
    """The db worker held back: socket and port answer NOT_SERVING."""

    def test_not_serving_exit_4_then_0(self):
        d = harness.Daemon()
        self._daemons.append(d)
        gate = hold_db(d)
        d.start(wait=False)
        sock = d.env["IPAM_HEALTH_SOCKET"]
        targets = ("unix://" + sock, "127.0.0.1:%d" % d.port)
        poll(lambda: all(probe("-addr=" + t)[0] == 4 for t in targets), 20,
             what="exit 4 on socket and port")
        for t in targets:
            for name in NAMES:
                rc, err, _, _ = probe("-addr=" + t, "-service=" + name)
                self.assertEqual(rc, 4, err)
                self.assertIn('responded with "NOT_SERVING"', err)
        open(gate, "w").close()
        poll(lambda: all(probe("-addr=" + t)[0] == 0 for t in targets), 20,
             what="exit 0 once the db worker runs")


class Tls(DaemonTest):
    """The port over file TLS (IPAM_TLS_CERT/KEY, then IPAM_TLS_CA)."""

    @classmethod
    def setUpClass(cls):
        cls.certs = harness.make_tmpdir("ipam-probe-tls-")
        for name, ca in (("ca1", None), ("ca2", None), ("server", "ca1"),
                         ("client", "ca1"), ("rogue", "ca2")):
            make_cert(cls.certs, name, ca)

    @classmethod
    def tearDownClass(cls):
        subprocess.run(["rm", "-rf", cls.certs])

    def c(self, name):
        return os.path.join(self.certs, name)

    def tls_daemon(self, mutual=False):
        env = {"IPAM_TLS_CERT": self.c("server.crt"), "IPAM_TLS_KEY": self.c("server.key")}
        if mutual:
            env["IPAM_TLS_CA"] = self.c("ca1.crt")
        d = self.daemon(env=env, start=False)
        d.start(wait=False)
        addr = "127.0.0.1:%d" % d.port
        poll(lambda: probe("-addr=" + addr, "-tls", "-tls-no-verify",
                           *self.client_args(mutual))[0] == 0, 30,
             what="TLS daemon serving")
        return d, addr

    def client_args(self, mutual):
        if not mutual:
            return []
        return ["-tls-client-cert=" + self.c("client.crt"),
                "-tls-client-key=" + self.c("client.key")]

    def test_tls_port(self):
        d, addr = self.tls_daemon()
        ok = [["-tls", "-tls-ca-cert=" + self.c("ca1.crt")],
              ["-tls", "-tls-ca-cert", self.c("ca1.crt"), "-tls-server-name=localhost"],
              ["-tls", "-tls-no-verify"],
              ["--tls=true", "--tls-no-verify", "-service=Readiness"]]
        for extra in ok:
            rc, err, _, _ = probe("-addr=" + addr, *extra)
            self.assertEqual(rc, 0, "%s: %s" % (extra, err))
        refused = [[],                                     # plaintext to TLS
                   ["-tls"],                               # system roots
                   ["-tls", "-tls-ca-cert=" + self.c("ca2.crt")],
                   ["-tls", "-tls-ca-cert=" + self.c("ca1.crt"),
                    "-tls-server-name=other.example"]]
        for extra in refused:
            rc, err, _, took = probe("-addr=" + addr, "-connect-timeout=500ms", *extra)
            self.assertEqual(rc, 2, "%s: %s" % (extra, err))
            self.assertLess(took, 5.0)
        # unknown service over TLS: RPC failure
        rc, err, _, _ = probe("-addr=" + addr, "-tls", "-tls-no-verify", "-service=x")
        self.assertEqual(rc, 3, err)
        # the health socket stays plaintext
        rc, err, _, _ = probe("-addr=unix://" + d.env["IPAM_HEALTH_SOCKET"])
        self.assertEqual(rc, 0, err)

    def test_mutual_tls_port(self):
        d, addr = self.tls_daemon(mutual=True)
        for verify in (["-tls-ca-cert=" + self.c("ca1.crt")], ["-tls-no-verify"]):
            rc, err, _, _ = probe("-addr=" + addr, "-tls", *verify,
                                  *self.client_args(True))
            self.assertEqual(rc, 0, "%s: %s" % (verify, err))
        for extra in ([],
                      ["-tls-client-cert=" + self.c("rogue.crt"),
                       "-tls-client-key=" + self.c("rogue.key")]):
            rc, err, _, _ = probe("-addr=" + addr, "-tls", "-tls-ca-cert=" + self.c("ca1.crt"),
                                  "-connect-timeout=500ms", *extra)
            # refused in the handshake (2) or right after it (3): never 0
            self.assertIn(rc, (2, 3), "%s: %s" % (extra, err))

    def test_unreadable_client_key_exit_1(self):
        for extra in (["-tls-no-verify"], ["-tls-ca-cert=" + self.c("ca1.crt")]):
            rc, err, _, _ = probe("-addr=127.0.0.1:1", "-tls", *extra,
                                  "-tls-client-cert=" + self.c("client.crt"),
                                  "-tls-client-key=/no/such.key")
            self.assertEqual(rc, 1, err)
            self.assertIn("/no/such.key", err)


class Install(unittest.TestCase):
    def test_make_install_puts_it_in_bin(self):
        dest = harness.make_tmpdir("ipam-probe-install-")
        try:
            r = subprocess.run(["cmake", "--install", os.path.dirname(harness.BIN_DIR),
                                "--prefix", "/usr"],
                               env=dict(os.environ, DESTDIR=dest),
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(os.access(os.path.join(dest, "usr/bin/grpc_health_probe"),
                                      os.X_OK))
        finally:
            subprocess.run(["rm", "-rf", dest])


if __name__ == "__main__":
    unittest.main()
