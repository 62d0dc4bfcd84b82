"""/api/toolbox/{sandboxId}/process/session...: long-lived shells, Daytona's paths and shapes.

Commands run in the sandbox's session shell (state kept between them); their output is recorded by the agent in
the sandbox's run dir on the host, so logs are read here by offset — after a client disconnect or a server
restart too — and followed over a WebSocket with Daytona's stream markers.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, WebSocket, WebSocketDisconnect

from ..._codes import ErrorCode
from ...node import sessions as S
from ..errors import ApiError
from ..redact import Redactor
from ..schemas import (
    CommandInput,
    CommandLogs,
    CommandSignal,
    CreateSession,
    SessionCommand,
    SessionExecuteRequest,
    SessionExecuteResponse,
    SessionOut,
)
from ..ws import deny, open_toolbox
from .toolbox import Auth, _agent, _call, audited, masked, secrets_for

router = APIRouter(prefix="/toolbox/{sandbox_id}/process/session", tags=["sessions"])
STDOUT_MARK, STDERR_MARK = b"\x01\x01\x01", b"\x02\x02\x02"
_FOLLOW_POLL = 0.05


def _iso(ts: float | None) -> str | None:
    return (
        datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if ts
        else None
    )


def _command_out(c: S.CommandInfo) -> SessionCommand:
    return SessionCommand(
        id=c.id, command=c.command, exitCode=c.exit_code, runAsync=c.background, truncated=c.truncated,
        startedAt=_iso(c.started), endedAt=_iso(c.ended),
    )  # fmt: skip


def _redactor(request: Request, sandbox_id: str, org_id: str) -> Redactor:
    """Masks the current values of the sandbox's secrets in the logs answered (docs/secrets.md)."""
    return secrets_for(request.app.state.sandboxes, org_id, sandbox_id, inject=False).redactor


def _run_dir(request: Request, sandbox_id: str) -> str:
    return str(request.app.state.sandboxes.node.run_path(sandbox_id))


def _session(request: Request, sandbox_id: str, session_id: str) -> S.SessionInfo:
    info = S.session(_run_dir(request, sandbox_id), session_id)
    if info is None:
        raise ApiError(ErrorCode.SESSION_NOT_FOUND, f"session {session_id!r} not found")
    return info


def _command(request: Request, sandbox_id: str, session_id: str, command_id: str) -> S.CommandInfo:
    _session(request, sandbox_id, session_id)
    info = S.command(_run_dir(request, sandbox_id), session_id, command_id)
    if info is None:
        raise ApiError(
            ErrorCode.COMMAND_NOT_FOUND, f"command {command_id!r} not found in session {session_id!r}"
        )
    return info


@router.post("", status_code=201, response_class=Response)
async def create_session(sandbox_id: str, body: CreateSession, request: Request, who: Auth) -> Response:
    """Start a session shell; 409 SESSION_EXISTS if the id is taken. The sandbox's secrets are in its env as they
    are now: like any shell, a session keeps the values it started with."""
    svc, agent = _agent(request, sandbox_id, who)
    env = secrets_for(svc, who.organization_id, sandbox_id).merged(None)
    await _call(svc, sandbox_id, S.create(agent, body.sessionId, env=env))
    audited(request, "process", sandbox_id, kind="session-start", sessionId=body.sessionId, user=None)
    return Response(status_code=201)


@router.get("", response_model=list[SessionOut])
async def list_sessions(sandbox_id: str, request: Request, who: Auth) -> list[SessionOut]:
    _agent(request, sandbox_id, who)
    run = _run_dir(request, sandbox_id)
    out = []
    for sid in S.session_ids(run):
        info = S.session(run, sid)
        if info is not None:
            out.append(SessionOut(sessionId=sid, commands=[_command_out(c) for c in info.commands]))
    return out


@router.get("/{session_id}", response_model=SessionOut)
async def get_session(sandbox_id: str, session_id: str, request: Request, who: Auth) -> SessionOut:
    _agent(request, sandbox_id, who)
    info = _session(request, sandbox_id, session_id)
    return SessionOut(sessionId=info.id, commands=[_command_out(c) for c in info.commands])


