"""The Prometheus endpoint of the api worker (IPAM_METRICS_PORT), scraped
with urllib against the real daemon: off by default, both loopback
families, text format that parses, and values that move as allocations,
releases, garbage collection and cooldowns happen. The HTTP side (lib/httpd)
as a scraper meets it: one answer per connection, HEAD, refusals of bad
requests, and clients that stall."""

import glob
import http.client
import os
import re
import signal
import socket
import time
import urllib.error
import urllib.request

import harness
from harness import DaemonTest

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """{(name, frozenset(labels)): value} of a text exposition; checks that
    every sample line parses and that each family has HELP and TYPE."""
    out, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        if m is None:
            raise AssertionError("unparsable sample line: %r" % line)
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        name = m.group(1)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in typed and base not in typed:
            raise AssertionError("sample %s without a TYPE line" % name)
        out[(name, labels)] = float(m.group(4))
    return out


def get(m, name, **labels):
    return m[(name, frozenset(labels.items()))]


def listening_ports(pid):
    """TCP ports pid listens on (both families), from /proc."""
    inodes = set()
    for fd in glob.glob("/proc/%d/fd/*" % pid):
        try:
            t = os.readlink(fd)
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                p = line.split()
                if p[3] == "0A" and p[9] in inodes:
                    ports.add(int(p[1].rsplit(":", 1)[1], 16))
    return ports


