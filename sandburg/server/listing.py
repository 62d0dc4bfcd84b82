"""`GET /api/sandbox`: Daytona's list filters, sort fields and opaque cursors, as plain functions over rows.

Filters compare with the values the Sandbox DTO reports (memory and disk in whole GiB, `gpu` 0, class
`container`, `target` from the row, `autoDestroyAt` never set), so a filter never disagrees with what a
listing shows.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .._codes import ErrorCode
from .db import Sandbox
from .errors import ApiError

SANDBOX_CLASS = "container"
SORT_FIELDS = ("name", "cpu", "memoryGib", "diskGib", "lastActivityAt", "createdAt")


def memory_gib(row: Sandbox) -> int:
    return math.ceil(row.memory_mib / 1024)


def disk_gib(row: Sandbox) -> int:
    return math.ceil(row.disk_mib / 1024)


def target(row: Sandbox) -> str:
    return str((row.extra or {}).get("target") or "local")


def last_activity(row: Sandbox) -> datetime:
    """The later of the last change and the last `POST /sandbox/{id}/last-activity` (naive UTC)."""
    seen = (row.extra or {}).get("lastActivityAt")
    if isinstance(seen, str):
        try:
            return max(row.updated_at, naive_utc(datetime.fromisoformat(seen.replace("Z", "+00:00"))))
        except ValueError:
            pass
    return row.updated_at


def naive_utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(tzinfo=None) if dt.tzinfo is not None else dt


def iso(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds") + "Z"


@dataclass(frozen=True)
class Filters:
    """Daytona's list filters beyond labels, states and name (which the service applies itself)."""

    id: str | None = None
    snapshots: tuple[str, ...] = ()
    region_ids: tuple[str, ...] = ()
    sandbox_classes: tuple[str, ...] = ()
    min_cpu: int | None = None
    max_cpu: int | None = None
    min_memory_gib: int | None = None
    max_memory_gib: int | None = None
    min_disk_gib: int | None = None
    max_disk_gib: int | None = None
    min_gpu: int | None = None
    max_gpu: int | None = None
    is_public: bool | None = None
    is_recoverable: bool | None = None
    created_at_after: datetime | None = None
    created_at_before: datetime | None = None
    last_event_after: datetime | None = None
    last_event_before: datetime | None = None
    auto_destroy_at_after: datetime | None = None
    auto_destroy_at_before: datetime | None = None

    def predicate(self) -> Callable[[Sandbox], bool]:
        def within(value: Any, low: Any, high: Any) -> bool:
            return (low is None or value >= low) and (high is None or value <= high)

        def after_before(value: datetime, low: datetime | None, high: datetime | None) -> bool:
            return within(value, low and naive_utc(low), high and naive_utc(high))

        def match(r: Sandbox) -> bool:
            return (
                (self.id is None or r.id.lower().startswith(self.id.lower()))
                and (not self.snapshots or r.image in self.snapshots)
                and (not self.region_ids or target(r) in self.region_ids)
                and (not self.sandbox_classes or SANDBOX_CLASS in self.sandbox_classes)
                and within(r.cpu, self.min_cpu, self.max_cpu)
                and within(memory_gib(r), self.min_memory_gib, self.max_memory_gib)
                and within(disk_gib(r), self.min_disk_gib, self.max_disk_gib)
                and within(0, self.min_gpu, self.max_gpu)
                and (self.is_public is None or r.public == self.is_public)
                and (self.is_recoverable is None or (r.state == "error") == self.is_recoverable)
                and after_before(r.created_at, self.created_at_after, self.created_at_before)
                and after_before(last_activity(r), self.last_event_after, self.last_event_before)
                # no sandbox has an autoDestroyAt yet: a filter on it matches none
                and self.auto_destroy_at_after is None
                and self.auto_destroy_at_before is None
            )

        return match


def sort_key(field: str | None) -> Callable[[Sandbox], Any] | None:
    keys: dict[str, Callable[[Sandbox], Any]] = {
        "name": lambda r: r.name,
        "cpu": lambda r: r.cpu,
        "memoryGib": memory_gib,
        "diskGib": disk_gib,
        "lastActivityAt": last_activity,
        "createdAt": lambda r: (r.created_at, r.id),
    }
    if field is None:
        return None
    if field not in keys:
        raise ApiError(ErrorCode.VALIDATION_ERROR, f"sort: one of {', '.join(SORT_FIELDS)}, got {field!r}")
    return keys[field]


def parse_labels(labels: str | None) -> dict[str, str]:
    if not labels:
        return {}
    try:
        parsed = json.loads(labels)
    except ValueError as exc:
        raise ApiError(ErrorCode.VALIDATION_ERROR, "labels: must be a JSON object") from exc
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise ApiError(ErrorCode.VALIDATION_ERROR, "labels: must be a JSON object of strings")
    return parsed


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        offset = int(json.loads(raw)["o"])
        if offset < 0:
            raise ValueError
        return offset
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(ErrorCode.VALIDATION_ERROR, "cursor: invalid") from exc
