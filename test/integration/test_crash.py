"""Crash suite (issue 4): the real daemon under load while its processes are
killed with SIGKILL one after the other.

32 client threads allocate and release across two conduits, four nodes and
both families and record every OK answer. After each kill the suite checks
that every allocation answered OK (and not released since) is answered with
the same address, through the API, through ipamctl and in the sqlite file;
that no two children share an address; and that the service answers again.

Figures (printed with a "FIGURE" prefix, also in the lead's report): the
time from a kill to the first OK answer to a request sent after the kill,
and the time from a cold start of the whole daemon to SERVING. They are not
asserted beyond generous sanity bounds: CI machines are noisy.

A worker that fails at start (here the api worker, whose port another
socket holds) is restarted with a growing backoff while the others keep
running, and past the death limit the supervisor exits non-zero.
"""

import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

import grpc

import harness
from harness import V4, V6, DaemonTest, RpcError

import health_pb2_grpc
from ipam.v1 import ipam_pb2_grpc

SC = grpc.StatusCode

THREADS = 32
CONDUITS = ("conduit-a", "conduit-b")
NODES = ("worker-1", "worker-2", "worker-3", "worker-4")
# Keys of one load thread: at most THREADS * SLOTS children are live.
SLOTS = 24
# Codes a client may see while a process is down or restarting.
TRANSIENT = (SC.UNAVAILABLE, SC.DEADLINE_EXCEEDED, SC.CANCELLED)
# Sanity bound of every measured figure (not the target, which is 1 s).
SANITY_S = 10.0


def fast_client(target):
    """A harness Client whose channel re-resolves its target at once after
    a lost connection. gRPC's default cooldown between resolutions (seen
    here as 1 to 5 s before a reconnect) would otherwise be measured as the
    daemon's recovery time."""
    c = harness.Client(target)
    c.channel.close()
    c.channel = grpc.insecure_channel(
        target, options=[("grpc.enable_retries", 0),
                         ("grpc.initial_reconnect_backoff_ms", 50),
                         ("grpc.min_reconnect_backoff_ms", 50),
                         ("grpc.max_reconnect_backoff_ms", 250),
                         ("grpc.dns_min_time_between_resolutions_ms", 0),
                         ("grpc.use_local_subchannel_pool", 1)])
    c.ipam = ipam_pb2_grpc.IpamStub(c.channel)
    c.health_stub = health_pb2_grpc.HealthStub(c.channel)
    return c


def figure(text):
    """Prints one measured figure so that it shows in the ctest output."""
    sys.stderr.write("FIGURE %s\n" % text)
    sys.stderr.flush()


def child_id(key):
    """Meridio's record id of the child allocated for key."""
    conduit, node, name, fam = key
    return harness.meridio_id(name, node, conduit,
                              "%s-%d" % (harness.TRENCH, 0 if fam == V4 else 1))


def depth(rows, rid):
    """0 for a trench record, 1 conduit, 2 node, 3 child (bounded walk)."""
    n = 0
    while rows.get(rid, {}).get("parent_id") and n < 8:
        rid = rows[rid]["parent_id"]
        n += 1
    return n


