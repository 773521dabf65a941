"""Storage faults (issue 4): the data directory missing or read-only, a
corrupt database file, a file held by another instance, and the disk
filling up during a commit.

Each fault must give one clear log line, lose no acknowledged data, and
delete or rewrite nothing: a refused file keeps every byte, and a failed
commit answers errors (UNAVAILABLE) while what was committed before stays.

The read-only cases run the daemon as an unprivileged uid (setpriv), since
the tests run as root and root writes anywhere. The disk-full case mounts a
small tmpfs in a private mount namespace of the daemon (unshare -m), so
nothing is mounted where anyone else can see it; the test reaches the files
through /proc/<pid>/root.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import unittest
from concurrent import futures

import grpc

import harness
from harness import V4, V6, DaemonTest, RpcError

SC = grpc.StatusCode

NOBODY = 65534
# How long a refused daemon may take to exit (it should be far quicker).
EXIT_BOUND = 20.0


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def snapshot(directory, skip=("stderr.log",)):
    """{name: (size, mtime_ns, sha256)} of the regular files in directory
    (the daemon's log and its private runtime directory left out)."""
    out = {}
    for name in sorted(os.listdir(directory)):
        p = os.path.join(directory, name)
        if (name in skip or name.startswith("stderr") or name.endswith(".sh")
                or not os.path.isfile(p)):
            continue
        st = os.stat(p)
        out[name] = (st.st_size, st.st_mtime_ns, digest(p))
    return out


def wrap(d, setup="", prefix="", name="wrap.sh", target=None):
    """Makes d start through a shell script: setup commands, then exec of
    prefix + target (by default what d started so far), so the pid Popen
    sees ends up being the supervisor's (every step execs, none forks)."""
    script = os.path.join(d.dir, name)
    with open(script, "w") as f:
        f.write("#!/bin/sh\nset -e\n%s\nexec %s%s\n"
                % (setup, prefix, target or d.bin))
    os.chmod(script, 0o755)
    d.bin = script


class StorageTest(DaemonTest):

    def expect_refusal(self, d, *needles):
        """Starts d, expects a non-zero exit within EXIT_BOUND and one
        error record whose text holds every needle. Returns the record."""
        t0 = time.monotonic()
        d.start(wait=False)
        try:
            rc = d.proc.wait(EXIT_BOUND)
        except subprocess.TimeoutExpired:
            self.fail("daemon did not exit on a storage fault\n" + d.log_tail())
        took = time.monotonic() - t0
        self.assertGreater(rc, 0, "exit status %s\n%s" % (rc, d.log_tail()))
        harness.poll(lambda: not d.leftovers(), 5, 0.05, "no process left behind")
        errors = [r for r in d.log_records() if r.get("severity") == "error"
                  and all(n in json.dumps(r) for n in needles)]
        self.assertTrue(errors, "no error line with %s\n%s" % (needles, d.log_tail()))
        return errors[0], took

    def make_data(self, d, n=20):
        """Starts d, allocates n children, stops it cleanly; returns the
        answers."""
        d.start()
        got = {}
        for i in range(n):
            k = ("conduit-a" if i % 2 else "conduit-b", "worker-%d" % (i % 3),
                 "pod-%d" % i, V4 if i % 4 else V6)
            got[k] = d.client.allocate(*k)
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        return got

    def check_kept(self, d, got):
        """Starts d again and checks every earlier answer is still given."""
        d.start()
        for k, v in got.items():
            self.assertEqual(d.client.allocate(*k), v, k)
        self.assertSound(d.rows())


class MissingDirectory(StorageTest):

    def test_missing_data_directory(self):
        d = self.daemon(start=False)
        missing = os.path.join(d.dir, "no-such-dir")
        d.env["IPAM_DATA_SOURCE"] = os.path.join(missing, "registry.db")
        rec, took = self.expect_refusal(d, "cannot open the database", "does not exist")
        self.assertEqual(rec["extra_data"].get("process"), "db")
        self.assertFalse(os.path.exists(missing), "the daemon created the directory")
        self.assertLess(took, EXIT_BOUND)


class PathErrors(StorageTest):
    """IPAM_DATA_SOURCE where no database can be made: the error says what
    is wrong with the path, not only that opening failed."""

    def refuse_path(self, path, *needles):
        d = self.daemon(start=False)
        d.env["IPAM_DATA_SOURCE"] = path
        rec, _ = self.expect_refusal(d, "cannot open the database", path, *needles)
        self.assertEqual(rec["extra_data"].get("process"), "db")
        return d, rec

    def test_proc_takes_no_new_files(self):
        # /proc exists: the old text said it did not.
        _, rec = self.refuse_path("/proc/registry.db",
                                  "directory /proc exists but takes no new files")
        self.assertNotIn("does not exist", json.dumps(rec))

    def test_parent_is_a_file(self):
        d = self.daemon(start=False)
        plain = os.path.join(d.dir, "plain")
        with open(plain, "w") as f:
            f.write("x")
        self.refuse_path(os.path.join(plain, "sub", "registry.db"),
                         "%s is not a directory" % plain)
        with open(plain) as f:
            self.assertEqual(f.read(), "x")

    def test_missing_directories(self):
        d = self.daemon(start=False)
        deep = os.path.join(d.dir, "a", "b")
        self.refuse_path(os.path.join(deep, "registry.db"),
                         "directory %s does not exist" % deep)
        self.assertFalse(os.path.exists(os.path.join(d.dir, "a")))

    def test_path_is_a_directory(self):
        d = self.daemon(start=False)
        sub = os.path.join(d.dir, "dbdir")
        os.makedirs(sub)
        self.refuse_path(sub, "is a directory, not a database file")
        self.assertEqual(os.listdir(sub), [])

    @harness.needs(harness.why_no_private_mounts)
    def test_read_only_file_system(self):
        # A read-only tmpfs in a private mount namespace (see
        # test_start_on_a_full_disk): root is refused too, and told why.
        d = self.daemon(start=False)
        mnt = os.path.join(d.dir, "mnt")
        os.makedirs(mnt)
        holder = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             "mount -t tmpfs -o ro,size=1m ipam-ro %s && echo ok && exec sleep 300" % mnt],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.addCleanup(holder.stdout.close)
        self.addCleanup(holder.wait, 10)
        self.addCleanup(holder.kill)
        self.assertEqual(holder.stdout.readline(), b"ok\n")
        d.env["IPAM_DATA_SOURCE"] = os.path.join(mnt, "registry.db")
        wrap(d, prefix="nsenter -t %d -m -- " % holder.pid)
        self.expect_refusal(d, "cannot open the database",
                            "cannot create: %s is on a read-only file system" % mnt)


