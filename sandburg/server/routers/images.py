"""/api/images: build (steps or a Dockerfile), pull, import, list, get, logs, delete; /api/images/context uploads.

Builds, pulls and imports answer at once with the image `building` (or `active` when every step was cached) and
go on in the background; `GET /images/{name}/logs?follow=true` streams the log until the image is `active` or
`error` (then `errorCode` is the stable code: IMAGE_BUILD_FAILED, IMAGE_PULL_FAILED, UNSAFE_IMAGE). docs/images.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from ..._codes import ErrorCode
from ..buildplan import KINDS, Plan, Step
from ..db import Image
from ..errors import ApiError
from ..imageservice import ImageService
from ..schemas import Strict
from .sandbox import Auth

router = APIRouter(prefix="/images", tags=["images"])
MAX_ARCHIVE = 8 << 30
MAX_CONTEXT = 256 << 20
IMAGE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}$"


def service(request: Request) -> ImageService:
    svc: ImageService | None = getattr(request.app.state, "images", None)
    if svc is None:
        raise ApiError(ErrorCode.NOT_IMPLEMENTED, "images are not available on this server")
    return svc


Images = Annotated[ImageService, Depends(service)]


class StepIn(Strict):
    kind: Literal["apt", "pip", "npm", "files", "run", "env", "workdir", "user", "entrypoint", "cmd"]
    args: list[str] = Field(min_length=1, max_length=1000)


class ImageBuildIn(Strict):
    name: str = Field(pattern=IMAGE_NAME)
    base: str = Field(default="debian-12", max_length=200)
    steps: list[StepIn] = Field(default_factory=list, max_length=200)
    isolation: Literal["container", "gvisor"] | None = Field(
        default=None,
        description="tier of the build sandbox; default: the server's (SANDBURG_BUILD_ISOLATION)",
    )
    allow: list[str] = Field(default_factory=list, max_length=1000, description="extra egress for the build")


class PullIn(Strict):
    name: str = Field(pattern=IMAGE_NAME)
    reference: str = Field(min_length=1, max_length=500)
    insecure: bool = Field(default=False, description="plain HTTP / unverified TLS registry")


class ImageOut(BaseModel):
    id: str
    name: str
    kind: str
    state: str
    builtin: bool = False
    errorReason: str | None = None
    errorCode: str | None = None
    sizeBytes: int | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    source: dict[str, Any] = Field(default_factory=dict)
    createdAt: datetime | None = None
    updatedAt: datetime | None = None


class ImageList(BaseModel):
    items: list[ImageOut]


class ContextOut(BaseModel):
    digest: str
    size: int


def to_out(row: Image) -> ImageOut:
    src = dict(row.source or {})
    return ImageOut(
        id=row.id, name=row.name, kind=row.kind, state=row.state, errorReason=row.error_reason,
        errorCode=src.pop("errorCode", None) if row.state == "error" else None, sizeBytes=row.size_bytes,
        config=dict(row.config or {}), source=src, createdAt=row.created_at, updatedAt=row.updated_at,
    )  # fmt: skip


def builtin_out(name: str) -> ImageOut:
    return ImageOut(id=name, name=name, kind="image", state="active", builtin=True)


@router.get("", response_model=ImageList)
def list_images(
    who: Auth, svc: Images, kind: Annotated[str | None, Query(description="image, template or state")] = None
) -> ImageList:
    items = [builtin_out(n) for n in svc.builtins()] if kind in (None, "image") else []
    items += [to_out(r) for r in svc.list_images(who.organization_id, kind)]
    return ImageList(items=items)


@router.post("", response_model=ImageOut, status_code=202)
def build(body: ImageBuildIn, who: Auth, svc: Images) -> ImageOut:
    """Build `steps` on `base` as `name`; each filesystem step is a cached layer (docs/images.md)."""
    plan = Plan(body.base, tuple(_step(i, s) for i, s in enumerate(body.steps)))
    row = svc.build(who.organization_id, body.name, plan, isolation=body.isolation, allow=tuple(body.allow))
    return to_out(row)


def _step(i: int, s: StepIn) -> Step:
    if s.kind == "files" and len(s.args) != 2:
        raise ApiError(ErrorCode.VALIDATION_ERROR, f"steps[{i}]: files takes [destination, context digest]")
    if s.kind in ("workdir", "user") and len(s.args) != 1:
        raise ApiError(ErrorCode.VALIDATION_ERROR, f"steps[{i}]: {s.kind} takes one value")
    if s.kind == "env" and any("=" not in a or a.startswith("=") for a in s.args):
        raise ApiError(ErrorCode.VALIDATION_ERROR, f"steps[{i}]: env takes NAME=value pairs")
    if s.kind in ("apt", "pip", "npm") and any(not a or a.startswith("-") or "\n" in a for a in s.args):
        raise ApiError(ErrorCode.VALIDATION_ERROR, f"steps[{i}]: {s.kind}: package names only (no options)")
    assert s.kind in KINDS
    return Step(s.kind, tuple(s.args))


@router.post("/pull", response_model=ImageOut, status_code=202)
def pull(body: PullIn, who: Auth, svc: Images) -> ImageOut:
    """Pull an OCI image from a registry (skopeo) into the layer store as `name`."""
    return to_out(svc.pull(who.organization_id, body.name, body.reference, tls_verify=not body.insecure))


@router.post("/import", response_model=ImageOut, status_code=202)
async def import_archive(
    request: Request, who: Auth, svc: Images, name: Annotated[str, Query(pattern=IMAGE_NAME)]
) -> ImageOut:
    """Import an OCI-layout or docker-archive tarball sent as the request body."""
    os.makedirs(svc.work_dir, mode=0o700, exist_ok=True)
    fd, path = tempfile.mkstemp(dir=svc.work_dir, suffix=".tar")
    try:
        await _receive(request, fd, MAX_ARCHIVE)
    except BaseException:
        os.unlink(path)
        raise
    try:
        row = await asyncio.to_thread(svc.import_archive, who.organization_id, name, path)
    except BaseException:
        if os.path.exists(path):
            os.unlink(path)
        raise
    return to_out(row)


@router.post("/context", response_model=ContextOut)
async def upload_context(request: Request, who: Auth, svc: Images) -> ContextOut:
    """Upload a build context (a tar of the files a `files` step copies); answers its digest."""
    ctx = svc.builder.context_dir
    fd, tmp = tempfile.mkstemp(dir=ctx, prefix=".upload-")
    try:
        digest, size = await _receive(request, fd, MAX_CONTEXT)
        os.replace(tmp, os.path.join(ctx, digest + ".tar"))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return ContextOut(digest="sha256:" + digest, size=size)


async def _receive(request: Request, fd: int, limit: int) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with os.fdopen(fd, "wb") as fh:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(ErrorCode.PAYLOAD_TOO_LARGE, f"body larger than {limit >> 20} MiB")
            h.update(chunk)
            fh.write(chunk)
    if size == 0:
        raise ApiError(ErrorCode.VALIDATION_ERROR, "empty body: send the tarball as the request body")
    return h.hexdigest(), size


@router.get("/{name:path}/logs", response_class=StreamingResponse)
def logs(
    name: str, who: Auth, svc: Images, follow: Annotated[bool, Query(description="stream until done")] = False
) -> StreamingResponse:
    """The build (or pull) log as text; with `follow`, streamed until the image is active or failed."""
    return stream_log(svc, who.organization_id, svc.get(who.organization_id, name), follow)


def stream_log(svc: ImageService, org_id: str, row: Image, follow: bool) -> StreamingResponse:
    """The image's log as raw text; with `follow`, the response ends when the build does."""
    path = svc.log_path(row)

    async def body() -> AsyncIterator[bytes]:
        pos = 0
        while True:
            img = await asyncio.to_thread(svc.find, org_id, row.id)
            try:
                with open(path, "rb") as fh:
                    fh.seek(pos)
                    data = fh.read()
            except FileNotFoundError:
                data = b""
            if data:
                pos += len(data)
                yield data
            if not follow or img is None or img.state != "building":
                return
            await asyncio.sleep(0.2)

    return StreamingResponse(body(), media_type="text/plain; charset=utf-8")


@router.get("/{name:path}", response_model=ImageOut)
def get_image(name: str, who: Auth, svc: Images) -> ImageOut:
    if name in svc.builtins() and svc.find(who.organization_id, name) is None:
        return builtin_out(name)
    return to_out(svc.get(who.organization_id, name))


@router.delete("/{name:path}", response_model=ImageOut)
def delete_image(name: str, who: Auth, svc: Images) -> ImageOut:
    """Delete the image; its layers go when no other image uses them (sandboxes made from it keep running)."""
    if name in svc.builtins() and svc.find(who.organization_id, name) is None:
        raise ApiError(ErrorCode.BAD_REQUEST, f"{name!r} is a built-in image; it cannot be deleted")
    return to_out(svc.delete(who.organization_id, name))
