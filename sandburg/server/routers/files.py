"""/api/toolbox/{sandboxId}/files...: the sandbox's files, streamed both ways."""

from __future__ import annotations

import json
import secrets
import urllib.parse
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile

from ..._codes import STATUS, ErrorCode
from ...node.agent_client import AgentClient, AgentError, AgentUnavailable
from ..errors import ApiError, error_body
from ..sandboxes import SandboxService
from ..schemas import (
    BulkUploadResult,
    DownloadRequest,
    FileInfo,
    Match,
    ReplaceRequest,
    ReplaceResult,
    SearchFilesResponse,
    UploadedFile,
    UploadResult,
)
from .fswire import (
    TRUNCATED_RESPONSE,
    file_info,
    json_response,
    query_destination,
    query_dir,
    query_path,
    query_pattern,
    query_source,
)
from .toolbox import CHUNK, Auth, _agent, _agent_error, _call, _unavailable, _until_disconnect, audited

router = APIRouter(prefix="/toolbox/{sandbox_id}", tags=["files"])

SandboxPath = Annotated[str, Depends(query_path)]
Mode = Annotated[str, Query(pattern=r"^0?[0-7]{1,4}$", description="octal, e.g. 755")]
MAX_DEPTH = 1000


@router.get("/files", response_model=list[FileInfo], responses=TRUNCATED_RESPONSE)
async def list_files(
    sandbox_id: str,
    request: Request,
    who: Auth,
    path: Annotated[str, Depends(query_dir)],
    depth: Annotated[int | None, Query(ge=1, le=MAX_DEPTH)] = None,
) -> Response:
    """A directory's entries, sorted by name; with `depth` > 1 its subdirectories' too, depth first (a symlinked
    directory is listed, not entered). At most 100 000 entries: then `X-Sandburg-Truncated: true`."""
    svc, agent = _agent(request, sandbox_id, who)
    listing = await _until_disconnect(request, _call(svc, sandbox_id, agent.list(path, depth)))
    return json_response([file_info(e) for e in listing], truncated=listing.truncated)


@router.get("/files/info", response_model=FileInfo)
async def get_file_info(sandbox_id: str, request: Request, who: Auth, path: SandboxPath) -> Response:
    """One file's FileInfo (a final symlink is not followed)."""
    svc, agent = _agent(request, sandbox_id, who)
    return json_response(file_info(await _call(svc, sandbox_id, agent.stat(path))))


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
async def download(sandbox_id: str, request: Request, who: Auth, path: SandboxPath) -> StreamingResponse:
    """The file's bytes, streamed."""
    svc, agent = _agent(request, sandbox_id, who)
    body = await _open_download(svc, sandbox_id, agent, path)
    return StreamingResponse(_counted(request, sandbox_id, path, body), media_type="application/octet-stream")


