"""Durability (issue 5 guard): no answer leaves before its fdatasync.

The db worker, and only it, runs under strace through IPAMD_WORKER_WRAPPER
(a small shell script written here picks the db worker by its path and
execs everything else unchanged). strace delays the return of every
fdatasync/fsync by DELAY_S (delay_exit: the data is on disk, the caller
waits) or makes a few of them fail with EIO. Its log (-ttt -T -y) gives the
wall-clock start, the length and the file of every sync, so that each
answer can be matched with the syncs made while it was in flight.

With the delay:
  - a new Allocate, a renewal and a Release each wait for a sync of the data
    directory that began after the request was sent and ended before the
    answer (so each takes at least the delay);
  - Health/Check and Allocates answered with an error that writes nothing
    stay fast, also while the db worker sits in a slow sync;
  - PARALLEL concurrent new Allocates share a few syncs (group commit): all
    distinct, each covered by its own sync, far quicker than one sync each;
  - after a SIGKILL of the whole daemon, a fresh daemon without the wrapper
    on the same file holds every acknowledged child with its address.
With an EIO on the syncs of a freshly restarted db worker:
  - the Allocate whose commit met the failure is not answered OK, no OK
    answer rests on a failed sync, the daemon serves again afterwards, and
    the file passes PRAGMA integrity_check and keeps every acknowledged child.

strace is required: the test fails (it does not skip) when it is missing.
scripts/deps.sh installs it only when asked (`scripts/deps.sh strace`).
"""

import collections
import ipaddress
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import unittest

import grpc

import harness
from harness import DaemonTest, RpcError

SC = grpc.StatusCode

# Added to the return of every sync of the db worker in the delay tests.
DELAY_S = 0.3
# The syscalls delayed or failed: sqlite syncs its WAL with fdatasync; fsync
# is included so that a change of call does not slip past the test.
SYNC_CALLS = "fdatasync,fsync"
# Answers that must not wait for a sync come back faster than this.
FAST_S = DELAY_S / 2
# Concurrent new Allocates, and the most syncs they may need between them
# (one sync per call would be PARALLEL syncs and PARALLEL * DELAY_S).
PARALLEL = 32
MAX_PARALLEL_SYNCS = 8
# Syncs that fail with EIO after the db worker's restart: enough that the
# first Allocate's commit and its retry both fail. strace counts per thread:
# a worker that made a new thread for each sync would see every one fail.
EIO_SYNCS = 6
# Allocates tried, one after the other, until the daemon answers OK again.
RECOVERY_TRIES = 30
RECOVERY_S = 20.0

# Runs the db worker under strace and every other worker as it is. The
# strace options come from two files of the test's directory: "inject"
# (every start) and "inject-once" (consumed by the next start).
WRAPPER = r"""#!/bin/sh
# Written by test_durability.py: the db worker runs under strace.
dir=%(dir)s
case "$1" in
*/meridio-ipam-db)
	inj=$(cat "$dir/inject" 2>/dev/null)
	if [ -f "$dir/inject-once" ]; then
		inj=$(cat "$dir/inject-once")
		rm -f "$dir/inject-once"
	fi
	if [ -n "$inj" ]; then
		exec strace -f -qq -I1 -ttt -T -y -o "$dir/trace.$$" \
		    -e trace=%(calls)s -e "inject=$inj" "$@"
	fi
	exec strace -f -qq -I1 -ttt -T -y -o "$dir/trace.$$" \
	    -e trace=%(calls)s "$@"
	;;
esac
exec "$@"
"""

# One sync seen by strace: thread id, wall-clock start and return to the
# caller, the file, whether it returned 0, whether strace failed it on
# purpose, and whether strace delayed its return.
Sync = collections.namedtuple("Sync", "tid start end path ok injected delayed")

# One RPC as the client saw it: a label, wall-clock send and answer times,
# the (address, prefix length) answered or None, and the RpcError or None.
Call = collections.namedtuple("Call", "label sent answered result error")

