#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets into corpus/<target>/.

The seeds are small, valid (and a few deliberately broken) inputs from
which libFuzzer mutates: frames of every internal message, Ipam request
bodies, prefixes and environments. Run it again after a proto change:

    IPAM_PYGEN=build/pygen test/fuzz/make_corpus.py

IPAM_PYGEN is the folder of python stubs a normal build generates.
"""

import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.environ.get("IPAM_PYGEN") or os.path.join(REPO, "build", "pygen"))

from ipam.v1 import ipam_pb2  # noqa: E402
from ipamd.v1 import ipamd_pb2 as d  # noqa: E402


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def frame(msg):
    body = msg if isinstance(msg, bytes) else msg.SerializeToString()
    return struct.pack(">I", len(body)) + body


def frames():
    hello = d.Request(id=1, hello=d.Hello(role=d.ROLE_API, pid=42))
    child = d.Child(trench="default", conduit="conduit-a", node="worker-1",
                    family=d.FAMILY_IPV4, name="proxy-1")
    alloc = d.Request(id=2, allocate=d.Allocate(child=child, wait_ms=1000))
    rel = d.Request(id=3, release=d.Release(child=d.Child(
        trench="default", conduit="conduit-a", node="worker-1",
        family=d.FAMILY_IPV6, name="proxy-1")))
    sync = d.Request(id=4, sync_conduits=d.SyncConduits(
        add=["conduit-a", "conduit-b"], remove=["old"]))
    ping = d.Request(id=5, ping=d.Ping())
    dump = d.Request(id=6, dump=d.Dump(conduit="conduit-a", node="worker-1"))
    check = d.Request(id=7, check=d.Check())
    reply = d.Reply(id=2, code=0, address="169.255.0.1", prefix_length=24)
    err = d.Reply(id=3, code=5, message="conduit \"x\" not found")
    rec = d.Reply(id=6, more=True, records=[d.Record(
        id="conduit-a-default-0", name="conduit-a", cidr="169.255.0.0/20",
        parent_id="default-0", updated_at=1700000000000000000,
        expirable=False, level=1, children=2, usable=16)])
    probs = d.Reply(id=7, record_count=9, problems=[d.Problem(
        id="x", kind="orphan", what="parent missing")])
    status = d.WorkerStatus(ready=True, status="serving")
    # First byte: piece size (0 = all at once), then the stream.
    write("frame", "hello-allocate", b"\x00" + frame(hello) + frame(alloc))
    write("frame", "conversation-3byte-pieces", b"\x03" + b"".join(
        frame(m) for m in (hello, alloc, rel, sync, ping, dump, check)))
    write("frame", "replies", b"\x07" + b"".join(
        frame(m) for m in (reply, err, rec, probs)))
    write("frame", "status", b"\x01" + frame(status) + frame(d.WorkerStatus()))
    write("frame", "empty-frame", b"\x00" + frame(b""))
    write("frame", "above-cap", b"\x00" + struct.pack(">I", (1 << 20) + 1) + b"x")
    write("frame", "cut-payload", b"\x02" + frame(alloc)[:-3])
    write("frame", "cut-header", b"\x00" + frame(ping) + b"\x00\x00")
    write("frame", "not-protobuf", b"\x00" + frame(b"\xff\xff\xff\xff\x0f"))


def requests():
    def child(name="proxy-1", conduit="conduit-a", trench="default",
              node="worker-1", family=ipam_pb2.IPV4):
        c = ipam_pb2.Child(name=name)
        c.subnet.node = node
        c.subnet.ipFamily = family
        c.subnet.conduit.name = conduit
        c.subnet.conduit.trench.name = trench
        return c.SerializeToString()

    # First byte: configuration (0 dual, 1 v4, 2 v6 trench-a, 3 UTF-8 trench).
    write("request", "v4", b"\x00" + child())
    write("request", "v6", b"\x00" + child(family=ipam_pb2.IPV6))
    write("request", "v6-trench-a", b"\x02" + child(trench="trench-a", family=ipam_pb2.IPV6))
    write("request", "utf8-trench", b"\x03" + child(trench="\u00e9t\u00e9", name="\u00fc"))
    write("request", "not-served", b"\x01" + child(family=ipam_pb2.IPV6))
    write("request", "other-trench", b"\x00" + child(trench="red"))
    write("request", "no-subnet", b"\x00" + ipam_pb2.Child(name="x").SerializeToString())
    write("request", "empty", b"\x00")
    write("request", "bad-utf8", b"\x00" + child().replace(b"proxy-1", b"proxy\xc0\xaf"))
    write("request", "family-9", b"\x00" + child(family=9))
    write("request", "long-node", b"\x00" + child(node="n" * 254))


def cidrs():
    for i, s in enumerate(["169.255.0.0/16", "10.0.0.0/8", "0.0.0.0/0",
                           "255.255.255.255/32", "fd00::/48", "::/0",
                           "2001:db8::1/128", "::ffff:10.0.0.0/104",
                           "fe80::/10", "1.2.3.4", "2001:db8:0:0:1:0:0:1",
                           "10.0.0.1/8", "1.2.3/24", "300.0.0.0/8",
                           "fd00::/129", "10.0.0.0/08", "fd00:::/48", ""]):
        write("cidr", "%02d" % i, s)


def configs():
    write("config", "defaults", "")
    write("config", "full", "\n".join([
        "IPAM_PORT=7777", "IPAM_DATA_SOURCE=/var/lib/ipam/registry.db",
        "IPAM_TRENCH_NAME=default", "IPAM_NSP_SERVICE=nsp-service-trench-a:7778",
        "IPAM_PREFIX_IPV4=172.16.0.0/16", "IPAM_CONDUIT_PREFIX_LENGTH_IPV4=20",
        "IPAM_NODE_PREFIX_LENGTH_IPV4=24", "IPAM_PREFIX_IPV6=fd00::172.16.0.0/112",
        "IPAM_CONDUIT_PREFIX_LENGTH_IPV6=116", "IPAM_NODE_PREFIX_LENGTH_IPV6=120",
        "IPAM_IP_FAMILY=dualstack", "IPAM_LOG_LEVEL=INFO",
        "IPAM_GRPC_KEEPALIVE_TIME=30s", "IPAM_GRPC_PROBE_RPC_TIMEOUT=1s",
        "IPAM_GRPC_MAX_BACKOFF=5s", "IPAM_GARBAGE_COLLECTION_ENABLED=true",
        "IPAM_GARBAGE_COLLECTION_INTERVAL=2h", "IPAM_GARBAGE_COLLECTION_THRESHOLD=40m"]))
    write("config", "ipv6-static", "\n".join([
        "IPAM_IP_FAMILY=ipv6", "IPAM_CONDUITS=conduit-a,conduit-b",
        "IPAM_PREFIX_IPV6=fd00:1::/64", "IPAM_CONDUIT_PREFIX_LENGTH_IPV6=100",
        "IPAM_NODE_PREFIX_LENGTH_IPV6=126", "IPAM_RELEASE_COOLDOWN=1.5s"]))
    write("config", "tls-metrics", "\n".join([
        "IPAM_TLS_CERT=/tls/cert.pem", "IPAM_TLS_KEY=/tls/key.pem",
        "IPAM_TLS_CA=/tls/ca.pem", "IPAM_METRICS_PORT=9100",
        "IPAM_DATASOURCE=/data/r.db", "IPAM_GARBAGE_COLLECTION_ENABLED=F"]))
    write("config", "bad-duration", "IPAM_GRPC_MAX_BACKOFF=1h-5m\nIPAM_PORT=0")
    write("config", "bad-lengths", "IPAM_PREFIX_IPV4=10.0.0.0/30\nIPAM_NODE_PREFIX_LENGTH_IPV4=31")


if __name__ == "__main__":
    frames()
    requests()
    cidrs()
    configs()
