"""/api/toolbox/{sandboxId}/process/...: running commands in the sandbox."""

from __future__ import annotations

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from ..._codes import ErrorCode
from ...node.agent_client import AgentError, AgentUnavailable, ExecStream
from ..errors import ApiError
from ..redact import redact_stream
from ..schemas import ExecuteRequest, ExecuteResponse
from ..ws import as_control, deny, incoming, open_toolbox, pump_both
from .toolbox import Auth, _agent, _call, _until_disconnect, audited, effective_timeout, masked, secrets_for

router = APIRouter(prefix="/toolbox/{sandbox_id}", tags=["process"])


@router.post(
    "/process/execute", response_model=ExecuteResponse, responses={408: {"description": "timed out"}}
)
async def execute(sandbox_id: str, body: ExecuteRequest, request: Request, who: Auth) -> ExecuteResponse:
    """Run a shell command and answer its exit code and output once it ends."""
    svc, agent = _agent(request, sandbox_id, who)
    inj = secrets_for(svc, who.organization_id, sandbox_id)
    st = request.app.state.settings
    timeout = effective_timeout(st, body.timeout)
    res = await _until_disconnect(
        request,
        _call(
            svc,
            sandbox_id,
            agent.exec(
                body.command,
                cwd=body.cwd,
                env=inj.merged(body.envs),
                timeout=timeout,
                max_output=st.max_output_bytes,
            ),
        ),
    )
    audited(
        request, "process", sandbox_id, kind="exec", command=masked(inj, body.command), cwd=body.cwd, user=None,
        envNames=sorted(body.envs or {}), exitCode=res.exit_code, timedOut=res.timed_out,
        durationMs=round(res.duration_ms, 3),
    )  # fmt: skip
    stdout = inj.redactor.text(res.stdout)
    stderr = inj.redactor.text(res.stderr)
    if res.timed_out:
        raise ApiError(
            ErrorCode.PROCESS_EXECUTION_TIMEOUT, f"command timed out after {timeout or 0:g}s and was killed",
            stdout=stdout, stderr=stderr,
        )  # fmt: skip
    return ExecuteResponse(
        exitCode=res.exit_code, result=stdout + stderr, stdout=stdout, stderr=stderr, truncated=res.truncated,
        durationMs=round(res.duration_ms, 3),
    )  # fmt: skip


STDOUT_MARK, STDERR_MARK = b"\x01\x01\x01", b"\x02\x02\x02"


@router.websocket("/process/execute/stream")
async def execute_stream(ws: WebSocket, sandbox_id: str) -> None:
    """Run a command and stream its output as it happens (sandburg).

    The client's first message is JSON `{"command", "cwd"?, "envs"?, "timeout"?, "stdin"?: bool}`. The server sends
    binary frames `\\x01\\x01\\x01` + stdout bytes and `\\x02\\x02\\x02` + stderr bytes (Daytona's log markers), then a
    text frame `{"type": "control", "status": "exited", "exitCode", "timedOut", "truncated", "durationMs"}` and
    closes with 1000. While it runs, the client may send binary frames (stdin bytes), `{"type": "stdin", "data"}`,
    `{"type": "stdin_close"}` or `{"type": "signal", "signal": N}`. A client that disconnects kills the command.
    """
    opened = await open_toolbox(ws, sandbox_id)
    if opened is None:
        return
    who, svc = opened
    try:
        inj = secrets_for(svc, who.organization_id, sandbox_id)
    except ApiError as exc:
        await deny(ws, exc)
        return
    await ws.accept()
    try:
        first = await ws.receive_json()
        req = ExecuteRequest.model_validate({k: v for k, v in first.items() if k != "stdin"})
    except WebSocketDisconnect:
        return
    except (ValueError, TypeError, AttributeError, ValidationError) as exc:
        await ws.send_json({"type": "control", "status": "error", "error": f"bad request: {exc}"})
        await ws.close(code=1008)
        return
    st = ws.app.state.settings
    timeout = effective_timeout(st, req.timeout)
    agent = svc.node.agent(sandbox_id)
    stream = agent.exec_stream(
        req.command, cwd=req.cwd, env=inj.merged(req.envs), timeout=timeout, max_output=st.max_output_bytes,
        stdin=bool(first.get("stdin")),
    )  # fmt: skip

    async def pump_input(proc: ExecStream) -> None:
        async for frame in incoming(ws):
            if isinstance(frame, bytes):
                await proc.write_stdin(frame)
                continue
            ctl = as_control(frame) or {}
            if ctl.get("type") == "stdin" and isinstance(ctl.get("data"), str):
                await proc.write_stdin(ctl["data"].encode())
            elif ctl.get("type") == "stdin_close":
                await proc.close_stdin()
            elif ctl.get("type") == "signal" and isinstance(ctl.get("signal"), int):
                await proc.send_signal(ctl["signal"])

    res = None
    try:
        async with stream as proc:

            async def forward() -> None:
                chunks = redact_stream(proc, inj.redactor) if inj.redactor else proc
                async for name, chunk in chunks:
                    await ws.send_bytes((STDOUT_MARK if name == "stdout" else STDERR_MARK) + chunk)

            await pump_both(forward(), pump_input(proc))
            res = proc.result
        await ws.send_json({
            "type": "control", "status": "exited", "exitCode": res.exit_code, "timedOut": res.timed_out,
            "truncated": res.truncated, "durationMs": res.duration_ms,
        })  # fmt: skip
        await ws.close(code=1000)
    except WebSocketDisconnect:
        pass  # leaving the `async with` early dropped the agent connection: the command was killed
    except (AgentError, AgentUnavailable) as exc:
        await ws.send_json({"type": "control", "status": "error", "error": str(exc)})
        await ws.close(code=1011)
    finally:  # a command the client's disconnect killed has no exit code
        audited(
            ws, "process", sandbox_id, kind="exec-stream", command=masked(inj, req.command), cwd=req.cwd, user=None,
            envNames=sorted(req.envs or {}), exitCode=res.exit_code if res else None,
            timedOut=res.timed_out if res else None, durationMs=round(res.duration_ms, 3) if res else None,
        )  # fmt: skip
