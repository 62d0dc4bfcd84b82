"""State snapshots in the SDK: ``box.snapshot(name)``, ``box.restore(name)``, ``sb.snapshots``, ``sb.fork``.

A snapshot holds every file of the sandbox (not only ``/workspace``: installed packages, uncommitted git changes),
its env and settings, labels, and its parent snapshot (lineage). Restore rolls a sandbox back in place (same id
and name); :meth:`Snapshots.fork` makes new, independent sandboxes from one; ``create(snapshot=...)`` uses one as a
template. docs/snapshots.md.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import _core as core

if TYPE_CHECKING:
    from ._async_client import AsyncSandbox, AsyncSandburg
    from ._client import Sandbox, Sandburg

__all__ = ["AsyncSnapshot", "AsyncSnapshots", "Snapshot", "SnapshotDiff", "Snapshots"]


@dataclass(frozen=True)
class SnapshotDiff:
    """What changed between two snapshots (or a snapshot and a sandbox now): sorted absolute paths."""

    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


@dataclass
class _SnapshotFields:
    id: str
    name: str
    sandbox_id: str | None = None
    sandbox_name: str | None = None
    parent: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    capture_ms: float | None = None
    created_at: datetime | None = None
    memory: bool = False  # gvisor: running processes and memory were captured too

    @staticmethod
    def fields_from_json(d: dict[str, Any]) -> dict[str, Any]:
        created = d.get("createdAt")
        return {
            "id": str(d["id"]), "name": str(d["name"]), "sandbox_id": d.get("sandboxId"),
            "sandbox_name": d.get("sandboxName"), "parent": d.get("parent"), "env": dict(d.get("env") or {}),
            "settings": dict(d.get("settings") or {}), "capture_ms": d.get("captureMs"),
            "memory": bool(d.get("memory")), "created_at": datetime.fromisoformat(created) if isinstance(created, str) else None,
        }  # fmt: skip


def snapshot_request(sandbox: str, name: str, memory: bool) -> core.Request:
    return core.Request(
        "POST",
        f"/sandbox/{core.path_segment(sandbox, 'sandbox')}/snapshots",
        json={"name": name, "memory": memory},
    )


def restore_request(sandbox: str, name: str) -> core.Request:
    return core.Request(
        "POST", f"/sandbox/{core.path_segment(sandbox, 'sandbox')}/restore", json={"snapshot": name}
    )


def _snap(name: str) -> str:
    return "/".join(core.path_segment(p, "snapshot name") for p in name.split("/"))


def list_request(sandbox: str | None) -> core.Request:
    return core.Request("GET", "/state-snapshots", params=(("sandbox", sandbox),) if sandbox else ())


def fork_request(name: str, count: int, names: Iterable[str] | None, isolation: str | None) -> core.Request:
    body: dict[str, Any] = {"count": count}
    if names is not None:
        body["names"] = list(names)
    if isolation is not None:
        body["isolation"] = isolation
    return core.Request("POST", f"/state-snapshots/{_snap(name)}/fork", json=body, timeout=None)


def diff_request(name: str, other: str | None, sandbox: str | None) -> core.Request:
    if (other is None) == (sandbox is None):
        raise ValueError("diff against another snapshot or a sandbox (one of them)")
    params = (("against", other),) if other is not None else (("sandbox", str(sandbox)),)
    return core.Request("GET", f"/state-snapshots/{_snap(name)}/diff", params=params)


def diff_from_json(d: dict[str, Any]) -> SnapshotDiff:
    return SnapshotDiff(list(d["added"]), list(d["modified"]), list(d["deleted"]))


class Snapshot(_SnapshotFields):
    """A state snapshot (``box.snapshot(name)``)."""

    def __init__(self, client: Sandburg, data: dict[str, Any]) -> None:
        super().__init__(**self.fields_from_json(data))
        self._client = client

    def diff(self, other: str | None = None, *, sandbox: str | None = None) -> SnapshotDiff:
        """Paths added, modified and deleted from this snapshot to ``other`` (a snapshot name) or to the files
        of ``sandbox`` now."""
        return diff_from_json(self._client._send(diff_request(self.name, other, sandbox)))

    def fork(self, count: int = 1, *, names: Iterable[str] | None = None) -> builtins.list[Sandbox]:
        """``count`` new sandboxes starting from this snapshot."""
        return self._client.snapshots.fork(self.name, count, names=names)

    def delete(self) -> None:
        """Delete this snapshot (sandboxes made from it keep their files)."""
        self._client.snapshots.delete(self.name)


class Snapshots:
    """The organization's state snapshots (``sb.snapshots``)."""

    def __init__(self, client: Sandburg) -> None:
        self._client = client

    def list(self, *, sandbox: str | None = None) -> builtins.list[Snapshot]:
        """All snapshots, or those of ``sandbox`` (id or name), oldest first; ``parent`` gives the lineage."""
        return [Snapshot(self._client, d) for d in self._client._send(list_request(sandbox))["items"]]

    def get(self, name: str) -> Snapshot:
        """The snapshot ``name`` (or id)."""
        return Snapshot(
            self._client, self._client._send(core.Request("GET", f"/state-snapshots/{_snap(name)}"))
        )

    def delete(self, name: str) -> None:
        """Delete a snapshot; sandboxes restored or forked from it keep their files."""
        self._client._send(core.Request("DELETE", f"/state-snapshots/{_snap(name)}"))

    def fork(
        self, name: str, count: int = 1, *, names: Iterable[str] | None = None, isolation: str | None = None
    ) -> builtins.list[Sandbox]:
        """``count`` new sandboxes from snapshot ``name``, each with its own files, name and address."""
        data = self._client._send(fork_request(name, count, names, isolation))
        return [self._client._sandbox(d) for d in data["items"]]


