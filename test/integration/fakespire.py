"""A fake SPIRE agent for integration tests: the SPIFFE Workload API's
FetchX509SVID on a Unix socket, and the CA behind the SVIDs it hands out.

    ca = fakespire.Ca("example.org")
    agent = fakespire.FakeSpire(path, ca)
    agent.set_svid("spiffe://example.org/ipam")   # what every stream gets
    agent.start()
    ...
    agent.set_svid("spiffe://example.org/ipam2")  # a rotation: streamed
    agent.stop()

Like SPIRE's agent it refuses calls without the metadata
"workload.spiffe.io: true". SVIDs carry one URI SAN (the SPIFFE ID) and no
DNS name unless asked for. Certificates are made with python3-cryptography;
Ca.files() writes PEM files for clients (bundle, key, chain). Needs
$IPAM_PYGEN (the stubs built by the test CMake file).
"""

import datetime
import os
import sys
import threading
from concurrent import futures

_PYGEN = os.environ.get("IPAM_PYGEN")
if _PYGEN and _PYGEN not in sys.path:
    sys.path.insert(0, _PYGEN)

import grpc  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402
from spiffe import workload_pb2  # noqa: E402

_POLL_S = 0.1
_DER = serialization.Encoding.DER
_PEM = serialization.Encoding.PEM


class Svid:
    """One X.509-SVID: its ID, certificate, key and the CA's bundle."""

    def __init__(self, spiffe_id, cert, key, ca):
        self.id = spiffe_id
        self.cert = cert
        self.key = key
        self.ca = ca

    def chain_der(self):
        return self.cert.public_bytes(_DER)

    def key_der(self):
        return self.key.private_bytes(_DER, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def cert_pem(self):
        return self.cert.public_bytes(_PEM)

    def key_pem(self):
        return self.key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def files(self, directory, name):
        """Writes name.pem (chain), name.key and name-bundle.pem; returns
        their paths (bundle, key, chain)."""
        paths = [os.path.join(directory, name + s)
                 for s in ("-bundle.pem", ".key", ".pem")]
        for p, data in zip(paths, (self.ca.pem(), self.key_pem(),
                                   self.cert_pem())):
            with open(p, "wb") as f:
                f.write(data)
        return tuple(paths)


class Ca:
    """A self-signed CA of a trust domain."""

    def __init__(self, trust_domain="example.org"):
        self.trust_domain = trust_domain
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                                             "fake spire " + trust_domain)])
        now = datetime.datetime.utcnow()
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                           critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False,
                key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256()))

    def pem(self):
        return self.cert.public_bytes(_PEM)

    def der(self):
        return self.cert.public_bytes(_DER)

    def issue(self, spiffe_id, dns=None):
        """A new SVID for spiffe_id (URI SAN only; plus dns names if given)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.utcnow()
        sans = [x509.UniformResourceIdentifier(spiffe_id)]
        sans += [x509.DNSName(d) for d in (dns or [])]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(
                NameOID.ORGANIZATION_NAME, "SPIRE")]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                           critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=True, data_encipherment=False,
                key_agreement=True, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([
                ExtendedKeyUsageOID.SERVER_AUTH,
                ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256()))
        return Svid(spiffe_id, cert, key, self)


def uri_sans_of_pem(pem):
    """The URI SANs of a PEM certificate (bytes or str)."""
    if isinstance(pem, str):
        pem = pem.encode()
    cert = x509.load_pem_x509_certificate(pem)
    try:
        ext = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return ext.value.get_values_for_type(x509.UniformResourceIdentifier)


class FakeSpire:
    """The Workload API on unix:path, handing out the SVID last set."""

    def __init__(self, path, ca):
        self.path = path
        self.ca = ca
        self._cond = threading.Condition()
        self._svid = None
        self._version = 0
        self._calls = 0          # calls with the header
        self._refused = 0        # calls without it
        self._streams = 0
        self._stopping = False
        self._server = None

    def set_svid(self, spiffe_id, dns=None):
        """Issues a new SVID for spiffe_id and streams it; returns it."""
        svid = self.ca.issue(spiffe_id, dns)
        with self._cond:
            self._svid = svid
            self._version += 1
            self._cond.notify_all()
        return svid

    def svid(self):
        with self._cond:
            return self._svid

    def start(self):
        """Serves (a stale socket file is replaced)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handler = grpc.method_handlers_generic_handler(
            "SpiffeWorkloadAPI", {"FetchX509SVID": grpc.unary_stream_rpc_method_handler(
                self._fetch,
                request_deserializer=workload_pb2.X509SVIDRequest.FromString,
                response_serializer=workload_pb2.X509SVIDResponse.SerializeToString)})
        server.add_generic_rpc_handlers((handler,))
        if server.add_insecure_port("unix:" + self.path) == 0:
            raise OSError("fakespire: cannot bind unix:" + self.path)
        with self._cond:
            self._stopping = False
        server.start()
        self._server = server

    def stop(self):
        """Stops serving: open streams break, as when the agent dies."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def counts(self):
        """(calls served, calls refused for lack of the header, streams open)."""
        with self._cond:
            return self._calls, self._refused, self._streams

    def _response(self, svid):
        r = workload_pb2.X509SVIDResponse()
        v = r.svids.add()
        v.spiffe_id = svid.id
        v.x509_svid = svid.chain_der()
        v.x509_svid_key = svid.key_der()
        v.bundle = svid.ca.der()
        return r

    def _fetch(self, request, context):
        md = dict(context.invocation_metadata())
        if md.get("workload.spiffe.io") != "true":
            with self._cond:
                self._refused += 1
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "security header missing from request")
        with self._cond:
            self._calls += 1
            self._streams += 1
            version = -1
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(
                        lambda: (self._version != version and
                                 self._svid is not None) or self._stopping,
                        _POLL_S)
                    if self._stopping:
                        return
                    msg = None
                    if self._version != version and self._svid is not None:
                        version = self._version
                        msg = self._response(self._svid)
                if not context.is_active():
                    return
                if msg is not None:
                    yield msg
        finally:
            with self._cond:
                self._streams -= 1
                self._cond.notify_all()
