"""Shared plumbing of the toolbox routers (/api/toolbox/{sandboxId}/...): the sandbox's agent, and agent failures
as API errors. The routes live in `process.py` and `files.py`.

Paths, bodies and multipart framing follow Daytona's toolbox so its SDKs work unchanged; errors raised inside the
sandbox keep Daytona's codes (FILE_NOT_FOUND, PROCESS_EXECUTION_TIMEOUT, ...).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from ..._codes import ErrorCode
from ...node.agent_client import AgentClient, AgentError, AgentUnavailable
from ..auth import Principal, authenticate
from ..config import Settings
from ..errors import ApiError
from ..sandboxes import SandboxService
from ..secretservice import NO_SECRETS, Injection

Auth = Annotated[Principal, Depends(authenticate)]
T = TypeVar("T")
CHUNK = 1 << 20


def _agent(request: Request, sandbox_id: str, who: Principal) -> tuple[SandboxService, AgentClient]:
    svc: SandboxService = request.app.state.sandboxes
    svc.require_running(who.organization_id, sandbox_id)
    return svc, svc.node.agent(sandbox_id)


def secrets_for(svc: SandboxService, org_id: str, sandbox_id: str, *, inject: bool = True) -> Injection:
    """The current values of the sandbox's secrets for a process about to start, and their redactor (one per
    process start: a rotation is seen by the next command). `inject=False`: only to mask output (a log read), not
    audited as secret use."""
    live = svc.require_running(org_id, sandbox_id)
    if svc.secrets is None or not live.secrets:
        return NO_SECRETS
    return svc.secrets.for_exec(org_id, live.secrets, sandbox_id if inject else None, audit=inject)


def audited(conn: HTTPConnection, type: str, sandbox_id: str, **payload: Any) -> None:
    """One audit record (audit.py, docs/audit.md) of what this route did in the sandbox; never a secret value
    (env: names only)."""
    conn.app.state.audit.record(type, sandbox_id, payload)


def masked(inj: Injection, text: str) -> str:
    """`text` (a command line) with the values of the sandbox's secrets replaced by `***`, for the audit log: a
    client that pasted a value into a command must not leave it there."""
    return inj.redactor.text(text.encode("utf-8", "surrogateescape")) if inj.redactor else text


async def _call(svc: SandboxService, sandbox_id: str, awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except AgentError as exc:
        raise _agent_error(exc) from exc
    except AgentUnavailable as exc:
        raise _unavailable(svc, sandbox_id) from exc


def _agent_error(exc: AgentError) -> ApiError:
    try:
        code = ErrorCode(exc.code)
    except ValueError:
        code = ErrorCode.INTERNAL_ERROR
    return ApiError(code, exc.message)


def _unavailable(svc: SandboxService, sandbox_id: str) -> ApiError:
    if sandbox_id not in svc.live:
        return ApiError(ErrorCode.SANDBOX_NOT_RUNNING, f"sandbox {sandbox_id!r} stopped")
    return ApiError(ErrorCode.AGENT_UNAVAILABLE, "the sandbox's toolbox agent is not answering")


async def _until_disconnect(request: Request, awaitable: Awaitable[T]) -> T:
    """Run `awaitable`, cancelling it (so the command is killed) if the client goes away first."""
    task = asyncio.ensure_future(awaitable)

    async def watch() -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(0.25)

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        raise ApiError(ErrorCode.BAD_REQUEST, "client disconnected")
    return task.result()


def effective_timeout(settings: Settings, given: float | None) -> float | None:
    """A command's timeout: none given → the server's cap; 0 → none at all (Daytona: "0 disables the limit";
    the command still ends when its client goes away)."""
    return float(settings.exec_max_timeout) if given is None else (float(given) or None)