@router.delete("/{session_id}", status_code=204, response_class=Response)
async def delete_session(sandbox_id: str, session_id: str, request: Request, who: Auth) -> Response:
    """End the session: its shell and every command still running in it are killed; its logs go."""
    svc, agent = _agent(request, sandbox_id, who)
    await _call(svc, sandbox_id, S.delete(agent, session_id))
    return Response(status_code=204)


@router.post(
    "/{session_id}/exec",
    response_model=SessionExecuteResponse,
    responses={202: {"model": SessionExecuteResponse}},
)
async def session_exec(
    sandbox_id: str,
    session_id: str,
    body: SessionExecuteRequest,
    request: Request,
    response: Response,
    who: Auth,
) -> SessionExecuteResponse:
    """Run a command in the session: wait for it (200, with its output), or not (`runAsync`: 202, its id)."""
    svc, agent = _agent(request, sandbox_id, who)
    background = bool(body.runAsync or body.async_)
    cap = request.app.state.settings.max_output_bytes
    res = await _call(svc, sandbox_id, S.execute(agent, session_id, body.command, background, cap))
    cmd_id = str(res["cmd_id"])
    ran = S.command(_run_dir(request, sandbox_id), session_id, cmd_id)
    inj = secrets_for(svc, who.organization_id, sandbox_id, inject=False)  # masks its output and its record
    audited(  # a background command is recorded as started: its exit code is in the session's command info
        request, "process", sandbox_id, kind="session", sessionId=session_id, cmdId=cmd_id, command=masked(inj, body.command),
        background=background, user=None, exitCode=res.get("exit_code"),
        durationMs=round((ran.ended - ran.started) * 1000, 3) if ran and ran.ended and ran.started else None,
    )  # fmt: skip
    if background or res.get("detached"):
        response.status_code = 202
        return SessionExecuteResponse(cmdId=cmd_id)
    run = _run_dir(request, sandbox_id)
    chunk = S.read_log(run, session_id, cmd_id, 0, cap + (1 << 20))
    output, out, err = S.split(chunk.records)
    info = S.command(run, session_id, cmd_id)
    red = inj.redactor
    return SessionExecuteResponse(
        cmdId=cmd_id, output=red.text(output), stdout=red.text(out), stderr=red.text(err),
        exitCode=res.get("exit_code"), truncated=bool(info and info.truncated),
    )  # fmt: skip


@router.get("/{session_id}/command/{command_id}", response_model=SessionCommand)
async def get_command(
    sandbox_id: str, session_id: str, command_id: str, request: Request, who: Auth
) -> SessionCommand:
    _agent(request, sandbox_id, who)
    return _command_out(_command(request, sandbox_id, session_id, command_id))


@router.get("/{session_id}/command/{command_id}/logs", response_model=CommandLogs)
async def command_logs(
    sandbox_id: str,
    session_id: str,
    command_id: str,
    request: Request,
    who: Auth,
    offset: Annotated[int, Query(ge=0, description="byte offset into the command's log (sandburg)")] = 0,
) -> CommandLogs:
    """The command's output so far, from `offset`; `nextOffset` continues where this answer ended."""
    _agent(request, sandbox_id, who)
    info = _command(request, sandbox_id, session_id, command_id)
    cap = request.app.state.settings.max_output_bytes
    chunk = S.read_log(_run_dir(request, sandbox_id), session_id, command_id, offset, cap + (1 << 20))
    output, out, err = S.split(chunk.records)
    red = _redactor(request, sandbox_id, who.organization_id)
    return CommandLogs(
        output=red.text(output), stdout=red.text(out), stderr=red.text(err), nextOffset=chunk.next_offset,
        truncated=info.truncated,
    )  # fmt: skip