@harness.needs(harness.why_no_other_user)
class ReadOnly(StorageTest):
    """The daemon runs as nobody; the data directory and file belong to
    root. TMPDIR (its runtime directory) is a directory nobody may write."""

    def daemon(self, **kwargs):
        """Daemons of this class keep their data where nobody can reach
        it, whatever directory the checkout sits in."""
        if "data_dir" not in kwargs:
            kwargs["data_dir"] = harness.reachable_tmpdir()
            self.addCleanup(shutil.rmtree, kwargs["data_dir"], True)
        return super().daemon(**kwargs)

    def as_nobody(self, d):
        d.bin = os.path.join(harness.reachable_bin_dir(), harness.SUPERVISOR)
        run = os.path.join(d.dir, "run")
        os.makedirs(run, exist_ok=True)
        os.chown(run, NOBODY, NOBODY)
        os.chmod(d.dir, 0o755)
        d.env["TMPDIR"] = run
        # nobody's health socket too: in root's runtime directory the api
        # worker could not bind it and its exit would race the db worker's
        # error line that these tests read.
        d.env["IPAM_HEALTH_SOCKET"] = os.path.join(run, "health.sock")
        wrap(d, prefix="setpriv --reuid=%d --regid=%d --clear-groups "
             "--inh-caps=-all " % (NOBODY, NOBODY))

    def make_root_data(self):
        """A data directory with a database written by a root daemon;
        returns (the daemon object to reuse the directory, its answers)."""
        owner = self.daemon(start=False)
        got = self.make_data(owner)
        return owner, got

    def test_nobody_can_run_it_on_a_writable_directory(self):
        """Control: the same setup with the files given to nobody serves,
        so the refusals below come from the permissions alone."""
        owner, got = self.make_root_data()
        for name in os.listdir(owner.dir):
            os.chown(os.path.join(owner.dir, name), NOBODY, NOBODY)
        os.chown(owner.dir, NOBODY, NOBODY)
        d = self.daemon(start=False, data_dir=owner.dir)
        self.as_nobody(d)
        self.check_kept(d, got)
        uids = {os.stat("/proc/%d" % pid).st_uid for pid in d.workers().values()}
        self.assertEqual(uids, {NOBODY})

    def test_read_only_directory(self):
        """The file is nobody's, the directory is not: the WAL journal
        could not be created beside the file."""
        owner, got = self.make_root_data()
        os.chown(owner.db_path, NOBODY, NOBODY)
        before = snapshot(owner.dir)
        d = self.daemon(start=False, data_dir=owner.dir)
        self.as_nobody(d)
        os.chmod(owner.dir, 0o755)
        rec, _ = self.expect_refusal(d, "cannot open the database", owner.db_path,
                                     "is not writable")
        self.assertEqual(rec["extra_data"].get("process"), "db")
        self.assertEqual(snapshot(owner.dir), before, "files changed")
        # Back to root: everything is still there.
        owner.log_path = os.path.join(owner.dir, "stderr-after.log")
        self.check_kept(owner, got)

    def test_read_only_file(self):
        """The directory is nobody's but the database file is root's."""
        owner, got = self.make_root_data()
        os.chown(owner.dir, NOBODY, NOBODY)
        os.chmod(owner.db_path, 0o644)
        before = snapshot(owner.dir)
        d = self.daemon(start=False, data_dir=owner.dir)
        self.as_nobody(d)
        self.expect_refusal(d, "cannot open the database", owner.db_path,
                            "the file (owner uid 0, mode 0644) is not writable by uid %d" % NOBODY)
        self.assertEqual(snapshot(owner.dir), before, "files changed")
        owner.log_path = os.path.join(owner.dir, "stderr-after.log")
        self.check_kept(owner, got)

    def test_read_only_empty_directory_creates_nothing(self):
        d = self.daemon(start=False)
        data = os.path.join(d.dir, "data")
        os.makedirs(data)
        os.chmod(data, 0o755)
        d.env["IPAM_DATA_SOURCE"] = os.path.join(data, "registry.db")
        self.as_nobody(d)
        self.expect_refusal(d, "cannot open the database",
                            "directory %s (owner uid 0, mode 0755) is not writable by uid %d"
                            % (data, NOBODY))
        self.assertEqual(os.listdir(data), [])


