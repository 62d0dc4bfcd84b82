"""Lifecycle automation (docs/lifecycle.md): auto-stop, auto-pause, auto-archive, auto-delete and ttl.

- `Clock`: the time the reaper reads; in test mode (SANDBURG_TEST_CLOCK=1) an offset to the wall clock, kept in
  `<data_dir>/test-clock` and advanced by `POST /api/_test/clock`.
- `Activity`: per sandbox key (the id or name in a request path) the requests in flight and the last one's end,
  fed by `ActivityMiddleware`. A streamed response, an exec, an attached PTY or WebSocket is in flight as long as
  it lasts.
- `decide`: what to do with one sandbox, a pure function of its row, the time and whether it is busy.
- `Reaper`: a thread that stores the activity in the rows (deadlines survive restarts), then applies `decide`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from anyio import to_thread
from sqlalchemy import select
from starlette.types import ASGIApp, Receive, Scope, Send

from ..node import sessions as node_sessions
from . import access, archive, pause
from .builder import BUILD_LABEL
from .db import Sandbox
from .errors import ApiError

if TYPE_CHECKING:
    from .config import Settings
    from .sandboxes import SandboxService

log = logging.getLogger("sandburg.server")

LAST_ACTIVITY = "lastActivityAt"  # ISO 8601, Daytona's DTO field (echoed)
STOPPED_AT = "stoppedAt"  # ISO 8601: when the reaper first saw the sandbox stopped
AUTO_PAUSED = "autoPaused"  # paused by the reaper: the next toolbox call wakes it
WAKE_ON_USE = "wakeOnUse"
# test clock only: the creation time on the test clock (the row's created_at is wall time), stamped at first sight
CLOCK_CREATED = "clockCreatedAt"
KEYS = ("autoStopInterval", "autoPauseInterval", "autoArchiveInterval", "autoDeleteInterval", "ttlMinutes")
PATH = re.compile(r"^/(?:api/(?:sandbox|toolbox)|preview)/([^/]+)")
TOOLBOX_PATH = re.compile(r"^/api/toolbox/([^/]+)/")
RESERVED = frozenset({"paginated", "for-runner", "ssh-access"})  # literal words after /api/sandbox/


# -- time --------------------------------------------------------------------------------------------------------
class Clock:
    """Epoch seconds. With `path` (the test clock) an offset kept in that file is added to the wall clock."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.offset = 0.0
        if path is not None:
            try:
                with open(path) as fh:
                    self.offset = float(fh.read().strip() or 0)
            except (OSError, ValueError):
                self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> float:
        if self.path is None:
            raise RuntimeError("only the test clock can be advanced")
        self.offset += seconds
        tmp = self.path + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(repr(self.offset))
        os.replace(tmp, self.path)  # a restart keeps it
        return self.now()


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def naive_epoch(dt: datetime) -> float:
    """A row's naive UTC datetime as epoch seconds."""
    return dt.replace(tzinfo=UTC).timestamp()


# -- activity ----------------------------------------------------------------------------------------------------
class Activity:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._inflight: dict[str, int] = {}
        self._last: dict[str, float] = {}

    def begin(self, key: str) -> None:
        with self._lock:
            self._inflight[key] = self._inflight.get(key, 0) + 1

    def end(self, key: str) -> None:
        with self._lock:
            n = self._inflight.get(key, 0) - 1
            if n > 0:
                self._inflight[key] = n
            else:
                self._inflight.pop(key, None)
            self._last[key] = self.clock.now()

    def busy(self, keys: Iterable[str]) -> bool:
        with self._lock:
            return any(self._inflight.get(k) for k in keys)

    def drain(self) -> dict[str, float]:
        """The activity since the last call: each key's last time (now for a request still in flight)."""
        now = self.clock.now()
        with self._lock:
            out, self._last = self._last, {}
            for k in self._inflight:
                out[k] = now
        return out


