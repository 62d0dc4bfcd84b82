"""Activity recorded from the host: what a sandbox's processes exec and which files they write (docs/audit.md).

Two mechanisms feed one `Recorder`, each a single thread for all the sandboxes of its tier:
- `container` (procevents.py): the kernel's process events (netlink proc connector) for execs, mapped to a
  sandbox through its cgroup, and a fanotify mount mark on the sandbox's root for files closed after a write;
- `gvisor` (gvisortrace.py): runsc's runtime monitoring, a trace session whose remote sink connects to a socket
  the host serves per sandbox.
Everything is observed from outside the sandbox; nothing inside it can write a record, only cause one.

The recorder bounds what a sandbox can make the host record: a token bucket per sandbox (`rate` events/s, `burst`),
and what is over it is counted, then reported as one `activity.dropped` record per `interval`, so a gap is never
silent. Records go to `emit(sandbox_id, type, payload)`, which must not block (the server's audit log queues).
"""

from __future__ import annotations

import logging
import os
import selectors
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import RuntimeError_

if TYPE_CHECKING:
    from .oci import OciRuntime

log = logging.getLogger("sandburg.node.activity")

Emit = Callable[[str, str, dict[str, Any]], None]
ARGV_LIMIT = 4096  # bytes of argv kept per exec record
PATH_LIMIT = 1024


@dataclass
class _Bucket:
    tokens: float
    last: float
    dropped: int = 0
    reported: float = 0.0  # when the last activity.dropped went out
    sources: set[str] = field(default_factory=set)


def clip_argv(argv: list[str], limit: int = ARGV_LIMIT) -> tuple[list[str], bool]:
    """argv cut to `limit` bytes in all (UTF-8), and whether anything was cut."""
    out: list[str] = []
    total = 0
    for arg in argv:
        size = len(arg.encode(errors="replace"))
        if total + size > limit:
            room = max(0, limit - total)
            out.append(arg.encode(errors="replace")[:room].decode(errors="ignore"))
            return out, True
        out.append(arg)
        total += size
    return out, False


