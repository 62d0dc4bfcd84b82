"""/api/toolbox/{sandboxId}/files...: the sandbox's files, streamed both ways."""

from __future__ import annotations

import json
import secrets
import stat as stat_mod
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile

from ..._codes import STATUS, ErrorCode
from ...node.agent_client import AgentClient, AgentError, AgentUnavailable
from ..errors import ApiError, error_body
from ..sandboxes import SandboxService
from ..schemas import BulkUploadResult, DownloadRequest, FileInfo, UploadedFile, UploadResult
from .toolbox import CHUNK, Auth, _agent, _agent_error, _call, _unavailable

router = APIRouter(prefix="/toolbox/{sandbox_id}", tags=["files"])


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