class ActivityMiddleware:
    """Counts every HTTP request and WebSocket naming a sandbox as activity for it, for as long as it lasts; a
    toolbox request to a sandbox asleep with wake-on-use starts it first (off the event loop, after the same
    API key check the route makes)."""

    def __init__(self, app: ASGIApp, activity: Activity) -> None:
        self.app, self.activity = app, activity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        m = PATH.match(scope["path"]) if scope["type"] in ("http", "websocket") else None
        if m is None or m.group(1) in RESERVED or _reads_metadata(scope):
            await self.app(scope, receive, send)
            return
        key = m.group(1)
        self.activity.begin(key)
        try:
            if TOOLBOX_PATH.match(scope["path"]):
                await _wake(scope, key)
            await self.app(scope, receive, send)
        finally:
            self.activity.end(key)


def _reads_metadata(scope: Scope) -> bool:
    """A GET of /api/sandbox/{id}...: reading a sandbox's state (a dashboard, a client polling) is not using it."""
    return (
        scope["type"] == "http" and scope.get("method") == "GET" and scope["path"].startswith("/api/sandbox/")
    )


async def _wake(scope: Scope, key: str) -> None:
    state: Any = getattr(scope.get("app"), "state", None)
    svc: SandboxService | None = getattr(state, "sandboxes", None)
    if svc is None or key in svc.live:
        return
    headers = dict(scope.get("headers") or [])
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    principal = state.keys.lookup(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    if principal is not None and access.allows(  # else the route answers 401 or 403
        principal.role, principal.scopes, access.area_of(scope["path"]) or "toolbox",
        access.is_write(scope.get("method", "POST"), scope["path"]),
    ):  # fmt: skip
        try:
            await to_thread.run_sync(svc.wake, principal.organization_id, key)
        except Exception:  # the route answers SANDBOX_NOT_RUNNING
            log.exception("wake on use of %s failed", key)


# -- the decision ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Defaults:
    auto_stop: int = 15
    auto_archive: int = 7 * 24 * 60
    auto_delete: int = -1

    @classmethod
    def of(cls, settings: Settings) -> Defaults:
        return cls(settings.auto_stop_minutes, settings.auto_archive_minutes, settings.auto_delete_minutes)


def effective(extra: dict[str, Any] | None, defaults: Defaults) -> dict[str, int]:
    """The sandbox's intervals (minutes): its own where set, else the server's defaults."""
    base = {
        "autoStopInterval": defaults.auto_stop, "autoPauseInterval": 0,
        "autoArchiveInterval": defaults.auto_archive, "autoDeleteInterval": defaults.auto_delete, "ttlMinutes": 0,
    }  # fmt: skip
    for k in KEYS:
        v = (extra or {}).get(k)
        if isinstance(v, int) and not isinstance(v, bool):
            base[k] = v
    return base


@dataclass(frozen=True)
class RowView:
    state: str
    created: float  # epoch seconds
    last_activity: float | None
    stopped_at: float | None
    intervals: dict[str, int]


def decide(row: RowView, now: float, busy: bool) -> str | None:
    """`delete`, `pause`, `stop`, `archive` or None (nothing to do)."""
    iv = row.intervals
    ttl = iv["ttlMinutes"]
    if ttl > 0 and now - row.created >= ttl * 60:
        return "delete"
    if row.state == "started" and not busy and row.last_activity is not None:
        idle = now - row.last_activity
        if iv["autoPauseInterval"] > 0 and idle >= iv["autoPauseInterval"] * 60:
            return "pause"
        if iv["autoStopInterval"] > 0 and idle >= iv["autoStopInterval"] * 60:
            return "stop"
    if row.state == "stopped" and row.stopped_at is not None:
        stopped = now - row.stopped_at
        if iv["autoDeleteInterval"] >= 0 and stopped >= iv["autoDeleteInterval"] * 60:
            return "delete"
        if iv["autoArchiveInterval"] > 0 and stopped >= iv["autoArchiveInterval"] * 60:
            return "archive"
    return None


# -- the reaper --------------------------------------------------------------------------------------------------
class Reaper:
    def __init__(self, svc: SandboxService, activity: Activity, interval: float) -> None:
        self.svc, self.activity, self.interval = svc, activity, interval
        self.defaults = Defaults.of(svc.settings)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandburg-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # the thread must outlive any one pass
                log.exception("lifecycle reaper pass failed")

    def tick(self) -> None:
        now = self.activity.clock.now()
        for row in self._flush(now):
            if BUILD_LABEL in (row.labels or {}) or row.state not in ("started", "stopped"):
                continue
            extra = row.extra or {}
            view = RowView(
                state=row.state, created=parse(extra.get(CLOCK_CREATED)) or naive_epoch(row.created_at), last_activity=parse(extra.get(LAST_ACTIVITY)),
                stopped_at=parse(extra.get(STOPPED_AT)), intervals=effective(extra, self.defaults),
            )  # fmt: skip
            busy = row.state == "started" and (
                self.activity.busy((row.id, row.name)) or self._running(row.id)
            )
            action = decide(view, self.activity.clock.now(), busy)
            if action is not None:
                self._act(row, action, view)

    def _flush(self, now: float) -> list[Sandbox]:
        """Store what the activity and the states say; return the rows as stored. Each row's changes are merged
        in a short transaction of their own (SandboxService.update_extra): a setting changed meanwhile is kept."""
        seen = self.activity.drain()
        with self.svc.sessions() as s:
            rows = list(s.scalars(select(Sandbox)))
        offset = self.activity.clock.offset
        for row in rows:
            extra = row.extra or {}
            delta: dict[str, Any] = {}
            t = max((seen[k] for k in (row.id, row.name) if k in seen), default=None)
            last = parse(extra.get(LAST_ACTIVITY))
            if t is not None and (last is None or t > last):
                delta[LAST_ACTIVITY] = iso(t)
            elif row.state == "started" and last is None:
                delta[LAST_ACTIVITY] = iso(now)  # first sight
            if offset and CLOCK_CREATED not in extra:
                delta[CLOCK_CREATED] = iso(naive_epoch(row.created_at) + offset)
            if row.state == "stopped" and STOPPED_AT not in extra:
                delta[STOPPED_AT] = iso(now)
            elif row.state != "stopped" and STOPPED_AT in extra:
                delta[STOPPED_AT] = None
            if row.state != "paused" and AUTO_PAUSED in extra:
                delta[AUTO_PAUSED] = None
            if delta:
                self.svc.update_extra(row.id, delta)
                row.extra = {k: v for k, v in {**extra, **delta}.items() if v is not None}
        return rows

    def _running(self, sid: str) -> bool:
        """A session command of the sandbox still runs (as the run dir records it)."""
        run = self.svc.node.run_path(sid)
        try:
            for session_id in node_sessions.session_ids(run):
                info = node_sessions.session(run, session_id)
                if info is not None and any(c.exit_code is None for c in info.commands):
                    return True
        except OSError:
            return False
        return False

    def _act(self, row: Sandbox, action: str, view: RowView) -> None:
        svc, org = self.svc, row.organization_id
        try:
            if svc.get(org, row.id).state != view.state:
                return  # changed since it was read (a start, a stop): the next pass decides again
            log.info("lifecycle: %s sandbox %s (%s)", action, row.id, row.name)
            if action == "delete":
                svc.delete(org, row.id)
            elif action == "stop":
                svc.stop(org, row.id)
            elif action == "archive":
                archive.archive(svc, org, row.id)
            elif action == "pause":
                svc.update_extra(row.id, {AUTO_PAUSED: True})
                try:
                    pause.pause(svc, org, row.id)
                except ApiError as exc:  # e.g. open deleted files gVisor cannot checkpoint: stop instead
                    svc.update_extra(row.id, {AUTO_PAUSED: None})
                    stop_after = view.intervals["autoStopInterval"]
                    idle = self.activity.clock.now() - (view.last_activity or 0)
                    log.warning("lifecycle: auto-pause of %s failed: %s", row.id, exc.message)
                    if stop_after > 0 and idle >= stop_after * 60:
                        svc.stop(org, row.id)
        except ApiError as exc:
            log.warning("lifecycle: %s of %s failed: %s", action, row.id, exc.message)