async def _counted(
    request: Request, sandbox_id: str, path: str, body: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """`body`, audited with the bytes that went out once it ends (or the client stops reading)."""
    sent = 0
    try:
        async for chunk in body:
            sent += len(chunk)
            yield chunk
    finally:
        audited(request, "file", sandbox_id, op="download", path=path, bytes=sent)


async def _chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(CHUNK):
        yield chunk


@router.post("/files/upload", response_model=UploadResult)
async def upload(sandbox_id: str, request: Request, who: Auth, path: SandboxPath) -> Response:
    """Write one file (multipart field `file`); it appears whole or not at all."""
    svc, agent = _agent(request, sandbox_id, who)
    async with request.form(max_files=1, max_fields=10) as form:
        f = form.get("file")
        if not isinstance(f, UploadFile):
            raise ApiError(ErrorCode.VALIDATION_ERROR, "file: multipart field 'file' is required")
        size = await _call(svc, sandbox_id, agent.write_file(path, _chunks(f)))
    audited(request, "file", sandbox_id, op="upload", path=path, bytes=size)
    return json_response({"path": path, "size": size})


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
                audited(request, "file", sandbox_id, op="upload", path=dest, bytes=size)
            except AgentError as exc:
                errors.append(f"{dest}: {exc.message}")
            except AgentUnavailable as exc:
                raise _unavailable(svc, sandbox_id) from exc
    if errors and not done:
        first = errors[0]
        raise ApiError(ErrorCode.BAD_REQUEST, f"upload failed: {first}", errors=errors)
    return BulkUploadResult(files=done, errors=errors)


def _disposition(path: str) -> str:
    """The part's filename parameters: the requested path as is, plus RFC 5987's `filename*` when it is not plain
    ASCII or holds a quote (busybox-style parsers, e.g. the TypeScript SDK's, read `filename` as latin1 and prefer
    `filename*`; the Python SDK takes either)."""
    plain = path.replace('"', "%22").replace("\r", "").replace("\n", "")
    if path.isascii() and '"' not in path:
        return f'filename="{plain}"'
    encoded = urllib.parse.quote(path.encode("utf-8", "surrogateescape"), safe="")  # RFC 5987 attr-chars only
    return f"filename=\"{plain}\"; filename*=utf-8''{encoded}"


@router.post("/files/bulk-download", response_class=StreamingResponse)
async def bulk_download(
    sandbox_id: str, body: DownloadRequest, request: Request, who: Auth
) -> StreamingResponse:
    """multipart/form-data, one part per path (filename = the requested path) or an `error` part with JSON."""
    svc, agent = _agent(request, sandbox_id, who)
    boundary = "sandburg-" + secrets.token_hex(12)

    async def parts() -> AsyncIterator[bytes]:
        for path in body.paths:
            disp = _disposition(path)
            try:
                stream = await _open_download(svc, sandbox_id, agent, path)
            except ApiError as exc:
                err = error_body(exc.code, exc.message, STATUS[exc.code])
                yield (
                    (
                        f'--{boundary}\r\nContent-Disposition: form-data; name="error"; {disp}\r\n'
                        f"Content-Type: application/json\r\n\r\n"
                    ).encode("utf-8", "surrogateescape")
                    + json.dumps(err).encode()
                    + b"\r\n"
                )
                continue
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; {disp}\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n"
            ).encode("utf-8", "surrogateescape")  # a path that is not UTF-8: its bytes, as they are
            async for chunk in _counted(request, sandbox_id, path, stream):
                yield chunk
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    return StreamingResponse(parts(), media_type=f"multipart/form-data; boundary={boundary}")


# -- the rest of Daytona's file system API --------------------------------------------------------------------------
@router.post("/files/folder", status_code=201, response_class=Response)
async def create_folder(
    sandbox_id: str, request: Request, who: Auth, path: SandboxPath, mode: Mode = "755"
) -> Response:
    """Create a directory with exactly `mode`, and its missing parents (mkdir -p: an existing one is fine)."""
    svc, agent = _agent(request, sandbox_id, who)
    await _call(svc, sandbox_id, agent.mkdir(path, int(mode, 8)))
    audited(request, "file", sandbox_id, op="mkdir", path=path, mode=mode)
    return Response(status_code=201)


@router.delete("/files", status_code=204, response_class=Response)
async def delete_file(
    sandbox_id: str, request: Request, who: Auth, path: SandboxPath, recursive: bool = False
) -> Response:
    """Delete a file, a symlink (never its target) or a directory. A non-empty directory needs `recursive=true`
    (else 409 DIRECTORY_NOT_EMPTY); a recursive delete does not enter symlinked directories."""
    svc, agent = _agent(request, sandbox_id, who)
    await _call(svc, sandbox_id, agent.delete(path, recursive=recursive))
    audited(request, "file", sandbox_id, op="delete", path=path, recursive=recursive)
    return Response(status_code=204)


