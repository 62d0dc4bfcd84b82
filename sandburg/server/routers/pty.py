"""/api/toolbox/{sandboxId}/process/pty...: interactive terminals over WebSockets, Daytona's endpoints.

`GET .../process/pty/create-connect?id&cols&rows&cwd` upgrades to a WebSocket and starts a login shell on a
terminal; the server first sends `{"type": "control", "status": "connected"}`, then the terminal's output as binary
frames; the client's binary (or plain text) frames are keystrokes. `{"type": "resize", "cols", "rows"}` as a text
frame (sandburg) or `POST .../pty/{id}/resize` resize it. When the shell exits the server sends
`{"type": "control", "status": "exited", "exitCode": N}` and closes with 1000. A client that disappears hangs the
terminal up (SIGHUP, then SIGKILL). Environment variables come in Daytona's `X-Daytona-Pty-Envs~<base64url JSON>`
subprotocol or the `envs` query parameter.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect

from ..._codes import ErrorCode
from ...node.agent_client import AgentError, AgentUnavailable, ExecStream
from ..errors import ApiError
from ..redact import redact_stream
from ..schemas import PtyList, PtyResize, PtySessionInfo
from ..ws import as_control, deny, incoming, open_toolbox, pump_both
from .toolbox import Auth, _agent, audited, secrets_for

router = APIRouter(prefix="/toolbox/{sandbox_id}/process/pty", tags=["pty"])
EXIT_CONTROL = "X-Daytona-Pty-Exit-Control"
# a terminal echoes keystrokes: bytes held back as the possible start of a secret value go out after this long
ECHO_FLUSH = 0.05
ENVS_PREFIX = "X-Daytona-Pty-Envs~"


@dataclass
class Terminal:
    id: str
    cols: int
    rows: int
    cwd: str
    envs: dict[str, str]
    created: float = field(default_factory=time.time)
    proc: ExecStream | None = None
    ws: WebSocket | None = None


def _registry(app: Any) -> dict[tuple[str, str], Terminal]:
    reg: dict[tuple[str, str], Terminal] | None = getattr(app.state, "terminals", None)
    if reg is None:
        reg = app.state.terminals = {}
    return reg


def _info(t: Terminal) -> PtySessionInfo:
    created = datetime.fromtimestamp(t.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return PtySessionInfo(
        id=t.id,
        active=t.proc is not None,
        cols=t.cols,
        rows=t.rows,
        createdAt=created,
        cwd=t.cwd,
        envs=t.envs,
    )


def _envs(ws: WebSocket) -> dict[str, str]:
    envs: dict[str, str] = {}
    for proto in ws.scope.get("subprotocols", []):
        if proto.startswith(ENVS_PREFIX):
            raw = proto[len(ENVS_PREFIX) :]
            try:
                parsed = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
            except ValueError:
                continue
            if isinstance(parsed, dict):
                envs.update({str(k): str(v) for k, v in parsed.items()})
    q = ws.query_params.get("envs")
    if q:
        try:
            parsed = json.loads(q)
            if isinstance(parsed, dict):
                envs.update({str(k): str(v) for k, v in parsed.items()})
        except ValueError:
            pass
    return envs


def _int_param(ws: WebSocket, name: str, default: int) -> int:
    try:
        value = int(ws.query_params.get(name, default))
    except ValueError:
        return -1
    return value


@router.websocket("/create-connect")
async def create_connect(ws: WebSocket, sandbox_id: str) -> None:
    opened = await open_toolbox(ws, sandbox_id)
    if opened is None:
        return
    who, svc = opened
    pty_id = ws.query_params.get("id") or f"pty-{int(time.time() * 1000)}"
    cols, rows = _int_param(ws, "cols", 80), _int_param(ws, "rows", 24)
    if not (0 < cols <= 1000 and 0 < rows <= 1000) or len(pty_id) > 64:
        await deny(
            ws, ApiError(ErrorCode.VALIDATION_ERROR, "cols and rows must be in 1..1000, id at most 64 chars")
        )
        return
    reg = _registry(ws.app)
    if (sandbox_id, pty_id) in reg:
        await deny(ws, ApiError(ErrorCode.SESSION_EXISTS, f"terminal {pty_id!r} already exists"))
        return
    cwd = ws.query_params.get("cwd") or "/workspace"
    term = Terminal(pty_id, cols, rows, cwd, _envs(ws))  # what the client set: listed, unlike secret values
    try:
        inj = secrets_for(svc, who.organization_id, sandbox_id)
    except ApiError as exc:
        await deny(ws, exc)
        return
    offered = ws.scope.get("subprotocols", [])
    await ws.accept(subprotocol=EXIT_CONTROL if EXIT_CONTROL in offered else None)
    reg[(sandbox_id, pty_id)] = term
    agent = svc.node.agent(sandbox_id)
    code: int | None = None
    try:
        async with agent.pty(cols=cols, rows=rows, cwd=cwd, env=inj.merged(term.envs) or None) as proc:
            term.proc, term.ws = proc, ws
            await ws.send_json({"type": "control", "status": "connected"})

            async def forward() -> None:
                chunks = redact_stream(proc, inj.redactor, ECHO_FLUSH) if inj.redactor else proc
                async for _name, chunk in chunks:
                    await ws.send_bytes(chunk)

            await pump_both(forward(), _keystrokes(ws, proc, term))
            code = proc.result.exit_code
        term.proc = None
        await ws.send_json({"type": "control", "status": "exited", "exitCode": code})
        await ws.close(code=1000, reason=json.dumps({"exitCode": code}))
    except WebSocketDisconnect:
        pass  # leaving `async with` early dropped the agent connection: the agent hangs the terminal up
    except (AgentError, AgentUnavailable) as exc:
        await _try_close(ws, f"terminal failed: {exc}")
    finally:
        term.proc = None
        reg.pop((sandbox_id, pty_id), None)
        audited(
            ws, "process", sandbox_id, kind="pty", ptyId=pty_id, command="<login shell>", cwd=cwd, user=None,
            envNames=sorted(term.envs), exitCode=code, durationMs=round((time.time() - term.created) * 1000, 3),
        )  # fmt: skip


async def _keystrokes(ws: WebSocket, proc: ExecStream, term: Terminal) -> None:
    async for frame in incoming(ws):
        ctl = as_control(frame) if isinstance(frame, str) else None
        if ctl is not None and ctl.get("type") == "resize":
            cols, rows = ctl.get("cols"), ctl.get("rows")
            if isinstance(cols, int) and isinstance(rows, int) and 0 < cols <= 1000 and 0 < rows <= 1000:
                term.cols, term.rows = cols, rows
                await proc.resize(cols, rows)
        else:  # keystrokes, as binary or text frames
            await proc.write_stdin(frame if isinstance(frame, bytes) else frame.encode())


async def _try_close(ws: WebSocket, error: str) -> None:
    try:
        await ws.send_json({"type": "control", "status": "error", "error": error})
        await ws.close(code=1011)
    except (WebSocketDisconnect, RuntimeError):
        pass


def _find(request: Request, sandbox_id: str, pty_id: str) -> Terminal:
    term = _registry(request.app).get((sandbox_id, pty_id))
    if term is None:
        raise ApiError(ErrorCode.PTY_NOT_FOUND, f"terminal {pty_id!r} not found")
    return term


@router.get("", response_model=PtyList)
async def list_ptys(sandbox_id: str, request: Request, who: Auth) -> PtyList:
    _agent(request, sandbox_id, who)
    return PtyList(sessions=[_info(t) for (sid, _), t in _registry(request.app).items() if sid == sandbox_id])


@router.get("/{pty_id}", response_model=PtySessionInfo)
async def get_pty(sandbox_id: str, pty_id: str, request: Request, who: Auth) -> PtySessionInfo:
    _agent(request, sandbox_id, who)
    return _info(_find(request, sandbox_id, pty_id))


@router.post("/{pty_id}/resize", response_model=PtySessionInfo)
async def resize_pty(
    sandbox_id: str, pty_id: str, body: PtyResize, request: Request, who: Auth
) -> PtySessionInfo:
    _agent(request, sandbox_id, who)
    term = _find(request, sandbox_id, pty_id)
    term.cols, term.rows = body.cols, body.rows
    if term.proc is not None:
        await term.proc.resize(body.cols, body.rows)
    return _info(term)


@router.delete("/{pty_id}")
async def kill_pty(sandbox_id: str, pty_id: str, request: Request, who: Auth) -> dict[str, str]:
    """Hang the terminal up (its shell gets SIGHUP, then SIGKILL)."""
    _agent(request, sandbox_id, who)
    term = _find(request, sandbox_id, pty_id)
    if term.proc is not None:
        await term.proc.send_signal(1)
    return {}
