"""A fake NSP service for integration tests.

It serves nsp.v1.ConfigurationManager/WatchConduit on a loopback port: every
stream gets the full conduit list at once and again after each
set_conduits(). It records the requests it got (request_trenches()), so a
test can check which trench the IPAM asked for.

Use the module functions for the common single-server case:

    import fakensp
    port = fakensp.start(0)           # 0: pick a free port
    fakensp.set_conduits(["conduit-a", ("conduit-b", "other-trench")])
    fakensp.stop()

or FakeNsp objects for several servers. start(port, credentials=...) serves
over TLS with grpc.ssl_server_credentials(...); peer_names() then tells the
client certificate's common name of each request. Conduits are names (str, no trench
set in the message) or (name, trench) pairs. Needs $IPAM_PYGEN (the stubs
built by the test CMake file) and Debian's python3-grpcio.
"""

import os
import sys
import threading
from concurrent import futures

_PYGEN = os.environ.get("IPAM_PYGEN")
if _PYGEN and _PYGEN not in sys.path:
    sys.path.insert(0, _PYGEN)

import grpc  # noqa: E402
from nsp.v1 import configurationmanager_pb2_grpc as _cm_grpc  # noqa: E402
from nsp.v1 import model_pb2 as _model  # noqa: E402

# How often an idle stream checks whether its client or the server went away.
_POLL_S = 0.1


class FakeNsp(_cm_grpc.ConfigurationManagerServicer):
    """One fake NSP server; start() may be called again after stop()."""

    def __init__(self):
        self._cond = threading.Condition()
        self._conduits = []      # current list: (name, trench or None)
        self._version = 0        # bumped by every set_conduits
        self._requests = []      # WatchConduit requests (nsp.v1.Conduit)
        self._peers = []         # client certificate CN per request, or None
        self._peer_certs = []    # client certificate PEM per request, or None
        self._streams = 0        # streams currently open
        self._server = None
        self._stopping = False
        self.port = None

    # -- control -----------------------------------------------------------

    def start(self, port=0, credentials=None):
        """Serves on 127.0.0.1:port (0: a free port), over TLS when
        credentials (grpc.ServerCredentials) are given. Returns the port."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        _cm_grpc.add_ConfigurationManagerServicer_to_server(self, server)
        if credentials is None:
            bound = server.add_insecure_port("127.0.0.1:%d" % port)
        else:
            bound = server.add_secure_port("127.0.0.1:%d" % port, credentials)
        if bound == 0:
            raise OSError("fakensp: cannot bind 127.0.0.1:%d" % port)
        with self._cond:
            self._stopping = False
        server.start()
        self._server = server
        self.port = bound
        return bound

    def stop(self):
        """Stops serving and ends every open stream."""
        # The server goes first, so open streams end as when a real NSP
        # dies (the client sees the connection go), not with a clean OK.
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def set_conduits(self, conduits):
        """Replaces the list and streams it to every open stream."""
        parsed = []
        for c in conduits:
            if isinstance(c, str):
                parsed.append((c, None))
            else:
                parsed.append((c[0], c[1]))
        with self._cond:
            self._conduits = parsed
            self._version += 1
            self._cond.notify_all()

    def requests(self):
        """The WatchConduit requests received (nsp.v1.Conduit), in order."""
        with self._cond:
            return list(self._requests)

    def request_trenches(self):
        """Trench names of the WatchConduit requests received, in order."""
        with self._cond:
            return [r.trench.name for r in self._requests]

    def peer_names(self):
        """Common name of the client certificate of each request, in order
        (None for a request without one)."""
        with self._cond:
            return list(self._peers)

    def peer_certs(self):
        """PEM client certificate of each request, in order (None for a
        request without one)."""
        with self._cond:
            return list(self._peer_certs)

    def open_streams(self):
        """Number of WatchConduit streams currently open."""
        with self._cond:
            return self._streams

    def wait_streams(self, count, timeout):
        """Waits until at least count streams are open. True if so."""
        with self._cond:
            return self._cond.wait_for(lambda: self._streams >= count,
                                       timeout)

    # -- service -----------------------------------------------------------

    def _response(self):
        msg = _model.ConduitResponse()
        for name, trench in self._conduits:
            c = msg.conduits.add()
            c.name = name
            if trench is not None:
                c.trench.name = trench
        return msg

    def WatchConduit(self, request, context):
        with self._cond:
            req = _model.Conduit()
            req.CopyFrom(request)
            self._requests.append(req)
            cn = context.auth_context().get("x509_common_name")
            self._peers.append(cn[0].decode() if cn else None)
            pem = context.auth_context().get("x509_pem_cert")
            self._peer_certs.append(pem[0].decode() if pem else None)
            self._streams += 1
            self._cond.notify_all()
            version = self._version
            first = self._response()
        try:
            yield first
            while True:
                with self._cond:
                    self._cond.wait_for(
                        lambda: self._version != version or self._stopping,
                        _POLL_S)
                    if self._stopping:
                        return
                    if self._version == version:
                        msg = None
                    else:
                        version = self._version
                        msg = self._response()
                if not context.is_active():
                    return
                if msg is not None:
                    yield msg
        finally:
            with self._cond:
                self._streams -= 1
                self._cond.notify_all()


_default = FakeNsp()


def start(port=0, credentials=None):
    """Starts the module's default server; returns its port."""
    return _default.start(port, credentials)


def set_conduits(conduits):
    """Sets the default server's conduit list (see FakeNsp.set_conduits)."""
    _default.set_conduits(conduits)


def stop():
    """Stops the default server."""
    _default.stop()


def request_trenches():
    """Trench names the default server was asked for."""
    return _default.request_trenches()


def default():
    """The default FakeNsp object."""
    return _default


if __name__ == "__main__":
    # fakensp.py PORT CONDUIT...: serves the list on 127.0.0.1:PORT (0: a
    # free port, printed on stdout) until SIGTERM.
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(start(int(sys.argv[1])), flush=True)
    set_conduits(sys.argv[2:])
    try:
        while True:
            signal.pause()
    finally:
        stop()
