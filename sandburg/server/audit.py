"""The audit log's writer (docs/audit.md): every record goes through `AuditLog.record`, which never blocks and never
raises; one daemon thread owns the chain.

Producers (the API middleware, the toolbox routers, the secret service) run on the request path, so `record`
stamps the time, takes the tenant and actor from the request's context (auditmw.py) and appends to a bounded queue
(a deque under a lock: no thread is woken per record). The writer thread wakes every `flush_interval` (50 ms; at
once for `flush`), takes what is queued, gives each record the next `seq`, links it to its organization's previous
record, hashes it, and inserts the batch together with the re-signed HMAC anchors in one SQLite transaction: a
record is durable once that transaction commits (WAL, synchronous NORMAL: it survives a crash of the server
process; a power loss may lose the last commits before a checkpoint). Hashing off the request path and one commit
per batch keep the exec round trip within the 10 % budget (`make bench`). A full queue drops the record and counts
it; the next batch carries an `audit` record saying how many were lost, so a gap is never silent.

The same thread copies the network records of the event pipeline (events.py) into the chain as type `network`
within about a second (the `events` cursor moves in the same transaction, so each is copied exactly once; the
record's time is the copy's, the event's own is `eventTime`), and applies retention: records older than
`retention_days` are deleted and the anchor's `start_prev` becomes the hash of the last one deleted, so what
remains still verifies; an `audit` record names the boundary.
"""

from __future__ import annotations

import contextvars
import logging
import re
import threading
import time
from collections import deque
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from .auditchain import GENESIS, Anchor, Record, iso
from .db import AuditCursor, AuditHead, AuditRecord, Event, Sandbox, utcnow

log = logging.getLogger("sandburg.server")

_BATCH = 1000
_EVENTS_EVERY = 1.0  # seconds between copies of the network records
_PRUNE_EVERY = 3600.0
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# (tenant, actor) of the request being served: set by the middleware, read by `record`
principal: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "audit_principal", default=None
)