class AsyncSnapshot(_SnapshotFields):
    """A state snapshot (``box.snapshot(name)``)."""

    def __init__(self, client: AsyncSandburg, data: dict[str, Any]) -> None:
        super().__init__(**self.fields_from_json(data))
        self._client = client

    async def diff(self, other: str | None = None, *, sandbox: str | None = None) -> SnapshotDiff:
        """Paths added, modified and deleted from this snapshot to ``other`` (a snapshot name) or to the files
        of ``sandbox`` now."""
        return diff_from_json(await self._client._send(diff_request(self.name, other, sandbox)))

    async def fork(
        self, count: int = 1, *, names: Iterable[str] | None = None
    ) -> builtins.list[AsyncSandbox]:
        """``count`` new sandboxes starting from this snapshot."""
        return await self._client.snapshots.fork(self.name, count, names=names)

    async def delete(self) -> None:
        """Delete this snapshot (sandboxes made from it keep their files)."""
        await self._client.snapshots.delete(self.name)


class AsyncSnapshots:
    """The organization's state snapshots (``sb.snapshots``)."""

    def __init__(self, client: AsyncSandburg) -> None:
        self._client = client

    async def list(self, *, sandbox: str | None = None) -> builtins.list[AsyncSnapshot]:
        """All snapshots, or those of ``sandbox`` (id or name), oldest first; ``parent`` gives the lineage."""
        return [
            AsyncSnapshot(self._client, d) for d in (await self._client._send(list_request(sandbox)))["items"]
        ]

    async def get(self, name: str) -> AsyncSnapshot:
        """The snapshot ``name`` (or id)."""
        data = await self._client._send(core.Request("GET", f"/state-snapshots/{_snap(name)}"))
        return AsyncSnapshot(self._client, data)

    async def delete(self, name: str) -> None:
        """Delete a snapshot; sandboxes restored or forked from it keep their files."""
        await self._client._send(core.Request("DELETE", f"/state-snapshots/{_snap(name)}"))

    async def fork(
        self, name: str, count: int = 1, *, names: Iterable[str] | None = None, isolation: str | None = None
    ) -> builtins.list[AsyncSandbox]:
        """``count`` new sandboxes from snapshot ``name``, each with its own files, name and address."""
        data = await self._client._send(fork_request(name, count, names, isolation))
        return [self._client._sandbox(d) for d in data["items"]]
