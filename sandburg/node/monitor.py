"""Watches sandbox runtime processes and reports the ones that exit (one thread, pidfds, no polling)."""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Callable

log = logging.getLogger("sandburg.node")


class ExitMonitor:
    def __init__(self, on_exit: Callable[[str, int], None]) -> None:
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._by_fd: dict[int, tuple[str, int]] = {}
        self._by_id: dict[str, int] = {}
        self._poll = select.poll()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll.register(self._wake_r, select.POLLIN)
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="sandburg-exit-monitor", daemon=True)
        self._thread.start()

    def watch(self, sid: str, pid: int) -> None:
        """Report `sid` when `pid` exits (immediately if it already has)."""
        self.forget(sid)
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            threading.Thread(target=self._on_exit, args=(sid, pid), daemon=True).start()
            return
        with self._lock:
            self._by_fd[fd] = (sid, pid)
            self._by_id[sid] = fd
            self._poll.register(fd, select.POLLIN)
        os.write(self._wake_w, b"x")

    def forget(self, sid: str) -> None:
        with self._lock:
            fd = self._by_id.pop(sid, None)
            if fd is not None:
                self._by_fd.pop(fd, None)
                self._poll.unregister(fd)
                os.close(fd)

    def close(self) -> None:
        self._stopped = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stopped:
            for fd, _ev in self._poll.poll():
                if fd == self._wake_r:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                    continue
                with self._lock:
                    entry = self._by_fd.get(fd)
                    if entry is None:
                        continue
                    # A stale event: the fd reported readable may have been forgotten and its number reused by
                    # a newer pidfd; only a pidfd whose process really ended is readable now.
                    if not select.select([fd], [], [], 0)[0]:
                        continue
                    del self._by_fd[fd]
                    self._by_id.pop(entry[0], None)
                    self._poll.unregister(fd)
                    os.close(fd)
                try:
                    self._on_exit(*entry)
                except Exception:  # the monitor must outlive any one callback
                    log.exception("exit handler failed for %s", entry[0])
