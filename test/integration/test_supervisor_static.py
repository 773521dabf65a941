"""Static conduits (IPAM_CONDUITS) with the real binaries: the db worker
makes them before it serves, and the supervisor runs no nsp worker."""

import unittest

import harness
from harness import DaemonTest


def conduit_ids(d):
    """Names of the conduits under the trench, the same in every served
    family."""
    rows = d.rows()
    per_family = [sorted(r["name"] for r in rows.values()
                         if r["parent_id"] == "%s-%d" % (harness.TRENCH, f))
                  for f in d.families()]
    for names in per_family[1:]:
        assert names == per_family[0], per_family
    return per_family[0]


class StaticConduits(DaemonTest):

    def test_served_at_once_without_nsp_worker(self):
        d = self.daemon(start=False, conduits="conduit-b,conduit-a")
        d.start(wait=False)
        d.wait_serving()
        # No wait for the records: they exist before the db worker serves.
        self.assertEqual(conduit_ids(d), ["conduit-a", "conduit-b"])
        self.assertEqual(sorted(d.workers()), ["api", "db"])
        # First-fit in list order, as NSP's first list would place them.
        self.assertEqual(d.client.allocate("conduit-b", "worker-1", "p"),
                         ("169.255.0.1", 24))
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "p"),
                         ("169.255.16.1", 24))
        static = [r for r in d.log_records() if r["message"] == "static conduits"]
        self.assertEqual([(r["extra_data"]["process"], r["extra_data"]["count"])
                          for r in static], [("db", 2)])

    def test_restart_with_another_list_adds_and_keeps(self):
        """A changed IPAM_CONDUITS applies as the first list of a run
        always did: listed conduits are added, none is removed (a first
        list deletes nothing), and what was allocated stays."""
        d = self.daemon(conduits="conduit-a,conduit-b")
        self.assertEqual(d.client.allocate("conduit-b", "worker-1", "p"),
                         ("169.255.16.1", 24))
        self.assertEqual(d.stop()[0], 0)
        d.env["IPAM_CONDUITS"] = "conduit-c"
        d.start(wait=False)
        d.wait_serving()
        self.assertEqual(conduit_ids(d), ["conduit-a", "conduit-b", "conduit-c"])
        self.assertEqual(d.client.allocate("conduit-b", "worker-1", "p"),
                         ("169.255.16.1", 24))
        self.assertEqual(d.client.allocate("conduit-c", "worker-1", "p"),
                         ("169.255.32.1", 24))

    def test_db_restart_keeps_static_conduits(self):
        d = self.daemon(conduits="conduit-a")
        old = d.kill_worker("db")
        d.wait_worker("db", not_pid=old)
        d.wait_serving()
        self.assertEqual(conduit_ids(d), ["conduit-a"])
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "p"),
                         ("169.255.0.1", 24))
        self.assertNotIn("nsp", d.workers())


if __name__ == "__main__":
    unittest.main()
