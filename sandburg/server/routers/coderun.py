"""`POST /api/toolbox/{sandboxId}/process/code-run`: Daytona's `process.code_run`.

The code goes to the language's runtime in the sandbox through the agent, like an exec: python (python3, else
python) and javascript (node) read it from stdin, so the working directory stays first on the import path;
typescript (tsx, ts-node, else node with --experimental-strip-types) and bash run it from a temporary file that is
removed afterwards. `argv` become the program's arguments, `envs` its extra environment. The language is the
request's, else the sandbox's `code-toolbox-language` label (set by Daytona's SDKs), else python. A runtime the
image lacks is a 400 BAD_REQUEST that says so, never a bare exit status 127.
"""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Request

from ..._codes import ErrorCode
from ..errors import ApiError
from ..schemas import CodeRunArtifacts, CodeRunRequest, CodeRunResponse
from .toolbox import Auth, _agent, _call, _until_disconnect, audited, effective_timeout, masked, secrets_for

router = APIRouter(prefix="/toolbox/{sandbox_id}", tags=["process"])

LANGUAGE_LABEL = "code-toolbox-language"
NO_RUNTIME = "__sandburg_no_runtime__"
_MISSING = f"echo {NO_RUNTIME} >&2; exit 127"
_TEMP = "d=$(mktemp -d) || exit 1\ntrap 'rm -rf \"$d\"' EXIT\n"

# language -> (what it needs, the POSIX sh script run as `sh -c SCRIPT sh ARGV...` with the code on stdin)
RUNNERS: dict[str, tuple[str, str]] = {
    "python": (
        "python3 (or python)",
        'for p in python3 python; do command -v "$p" >/dev/null 2>&1 && exec "$p" -u - "$@"; done\n'
        + _MISSING,
    ),
    "javascript": ("node", 'command -v node >/dev/null 2>&1 && exec node - "$@"\n' + _MISSING),
    "typescript": (
        "tsx, ts-node, or a node that supports --experimental-strip-types (22.6 or later)",
        _TEMP + 'cat > "$d/code.ts"\n'
        'if command -v tsx >/dev/null 2>&1; then tsx "$d/code.ts" "$@"\n'
        'elif command -v ts-node >/dev/null 2>&1; then ts-node --transpile-only "$d/code.ts" "$@"\n'
        "elif command -v node >/dev/null 2>&1 && node --experimental-strip-types --version >/dev/null 2>&1; then\n"
        '  node --experimental-strip-types --no-warnings "$d/code.ts" "$@"\n'
        f"else {_MISSING}; fi",
    ),
    "bash": (
        "bash",
        f"command -v bash >/dev/null 2>&1 || {{ {_MISSING}; }}\n"
        + _TEMP
        + 'cat > "$d/code.sh"\nbash "$d/code.sh" "$@" </dev/null',
    ),
}


@router.post(
    "/process/code-run",
    response_model=CodeRunResponse,
    responses={
        400: {"description": "unknown language, or no runtime for it"},
        408: {"description": "timed out"},
    },
)
async def code_run(sandbox_id: str, body: CodeRunRequest, request: Request, who: Auth) -> CodeRunResponse:
    """Run a snippet of python, javascript, typescript or bash and answer its exit code and output
    (`result` = stdout + stderr; `artifacts.charts` stays empty: sandburg does not capture plots)."""
    svc, agent = _agent(request, sandbox_id, who)
    language = body.language.strip().lower()
    if not language:
        language = svc.get(who.organization_id, sandbox_id).labels.get(LANGUAGE_LABEL, "python").lower()
    if language not in RUNNERS:
        raise ApiError(ErrorCode.VALIDATION_ERROR, f"language: one of {', '.join(RUNNERS)}, got {language!r}")
    needs, script = RUNNERS[language]
    inj = secrets_for(svc, who.organization_id, sandbox_id)
    st = request.app.state.settings
    timeout = effective_timeout(st, body.timeout)
    res = await _until_disconnect(
        request,
        _call(
            svc,
            sandbox_id,
            agent.exec(
                argv=["/bin/sh", "-c", script, "sh", *(body.argv or [])],
                env=inj.merged(body.envs),
                timeout=timeout,
                max_output=st.max_output_bytes,
                stdin=body.code.encode("utf-8", "replace"),
            ),  # fmt: skip
        ),
    )
    code = body.code.encode("utf-8", "replace")
    audited(  # the code itself is not recorded (it may hold anything): its size and digest identify it
        request, "process", sandbox_id, kind="code-run", command=f"{language} <code>", argv=[masked(inj, a) for a in body.argv or []],
        codeBytes=len(code), codeSha256=hashlib.sha256(code).hexdigest(), user=None,
        envNames=sorted(body.envs or {}), exitCode=res.exit_code, timedOut=res.timed_out,
        durationMs=round(res.duration_ms, 3),
    )  # fmt: skip
    stdout = inj.redactor.text(res.stdout)
    stderr = inj.redactor.text(res.stderr)
    if res.exit_code == 127 and not stdout and stderr.strip() == NO_RUNTIME:
        raise ApiError(
            ErrorCode.BAD_REQUEST,
            f"cannot run {language}: the sandbox's image has no {needs}; install it in the sandbox or use an "
            "image that has it",
        )
    if res.timed_out:
        raise ApiError(
            ErrorCode.PROCESS_EXECUTION_TIMEOUT, f"code timed out after {timeout or 0:g}s and was killed",
            stdout=stdout, stderr=stderr,
        )  # fmt: skip
    return CodeRunResponse(
        exitCode=res.exit_code, result=stdout + stderr, artifacts=CodeRunArtifacts(), stdout=stdout,
        stderr=stderr, truncated=res.truncated, durationMs=round(res.duration_ms, 3),
    )  # fmt: skip
