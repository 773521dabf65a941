"""TLS and mTLS of meridio-ipam, end to end (issue 4, security).

The real daemon serves its gRPC port over TLS from IPAM_TLS_CERT and
IPAM_TLS_KEY (clients must present a certificate signed by IPAM_TLS_CA when
it is set), and talks TLS to NSP with IPAM_NSP_TLS_CA / _CERT / _KEY. The
certificates are made here with openssl: two CAs, server certificates for
127.0.0.1 and localhost, client certificates, and a rogue client from the
second CA. Clients are Debian's python3-grpcio (grpc.ssl_channel_credentials),
Python's ssl module (to read the certificate a fresh connection is served)
and the project's ipamctl and ipam-bench. Rotation replaces the files on
disk while the daemon runs: new connections must see the new files.
"""

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import harness
from harness import RpcError, V4

import grpc
import health_pb2
import health_pb2_grpc
from ipam.v1 import ipam_pb2_grpc

IPAMCTL = os.path.join(harness.BIN_DIR, "ipamctl")
BENCH = os.path.join(harness.BIN_DIR, "ipam-bench")


# ---------------------------------------------------------------------------
# Certificates


def _openssl(args, cwd):
    r = subprocess.run(["openssl"] + args, cwd=cwd, capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("openssl %s failed: %s" % (" ".join(args), r.stderr))


def make_ca(d, name):
    """A self-signed CA: <d>/<name>.crt and <name>.key."""
    _openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
              "-subj", "/CN=" + name,
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-keyout", name + ".key", "-out", name + ".crt"], d)


def make_leaf(d, name, ca, cn, dns=()):
    """A certificate <d>/<name>.crt/.key signed by ca, for 127.0.0.1, ::1,
    localhost and the extra dns names, with common name cn."""
    san = ",".join(["IP:127.0.0.1", "IP:::1", "DNS:localhost"]
                   + ["DNS:" + n for n in dns])
    _openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
              "-subj", "/CN=" + cn, "-CA", ca + ".crt", "-CAkey", ca + ".key",
              "-addext", "subjectAltName=" + san,
              "-addext", "basicConstraints=critical,CA:FALSE",
              "-keyout", name + ".key", "-out", name + ".crt"], d)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def replace(src, dst):
    """Puts a copy of src at dst the way rotation tools do: written aside,
    then renamed over the old file."""
    tmp = dst + ".new"
    shutil.copyfile(src, tmp)
    os.rename(tmp, dst)


class Certs:
    """Every certificate the tests need, made once in a scratch directory."""

    def __init__(self):
        self.dir = harness.make_tmpdir("ipam-tls-")
        make_ca(self.dir, "ca1")
        make_ca(self.dir, "ca2")
        make_leaf(self.dir, "server1", "ca1", "ipam-server-1", ["ipam-1.test"])
        make_leaf(self.dir, "server2", "ca1", "ipam-server-2", ["ipam-2.test"])
        make_leaf(self.dir, "client1", "ca1", "client-1")
        make_leaf(self.dir, "rogue", "ca2", "rogue-client")
        make_leaf(self.dir, "client2", "ca2", "client-2")
        make_leaf(self.dir, "nsp", "ca1", "fake-nsp")
        make_leaf(self.dir, "nspclient1", "ca1", "ipam-nsp-1")
        make_leaf(self.dir, "nspclient2", "ca1", "ipam-nsp-2")
        with open(self.path("ca12.crt"), "wb") as f:
            f.write(read(self.path("ca1.crt")) + read(self.path("ca2.crt")))

    def path(self, name):
        return os.path.join(self.dir, name)

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------
# Clients


class TlsClient(harness.Client):
    """harness.Client over TLS: roots ca, optionally a client certificate,
    optionally another name expected in the server's certificate."""

    def __init__(self, target, ca, cert=None, key=None, server_name=None):
        self.target = target
        creds = grpc.ssl_channel_credentials(
            root_certificates=read(ca),
            private_key=read(key) if key else None,
            certificate_chain=read(cert) if cert else None)
        opts = [("grpc.enable_retries", 0),
                ("grpc.use_local_subchannel_pool", 1)]
        if server_name:
            opts.append(("grpc.ssl_target_name_override", server_name))
        self.channel = grpc.secure_channel(target, creds, options=opts)
        self.ipam = ipam_pb2_grpc.IpamStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)


