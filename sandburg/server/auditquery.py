"""Reading the audit log: one organization's records by sandbox, type and time, page by page (the cursor is the
last `seq` seen), and the check of its chain against the HMAC anchor (auditchain.verify)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from .auditchain import Anchor, Record, Verification, iso, verify
from .db import AuditHead, AuditRecord

TYPES = ("api", "process", "file", "secret", "network", "audit")


@dataclass(frozen=True)
class Filters:
    sandbox: str | None = None
    types: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None


def record_json(r: AuditRecord) -> dict[str, Any]:
    return {
        "seq": r.seq, "time": iso(r.ts) + "Z", "tenant": r.organization_id, "actor": r.actor, "type": r.type,
        "sandboxId": r.sandbox_id, "payload": r.payload, "prevHash": r.prev_hash, "hash": r.hash,
    }  # fmt: skip


def page(
    sessions: sessionmaker[Session], tenant: str, f: Filters, limit: int, cursor: int = 0
) -> list[dict[str, Any]]:
    """Up to `limit` records after `cursor`, oldest first."""
    q = select(AuditRecord).where(AuditRecord.organization_id == tenant, AuditRecord.seq > cursor)
    if f.sandbox:
        q = q.where(AuditRecord.sandbox_id == f.sandbox)
    if f.types:
        q = q.where(AuditRecord.type.in_(list(f.types)))
    if f.since is not None:
        q = q.where(AuditRecord.ts >= f.since)
    if f.until is not None:
        q = q.where(AuditRecord.ts < f.until)
    with sessions() as s:
        return [record_json(r) for r in s.scalars(q.order_by(AuditRecord.seq).limit(limit))]


def every(
    sessions: sessionmaker[Session], tenant: str, f: Filters, batch: int = 1000
) -> Iterator[dict[str, Any]]:
    cursor = 0
    while True:
        items = page(sessions, tenant, f, batch, cursor)
        yield from items
        if len(items) < batch:
            return
        cursor = int(items[-1]["seq"])


def check(sessions: sessionmaker[Session], tenant: str, key: bytes) -> Verification:
    """Verify the organization's whole chain. One read transaction: the anchor and the records are one snapshot
    (WAL), whatever the writer commits meanwhile; rows are read in batches, the log may be large."""
    with sessions() as s:
        # pysqlite opens no transaction for reads: without this BEGIN each SELECT would see a newer state
        s.connection().exec_driver_sql("BEGIN")
        head = s.get(AuditHead, tenant)
        anchor = (
            Anchor(tenant, head.head_seq, head.head_hash, head.count, head.start_prev, head.mac)
            if head is not None
            else None
        )

        def records() -> Iterator[Record]:
            cursor = 0
            while True:
                rows = list(
                    s.scalars(
                        select(AuditRecord)
                        .where(AuditRecord.organization_id == tenant, AuditRecord.seq > cursor)
                        .order_by(AuditRecord.seq)
                        .limit(5000)
                    )
                )
                for r in rows:
                    yield Record(
                        r.seq, r.ts, r.organization_id, r.actor, r.type, r.sandbox_id, r.payload, r.prev_hash,
                        r.hash,
                    )  # fmt: skip
                s.expunge_all()
                if len(rows) < 5000:
                    return
                cursor = rows[-1].seq

        return verify(records(), anchor, key)


def check_offline(db_path: str, key_path: str) -> dict[str, Verification]:
    """Verify every organization's chain in a database file with the audit key file, without a server (an
    auditor's copy, or a stopped server's data dir)."""
    from sqlalchemy import create_engine

    from .auditchain import load_or_create_key

    if not os.path.exists(key_path):
        raise FileNotFoundError(f"{key_path}: no audit key there")
    key = load_or_create_key(key_path)
    engine = create_engine(f"sqlite:///file:{db_path}?mode=ro&uri=true")
    try:
        sessions = sessionmaker(engine)
        with sessions() as s:
            tenants = set(s.scalars(select(AuditHead.organization_id))) | set(
                s.scalars(select(AuditRecord.organization_id).distinct())
            )
        return {t: check(sessions, t, key) for t in sorted(tenants)}
    finally:
        engine.dispose()


def verification_json(v: Verification) -> dict[str, Any]:
    return {
        "ok": v.ok, "records": v.records, "headSeq": v.head_seq,
        "problems": [{"seq": p.seq, "problem": p.problem} for p in v.problems],
    }  # fmt: skip
