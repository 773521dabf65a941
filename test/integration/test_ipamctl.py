"""ipamctl's operator commands and the Admin service they use, against the
real daemon: show, usage, check, export, import, release, health --json,
--help and exit codes; the admin socket (0600, Unix only: Admin on the TCP
port is UNIMPLEMENTED) and how ipamctl finds it."""

import glob
import json
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import tempfile
import time
import unittest

import grpc

import harness
from harness import V6, DaemonTest
from ipamadmin.v1 import admin_pb2, admin_pb2_grpc

CTL = os.path.join(harness.BIN_DIR, "ipamctl")


def admin_socks(d):
    """The admin sockets under the daemon's runtime directory root."""
    return glob.glob(os.path.join(d.rt_dir, "meridio-ipam.*", "admin.sock"))


def ctl_env(extra=None):
    """An environment without the variables ipamctl reads by default."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("IPAMD_RUNDIR", "XDG_RUNTIME_DIR", "IPAM_DATA_SOURCE")
           and not k.startswith("IPAM_")}
    env.update(extra or {})
    return env


def ctl(args, env=None, timeout=30):
    """Runs ipamctl; (exit code, stdout, stderr)."""
    r = subprocess.run([CTL] + list(args), env=env or ctl_env(),
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


class IpamctlTest(DaemonTest):

    def start(self, **kw):
        d = self.daemon(**kw)
        socks = admin_socks(d)
        self.assertEqual(len(socks), 1, socks)
        d.admin = socks[0]
        return d

    def run_ok(self, d, *args):
        rc, out, err = ctl(list(args) + ["--admin", d.admin])
        self.assertEqual(rc, 0, "ipamctl %s: %s" % (" ".join(args), err))
        return out

    def export_file(self, d):
        out = self.run_ok(d, "export")
        fd, path = tempfile.mkstemp(prefix="export-", suffix=".json", dir=d.dir)
        with os.fdopen(fd, "w") as f:
            f.write(out)
        return path, json.loads(out)


class AdminSocket(IpamctlTest):

    def test_unix_socket_0600_and_admin_unimplemented_on_tcp(self):
        d = self.start()
        d.client.allocate("conduit-a", "w1", "a")
        st = os.lstat(d.admin)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(st.st_uid, os.geteuid())
        # The TCP port serves Ipam and Health, never Admin.
        tcp = admin_pb2_grpc.AdminStub(d.client.channel)
        for call in (lambda: tcp.Check(admin_pb2.CheckRequest(), timeout=5),
                     lambda: list(tcp.Dump(admin_pb2.DumpRequest(), timeout=5))):
            with self.assertRaises(grpc.RpcError) as cm:
                call()
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        # The Unix socket serves it.
        ch = grpc.insecure_channel("unix:" + d.admin)
        self.addCleanup(ch.close)
        adm = admin_pb2_grpc.AdminStub(ch)
        rep = adm.Check(admin_pb2.CheckRequest(), timeout=5)
        self.assertEqual((len(rep.problems), rep.records), (0, len(d.rows())))
        recs = [r for c in adm.Dump(admin_pb2.DumpRequest(), timeout=5)
                for r in c.records]
        self.assertEqual(sorted(r.id for r in recs), sorted(d.rows()))
        with self.assertRaises(grpc.RpcError) as cm:
            ch.unary_unary("/ipamadmin.v1.Admin/Nope")(b"", timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        # Socket gone after an orderly stop.
        self.assertEqual(d.stop()[0], 0)
        self.assertFalse(os.path.exists(d.admin))

    def stalled_dump_daemon(self):
        """A daemon with ~700 KB of records (more than the flow-control
        windows hold) and a Dump whose client does not read."""
        data_dir = harness.make_tmpdir()
        self.addCleanup(shutil.rmtree, data_dir, True)
        ts = "2026-11-26 06:00:00+00:00"
        rows = [("default-0", "default-0", "169.255.0.0/16", "", ts, 0),
                ("conduit-a-default-0", "conduit-a", "169.255.0.0/20", "default-0", ts, 0)]
        for node in range(12):
            nid = "w%d-conduit-a-default-0" % node
            rows.append((nid, "w%d" % node, "169.255.%d.0/24" % node,
                         "conduit-a-default-0", ts, 1))
            for k in range(1, 255):
                name = "c%d-" % k + "x" * 200
                rows.append(("%s-%s" % (name, nid), name, "169.255.%d.%d/32" % (node, k),
                             nid, ts, 1))
        harness.write_meridio_db(os.path.join(data_dir, "registry.db"), rows)
        d = self.daemon(data_dir=data_dir, conduits="conduit-a")
        d.admin = admin_socks(d)[0]
        slow = grpc.insecure_channel("unix:" + d.admin,
                                     options=[("grpc.http2.bdp_probe", 0)])
        self.addCleanup(slow.close)
        stalled = admin_pb2_grpc.AdminStub(slow).Dump(admin_pb2.DumpRequest())
        return d, stalled

    def test_client_that_stops_reading_holds_admin_30s_at_most(self):
        d, stalled = self.stalled_dump_daemon()
        t0 = harness.time.monotonic()
        harness.time.sleep(1)
        rc, out, err = ctl(["check", "--json", "--admin", d.admin], timeout=60)
        took = harness.time.monotonic() - t0
        self.assertEqual(json.loads(out)["records"], len(d.rows()), err)
        self.assertLess(took, 45)
        self.assertGreater(took, 20, "the stalled Dump did not hold the service")
        with self.assertRaises(grpc.RpcError) as cm:
            for _ in stalled:
                pass
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertIn("admin client too slow", cm.exception.details())

    def test_orderly_stop_during_a_stalled_admin_stream(self):
        # The admin thread does not poll for I/O (the API's thread does):
        # its shutdown must still complete, at once, with a call stuck.
        d, stalled = self.stalled_dump_daemon()
        harness.time.sleep(1)
        addr, _ = d.client.allocate("conduit-a", "fresh", "new-one")
        self.assertTrue(addr.startswith("169.255."), addr)
        rc, took = d.stop()
        self.assertEqual(rc, 0)
        self.assertLess(took, 5)
        with self.assertRaises(grpc.RpcError):
            for _ in stalled:
                pass

    def test_socket_found_by_rundir_scan_and_ambiguity_reported(self):
        d = self.start()
        rundir = os.path.dirname(d.admin)
        # IPAMD_RUNDIR names it.
        rc, out, err = ctl(["check"], env=ctl_env({"IPAMD_RUNDIR": rundir}))
        self.assertEqual((rc, out.startswith("ok: ")), (0, True), err)
        # --admin to nothing: an RPC error, exit 1.
        rc, out, err = ctl(["check", "--admin", os.path.join(d.dir, "none.sock")])
        self.assertEqual(rc, 1)
        self.assertIn("UNAVAILABLE", err)
        # The scan: TMPDIR and /tmp. What ipamctl must find is computed here
        # the same way (live sockets of ours), other instances in /tmp too.
        def live(base):
            found = []
            for p in glob.glob(os.path.join(base, "meridio-ipam.*", "admin.sock")):
                s = socket.socket(socket.AF_UNIX)
                try:
                    if os.lstat(p).st_uid == os.geteuid():
                        s.connect(p)
                        found.append(p)
                except OSError:
                    pass
                finally:
                    s.close()
            return found
        others = live("/tmp")
        env = ctl_env({"TMPDIR": d.rt_dir})
        rc, out, err = ctl(["check"], env=env)
        if others:
            self.assertEqual(rc, 1)
            self.assertIn("pick one with --admin", err)
        else:
            self.assertEqual(rc, 0, err)
        # A second instance under the same TMPDIR makes it ambiguous.
        d2 = self.daemon(env={"TMPDIR": d.rt_dir})
        socks = live(d.rt_dir)
        self.assertEqual(len(socks), 2, socks)
        rc, out, err = ctl(["show"], env=env)
        self.assertEqual(rc, 1)
        self.assertIn("pick one with --admin", err)
        for s in socks:
            self.assertIn(s, err)
        d2.close()


class ReadCommands(IpamctlTest):

    def test_show_tree_text_json_and_filters(self):
        d = self.start()
        for n in ("p0", "p1"):
            d.client.allocate("conduit-a", "w1", n)
        d.client.allocate("conduit-b", "w2", "q", family=V6)
        out = self.run_ok(d, "show")
        lines = out.splitlines()
        self.assertEqual(lines[0], "trench default")
        self.assertIn("  default-0  169.255.0.0/16  conduits 2/16 (12.5%)", lines)
        self.assertIn("    conduit-a  169.255.0.0/20  nodes 1/16 (6.2%)", lines)
        node = [l for l in lines if l.startswith("      w1  169.255.0.0/24  ")]
        self.assertEqual(len(node), 1, out)
        self.assertIn("addresses 2/254 (0.8%)", node[0])
        self.assertIn("refreshed ", node[0])
        self.assertTrue(any(l.startswith("        p1  169.255.0.2/32  refreshed")
                            for l in lines), out)
        doc = json.loads(self.run_ok(d, "show", "--json"))
        self.assertEqual(doc["trench"], "default")
        self.assertEqual([t["id"] for t in doc["tree"]], ["default-0", "default-1"])
        ca = [c for c in doc["tree"][0]["below"] if c["name"] == "conduit-a"][0]
        w1 = ca["below"][0]
        self.assertEqual((w1["name"], w1["cidr"], w1["used"], w1["usable"], w1["level"]),
                         ("w1", "169.255.0.0/24", 2, 254, 2))
        self.assertEqual([(k["name"], k["cidr"]) for k in w1["below"]],
                         [("p0", "169.255.0.1/32"), ("p1", "169.255.0.2/32")])
        rows = d.rows()
        self.assertEqual(w1["below"][0]["updated_at"], rows["p0-w1-conduit-a-default-0"]["updated_at"])
        # Filters: conduit-b only (with the trench records), then one node.
        doc = json.loads(self.run_ok(d, "show", "--json", "--conduit", "conduit-b"))
        names = []

        def walk(lst):
            for r in lst:
                names.append(r["id"])
                walk(r.get("below", []))
        walk(doc["tree"])
        self.assertEqual(sorted(names), sorted([
            "default-0", "default-1", "conduit-b-default-0", "conduit-b-default-1",
            "w2-conduit-b-default-1", "q-w2-conduit-b-default-1"]))
        out = self.run_ok(d, "show", "--conduit", "conduit-a", "--node", "w1")
        self.assertIn("p0", out)
        self.assertNotIn("conduit-b", out)

    def test_usage_sorted_by_fullness(self):
        # Small node prefixes make fullness differ visibly: /29 holds 6.
        d = self.start(env={"IPAM_NODE_PREFIX_LENGTH_IPV4": "29"})
        for i in range(5):
            d.client.allocate("conduit-a", "w1", "a%d" % i)
        d.client.allocate("conduit-a", "w2", "b0")
        for i in range(3):
            d.client.allocate("conduit-b", "w3", "c%d" % i)
        doc = json.loads(self.run_ok(d, "usage", "--json"))
        use = doc["usage"]
        pct = [u["percent"] for u in use]
        self.assertEqual(pct, sorted(pct, reverse=True))
        by = {(u["kind"], u["family"], u["conduit"], u["node"]): u for u in use}
        w1 = by[("node", "ipv4", "conduit-a", "w1")]
        self.assertEqual((w1["used"], w1["usable"]), (5, 6))
        self.assertAlmostEqual(w1["percent"], 500 / 6)
        self.assertEqual(use[0]["node"], "w1")
        self.assertEqual((by[("node", "ipv4", "conduit-b", "w3")]["used"]), 3)
        ca = by[("conduit", "ipv4", "conduit-a", "")]
        self.assertEqual(ca["used"], 2)
        self.assertIn(("conduit", "ipv6", "conduit-b", ""), by)
        text = self.run_ok(d, "usage").splitlines()
        self.assertEqual(text[0].split(), ["KIND", "FAMILY", "CONDUIT", "NODE",
                                           "USED/USABLE", "PERCENT"])
        self.assertEqual(text[1].split(), ["node", "ipv4", "conduit-a", "w1", "5/6", "83.3%"])
        self.assertEqual(text[2].split(), ["node", "ipv4", "conduit-b", "w3", "3/6", "50.0%"])
        self.assertEqual(len(text), 1 + len(use))
        # A filter keeps only that node's line and its conduit's.
        doc = json.loads(self.run_ok(d, "usage", "--json", "--conduit", "conduit-a",
                                     "--node", "w2"))
        self.assertEqual(sorted((u["kind"], u["node"]) for u in doc["usage"]),
                         [("conduit", ""), ("conduit", ""), ("node", "w2")])

    def test_check_clean_then_one_line_per_problem(self):
        d = self.start()
        d.client.allocate("conduit-a", "w1", "a")
        rc, out, err = ctl(["check", "--admin", d.admin])
        self.assertEqual((rc, out), (0, "ok: %d records\n" % len(d.rows())), err)
        rc, out, err = ctl(["check", "--json", "--admin", d.admin])
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), {"ok": True, "records": len(d.rows()),
                                           "problems": []})
        self.assertEqual(d.stop()[0], 0)
        # Written behind its back: an orphan and a child outside its node.
        con = sqlite3.connect(d.db_path)
        con.executemany(
            "INSERT INTO prefixes (id, name, cidr, parent_id, updated_at, expirable)"
            " VALUES (?,?,?,?,?,?)",
            [("o-gone-default-0", "o", "169.255.99.0/24", "gone-default-0",
              "2026-11-20 10:00:00+00:00", 1),
             ("x-w1-conduit-a-default-0", "x", "169.255.7.7/32",
              "w1-conduit-a-default-0", "2026-11-20 10:00:00+00:00", 1)])
        con.commit()
        con.close()
        d.start()
        socks = admin_socks(d)
        self.assertEqual(len(socks), 1, socks)
        d.admin = socks[0]
        rc, out, err = ctl(["check", "--admin", d.admin])
        self.assertEqual(rc, 1, err)
        lines = out.splitlines()
        self.assertEqual(len(lines), 2, out)
        self.assertTrue(any(l.startswith("orphan o-gone-default-0: ") for l in lines), out)
        self.assertTrue(any(l.startswith("outside x-w1-conduit-a-default-0: ")
                            for l in lines), out)
        rc, out, err = ctl(["check", "--json", "--admin", d.admin])
        self.assertEqual(rc, 1)
        doc = json.loads(out)
        self.assertFalse(doc["ok"])
        self.assertEqual(sorted((p["kind"], p["id"]) for p in doc["problems"]),
                         [("orphan", "o-gone-default-0"),
                          ("outside", "x-w1-conduit-a-default-0")])

    def test_check_reports_what_gc_would_reap(self):
        d = self.start(env={"IPAM_GARBAGE_COLLECTION_ENABLED": "true",
                            "IPAM_GARBAGE_COLLECTION_INTERVAL": "1h",
                            "IPAM_GARBAGE_COLLECTION_THRESHOLD": "1s"})
        d.client.allocate("conduit-a", "w1", "a")
        harness.poll(lambda: ctl(["check", "--admin", d.admin])[0] == 1, 10,
                     what="a stale record reported")
        rc, out, err = ctl(["check", "--json", "--admin", d.admin])
        kinds = {(p["kind"], p["id"]) for p in json.loads(out)["problems"]}
        self.assertIn(("stale", "a-w1-conduit-a-default-0"), kinds)

    def test_health_json_and_release(self):
        d = self.start()
        rc, out, err = ctl(["health", "--json", "--target", d.target])
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), {"service": "", "status": "SERVING"})
        d.client.allocate("conduit-a", "w1", "a")
        rc, out, err = ctl(["release", "--name", "a", "--conduit", "conduit-a",
                            "--node", "w1", "--family", "ipv4", "--admin", d.admin])
        self.assertEqual((rc, out), (0, "169.255.0.1\n"), err)
        self.assertNotIn("a-w1-conduit-a-default-0", d.rows())
        self.assertNotIn(" a  ", self.run_ok(d, "show"))

    def test_release_both_families_prints_each_and_refuses_no_match(self):
        d = self.start()
        d.client.allocate("conduit-a", "w1", "proxy-1")
        d.client.allocate("conduit-a", "w1", "proxy-1", family=V6)
        d.client.allocate("conduit-a", "w1", "only4")
        before = d.rows()
        rel = ["release", "--conduit", "conduit-a", "--node", "w1", "--admin", d.admin]
        # A typo at each level: exit 1, a message naming it, nothing changed.
        for args, what in (
                (["--name", "proxy-1", "--trench", "tpyo"], "trench tpyo"),
                (["--name", "proxy-1", "--conduit", "conduit-x"],
                 "no conduit conduit-x in trench default"),
                (["--name", "proxy-1", "--node", "w9"], "no node w9 in conduit conduit-a"),
                (["--name", "proxy-9"],
                 "no child proxy-9 on node w1 of conduit conduit-a"),
                (["--name", "only4", "--family", "ipv6"],
                 "no child only4 on node w1 of conduit conduit-a")):
            with self.subTest(args):
                rc, out, err = ctl(rel + args)
                self.assertEqual((rc, out), (1, ""), err)
                self.assertIn(what, err)
                self.assertEqual(d.rows(), before)
        # No --family: both addresses released, each printed.
        rc, out, err = ctl(rel + ["--name", "proxy-1"])
        self.assertEqual((rc, out.splitlines()), (0, ["169.255.0.1", "fd00::1"]), err)
        rows = d.rows()
        self.assertNotIn("proxy-1-w1-conduit-a-default-0", rows)
        self.assertNotIn("proxy-1-w1-conduit-a-default-1", rows)
        # Twice: nothing left to release.
        rc, out, err = ctl(rel + ["--name", "proxy-1"])
        self.assertEqual(rc, 1)
        self.assertIn("ipv4: no child proxy-1", err)
        self.assertIn("ipv6: no child proxy-1", err)
        # In one family only: released there, the other said on stderr.
        rc, out, err = ctl(rel + ["--name", "only4"])
        self.assertEqual((rc, out), (0, "169.255.0.2\n"), err)
        self.assertIn("ipv6: no child only4", err)
        # The gRPC Release stays Meridio's: OK for an unknown child.
        d.client.release("conduit-a", "w1", "never-was")


class ExportImport(IpamctlTest):

    def populated(self):
        d = self.start()
        for i in range(3):
            d.client.allocate("conduit-a", "w1", "p%d" % i)
        d.client.allocate("conduit-a", "w2", "bridge")
        d.client.allocate("conduit-b", "w3", "q", family=V6)
        return d

    def test_export_format_and_roundtrip_into_empty_file(self):
        d = self.populated()
        path, doc = self.export_file(d)
        self.assertEqual((doc["format"], doc["trench"]), ("meridio-ipam-export/1", "default"))
        seen = set()
        for r in doc["records"]:
            self.assertEqual(sorted(r), ["cidr", "expirable", "id", "name",
                                         "parent_id", "updated_at"])
            self.assertTrue(r["parent_id"] == "" or r["parent_id"] in seen, r)
            seen.add(r["id"])
        rows = d.rows()
        self.assertEqual(seen, set(rows))
        for r in doc["records"]:
            want = rows[r["id"]]
            self.assertEqual((r["name"], r["cidr"], r["parent_id"], r["updated_at"],
                              r["expirable"]),
                             (want["name"], want["cidr"], want["parent_id"],
                              want["updated_at"], bool(want["expirable"])))
        self.assertEqual(d.stop()[0], 0)
        # Into a file that does not exist yet: exactly the same rows.
        fresh_dir = harness.make_tmpdir()
        self.addCleanup(shutil.rmtree, fresh_dir, True)
        fresh = os.path.join(fresh_dir, "registry.db")
        rc, out, err = ctl(["import", path, "--data-source", fresh])
        self.assertEqual(rc, 0, err)
        self.assertIn("imported %d records" % len(rows), out)
        self.assertEqual(harness.read_prefixes(fresh), rows)
        # A daemon on the imported file hands out the same addresses.
        d2 = self.daemon(data_dir=fresh_dir)
        self.assertEqual(d2.client.allocate("conduit-a", "w1", "p1"), ("169.255.0.2", 24))
        self.assertEqual(d2.client.allocate("conduit-a", "w1", "new"), ("169.255.0.4", 24))

    def test_import_refuses_a_running_instance(self):
        d = self.populated()
        path, doc = self.export_file(d)
        before = d.rows()
        rc, out, err = ctl(["import", path, "--data-source", d.db_path])
        self.assertEqual(rc, 1)
        self.assertIn("stopped", err)
        self.assertEqual(d.rows(), before)

    def test_import_skips_identical_rows_and_refuses_bad_input_whole(self):
        d = self.populated()
        path, doc = self.export_file(d)
        self.assertEqual(d.stop()[0], 0)
        before = harness.read_prefixes(d.db_path)
        # Everything already there: nothing written, not an error.
        rc, out, err = ctl(["import", path, "--data-source", d.db_path])
        self.assertEqual(rc, 0, err)
        self.assertIn("imported 0 records", out)

        node = "w1-conduit-a-default-0"
        good = {"id": "n1-%s" % node, "name": "n1", "cidr": "169.255.0.9/32",
                "parent_id": node, "updated_at": "2026-11-20 10:00:00+00:00",
                "expirable": True}

        def variant(extra, fmt="meridio-ipam-export/1"):
            v = dict(doc, format=fmt, records=doc["records"] + [good] + extra)
            p = os.path.join(d.dir, "variant.json")
            with open(p, "w") as f:
                json.dump(v, f)
            return p

        cases = {
            "conflict": [dict(good, id="p0-%s" % node, name="p0", cidr="169.255.0.77/32")],
            "overlap": [dict(good, id="n2-%s" % node, name="n2", cidr="169.255.0.1/32")],
            "outside": [dict(good, id="n3-%s" % node, name="n3", cidr="169.255.9.1/32")],
            "orphan": [dict(good, id="n4-nope", name="n4", parent_id="nope")],
            "bad id": [dict(good, id="n5-elsewhere", name="n5", cidr="169.255.0.20/32")],
            "bad cidr": [dict(good, id="n6-%s" % node, name="n6", cidr="169.255.0.300/32")],
            "not canonical": [dict(good, id="n7-%s" % node, name="n7", cidr="169.255.0.21/24")],
            "bad time": [dict(good, id="n8-%s" % node, name="n8", cidr="169.255.0.22/32",
                              updated_at="yesterday")],
            "missing field": [{"id": "n9-%s" % node, "name": "n9", "cidr": "169.255.0.23/32",
                               "parent_id": node}],
            "twice": [dict(good)],
        }
        for what, extra in cases.items():
            with self.subTest(what):
                rc, out, err = ctl(["import", variant(extra), "--data-source", d.db_path])
                self.assertEqual(rc, 1, "%s accepted: %s" % (what, out))
                self.assertIn("nothing imported", err)
                self.assertEqual(harness.read_prefixes(d.db_path), before)
        for what, fmt in (("wrong format", "other/1"),):
            rc, out, err = ctl(["import", variant([], fmt), "--data-source", d.db_path])
            self.assertEqual(rc, 1, what)
            self.assertIn("not an export file", err)
        junk = os.path.join(d.dir, "junk.json")
        with open(junk, "w") as f:
            f.write("{not json")
        rc, out, err = ctl(["import", junk, "--data-source", d.db_path])
        self.assertEqual(rc, 1)
        self.assertIn("not a JSON file", err)
        self.assertEqual(harness.read_prefixes(d.db_path), before)
        # The good record alone goes in, and the daemon serves it.
        rc, out, err = ctl(["import", variant([]), "--data-source", d.db_path])
        self.assertEqual(rc, 0, err)
        self.assertIn("imported 1 records", out)
        rows = harness.read_prefixes(d.db_path)
        self.assertEqual(rows["n1-%s" % node]["cidr"], "169.255.0.9/32")
        self.assertSound(rows)
        d.start()
        self.assertEqual(d.client.allocate("conduit-a", "w1", "n1"), ("169.255.0.9", 24))


class SmallThings(IpamctlTest):

    def test_filter_that_matches_nothing_is_exit_1(self):
        d = self.start()
        d.client.allocate("conduit-a", "w1", "a")
        for cmd in ("show", "usage"):
            rc, out, err = ctl([cmd, "--conduit", "nope", "--admin", d.admin])
            self.assertEqual((rc, out), (1, ""), cmd)
            self.assertIn("no conduit nope", err)
            rc, out, err = ctl([cmd, "--conduit", "conduit-a", "--node", "w9",
                                "--admin", d.admin])
            self.assertEqual((rc, out), (1, ""), cmd)
            self.assertIn("no node w9 in conduit conduit-a", err)
        self.run_ok(d, "show", "--conduit", "conduit-a", "--node", "w1")

    def test_usage_aligned_and_large_counts_are_json_strings(self):
        d = self.start()
        d.client.allocate("conduit-a", "w1", "a")
        d.client.allocate("conduit-a", "a-rather-long-node-name-of-40-characters", "b",
                          family=V6)
        lines = self.run_ok(d, "usage").splitlines()
        # Every column starts at the same offset on every line.
        head = lines[0]
        starts = [head.index(w) for w in ("FAMILY", "CONDUIT", "NODE", "PERCENT")]
        ends = head.index("USED/USABLE") + len("USED/USABLE")
        for l in lines[1:]:
            for st in starts[:3]:
                self.assertEqual(l[st - 2:st], "  ", (l, head))
                self.assertNotEqual(l[st], " ", (l, head))
            self.assertEqual(l[ends], " ", (l, head))
            self.assertNotEqual(l[ends - 1], " ", (l, head))
            self.assertEqual(len(l), len(lines[1]), lines)
        self.assertTrue(any("0/18446744073709551614" in l or "1/18446744073709551614" in l
                            for l in lines), lines)
        # JSON: above 2^53, a string of digits; below, a number.
        use = json.loads(self.run_ok(d, "usage", "--json"))["usage"]
        v6 = [u for u in use if u["kind"] == "node" and u["family"] == "ipv6"][0]
        self.assertEqual((v6["used"], v6["usable"]), (1, "18446744073709551614"))
        v4 = [u for u in use if u["kind"] == "node" and u["family"] == "ipv4"][0]
        self.assertEqual(v4["usable"], 254)
        doc = json.loads(self.run_ok(d, "show", "--json"))
        v6tree = doc["tree"][1]["below"][0]["below"][0]
        self.assertEqual(v6tree["usable"], "18446744073709551614")

    def test_show_ages_read_as_hours(self):
        d = self.start(env={"IPAM_GARBAGE_COLLECTION_ENABLED": "false"})
        d.client.allocate("conduit-a", "w1", "old")
        self.assertEqual(d.stop()[0], 0)
        t = time.gmtime(time.time() - 3 * 3600 - 120)
        con = sqlite3.connect(d.db_path)
        con.execute("UPDATE prefixes SET updated_at = ? WHERE name IN ('w1', 'old')",
                    (time.strftime("%Y-%m-%d %H:%M:%S+00:00", t),))
        con.commit()
        con.close()
        d.start()
        d.admin = admin_socks(d)[0]
        out = self.run_ok(d, "show")
        old = [l for l in out.splitlines() if l.strip().startswith("old ")]
        self.assertEqual(len(old), 1, out)
        self.assertTrue(old[0].endswith("(3h ago)"), old[0])
        self.assertIn(time.strftime("refreshed %Y-%m-%dT%H:%M:%SZ", t), old[0])


class NoConduits(IpamctlTest):
    """A daemon with neither NSP nor static conduits: show and health say
    so (Allocate would wait and fail NOT_FOUND)."""

    def test_show_and_health_warn_without_conduit_source(self):
        d = self.start(conduits="")
        rc, out, err = ctl(["show", "--admin", d.admin])
        self.assertEqual(rc, 0, err)
        self.assertIn("warning: no conduit source", err)
        self.assertIn("every Allocate fails", err)
        doc = json.loads(self.run_ok(d, "show", "--json"))
        self.assertEqual(doc["conduit_source"], "none")
        self.assertEqual(len(doc["warnings"]), 1)
        self.assertIn("no conduit source", doc["warnings"][0])
        rc, out, err = ctl(["health", "--json", "--target", d.target, "--admin", d.admin])
        self.assertEqual(rc, 0, err)
        doc = json.loads(out)
        self.assertEqual((doc["status"], doc["conduit_source"]), ("SERVING", "none"))
        self.assertIn("no conduit source", doc["warnings"][0])
        rc, out, err = ctl(["health", "--target", d.target, "--admin", d.admin])
        self.assertEqual((rc, out), (0, "SERVING\n"), err)
        self.assertIn("warning: no conduit source", err)

    def test_no_warning_with_static_conduits(self):
        d = self.start()
        rc, out, err = ctl(["show", "--admin", d.admin])
        self.assertEqual((rc, err), (0, ""))
        doc = json.loads(self.run_ok(d, "show", "--json"))
        self.assertEqual((doc["conduit_source"], doc["warnings"]), ("static", []))
        rc, out, err = ctl(["health", "--json", "--target", d.target, "--admin", d.admin])
        doc = json.loads(out)
        self.assertEqual((doc["conduit_source"], doc["warnings"]), ("static", []))
        # The admin socket of another port says nothing about this target.
        rc, out, err = ctl(["health", "--json", "--target", "127.0.0.1:%d" % d.port,
                            "--admin", d.admin])
        self.assertIn("conduit_source", json.loads(out))


class Systemd(IpamctlTest):
    """As the unit runs it: $RUNTIME_DIRECTORY (made 0700 by systemd) holds
    the admin socket at a fixed path that ipamctl finds by default;
    IPAM_ADMIN_GROUP lets a group in; several instances are listed with
    their port and data file."""

    GID = 4242      # a group id of no one here: only its members get in

    def unit_dirs(self, *names):
        base = harness.reachable_tmpdir("ipam-sd-")
        self.addCleanup(shutil.rmtree, base, True)
        dirs = []
        for n in names:
            p = os.path.join(base, n)
            os.mkdir(p, 0o700)
            dirs.append(p)
        return base, dirs

    def as_user(self, args, groups):
        """ipamctl as uid 65534 with the given supplementary groups."""
        exe = os.path.join(harness.reachable_bin_dir(), "ipamctl")
        cmd = ["setpriv", "--reuid=65534", "--regid=65534"]
        cmd += ["--groups=" + ",".join(map(str, groups))] if groups else ["--clear-groups"]
        r = subprocess.run(cmd + [exe] + args, env=ctl_env(), capture_output=True,
                           text=True, timeout=30)
        return r.returncode, r.stdout, r.stderr

    @harness.needs(harness.why_no_other_user)
    def test_fixed_path_found_by_default_and_group_access(self):
        base, (rt,) = self.unit_dirs("meridio-ipam")
        d = self.daemon(env={"RUNTIME_DIRECTORY": rt, "IPAM_ADMIN_GROUP": str(self.GID)})
        sock = os.path.join(rt, "admin.sock")
        st = os.lstat(sock)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_gid), (0o660, self.GID))
        st = os.stat(rt)
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_gid), (0o710, self.GID))
        self.assertEqual(admin_socks(d), [], "no second admin socket")
        # Found without --admin: from inside the unit ($RUNTIME_DIRECTORY)
        # and from outside (the scan of meridio-ipam* under a base).
        for env in ({"RUNTIME_DIRECTORY": rt}, {"XDG_RUNTIME_DIR": base}):
            rc, out, err = ctl(["check"], env=ctl_env(env))
            self.assertEqual(rc, 0, err)
            self.assertTrue(out.startswith("ok: "), out)
        # A member of the group gets in; another user does not.
        rc, out, err = self.as_user(["check", "--admin", sock], [self.GID])
        self.assertEqual(rc, 0, err)
        rc, out, err = self.as_user(["check", "--admin", sock], [])
        self.assertEqual(rc, 1)
        d.client.allocate("conduit-a", "w1", "p")
        rc, out, err = ctl(["release", "--conduit", "conduit-a", "--node", "w1",
                            "--name", "p"], env=ctl_env({"XDG_RUNTIME_DIR": base}))
        self.assertEqual((rc, out), (0, "169.255.0.1\n"), err)
        self.assertEqual(d.stop()[0], 0)
        self.assertFalse(os.path.exists(sock))

    def test_without_group_the_socket_is_the_daemons_only(self):
        base, (rt,) = self.unit_dirs("meridio-ipam")
        self.daemon(env={"RUNTIME_DIRECTORY": rt})
        st = os.lstat(os.path.join(rt, "admin.sock"))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(rt).st_mode), 0o700)

    def test_two_instances_listed_with_port_and_data_file(self):
        base, (ra, rb) = self.unit_dirs("meridio-ipam", "meridio-ipam-b")
        da = self.daemon(env={"RUNTIME_DIRECTORY": ra})
        db = self.daemon(env={"RUNTIME_DIRECTORY": rb})
        env = ctl_env({"XDG_RUNTIME_DIR": base})
        rc, out, show_err = ctl(["show"], env=env)
        self.assertEqual(rc, 1)
        # Instances of other programs on this machine (in /tmp) are listed
        # too: only the two under base are this test's.
        self.assertRegex(show_err, r"\b\d+ running instances, pick one with --admin PATH")
        rc, out, err = ctl(["instances"], env=env)
        self.assertEqual(rc, 0, err)
        lines = [l for l in out.splitlines() if l.startswith(base + "/")]
        self.assertEqual(len(lines), 2, out)
        for d, rt in ((da, ra), (db, rb)):
            want = "%s/admin.sock  port %d  data %s  pid %d" % (rt, d.port, d.db_path,
                                                              d.proc.pid)
            self.assertIn(want, lines)
            self.assertIn(want, show_err)
        # A second instance on the same runtime directory does not take
        # the first one's socket.
        dc = self.daemon(env={"RUNTIME_DIRECTORY": ra})
        rc, out, err = ctl(["instances"], env=ctl_env({"RUNTIME_DIRECTORY": ra}))
        self.assertIn("port %d  data %s" % (da.port, da.db_path), out)
        self.assertIn("admin socket of another running instance", dc.log_text())


class Completion(unittest.TestCase):
    """The bash completion script, sourced in a real bash, and installed by
    `cmake --install` (what `make install` runs)."""

    SRC = os.path.join(harness._REPO, "cmd", "ipamctl", "ipamctl.bash")

    def complete(self, line, path=None):
        """COMPREPLY for the command line typed so far (a trailing space
        starts a new word)."""
        script = ('source "$1"; read -ra COMP_WORDS <<<"$2"; '
                  '[[ $2 == *" " ]] && COMP_WORDS+=(""); '
                  'COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); '
                  'complete -p ipamctl >/dev/null || exit 9; '
                  '_ipamctl; printf "%s\\n" "${COMPREPLY[@]}"')
        r = subprocess.run(["/bin/bash", "--norc", "-c", script, "_", path or self.SRC, line],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        return [w for w in r.stdout.split("\n") if w]

    def test_commands_options_and_values(self):
        self.assertEqual(self.complete("ipamctl sh"), ["show"])
        self.assertIn("instances", self.complete("ipamctl "))
        self.assertEqual(self.complete("ipamctl help al"), ["allocate"])
        self.assertEqual(self.complete("ipamctl release --fa"), ["--family"])
        self.assertEqual(self.complete("ipamctl release --family "), ["ipv4", "ipv6"])
        self.assertEqual(self.complete("ipamctl show --conduit "), [])
        opts = self.complete("ipamctl show --")
        self.assertIn("--conduit", opts)
        self.assertNotIn("--name", opts)
        # import completes file names.
        here = os.path.dirname(self.SRC)
        self.assertEqual(self.complete("ipamctl import %s/ipamctl.ba" % here),
                         [self.SRC])

    def test_options_are_those_the_program_takes(self):
        cmds = [c for c in self.complete("ipamctl ") if not c.startswith("-")]
        self.assertEqual(sorted(cmds), sorted(["allocate", "release", "health", "show",
                                               "usage", "check", "export", "import",
                                               "instances", "help"]))
        for cmd in cmds:
            if cmd == "help":
                continue
            help_text = ctl([cmd, "--help"])[1]
            values = {"--timeout": ["5s"], "--family": ["ipv6"], "--json": [],
                      "--spiffe": [], "--spiffe-id": ["spiffe://td/x"]}
            for opt in self.complete("ipamctl %s --" % cmd):
                if opt == "--help":
                    continue
                with self.subTest(cmd=cmd, opt=opt):
                    self.assertIn(opt, help_text)
                    # Accepted: a usage error (exit 2) would come before
                    # the help that ends the line.
                    rc, out, err = ctl([cmd, opt] + values.get(opt, ["x"]) + ["--help"])
                    self.assertEqual(rc, 0, (cmd, opt, err))

    def test_installed_by_cmake_install(self):
        dest = harness.make_tmpdir("ipam-inst-")
        self.addCleanup(shutil.rmtree, dest, True)
        build = os.path.dirname(harness.BIN_DIR)
        r = subprocess.run(["cmake", "--install", build, "--prefix", "/usr"],
                           env=dict(os.environ, DESTDIR=dest), capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        path = os.path.join(dest, "usr", "share", "bash-completion", "completions",
                            "ipamctl")
        with open(path) as f, open(self.SRC) as g:
            self.assertEqual(f.read(), g.read())
        self.assertEqual(self.complete("ipamctl ex", path), ["export"])


class CommandLine(unittest.TestCase):

    def test_help_per_command_and_usage_errors(self):
        for cmd in ("show", "usage", "check", "export", "import", "health",
                    "allocate", "release", "instances"):
            rc, out, err = ctl([cmd, "--help"])
            self.assertEqual(rc, 0, cmd)
            self.assertTrue(out.startswith("usage: ipamctl %s" % cmd), out)
        rc, out, err = ctl(["--help"])
        self.assertEqual(rc, 0)
        for cmd in ("show", "usage", "check", "export", "import", "instances"):
            self.assertIn("  %s " % cmd, out)
        # `help CMD` is `CMD --help`.
        for cmd in ("allocate", "release", "show", "health", "instances"):
            rc, help_out, err = ctl(["help", cmd])
            self.assertEqual((rc, help_out), (0, ctl([cmd, "--help"])[1]), cmd)
            self.assertTrue(help_out.startswith("usage: ipamctl %s" % cmd), help_out)
        rc, out, err = ctl(["help", "nosuchcommand"])
        self.assertEqual(rc, 2)
        self.assertIn("unknown command nosuchcommand", err)
        for args in (["show", "--bogus"], ["check", "--conduit", "x"],
                     ["export", "--json"], ["import"], ["import", "f.json"],
                     ["show", "--timeout", "soon"], ["usage", "extra"],
                     ["show", "--admin"], ["nosuchcommand"]):
            rc, out, err = ctl(args)
            self.assertEqual(rc, 2, "%s: %s" % (args, err))
            self.assertNotEqual(err, "")


if __name__ == "__main__":
    unittest.main()
