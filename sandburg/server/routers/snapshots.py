"""Daytona's `/snapshots` (templates) and the build logs of a sandbox created from an `Image`, on sandburg's images.

A Daytona snapshot is a sandburg image of kind `template`: `imageName` names an image sandburg has (built-in,
built, pulled) or a registry reference, pulled into the layer store; `buildInfo` is a Dockerfile built on the
cached builder (dockerplan.py). They share the organization's image namespace (docs/images.md), so
`create(snapshot="name")` finds them. The wire shapes are docs/daytona-images-wire.md's.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from ..._codes import ErrorCode
from ..db import Image
from ..dockerplan import plan_from_dockerfile
from ..errors import ApiError
from ..imageservice import ImageService
from ..schemas import BuildInfoIn, SandboxOut
from .images import Images, stream_log
from .sandbox import Auth, Svc, api_base
from .sandbox import to_out as sandbox_out
from .state_snapshots import States

router = APIRouter(tags=["snapshots"])
STATES = {"building": "building", "active": "active", "error": "build_failed"}


class CreateSnapshotIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")
    imageName: str | None = Field(default=None, max_length=500)
    entrypoint: list[str] | None = None
    cpu: int | None = None
    gpu: int | None = None
    memory: int | None = None
    disk: int | None = None
    gpuType: list[str] | None = None
    buildInfo: BuildInfoIn | None = None
    regionId: str | None = None
    sandboxClass: str | None = None


class SnapshotOut(BaseModel):
    id: str
    organizationId: str | None = None
    general: bool
    name: str
    imageName: str | None = None
    state: str
    size: float | None = None
    entrypoint: list[str] | None = None
    cpu: float
    gpu: float
    mem: float
    disk: float
    errorReason: str | None = None
    createdAt: datetime
    updatedAt: datetime
    lastUsedAt: datetime | None = None
    buildInfo: dict[str, Any] | None = None
    sourceSandboxId: str | None = None


class SnapshotPage(BaseModel):
    items: list[SnapshotOut]
    total: int
    page: int
    totalPages: int


class UrlOut(BaseModel):
    url: str


def to_out(row: Image) -> SnapshotOut:
    src = row.source or {}
    res = src.get("resources") or {}
    build = None
    if src.get("dockerfile"):
        build = {
            "dockerfileContent": src["dockerfile"], "contextHashes": [], "createdAt": row.created_at,
            "updatedAt": row.updated_at, "snapshotRef": row.layer or "",
        }  # fmt: skip
    state = STATES.get(row.state, row.state)
    if row.state == "error" and src.get("pull"):
        state = "error"
    if row.kind == "state":
        res = {"cpu": src.get("cpu"), "memory": (src.get("memoryMiB") or 1024) // 1024,
               "disk": (src.get("diskMiB") or 3072) // 1024}  # fmt: skip
    return SnapshotOut(
        id=row.id, organizationId=row.organization_id, general=False, name=row.name,
        imageName=src.get("pull") or src.get("imageName") or src.get("image"), state=state,
        sourceSandboxId=(src.get("sandbox") or {}).get("id"),
        size=round(row.size_bytes / 2**30, 3) if row.size_bytes else None,
        entrypoint=list((row.config or {}).get("entrypoint") or []) or None,
        cpu=res.get("cpu") or 1, gpu=0, mem=res.get("memory") or 1, disk=res.get("disk") or 3,
        errorReason=row.error_reason, createdAt=row.created_at, updatedAt=row.updated_at,
        lastUsedAt=row.last_used_at, buildInfo=build,
    )  # fmt: skip


def _template(svc: ImageService, org: str, id_or_name: str) -> Image:
    row = svc.find(org, id_or_name)
    if row is None or row.kind not in ("template", "state"):
        raise ApiError(ErrorCode.IMAGE_NOT_FOUND, f"snapshot {id_or_name!r} not found")
    return row


@router.get("/snapshots", response_model=SnapshotPage)
def list_snapshots(
    who: Auth, svc: Images, page: Annotated[int, Query(ge=1)] = 1, limit: Annotated[int, Query(ge=1, le=200)] = 100,
    name: str | None = None, sourceSandboxId: str | None = None,
) -> SnapshotPage:  # fmt: skip
    if sourceSandboxId:  # the state snapshots of a sandbox (sandbox.create_snapshot)
        rows = [
            r for r in svc.list_images(who.organization_id, "state")
            if (r.source or {}).get("sandbox", {}).get("id") == sourceSandboxId
        ]  # fmt: skip
    else:
        rows = svc.list_images(who.organization_id, "template")
    rows = [r for r in rows if not name or name in r.name]
    total = len(rows)
    items = [to_out(r) for r in rows[(page - 1) * limit : page * limit]]
    return SnapshotPage(items=items, total=total, page=page, totalPages=max(1, math.ceil(total / limit)))


@router.post("/snapshots", response_model=SnapshotOut)
def create_snapshot(body: CreateSnapshotIn, who: Auth, svc: Images) -> SnapshotOut:
    """A template from `imageName` (an image here or a registry reference) or from `buildInfo` (a Dockerfile)."""
    org = who.organization_id
    res = {"cpu": body.cpu, "memory": body.memory, "disk": body.disk}
    if body.buildInfo is not None:
        plan = plan_from_dockerfile(body.buildInfo.dockerfileContent, body.buildInfo.contextHashes)
        source = {"dockerfile": body.buildInfo.dockerfileContent, "resources": res}
        return to_out(svc.build(org, body.name, plan, kind="template", source=source))
    if not body.imageName:
        raise ApiError(ErrorCode.VALIDATION_ERROR, "imageName or buildInfo is required")
    return to_out(svc.template_of(org, body.name, body.imageName, body.entrypoint or [], res))


@router.get("/snapshots/{id_or_name:path}/build-logs-url", response_model=UrlOut)
def snapshot_logs_url(id_or_name: str, request: Request, who: Auth, svc: Images) -> UrlOut:
    row = _template(svc, who.organization_id, id_or_name)
    return UrlOut(url=api_base(request) + f"/snapshots/{row.id}/build-logs")


@router.get("/snapshots/{id_or_name:path}/build-logs", response_class=StreamingResponse)
def snapshot_logs(id_or_name: str, who: Auth, svc: Images, follow: bool = False) -> StreamingResponse:
    row = _template(svc, who.organization_id, id_or_name)
    return stream_log(svc, who.organization_id, row, follow)


@router.post("/snapshots/{id_or_name:path}/activate", response_model=SnapshotOut)
def activate(id_or_name: str, who: Auth, svc: Images) -> SnapshotOut:
    """Templates never go inactive here: activating an active one is a no-op, as in Daytona."""
    row = _template(svc, who.organization_id, id_or_name)
    if row.state not in ("active", "inactive"):
        raise ApiError(ErrorCode.IMAGE_NOT_READY, f"snapshot {row.name!r} is {row.state}")
    return to_out(row)


@router.post("/snapshots/{id_or_name:path}/deactivate", status_code=204)
def deactivate(id_or_name: str, who: Auth, svc: Images) -> Response:
    _template(svc, who.organization_id, id_or_name)
    return Response(status_code=204)


@router.get("/snapshots/{id_or_name:path}", response_model=SnapshotOut)
def get_snapshot(id_or_name: str, who: Auth, svc: Images) -> SnapshotOut:
    return to_out(_template(svc, who.organization_id, id_or_name))


@router.delete("/snapshots/{id_or_name:path}")
def delete_snapshot(id_or_name: str, who: Auth, svc: Images) -> Response:
    row = _template(svc, who.organization_id, id_or_name)
    svc.delete(who.organization_id, row.id)
    return Response(status_code=200)


# -- a sandbox created from an Image: its build log ----------------------------------------------------------
@router.get("/sandbox/{sandbox_id_or_name}/build-logs-url", response_model=UrlOut)
def sandbox_logs_url(sandbox_id_or_name: str, request: Request, who: Auth, sandboxes: Svc) -> UrlOut:
    row = sandboxes.get(who.organization_id, sandbox_id_or_name)
    return UrlOut(url=api_base(request) + f"/sandbox/{row.id}/build-logs")


@router.get("/sandbox/{sandbox_id_or_name}/build-logs", response_class=StreamingResponse)
def sandbox_logs(
    sandbox_id_or_name: str, who: Auth, sandboxes: Svc, svc: Images, follow: bool = False
) -> StreamingResponse:
    row = sandboxes.get(who.organization_id, sandbox_id_or_name)
    img = sandboxes.build_image_of(row)
    if img is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"sandbox {sandbox_id_or_name!r} was not built from an image")
    return stream_log(svc, who.organization_id, img, follow)


# -- a sandbox's state snapshot and fork, Daytona's way (docs/daytona-state-snapshots-wire.md) -----------------
class SandboxSnapshotIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")
    includeMemory: bool | None = None


class DaytonaForkIn(BaseModel):
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


@router.post("/sandbox/{sandbox_id_or_name}/snapshot", response_model=SandboxOut)
async def daytona_snapshot(
    sandbox_id_or_name: str,
    body: SandboxSnapshotIn,
    request: Request,
    who: Auth,
    sandboxes: Svc,
    states: States,
) -> SandboxOut:
    """`sandbox.create_snapshot(name)`: a state snapshot; answers with the (source) sandbox, as Daytona does."""
    await asyncio.to_thread(
        states.create, who.organization_id, sandbox_id_or_name, body.name, memory=bool(body.includeMemory)
    )
    return sandbox_out(sandboxes.get(who.organization_id, sandbox_id_or_name), request)


@router.post("/sandbox/{sandbox_id_or_name}/fork", response_model=SandboxOut)
async def daytona_fork(
    sandbox_id_or_name: str, body: DaytonaForkIn, request: Request, who: Auth, states: States
) -> SandboxOut:
    """`sandbox.fork(name)`: a new sandbox with a copy of this one's files (a snapshot taken for it and dropped
    after: the child's root is its own)."""
    org = who.organization_id
    tmp = f"fork-{uuid.uuid4().hex[:12]}"
    await asyncio.to_thread(states.create, org, sandbox_id_or_name, tmp, quota=False)
    try:
        rows = await asyncio.to_thread(states.fork, org, tmp, 1, [body.name] if body.name else None)
    finally:
        await asyncio.to_thread(states.delete, org, tmp)
    return sandbox_out(rows[0], request)


