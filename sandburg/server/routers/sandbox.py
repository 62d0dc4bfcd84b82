"""/api/sandbox: create, list, get, start, stop, delete, labels (Daytona's paths and status codes)."""

from __future__ import annotations

import json
import math
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from ..._codes import ErrorCode
from ..auth import Principal, authenticate
from ..db import Sandbox
from ..errors import ApiError
from ..sandboxes import SandboxService
from ..schemas import CreateSandbox, Labels, SandboxList, SandboxOut

router = APIRouter(prefix="/sandbox", tags=["sandbox"])
Auth = Annotated[Principal, Depends(authenticate)]


def service(request: Request) -> SandboxService:
    svc: SandboxService = request.app.state.sandboxes
    return svc


Svc = Annotated[SandboxService, Depends(service)]


def toolbox_url(request: Request) -> str:
    base = request.app.state.settings.public_url or str(request.base_url)
    return base.rstrip("/") + "/api/toolbox"


def to_out(row: Sandbox, request: Request) -> SandboxOut:
    extra = row.extra or {}
    return SandboxOut(
        id=row.id,
        organizationId=row.organization_id,
        name=row.name,
        user=row.user,
        env=dict(row.env),
        labels=dict(row.labels),
        public=row.public,
        networkBlockAll=row.network_block_all,
        networkAllowList=extra.get("networkAllowList"),
        domainAllowList=extra.get("domainAllowList"),
        target=extra.get("target") or "local",
        cpu=row.cpu,
        gpu=0,
        memory=math.ceil(row.memory_mib / 1024),
        disk=math.ceil(row.disk_mib / 1024),
        state=row.state,
        desiredState={
            "stopped": "stopped",
            "stopping": "stopped",
            "destroyed": "destroyed",
            "destroying": "destroyed",
        }.get(row.state, "started"),
        errorReason=row.error_reason,
        recoverable=row.state == "error",
        snapshot=row.image,
        toolboxProxyUrl=toolbox_url(request),
        autoStopInterval=int(extra.get("autoStopInterval", 0)),
        autoArchiveInterval=int(extra.get("autoArchiveInterval", 0)),
        autoDeleteInterval=int(extra.get("autoDeleteInterval", -1)),
        createdAt=row.created_at.isoformat(timespec="milliseconds") + "Z",
        updatedAt=row.updated_at.isoformat(timespec="milliseconds") + "Z",
        isolation=row.isolation,  # type: ignore[arg-type]
        image=row.image,
        memoryMiB=row.memory_mib,
        diskMiB=row.disk_mib,
    )


@router.post("", response_model=SandboxOut, status_code=200)
def create_sandbox(body: CreateSandbox, request: Request, who: Auth, svc: Svc) -> SandboxOut:
    """Create a sandbox and start it; answers when it is `started` (its toolbox answers)."""
    return to_out(svc.create(who.organization_id, body), request)


@router.get("", response_model=SandboxList)
def list_sandboxes(
    request: Request,
    who: Auth,
    svc: Svc,
    labels: Annotated[str | None, Query(description='JSON object, e.g. {"team":"x"}')] = None,
    states: Annotated[list[str] | None, Query()] = None,
    name: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> SandboxList:
    """Sandboxes of the caller's organization, oldest first, filtered by labels and states."""
    wanted: dict[str, str] = {}
    if labels:
        try:
            parsed = json.loads(labels)
        except ValueError as exc:
            raise ApiError(ErrorCode.VALIDATION_ERROR, "labels: must be a JSON object") from exc
        if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
            raise ApiError(ErrorCode.VALIDATION_ERROR, "labels: must be a JSON object of strings")
        wanted = parsed
    rows, nxt = svc.list(
        who.organization_id, labels=wanted, states=states or [], name=name, limit=limit, cursor=cursor
    )
    return SandboxList(items=[to_out(r, request) for r in rows], nextCursor=nxt)


@router.get("/{sandbox_id_or_name}", response_model=SandboxOut)
def get_sandbox(sandbox_id_or_name: str, request: Request, who: Auth, svc: Svc) -> SandboxOut:
    return to_out(svc.get(who.organization_id, sandbox_id_or_name), request)


@router.delete("/{sandbox_id_or_name}", response_model=SandboxOut)
def delete_sandbox(sandbox_id_or_name: str, request: Request, who: Auth, svc: Svc) -> SandboxOut:
    """Delete a sandbox and everything it made on the host; answers with `state: destroyed`."""
    return to_out(svc.delete(who.organization_id, sandbox_id_or_name), request)


@router.post("/{sandbox_id_or_name}/start", response_model=SandboxOut)
def start_sandbox(sandbox_id_or_name: str, request: Request, who: Auth, svc: Svc) -> SandboxOut:
    return to_out(svc.start(who.organization_id, sandbox_id_or_name), request)


@router.post("/{sandbox_id_or_name}/stop", response_model=SandboxOut)
def stop_sandbox(
    sandbox_id_or_name: str, request: Request, who: Auth, svc: Svc, force: bool = False
) -> SandboxOut:
    """Stop the sandbox's processes; its filesystem is kept for start."""
    return to_out(svc.stop(who.organization_id, sandbox_id_or_name), request)


@router.put("/{sandbox_id_or_name}/labels", response_model=Labels)
def replace_labels(sandbox_id_or_name: str, body: Labels, who: Auth, svc: Svc) -> Labels:
    row = svc.set_labels(who.organization_id, sandbox_id_or_name, body.labels)
    return Labels(labels=dict(row.labels))
