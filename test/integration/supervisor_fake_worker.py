#!/usr/bin/python3
"""A stand-in for meridio-ipam-db/api/nsp used by test_supervisor.py.

Installed under the three worker names next to a copy of the supervisor.
It speaks the worker side of the contract in ipcmsg.h (WorkerStatus frames
on fd 3) and records what it sees and does in $FAKE_DIR/events, one line
per event: "<monotonic seconds> <name> <pid> <event> <details>".

Behaviour is steered by files in $FAKE_DIR named "<name>.<what>":
  exit       contains an exit code: exit with it right after starting
  noready    heartbeat with ready = false
  mute       send nothing while the file exists
  garbage    send one frame that is not a WorkerStatus (file is removed)
  ignoreterm ignore SIGTERM
and by $FAKE_IGNORE_EOF=1: keep running when fd 3 reaches EOF.
"""
import ctypes
import os
import select
import signal
import socket
import struct
import sys
import time

NAME = os.path.basename(sys.argv[0]).rsplit("-", 1)[-1]
CTL = os.environ["FAKE_DIR"]
STATUS_FD = 3
LISTEN_FD = 4
PR_GET_PDEATHSIG = 2
PR_GET_NO_NEW_PRIVS = 39


def flag(what):
    """Path of the control file <name>.<what> if it exists, else None."""
    path = os.path.join(CTL, "%s.%s" % (NAME, what))
    return path if os.path.exists(path) else None


def event(what, details=""):
    line = "%.3f %s %d %s %s\n" % (time.monotonic(), NAME, os.getpid(), what, details)
    fd = os.open(os.path.join(CTL, "events"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, line.encode())
    os.close(fd)


def open_fds():
    """Open descriptors, probed with fstat so that probing opens none."""
    fds = []
    for fd in range(256):
        try:
            os.fstat(fd)
            fds.append(str(fd))
        except OSError:
            pass
    return ",".join(fds)


def process_facts():
    libc = ctypes.CDLL(None, use_errno=True)
    sig = ctypes.c_int(0)
    libc.prctl(PR_GET_PDEATHSIG, ctypes.byref(sig), 0, 0, 0)
    nnp = libc.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
    blocked = ignored = "?"
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("SigBlk:"):
                blocked = line.split()[1]
            elif line.startswith("SigIgn:"):
                ignored = line.split()[1]
    listening = "-"
    if NAME == "db":
        try:
            s = socket.socket(fileno=os.dup(LISTEN_FD))
            listening = str(s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
            s.close()
        except OSError:
            listening = "0"
    return "pdeathsig=%d nnp=%d sigblk=%s sigign=%s listen=%s" % (
        sig.value, nnp, blocked, ignored, listening)


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def status_frame(ready, text):
    body = b"\x08\x01" if ready else b""
    raw = text.encode()
    if raw:
        body += b"\x12" + bytes([len(raw)]) + raw
    return frame(body)


def on_term(signum, stack):
    event("term")
    os._exit(0)


def main():
    fds = open_fds()
    event("start", "fds=%s rundir=%s notify=%s watchdog=%s %s" % (
        fds, os.environ.get("IPAMD_RUNDIR", "-"), os.environ.get("NOTIFY_SOCKET", "-"),
        os.environ.get("WATCHDOG_USEC", "-"), process_facts()))
    code = flag("exit")
    if code:
        with open(code) as f:
            os._exit(int(f.read().strip()))
    signal.signal(signal.SIGTERM, signal.SIG_IGN if flag("ignoreterm") else on_term)
    ignore_eof = os.environ.get("FAKE_IGNORE_EOF") == "1"
    eof = False
    while True:
        out = b""
        garbage = flag("garbage")
        if garbage:
            os.unlink(garbage)
            out = frame(b"\xff\xff\xff\xff")
            event("garbage")
        elif not flag("mute"):
            out = status_frame(not flag("noready"), "fake %s" % NAME)
        if out and not eof:
            try:
                os.write(STATUS_FD, out)
            except OSError:
                eof = True
        if not eof:
            r, _, _ = select.select([STATUS_FD], [], [], 0.1)
            if r and os.read(STATUS_FD, 4096) == b"":
                eof = True
        else:
            time.sleep(0.1)
        if eof and not ignore_eof:
            event("eof")
            os._exit(0)


if __name__ == "__main__":
    main()
