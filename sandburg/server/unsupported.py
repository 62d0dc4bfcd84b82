"""Daytona endpoints sandburg does not serve yet: a typed 501, never a 404 page.

The official Daytona SDKs may call any operation of their generated clients. Those that sandburg does not
implement are listed here (method, Daytona path, area); a request for one — `/api/<path>`, or
`/api/toolbox/<sandboxId>/<path>` for the toolbox — answers `501 NOT_IMPLEMENTED` with a message naming the
issue that brings it. Paths that are in neither list keep their 404 NOT_FOUND. `docs/daytona-compat.md` lists
every operation with its status; `tests/e2e/daytona_py/test_compat_doc.py` keeps the two in step.

The socket.io gateway Daytona's SDKs connect to for state events gets the same 501: sandburg answers `create`,
`start` and `stop` once the sandbox is there, so the SDKs have nothing to wait for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse

from .._codes import ErrorCode
from .errors import ApiError, error_response

AREAS = {
    "desktop": "computer use (a desktop in the sandbox) comes with a later issue",
    "images": "registry credentials and build-context uploads (COPY/ADD of local files) come with a later issue "
    "(docs/daytona-compat.md)",
    "interpreter": "stateful interpreter contexts come with a later issue",
    "lifecycle": "resize comes with a later issue",
    "lsp": "language servers come with a later issue",
    "network": "signed preview URLs, SSH access and signing keys come with a later issue (plain preview URLs work)",
    "observability": "metrics, logs and traces come with the observability issue",
    "runner": "this is Daytona's runner/region control plane, which sandburg does not need: not planned",
    "secrets": "secrets come with the secrets issue",
    "snapshots": "backups (a copy of a sandbox kept outside this host) come with a later issue; snapshots and "
    "forks are served (docs/snapshots.md)",
    "tenants": "Daytona's users, invitations, custom roles and webhooks are not planned; API keys are served at "
    "/api/keys in sandburg's shape, organizations at /api/organizations (docs/tenants.md)",
    "terminals": "terminals that outlive their WebSocket (POST /process/pty, /connect) come with a later issue",
    "toolbox-env": "changing the toolbox's environment at run time comes with a later issue",
    "warmpools": "warm pools come with a later issue",
}

MAIN = """
GET    /api-keys  tenants
POST   /api-keys  tenants
GET    /api-keys/current  tenants
DELETE /api-keys/{name}  tenants
GET    /api-keys/{name}  tenants
DELETE /api-keys/{userId}/{name}  tenants
GET    /audit/organizations/{organizationId}  tenants
GET    /audit/scenarios  tenants
GET    /docker-registry  images
POST   /docker-registry  images
GET    /docker-registry/registry-push-access  images
DELETE /docker-registry/{id}  images
GET    /docker-registry/{id}  images
PATCH  /docker-registry/{id}  images
GET    /jobs  runner
GET    /jobs/poll  runner
GET    /jobs/{jobId}  runner
POST   /jobs/{jobId}/status  runner
GET    /object-storage/push-access  images
GET    /organizations/invitations  tenants
GET    /organizations/invitations/count  tenants
POST   /organizations/invitations/{invitationId}/accept  tenants
POST   /organizations/invitations/{invitationId}/decline  tenants
GET    /organizations/otel-config/by-sandbox-auth-token/{authToken}  tenants
GET    /organizations/sandbox-identity/by-sandbox-auth-token/{authToken}  tenants
DELETE /organizations/{organizationId}  tenants
GET    /organizations/{organizationId}/available-sandbox-classes  tenants
PATCH  /organizations/{organizationId}/default-queue-timeout  tenants
PATCH  /organizations/{organizationId}/default-region  tenants
PUT    /organizations/{organizationId}/experimental-config  tenants
GET    /organizations/{organizationId}/gpu-capacity  tenants
GET    /organizations/{organizationId}/identity-providers  tenants
POST   /organizations/{organizationId}/identity-providers  tenants
POST   /organizations/{organizationId}/identity-providers/test-connection  tenants
POST   /organizations/{organizationId}/identity-providers/workos-admin-portal-link  tenants
GET    /organizations/{organizationId}/identity-providers/workos-sso-connections  tenants
DELETE /organizations/{organizationId}/identity-providers/{id}  tenants
GET    /organizations/{organizationId}/identity-providers/{id}  tenants
PATCH  /organizations/{organizationId}/identity-providers/{id}  tenants
GET    /organizations/{organizationId}/invitations  tenants
POST   /organizations/{organizationId}/invitations  tenants
PUT    /organizations/{organizationId}/invitations/{invitationId}  tenants
POST   /organizations/{organizationId}/invitations/{invitationId}/cancel  tenants
POST   /organizations/{organizationId}/leave  tenants
DELETE /organizations/{organizationId}/otel-config  tenants
GET    /organizations/{organizationId}/otel-config  tenants
PUT    /organizations/{organizationId}/otel-config  tenants
GET    /organizations/{organizationId}/roles  tenants
POST   /organizations/{organizationId}/roles  tenants
DELETE /organizations/{organizationId}/roles/{roleId}  tenants
PUT    /organizations/{organizationId}/roles/{roleId}  tenants
GET    /organizations/{organizationId}/users  tenants
DELETE /organizations/{organizationId}/users/{userId}  tenants
POST   /organizations/{organizationId}/users/{userId}/access  tenants
GET    /preview/{sandboxId}/access  network
GET    /preview/{sandboxId}/preview-warning  network
GET    /preview/{sandboxId}/public  network
GET    /preview/{sandboxId}/signing-key  network
GET    /preview/{sandboxId}/validate/{authToken}  network
GET    /preview/{signedPreviewToken}/{port}/sandbox-id  network
GET    /regions  runner
POST   /regions  runner
DELETE /regions/{id}  runner
GET    /regions/{id}  runner
PATCH  /regions/{id}  runner
POST   /regions/{id}/regenerate-proxy-api-key  runner
POST   /regions/{id}/regenerate-snapshot-manager-credentials  runner
POST   /regions/{id}/regenerate-ssh-gateway-api-key  runner
GET    /runners  runner
POST   /runners  runner
GET    /runners/by-sandbox/{sandboxId}  runner
GET    /runners/by-snapshot-ref  runner
POST   /runners/healthcheck  runner
GET    /runners/me  runner
GET    /runners/me/snapshots  runner
DELETE /runners/{id}  runner
GET    /runners/{id}  runner
PATCH  /runners/{id}/draining  runner
GET    /runners/{id}/full  runner
PATCH  /runners/{id}/scheduling  runner
GET    /sandbox/for-runner  runner
GET    /sandbox/ssh-access/validate  network
POST   /sandbox/{sandboxIdOrName}/backup  snapshots
GET    /sandbox/{sandboxIdOrName}/ports/{port}/signed-preview-url  network
POST   /sandbox/{sandboxIdOrName}/ports/{port}/signed-preview-url/{token}/expire  network
POST   /sandbox/{sandboxIdOrName}/resize  lifecycle
PUT    /sandbox/{sandboxIdOrName}/secrets  secrets
DELETE /sandbox/{sandboxIdOrName}/ssh-access  network
POST   /sandbox/{sandboxIdOrName}/ssh-access  network
GET    /sandbox/{sandboxId}/organization  runner
GET    /sandbox/{sandboxId}/region-quota  runner
GET    /sandbox/{sandboxId}/secrets  secrets
GET    /sandbox/{sandboxId}/signing-key  network
POST   /sandbox/{sandboxId}/signing-key/rotate  network
PUT    /sandbox/{sandboxId}/state  runner
GET    /sandbox/{sandboxId}/telemetry/logs  observability
GET    /sandbox/{sandboxId}/telemetry/metrics  observability
GET    /sandbox/{sandboxId}/telemetry/traces  observability
GET    /sandbox/{sandboxId}/telemetry/traces/{traceId}  observability
GET    /secret  secrets
POST   /secret  secrets
GET    /secret/paginated  secrets
DELETE /secret/{secretId}  secrets
GET    /secret/{secretId}  secrets
PATCH  /secret/{secretId}  secrets
GET    /shared-regions  runner
GET    /users/account-providers  tenants
POST   /users/linked-accounts  tenants
GET    /users/me  tenants
POST   /users/me/logins  tenants
GET    /users/me/pending-sso-links  tenants
DELETE /users/me/pending-sso-links/{id}  tenants
POST   /users/me/pending-sso-links/{id}/confirm  tenants
POST   /users/privacy-policies/accept  tenants
GET    /warm-pools  warmpools
POST   /warm-pools  warmpools
DELETE /warm-pools/{id}  warmpools
PATCH  /warm-pools/{id}  warmpools
POST   /webhooks/organizations/{organizationId}/app-portal-access  tenants
GET    /webhooks/organizations/{organizationId}/initialization-status  tenants
POST   /webhooks/organizations/{organizationId}/initialize  tenants
POST   /webhooks/organizations/{organizationId}/refresh-endpoints  tenants
"""
TOOLBOX = """
POST   /computeruse/a11y/find  desktop
POST   /computeruse/a11y/node/focus  desktop
POST   /computeruse/a11y/node/invoke  desktop
POST   /computeruse/a11y/node/value  desktop
GET    /computeruse/a11y/tree  desktop
GET    /computeruse/display/info  desktop
GET    /computeruse/display/windows  desktop
POST   /computeruse/keyboard/down  desktop
POST   /computeruse/keyboard/hotkey  desktop
POST   /computeruse/keyboard/key  desktop
POST   /computeruse/keyboard/type  desktop
POST   /computeruse/keyboard/up  desktop
POST   /computeruse/mouse/click  desktop
POST   /computeruse/mouse/down  desktop
POST   /computeruse/mouse/drag  desktop
POST   /computeruse/mouse/move  desktop
GET    /computeruse/mouse/position  desktop
POST   /computeruse/mouse/scroll  desktop
POST   /computeruse/mouse/up  desktop
GET    /computeruse/process-status  desktop
GET    /computeruse/process/{processName}/errors  desktop
GET    /computeruse/process/{processName}/logs  desktop
POST   /computeruse/process/{processName}/restart  desktop
GET    /computeruse/process/{processName}/status  desktop
GET    /computeruse/recordings  desktop
POST   /computeruse/recordings/start  desktop
POST   /computeruse/recordings/stop  desktop
DELETE /computeruse/recordings/{id}  desktop
GET    /computeruse/recordings/{id}  desktop
GET    /computeruse/recordings/{id}/download  desktop
GET    /computeruse/screenshot  desktop
GET    /computeruse/screenshot/compressed  desktop
GET    /computeruse/screenshot/region  desktop
GET    /computeruse/screenshot/region/compressed  desktop
POST   /computeruse/start  desktop
GET    /computeruse/status  desktop
POST   /computeruse/stop  desktop
POST   /env  toolbox-env
POST   /init  toolbox-env
POST   /lsp/completions  lsp
POST   /lsp/did-close  lsp
POST   /lsp/did-open  lsp
GET    /lsp/document-symbols  lsp
POST   /lsp/start  lsp
POST   /lsp/stop  lsp
GET    /lsp/workspacesymbols  lsp
GET    /process/interpreter/context  interpreter
POST   /process/interpreter/context  interpreter
DELETE /process/interpreter/context/{id}  interpreter
GET    /process/interpreter/execute  interpreter
POST   /process/pty  terminals
GET    /process/pty/{sessionId}/connect  terminals
GET    /system/metrics  observability
"""


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # Daytona's template, e.g. /sandbox/{sandboxIdOrName}/archive
    area: str
    pattern: re.Pattern[str]


def _parse(table: str) -> list[Endpoint]:
    out = []
    for line in table.strip().splitlines():
        method, path, area = line.split()
        if area not in AREAS:
            raise ValueError(f"unknown area {area!r} for {method} {path}")
        regex = "".join(
            "[^/]+" if part.startswith("{") else re.escape(part) for part in re.split(r"(\{\w+\})", path)
        )
        out.append(Endpoint(method, path, area, re.compile(regex + r"\Z")))
    return out


MAIN_ENDPOINTS = _parse(MAIN)
TOOLBOX_ENDPOINTS = _parse(TOOLBOX)
_TOOLBOX_PREFIX = re.compile(r"/toolbox/[^/]+(/.*)\Z")


def lookup(method: str, path: str) -> Endpoint | None:
    """The not-yet Daytona endpoint `method path` (a path below /api) is, if any."""
    candidates = [(path, MAIN_ENDPOINTS)]
    m = _TOOLBOX_PREFIX.match(path)
    if m:
        candidates.append((m.group(1), TOOLBOX_ENDPOINTS))
    for sub, endpoints in candidates:
        for ep in endpoints:
            if ep.method == method and ep.pattern.match(sub):
                return ep
    return None


def not_implemented(method: str, path: str) -> ApiError | None:
    """The 501 for a request that no route served (404/405), when it is a Daytona endpoint of the lists."""
    if not path.startswith("/api/"):
        return None
    ep = lookup(method, path[4:])
    if ep is None:
        return None
    return ApiError(ErrorCode.NOT_IMPLEMENTED, f"{method} {ep.path} is not supported yet: {AREAS[ep.area]}")


def install(app: FastAPI) -> None:
    """The socket.io gateway's routes (HTTP polling and WebSocket): a quick, typed 501."""
    msg = "real-time events (socket.io) are not supported: sandburg answers create/start/stop once they are done"

    @app.api_route("/api/socket.io/", methods=["GET", "POST"], include_in_schema=False)
    async def socketio_http(_req: Request) -> JSONResponse:
        return error_response(ErrorCode.NOT_IMPLEMENTED, msg)

    @app.websocket("/api/socket.io/")
    async def socketio_ws(ws: WebSocket) -> None:
        await ws.send_denial_response(error_response(ErrorCode.NOT_IMPLEMENTED, msg))
