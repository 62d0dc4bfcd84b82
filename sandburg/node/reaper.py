"""Reaping the runtime processes that outlive their launcher.

`runc run -d` and `runsc run --detach` exit and leave the container init / the gVisor sandbox and gofer as
orphans. On this host PID 1 reaps orphans only every second or two, and `runsc delete` polls `kill(pid, 0)` until
the sandbox pid is gone, so every gVisor stop took 1.5–2 s. The server therefore makes itself a child subreaper:
orphans of the runtimes it starts become its children and are reaped at once by this thread.

The thread only reaps zombies whose command name is one of the runtimes' orphans; the server's own short-lived
children (runc, runsc, btrfs, tar, ...) are left for subprocess, which waits for them itself.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time

log = logging.getLogger("sandburg.node")

_PR_SET_CHILD_SUBREAPER = 36
ORPHAN_NAMES = (
    "runsc-sandbox",
    "runsc-gofer",
    "exe",
    "tini",
    "runc:[2:INIT]",
    "runc:[1:CHILD]",
    "runc:[0:PARENT]",
)
_started = False
_lock = threading.Lock()


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _loop() -> None:
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            time.sleep(0.05)  # no children at all right now
            continue
        if info is None:
            continue
        name = _comm(info.si_pid)
        if name in ORPHAN_NAMES:
            try:
                os.waitpid(info.si_pid, 0)
            except ChildProcessError:
                pass
        else:
            time.sleep(0.002)  # a child of subprocess: its owner reaps it in a moment


def enable() -> None:
    """Become a subreaper for the runtimes' orphans (once per process)."""
    global _started
    with _lock:
        if _started:
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            log.warning("could not become a child subreaper: %s", os.strerror(ctypes.get_errno()))
            return
        threading.Thread(target=_loop, name="sandburg-reaper", daemon=True).start()
        _started = True
