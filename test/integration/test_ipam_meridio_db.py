"""A registry.db written by Meridio's IPAM is served with every address
kept, and the file stays one that Meridio can open."""

import datetime
import hashlib
import json
import os
import sqlite3
import time
import unittest


import harness
from harness import V6, DaemonTest


NODE4 = "worker-1-conduit-a-default-0"
NODE6 = "worker-1-conduit-a-default-1"


def go_time(dt):
    """A UTC time as go-sqlite3 writes it: nanoseconds, trailing zeros cut."""
    frac = ("%09d" % (dt.microsecond * 1000 + 789)).rstrip("0")
    return dt.strftime("%Y-%m-%d %H:%M:%S") + ("." + frac if frac else "") + "+00:00"


def meridio_rows(ts):
    """Rows as Meridio writes them: trench records with parent '', ids
    <name>-<parent id>, children as host prefixes, bridge not expirable."""
    return [
        ("default-0", "default-0", "169.255.0.0/16", "", ts, 0),
        ("conduit-a-default-0", "conduit-a", "169.255.0.0/20", "default-0", ts, 0),
        (NODE4, "worker-1", "169.255.0.0/24", "conduit-a-default-0", ts, 1),
        ("proxy-x-" + NODE4, "proxy-x", "169.255.0.1/32", NODE4, ts, 1),
        ("bridge-" + NODE4, "bridge", "169.255.0.2/32", NODE4, ts, 0),
        ("default-1", "default-1", "fd00::/48", "", ts, 0),
        ("conduit-a-default-1", "conduit-a", "fd00::/56", "default-1", ts, 0),
        (NODE6, "worker-1", "fd00::/64", "conduit-a-default-1", ts, 1),
        ("proxy-x-" + NODE6, "proxy-x", "fd00::1/128", NODE6, ts, 1),
        ("bridge-" + NODE6, "bridge", "fd00::2/128", NODE6, ts, 0),
    ]


def schema(db_path):
    """(columns of prefixes, {index name: (unique, [columns])}) of a file."""
    con = sqlite3.connect(db_path)
    try:
        cols = [r[1] for r in con.execute("PRAGMA table_info(prefixes)")]
        idx = {}
        for r in con.execute("PRAGMA index_list(prefixes)"):
            name, unique = r[1], r[2]
            if name.startswith("sqlite_autoindex"):
                continue
            idx[name] = (unique, [c[2] for c in con.execute("PRAGMA index_info(`%s`)" % name)])
        return cols, idx
    finally:
        con.close()


MERIDIO_INDEXES = {
    "idx_prefixes_expirable": (0, ["expirable"]),
    "idx_prefixes_updated_at": (0, ["updated_at"]),
    "idx_parent_id_cidr": (1, ["cidr", "parent_id"]),
    "idx_prefixes_parent_id": (0, ["parent_id"]),
    "idx_prefixes_name": (0, ["name"]),
}


