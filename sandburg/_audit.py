"""``sb.audit``: the organization's audit log (docs/audit.md), written by the server only.

Every API call, every process started through the toolbox, file operations, secret use (names and versions, never
values) and network decisions are records in a hash chain anchored with an HMAC; :meth:`Audit.verify` asks the
server to check it. Records come oldest first; :meth:`Audit.list` pages with ``cursor`` (the last ``seq`` seen),
:meth:`Audit.export` streams every match as JSON lines.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import _core as core

if TYPE_CHECKING:
    from ._async_client import AsyncSandburg
    from ._client import Sandburg

__all__ = ["AsyncAudit", "Audit", "AuditProblem", "AuditRecord", "AuditVerification"]


@dataclass(frozen=True)
class AuditRecord:
    """One record: ``type`` is api, process, file, secret, network or audit; ``payload`` its fields."""

    seq: int
    time: datetime
    tenant: str
    actor: str | None
    """The id of the API key that made the call (None for records the server made itself, e.g. network)."""
    type: str
    sandbox_id: str | None
    payload: Mapping[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> AuditRecord:
        return cls(
            seq=int(d["seq"]), time=datetime.fromisoformat(str(d["time"]).replace("Z", "+00:00")),
            tenant=str(d["tenant"]), actor=d.get("actor"), type=str(d["type"]), sandbox_id=d.get("sandboxId"),
            payload=dict(d.get("payload") or {}), prev_hash=str(d["prevHash"]), hash=str(d["hash"]),
        )  # fmt: skip


@dataclass(frozen=True)
class AuditProblem:
    """Where the chain breaks: ``seq`` of the record (None: the anchor) and what is wrong there."""

    seq: int | None
    problem: str


@dataclass(frozen=True)
class AuditVerification:
    """The server's check of the chain: ``ok``, or each edited, removed, reordered or cut-off place."""

    ok: bool
    records: int
    head_seq: int | None
    enabled: bool = True
    problems: list[AuditProblem] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> AuditVerification:
        return cls(
            ok=bool(d["ok"]), records=int(d["records"]), head_seq=d.get("headSeq"),
            enabled=bool(d.get("enabled", True)),
            problems=[AuditProblem(p.get("seq"), str(p["problem"])) for p in d.get("problems") or []],
        )  # fmt: skip


def _params(
    sandbox: str | None, type: str | Sequence[str] | None, since: datetime | None, until: datetime | None
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if sandbox:
        out.append(("sandbox", sandbox))
    for t in [type] if isinstance(type, str) else type or []:
        out.append(("type", t))
    if since is not None:
        out.append(("since", since.isoformat()))
    if until is not None:
        out.append(("until", until.isoformat()))
    return out


def list_request(
    sandbox: str | None, type: str | Sequence[str] | None, since: datetime | None, until: datetime | None,
    limit: int, cursor: int,
) -> core.Request:  # fmt: skip
    params = [*_params(sandbox, type, since, until), ("limit", str(limit)), ("cursor", str(cursor))]
    return core.Request("GET", "/audit", params=tuple(params))


def export_request(
    sandbox: str | None, type: str | Sequence[str] | None, since: datetime | None, until: datetime | None
) -> core.Request:
    return core.Request(
        "GET", "/audit/export", params=tuple(_params(sandbox, type, since, until)), stream=True
    )


def _records(data: Any) -> builtins.list[AuditRecord]:
    return [AuditRecord.from_json(d) for d in data["items"]]


class Audit:
    """The organization's audit log (``sb.audit``)."""

    def __init__(self, client: Sandburg) -> None:
        self._client = client

    def list(
        self, *, sandbox: str | None = None, type: str | Sequence[str] | None = None,
        since: datetime | None = None, until: datetime | None = None, limit: int = 100, cursor: int = 0,
    ) -> builtins.list[AuditRecord]:  # fmt: skip
        """Up to ``limit`` (1..1000) records after ``cursor``, oldest first, filtered by sandbox id, type(s) and
        time (``since`` inclusive, ``until`` exclusive). Pass the last record's ``seq`` as ``cursor`` for more."""
        return _records(self._client._send(list_request(sandbox, type, since, until, limit, cursor)))

    def export(
        self, *, sandbox: str | None = None, type: str | Sequence[str] | None = None,
        since: datetime | None = None, until: datetime | None = None,
    ) -> Iterator[str]:  # fmt: skip
        """Every matching record as one JSON line each (without the newline), streamed."""
        with self._client._stream(export_request(sandbox, type, since, until)) as response:
            for line in response.iter_lines():
                if line:
                    yield line

    def verify(self) -> AuditVerification:
        """Ask the server to check the hash chain and its HMAC anchor."""
        return AuditVerification.from_json(self._client._send(core.Request("GET", "/audit/verify")))


class AsyncAudit:
    """The organization's audit log (``sb.audit``)."""

    def __init__(self, client: AsyncSandburg) -> None:
        self._client = client

    async def list(
        self, *, sandbox: str | None = None, type: str | Sequence[str] | None = None,
        since: datetime | None = None, until: datetime | None = None, limit: int = 100, cursor: int = 0,
    ) -> builtins.list[AuditRecord]:  # fmt: skip
        """Up to ``limit`` (1..1000) records after ``cursor``, oldest first, filtered by sandbox id, type(s) and
        time (``since`` inclusive, ``until`` exclusive). Pass the last record's ``seq`` as ``cursor`` for more."""
        return _records(await self._client._send(list_request(sandbox, type, since, until, limit, cursor)))

    async def export(
        self, *, sandbox: str | None = None, type: str | Sequence[str] | None = None,
        since: datetime | None = None, until: datetime | None = None,
    ) -> AsyncIterator[str]:  # fmt: skip
        """Every matching record as one JSON line each (without the newline), streamed."""
        async with self._client._stream(export_request(sandbox, type, since, until)) as response:
            async for line in response.aiter_lines():
                if line:
                    yield line

    async def verify(self) -> AuditVerification:
        """Ask the server to check the hash chain and its HMAC anchor."""
        return AuditVerification.from_json(await self._client._send(core.Request("GET", "/audit/verify")))
