"""WebSocket plumbing shared by the streaming routes: authentication at the handshake and error answers.

A refused handshake answers with a plain HTTP error (401, 404, 409 ...) in the usual JSON shape, so clients —
Daytona's SDK included — see the status they would get from the REST route.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from .._codes import ErrorCode
from . import access
from .auth import KeyCache, Principal
from .errors import ApiError, error_response
from .sandboxes import SandboxService


async def deny(ws: WebSocket, exc: ApiError) -> None:
    await ws.send_denial_response(error_response(exc.code, exc.message))


async def open_toolbox(
    ws: WebSocket, sandbox_id: str, write: bool = True
) -> tuple[Principal, SandboxService] | None:
    """Authenticate the handshake, check the key may use the toolbox (`write`: run something, not only read logs)
    and that the sandbox runs; on failure answer the error and return None."""
    header = ws.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    keys: KeyCache = ws.app.state.keys
    principal = keys.lookup(key.strip()) if scheme.lower() == "bearer" and key.strip() else None
    if principal is None:
        await deny(ws, ApiError(ErrorCode.UNAUTHORIZED, "missing or invalid API key"))
        return None
    svc: SandboxService = ws.app.state.sandboxes
    try:
        access.check(principal.role, principal.scopes, "POST" if write else "GET", ws.url.path)
        svc.require_running(principal.organization_id, sandbox_id)
    except ApiError as exc:
        await deny(ws, exc)
        return None
    return principal, svc


async def pump_both(output: Awaitable[None], inputs: Awaitable[None]) -> None:
    """Run the output pump until it ends; if the input side ends first (the client went away), stop the output
    pump too, so that leaving the caller's `async with` drops the agent connection and kills what runs there."""
    out_task = asyncio.ensure_future(output)
    in_task = asyncio.ensure_future(inputs)
    try:
        done, _ = await asyncio.wait({out_task, in_task}, return_when=asyncio.FIRST_COMPLETED)
        if out_task in done:
            out_task.result()
            return
        out_task.cancel()
        exc = in_task.exception()
        raise exc if exc is not None else WebSocketDisconnect(1000)
    finally:
        for task in (out_task, in_task):
            task.cancel()


async def incoming(ws: WebSocket) -> AsyncIterator[bytes | str]:
    """The client's frames (bytes or text) until it goes away, then WebSocketDisconnect."""
    while True:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(msg.get("code", 1000))
        if msg.get("bytes"):
            yield msg["bytes"]
        elif msg.get("text"):
            yield msg["text"]


def as_control(text: str) -> dict[str, Any] | None:
    """A text frame's JSON object (a control message), or None."""
    if not text.startswith("{"):
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None