class MeridioDb(DaemonTest):

    def meridio_daemon(self, env=None, start=True):
        d = self.daemon(start=False, env=env)
        self.ts = go_time(datetime.datetime.now(datetime.timezone.utc)
                          - datetime.timedelta(minutes=5))
        harness.write_meridio_db(d.db_path, meridio_rows(self.ts))
        if start:
            d.start()
        return d

    def test_meridio_registry_served_with_addresses_kept(self):
        d = self.meridio_daemon()
        c = d.client
        self.assertEqual(c.allocate("conduit-a", "worker-1", "proxy-x"), ("169.255.0.1", 24))
        self.assertEqual(c.allocate("conduit-a", "worker-1", "bridge"), ("169.255.0.2", 24))
        self.assertEqual(c.allocate("conduit-a", "worker-1", "proxy-y"), ("169.255.0.3", 24))
        self.assertEqual(c.allocate("conduit-a", "worker-1", "proxy-x", V6), ("fd00::1", 64))
        self.assertEqual(c.allocate("conduit-a", "worker-1", "proxy-y", V6), ("fd00::3", 64))
        # A second node and conduit continue first-fit around the old data.
        self.assertEqual(c.allocate("conduit-a", "worker-2", "proxy-x"), ("169.255.1.1", 24))
        self.assertEqual(c.allocate("conduit-b", "worker-1", "proxy-x"), ("169.255.16.1", 24))

        rows = d.rows()
        self.assertSound(rows)
        for rid, name, cidr, parent, _, expirable in meridio_rows(self.ts):
            self.assertIn(rid, rows)
            r = rows[rid]
            self.assertEqual((r["name"], r["cidr"], r["parent_id"], int(r["expirable"])),
                             (name, cidr, parent, expirable), rid)
        new = rows["proxy-y-" + NODE4]
        self.assertEqual((new["name"], new["cidr"], new["parent_id"], int(new["expirable"])),
                         ("proxy-y", "169.255.0.3/32", NODE4, 1))
        self.assertEqual(rows["proxy-y-" + NODE6]["cidr"], "fd00::3/128")
        self.assertEqual(rows["conduit-b-default-0"]["cidr"], "169.255.16.0/20")
        self.assertRegex(new["updated_at"], harness.UPDATED_AT_RE)
        # The refresh of proxy-x is written in the same format, later.
        px = rows["proxy-x-" + NODE4]["updated_at"]
        self.assertRegex(px, harness.UPDATED_AT_RE)
        self.assertGreater(px, self.ts)

        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        cols, idx = schema(d.db_path)
        self.assertEqual(cols, list(harness.PREFIX_COLUMNS))
        for name, want in MERIDIO_INDEXES.items():
            self.assertEqual(idx.get(name), want, name)

    def test_meridio_children_released_and_reused(self):
        d = self.meridio_daemon()
        c = d.client
        c.release("conduit-a", "worker-1", "proxy-x")
        self.assertNotIn("proxy-x-" + NODE4, d.rows())
        self.assertEqual(c.allocate("conduit-a", "worker-1", "proxy-z"), ("169.255.0.1", 24))
        self.assertEqual(c.allocate("conduit-a", "worker-1", "proxy-w"), ("169.255.0.3", 24))
        self.assertEqual(c.allocate("conduit-a", "worker-1", "proxy-x", V6), ("fd00::1", 64))

    def test_meridio_registry_survives_restart(self):
        d = self.meridio_daemon()
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "proxy-y"), ("169.255.0.3", 24))
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        d.start()
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "proxy-x"), ("169.255.0.1", 24))
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "proxy-y"), ("169.255.0.3", 24))
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "bridge", V6), ("fd00::2", 64))

    def test_our_database_has_meridios_schema(self):
        d = self.daemon()
        d.client.allocate("conduit-a", "worker-1", "p")
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        cols, idx = schema(d.db_path)
        self.assertEqual(cols, list(harness.PREFIX_COLUMNS))
        for name, want in MERIDIO_INDEXES.items():
            self.assertEqual(idx.get(name), want, name)
        rows = harness.read_prefixes(d.db_path)
        self.assertEqual(rows["default-0"]["name"], "default-0")
        self.assertEqual(rows["p-worker-1-conduit-a-default-0"]["cidr"], "169.255.0.1/32")
        for r in rows.values():
            self.assertRegex(r["updated_at"], harness.UPDATED_AT_RE, r["id"])
        # Meridio's own statements work on it: its unique index holds.
        con = sqlite3.connect(d.db_path)
        try:
            with self.assertRaises(sqlite3.IntegrityError):
                con.execute("INSERT INTO `prefixes` VALUES (?,?,?,?,?,?)",
                            ("dup", "dup", "169.255.0.1/32", "worker-1-conduit-a-default-0",
                             "2026-11-20 10:00:00+00:00", 1))
        finally:
            con.close()

    def test_trench_prefix_mismatch_refused_untouched(self):
        d = self.meridio_daemon(env={"IPAM_PREFIX_IPV4": "10.0.0.0/16"}, start=False)
        with open(d.db_path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        d.start(wait=False)
        harness.poll(lambda: d.proc.poll() is not None, 30, 0.1, "daemon to refuse and exit")
        self.assertNotEqual(d.proc.returncode, 0)
        log = d.log_text()
        self.assertIn("169.255.0.0/16", log)
        self.assertIn("10.0.0.0/16", log)
        with open(d.db_path, "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), digest, "file changed")
        self.assertFalse(os.path.exists(d.db_path + "-wal")
                         and os.path.getsize(d.db_path + "-wal") > 0, "WAL written")
        self.assertEqual(d.leftovers(), [])


# The table of Meridio releases before garbage collection (gorm, from a
# model with id, name, cidr and parent_id only; no index).
OLD_MERIDIO_TABLE = (
    "CREATE TABLE `prefixes` (`id` text,`name` text,`cidr` text,`parent_id` text,"
    "PRIMARY KEY (`id`),CONSTRAINT `fk_prefixes_parent` FOREIGN KEY (`parent_id`) "
    "REFERENCES `prefixes`(`id`))")


class OlderMeridioDb(DaemonTest):
    """A registry.db of Meridio releases before updated_at/expirable."""

    def write_old_db(self, path):
        con = sqlite3.connect(path)
        try:
            con.execute(OLD_MERIDIO_TABLE)
            con.executemany("INSERT INTO `prefixes` VALUES (?,?,?,?)",
                            [r[:4] for r in meridio_rows(None)])
            con.commit()
        finally:
            con.close()

    def test_older_schema_served_and_migrated_as_meridio_does(self):
        d = self.daemon(start=False)
        self.write_old_db(d.db_path)
        t0 = datetime.datetime.now(datetime.timezone.utc)
        d.start()
        c = d.client
        self.assertEqual(c.allocate("conduit-a", "worker-1", "proxy-x"), ("169.255.0.1", 24))
        self.assertEqual(c.allocate("conduit-a", "worker-1", "bridge", V6), ("fd00::2", 64))
        self.assertEqual(c.allocate("conduit-a", "worker-1", "proxy-y"), ("169.255.0.3", 24))
        rc, _ = d.stop()
        self.assertEqual(rc, 0)

        cols, idx = schema(d.db_path)
        self.assertEqual(cols, list(harness.PREFIX_COLUMNS))
        for name, want in MERIDIO_INDEXES.items():
            self.assertEqual(idx.get(name), want, name)
        rows = d.rows()
        self.assertSound(rows)
        for rid, name, cidr, parent, _, expirable in meridio_rows(None):
            r = rows[rid]
            self.assertEqual((r["name"], r["cidr"], r["parent_id"], int(r["expirable"])),
                             (name, cidr, parent, expirable), rid)
        # Meridio's migrate() gave nodes and their children the time of the
        # start; bridges, conduits and trenches keep none.
        start = go_time(t0)[:19]
        for rid in (NODE4, NODE6, "proxy-x-" + NODE6):
            self.assertRegex(rows[rid]["updated_at"], harness.UPDATED_AT_RE, rid)
            self.assertGreaterEqual(rows[rid]["updated_at"], start, rid)
        self.assertIsNone(rows["bridge-" + NODE4]["updated_at"])

        recs = d.log_records()
        (rec,) = [r for r in recs if "migrated" in r.get("message", "")]
        self.assertEqual(rec["severity"], "info")
        x = rec["extra_data"]
        self.assertEqual(x["path"], d.db_path)
        # JSON numbers: 2 columns, 5 indexes, a node and its proxy per family.
        self.assertEqual((x["columns_added"], x["indexes_added"], x["nodes_made_expirable"],
                          x["children_made_expirable"]), (2, 5, 2, 2), rec)
        (loaded,) = [r for r in recs if r.get("message") == "database loaded"]
        self.assertEqual((loaded["extra_data"]["records"], loaded["extra_data"]["addresses"]),
                         (10, 4), loaded)

    def test_older_schema_refused_on_mismatch_stays_untouched(self):
        d = self.daemon(start=False, env={"IPAM_PREFIX_IPV4": "10.0.0.0/16"})
        self.write_old_db(d.db_path)
        with open(d.db_path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        d.start(wait=False)
        harness.poll(lambda: d.proc.poll() is not None, 30, 0.1, "daemon to refuse and exit")
        self.assertNotEqual(d.proc.returncode, 0)
        with open(d.db_path, "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), digest, "file changed")
        cols, _ = schema(d.db_path)
        self.assertEqual(cols, ["id", "name", "cidr", "parent_id"])


GO_ZERO = "0001-01-01 00:00:00+00:00"   # Go's zero time as go-sqlite3 writes it


class MeridioTimes(DaemonTest):
    """updated_at values Meridio writes that are not plain times."""

    def test_zero_and_null_times_served_and_never_reaped(self):
        d = self.daemon(start=False, env={"IPAM_GARBAGE_COLLECTION_ENABLED": "true",
                                          "IPAM_GARBAGE_COLLECTION_INTERVAL": "1s",
                                          "IPAM_GARBAGE_COLLECTION_THRESHOLD": "2s"})
        old = go_time(datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))
        rows = []
        for rid, name, cidr, parent, _, exp in meridio_rows(None):
            rows.append((rid, name, cidr, parent, None if rid.endswith("-1") else GO_ZERO, exp))
        # A stale record beside them shows garbage collection ran.
        rows.append(("proxy-old-" + NODE4, "proxy-old", "169.255.0.9/32", NODE4, old, 1))
        harness.write_meridio_db(d.db_path, rows)
        d.start()
        stale = "proxy-old-" + NODE4
        harness.poll(lambda: stale not in d.rows(), 20, 0.2, "GC to reap %s" % stale)
        time.sleep(2.5)     # two more rounds
        got = d.rows()
        for rid, _, cidr, _, t, _ in rows[:-1]:
            self.assertIn(rid, got, "%s (updated_at %r) was reaped" % (rid, t))
            self.assertEqual(got[rid]["cidr"], cidr)
        self.assertEqual(got["proxy-x-" + NODE4]["updated_at"], GO_ZERO)
        self.assertIsNone(got["proxy-x-" + NODE6]["updated_at"])
        # Served with the addresses kept; a renewal gives them a time.
        c = d.client
        self.assertEqual(c.allocate("conduit-a", "worker-1", "proxy-x"), ("169.255.0.1", 24))
        self.assertEqual(c.allocate("conduit-a", "worker-1", "proxy-x", V6), ("fd00::1", 64))
        got = d.rows()
        for rid in ("proxy-x-" + NODE4, NODE4, "proxy-x-" + NODE6, NODE6):
            self.assertRegex(got[rid]["updated_at"], harness.UPDATED_AT_RE, rid)
            self.assertGreater(got[rid]["updated_at"], "2026", rid)

    def test_unreadable_row_stops_at_once_naming_row_and_column(self):
        d = self.daemon(start=False)
        ts = go_time(datetime.datetime.now(datetime.timezone.utc))
        rows = meridio_rows(ts)
        rows[3] = rows[3][:4] + ("last tuesday",) + rows[3][5:]
        harness.write_meridio_db(d.db_path, rows)
        t0 = time.monotonic()
        d.start(wait=False)
        harness.poll(lambda: d.proc.poll() is not None, 10, 0.05, "daemon to stop")
        took = time.monotonic() - t0
        self.assertNotEqual(d.proc.returncode, 0)
        self.assertLess(took, 5.0, "stopped only after %.1f s" % took)
        recs = d.log_records()
        bad = [r for r in recs if rows[3][0] in json.dumps(r)]
        self.assertEqual(len(bad), 1, "\n".join(json.dumps(r) for r in recs))
        self.assertIn("updated_at", json.dumps(bad[0]))
        self.assertIn("last tuesday", json.dumps(bad[0]))
        started = [r for r in recs if r.get("message") == "worker started"
                   and r["extra_data"].get("worker") == "db"]
        self.assertEqual(len(started), 1, "the db worker was restarted")
        self.assertEqual(d.leftovers(), [])


if __name__ == "__main__":
    unittest.main()
