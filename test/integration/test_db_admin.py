"""The db worker's operator requests (Dump, Check) spoken directly on its
internal socket, and the release cooldown, against the real daemon."""

import json
import os
import socket
import sqlite3
import time
import unittest

import harness
from harness import V4, V6, DaemonTest
from ipamd.v1 import ipamd_pb2


class DbSocket:
    """A client of the db worker: 4-byte big-endian length + ipamd.v1."""

    def __init__(self, daemon):
        # The supervisor logs where its runtime directory is.
        paths = []
        for line in daemon.log_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("message") == "runtime directory":
                paths.append(os.path.join(rec["extra_data"]["path"], "db.sock"))
        if not paths or not os.path.exists(paths[-1]):
            raise AssertionError("db socket not found: %s" % paths)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(paths[-1])
        self.next_id = 1
        hello = self.call(hello=ipamd_pb2.Hello(role=ipamd_pb2.ROLE_CTL, pid=os.getpid()))
        assert hello[0].code == 0, hello

    def call(self, **body):
        """Sends one Request; returns every Reply of it (Dump may send many)."""
        req = ipamd_pb2.Request(id=self.next_id, **body)
        self.next_id += 1
        data = req.SerializeToString()
        self.sock.sendall(harness.ipc_frame(data))
        replies = []
        while True:
            body = harness.ipc_recv_frame(self.sock)
            if body is None:
                raise EOFError("db worker closed the connection")
            rep = ipamd_pb2.Reply.FromString(body)
            if rep.id != req.id:
                raise AssertionError("reply for %d, expected %d" % (rep.id, req.id))
            replies.append(rep)
            if not rep.more:
                return replies

    def close(self):
        self.sock.close()


class Cooldown(DaemonTest):

    def test_released_address_not_reused_during_cooldown(self):
        d = self.daemon(env={"IPAM_RELEASE_COOLDOWN": "2s"})
        c = d.client
        self.assertEqual(c.allocate("conduit-a", "w1", "a"), ("169.255.0.1", 24))
        self.assertEqual(c.allocate("conduit-a", "w1", "b"), ("169.255.0.2", 24))
        self.assertEqual(c.allocate("conduit-a", "w1", "c"), ("169.255.0.3", 24))
        released = time.monotonic()
        c.release("conduit-a", "w1", "b")
        self.assertEqual(c.allocate("conduit-a", "w1", "d"), ("169.255.0.4", 24))
        self.assertLess(time.monotonic() - released, 2.0,
                        "the machine was too slow to observe the cooldown")
        harness.poll(lambda: time.monotonic() - released > 2.1, 5)
        self.assertEqual(c.allocate("conduit-a", "w1", "e"), ("169.255.0.2", 24))
        self.assertSound(d.rows())

    def test_without_cooldown_released_address_is_reused_at_once(self):
        d = self.daemon()
        c = d.client
        c.allocate("conduit-a", "w1", "a")
        c.allocate("conduit-a", "w1", "b")
        c.release("conduit-a", "w1", "a")
        self.assertEqual(c.allocate("conduit-a", "w1", "c"), ("169.255.0.1", 24))


class DumpAndCheck(DaemonTest):

    def test_dump_lists_every_record_in_chunks(self):
        d = self.daemon()
        c = d.client
        for i in range(1200):
            c.allocate("conduit-a", "w%d" % (i % 6), "p%d" % i)
        c.allocate("conduit-b", "w9", "x", family=V6)
        db = DbSocket(d)
        self.addCleanup(db.close)
        replies = db.call(dump=ipamd_pb2.Dump())
        self.assertGreater(len(replies), 1, "1200+ records come in chunks")
        recs = [r for rep in replies for r in rep.records]
        rows = d.rows()
        self.assertEqual(sorted(r.id for r in recs), sorted(rows))
        by_id = {r.id: r for r in recs}
        node = by_id["w0-conduit-a-default-0"]
        self.assertEqual((node.level, node.cidr, node.children, node.usable),
                         (2, "169.255.0.0/24", 200, 254))
        self.assertEqual(by_id["x-w9-conduit-b-default-1"].cidr, "fd00:0:0:100::1/128")
        # Parents come before their children.
        seen = set()
        for r in recs:
            self.assertTrue(r.parent_id == "" or r.parent_id in seen, r.id)
            seen.add(r.id)
        # Filters keep the path from the trench down.
        only = [r for rep in db.call(dump=ipamd_pb2.Dump(conduit="conduit-b"))
                for r in rep.records]
        self.assertEqual(sorted(r.id for r in only),
                         ["conduit-b-default-0", "conduit-b-default-1", "default-0",
                          "default-1", "w9-conduit-b-default-1",
                          "x-w9-conduit-b-default-1"])

    def test_check_is_clean_then_reports_rows_left_out(self):
        d = self.daemon()
        d.client.allocate("conduit-a", "w1", "a")
        db = DbSocket(d)
        rep = db.call(check=ipamd_pb2.Check())[0]
        db.close()
        self.assertEqual((rep.code, len(rep.problems)), (0, 0), rep)
        self.assertEqual(rep.record_count, len(d.rows()))
        self.assertEqual(d.stop()[0], 0)
        # An orphan written behind the daemon's back is reported, not deleted.
        con = sqlite3.connect(d.db_path)
        con.execute("INSERT INTO prefixes (id, name, cidr, parent_id, updated_at, "
                    "expirable) VALUES (?,?,?,?,?,?)",
                    ("o-gone-default-0", "o", "169.255.99.0/24", "gone-default-0",
                     "2026-11-20 10:00:00+00:00", 1))
        con.commit()
        con.close()
        d.start()
        db = DbSocket(d)
        self.addCleanup(db.close)
        rep = db.call(check=ipamd_pb2.Check())[0]
        self.assertEqual([(p.id, p.kind) for p in rep.problems],
                         [("o-gone-default-0", "orphan")])
        self.assertIn("o-gone-default-0", d.rows())


if __name__ == "__main__":
    unittest.main()