class Recorder:
    """Rate limiting per sandbox in front of `emit`. Thread-safe; `tick()` reports drops of quiet sandboxes."""

    def __init__(
        self, emit: Emit, rate: float = 200.0, burst: int = 1000, interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self._emit = emit
        self.rate, self.burst, self.interval = rate, burst, interval
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self.emitted = 0

    # -- events ----------------------------------------------------------------------------------------------
    def exec(
        self, sid: str, pid: int, argv: list[str] | None, cwd: str | None, uid: int | None, comm: str | None,
        source: str = "host",
    ) -> None:  # fmt: skip
        """`argv` None: the process was gone before its command line could be read (only pid is known)."""
        payload: dict[str, Any] = {"pid": pid, "source": source}
        if argv is None:
            payload.update(argv=None, exited=True)
        else:
            payload["argv"], cut = clip_argv(argv)
            if cut:
                payload["argvTruncated"] = True
        payload.update(cwd=cwd[:PATH_LIMIT] if cwd else cwd, uid=uid, comm=comm)
        self._offer(sid, "activity.exec", payload)

    def write(self, sid: str, path: str, pid: int, source: str = "host", deleted: bool = False) -> None:
        payload: dict[str, Any] = {"path": path[:PATH_LIMIT], "pid": pid, "source": source}
        if deleted:
            payload["deleted"] = True
        self._offer(sid, "activity.write", payload)

    def lost(self, sid: str, count: int, source: str = "host") -> None:
        """Events a mechanism lost before they reached us (a full kernel or Sentry queue): reported as drops."""
        if count <= 0:
            return
        with self._lock:
            b = self._bucket(sid)
            b.dropped += count
            b.sources.add(source)
        self.tick()

    def _bucket(self, sid: str) -> _Bucket:
        b = self._buckets.get(sid)
        if b is None:
            now = self._clock()
            b = self._buckets[sid] = _Bucket(tokens=float(self.burst), last=now, reported=now)
        return b

    def _offer(self, sid: str, type_: str, payload: dict[str, Any]) -> None:
        now = self._clock()
        with self._lock:
            b = self._bucket(sid)
            b.tokens = min(float(self.burst), b.tokens + (now - b.last) * self.rate)
            b.last = now
            allowed = b.tokens >= 1.0
            if allowed:
                b.tokens -= 1.0
            else:
                b.dropped += 1
                b.sources.add("rate-limit")
            report = self._due(b, now)
        if report is not None:
            self._send(sid, "activity.dropped", report)
        if allowed:
            self._send(sid, type_, payload)

    def _due(self, b: _Bucket, now: float) -> dict[str, Any] | None:
        """The drop report for `b` if one is due (caller holds the lock); resets its count."""
        if b.dropped == 0 or now - b.reported < self.interval:
            return None
        report = {"count": b.dropped, "reasons": sorted(b.sources), "intervalS": round(now - b.reported, 3)}
        b.dropped, b.reported, b.sources = 0, now, set()
        return report

    def _send(self, sid: str, type_: str, payload: dict[str, Any]) -> None:
        try:
            self._emit(sid, type_, payload)
            self.emitted += 1
        except Exception:  # a recorder must never take a mechanism's thread down
            log.exception("activity: emitting a record failed")

    def tick(self) -> None:
        """Report drops whose interval has passed (called by the mechanisms' threads about twice a second)."""
        now = self._clock()
        with self._lock:
            due = [(sid, r) for sid, b in self._buckets.items() if (r := self._due(b, now)) is not None]
        for sid, report in due:
            self._send(sid, "activity.dropped", report)

    def forget(self, sid: str) -> None:
        """The sandbox stopped: report what it still had dropped, and free its bucket."""
        with self._lock:
            b = self._buckets.pop(sid, None)
            if b is None or b.dropped == 0:
                return
            since = round(self._clock() - b.reported, 3)
            report = {"count": b.dropped, "reasons": sorted(b.sources), "intervalS": since}
        self._send(sid, "activity.dropped", report)


class SelectorLoop:
    """One thread serving a selector for all sandboxes of a mechanism (procevents.py, gvisortrace.py).

    Other threads never touch the selector: they append an operation to `_pending` (under `_lock`) and `_wake()`
    the loop, whose thread applies it (`_apply`) before its next wait. `_ready(key)` handles a ready file
    object; after each wait the recorder reports the drops of quiet sandboxes."""

    def __init__(self, recorder: Recorder, name: str) -> None:
        self.recorder = recorder
        self._lock = threading.Lock()
        self._pending: list[Any] = []
        self._closing = False
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass

    def _end_thread(self) -> list[Any]:
        """Stop the loop; the operations it had no turn for."""
        with self._lock:
            self._closing = True
        self._wake()
        self._thread.join(5)
        pending, self._pending = self._pending, []
        return pending

    def _close_selector(self) -> None:
        self._sel.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closing:
                    return
                pending, self._pending = self._pending, []
            for op in pending:
                self._apply(op)
            for key, _ in self._sel.select(0.5):
                if key.data is None:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                else:
                    self._ready(key)
            self.recorder.tick()

    def _apply(self, op: Any) -> None:
        raise NotImplementedError

    def _ready(self, key: selectors.SelectorKey) -> None:
        raise NotImplementedError


class ActivityMonitor:
    """The node's entry point: one recorder, the container tier's watcher and the gVisor tier's tracer.

    A mechanism the host cannot provide (no proc connector, no fanotify) is logged once and left out; the
    sandboxes keep working without it."""

    def __init__(self, emit: Emit, cgroup_path: Callable[[str], str], **limits: Any) -> None:
        from .gvisortrace import GvisorTracer
        from .procevents import ProcWatcher, ProcWatcherError

        self.recorder = Recorder(emit, **limits)
        self.procs: ProcWatcher | None = None
        try:
            self.procs = ProcWatcher(self.recorder, cgroup_path)
        except ProcWatcherError as exc:
            log.warning("activity: container tier not recorded: %s", exc)
        self.gvisor = GvisorTracer(self.recorder)
        self._isolation: dict[str, str] = {}
        self._lock = threading.Lock()

    def runsc_flags(self, sid: str, bundle: str) -> list[str]:
        """Before runsc run/restore of `sid`: listen for its Sentry, and the flags that make it connect."""
        with self._lock:
            self._isolation[sid] = "gvisor"
        return self.gvisor.prepare(sid, bundle)

    def watching(self, sid: str) -> bool:
        with self._lock:
            return sid in self._isolation

    def attach_gvisor(self, sid: str, bundle: str, runtime: OciRuntime) -> None:
        """A gVisor sandbox that is already running (a server restart): attach a trace session through runsc's
        control server. Failing that, it stays unrecorded (logged) and keeps running."""
        if not self.runsc_flags(sid, bundle):
            return
        try:
            runtime.trace_create(sid, self.gvisor.write_session_file(sid, bundle))
        except (OSError, RuntimeError_) as exc:
            log.warning("activity: cannot attach to gVisor sandbox %s: %s", sid, exc)
            self.unwatch(sid)

    def watch_container(self, sid: str, pid: int) -> None:
        """After runc started `sid` with init `pid`."""
        with self._lock:
            self._isolation[sid] = "container"
        if self.procs is not None:
            self.procs.watch(sid, pid)

    def unwatch(self, sid: str) -> None:
        """The sandbox stops (or is deleted): release what watched it. Idempotent."""
        with self._lock:
            self._isolation.pop(sid, None)
        if self.procs is not None:
            self.procs.unwatch(sid)
        self.gvisor.unwatch(sid)
        self.recorder.forget(sid)

    def close(self) -> None:
        if self.procs is not None:
            self.procs.close()
        self.gvisor.close()
