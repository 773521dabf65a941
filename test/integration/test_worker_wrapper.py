"""IPAMD_WORKER_WRAPPER: the supervisor runs each worker under a command
(valgrind in scripts/valgrind-run.sh). Here the command is env(1), which
marks the worker's environment and then execs it."""

import unittest

from harness import DaemonTest


def environ_of(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        return [kv.decode(errors="replace") for kv in f.read().split(b"\0") if kv]


class WorkerWrapper(DaemonTest):

    def test_workers_run_under_the_wrapper(self):
        d = self.daemon(env={"IPAMD_WORKER_WRAPPER": "env IPAMD_WRAPPED=yes"})
        self.assertEqual(d.client.allocate("conduit-a", "worker-1", "c1"), ("169.255.0.1", 24))
        workers = d.workers()
        self.assertEqual(sorted(workers), ["api", "db"])
        for role, pid in workers.items():
            self.assertIn("IPAMD_WRAPPED=yes", environ_of(pid), role)
        self.assertNotIn("IPAMD_WRAPPED=yes", environ_of(d.proc.pid))


if __name__ == "__main__":
    unittest.main()