class Metrics(DaemonTest):

    def start(self, env=None):
        self.mport = harness.free_port()
        e = {"IPAM_METRICS_PORT": str(self.mport)}
        e.update(env or {})
        return self.daemon(env=e)

    def scrape(self, host="127.0.0.1", path="/metrics"):
        url = "http://%s:%d%s" % (host, self.mport, path)
        with urllib.request.urlopen(url, timeout=10) as r:
            self.assertEqual(r.status, 200)
            self.assertEqual(r.headers["Content-Type"],
                             "text/plain; version=0.0.4; charset=utf-8")
            return r.read().decode()

    def test_off_by_default_and_on_its_port_only(self):
        d = self.daemon()
        api = d.wait_worker("api")
        self.assertEqual(listening_ports(api), {d.port})
        d.close()
        d = self.start()
        api = d.wait_worker("api")
        self.assertEqual(listening_ports(api), {d.port, self.mport})
        # Both loopback families reach it; other paths and methods do not.
        self.assertIn("ipam_db_up 1", self.scrape("127.0.0.1"))
        self.assertIn("ipam_db_up 1", self.scrape("[::1]"))
        with self.assertRaises(urllib.error.HTTPError) as cm:
            self.scrape(path="/")
        self.assertEqual(cm.exception.code, 404)
        req = urllib.request.Request("http://127.0.0.1:%d/metrics" % self.mport,
                                     data=b"x", method="POST")
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(req, timeout=10)
        self.assertEqual(cm.exception.code, 405)

    # ---- HTTP behaviour of the endpoint ----------------------------------

    def raw(self, data, timeout=5):
        """Sends data on a fresh connection; returns all it gets back
        until the server closes (failing if it does not within timeout)."""
        s = socket.create_connection(("127.0.0.1", self.mport), timeout=timeout)
        with s:
            s.sendall(data)
            out, end = b"", time.monotonic() + timeout
            while time.monotonic() < end:
                b = s.recv(65536)
                if not b:
                    return out
                out += b
            self.fail("the server kept the connection open: %r" % out[:200])

    def test_one_answer_per_connection_and_head(self):
        d = self.start()
        d.client.allocate("conduit-a", "w1", "a")
        # A request that would keep the connection gets its answer, then
        # the server closes (raw fails when it does not).
        out = self.raw(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                       b"Connection: keep-alive\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 200 OK\r\n"), out[:100])
        self.assertIn(b"\r\nConnection: close\r\n", out)
        head, body = out.split(b"\r\n\r\n", 1)
        self.assertIn(b"\r\nContent-Length: %d\r\n" % len(body), head)
        self.assertIn(b"\nipam_db_up 1\n", body)
        # HEAD: the page's length, no body; http.client then opens a new
        # connection for its next request, as a scraper does.
        c = http.client.HTTPConnection("127.0.0.1", self.mport, timeout=10)
        self.addCleanup(c.close)
        c.request("HEAD", "/metrics")
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.read(), b"")
        self.assertEqual(r.getheader("Connection"), "close")
        self.assertGreater(int(r.getheader("Content-Length")), 0)
        c.request("GET", "/metrics")
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertIn("ipam_db_up 1", r.read().decode())

    def test_method_and_path_refusals(self):
        self.start()
        c = http.client.HTTPConnection("127.0.0.1", self.mport, timeout=10)
        self.addCleanup(c.close)
        c.request("DELETE", "/metrics")
        r = c.getresponse()
        r.read()
        self.assertEqual(r.status, 405)
        self.assertEqual(r.getheader("Allow"), "GET, HEAD")
        c.request("GET", "/metricsx")
        r = c.getresponse()
        r.read()
        self.assertEqual(r.status, 404)
        # A POST with a body is answered and the connection closed; the
        # unread body does not reset the connection under the answer.
        out = self.raw(b"POST /metrics HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Length: 300000\r\n\r\n" + b"z" * 300000)
        self.assertTrue(out.startswith(b"HTTP/1.1 405 "), out[:100])

    def test_garbage_and_oversize_head(self):
        d = self.start()
        out = self.raw(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")
        self.assertTrue(out.startswith(b"HTTP/1.1 400 "), out[:100])
        self.assertIn(b"\r\nConnection: close\r\n", out)
        out = self.raw(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                       b"X-Big: " + b"a" * 9000 + b"\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 431 "), out[:100])
        out = self.raw(b"GET /metrics HTTP/1.1\r\n\r\n")   # no Host
        self.assertTrue(out.startswith(b"HTTP/1.1 400 "), out[:100])
        # HTTP/1.0: the page, then close
        out = self.raw(b"GET /metrics HTTP/1.0\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 200 "), out[:100])
        self.assertIn(b"\nipam_db_up 1\n", out)
        self.assertIn("ipam_db_up 1", self.scrape())
        d.client.allocate("conduit-a", "w1", "a")

    def test_stalled_clients_do_not_block_a_scrape(self):
        d = self.start()
        api = d.wait_worker("api")
        stalled = []
        # More idle and half-sent connections than the connection cap (16).
        for i in range(24):
            s = socket.create_connection(("127.0.0.1", self.mport), timeout=5)
            if i % 2:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost:")
            stalled.append(s)
        self.addCleanup(lambda: [s.close() for s in stalled])
        t0 = time.monotonic()
        self.assertIn("ipam_db_up 1", self.scrape())
        self.assertLess(time.monotonic() - t0, 3)
        # gRPC is not held either.
        self.assertEqual(d.client.allocate("conduit-a", "w1", "a"),
                         ("169.255.0.1", 24))
        # A reader that never reads its (large) answer is no obstacle.
        for i in range(300):
            d.client.allocate("conduit-a", "w%d" % (i % 10), "n%d" % i)
        slow = socket.create_connection(("127.0.0.1", self.mport), timeout=5)
        self.addCleanup(slow.close)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 50)
        t0 = time.monotonic()
        self.assertIn("ipam_db_up 1", self.scrape())
        self.assertLess(time.monotonic() - t0, 3)
        self.assertEqual(d.wait_worker("api"), api)

    def test_taken_port_leaves_metrics_off_but_serves(self):
        blocker = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.addCleanup(blocker.close)
        blocker.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        blocker.bind(("::", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        d = self.daemon(env={"IPAM_METRICS_PORT": str(port)})
        self.assertEqual(d.client.allocate("conduit-a", "w1", "a"), ("169.255.0.1", 24))
        harness.poll(lambda: "cannot serve metrics" in d.log_text(), 10,
                     what="the error line")
        self.assertEqual(listening_ports(d.wait_worker("api")), {d.port})

    def test_values_move_with_allocations(self):
        d = self.start()
        c = d.client
        m0 = parse(self.scrape())
        self.assertEqual(get(m0, "ipam_db_up"), 1)
        for i in range(5):
            c.allocate("conduit-a", "w1", "p%d" % i)
        c.release("conduit-a", "w1", "p0")
        c.release("conduit-a", "w1", "never-there")
        harness.expect_code(self, harness.grpc.StatusCode.INVALID_ARGUMENT,
                            c.allocate, "conduit-a", "w1", "")
        m1 = parse(self.scrape())

        def delta(name, **labels):
            return get(m1, name, **labels) - m0.get(
                (name, frozenset(labels.items())), 0)
        self.assertEqual(delta("ipam_requests_total", method="Allocate", code="OK"), 5)
        self.assertEqual(delta("ipam_requests_total", method="Allocate",
                               code="INVALID_ARGUMENT"), 1)
        self.assertEqual(delta("ipam_requests_total", method="Release", code="OK"), 2)
        # Latency histograms: cumulative buckets, +Inf = count = calls.
        for method, calls in (("Allocate", 6), ("Release", 2)):
            self.assertEqual(delta("ipam_request_duration_seconds_count",
                                   method=method), calls)
            buckets = sorted(
                (float(dict(k[1])["le"]), v) for k, v in m1.items()
                if k[0] == "ipam_request_duration_seconds_bucket"
                and dict(k[1])["method"] == method)
            counts = [v for _, v in buckets]
            self.assertEqual(counts, sorted(counts))
            self.assertEqual(buckets[-1], (float("inf"),
                             get(m1, "ipam_request_duration_seconds_count", method=method)))
            self.assertGreater(get(m1, "ipam_request_duration_seconds_sum",
                                   method=method), 0)
        # Pool usage per node and conduit, from the db worker's index.
        node = dict(family="ipv4", conduit="conduit-a", node="w1")
        self.assertEqual(get(m1, "ipam_node_addresses_used", **node), 4)
        self.assertEqual(get(m1, "ipam_node_addresses_usable", **node), 254)
        self.assertEqual(get(m1, "ipam_conduit_prefixes_used", family="ipv4",
                             conduit="conduit-a"), 1)
        self.assertEqual(get(m1, "ipam_conduit_prefixes_usable", family="ipv4",
                             conduit="conduit-a"), 16)
        self.assertEqual(get(m1, "ipam_conduit_prefixes_used", family="ipv6",
                             conduit="conduit-b"), 0)
        self.assertEqual(get(m1, "ipam_records"), len(d.rows()))
        # The db worker's counters: a commit per change batch at least.
        self.assertGreaterEqual(delta("ipam_db_commits_total"), 1)
        self.assertEqual(get(m1, "ipam_db_fsyncs_total"), get(m1, "ipam_db_commits_total"))
        n = delta("ipam_db_batch_size_count")
        self.assertGreaterEqual(n, 1)
        self.assertGreaterEqual(delta("ipam_db_batch_size_sum"), 7 - 1)
        self.assertEqual(get(m1, "ipam_db_batch_size_bucket", le="+Inf"),
                         get(m1, "ipam_db_batch_size_count"))
        self.assertEqual(get(m1, "ipam_cooling_addresses"), 0)
        self.assertEqual(get(m1, "ipam_gc_runs_total"), 0)
        # One more allocation moves the node's gauge.
        c.allocate("conduit-a", "w1", "p9")
        m2 = parse(self.scrape())
        self.assertEqual(get(m2, "ipam_node_addresses_used", **node), 5)

    def test_gc_and_cooldown_counters(self):
        d = self.start({"IPAM_GARBAGE_COLLECTION_ENABLED": "true",
                        "IPAM_GARBAGE_COLLECTION_INTERVAL": "1s",
                        "IPAM_GARBAGE_COLLECTION_THRESHOLD": "2s",
                        "IPAM_RELEASE_COOLDOWN": "1h"})
        c = d.client
        c.allocate("conduit-a", "w1", "a")
        c.allocate("conduit-a", "w1", "b")
        c.release("conduit-a", "w1", "b")
        m = parse(self.scrape())
        self.assertEqual(get(m, "ipam_cooling_addresses"), 1)

        def reaped():
            mm = parse(self.scrape())
            return mm if get(mm, "ipam_gc_reaped_records_total") >= 2 else None
        m = harness.poll(reaped, 20, 0.2, "GC reaping node and child")
        self.assertGreaterEqual(get(m, "ipam_gc_runs_total"), 1)
        self.assertNotIn(("ipam_node_addresses_used",
                          frozenset(dict(family="ipv4", conduit="conduit-a",
                                         node="w1").items())), m)

    def test_db_down_and_api_restart(self):
        d = self.start()
        d.client.allocate("conduit-a", "w1", "a")
        m = parse(self.scrape())
        t0 = get(m, "ipam_api_start_time_seconds")
        db = d.wait_worker("db")
        os.kill(db, signal.SIGSTOP)
        try:
            m = parse(self.scrape())
            self.assertEqual(get(m, "ipam_db_up"), 0)
            self.assertNotIn(("ipam_records", frozenset()), m)
            self.assertEqual(get(m, "ipam_requests_total", method="Allocate", code="OK"), 1)
        finally:
            os.kill(db, signal.SIGCONT)
        harness.poll(lambda: get(parse(self.scrape()), "ipam_db_up") == 1, 10,
                     what="db back")
        # A restarted api worker shows a new start time, counters from 0.
        old = d.kill_worker("api")
        d.wait_worker("api", not_pid=old)
        d.wait_serving()
        m = harness.poll(lambda: parse(self.scrape()), 10, what="endpoint back")
        self.assertGreater(get(m, "ipam_api_start_time_seconds"), t0)
        self.assertEqual(get(m, "ipam_requests_total", method="Allocate", code="OK"), 0)
        # The supervisor's restart counts: the api worker once, the db never
        # (static conduits: no nsp worker).
        self.assertEqual([get(m, "ipam_worker_restarts_total", worker=w)
                          for w in ("db", "api")], [0, 1])
        old = d.kill_worker("db")
        d.wait_worker("db", not_pid=old)
        harness.poll(lambda: get(parse(self.scrape()), "ipam_worker_restarts_total",
                                 worker="db") == 1, 10, what="db restart counted")


if __name__ == "__main__":
    import unittest
    unittest.main()