class Book:
    """What the clients were told, shared by successive loads on one daemon.

      acked      key -> (address, length) answered OK and not released
      uncertain  keys whose Release failed (it may or may not have applied)
      oks        (sent, answered) monotonic times of every OK answer
      errors     unexpected failures (code, details, key)
      mismatch   renewals answered with another address (key, was, got)
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {}
        self.uncertain = set()
        self.oks = []
        self.errors = []
        self.mismatch = []
        self.transient = 0
        self.frozen = False     # no new Release once set
        self.releasing = 0      # Release calls in flight


class Load:
    """THREADS client threads allocating, renewing and releasing until
    stopped, writing what they were told into a Book.

    Each thread owns SLOTS fixed keys (its names, spread over the conduits,
    nodes and families), so no two threads race on one key and the number
    of live children stays bounded however long the load runs. Thread
    passes alternate: an even pass allocates (or renews) every slot, an odd
    pass releases every other one. Once frozen (just before a kill) nothing
    is released any more, so every allocation acknowledged before the kill
    is still there to be checked after it.
    """

    def __init__(self, target, book):
        self.target = target
        self.book = book
        self.stopping = threading.Event()
        self.threads = []

    def start(self):
        for tid in range(THREADS):
            t = threading.Thread(target=self._run, args=(tid,), daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(30)
        alive = [t for t in self.threads if t.is_alive()]
        if alive:
            raise AssertionError("%d load threads did not stop" % len(alive))

    def ok_count(self):
        with self.book.lock:
            return len(self.book.oks)

    def first_ok_sent_after(self, t):
        """Answer time of the first OK to a request sent at or after t."""
        with self.book.lock:
            done = [a for s, a in self.book.oks if s >= t]
        return min(done) if done else None

    def _failed(self, e, key):
        b = self.book
        with b.lock:
            if e.code in TRANSIENT:
                b.transient += 1
            else:
                b.errors.append((e.code, e.details, key))
        # Do not spin while the daemon is down.
        self.stopping.wait(0.005)

    def _allocate(self, client, key):
        b = self.book
        sent = time.monotonic()
        try:
            got = client.allocate(*key, timeout=5)
        except RpcError as e:
            self._failed(e, key)
            return
        with b.lock:
            b.oks.append((sent, time.monotonic()))
            if key in b.acked and b.acked[key] != got:
                b.mismatch.append((key, b.acked[key], got))
            b.acked[key] = got
            b.uncertain.discard(key)

    def _release(self, client, key):
        b = self.book
        try:
            client.release(*key, timeout=5)
        except RpcError as e:
            with b.lock:
                if b.acked.pop(key, None) is not None:
                    b.uncertain.add(key)
            self._failed(e, key)
            return
        with b.lock:
            b.acked.pop(key, None)
            b.uncertain.discard(key)

    def _may_release(self):
        """Counts a Release in flight unless frozen (under the lock, so that
        freeze() cannot miss one)."""
        b = self.book
        with b.lock:
            if b.frozen:
                return False
            b.releasing += 1
            return True

    def _released(self):
        with self.book.lock:
            self.book.releasing -= 1

    def freeze(self):
        """No Release from now on; returns once none is in flight."""
        b = self.book
        with b.lock:
            b.frozen = True
        harness.poll(lambda: b.releasing == 0, 10, 0.001, "releases in flight")

    def _run(self, tid):
        slots = [(CONDUITS[(tid + j) % len(CONDUITS)],
                  NODES[(tid // 2 + j) % len(NODES)],
                  "t%d-%d" % (tid, j),
                  V4 if (tid + j // 2) % 2 == 0 else V6) for j in range(SLOTS)]
        client = fast_client(self.target)
        i = 0
        try:
            while not self.stopping.is_set():
                j = i % SLOTS
                release_pass = (i // SLOTS) % 2 == 1 and j % 2 == 0
                i += 1
                if release_pass and self._may_release():
                    try:
                        self._release(client, slots[j])
                    finally:
                        self._released()
                else:
                    self._allocate(client, slots[j])
        finally:
            client.close()


class CrashTest(DaemonTest):
    """One daemon fed conduits by a fake NSP, with helpers for the load and
    for the checks after a crash."""

    def setUp(self):
        super().setUp()
        self.nspd = self.nsp(list(CONDUITS))
        self.d = self.daemon(conduits="", nsp=self.nspd.target)
        self.book = Book()
        self.load = None
        self.pre_kill = {}
        self.probe_addr = None
        self.addCleanup(self._stop_load)

    def _stop_load(self):
        if self.load is not None and not self.load.stopping.is_set():
            self.load.stop()

    def start_load(self, warmup=500):
        """Starts the load and waits until it has warmup OK answers."""
        with self.book.lock:
            self.book.frozen = False
        self.load = Load(self.d.target, self.book)
        self.load.start()
        harness.poll(lambda: self.load.ok_count() >= warmup, 30, 0.02,
                     "%d OK answers before the kill" % warmup)
        self.probe(time.monotonic(), "before the kill")

    def probe(self, t_kill, what):
        """Allocates one fixed child with a fresh channel per attempt (no
        client reconnect backoff in the way) until it is answered OK;
        returns the time of that answer. The answer must never change."""
        deadline = t_kill + 30
        last = None
        while time.monotonic() < deadline:
            c = harness.Client(self.d.target)
            try:
                got = c.allocate("conduit-a", "worker-1", "probe", timeout=1.0)
            except RpcError as e:
                last = e
                time.sleep(0.005)
                continue
            finally:
                c.close()
            done = time.monotonic()
            if self.probe_addr is None:
                self.probe_addr = got
            self.assertEqual(got, self.probe_addr, "%s: the probe moved" % what)
            return done
        self.fail("%s: no OK answer within 30 s (last: %s)" % (what, last))

    def measure_recovery(self, t_kill, what):
        """Measures and prints the time from t_kill to the first OK answer
        of a fresh client and of the load's clients (whose channels may sit
        in gRPC's reconnect backoff); lets the load run on a while."""
        fresh = self.probe(t_kill, what) - t_kill
        done = harness.poll(lambda: self.load.first_ok_sent_after(t_kill),
                            30, 0.01, "first OK answer after %s" % what)
        took = done - t_kill
        figure("%s -> first OK answer: %.3f s to a fresh client, %.3f s "
               "to the 32 load clients (open channels)" % (what, fresh, took))
        self.assertLess(fresh, SANITY_S, "%s: no OK answer for %.1f s" % (what, fresh))
        self.assertLess(took, SANITY_S, "%s: no OK answer for %.1f s" % (what, took))
        n = self.load.ok_count()
        harness.poll(lambda: self.load.ok_count() >= n + 500, 30, 0.02,
                     "more OK answers after %s" % what)
        return fresh

    def freeze(self):
        """Stops releases (just before a kill) and remembers what was
        acknowledged at that moment."""
        self.load.freeze()
        with self.book.lock:
            self.pre_kill = dict(self.book.acked)

    def check_after(self, what):
        """Stops the load and checks everything it was told. Returns the
        numbers checked: (acknowledged, of them before the kill)."""
        self.load.stop()
        b = self.book
        self.assertEqual(b.errors, [], "%s: unexpected errors" % what)
        self.assertEqual(b.mismatch, [], "%s: a renewal changed address" % what)
        acked = dict(b.acked)
        before = {k: v for k, v in self.pre_kill.items() if k in acked}
        self.assertGreater(len(before), THREADS,
                           "%s: too few allocations from before the kill" % what)
        for k, v in before.items():
            self.assertEqual(acked[k], v, "%s: %s changed" % (what, k))
        self.assertGreater(len(acked), THREADS, "%s: too little load" % what)
        d = self.d
        d.wait_serving(30)
        self.assertEqual(d.client.health(), "SERVING")

        # Through the API: the same address for every acknowledged child.
        seen = {}
        for key, want in sorted(acked.items()):
            got = d.client.allocate(*key, timeout=10)
            self.assertEqual(got, want, "%s: %s" % (what, key))
            self.assertNotIn(got[0], seen, "%s: %s and %s share %s"
                             % (what, key, seen.get(got[0]), got[0]))
            seen[got[0]] = key

        # Through ipamctl, for a sample.
        for key in sorted(acked)[:: max(1, len(acked) // 6)]:
            self.assertEqual(self.ipamctl_allocate(key), acked[key], key)

        # In the sqlite file: every acknowledged child is a row with its
        # address; no two children share an address or overlap.
        rows = d.rows()
        self.assertSound(rows)
        for key, (addr, _) in acked.items():
            r = rows.get(child_id(key))
            self.assertIsNotNone(r, "%s: no row for %s" % (what, key))
            self.assertEqual(ipaddress.ip_network(r["cidr"]).network_address,
                             ipaddress.ip_address(addr), key)
        children = [r for r in rows.values() if depth(rows, r["id"]) == 3]
        addrs = [ipaddress.ip_network(r["cidr"]).network_address for r in children]
        self.assertEqual(len(addrs), len(set(addrs)),
                         "%s: two child rows share an address" % what)
        self.assertGreaterEqual(len(children), len(acked))

        # And it still hands out new addresses.
        new = d.client.allocate("conduit-a", "worker-1", "after-%s" % what.replace(" ", "-"))
        self.assertNotIn(new[0], seen)
        return len(acked), len(before)

    def ipamctl_allocate(self, key):
        """Allocate through ipamctl; (address, length) from its output."""
        conduit, node, name, fam = key
        out = subprocess.run(
            [os.path.join(harness.BIN_DIR, "ipamctl"), "allocate",
             "--conduit", conduit, "--node", node, "--name", name,
             "--family", "ipv4" if fam == V4 else "ipv6",
             "--trench", harness.TRENCH, "--target", self.d.target,
             "--timeout", "10s"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr.decode(errors="replace"))
        text = out.stdout.decode().strip()
        net = ipaddress.ip_interface(text.split()[0])
        return str(net.ip), net.network.prefixlen

    def report(self, what, t0_transient):
        n, before = self.check_after(what)
        figure("%s: %d acknowledged allocations checked (%d from before the "
               "kill), %d transient errors meanwhile"
               % (what, n, before, self.book.transient - t0_transient))

    def kill_worker_under_load(self, role):
        self.start_load()
        old = self.d.wait_worker(role, timeout=10)
        transient = self.book.transient
        self.freeze()
        t_kill = time.monotonic()
        os.kill(old, signal.SIGKILL)
        what = "kill -9 %s worker" % role
        self.measure_recovery(t_kill, what)
        new = self.d.wait_worker(role, not_pid=old, timeout=30)
        self.assertNotEqual(new, old)
        self.assertTrue(self.d.running(), "the supervisor died")
        self.report(what, transient)

    def restart_after(self, what, kill):
        """Kills the supervisor (or everything) under load with kill(), then
        starts a new instance on the same port and file at once."""
        d = self.d
        self.start_load()
        workers = harness.poll(lambda: set(d.workers()) == d.roles() and d.workers(),
                               10, 0.05, "all three workers running")
        transient = self.book.transient
        self.freeze()
        t_kill = time.monotonic()
        kill()
        d.proc.wait(10)
        harness.poll(lambda: not any(harness.pid_alive(p) for p in workers.values()),
                     10, 0.02, "workers to exit after %s" % what)
        t_gone = time.monotonic()
        figure("%s: every worker gone after %.3f s" % (what, t_gone - t_kill))
        d.start(wait=False)
        d.wait_serving(30)
        t_serving = time.monotonic()
        figure("%s: new instance SERVING %.3f s after its start"
               % (what, t_serving - t_gone))
        self.measure_recovery(t_kill, what + " and restart")
        self.report(what, transient)


class KillUnderLoad(CrashTest):

    def test_kill9_api_worker(self):
        self.kill_worker_under_load("api")

    def test_kill9_nsp_worker(self):
        self.kill_worker_under_load("nsp")
        # The new watcher follows the NSP: a conduit added now is served.
        self.nspd.set_conduits(list(CONDUITS) + ["conduit-c"])
        addr, _ = self.d.client.allocate("conduit-c", "worker-1", "p", timeout=15)
        self.assertTrue(addr)

    def test_kill9_db_worker(self):
        self.kill_worker_under_load("db")

    def test_kill9_supervisor_then_new_instance(self):
        self.restart_after("kill -9 supervisor",
                           lambda: os.kill(self.d.proc.pid, signal.SIGKILL))

    def test_kill9_everything_then_new_instance(self):
        self.restart_after("kill -9 all processes",
                           lambda: os.killpg(self.d.pgid, signal.SIGKILL))

    def test_each_in_turn_on_one_daemon(self):
        """api, nsp, db, supervisor and everything, one after the other on
        the same data, each under load; checks run after every step."""
        for role in ("api", "nsp", "db"):
            with self.subTest(kill=role):
                self.kill_worker_under_load(role)
        self.restart_after("kill -9 supervisor (in turn)",
                           lambda: os.kill(self.d.proc.pid, signal.SIGKILL))
        self.restart_after("kill -9 all (in turn)",
                           lambda: os.killpg(self.d.pgid, signal.SIGKILL))


class ColdStart(DaemonTest):

    def test_cold_start_to_serving(self):
        """From exec of the supervisor to Health SERVING, on an empty file
        and on a file with data; printed, bounded only for sanity."""
        d = self.daemon(start=False)
        t0 = time.monotonic()
        d.start(wait=False)
        d.wait_serving(30)
        empty = time.monotonic() - t0
        figure("cold start to SERVING (new file): %.3f s" % empty)
        for i in range(200):
            d.client.allocate(CONDUITS[i % 2], NODES[i % 4], "c%d" % i, V4 if i % 3 else V6)
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        t0 = time.monotonic()
        d.start(wait=False)
        d.wait_serving(30)
        full = time.monotonic() - t0
        figure("cold start to SERVING (file with %d records): %.3f s"
               % (len(d.rows()), full))
        self.assertLess(empty, SANITY_S)
        self.assertLess(full, SANITY_S)


class ApiBlocker:
    """Makes the api worker fail at start (exit 1, one log line) while a
    file exists, through IPAMD_WORKER_WRAPPER: a cause a later restart can
    cure. (A taken IPAM_PORT no longer is one: it stops the daemon.)"""

    def __init__(self, d):
        self.flag = os.path.join(d.dir, "api-blocked")
        script = os.path.join(d.dir, "block-api.sh")
        with open(script, "w") as f:
            f.write('#!/bin/sh\n'
                    'if [ -e "%s" ] && [ "${1##*/}" = meridio-ipam-api ]; then\n'
                    '  echo \'{"level":"error","process":"api",'
                    '"message":"blocked at start"}\' >&2\n'
                    '  exit 1\n'
                    'fi\n'
                    'exec "$@"\n' % self.flag)
        os.chmod(script, 0o755)
        open(self.flag, "w").close()
        d.env["IPAMD_WORKER_WRAPPER"] = script

    def close(self):
        if os.path.exists(self.flag):
            os.unlink(self.flag)


def log_events(d, message, worker=None):
    """Log records of d with this message (and worker), in order."""
    out = []
    for line in d.log_text().splitlines():
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("message") == message and (worker is None or
                                            rec["extra_data"].get("worker") == worker):
            out.append(rec)
    return out


class CrashAtStart(DaemonTest):
    """Real binaries: the api worker fails at start (ApiBlocker), a failure
    that a later restart can cure."""

    def test_restarted_with_backoff_until_it_can_start(self):
        d = self.daemon(start=False, env={
            "IPAMD_RESTART_MIN_RUN_MS": "1000",
            "IPAMD_RESTART_FLOOR_MS": "50",
            "IPAMD_RESTART_CAP_MS": "400",
            "IPAMD_RESTART_MAX_DEATHS": "60",
            "IPAMD_RESTART_WINDOW_MS": "60000"})
        blocker = ApiBlocker(d)
        self.addCleanup(blocker.close)
        d.start(wait=False)
        harness.poll(lambda: len(log_events(d, "worker died", "api")) >= 6, 20, 0.05,
                     "six deaths of the api worker")
        self.assertTrue(d.running(), "the supervisor gave up too early\n" + d.log_tail())
        died = log_events(d, "worker died", "api")
        delays = [r["extra_data"]["restart_in_ms"] for r in died]
        figure("api worker failing at start: restart delays %s ms" % delays[:8])
        self.assertEqual(delays[:4], [50, 100, 200, 400], delays)
        self.assertTrue(all(x == 400 for x in delays[4:]), delays)
        self.assertTrue(any("blocked at start" in line for line in d.log_text().splitlines()))
        # The other workers were left alone while the api worker looped.
        starts = log_events(d, "worker started")
        self.assertEqual(sum(1 for r in starts if r["extra_data"]["worker"] == "db"), 1)
        # The cause goes away: the next restart serves.
        blocker.close()
        t_free = time.monotonic()
        d.wait_serving(20)
        figure("api worker: SERVING %.3f s after its cause went away (cap 0.4 s)"
               % (time.monotonic() - t_free))
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "p"), ("169.255.0.1", 24))

    def test_supervisor_exits_nonzero_past_the_death_limit(self):
        d = self.daemon(start=False, env={
            "IPAMD_RESTART_FLOOR_MS": "20",
            "IPAMD_RESTART_CAP_MS": "80",
            "IPAMD_RESTART_MAX_DEATHS": "4",
            "IPAMD_RESTART_WINDOW_MS": "60000"})
        blocker = ApiBlocker(d)
        self.addCleanup(blocker.close)
        t0 = time.monotonic()
        d.start(wait=False)
        try:
            rc = d.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.fail("supervisor still running past the death limit\n" + d.log_tail())
        figure("api worker failing at start, limit 4 deaths: supervisor exit %d "
               "after %.3f s" % (rc, time.monotonic() - t0))
        self.assertNotEqual(rc, 0)
        self.assertGreater(rc, 0, "killed by a signal, not an exit")
        self.assertEqual(len(log_events(d, "worker died", "api")), 4)
        gave_up = log_events(d, "worker died too often", "api")
        self.assertEqual(len(gave_up), 1, d.log_tail())
        harness.poll(lambda: not d.leftovers(), 5, 0.05, "no process left behind")
        # The data written by the db worker is intact and opens again.
        blocker.close()
        d.start()
        self.assertEqual(d.client.health(), "SERVING")


if __name__ == "__main__":
    unittest.main()