class Corrupt(StorageTest):

    def refuse_bytes(self, d, data, *needles):
        with open(d.db_path, "wb") as f:
            f.write(data)
        before = snapshot(d.dir)
        rec, took = self.expect_refusal(d, *needles)
        self.assertEqual(snapshot(d.dir), before, "files changed or appeared")
        with open(d.db_path, "rb") as f:
            self.assertEqual(f.read(), data, "bytes changed")
        return rec, took

    def test_garbage_file(self):
        d = self.daemon(start=False)
        garbage = os.urandom(64 * 1024)
        rec, took = self.refuse_bytes(d, garbage, "cannot open the database", d.db_path)
        self.assertEqual(rec["extra_data"].get("process"), "db")
        self.assertLess(took, EXIT_BOUND)

    def test_text_file(self):
        d = self.daemon(start=False)
        self.refuse_bytes(d, b"this is not a database\n" * 100,
                          "cannot open the database", d.db_path)

    def test_garbage_pages_behind_a_valid_header(self):
        """A real database whose pages after the first are overwritten: it
        passes the header check, so sqlite itself must notice."""
        d = self.daemon(start=False)
        self.make_data(d)
        # Checkpointed at the clean stop: everything is in the main file.
        self.assertFalse(os.path.exists(d.db_path + "-wal")
                         and os.path.getsize(d.db_path + "-wal") > 0)
        with open(d.db_path, "rb") as f:
            good = f.read()
        pgsz = int.from_bytes(good[16:18], "big") or 65536
        self.assertGreater(len(good), 2 * pgsz)
        bad = good[:pgsz] + os.urandom(len(good) - pgsz)
        for name in ("-wal", "-shm"):
            if os.path.exists(d.db_path + name):
                os.unlink(d.db_path + name)
        d.log_path = os.path.join(d.dir, "stderr-corrupt.log")
        t0 = time.monotonic()
        rec, _ = self.refuse_bytes(d, bad, "cannot open the database", d.db_path,
                                   "left untouched")
        # Refused for good at once, not restarted until the death limit.
        self.assertLess(time.monotonic() - t0, 5.0)
        self.assertEqual(rec["extra_data"].get("process"), "db")
        self.assertEqual(len([r for r in d.log_records() if r.get("message") == "worker started"
                              and r["extra_data"].get("worker") == "db"]), 1, "db worker restarted")


class HeldByAnother(StorageTest):

    def test_second_instance_refused_at_once_first_keeps_serving(self):
        first = self.daemon()
        got = {}
        for i in range(10):
            k = ("conduit-a", "worker-1", "p%d" % i, V4 if i % 2 else V6)
            got[k] = first.client.allocate(*k)
        first_workers = first.workers()
        second = self.daemon(start=False, data_dir=first.dir)
        second.log_path = os.path.join(first.dir, "stderr-second.log")
        names = sorted(os.listdir(first.dir))
        inode = os.stat(first.db_path).st_ino
        # The first one's supervisor holds the lock (for its whole life).
        rec, took = self.expect_refusal(second, "in use by another meridio-ipam",
                                        "pid %d" % first.proc.pid)
        print("second instance refused after %.3f s" % took)
        self.assertLess(took, 5.0, "not refused at once")
        # The second created, removed or replaced nothing.
        self.assertEqual(sorted(n for n in os.listdir(first.dir) if n != "stderr-second.log"),
                         names)
        self.assertEqual(os.stat(first.db_path).st_ino, inode)
        # The first one never noticed.
        self.assertEqual(first.workers(), first_workers)
        self.assertEqual(first.client.health(), "SERVING")
        for k, v in got.items():
            self.assertEqual(first.client.allocate(*k), v, k)
        self.assertEqual(first.client.allocate("conduit-a", "worker-1", "new"),
                         ("169.255.0.6", 24))
        self.assertSound(first.rows())