@router.get("/sandbox/{sandbox_id_or_name}/parent", response_model=SandboxOut)
async def daytona_parent(sandbox_id_or_name: str, request: Request, who: Auth, states: States) -> SandboxOut:
    """The sandbox this one was forked from (`sandbox.fork()`, or a fork of a snapshot of it); 404 if none."""
    return sandbox_out(states.parent(who.organization_id, sandbox_id_or_name), request)


@router.get("/sandbox/{sandbox_id_or_name}/ancestors", response_model=list[SandboxOut])
async def daytona_ancestors(
    sandbox_id_or_name: str, request: Request, who: Auth, states: States
) -> list[SandboxOut]:
    """Parent, grandparent, ...: the fork chain up to the first that no longer exists."""
    return [sandbox_out(b, request) for b in states.ancestors(who.organization_id, sandbox_id_or_name)]


@router.get("/sandbox/{sandbox_id_or_name}/forks", response_model=list[SandboxOut])
async def daytona_forks(
    sandbox_id_or_name: str,
    request: Request,
    who: Auth,
    states: States,
    includeDestroyed: Annotated[bool, Query(description="accepted; deleted sandboxes leave no row")] = False,  # noqa: N803
) -> list[SandboxOut]:
    """The sandboxes forked from this one, oldest first."""
    return [sandbox_out(b, request) for b in states.forks(who.organization_id, sandbox_id_or_name)]
