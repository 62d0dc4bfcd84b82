"""WebSocket plumbing shared by the streaming routes: authentication at the handshake and error answers.

A refused handshake answers with a plain HTTP error (401, 404, 409 ...) in the usual JSON shape, so clients —
Daytona's SDK included — see the status they would get from the REST route.
"""

from __future__ import annotations

from fastapi import WebSocket

from .._codes import ErrorCode
from .auth import KeyCache, Principal
from .errors import ApiError, error_response
from .sandboxes import SandboxService


async def deny(ws: WebSocket, exc: ApiError) -> None:
    await ws.send_denial_response(error_response(exc.code, exc.message))


async def open_toolbox(ws: WebSocket, sandbox_id: str) -> tuple[Principal, SandboxService] | None:
    """Authenticate the handshake and check the sandbox runs; on failure answer the error and return None."""
    header = ws.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    keys: KeyCache = ws.app.state.keys
    principal = keys.lookup(key.strip()) if scheme.lower() == "bearer" and key.strip() else None
    if principal is None:
        await deny(ws, ApiError(ErrorCode.UNAUTHORIZED, "missing or invalid API key"))
        return None
    svc: SandboxService = ws.app.state.sandboxes
    try:
        svc.require_running(principal.organization_id, sandbox_id)
    except ApiError as exc:
        await deny(ws, exc)
        return None
    return principal, svc