def one_health(client):
    """Health/Check on client, then closes it: the status name, or the
    RpcError code."""
    try:
        return client.health(timeout=3.0)
    except RpcError as e:
        return e.code
    finally:
        client.close()


def served_cert(port, ca, cert=None, key=None):
    """The certificate a fresh TLS connection to 127.0.0.1:port is served,
    as Python's ssl module decodes it (verified against ca)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return s.getpeercert()


def common_name(cert):
    for rdn in cert["subject"]:
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


# ---------------------------------------------------------------------------
# Tests


class TlsTest(harness.DaemonTest):
    @classmethod
    def setUpClass(cls):
        cls.certs = Certs()

    @classmethod
    def tearDownClass(cls):
        cls.certs.remove()

    def setUp(self):
        super().setUp()
        # The files the daemon is pointed at, in a directory of this test:
        # rotation tests replace them.
        self.files = tempfile.mkdtemp(prefix="files-", dir=self.certs.dir)
        self.addCleanup(shutil.rmtree, self.files, True)
        for src, dst in (("server1.crt", "tls.crt"), ("server1.key", "tls.key"),
                         ("ca1.crt", "ca.crt"), ("nspclient1.crt", "nsp.crt"),
                         ("nspclient1.key", "nsp.key")):
            shutil.copyfile(self.certs.path(src), self.file(dst))

    def file(self, name):
        return os.path.join(self.files, name)

    def c(self, name):
        return self.certs.path(name)

    def tls_daemon(self, mutual, **env):
        """A daemon serving TLS from tls.crt/tls.key (mTLS with ca.crt),
        started and SERVING to a TLS client."""
        e = {"IPAM_TLS_CERT": self.file("tls.crt"),
             "IPAM_TLS_KEY": self.file("tls.key")}
        if mutual:
            e["IPAM_TLS_CA"] = self.file("ca.crt")
        e.update(env)
        d = self.daemon(env=e, start=False)
        d.start(wait=False)
        cert = (self.c("client1.crt"), self.c("client1.key")) if mutual else (None, None)

        def serving():
            if not d.running():
                raise AssertionError("daemon exited\n" + d.log_tail())
            return one_health(TlsClient(d.target, self.c("ca1.crt"), *cert)) == "SERVING"
        harness.poll(serving, harness.START_TIMEOUT, 0.1,
                     lambda: "TLS daemon SERVING\n" + d.log_tail())
        return d

    def ipamctl(self, d, *args):
        return subprocess.run([IPAMCTL] + list(args) + ["--target", d.target],
                              capture_output=True, text=True, timeout=30)

    def test_tls_server_and_clients(self):
        d = self.tls_daemon(mutual=False)
        self.assertIn('"tls":"on"', d.log_text().replace(" ", ""))
        cl = TlsClient(d.target, self.c("ca1.crt"))
        addr = cl.allocate("conduit-a", "worker-1", "proxy-1", V4)
        self.assertEqual(cl.allocate("conduit-a", "worker-1", "proxy-1", V4), addr)
        cl.close()
        # no TLS at all, or TLS that trusts another CA: refused
        self.assertEqual(one_health(harness.Client(d.target)),
                         grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(one_health(TlsClient(d.target, self.c("ca2.crt"))),
                         grpc.StatusCode.UNAVAILABLE)
        # the certificate names localhost and ipam-1.test, nothing else
        self.assertEqual(one_health(TlsClient(d.target, self.c("ca1.crt"),
                                              server_name="other.test")),
                         grpc.StatusCode.UNAVAILABLE)
        # ipamctl: plaintext fails, TLS gives the same address
        r = self.ipamctl(d, "allocate", "--conduit", "conduit-a", "--node",
                         "worker-1", "--name", "proxy-1", "--timeout", "3s")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        r = self.ipamctl(d, "allocate", "--conduit", "conduit-a", "--node",
                         "worker-1", "--name", "proxy-1",
                         "--tls-ca", self.c("ca1.crt"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "%s/%d" % addr)
        r = self.ipamctl(d, "health", "--tls-ca", self.c("ca1.crt"),
                         "--tls-server-name", "ipam-1.test")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "SERVING"), r.stderr)
        # ipam-bench over TLS
        r = subprocess.run([BENCH, "health", "--target", d.target, "--duration",
                            "0.5", "--warmup", "0", "--concurrency", "4",
                            "--tls-ca", self.c("ca1.crt")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("errors=0", r.stdout)

    def test_mtls_requires_a_client_certificate_from_the_ca(self):
        d = self.tls_daemon(mutual=True)
        self.assertIn('"tls":"mutual"', d.log_text().replace(" ", ""))
        ca1 = self.c("ca1.crt")
        good = TlsClient(d.target, ca1, self.c("client1.crt"), self.c("client1.key"))
        addr = good.allocate("conduit-a", "worker-1", "proxy-m", V4)
        good.close()
        # without a certificate, with one from another CA, or in plaintext
        self.assertEqual(one_health(TlsClient(d.target, ca1)),
                         grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(one_health(TlsClient(d.target, ca1, self.c("rogue.crt"),
                                              self.c("rogue.key"))),
                         grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(one_health(harness.Client(d.target)),
                         grpc.StatusCode.UNAVAILABLE)
        # a refused client got nothing: the rogue cannot release either
        rogue = TlsClient(d.target, ca1, self.c("rogue.crt"), self.c("rogue.key"))
        with self.assertRaises(RpcError) as cm:
            rogue.release("conduit-a", "worker-1", "proxy-m", V4, timeout=3.0)
        rogue.close()
        self.assertEqual(cm.exception.code, grpc.StatusCode.UNAVAILABLE)
        # ipamctl: without a certificate refused, with one the same address
        r = self.ipamctl(d, "allocate", "--conduit", "conduit-a", "--node",
                         "worker-1", "--name", "proxy-m", "--tls-ca", ca1,
                         "--timeout", "3s")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        r = self.ipamctl(d, "allocate", "--conduit", "conduit-a", "--node",
                         "worker-1", "--name", "proxy-m", "--tls-ca", ca1,
                         "--tls-cert", self.c("client1.crt"),
                         "--tls-key", self.c("client1.key"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "%s/%d" % addr)

    def test_rotation_without_restart(self):
        d = self.tls_daemon(mutual=True)
        api = d.workers()["api"]
        ca1, cert, key = self.c("ca1.crt"), self.c("client1.crt"), self.c("client1.key")
        before = served_cert(d.port, ca1, cert, key)
        self.assertEqual(common_name(before), "ipam-server-1")
        old = TlsClient(d.target, ca1, cert, key)
        addr = old.allocate("conduit-a", "worker-1", "proxy-r", V4)

        # the server certificate: new serial and common name
        replace(self.c("server2.crt"), self.file("tls.crt"))
        replace(self.c("server2.key"), self.file("tls.key"))
        after = served_cert(d.port, ca1, cert, key)
        self.assertEqual(common_name(after), "ipam-server-2")
        self.assertNotEqual(after["serialNumber"], before["serialNumber"])
        self.assertEqual(one_health(TlsClient(d.target, ca1, cert, key,
                                              server_name="ipam-2.test")), "SERVING")
        self.assertEqual(one_health(TlsClient(d.target, ca1, cert, key,
                                              server_name="ipam-1.test")),
                         grpc.StatusCode.UNAVAILABLE)
        # the connection made before the rotation goes on working
        self.assertEqual(old.allocate("conduit-a", "worker-1", "proxy-r", V4), addr)
        old.close()

        # the client CA: a bundle of both CAs lets the second CA's clients in
        c2, k2 = self.c("client2.crt"), self.c("client2.key")
        self.assertEqual(one_health(TlsClient(d.target, ca1, c2, k2)),
                         grpc.StatusCode.UNAVAILABLE)
        replace(self.c("ca12.crt"), self.file("ca.crt"))
        self.assertEqual(one_health(TlsClient(d.target, ca1, c2, k2)), "SERVING")
        # then the first CA alone again: client-2 refused, client-1 in
        replace(self.c("ca1.crt"), self.file("ca.crt"))
        self.assertEqual(one_health(TlsClient(d.target, ca1, c2, k2)),
                         grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(one_health(TlsClient(d.target, ca1, cert, key)), "SERVING")

        # a broken file (a rotation tool that died half way) keeps the
        # current certificate in service
        with open(self.file("tls.crt"), "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\ngarbage\n")
        self.assertEqual(common_name(served_cert(d.port, ca1, cert, key)),
                         "ipam-server-2")
        self.assertEqual(one_health(TlsClient(d.target, ca1, cert, key)), "SERVING")
        # and no restart happened on the way; the log tells what happened
        self.assertEqual(d.workers()["api"], api)
        log = d.log_text()
        self.assertIn("TLS files changed", log)
        self.assertEqual(log.count("cannot reload TLS files"), 1, d.log_tail())
        self.assertIn("tls.crt", log[log.index("cannot reload TLS files"):])

    def test_unreadable_files_are_reported(self):
        d = self.daemon(env={"IPAM_TLS_CERT": self.file("missing.crt"),
                             "IPAM_TLS_KEY": self.file("tls.key")}, start=False)
        d.start(wait=False)
        harness.poll(lambda: "missing.crt" in d.log_text() and
                     "cannot load TLS files" in d.log_text(), 15, 0.1,
                     lambda: "log line about the missing file\n" + d.log_tail())
        self.assertNotEqual(one_health(harness.Client(d.target)), "SERVING")

    def nsp_tls(self, port, require_client_cert=True):
        """A fake NSP over TLS on port (certificate nsp from ca1; client
        certificates from ca1 required) listing conduit-a.

        Start it after the daemons: a fork (subprocess) while python's gRPC
        server has connections in handshake can stall them."""
        creds = grpc.ssl_server_credentials(
            [(read(self.c("nsp.key")), read(self.c("nsp.crt")))],
            root_certificates=read(self.c("ca1.crt")),
            require_client_auth=require_client_cert)
        n = harness.FakeNsp()
        n.set_conduits(["conduit-a"])
        self._nsps.append(n)
        n.start(port, credentials=creds)
        return n, creds

    def test_nsp_over_mtls_and_client_rotation(self):
        port = harness.free_port()
        d = self.daemon(nsp="127.0.0.1:%d" % port, conduits="", env={
            "IPAM_NSP_TLS_CA": self.file("ca.crt"),
            "IPAM_NSP_TLS_CERT": self.file("nsp.crt"),
            "IPAM_NSP_TLS_KEY": self.file("nsp.key")})
        n, creds = self.nsp_tls(port)
        d.wait_conduits(["conduit-a"])
        self.assertIn("ipam-nsp-1", n.peer_names())

        # rotate the client certificate; NSP restarts (the stream breaks),
        # the worker reconnects with the new files, without a restart
        nsp_pid = d.workers()["nsp"]
        replace(self.c("nspclient2.crt"), self.file("nsp.crt"))
        replace(self.c("nspclient2.key"), self.file("nsp.key"))
        n.stop()
        n.set_conduits(["conduit-a", "conduit-b"])
        n.start(port, credentials=creds)
        d.wait_conduits(["conduit-a", "conduit-b"])
        harness.poll(lambda: n.peer_names()[-1] == "ipam-nsp-2", 10, 0.1,
                     lambda: "client certificate ipam-nsp-2: %s" % n.peer_names())
        self.assertEqual(d.workers()["nsp"], nsp_pid)
        self.assertIn("NSP TLS files changed", d.log_text())

    def test_nsp_refused_with_wrong_ca_or_plaintext(self):
        port = harness.free_port()
        target = "127.0.0.1:%d" % port
        # the daemon trusts only ca2: NSP's certificate is not accepted
        d = self.daemon(nsp=target, conduits="", env={
            "IPAM_NSP_TLS_CA": self.c("ca2.crt")})
        # plaintext to a TLS NSP
        d2 = self.daemon(nsp=target, conduits="")
        # with the right CA, no client certificate needed here
        d3 = self.daemon(nsp=target, conduits="", env={
            "IPAM_NSP_TLS_CA": self.c("ca1.crt")})
        n, _ = self.nsp_tls(port, require_client_cert=False)
        d3.wait_conduits(["conduit-a"])
        self.assertEqual(n.peer_names(), [None])
        # d and d2 keep trying with NSP up, and keep failing
        fails = lambda x: x.log_text().count("NSP watch failed")  # noqa: E731
        before = (fails(d), fails(d2))
        harness.poll(lambda: fails(d) >= before[0] + 2 and
                     fails(d2) >= before[1] + 2, 15, 0.1,
                     lambda: "watch failures\n" + d.log_tail() + d2.log_tail())
        self.assertEqual(len(n.requests()), 1)
        for x in (d, d2):
            rows = [r for r in x.rows() if r.startswith("conduit-a")]
            self.assertEqual(rows, [])


if __name__ == "__main__":
    unittest.main()
