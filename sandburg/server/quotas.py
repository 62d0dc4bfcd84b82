"""Per-organization quotas (docs/tenants.md): sandboxes, vCPU, memory, disk and snapshots.

What counts:
- `sandboxes`: every sandbox of the organization, whatever its state (a stopped one still holds its disk).
- `cpu`, `memory_mib`: the sandboxes that hold them: every state but stopped, archived and error (a paused one
  is counted: a frozen container keeps its memory, and resuming must not fail on quota).
- `disk_mib`: the disk size of every sandbox.
- `snapshots`: the organization's named images: built images, templates and state snapshots (Daytona calls all of
  them snapshots), building ones included.

A request that would go past a limit is refused before anything is made: 403 QUOTA_EXCEEDED, naming the limit,
what is in use and what was asked. The check and the insert it guards run under one lock per server, so two
concurrent creates cannot both take the last slot. None means no limit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .._codes import ErrorCode
from .db import Image, Organization, Sandbox
from .errors import ApiError

NOT_HOLDING = ("stopped", "archived", "error")
FIELDS = ("sandboxes", "cpu", "memory_mib", "disk_mib", "snapshots")
_UNITS = {"sandboxes": "sandboxes", "cpu": "vCPU", "memory_mib": "MiB of memory", "disk_mib": "MiB of disk",
          "snapshots": "snapshots"}  # fmt: skip
_lock = threading.RLock()


@dataclass(frozen=True)
class Amounts:
    sandboxes: int | None = None
    cpu: int | None = None
    memory_mib: int | None = None
    disk_mib: int | None = None
    snapshots: int | None = None

    def to_json(self) -> dict[str, int | None]:
        return asdict(self)


def limits(s: Session, org_id: str) -> Amounts:
    org = s.get(Organization, org_id)
    if org is None:
        return Amounts()
    return Amounts(org.max_sandboxes, org.max_cpu, org.max_memory_mib, org.max_disk_mib, org.max_snapshots)


def usage(s: Session, org_id: str, exclude: str | None = None) -> Amounts:
    """What the organization uses now (`exclude`: a sandbox id left out, the one being started)."""
    boxes = select(Sandbox).where(Sandbox.organization_id == org_id)
    if exclude is not None:
        boxes = boxes.where(Sandbox.id != exclude)
    sub = boxes.subquery()
    count, disk = s.execute(select(func.count(), func.coalesce(func.sum(sub.c.disk_mib), 0))).one()
    cpu, mem = s.execute(
        select(func.coalesce(func.sum(sub.c.cpu), 0), func.coalesce(func.sum(sub.c.memory_mib), 0)).where(
            sub.c.state.not_in(NOT_HOLDING)
        )
    ).one()
    snaps = s.scalar(select(func.count()).select_from(Image).where(Image.organization_id == org_id)) or 0
    return Amounts(int(count), int(cpu), int(mem), int(disk), int(snaps))


def require(s: Session, org_id: str, want: Amounts, exclude: str | None = None) -> None:
    """Raise QUOTA_EXCEEDED if adding `want` (None fields: nothing) would pass one of the organization's limits."""
    cap = limits(s, org_id)
    if all(getattr(cap, f) is None for f in FIELDS):
        return
    used = usage(s, org_id, exclude)
    for f in FIELDS:
        limit, more = getattr(cap, f), getattr(want, f)
        if limit is None or not more:
            continue
        have = getattr(used, f)
        if have + more > limit:
            raise ApiError(
                ErrorCode.QUOTA_EXCEEDED,
                f"quota exceeded: {f} — this organization may use {limit} {_UNITS[f]}, {have} are in use and "
                f"this needs {more} more; stop or delete something, or ask the operator for a higher quota",
            )


@contextmanager
def guard() -> Iterator[None]:
    """Hold while checking a quota and committing what it guards (one server process: a lock is enough)."""
    with _lock:
        yield


def parse(data: dict[str, object] | None) -> Amounts:
    """Quotas from an API body: the five fields, each a non-negative int or null (no limit)."""
    data = data or {}
    unknown = set(data) - set(FIELDS)
    if unknown:
        raise ApiError(
            ErrorCode.VALIDATION_ERROR,
            f"quota: unknown field(s) {sorted(unknown)}; known: {', '.join(FIELDS)}",
        )
    out: dict[str, int | None] = {}
    for f in FIELDS:
        v = data.get(f)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise ApiError(
                ErrorCode.VALIDATION_ERROR, f"quota.{f}: a non-negative integer or null, not {v!r}"
            )
        out[f] = v
    return Amounts(**out)


def store(org: Organization, q: Amounts) -> None:
    org.max_sandboxes, org.max_cpu, org.max_memory_mib = q.sandboxes, q.cpu, q.memory_mib
    org.max_disk_mib, org.max_snapshots = q.disk_mib, q.snapshots
