"""/api/sandbox: create, list, get, start, stop, delete, labels (Daytona's paths and status codes)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from ..._version import __version__
from .. import archive, lifecycle, listing, pause
from ..auth import Principal, authenticate
from ..db import Sandbox
from ..sandboxes import SandboxService
from ..schemas import CreateSandbox, Labels, NetworkPolicyOut, SandboxList, SandboxOut

router = APIRouter(prefix="/sandbox", tags=["sandbox"])
Auth = Annotated[Principal, Depends(authenticate)]


def service(request: Request) -> SandboxService:
    svc: SandboxService = request.app.state.sandboxes
    return svc


Svc = Annotated[SandboxService, Depends(service)]


def api_base(request: Request) -> str:
    """The API's base URL as clients reach it: the configured public URL, else the one this request came in on."""
    base = request.app.state.settings.public_url or str(request.base_url)
    return base.rstrip("/") + "/api"


def toolbox_url(request: Request) -> str:
    return api_base(request) + "/toolbox"


def to_out(row: Sandbox, request: Request) -> SandboxOut:
    extra = row.extra or {}
    # the intervals in effect: the sandbox's own, else the server's defaults (docs/lifecycle.md)
    lc = lifecycle.effective(extra, lifecycle.Defaults.of(request.app.state.settings))
    ttl = lc["ttlMinutes"]
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
        target=listing.target(row),
        cpu=row.cpu,
        gpu=0,
        memory=listing.memory_gib(row),
        disk=listing.disk_gib(row),
        state=row.state,
        desiredState={
            "stopped": "stopped",
            "stopping": "stopped",
            "destroyed": "destroyed",
            "destroying": "destroyed",
            "archived": "archived",
        }.get(row.state, "started"),
        errorReason=row.error_reason,
        recoverable=row.state == "error",
        snapshot=row.image,
        toolboxProxyUrl=toolbox_url(request),
        autoStopInterval=lc["autoStopInterval"],
        autoPauseInterval=lc["autoPauseInterval"],
        autoArchiveInterval=lc["autoArchiveInterval"],
        autoDeleteInterval=lc["autoDeleteInterval"],
        autoDestroyAt=listing.iso(row.created_at + timedelta(minutes=ttl)) if ttl > 0 else None,
        queueTimeout=extra.get("queueTimeout"),
        outboundProxyUrl=extra.get("outboundProxyUrl"),
        otelEndpointOverride=extra.get("otelEndpointOverride"),
        volumes=list(extra.get("volumes", [])),
        sandboxClass=listing.SANDBOX_CLASS,
        daemonVersion=__version__,
        createdAt=listing.iso(row.created_at),
        updatedAt=listing.iso(row.updated_at),
        lastActivityAt=listing.iso(listing.last_activity(row)),
        isolation=row.isolation,  # type: ignore[arg-type]
        image=row.image,
        memoryMiB=row.memory_mib,
        diskMiB=row.disk_mib,
        network=NetworkPolicyOut(**row.network) if row.network else None,
        secretRefs=dict(row.secrets or {}),
        ttlMinutes=ttl,
        wakeOnUse=bool(extra.get(lifecycle.WAKE_ON_USE)),
    )


@router.post("", response_model=SandboxOut, status_code=200)
def create_sandbox(body: CreateSandbox, request: Request, who: Auth, svc: Svc) -> SandboxOut:
    """Create a sandbox and start it; answers when it is `started` (its toolbox answers)."""
    return to_out(svc.create(who.organization_id, body), request)


Dt = Annotated[datetime | None, Query(description="e.g. 2024-01-01T00:00:00.000000+0000")]


@router.get("", response_model=SandboxList)
def list_sandboxes(
    request: Request,
    who: Auth,
    svc: Svc,
    labels: Annotated[str | None, Query(description='JSON object, e.g. {"team":"x"}')] = None,
    states: Annotated[list[str] | None, Query()] = None,
    name: Annotated[str | None, Query(description="name prefix, case-insensitive")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    id: Annotated[str | None, Query(description="id prefix, case-insensitive")] = None,
    snapshots: Annotated[list[str] | None, Query(description="image names")] = None,
    regionIds: Annotated[list[str] | None, Query(description="targets (`local`)")] = None,
    sandboxClasses: Annotated[list[str] | None, Query(description="`container` for every sandbox")] = None,
    minCpu: int | None = None,
    maxCpu: int | None = None,
    minMemoryGiB: int | None = None,
    maxMemoryGiB: int | None = None,
    minDiskGiB: int | None = None,
    maxDiskGiB: int | None = None,
    minGpu: int | None = None,
    maxGpu: int | None = None,
    isPublic: bool | None = None,
    isRecoverable: bool | None = None,
    createdAtAfter: Dt = None,
    createdAtBefore: Dt = None,
    lastEventAfter: Dt = None,
    lastEventBefore: Dt = None,
    autoDestroyAtAfter: Dt = None,
    autoDestroyAtBefore: Dt = None,
    sort: Annotated[str | None, Query(description=", ".join(listing.SORT_FIELDS))] = None,
    order: Annotated[Literal["asc", "desc"] | None, Query()] = None,
    includeErroredDeleted: bool = False,  # deleted sandboxes are gone at once: nothing to include
    includeWarm: bool = False,  # no warm pools
) -> SandboxList:
    """Sandboxes of the caller's organization matching every filter (Daytona's list query), oldest first
    unless `sort` says otherwise; `nextCursor` fetches the next page."""
    filters = listing.Filters(
        id=id, snapshots=tuple(snapshots or ()), region_ids=tuple(regionIds or ()),
        sandbox_classes=tuple(sandboxClasses or ()), min_cpu=minCpu, max_cpu=maxCpu, min_memory_gib=minMemoryGiB,
        max_memory_gib=maxMemoryGiB, min_disk_gib=minDiskGiB, max_disk_gib=maxDiskGiB, min_gpu=minGpu,
        max_gpu=maxGpu, is_public=isPublic, is_recoverable=isRecoverable, created_at_after=createdAtAfter,
        created_at_before=createdAtBefore, last_event_after=lastEventAfter, last_event_before=lastEventBefore,
        auto_destroy_at_after=autoDestroyAtAfter, auto_destroy_at_before=autoDestroyAtBefore,
    )  # fmt: skip
    rows, nxt = svc.list(
        who.organization_id, labels=listing.parse_labels(labels), states=states or [], name=name, limit=limit,
        cursor=cursor, where=filters.predicate(), key=listing.sort_key(sort or ("createdAt" if order else None)),
        descending=order == "desc",
    )  # fmt: skip
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


@router.post("/{sandbox_id_or_name}/pause", response_model=SandboxOut)
def pause_sandbox(sandbox_id_or_name: str, request: Request, who: Auth, svc: Svc) -> SandboxOut:
    """Keep the sandbox's processes without running them; `start` resumes them (docs/snapshots.md "Pause").
    gvisor: checkpointed to disk, no memory held; container: frozen in place (cgroup freezer)."""
    return to_out(pause.pause(svc, who.organization_id, sandbox_id_or_name), request)


@router.post("/{sandbox_id_or_name}/archive", response_model=SandboxOut)
def archive_sandbox(sandbox_id_or_name: str, request: Request, who: Auth, svc: Svc) -> SandboxOut:
    """Keep a stopped sandbox's files as an archive and release its disk space for runtime use; `start` restores
    them (docs/lifecycle.md "Archive"). A sandbox that is not stopped: 409 SANDBOX_BUSY."""
    return to_out(archive.archive(svc, who.organization_id, sandbox_id_or_name), request)


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
