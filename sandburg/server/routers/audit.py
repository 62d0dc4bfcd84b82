"""/api/audit...: the caller's organization's audit log (docs/audit.md): query, export as JSON lines, verify."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from ..auditquery import TYPES, Filters, check, every, page, verification_json
from .toolbox import Auth

router = APIRouter(prefix="/audit", tags=["audit"])


# the models live here, not in schemas.py: nothing else uses them
class AuditRecordOut(BaseModel):
    """One record: `hash` = SHA-256 over the canonical encoding of the others (docs/audit.md)."""

    seq: int
    time: str
    tenant: str
    actor: str | None
    type: str
    sandboxId: str | None
    payload: dict[str, Any]
    prevHash: str
    hash: str


class AuditPage(BaseModel):
    items: list[AuditRecordOut]
    nextCursor: int | None


class AuditProblem(BaseModel):
    seq: int | None
    problem: str


class AuditVerification(BaseModel):
    """`ok` when the chain is intact and matches its HMAC anchor; else each break, by seq (at most 100)."""

    ok: bool
    enabled: bool
    records: int
    headSeq: int | None
    problems: list[AuditProblem]


def _naive(ts: datetime | None) -> datetime | None:
    """The store keeps UTC without a zone; a time given with one is converted."""
    if ts is None or ts.tzinfo is None:
        return ts
    return ts.astimezone(UTC).replace(tzinfo=None)


def filters(
    sandbox: Annotated[str | None, Query(max_length=64, description="a sandbox id")] = None,
    type: Annotated[
        list[str] | None, Query(description=f"record types, repeatable: {', '.join(TYPES)}")
    ] = None,
    since: Annotated[datetime | None, Query(description="records at or after this time (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="records before this time (ISO 8601)")] = None,
) -> Filters:
    types = [t for item in type or [] for t in item.split(",") if t]
    return Filters(sandbox=sandbox, types=types, since=_naive(since), until=_naive(until))


Filter = Annotated[Filters, Depends(filters)]


async def _flushed(request: Request) -> Any:
    """The audit log with what was recorded before this call committed (a query reads its own writes)."""
    log = request.app.state.audit
    await asyncio.to_thread(log.flush)
    return log


@router.get("", response_model=AuditPage)
async def list_records(
    request: Request,
    who: Auth,
    f: Filter,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[int, Query(ge=0, description="the nextCursor of the previous page")] = 0,
) -> AuditPage:
    """The organization's records, oldest first; `nextCursor` continues (null once there are no more)."""
    await _flushed(request)
    sessions = request.app.state.sandboxes.sessions
    items = await asyncio.to_thread(page, sessions, who.organization_id, f, limit, cursor)
    return AuditPage(
        items=[AuditRecordOut(**i) for i in items],
        nextCursor=items[-1]["seq"] if len(items) == limit else None,
    )


@router.get("/export", response_class=StreamingResponse)
async def export(request: Request, who: Auth, f: Filter) -> StreamingResponse:
    """Every matching record as JSON lines (`application/x-ndjson`), oldest first."""
    await _flushed(request)
    sessions = request.app.state.sandboxes.sessions
    it = every(sessions, who.organization_id, f)

    async def lines() -> AsyncIterator[bytes]:
        while True:
            batch = await asyncio.to_thread(lambda: [r for _, r in zip(range(500), it, strict=False)])
            if not batch:
                return
            yield b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in batch)

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get("/verify", response_model=AuditVerification)
async def verify(request: Request, who: Auth) -> AuditVerification:
    """Check the organization's hash chain and its HMAC anchor: `ok`, or each place the log was edited, had
    records removed or reordered, or was cut off, by seq."""
    log = await _flushed(request)
    if not log.enabled:
        return AuditVerification(ok=True, records=0, headSeq=None, problems=[], enabled=False)
    sessions = request.app.state.sandboxes.sessions
    key: bytes = request.app.state.audit_key
    v = await asyncio.to_thread(check, sessions, who.organization_id, key)
    return AuditVerification.model_validate({**verification_json(v), "enabled": True})
