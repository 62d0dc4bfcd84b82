"""Daytona's per-sandbox settings and helper routes: lifecycle intervals, public flag, network settings, toolbox
URL, last activity, recover; plus `GET /api/config` and `GET /api/health/ready`.

The intervals and the public flag are stored in the sandbox row and echoed in the Sandbox DTO (status 200, as
Daytona answers); the lifecycle reaper enforces the intervals (docs/lifecycle.md). The network settings are
enforced (docs/network.md).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from ..._codes import ErrorCode
from ..._version import __version__
from .. import lifecycle
from ..errors import ApiError
from ..schemas import LifecycleSettings, NetworkSettings, SandboxOut, Url
from .sandbox import Auth, Svc, to_out, toolbox_url

router = APIRouter(tags=["sandbox"])
NonNegative = Annotated[int, Path(ge=0, le=10_000_000, description="minutes")]


@router.get("/sandbox/for-runner", include_in_schema=False)
def for_runner() -> None:
    # Daytona's runner-internal route; declared here so `GET /sandbox/{idOrName}` does not take it for a name
    raise ApiError(
        ErrorCode.NOT_IMPLEMENTED, "GET /sandbox/for-runner is Daytona's runner-internal API: not planned"
    )


def _set(request: Request, who: Auth, svc: Svc, sid: str, **extra: Any) -> SandboxOut:
    return to_out(svc.update(who.organization_id, sid, extra=extra), request)


@router.post("/sandbox/{sandbox_id_or_name}/autostop/{interval}", response_model=SandboxOut)
def set_autostop(
    sandbox_id_or_name: str, interval: NonNegative, request: Request, who: Auth, svc: Svc
) -> SandboxOut:
    """Set the auto-stop interval (minutes idle, 0 = never; docs/lifecycle.md)."""
    return _set(request, who, svc, sandbox_id_or_name, autoStopInterval=interval)


@router.post("/sandbox/{sandbox_id_or_name}/autoarchive/{interval}", response_model=SandboxOut)
def set_autoarchive(
    sandbox_id_or_name: str, interval: NonNegative, request: Request, who: Auth, svc: Svc
) -> SandboxOut:
    """Set the auto-archive interval (minutes stopped, 0 = never)."""
    return _set(request, who, svc, sandbox_id_or_name, autoArchiveInterval=interval)


@router.post("/sandbox/{sandbox_id_or_name}/autodelete/{interval}", response_model=SandboxOut)
def set_autodelete(
    sandbox_id_or_name: str,
    interval: Annotated[int, Path(ge=-1, le=10_000_000, description="minutes; -1 never, 0 on stop")],
    request: Request,
    who: Auth,
    svc: Svc,
) -> SandboxOut:
    """Set the auto-delete interval (minutes stopped; -1 = never, 0 = right after a stop)."""
    return _set(request, who, svc, sandbox_id_or_name, autoDeleteInterval=interval)


@router.post("/sandbox/{sandbox_id_or_name}/autopause/{interval}", response_model=SandboxOut)
def set_autopause(
    sandbox_id_or_name: str, interval: NonNegative, request: Request, who: Auth, svc: Svc
) -> SandboxOut:
    """Set the auto-pause interval (minutes idle, 0 = never): pause, processes kept, woken by the next toolbox
    call."""
    return _set(request, who, svc, sandbox_id_or_name, autoPauseInterval=interval)


@router.post("/sandbox/{sandbox_id_or_name}/ttl/{ttl_minutes}", response_model=SandboxOut)
def set_ttl(
    sandbox_id_or_name: str, ttl_minutes: NonNegative, request: Request, who: Auth, svc: Svc
) -> SandboxOut:
    """Set the time to live (minutes after its creation, 0 = none): then the sandbox is deleted, even in use."""
    return _set(request, who, svc, sandbox_id_or_name, ttlMinutes=ttl_minutes)


@router.post("/sandbox/{sandbox_id_or_name}/lifecycle", response_model=SandboxOut)
def set_lifecycle(
    sandbox_id_or_name: str, body: LifecycleSettings, request: Request, who: Auth, svc: Svc
) -> SandboxOut:
    """sandburg: change several lifecycle settings at once (minutes; see docs/lifecycle.md); a field left out is
    kept, `null` goes back to the server's default."""
    values = body.model_dump(exclude_unset=True)
    reset = {k: None for k, v in values.items() if v is None}
    extra = {k: v for k, v in values.items() if v is not None}
    if reset:
        svc.update(who.organization_id, sandbox_id_or_name, extra=reset)
    return _set(request, who, svc, sandbox_id_or_name, **extra)


