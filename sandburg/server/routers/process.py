"""/api/toolbox/{sandboxId}/process/...: running commands in the sandbox."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..._codes import ErrorCode
from ..errors import ApiError
from ..schemas import ExecuteRequest, ExecuteResponse
from .toolbox import Auth, _agent, _call, _until_disconnect

router = APIRouter(prefix="/toolbox/{sandbox_id}", tags=["process"])


@router.post(
    "/process/execute", response_model=ExecuteResponse, responses={408: {"description": "timed out"}}
)
async def execute(sandbox_id: str, body: ExecuteRequest, request: Request, who: Auth) -> ExecuteResponse:
    """Run a shell command and answer its exit code and output once it ends."""
    svc, agent = _agent(request, sandbox_id, who)
    st = request.app.state.settings
    timeout = body.timeout if body.timeout is not None else float(st.exec_max_timeout)
    res = await _until_disconnect(
        request,
        _call(
            svc,
            sandbox_id,
            agent.exec(
                body.command, cwd=body.cwd, env=body.envs, timeout=timeout, max_output=st.max_output_bytes
            ),
        ),
    )
    stdout = res.stdout.decode(errors="replace")
    stderr = res.stderr.decode(errors="replace")
    if res.timed_out:
        raise ApiError(
            ErrorCode.PROCESS_EXECUTION_TIMEOUT, f"command timed out after {timeout:g}s and was killed",
            stdout=stdout, stderr=stderr,
        )  # fmt: skip
    return ExecuteResponse(
        exitCode=res.exit_code, result=stdout + stderr, stdout=stdout, stderr=stderr, truncated=res.truncated,
        durationMs=round(res.duration_ms, 3),
    )  # fmt: skip