_LINE_RE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
_CALL_RE = re.compile(r"^(fdatasync|fsync)\((\d+)(?:<([^>]*)>)?(.*)$")
_RESUMED_RE = re.compile(r"^<\.\.\. (fdatasync|fsync) resumed>(.*)$")
_RET_RE = re.compile(r"\)\s*=\s*(-?\d+)")
_TIME_RE = re.compile(r"<(\d+\.\d+)>\s*$")


def parse_trace(text, delay):
    """Syncs in one strace log (-f -ttt -T -y), in the order they ended.

    A sync interrupted by another thread's traced call is printed as an
    "unfinished" line and a "resumed" one; the two are joined by thread.
    -T times the call up to its exit; a delayed one returns `delay` later."""
    out = []
    open_calls = {}
    for line in text.splitlines():
        m = _LINE_RE.match(line)
        if not m:
            continue
        tid, ts, rest = int(m.group(1)), float(m.group(2)), m.group(3)
        c = _CALL_RE.match(rest)
        if c and rest.endswith("<unfinished ...>"):
            open_calls[tid] = (ts, c.group(3) or "")
            continue
        if c:
            start, path, tail = ts, c.group(3) or "", c.group(4)
        else:
            r = _RESUMED_RE.match(rest)
            if not r or tid not in open_calls:
                continue
            (start, path), tail = open_calls.pop(tid), r.group(2)
        ret = _RET_RE.search(tail)
        took = _TIME_RE.search(tail)
        if not ret:
            continue
        delayed = "(DELAYED)" in tail
        end = (start + float(took.group(1)) if took else ts) + \
            (delay if delayed else 0.0)
        out.append(Sync(tid, start, end, path, int(ret.group(1)) == 0,
                        "(INJECTED)" in tail, delayed))
    return out


def figure(text):
    """Prints one measured figure so that it shows in the ctest output."""
    sys.stderr.write("FIGURE %s\n" % text)
    sys.stderr.flush()


def exe_name(pid):
    try:
        return os.path.basename(os.readlink("/proc/%d/exe" % pid))
    except OSError:
        return ""


def integrity(db_path):
    """PRAGMA integrity_check of a copy of the file and its WAL (the copy
    keeps the daemon's own file untouched for the restart that follows)."""
    return [r[0] for r in harness.query_db_copy(db_path, "PRAGMA integrity_check")]


def child_id(node, name, conduit="conduit-a"):
    """Meridio's id of an IPv4 child record."""
    return harness.meridio_id(name, node, conduit, "%s-0" % harness.TRENCH)


