"""``sb.volumes``: the organization's persistent volumes (docs/volumes.md).

A volume is an encrypted filesystem of a fixed size that outlives sandboxes: mount it into one or more sandboxes at
create (``sb.create(volumes=[{"name": "data", "mount": "/workspace/data"}])``); sandboxes that share it see each
other's writes; it is never part of a snapshot. A volume is deleted only when no sandbox mounts it.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import _core as core
from ._sizes import parse_size_mib

if TYPE_CHECKING:
    from ._async_client import AsyncSandburg
    from ._client import Sandburg

__all__ = ["AsyncVolumes", "VolumeInfo", "Volumes"]


@dataclass(frozen=True)
class VolumeInfo:
    """A volume as the server describes it."""

    id: str
    name: str
    state: str
    """``ready`` (usable), ``creating``, or ``error`` (``error_reason`` says why)."""
    size_mib: int
    """The volume's size limit: writing past it fails with ENOSPC inside the sandbox."""
    used_bytes: int = 0
    """What the volume takes on the host's disk (its file is sparse)."""
    sandboxes: tuple[str, ...] = field(default_factory=tuple)
    """Ids of the sandboxes (started or stopped) that mount it."""
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    error_reason: str | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> VolumeInfo:
        return cls(
            id=str(d["id"]), name=str(d["name"]), state=str(d["state"]), size_mib=int(d.get("sizeMiB") or 0),
            used_bytes=int(d.get("usedBytes") or 0), sandboxes=tuple(d.get("sandboxes") or ()),
            created_at=_time(d.get("createdAt")), last_used_at=_time(d.get("lastUsedAt")),
            error_reason=d.get("errorReason"),
        )  # fmt: skip


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _path(id_or_name: str) -> str:
    return f"/volumes/{core.path_segment(id_or_name, 'a volume id or name')}"


def create_request(name: str, size: int | float | str | None) -> core.Request:
    body: dict[str, Any] = {"name": name}
    if size is not None:
        body["sizeMiB"] = parse_size_mib(size)
    return core.Request("POST", "/volumes", json=body)


class Volumes:
    """The organization's volumes (``sb.volumes``)."""

    def __init__(self, client: Sandburg) -> None:
        self._client = client

    def create(self, name: str, size: int | float | str | None = None) -> VolumeInfo:
        """Create an encrypted volume of ``size`` (GiB as a number, or ``"512MiB"``, ``"5GiB"``; default: the
        server's, 10 GiB). Raises :class:`VolumeNameConflictError` if the name is taken,
        :class:`InvalidVolumeError` for a bad name or size."""
        return VolumeInfo.from_json(self._client._send(create_request(name, size)))

    def list(self) -> builtins.list[VolumeInfo]:
        """Every volume of the organization, oldest first."""
        return [VolumeInfo.from_json(d) for d in self._client._send(core.Request("GET", "/volumes"))]

    def get(self, id_or_name: str) -> VolumeInfo:
        """The volume; raises :class:`VolumeNotFoundError` if there is none."""
        return VolumeInfo.from_json(self._client._send(core.Request("GET", _path(id_or_name))))

    def delete(self, id_or_name: str) -> VolumeInfo:
        """Delete the volume and its data; raises :class:`VolumeInUseError` while a sandbox mounts it."""
        return VolumeInfo.from_json(self._client._send(core.Request("DELETE", _path(id_or_name))))


class AsyncVolumes:
    """The organization's volumes (``sb.volumes``)."""

    def __init__(self, client: AsyncSandburg) -> None:
        self._client = client

    async def create(self, name: str, size: int | float | str | None = None) -> VolumeInfo:
        """Create an encrypted volume of ``size`` (GiB as a number, or ``"512MiB"``, ``"5GiB"``; default: the
        server's, 10 GiB). Raises :class:`VolumeNameConflictError` if the name is taken,
        :class:`InvalidVolumeError` for a bad name or size."""
        return VolumeInfo.from_json(await self._client._send(create_request(name, size)))

    async def list(self) -> builtins.list[VolumeInfo]:
        """Every volume of the organization, oldest first."""
        return [VolumeInfo.from_json(d) for d in await self._client._send(core.Request("GET", "/volumes"))]

    async def get(self, id_or_name: str) -> VolumeInfo:
        """The volume; raises :class:`VolumeNotFoundError` if there is none."""
        return VolumeInfo.from_json(await self._client._send(core.Request("GET", _path(id_or_name))))

    async def delete(self, id_or_name: str) -> VolumeInfo:
        """Delete the volume and its data; raises :class:`VolumeInUseError` while a sandbox mounts it."""
        return VolumeInfo.from_json(await self._client._send(core.Request("DELETE", _path(id_or_name))))