@harness.needs(harness.why_no_private_mounts)
class DiskFull(StorageTest):
    """The database lives on a 16 MiB tmpfs private to the daemon. The test
    fills it with a ballast file, expects the next commit to fail with
    UNAVAILABLE while earlier data stays, then frees the space."""

    SIZE = "16m"
    ENV = None

    def setUp(self):
        super().setUp()
        if shutil.which("unshare") is None or shutil.which("nsenter") is None:
            self.fail("unshare and nsenter (util-linux) are needed")
        d = self.daemon(start=False, env=self.ENV)
        self.mnt = os.path.join(d.dir, "mnt")
        os.makedirs(self.mnt)
        d.env["IPAM_DATA_SOURCE"] = os.path.join(self.mnt, "registry.db")
        # unshare replaces itself with the inner script, which mounts and
        # execs the daemon: one pid, in a mount namespace of its own.
        wrap(d, setup="mount -t tmpfs -o size=%s,mode=0755 ipam-full %s"
             % (self.SIZE, self.mnt), name="inner.sh")
        wrap(d, prefix="unshare -m --propagation private ")
        d.start(wait=False)
        self.pid = d.proc.pid
        self.root = "/proc/%d/root" % self.pid
        d.db_path = self.root + os.path.join(self.mnt, "registry.db")
        d.wait_serving()
        d.wait_conduits(["conduit-a", "conduit-b"])
        self.d = d

    def inside(self, path):
        return self.root + path

    def fill(self):
        """Writes a ballast file until the tmpfs is full (bounded)."""
        ballast = self.inside(os.path.join(self.mnt, "ballast"))
        chunk = b"\xa5" * 65536
        written = 0
        with open(ballast, "wb", buffering=0) as f:
            for _ in range(1024):
                try:
                    f.write(chunk)
                    written += len(chunk)
                except OSError:
                    break
            else:
                self.fail("tmpfs never filled up")
            # Fill the last partial block as well.
            for _ in range(65536):
                try:
                    f.write(b"\0" * 512)
                except OSError:
                    break
        return ballast

    def try_allocate(self, key):
        """The status code of one Allocate (OK or the error's)."""
        try:
            self.d.client.allocate(*key, timeout=10)
            return SC.OK
        except RpcError as e:
            return e.code

    def test_disk_full_during_commit(self):
        d = self.d
        self.assertFalse(os.path.ismount(self.mnt), "tmpfs visible outside")
        before = {}
        for i in range(40):
            k = ("conduit-a" if i % 2 else "conduit-b", "worker-%d" % (i % 4),
                 "pre-%d" % i, V4 if i % 3 else V6)
            before[k] = d.client.allocate(*k)
        ballast = self.fill()
        # Commits now run out of room: some may still fit (the WAL reuses
        # its space after a checkpoint), then one must fail.
        during, failed = {}, None
        for i in range(3000):
            k = ("conduit-a", "worker-%d" % (i % 4), "full-%d" % i, V4 if i % 2 else V6)
            try:
                during[k] = d.client.allocate(*k, timeout=10)
            except RpcError as e:
                failed = (k, e)
                break
        self.assertIsNotNone(failed, "no commit failed on a full disk")
        key, err = failed
        print("disk full: %d commits fitted after the fill, then %s: %s"
              % (len(during), err.code.name, err.details))
        self.assertEqual(err.code, SC.UNAVAILABLE, err.details)
        self.assertIn("storage", err.details)
        # Nothing died; the log names the cause.
        self.assertTrue(d.running())
        self.assertEqual(set(d.workers()), d.roles())
        full_lines = [r for r in d.log_records()
                      if "full" in json.dumps(r).lower() and r.get("severity") in ("warning", "error")]
        self.assertTrue(full_lines, "no log line names the full disk\n" + d.log_tail())
        # Still full: the next new child fails the same way, a renewal
        # still answers (it may or may not be able to write updated_at,
        # but it must never give another address).
        harness.expect_code(self, SC.UNAVAILABLE, d.client.allocate, *key)
        # A batch of many requests at once fails as a whole, each answered.
        with futures.ThreadPoolExecutor(max_workers=16) as ex:
            outcome = list(ex.map(lambda i: self.try_allocate(
                ("conduit-b", "worker-9", "batch-%d" % i, V4)), range(16)))
        self.assertEqual(outcome, [SC.UNAVAILABLE] * 16)
        for k, v in list(before.items())[:5]:
            try:
                self.assertEqual(d.client.allocate(*k), v)
            except RpcError as e:
                self.assertEqual(e.code, SC.UNAVAILABLE, e.details)
        # The failed batch left nothing behind; earlier data stays.
        rows = d.rows()
        self.assertNotIn(harness.meridio_id(key[2], key[1], key[0], "default-%d"
                                            % (0 if key[3] == V4 else 1)), rows)
        self.assertFalse([i for i in rows if i.startswith("batch-")], "rows of a failed batch")
        for k in list(before) + list(during):
            conduit, node, name, fam = k
            self.assertIn(harness.meridio_id(name, node, conduit,
                                             "default-%d" % (0 if fam == V4 else 1)), rows, k)
        # Space returns: the service recovers by itself.
        os.unlink(ballast)
        t0 = time.monotonic()
        got = harness.poll(lambda: d.client.allocate(*key), 10, 0.05, "allocate after space returned")
        print("disk full: recovered %.3f s after the space returned" % (time.monotonic() - t0))
        self.assertTrue(got[0])
        for k, v in list(before.items()) + list(during.items()):
            self.assertEqual(d.client.allocate(*k), v, k)
        # And it is on disk: a restarted db worker reads the same.
        old = d.kill_worker("db")
        d.wait_worker("db", not_pid=old)
        d.wait_serving()
        for k, v in list(before.items()) + list(during.items()) + [(key, got)]:
            self.assertEqual(harness.poll(lambda: d.client.allocate(*k), 10, 0.05, str(k)), v, k)
        self.assertSound(d.rows())