class Durability(DaemonTest):

    def setUp(self):
        strace = shutil.which("strace")
        if strace is None:
            self.fail("strace is not installed: this test needs it to delay "
                      "and fail the db worker's fdatasync (apt-get install "
                      "strace, or scripts/deps.sh strace as root)")
        # The inject syntax of the installed strace, and ptrace allowed here.
        r = subprocess.run([strace, "-f", "-qq", "-o", "/dev/null", "-e",
                            "trace=%s" % SYNC_CALLS, "-e",
                            "inject=%s:delay_exit=1ms" % SYNC_CALLS,
                            "-e", "inject=%s:error=EIO:when=1..2" % SYNC_CALLS,
                            "true"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 0,
                         "strace cannot run here: %s" % r.stderr.strip())
        # Removed last: cleanups run in reverse, the daemons' first.
        self.wdir = harness.make_tmpdir("ipam-dur-")
        self.addCleanup(shutil.rmtree, self.wdir, True)
        super().setUp()
        self.wrapper = os.path.join(self.wdir, "wrap.sh")
        with open(self.wrapper, "w") as f:
            f.write(WRAPPER % {"dir": shlex.quote(self.wdir),
                               "calls": SYNC_CALLS})
        os.chmod(self.wrapper, 0o755)

    # -- helpers --------------------------------------------------------

    def set_inject(self, spec, once=False):
        """strace's inject= for the next db worker start ("" for none)."""
        with open(os.path.join(self.wdir, "inject-once" if once else "inject"),
                  "w") as f:
            f.write(spec + "\n")

    def traced_daemon(self):
        """A started daemon whose db worker runs under the wrapper."""
        return self.daemon(conduits="conduit-a", env={
            "IPAMD_WORKER_WRAPPER": self.wrapper,
            # A sanitized build: LeakSanitizer cannot run under ptrace.
            "ASAN_OPTIONS": "detect_leaks=0"})

    def syncs(self, d):
        """Every sync of a file in d's data directory, over all db worker
        starts, by start time."""
        data = os.path.realpath(d.dir) + "/"
        out = []
        for name in sorted(os.listdir(self.wdir)):
            if name.startswith("trace."):
                with open(os.path.join(self.wdir, name),
                          errors="replace") as f:
                    out.extend(parse_trace(f.read(), DELAY_S))
        return sorted((s for s in out if s.path.startswith(data)),
                      key=lambda s: s.start)

    def db_pids(self, d):
        """(strace pid, db worker pid) under d's supervisor, or None."""
        for pid in harness.children_of(d.proc.pid):
            if exe_name(pid) == "strace":
                kids = harness.children_of(pid)
                if kids:
                    return pid, kids[0]
        return None

    def timed(self, label, fn, *args, **kwargs):
        """Runs one RPC; returns its Call (the error is kept, not raised)."""
        sent = time.time()
        try:
            res, err = fn(*args, **kwargs), None
        except RpcError as e:
            res, err = None, e
        return Call(label, sent, time.time(), res, err)

    def assertCovered(self, call, syncs):
        """call's answer waited for a successful sync of the data directory
        that began after the request was sent."""
        covering = [s for s in syncs if s.ok and s.start >= call.sent
                    and s.end <= call.answered]
        self.assertTrue(covering, "%s answered %.3fs after it was sent, with "
                        "no successful sync begun and ended in between; "
                        "syncs around it: %s"
                        % (call.label, call.answered - call.sent,
                           [s for s in syncs if s.end >= call.sent - 1
                            and s.start <= call.answered + 1]))

    def assertDurable(self, call, syncs):
        """An OK answer that waited for a delayed sync begun after it."""
        self.assertIsNone(call.error, "%s failed: %s" % (call.label, call.error))
        took = call.answered - call.sent
        self.assertGreaterEqual(took, DELAY_S, "%s answered after %.3fs, "
                                "before a sync delayed %.1fs could end"
                                % (call.label, took, DELAY_S))
        self.assertCovered(call, syncs)

    def assertFast(self, call, code):
        """An answer with code that waited for no sync."""
        took = call.answered - call.sent
        if code is None:
            self.assertIsNone(call.error, "%s: %s" % (call.label, call.error))
        else:
            self.assertIsNotNone(call.error, "%s: no error" % call.label)
            self.assertEqual(call.error.code, code, "%s: %s"
                             % (call.label, call.error))
        self.assertLess(took, FAST_S, "%s took %.3fs: it waited for a sync "
                        "(each takes %.1fs here) it does not need"
                        % (call.label, took, DELAY_S))

    def restart_clean(self, d):
        """SIGKILLs d (its workers and strace too) and starts it again on the
        same file without the wrapper; returns the rows it started with."""
        d.kill_all()
        harness.poll(lambda: not d.leftovers(), 10, 0.05,
                     "no process of the killed daemon left")
        d.env.pop("IPAMD_WORKER_WRAPPER")
        d.start()
        return d.rows()

    def assertKept(self, d, rows, acked):
        """Every acknowledged child {(node, name): address} is a row with its
        address, and the daemon answers it with the same address."""
        self.assertSound(rows)
        for (node, name), addr in sorted(acked.items()):
            r = rows.get(child_id(node, name))
            self.assertIsNotNone(r, "acknowledged child %s/%s lost" % (node, name))
            self.assertEqual(str(ipaddress.ip_network(r["cidr"]).network_address),
                             addr, "%s/%s" % (node, name))
        for (node, name), addr in sorted(acked.items()):
            self.assertEqual(d.client.allocate("conduit-a", node, name)[0], addr,
                             "%s/%s" % (node, name))

    # -- tests ----------------------------------------------------------

    def test_durable_answers_wait_for_their_sync(self):
        self.set_inject("%s:delay_exit=%dms" % (SYNC_CALLS, DELAY_S * 1000))
        d = self.traced_daemon()
        c = d.client
        # A first write, so that the node prefix exists: below, the new
        # Allocate adds only its own child.
        self.assertDurable(self.timed("first Allocate", c.allocate,
                                      "conduit-a", "w1", "c0"), self.syncs(d))

        new = self.timed("new Allocate", c.allocate, "conduit-a", "w1", "c1")
        renew = self.timed("renewal", c.allocate, "conduit-a", "w1", "c1")
        release = self.timed("Release", c.release, "conduit-a", "w1", "c0")
        syncs = self.syncs(d)
        self.assertTrue(syncs, "the db worker synced nothing under strace")
        self.assertEqual([s for s in syncs if not s.delayed], [],
                         "syncs not delayed: is the wrapper in effect?")
        for call in (new, renew, release):
            self.assertDurable(call, syncs)
        self.assertEqual(renew.result, new.result)

        # Nothing to write: no sync to wait for.
        self.assertFast(self.timed("Health/Check", c.health), None)
        self.assertFast(self.timed("Allocate without a name", c.allocate,
                                   "conduit-a", "w1", ""),
                        SC.INVALID_ARGUMENT)
        self.assertFast(self.timed("Allocate without a conduit", c.allocate,
                                   None, "w1", "c9"), SC.INVALID_ARGUMENT)
        unknown = self.timed("Allocate in an unknown conduit", c.allocate,
                             "conduit-zz", "w1", "c9", timeout=0.1)
        self.assertIsNotNone(unknown.error)
        self.assertIn(unknown.error.code, (SC.NOT_FOUND, SC.DEADLINE_EXCEEDED))
        # It waits for the conduit until its (short) deadline, not for a sync.
        self.assertLess(unknown.answered - unknown.sent, DELAY_S)

        # The same while the db worker sits in a slow sync: only the durable
        # answer waits.
        sent = time.time()
        fut = c.ipam.Allocate.future(harness.child_msg("conduit-a", "w1", "c2"),
                                     timeout=10)
        harness.poll(lambda: any(s.start >= sent for s in self.syncs(d)) or
                     fut.done(), 5, 0.01, "a sync for c2")
        self.assertFalse(fut.done(), "c2 answered before its sync ended")
        self.assertFast(self.timed("Health/Check during a sync", c.health), None)
        self.assertFast(self.timed("invalid Allocate during a sync", c.allocate,
                                   "conduit-a", "w1", ""), SC.INVALID_ARGUMENT)
        self.assertNotEqual(fut.result().address, new.result[0])
        self.assertGreaterEqual(time.time() - sent, DELAY_S)

    def test_group_commit_under_slow_sync_keeps_every_answer(self):
        self.set_inject("%s:delay_exit=%dms" % (SYNC_CALLS, DELAY_S * 1000))
        d = self.traced_daemon()
        c = d.client
        # The node prefix first, so that the concurrent calls only add
        # children.
        first = self.timed("first Allocate", c.allocate, "conduit-a", "w1", "c0")
        self.assertDurable(first, self.syncs(d))

        done = {}
        futs = []
        t0 = time.time()
        for i in range(PARALLEL):
            name = "p%d" % i
            sent = time.time()
            f = c.ipam.Allocate.future(harness.child_msg("conduit-a", "w1", name),
                                       timeout=20)
            f.add_done_callback(lambda _f, n=name: done.setdefault(n, time.time()))
            futs.append((name, sent, f))
        calls = []
        for name, sent, f in futs:
            try:
                p = f.result()
                res, err = (p.address, p.prefixLength), None
            except grpc.RpcError as e:
                res, err = None, RpcError(e.code(), e.details())
            # The callback may run just after result() returns.
            harness.poll(lambda n=name: n in done, 5, 0.01, "done " + name)
            calls.append(Call(name, sent, done[name], res, err))
        total = max(x.answered for x in calls) - t0
        syncs = self.syncs(d)
        used = [s for s in syncs if s.start >= t0 and s.start <= t0 + total]
        figure("%d concurrent new Allocates, each sync delayed %.1fs: %.2fs, "
               "%d syncs" % (PARALLEL, DELAY_S, total, len(used)))
        for call in calls:
            self.assertDurable(call, syncs)
        addrs = [x.result[0] for x in calls]
        self.assertEqual(len(set(addrs + [first.result[0]])), PARALLEL + 1,
                         "two children share an address: %s" % addrs)
        self.assertLessEqual(len(used), MAX_PARALLEL_SYNCS,
                             "no group commit: %d syncs for %d allocations"
                             % (len(used), PARALLEL))
        self.assertLess(total, MAX_PARALLEL_SYNCS * DELAY_S)

        # A crash, then the same file without the delay: all still there.
        acked = {("w1", x.label): x.result[0] for x in calls}
        acked[("w1", "c0")] = first.result[0]
        rows = self.restart_clean(d)
        self.assertEqual(integrity(d.db_path), ["ok"])
        self.assertKept(d, rows, acked)

    def test_failed_sync_is_never_acknowledged(self):
        self.set_inject("")
        d = self.traced_daemon()
        c = d.client
        acked = {("w1", "ok0"): c.allocate("conduit-a", "w1", "ok0")[0]}

        # The next db worker start gets EIO_SYNCS failing syncs. A restarted
        # worker finds its data in place and writes nothing before a request.
        self.set_inject("%s:error=EIO:when=1..%d" % (SYNC_CALLS, EIO_SYNCS),
                        once=True)
        old = harness.poll(lambda: self.db_pids(d), 10, 0.05, "traced db worker")
        os.kill(old[1], signal.SIGKILL)
        harness.poll(lambda: (self.db_pids(d) or old)[0] != old[0], 15, 0.05,
                     "db worker restarted")
        self.assertFalse(os.path.exists(os.path.join(self.wdir, "inject-once")),
                         "the restarted db worker did not take the fault")
        d.wait_serving()
        c = d.client

        def alloc(name):
            return self.timed(name, c.allocate, "conduit-a", "w1", name)

        victim = alloc("victim")
        calls = [victim]
        deadline = time.monotonic() + RECOVERY_S
        for i in range(RECOVERY_TRIES):
            calls.append(alloc("after-%d" % i))
            if calls[-1].error is None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        # Serving again: a few more in a row.
        calls.extend(alloc("later-%d" % i) for i in range(3))

        syncs = self.syncs(d)
        failed = [s for s in syncs if s.injected]
        self.assertTrue(failed, "strace failed no sync: %s" % syncs)
        self.assertTrue(victim.sent <= failed[0].start <= victim.answered,
                        "the first failed sync (%.3f) fell outside the first "
                        "Allocate (%.3f..%.3f)" % (failed[0].start, victim.sent,
                                                   victim.answered))
        self.assertIsNotNone(victim.error, "answered OK %s although its sync "
                             "failed" % (victim.result,))
        # A storage error, or the call lost with a dying db worker; not an
        # error about the request itself.
        self.assertIn(victim.error.code, (SC.UNAVAILABLE, SC.INTERNAL,
                                          SC.DEADLINE_EXCEEDED, SC.CANCELLED,
                                          SC.UNKNOWN, SC.ABORTED),
                      victim.error)
        for call in calls:
            if call.error is not None:
                continue
            # The last sync during an OK call must have succeeded, after
            # any failure: no OK answer rests on a failed sync.
            during = [s for s in syncs
                      if call.sent <= s.start and s.end <= call.answered]
            self.assertTrue(during and during[-1].ok,
                            "%s answered OK after a failed sync: %s"
                            % (call.label, during))
            self.assertCovered(call, syncs)
        for call in calls[-3:]:
            self.assertIsNone(call.error, "%s: %s (not serving again after "
                              "the fault)" % (call.label, call.error))
        figure("fdatasync EIO: first Allocate answered %s; %d failing "
               "Allocates before the first OK"
               % (victim.error.code.name,
                  sum(1 for x in calls if x.error is not None)))

        for call in calls:
            if call.error is None:
                acked[("w1", call.label)] = call.result[0]
        d.kill_all()
        harness.poll(lambda: not d.leftovers(), 10, 0.05,
                     "no process of the killed daemon left")
        self.assertEqual(integrity(d.db_path), ["ok"])
        rows = self.restart_clean(d)
        self.assertKept(d, rows, acked)


if __name__ == "__main__":
    unittest.main()