@router.post("/sandbox/{sandbox_id_or_name}/public/{is_public}", response_model=SandboxOut)
def set_public(sandbox_id_or_name: str, is_public: bool, request: Request, who: Auth, svc: Svc) -> SandboxOut:
    """Store the public flag (preview URLs come with the networking issue)."""
    return to_out(svc.update(who.organization_id, sandbox_id_or_name, public=is_public), request)


@router.post("/sandbox/{sandbox_id_or_name}/network-settings", response_model=SandboxOut)
def set_network(
    sandbox_id_or_name: str, body: NetworkSettings, request: Request, who: Auth, svc: Svc
) -> SandboxOut:
    """Daytona's network policy, enforced by the same engine as sandburg's `network` (docs/network.md):
    `networkBlockAll: true` blocks everything, allow lists (CIDRs, domains) allow only those, and
    `networkBlockAll: false` alone is an explicit request for full access."""
    if body.networkBlockAll is None and body.networkAllowList is None and body.domainAllowList is None:
        raise ApiError(
            ErrorCode.VALIDATION_ERROR,
            "set at least one of networkBlockAll, networkAllowList, domainAllowList",
        )
    block = bool(body.networkBlockAll)
    cidrs = None if block else body.networkAllowList
    domains = None if block else body.domainAllowList
    policy = svc.net_policy_from_daytona(block, cidrs, domains)
    row = svc.set_network(
        who.organization_id,
        sandbox_id_or_name,
        policy,
        networkAllowList=cidrs or None,
        domainAllowList=domains or None,
    )
    return to_out(row, request)


@router.get("/sandbox/{sandbox_id}/toolbox-proxy-url", response_model=Url)
def get_toolbox_proxy_url(sandbox_id: str, request: Request, who: Auth, svc: Svc) -> Url:
    """The base URL of the sandbox's toolbox: requests go to `<url>/<sandboxId>/...`."""
    svc.get(who.organization_id, sandbox_id)
    return Url(url=toolbox_url(request))


@router.post("/sandbox/{sandbox_id}/last-activity", status_code=201, response_class=Response)
def update_last_activity(sandbox_id: str, request: Request, who: Auth, svc: Svc) -> Response:
    """Record activity now (echoed as `lastActivityAt`; the auto-stop and auto-pause timers count from it)."""
    now = lifecycle.iso(request.app.state.clock.now())
    svc.update(who.organization_id, sandbox_id, extra={lifecycle.LAST_ACTIVITY: now})
    return Response(status_code=201)


@router.post("/sandbox/{sandbox_id_or_name}/recover", response_model=SandboxOut)
def recover_sandbox(
    sandbox_id_or_name: str, request: Request, who: Auth, svc: Svc, skipStart: bool = False
) -> SandboxOut:
    """Bring a sandbox in `error` back: sandburg restarts it (its files are kept). A started sandbox is left
    as it is; with `skipStart` the sandbox is only stopped cleanly."""
    row = svc.get(who.organization_id, sandbox_id_or_name)
    if row.state not in ("error", "started", "stopped"):
        raise ApiError(ErrorCode.SANDBOX_BUSY, f"sandbox is {row.state}")
    if skipStart:
        return to_out(svc.stop(who.organization_id, row.id), request)
    return to_out(svc.start(who.organization_id, row.id), request)


@router.get("/config")
def get_config(request: Request) -> dict[str, Any]:
    """Daytona's DaytonaConfiguration, filled with this server's values (no key needed, as in Daytona)."""
    settings = request.app.state.settings
    base = (settings.public_url or str(request.base_url)).rstrip("/")
    return {
        "version": __version__,
        "oidc": {"issuer": "", "clientId": "", "audience": "", "provider": "none"},
        "linkedAccountsEnabled": False,
        "announcements": {},
        "proxyTemplateUrl": "",
        "proxyToolboxUrl": base + "/api/toolbox",
        "defaultSnapshot": settings.default_image,
        "dashboardUrl": "",
        "maxAutoArchiveInterval": 43200,
        "maintananceMode": False,
        "environment": "sandburg",
    }


@router.get("/health/ready")
def ready() -> dict[str, str]:
    """Readiness (Daytona's `GET /health/ready`); no key needed."""
    return {"status": "ok"}