@harness.needs(harness.why_no_private_mounts)
class DiskFullAtStart(StorageTest):
    """A restart on a full disk: the tmpfs lives in a mount namespace held
    by a sleeping process, and each daemon start enters it (nsenter), so the
    data outlives the daemon."""

    def test_start_on_a_full_disk(self):
        d = self.daemon(start=False)
        mnt = os.path.join(d.dir, "mnt")
        os.makedirs(mnt)
        holder = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             "mount -t tmpfs -o size=16m,mode=0755 ipam-full %s && echo ok && exec sleep 300"
             % mnt], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.addCleanup(holder.wait, 10)
        self.addCleanup(holder.kill)
        self.assertEqual(holder.stdout.readline(), b"ok\n")
        root = "/proc/%d/root" % holder.pid
        d.env["IPAM_DATA_SOURCE"] = os.path.join(mnt, "registry.db")
        d.db_path = root + d.env["IPAM_DATA_SOURCE"]
        wrap(d, prefix="nsenter -t %d -m -- " % holder.pid)
        got = self.make_data(d, 30)
        before = digest(d.db_path)
        ballast = root + os.path.join(mnt, "ballast")
        with open(ballast, "wb", buffering=0) as f:
            for size in (65536, 512):
                for _ in range(1 << 16):
                    try:
                        f.write(b"\0" * size)
                    except OSError:
                        break
        d.log_path = os.path.join(d.dir, "stderr-full.log")
        rec, took = self.expect_refusal(d, "cannot open the database", "registry.db")
        print("start on a full disk: refused after %.3f s: %s" % (took, rec["extra_data"].get("error")))
        self.assertEqual(digest(d.db_path), before, "database rewritten")
        # Space returns: the next start serves everything that was there.
        os.unlink(ballast)
        self.check_kept(d, got)