@router.websocket("/{session_id}/command/{command_id}/logs")
async def follow_logs(
    ws: WebSocket, sandbox_id: str, session_id: str, command_id: str, offset: int = 0
) -> None:
    """Replay the log from `offset`, then follow it live until the command ends (close 1000).

    Frames carry Daytona's markers: b"\\x01\\x01\\x01" + stdout bytes, b"\\x02\\x02\\x02" + stderr bytes."""
    opened = await open_toolbox(ws, sandbox_id, write=False)
    if opened is None:
        return
    who, svc = opened
    run = str(svc.node.run_path(sandbox_id))
    if S.command(run, session_id, command_id) is None:
        await deny(ws, ApiError(ErrorCode.COMMAND_NOT_FOUND, f"command {command_id!r} not found"))
        return
    try:
        red = secrets_for(svc, who.organization_id, sandbox_id, inject=False).redactor
    except ApiError as exc:
        await deny(ws, exc)
        return
    # per stream, a value split across records is masked too; the end held back goes out when the command ends
    masks = {S.STDOUT: red.stream(), S.STDERR: red.stream()}

    async def send(records: list[tuple[int, bytes]], last: bool = False) -> None:
        for stream, data in records:
            mask = masks.get(stream)
            data = mask.feed(data) if mask is not None else data
            if data:
                await ws.send_bytes((STDOUT_MARK if stream == S.STDOUT else STDERR_MARK) + data)
        for stream, mask in masks.items() if last else ():
            if mask.holding:
                await ws.send_bytes((STDOUT_MARK if stream == S.STDOUT else STDERR_MARK) + mask.flush())

    await ws.accept()
    pos = max(0, offset)
    try:
        while True:
            chunk = await asyncio.to_thread(S.read_log, run, session_id, command_id, pos, 1 << 20)
            await send(chunk.records)
            pos = chunk.next_offset
            if chunk.records:
                continue
            info = S.command(run, session_id, command_id)
            if info is None or info.exit_code is not None:
                final = await asyncio.to_thread(S.read_log, run, session_id, command_id, pos, 1 << 20)
                await send(final.records, last=True)  # written between the last read and the end
                break
            await asyncio.sleep(_FOLLOW_POLL)
        await ws.close(code=1000)
    except WebSocketDisconnect:
        pass


@router.post(
    "/{session_id}/command/{command_id}/input",
    status_code=204,
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": CommandInput.model_json_schema()}},
        }
    },
)
async def command_input(
    sandbox_id: str, session_id: str, command_id: str, request: Request, who: Auth
) -> Response:
    """Write to a background command's stdin (`close: true` then ends it); 410 once the command has ended.

    Bytes that are not UTF-8 travel as JSON `\\udcXX` escapes (docs/api.md), which pydantic refuses: the body is
    parsed with the json module and checked here."""
    svc, agent = _agent(request, sandbox_id, who)
    raw = await request.body()
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ApiError(ErrorCode.VALIDATION_ERROR, "body: not JSON") from exc
    if not isinstance(body, dict) or set(body) - {"data", "close"}:
        raise ApiError(ErrorCode.VALIDATION_ERROR, 'body: expected {"data": str, "close"?: bool}')
    data, close = body.get("data", ""), body.get("close", False)
    if not isinstance(data, str) or not isinstance(close, bool) or len(data) > 1 << 20:
        raise ApiError(ErrorCode.VALIDATION_ERROR, "data: a string of at most 1 MiB; close: a boolean")
    await _call(svc, sandbox_id, S.send_input(agent, session_id, command_id, data, close))
    return Response(status_code=204)


@router.post("/{session_id}/command/{command_id}/signal", status_code=204, response_class=Response)
async def command_signal(
    sandbox_id: str, session_id: str, command_id: str, body: CommandSignal, request: Request, who: Auth
) -> Response:
    """Send a signal to a background command's process group (sandburg)."""
    svc, agent = _agent(request, sandbox_id, who)
    await _call(svc, sandbox_id, S.signal(agent, session_id, command_id, body.signal))
    return Response(status_code=204)