class AuditLog:
    enabled = True

    def __init__(
        self, sessions: sessionmaker[Session], key: bytes, retention_days: int = 90,
        flush_interval: float = 0.05, max_queue: int = 100_000,
    ) -> None:  # fmt: skip
        self._sessions = sessions
        self._key = key
        self.retention_days = retention_days
        self._interval = flush_interval
        self._max_queue = max_queue
        self._pending: deque[dict[str, Any]] = deque()
        self._wakeup = threading.Event()  # set by flush and close; the writer otherwise wakes every interval
        self._lock = threading.Lock()
        self._queued = 0  # records handed to the queue
        self._done = 0  # records committed (or given up on)
        self._cond = threading.Condition()
        self._closing = False
        self.dropped = 0
        self._reported_drops = 0
        self._users: dict[str, str | None] = {}  # sandbox id -> its default user
        self._ids: dict[tuple[str, str], str | None] = {}  # (tenant, sandbox name) -> id
        self._heads: dict[str, Anchor] = {}
        self._seq = 0
        self._load()
        self._thread = threading.Thread(target=self._run, name="sandburg-audit", daemon=True)
        self._thread.start()

    # -- producers -------------------------------------------------------------------------------------------
    def record(
        self, type: str, sandbox_id: str | None, payload: dict[str, Any], *, tenant: str | None = None,
        actor: str | None = None,
    ) -> None:  # fmt: skip
        """Queue one record; tenant and actor default to the current request's API key."""
        try:
            who = principal.get()
            tenant = tenant or (who[0] if who else None)
            actor = actor or (who[1] if who else None)
            if not tenant:
                return  # nothing to chain it to: unauthenticated calls are in the server log only
            row = dict(
                ts=utcnow(), tenant=tenant, actor=actor, type=type, sandbox_id=sandbox_id, payload=payload
            )
            with self._lock:  # no wake-up of the writer per record: it polls, so a request never waits on it
                if self._closing or len(self._pending) >= self._max_queue:
                    self.dropped += 1
                    return
                self._pending.append(row)
                self._queued += 1
        except Exception:  # a request must never fail because of its audit record
            log.exception("audit record dropped")

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything recorded before this call is committed; False if `timeout` ran out first."""
        with self._lock:
            target = self._queued
        self._wakeup.set()
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._done < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        with self._lock:
            self._closing = True
        self._wakeup.set()
        self._thread.join(timeout=10)

    # -- the writer ------------------------------------------------------------------------------------------
    def _load(self) -> None:
        with self._sessions() as s:
            self._seq = s.scalar(select(func.max(AuditRecord.seq))) or 0
            self._heads = {
                h.organization_id: Anchor(
                    h.organization_id, h.head_seq, h.head_hash, h.count, h.start_prev, h.mac
                )
                for h in s.scalars(select(AuditHead))
            }

    def _run(self) -> None:
        next_events = next_prune = 0.0
        while True:
            self._wakeup.wait(self._interval)
            self._wakeup.clear()
            with self._lock:
                rows = [self._pending.popleft() for _ in range(min(_BATCH, len(self._pending)))]
                closing = self._closing and not self._pending
            now = time.monotonic()
            try:
                if rows or self.dropped != self._reported_drops:
                    self._write(rows)
                if now >= next_events or closing:
                    next_events = now + _EVENTS_EVERY
                    while self._copy_events() == _BATCH:
                        pass
                if now >= next_prune and self.retention_days > 0:
                    next_prune = now + _PRUNE_EVERY
                    self.prune(utcnow() - timedelta(days=self.retention_days))
            except Exception:
                log.exception("audit write failed; %d record(s) lost", len(rows))
                self._load()  # the in-memory heads may be ahead of what was committed
            with self._cond:
                self._done += len(rows)
                self._cond.notify_all()
            if self._pending:
                self._wakeup.set()  # more than a batch was waiting
            if closing:
                return

    def _chain(self, s: Session, rows: list[dict[str, Any]]) -> None:
        """Hash `rows` onto their organizations' chains, insert them and re-sign the anchors they moved."""
        moved: dict[str, Anchor] = {}
        values: list[dict[str, Any]] = []
        for row in rows:
            tenant = row["tenant"]
            head = moved.get(tenant) or self._heads.get(tenant) or Anchor(tenant, 0, GENESIS, 0)
            self._seq += 1
            rec = Record(
                self._seq, row["ts"], tenant, row["actor"], row["type"], row["sandbox_id"], row["payload"],
                head.head_hash,
            )  # fmt: skip
            digest = rec.computed_hash()
            values.append(
                dict(
                    seq=rec.seq, ts=rec.ts, organization_id=tenant, actor=rec.actor, type=rec.type,
                    sandbox_id=rec.sandbox_id, payload=dict(rec.payload), prev_hash=rec.prev_hash, hash=digest,
                )
            )  # fmt: skip
            moved[tenant] = Anchor(tenant, rec.seq, digest, head.count + 1, head.start_prev)
        if values:
            s.execute(insert(AuditRecord), values)  # one executemany: no ORM objects
        for tenant, head in moved.items():
            self._heads[tenant] = signed = head.signed(self._key)
            s.merge(
                AuditHead(
                    organization_id=tenant, head_seq=signed.head_seq, head_hash=signed.head_hash,
                    count=signed.count, start_prev=signed.start_prev, mac=signed.mac,
                )
            )  # fmt: skip

    def _write(self, rows: list[dict[str, Any]]) -> None:
        with self._sessions() as s:
            self._fill_in(s, rows)
            dropped = self.dropped
            if dropped != self._reported_drops:
                lost = dropped - self._reported_drops
                for tenant in {r["tenant"] for r in rows} or set(self._heads):
                    rows.append(
                        dict(ts=utcnow(), tenant=tenant, actor=None, type="audit", sandbox_id=None,
                             payload={"op": "dropped", "records": lost})
                    )  # fmt: skip
            self._chain(s, rows)
            s.commit()
            self._reported_drops = dropped

    def _fill_in(self, s: Session, rows: list[dict[str, Any]]) -> None:
        """What the request path left out, looked up here (cached per sandbox): the sandbox's id where a route was
        called with its name (the name stays in `sandboxName`), and the user a process ran as when the request
        named none (the sandbox's default user)."""
        for row in rows:
            p, sid = row["payload"], row["sandbox_id"]
            if not sid:
                continue
            if row["type"] == "api" and not _UUID.match(sid):
                key = (row["tenant"], sid)
                if key not in self._ids:
                    self._ids[key] = s.scalar(
                        select(Sandbox.id).where(
                            Sandbox.organization_id == row["tenant"], Sandbox.name == sid
                        )
                    )
                if self._ids[key]:
                    row["sandbox_id"], p["sandboxName"] = self._ids[key], sid
            if row["type"] == "process" and p.get("user") is None:
                if sid not in self._users:
                    self._users[sid] = s.scalar(select(Sandbox.user).where(Sandbox.id == sid))
                p["user"] = self._users[sid]
        if len(self._users) + len(self._ids) > 10_000:
            self._users.clear()
            self._ids.clear()

    def _copy_events(self) -> int:
        """Copy the next network records of the event pipeline into the chain; the number copied."""
        with self._sessions() as s:
            cur = s.get(AuditCursor, "events")
            since = cur.value if cur is not None else 0
            events = list(s.scalars(select(Event).where(Event.id > since).order_by(Event.id).limit(_BATCH)))
            if not events:
                return 0
            now = (
                utcnow()
            )  # the time of the copy (the chain's times stay in order); the event's in the payload
            rows = [
                dict(ts=now, tenant=e.organization_id, actor=None, type="network", sandbox_id=e.sandbox_id,
                     payload={"kind": e.kind, "eventId": e.id, "eventTime": iso(e.ts) + "Z", **(e.data or {})})
                for e in events
            ]  # fmt: skip
            self._chain(s, rows)
            s.merge(AuditCursor(name="events", value=events[-1].id))
            s.commit()
            return len(events)

    def prune(self, before: Any) -> int:
        """Delete each organization's records older than `before` (runs in the writer thread, or before it
        starts); the anchors move their start so that the rest still verifies. The number deleted."""
        total = 0
        with self._sessions() as s:
            for tenant, head in list(self._heads.items()):
                last = s.scalars(
                    select(AuditRecord)
                    .where(AuditRecord.organization_id == tenant, AuditRecord.ts < before)
                    .order_by(AuditRecord.seq.desc())
                    .limit(1)
                ).first()
                if last is None:
                    continue
                gone = s.execute(
                    delete(AuditRecord).where(
                        AuditRecord.organization_id == tenant, AuditRecord.seq <= last.seq
                    )
                ).rowcount  # type: ignore[attr-defined]
                total += gone
                self._heads[tenant] = Anchor(
                    tenant, head.head_seq, head.head_hash, head.count - gone, last.hash
                )
                self._chain(
                    s,
                    [dict(ts=utcnow(), tenant=tenant, actor=None, type="audit", sandbox_id=None,
                          payload={"op": "pruned", "throughSeq": last.seq, "records": gone, "hash": last.hash})],
                )  # fmt: skip
            s.commit()
        return total


class NoAudit:
    """SANDBURG_AUDIT=off: nothing is recorded (the benchmark's baseline)."""

    enabled = False
    dropped = 0

    def record(self, type: str, sandbox_id: str | None, payload: dict[str, Any], **_: Any) -> None:
        pass

    def flush(self, timeout: float = 5.0) -> bool:
        return True

    def close(self) -> None:
        pass
