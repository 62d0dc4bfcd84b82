"""State snapshots: `POST|GET /sandbox/{id}/snapshots`, `POST /sandbox/{id}/restore`, and `/state-snapshots`
(list, get, delete, fork, diff). docs/snapshots.md.

(`/snapshots` is Daytona's path for templates, routers/snapshots.py; all live in one namespace per organization.)
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from ..._codes import ErrorCode
from ..db import Image
from ..errors import ApiError
from ..schemas import SandboxOut, Strict
from ..state_snapshots import StateSnapshots
from .images import IMAGE_NAME
from .sandbox import Auth
from .sandbox import to_out as sandbox_out

router = APIRouter(tags=["state snapshots"])


def service(request: Request) -> StateSnapshots:
    svc: StateSnapshots | None = getattr(request.app.state, "states", None)
    if svc is None:
        raise ApiError(ErrorCode.NOT_IMPLEMENTED, "snapshots are not available on this server")
    return svc


States = Annotated[StateSnapshots, Depends(service)]


class SnapshotIn(Strict):
    name: str = Field(pattern=IMAGE_NAME)
    memory: bool = Field(default=False, description="gvisor: running processes and their memory too")


class RestoreIn(Strict):
    snapshot: str = Field(min_length=1, max_length=200)


class ForkIn(Strict):
    count: int = Field(default=1, ge=1, le=50)
    names: list[str] | None = Field(default=None, max_length=50)
    isolation: Literal["container", "gvisor"] | None = None


class StateSnapshotOut(BaseModel):
    id: str
    name: str
    kind: str = "state"
    sandboxId: str | None = None
    sandboxName: str | None = None
    parent: str | None = None  # the parent snapshot's name; None for a first one or a deleted parent
    parentId: str | None = None
    memory: bool = False
    env: dict[str, str] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    captureMs: float | None = None
    createdAt: datetime


class StateSnapshotList(BaseModel):
    items: list[StateSnapshotOut]


class ForkOut(BaseModel):
    items: list[SandboxOut]


class DiffOut(BaseModel):
    added: list[str]
    modified: list[str]
    deleted: list[str]


def to_out(row: Image, names: dict[str, str] | None = None) -> StateSnapshotOut:
    src = row.source or {}
    box = src.get("sandbox") or {}
    parent_id = src.get("parent")
    settings = {
        k: src.get(k) for k in ("isolation", "cpu", "memoryMiB", "diskMiB", "network", "labels", "image")
    }
    return StateSnapshotOut(
        id=row.id, name=row.name, sandboxId=box.get("id"), sandboxName=box.get("name"),
        parent=(names or {}).get(parent_id or ""), parentId=parent_id,
        env=dict((row.config or {}).get("env") or {}), settings=settings, captureMs=src.get("captureMs"),
        memory=bool(src.get("memory")),
        createdAt=row.created_at,
    )  # fmt: skip


def _names(svc: StateSnapshots, org: str) -> dict[str, str]:
    return {r.id: r.name for r in svc.list_states(org)}


@router.post("/sandbox/{sandbox_id_or_name}/snapshots", response_model=StateSnapshotOut, status_code=201)
async def create_snapshot(
    sandbox_id_or_name: str, body: SnapshotIn, who: Auth, svc: States
) -> StateSnapshotOut:
    """Snapshot every file of the sandbox (frozen for the capture, then running on), its env and settings."""
    row = await asyncio.to_thread(
        svc.create, who.organization_id, sandbox_id_or_name, body.name, memory=body.memory
    )
    return to_out(row, _names(svc, who.organization_id))


@router.get("/sandbox/{sandbox_id_or_name}/snapshots", response_model=StateSnapshotList)
def sandbox_snapshots(sandbox_id_or_name: str, who: Auth, svc: States) -> StateSnapshotList:
    names = _names(svc, who.organization_id)
    return StateSnapshotList(
        items=[to_out(r, names) for r in svc.list_states(who.organization_id, sandbox_id_or_name)]
    )


@router.post("/sandbox/{sandbox_id_or_name}/restore", response_model=SandboxOut)
async def restore(
    sandbox_id_or_name: str, body: RestoreIn, request: Request, who: Auth, svc: States
) -> SandboxOut:
    """Roll the sandbox back to the snapshot, in place: same id, name, network policy."""
    row = await asyncio.to_thread(svc.restore, who.organization_id, sandbox_id_or_name, body.snapshot)
    return sandbox_out(row, request)


@router.get("/state-snapshots", response_model=StateSnapshotList)
def list_snapshots(
    who: Auth, svc: States, sandbox: Annotated[str | None, Query(description="only this sandbox's")] = None
) -> StateSnapshotList:
    names = _names(svc, who.organization_id)
    return StateSnapshotList(items=[to_out(r, names) for r in svc.list_states(who.organization_id, sandbox)])


@router.post("/state-snapshots/{name:path}/fork", response_model=ForkOut, status_code=201)
async def fork(name: str, body: ForkIn, request: Request, who: Auth, svc: States) -> ForkOut:
    """`count` new sandboxes from the snapshot, each independent of the others and of the original."""
    rows = await asyncio.to_thread(
        svc.fork, who.organization_id, name, body.count, body.names, body.isolation
    )
    return ForkOut(items=[sandbox_out(r, request) for r in rows])


@router.get("/state-snapshots/{name:path}/diff", response_model=DiffOut)
async def diff(
    name: str, who: Auth, svc: States,
    against: Annotated[str | None, Query(description="a later snapshot")] = None,
    sandbox: Annotated[str | None, Query(description="or a sandbox's current files")] = None,
) -> DiffOut:  # fmt: skip
    """What changed from snapshot `name` to `against` (or to the sandbox's files now)."""
    d = await asyncio.to_thread(svc.diff, who.organization_id, name, against, sandbox)
    return DiffOut(added=d.added, modified=d.modified, deleted=d.deleted)


@router.get("/state-snapshots/{name:path}", response_model=StateSnapshotOut)
def get_snapshot(name: str, who: Auth, svc: States) -> StateSnapshotOut:
    return to_out(svc.get(who.organization_id, name), _names(svc, who.organization_id))


@router.delete("/state-snapshots/{name:path}", response_model=StateSnapshotOut)
def delete_snapshot(name: str, who: Auth, svc: States) -> StateSnapshotOut:
    """Delete the snapshot; sandboxes restored or forked from it keep their files."""
    return to_out(svc.delete(who.organization_id, name))