@router.post("/files/move", response_class=Response)
async def move_file(
    sandbox_id: str,
    request: Request,
    who: Auth,
    source: Annotated[str, Depends(query_source)],
    destination: Annotated[str, Depends(query_destination)],
    overwrite: bool = False,
) -> Response:
    """Rename (across file systems: copy, then delete). An existing destination is 409 FILE_EXISTS unless
    `overwrite=true` (sandburg)."""
    svc, agent = _agent(request, sandbox_id, who)
    await _call(svc, sandbox_id, agent.move(source, destination, overwrite=overwrite))
    audited(request, "file", sandbox_id, op="move", path=source, destination=destination, overwrite=overwrite)
    return Response(status_code=200)


@router.get("/files/find", response_model=list[Match], responses=TRUNCATED_RESPONSE)
async def find_in_files(
    sandbox_id: str,
    request: Request,
    who: Auth,
    path: SandboxPath,
    pattern: Annotated[str, Depends(query_pattern)],
    regex: bool = False,
) -> Response:
    """Lines containing `pattern` in the text files under `path` (grep -rn; binary files are skipped): a fixed
    string as in Daytona, or with `regex=true` (sandburg) a Python regular expression. At most 10 000 matches,
    then `X-Sandburg-Truncated: true`; `content` is the line's first 2 KiB, invalid UTF-8 replaced."""
    svc, agent = _agent(request, sandbox_id, who)
    res = await _until_disconnect(request, _call(svc, sandbox_id, agent.find(path, pattern, regex=regex)))
    matches = [{"file": m.file, "line": m.line, "content": m.content} for m in res.matches]
    return json_response(matches, truncated=res.truncated)


@router.get("/files/search", response_model=SearchFilesResponse, responses=TRUNCATED_RESPONSE)
async def search_files(
    sandbox_id: str,
    request: Request,
    who: Auth,
    path: SandboxPath,
    pattern: Annotated[str, Depends(query_pattern)],
) -> Response:
    """Files under `path` whose name matches the glob `pattern` at any depth (`*.py`); a pattern with a `/`
    matches the relative path (`src/**/*.ts`). `*`, `?`, `**`, `[...]`, `{a,b}`. At most 100 000."""
    svc, agent = _agent(request, sandbox_id, who)
    res = await _until_disconnect(request, _call(svc, sandbox_id, agent.search(path, pattern)))
    return json_response({"files": res.files, "truncated": res.truncated}, truncated=res.truncated)


@router.post("/files/replace", response_model=list[ReplaceResult])
async def replace_in_files(sandbox_id: str, body: ReplaceRequest, request: Request, who: Auth) -> Response:
    """Replace every occurrence of the fixed string `pattern` by `newValue` in each file; one result per file.
    Files are rewritten atomically with their mode and owner; a symlink's target is edited."""
    svc, agent = _agent(request, sandbox_id, who)
    outcomes = await _call(svc, sandbox_id, agent.replace(body.files, body.pattern, body.newValue))
    audited(request, "file", sandbox_id, op="replace", paths=[o.file for o in outcomes if o.success])
    return json_response(
        [
            {"file": o.file, "success": o.success, **({} if o.error is None else {"error": o.error})}
            for o in outcomes
        ]
    )


@router.post("/files/permissions", response_class=Response)
async def set_file_permissions(
    sandbox_id: str,
    request: Request,
    who: Auth,
    path: SandboxPath,
    owner: str | None = None,
    group: str | None = None,
    mode: Annotated[str | None, Query(pattern=r"^0?[0-7]{1,4}$", description="octal, e.g. 644")] = None,
) -> Response:
    """Set the owner and group (names from the sandbox's /etc/passwd and /etc/group, or numbers), then the mode;
    a final symlink is followed."""
    svc, agent = _agent(request, sandbox_id, who)
    if owner or group:  # first: a chown may clear setuid/setgid bits that the mode then sets
        await _call(svc, sandbox_id, agent.chown(path, owner or None, group or None))
    if mode:
        await _call(svc, sandbox_id, agent.chmod(path, int(mode, 8)))
    if not (owner or group or mode):
        await _call(svc, sandbox_id, agent.stat(path))  # nothing to change: still 404 for a missing path
    audited(request, "file", sandbox_id, op="permissions", path=path, owner=owner, group=group, mode=mode)
    return Response(status_code=200)
