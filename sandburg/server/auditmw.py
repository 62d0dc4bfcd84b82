"""The audit record of every API call: a plain ASGI middleware (no per-request task, unlike BaseHTTPMiddleware).

For each HTTP request and WebSocket under /api with a valid API key it sets the request's principal for
`AuditLog.record` (audit.principal), and records type `api`: method (`WS` for a WebSocket), route template, status
(101 for an accepted WebSocket, the denial's status otherwise), duration in ms and, when the path names one, the
sandbox. An HTTP call is recorded just before its last body chunk goes out, so a client's next request is recorded
after it; a WebSocket when it ends. Calls without a valid key are not chained (no tenant): the server log has them.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import audit
from .auth import KeyCache, Principal

_SANDBOX_PARAMS = ("sandbox_id", "sandbox_id_or_name")


def _principal(scope: Scope) -> Principal | None:
    keys: KeyCache | None = getattr(scope["app"].state, "keys", None)
    if keys is None:
        return None
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and key.strip():
                return keys.lookup(key.strip())
    return None


def _template(path: str, route_path: str | None) -> str:
    """The route's template under the prefixes it was included with: `/api` + `/toolbox/{sandbox_id}/...` (an
    included route knows only its own part)."""
    if not route_path:
        return path
    parts = path.split("/")
    keep = len(parts) - route_path.count("/")
    return "/".join(parts[:keep]) + route_path if keep >= 1 else route_path


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not scope.get("path", "").startswith("/api/"):
            await self.app(scope, receive, send)
            return
        who = _principal(scope)
        log = getattr(scope["app"].state, "audit", None)
        if who is None or log is None or not log.enabled:
            await self.app(scope, receive, send)
            return
        token = audit.principal.set((who.organization_id, who.key_id))
        started = time.perf_counter()
        state: dict[str, Any] = {"status": None, "done": False}

        def emit() -> None:
            if state["done"]:
                return
            state["done"] = True
            route = scope.get("route")
            params: dict[str, Any] = scope.get("path_params") or {}
            sandbox = next((str(params[p]) for p in _SANDBOX_PARAMS if p in params), None)
            log.record(
                "api", sandbox, {
                    "method": scope.get("method", "WS") if scope["type"] == "http" else "WS",
                    "route": _template(scope["path"], getattr(route, "path", None)), "status": state["status"],
                    "durationMs": round((time.perf_counter() - started) * 1000, 3),
                },
            )  # fmt: skip

        async def watch(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start" or kind == "websocket.http.response.start":
                state["status"] = message["status"]
            elif kind == "websocket.accept":
                state["status"] = 101
            elif kind == "websocket.close" and state["status"] is None:
                state["status"] = 403  # closed before accepting: the server's refusal
            if kind == "http.response.body" and not message.get("more_body", False):
                emit()
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if state["status"] is None and scope["type"] == "http":
                state["status"] = 500
            emit()
            audit.principal.reset(token)
