"""/api/toolbox/{sandboxId}/...: exec and files, relayed to the sandbox's toolbox agent.

Paths, bodies and multipart framing follow Daytona's toolbox so its SDKs work unchanged; errors raised inside the
sandbox keep Daytona's codes (FILE_NOT_FOUND, PROCESS_EXECUTION_TIMEOUT, ...).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import stat as stat_mod
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile

from ..._codes import STATUS, ErrorCode
from ...node.agent_client import AgentClient, AgentError, AgentUnavailable
from ..auth import Principal, authenticate
from ..errors import ApiError, error_body
from ..sandboxes import SandboxService
from ..schemas import (
    BulkUploadResult,
    DownloadRequest,
    ExecuteRequest,
    ExecuteResponse,
    FileInfo,
    UploadedFile,
    UploadResult,
)

router = APIRouter(prefix="/toolbox/{sandbox_id}", tags=["toolbox"])
Auth = Annotated[Principal, Depends(authenticate)]
T = TypeVar("T")
CHUNK = 1 << 20


def _agent(request: Request, sandbox_id: str, who: Principal) -> tuple[SandboxService, AgentClient]:
    svc: SandboxService = request.app.state.sandboxes
    svc.require_running(who.organization_id, sandbox_id)
    return svc, svc.node.agent(sandbox_id)


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


def _file_info(d: dict[str, Any]) -> FileInfo:
    mode = int(d["mode"])
    return FileInfo(
        name=d["name"],
        path=d["path"],
        isDir=bool(d["is_dir"]),
        size=int(d["size"]),
        mode=stat_mod.filemode(mode),
        permissions=f"{stat_mod.S_IMODE(mode):04o}",
        modTime=datetime.fromtimestamp(float(d["mtime"]), UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        owner=str(d["owner"]),
        group=str(d["group"]),
        linkTarget=d.get("link_target"),
    )


@router.get("/files", response_model=list[FileInfo])
async def list_files(
    sandbox_id: str, request: Request, who: Auth, path: str = "/workspace"
) -> list[FileInfo]:
    svc, agent = _agent(request, sandbox_id, who)
    return [_file_info(e) for e in await _call(svc, sandbox_id, agent.list(path))]


@router.get("/files/info", response_model=FileInfo)
async def file_info(sandbox_id: str, request: Request, who: Auth, path: Annotated[str, Query()]) -> FileInfo:
    svc, agent = _agent(request, sandbox_id, who)
    return _file_info(await _call(svc, sandbox_id, agent.stat(path)))


async def _open_download(
    svc: SandboxService, sandbox_id: str, agent: AgentClient, path: str
) -> AsyncIterator[bytes]:
    """Start reading `path`: errors surface here, before any byte is sent; then the rest streams."""
    gen = agent.read_file(path).__aiter__()
    try:
        first = await gen.__anext__()
    except StopAsyncIteration:
        first = b""
    except AgentError as exc:
        raise _agent_error(exc) from exc
    except AgentUnavailable as exc:
        raise _unavailable(svc, sandbox_id) from exc

    async def rest() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in gen:
            yield chunk

    return rest()


@router.get("/files/download", response_class=StreamingResponse)
async def download(
    sandbox_id: str, request: Request, who: Auth, path: Annotated[str, Query()]
) -> StreamingResponse:
    """The file's bytes, streamed."""
    svc, agent = _agent(request, sandbox_id, who)
    body = await _open_download(svc, sandbox_id, agent, path)
    return StreamingResponse(body, media_type="application/octet-stream")


async def _chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(CHUNK):
        yield chunk


@router.post("/files/upload", response_model=UploadResult)
async def upload(sandbox_id: str, request: Request, who: Auth, path: Annotated[str, Query()]) -> UploadResult:
    """Write one file (multipart field `file`); it appears whole or not at all."""
    svc, agent = _agent(request, sandbox_id, who)
    async with request.form(max_files=1, max_fields=10) as form:
        f = form.get("file")
        if not isinstance(f, UploadFile):
            raise ApiError(ErrorCode.VALIDATION_ERROR, "file: multipart field 'file' is required")
        size = await _call(svc, sandbox_id, agent.write_file(path, _chunks(f)))
    return UploadResult(path=path, size=size)


@router.post("/files/bulk-upload", response_model=BulkUploadResult)
async def bulk_upload(sandbox_id: str, request: Request, who: Auth) -> BulkUploadResult:
    """Daytona's bulk upload: pairs `files[i].path` with `files[i].file` by index."""
    svc, agent = _agent(request, sandbox_id, who)
    done: list[UploadedFile] = []
    errors: list[str] = []
    async with request.form(max_files=1000, max_fields=2000) as form:
        paths: dict[str, str] = {}
        files: dict[str, UploadFile] = {}
        for key, value in form.multi_items():
            if key.startswith("files[") and "]." in key:
                idx, _, kind = key[6:].partition("].")
                if kind == "path" and isinstance(value, str):
                    paths[idx] = value
                elif kind == "file" and isinstance(value, UploadFile):
                    files[idx] = value
        if not files:
            raise ApiError(ErrorCode.VALIDATION_ERROR, "no files[i].file parts in the request")
        for idx in sorted(files, key=lambda i: int(i) if i.isdigit() else 0):
            dest = paths.get(idx) or files[idx].filename
            if not dest:
                errors.append(f"files[{idx}]: no destination path")
                continue
            try:
                size = await agent.write_file(dest, _chunks(files[idx]))
                done.append(UploadedFile(path=dest, bytes=size))
            except AgentError as exc:
                errors.append(f"{dest}: {exc.message}")
            except AgentUnavailable as exc:
                raise _unavailable(svc, sandbox_id) from exc
    if errors and not done:
        first = errors[0]
        raise ApiError(ErrorCode.BAD_REQUEST, f"upload failed: {first}", errors=errors)
    return BulkUploadResult(files=done, errors=errors)


@router.post("/files/bulk-download", response_class=StreamingResponse)
async def bulk_download(
    sandbox_id: str, body: DownloadRequest, request: Request, who: Auth
) -> StreamingResponse:
    """multipart/form-data, one part per path (filename = the requested path) or an `error` part with JSON."""
    svc, agent = _agent(request, sandbox_id, who)
    boundary = "sandburg-" + secrets.token_hex(12)

    async def parts() -> AsyncIterator[bytes]:
        for path in body.paths:
            disp_name = path.replace('"', "%22").replace("\r", "").replace("\n", "")
            try:
                stream = await _open_download(svc, sandbox_id, agent, path)
            except ApiError as exc:
                err = error_body(exc.code, exc.message, STATUS[exc.code])
                yield (
                    (
                        f'--{boundary}\r\nContent-Disposition: form-data; name="error"; filename="{disp_name}"\r\n'
                        f"Content-Type: application/json\r\n\r\n"
                    ).encode()
                    + json.dumps(err).encode()
                    + b"\r\n"
                )
                continue
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{disp_name}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            async for chunk in stream:
                yield chunk
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    return StreamingResponse(parts(), media_type=f"multipart/form-data; boundary={boundary}")
