"""Where the node's host-side activity records (node/activity.py) enter the audit log: under the sandbox's
organization, with the values of the sandbox's secrets masked in every string (an exec'd command line may hold a
value the sandbox expanded from its env: `curl -H "Authorization: $TOKEN"`)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from .audit import AuditLog, NoAudit
from .db import Sandbox
from .redact import Redactor
from .secretservice import SecretService

log = logging.getLogger("sandburg.server")
REFRESH_S = 30.0  # how long a sandbox's organization and secret values are reused before they are read again
MAX_CACHED = 10_000


class ActivitySink:
    """`emit(sandbox_id, type, payload)` for node.activity. Runs on the node's recording threads: it never
    raises, and it queues (the audit log's record() does not wait for the database)."""

    def __init__(
        self, sessions: sessionmaker[Session], audit_log: AuditLog | NoAudit, secrets: SecretService | None
    ) -> None:
        self._sessions = sessions
        self._audit = audit_log
        self._secrets = secrets
        self._lock = threading.Lock()
        # sid -> (organization, redactor, values seen, when read); values are kept across a rotation: a process
        # started before it still holds the old one
        self._cache: dict[str, tuple[str, Redactor, frozenset[bytes], float]] = {}

    def __call__(self, sid: str, type_: str, payload: dict[str, Any]) -> None:
        entry = self._entry(sid)
        if entry is None:
            return  # no such sandbox any more: nothing to chain it to
        org, redactor = entry
        if redactor:
            payload = _masked(payload, redactor)
        self._audit.record(type_, sid, payload, tenant=org)

    def _entry(self, sid: str) -> tuple[str, Redactor] | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(sid)
        if hit is not None and now - hit[3] < REFRESH_S:
            return hit[0], hit[1]
        with self._sessions() as s:
            row = s.get(Sandbox, sid)
            if row is None:
                return None
            org, refs = row.organization_id, dict(row.secrets or {})
        values = set(hit[2]) if hit else set()
        if refs and self._secrets is not None:
            try:
                values |= set(self._secrets.backend.values(org, set(refs.values())).values())
            except Exception as exc:  # a record without masking would leak: keep the old values, log
                log.error("activity: reading the secrets of %s for masking failed: %s", sid, exc)
        redactor = Redactor(values)
        with self._lock:
            if len(self._cache) > MAX_CACHED:
                self._cache.clear()
            self._cache[sid] = (org, redactor, frozenset(values), now)
        return org, redactor


def _masked(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, str):
        return redactor.text(value.encode())
    if isinstance(value, list):
        return [_masked(v, redactor) for v in value]
    if isinstance(value, dict):
        return {k: _masked(v, redactor) for k, v in value.items()}
    return value