class FileSizeLimit(StorageTest):
    """RLIMIT_FSIZE (systemd's LimitFSIZE=, ulimit -f) below what the
    database grows to: a write past it must fail the batch like a full disk,
    not kill the db worker with SIGXFSZ over and over until the supervisor
    gives up."""

    LIMIT = 256 * 1024

    def test_write_past_the_file_size_limit(self):
        d = self.daemon(start=False, env={"IPAMD_RESTART_MAX_DEATHS": "3"})
        # Soft limit only: lifting it later needs no CAP_SYS_RESOURCE.
        wrap(d, prefix="prlimit --fsize=%d:unlimited " % self.LIMIT)
        d.start()
        db_pid = d.workers()["db"]
        acked, failed = {}, None
        for i in range(5000):
            k = ("conduit-a" if i % 2 else "conduit-b", "worker-%d" % (i % 8),
                 "f%d" % i, V4 if i % 3 else V6)
            try:
                acked[k] = d.client.allocate(*k, timeout=10)
            except RpcError as e:
                failed = (k, e)
                break
        self.assertIsNotNone(failed, "the database never reached the limit")
        key, err = failed
        print("file size limit: %d commits, then %s: %s"
              % (len(acked), err.code.name, err.details))
        self.assertEqual(err.code, SC.UNAVAILABLE, err.details)
        self.assertIn("storage", err.details)
        self.assertEqual(d.workers().get("db"), db_pid, "the db worker died\n" + d.log_tail())
        self.assertTrue(d.running())
        for k, v in list(acked.items())[:: max(1, len(acked) // 50)]:
            try:
                self.assertEqual(d.client.allocate(*k), v, k)
            except RpcError as e:
                self.assertEqual(e.code, SC.UNAVAILABLE, e.details)
        # The limit is lifted: the same worker writes again.
        r = subprocess.run(["prlimit", "--pid", str(db_pid), "--fsize=unlimited"],
                           capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        got = harness.poll(lambda: d.client.allocate(*key), 10, 0.05, "allocate after the limit")
        self.assertTrue(got[0])
        self.assertEqual(d.workers().get("db"), db_pid)
        for k, v in acked.items():
            self.assertEqual(d.client.allocate(*k), v, k)
        self.assertSound(d.rows())


def log_lines(d, *needles):
    """The log records of d whose text holds every needle."""
    return [r for r in d.log_records() if all(n in json.dumps(r) for n in needles)]


class FailedWrite(StorageTest):

    def test_failed_batch_logs_its_cause(self):
        """A write refused inside a batch (here: the row a renewal updates
        was deleted behind the daemon's back) is logged with the store's
        own error text, not with whatever the log buffer held before."""
        import sqlite3
        d = self.daemon()
        key = ("conduit-a", "worker-1", "vanished")
        d.client.allocate(*key)
        con = sqlite3.connect(d.db_path, timeout=10)
        con.execute("DELETE FROM prefixes WHERE name = 'vanished'")
        con.commit()
        con.close()
        harness.expect_code(self, SC.UNAVAILABLE, d.client.allocate, *key)
        lines = log_lines(d, '"storage writes"', '"failing"')
        self.assertTrue(lines, "no write failure logged\n" + d.log_tail())
        for r in lines:
            self.assertIn("touch", json.dumps(r), r)
            self.assertIn("no such row", json.dumps(r), r)



def scrape(port):
    """{name: value} of the unlabelled samples of the metrics endpoint."""
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.split()
            out[name] = float(value)
    return out


class FailureLogging(StorageTest):
    """A lasting storage failure logs one line when it starts, a summary
    per interval (IPAMD_FAILURE_SUMMARY_MS, a minute by default) and one
    line when it ends, however many requests fail meanwhile; metrics count
    every failure."""

    LIMIT = 256 * 1024

    def start_limited(self, limit):
        """A daemon whose db worker may not write past limit bytes in a
        file (set on that process alone). The limit holds for the log
        file too: at level INFO it stays far below."""
        self.mport = harness.free_port()
        d = self.daemon(env={"IPAM_METRICS_PORT": str(self.mport), "IPAM_LOG_LEVEL": "INFO",
                             "IPAMD_FAILURE_SUMMARY_MS": "2000"})
        self.set_limit(d, limit)
        return d

    def set_limit(self, d, limit):
        r = subprocess.run(["prlimit", "--pid", str(d.workers()["db"]),
                            "--fsize=%s:unlimited" % limit], capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)

    def allocate_batch(self, d, prefix, first, n=8):
        """Allocates n new children at once; returns how many failed
        (UNAVAILABLE: any other error fails the test)."""
        def one(i):
            try:
                d.client.allocate("conduit-a", "w%d" % (i // 2000), "%s-%d" % (prefix, i),
                                  V6, timeout=10)
                return 0
            except RpcError as e:
                self.assertEqual(e.code, SC.UNAVAILABLE, e.details)
                return 1
        with futures.ThreadPoolExecutor(max_workers=n) as ex:
            return sum(ex.map(one, range(first, first + n)))

    def fill_until_failure(self, d, bound=5000):
        """Allocates new children until one fails; returns how many fitted."""
        for i in range(bound):
            try:
                d.client.allocate("conduit-b", "worker-%d" % (i % 8), "f%d" % i,
                                  V4 if i % 3 else V6, timeout=10)
            except RpcError as e:
                self.assertEqual(e.code, SC.UNAVAILABLE, e.details)
                return i
        self.fail("the limit was never reached")

    def test_full_disk_logs_start_summaries_and_end(self):
        d = self.start_limited(self.LIMIT)
        self.fill_until_failure(d)
        # Keep failing for 2.25 summary intervals, many requests a second.
        t0 = time.monotonic()
        tries = 1
        while time.monotonic() - t0 < 4.5:
            tries += self.allocate_batch(d, "full", tries)
        self.assertGreater(tries, 100, "too few failing requests to show a flood")
        starts = log_lines(d, '"storage writes"', '"failing"')
        summaries = log_lines(d, '"storage writes"', '"still failing"')
        warnings = [r for r in d.log_records() if r.get("extra_data", {}).get("process") == "db"
                    and "warn" in json.dumps(r)]
        print("full disk: %d failed requests, %d start lines, %d summaries, %d db warnings"
              % (tries, len(starts), len(summaries), len(warnings)))
        self.assertEqual(len(starts), 1, "\n".join(json.dumps(r) for r in d.log_records()
                                                  if r.get("severity") != "debug"))
        self.assertIn(d.db_path if os.path.isabs(d.db_path) else "registry.db",
                      json.dumps(starts[0]))
        self.assertTrue(1 <= len(summaries) <= 3, summaries)
        self.assertLessEqual(len(warnings), 8, "\n" + d.log_tail())
        m = scrape(self.mport)
        self.assertGreaterEqual(m["ipam_db_commit_failures_total"], tries)
        # The limit is lifted: one line says it is over.
        self.set_limit(d, "unlimited")
        harness.poll(lambda: d.client.allocate("conduit-a", "worker-1", "after", V4),
                     10, 0.05, "allocate after the limit")
        # It ends after a quarter interval without a failure (500 ms).
        harness.poll(lambda: log_lines(d, '"storage writes"', '"recovered"'), 5, 0.1,
                     "a line saying the failure is over")
        self.assertEqual(len(log_lines(d, '"storage writes"', '"recovered"')), 1)
        self.assertEqual(len(log_lines(d, '"storage writes"', '"failing"')), 1)

    def test_failed_checkpoints_logged_once_and_counted(self):
        """The file may not grow (RLIMIT_FSIZE at its size) while the WAL
        still has room: commits go on, the checkpoints that copy them back
        fail. One line says so, metrics count them, one line says when
        they work again."""
        import signal as sig
        d = self.start_limited("unlimited")
        i = 0
        while os.path.getsize(d.db_path) + os.path.getsize(d.db_path + "-wal") < (3 << 20):
            self.assertEqual(self.allocate_batch(d, "grow", i, 16), 0)
            i += 16
            self.assertLess(i, 40000, "the database never grew")
        # A clean stop of the worker copies the WAL back and removes it.
        old = d.kill_worker("db", sig.SIGTERM)
        d.wait_worker("db", not_pid=old)
        d.wait_serving()
        self.set_limit(d, os.path.getsize(d.db_path))
        harness.poll(lambda: self.allocate_batch(d, "more", 100000 + 100 * int(time.time() % 1000), 8) == 0
                     and scrape(self.mport)["ipam_db_checkpoint_failures_total"] > 0,
                     30, 0.01, "a failed checkpoint")
        for k in range(20):
            self.allocate_batch(d, "later", 200000 + 8 * k)
        time.sleep(1.2)
        fails = log_lines(d, '"checkpoints"', '"failing"')
        self.assertEqual(len(fails), 1, fails)
        self.assertIn("checkpoint", json.dumps(fails[0]))
        self.set_limit(d, "unlimited")
        k = [0]

        def recovered():
            k[0] += 1
            self.allocate_batch(d, "again", 300000 + 8 * k[0])
            return log_lines(d, '"checkpoints"', '"recovered"')
        harness.poll(recovered, 20, 0.2, "a line saying checkpoints work again")
        self.assertEqual(len(log_lines(d, '"checkpoints"', '"failing"')), 1)
        self.assertGreater(scrape(self.mport)["ipam_db_checkpoint_failures_total"], 0)
        self.assertSound(d.rows())



class LockHandover(StorageTest):
    """The lock is the instance's: its supervisor holds it from start to
    exit, so a db worker restart leaves no moment in which another
    instance could take the file; and a new instance started while a
    killed one's worker is still stopping waits for it (bounded) instead of
    giving up at once."""

    def second_on(self, first, name):
        d = self.daemon(start=False, data_dir=first.dir)
        d.log_path = os.path.join(first.dir, "stderr-%s.log" % name)
        # The first one's api worker may still be draining on its own.
        d.env["IPAM_HEALTH_SOCKET"] = os.path.join(first.dir, "health-%s.sock" % name)
        return d

    def fill(self, d, n=12):
        got = {}
        for i in range(n):
            k = ("conduit-a", "worker-%d" % (i % 3), "p%d" % i, V4 if i % 2 else V6)
            got[k] = d.client.allocate(*k)
        return got

    def orphan_stopped_worker(self, first):
        """SIGSTOPs first's db worker, then kills its supervisor: the
        worker keeps the lock until it is let go (SIGCONT)."""
        db = first.workers()["db"]
        os.kill(db, signal.SIGSTOP)
        self.addCleanup(lambda: harness.pid_alive(db) and os.kill(db, signal.SIGCONT))
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        return db

    def test_new_instance_waits_for_a_stopping_worker(self):
        first = self.daemon()
        got = self.fill(first)
        db = self.orphan_stopped_worker(first)
        second = self.second_on(first, "second")
        second.start(wait=False)
        waiting = harness.poll(lambda: log_lines(second, "waiting", "pid"), 4, 0.05,
                               "a line saying the new instance waits")
        self.assertEqual(waiting[0]["extra_data"].get("pid"), first.proc.pid, waiting[0])
        self.assertIsNone(second.proc.poll(), "gave up while the holder was stopping")
        os.kill(db, signal.SIGCONT)
        second.wait_serving()
        second.wait_conduits(["conduit-a", "conduit-b"])
        for k, v in got.items():
            self.assertEqual(second.client.allocate(*k), v, k)
        self.assertSound(second.rows())

    def test_wait_is_bounded(self):
        first = self.daemon()
        self.fill(first, 2)
        self.orphan_stopped_worker(first)
        second = self.second_on(first, "second")
        rec, took = self.expect_refusal(second, "in use by another meridio-ipam",
                                        "still held after")
        print("gave up after %.3f s" % took)
        self.assertGreater(took, 4.5)
        self.assertLess(took, 10.0)

    def test_db_worker_restart_leaves_no_gap(self):
        # The db worker is restarted 3 s after it died: another instance
        # started meanwhile must be refused, the first one keeps its file.
        first = self.daemon(env={"IPAMD_RESTART_FLOOR_MS": "3000"})
        got = self.fill(first)
        old = first.kill_worker("db")
        harness.poll(lambda: "db" not in first.workers(), 5, 0.01, "db worker gone")
        second = self.second_on(first, "second")
        second.env["IPAM_PORT"] = str(harness.free_port())
        rec, took = self.expect_refusal(second, "in use by another meridio-ipam",
                                        "pid %d" % first.proc.pid)
        self.assertNotIn("db", first.workers(), "the test was too slow: restarted already")
        first.wait_worker("db", not_pid=old)
        first.wait_serving()
        for k, v in got.items():
            self.assertEqual(harness.poll(lambda: first.client.allocate(*k), 10, 0.05, str(k)), v, k)
        self.assertTrue(first.running())



class FilesReplaced(StorageTest):
    """The database file, its WAL or its -shm removed, replaced or
    truncated under a running daemon: nothing more is acknowledged, one
    error line names the file, and the db worker stops for good (the
    daemon exits non-zero) instead of committing into a file that a
    restart would not see."""

    def run_and_break(self, brk):
        d = self.daemon()
        got = {}
        for i in range(10):
            k = ("conduit-a", "worker-%d" % (i % 3), "p%d" % i, V4 if i % 2 else V6)
            got[k] = d.client.allocate(*k)
        brk(d)
        try:
            d.client.allocate("conduit-a", "worker-1", "after-the-fault", timeout=10)
            self.fail("acknowledged after the fault")
        except RpcError as e:
            self.assertEqual(e.code, SC.UNAVAILABLE, e.details)
        try:
            rc = d.proc.wait(EXIT_BOUND)
        except subprocess.TimeoutExpired:
            self.fail("daemon still running after the fault\n" + d.log_tail())
        self.assertGreater(rc, 0)
        harness.poll(lambda: not d.leftovers(), 5, 0.05, "no process left behind")
        lines = [r for r in d.log_records() if r.get("severity") == "error"
                 and "removed or replaced" in json.dumps(r)]
        self.assertEqual(len(lines), 1, "\n" + d.log_tail())
        return d, got, lines[0]

    def test_wal_removed(self):
        d, got, line = self.run_and_break(lambda d: os.unlink(d.db_path + "-wal"))
        self.assertIn(d.db_path + "-wal", json.dumps(line))
        # What was acknowledged before lived in the removed WAL: the stop
        # copied it into the file, so a restart still gives every address.
        d.log_path = os.path.join(d.dir, "stderr-again.log")
        d.start()
        for k, v in got.items():
            self.assertEqual(d.client.allocate(*k), v, k)
        self.assertNotIn("after-the-fault", json.dumps(d.rows()))
        self.assertSound(d.rows())

    def test_database_removed(self):
        d, _, line = self.run_and_break(lambda d: os.unlink(d.db_path))
        self.assertIn("database file", json.dumps(line))
        self.assertFalse(os.path.exists(d.db_path), "the stopping daemon made a file")

    def test_database_replaced(self):
        def replace(d):
            with open(d.db_path + ".new", "wb") as f:
                f.write(b"")
            os.rename(d.db_path + ".new", d.db_path)
        d, _, _ = self.run_and_break(replace)
        self.assertEqual(os.path.getsize(d.db_path), 0, "the new file was written")

    def test_database_truncated(self):
        def truncate(d):
            with open(d.db_path, "r+b") as f:
                f.truncate(0)
        d, _, line = self.run_and_break(truncate)
        self.assertIn("truncated", json.dumps(line))
        self.assertEqual(os.path.getsize(d.db_path), 0, "written after the truncation")



class SmallVolume(DiskFull):
    """A 12 MiB volume (a tmpfs mounted in the daemon's own mount
    namespace): the WAL must stay small beside the file, so that steady
    writes fit; filled up, commits fail UNAVAILABLE and the service comes
    back by itself once room returns."""

    SIZE = "12m"
    test_disk_full_during_commit = None	# DiskFull's own, on 16 MiB
    # Renewals within an hour write nothing: answered from memory when full.
    ENV = {"IPAM_RENEWAL_REFRESH": "1h"}

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs needs root (unshare -m, mount)")
        super().setUp()

    def test_wal_stays_small_and_service_recovers(self):
        d = self.d
        wal = self.inside(os.path.join(self.mnt, "registry.db-wal"))
        most, acked = 0, {}

        def one(i):
            k = ("conduit-a", "w%d" % (i // 2000), "s%d" % i, V6)
            return k, d.client.allocate(*k, timeout=10)
        with futures.ThreadPoolExecutor(max_workers=16) as ex:
            for start in range(0, 4000, 64):
                for k, v in ex.map(one, range(start, start + 64)):
                    acked[k] = v
                if os.path.exists(wal):
                    most = max(most, os.path.getsize(wal))
        size = os.path.getsize(d.db_path)
        print("small volume: 4000 allocations, largest WAL seen %d bytes, file %d bytes"
              % (most, size))
        self.assertLess(most, 6 << 20, "the WAL grew past 6 MiB")
        # Full: new allocations fail, nothing dies, acknowledged data stays.
        ballast = self.fill()
        failed = None
        for i in range(3000):
            try:
                d.client.allocate("conduit-b", "w-full", "n%d" % i, V6, timeout=10)
            except RpcError as e:
                failed = e
                break
        self.assertIsNotNone(failed, "no commit failed on a full volume")
        self.assertEqual(failed.code, SC.UNAVAILABLE, failed.details)
        self.assertEqual(set(d.workers()), d.roles())
        self.assertEqual(d.client.health(), "SERVING")
        for k, v in list(acked.items())[::200]:
            self.assertEqual(d.client.allocate(*k), v, k)
        # Room returns: new allocations work again without a restart.
        os.unlink(ballast)
        t0 = time.monotonic()
        harness.poll(lambda: d.client.allocate("conduit-b", "w-full", "back", V6), 10, 0.05,
                     "allocate after room returned")
        print("small volume: recovered %.3f s after room returned" % (time.monotonic() - t0))
        for k, v in list(acked.items())[::50]:
            self.assertEqual(d.client.allocate(*k), v, k)
        # And a restart on that volume loads everything.
        old = d.kill_worker("db")
        d.wait_worker("db", not_pid=old)
        d.wait_serving()
        for k, v in list(acked.items())[::50]:
            self.assertEqual(harness.poll(lambda: d.client.allocate(*k), 10, 0.05, str(k)), v, k)


if __name__ == "__main__":
    unittest.main()
