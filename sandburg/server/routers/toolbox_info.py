"""The smaller toolbox routes of Daytona's SDKs: home and work directories, version, listening ports,
`files/upload-v2`, and the entrypoint session (sandburg sandboxes run no entrypoint command: it is empty)."""

from __future__ import annotations

import os.path
from typing import Annotated

from fastapi import APIRouter, Path, Request, WebSocket
from starlette.datastructures import UploadFile

from ..._codes import ErrorCode
from ..._version import __version__
from ..errors import ApiError
from ..schemas import CommandLogs, DirResponse, PortInUse, PortList, SessionOut, UploadedFileV2
from ..ws import open_toolbox
from .files import SandboxPath, _chunks
from .toolbox import Auth, _agent, _call

router = APIRouter(prefix="/toolbox/{sandbox_id}", tags=["toolbox"])
ENTRYPOINT = "entrypoint"
_TCP_LISTEN = "0A"


async def _sh(request: Request, sandbox_id: str, who: Auth, command: str) -> str:
    svc, agent = _agent(request, sandbox_id, who)
    res = await _call(svc, sandbox_id, agent.exec(command, timeout=10))
    return res.stdout.decode(errors="replace")


@router.get("/user-home-dir", response_model=DirResponse)
async def user_home_dir(sandbox_id: str, request: Request, who: Auth) -> DirResponse:
    """The home directory of the sandbox's user (`$HOME`)."""
    home = (await _sh(request, sandbox_id, who, 'printf %s "${HOME:-/root}"')).strip()
    return DirResponse(dir=home or "/root")


@router.get("/work-dir", response_model=DirResponse)
async def work_dir(sandbox_id: str, request: Request, who: Auth) -> DirResponse:
    """The directory commands start in when they name none (the image's workdir, `/workspace`)."""
    return DirResponse(dir=(await _sh(request, sandbox_id, who, "pwd")).strip() or "/")


@router.get("/version")
async def version(sandbox_id: str, request: Request, who: Auth) -> dict[str, str]:
    """The toolbox's version (sandburg's)."""
    _agent(request, sandbox_id, who)
    return {"version": __version__}


async def _listening(request: Request, sandbox_id: str, who: Auth) -> list[int]:
    # /proc/net/tcp{,6} inside the sandbox: "sl local_address rem_address st ...", ports in hex
    out = await _sh(request, sandbox_id, who, "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; true")
    ports = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3] == _TCP_LISTEN and ":" in fields[1]:
            try:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
            except ValueError:
                continue
    return sorted(ports)


@router.get("/port", response_model=PortList)
async def get_ports(sandbox_id: str, request: Request, who: Auth) -> PortList:
    """TCP ports something listens on inside the sandbox."""
    return PortList(ports=await _listening(request, sandbox_id, who))


@router.get("/port/{port}/in-use", response_model=PortInUse)
async def is_port_in_use(
    sandbox_id: str, port: Annotated[int, Path(ge=1, le=65535)], request: Request, who: Auth
) -> PortInUse:
    """Whether something listens on TCP `port` inside the sandbox."""
    return PortInUse(isInUse=port in await _listening(request, sandbox_id, who))


@router.post("/files/upload-v2", response_model=UploadedFileV2)
async def upload_v2(sandbox_id: str, request: Request, who: Auth, path: SandboxPath) -> UploadedFileV2:
    """Daytona's single-file upload: multipart field `file` written to `path` (missing parents are made)."""
    svc, agent = _agent(request, sandbox_id, who)
    async with request.form(max_files=1, max_fields=10) as form:
        f = form.get("file")
        if not isinstance(f, UploadFile):
            raise ApiError(ErrorCode.VALIDATION_ERROR, "file: multipart field 'file' is required")
        await _call(svc, sandbox_id, agent.write_file(path, _chunks(f)))
    return UploadedFileV2(name=os.path.basename(path.rstrip("/")) or path, path=path, type="file")


# Registered ahead of the sessions router, whose `/process/session/{sessionId}` would take it for a session name.
@router.get("/process/session/entrypoint", response_model=SessionOut)
async def entrypoint_session(sandbox_id: str, request: Request, who: Auth) -> SessionOut:
    """The image entrypoint's session: sandburg sandboxes start no entrypoint command, so it has none."""
    _agent(request, sandbox_id, who)
    return SessionOut(sessionId=ENTRYPOINT, commands=[])


@router.get("/process/session/entrypoint/logs", response_model=CommandLogs)
async def entrypoint_logs(sandbox_id: str, request: Request, who: Auth) -> CommandLogs:
    _agent(request, sandbox_id, who)
    return CommandLogs(output="", stdout="", stderr="")


@router.websocket("/process/session/entrypoint/logs")
async def follow_entrypoint_logs(ws: WebSocket, sandbox_id: str) -> None:
    if await open_toolbox(ws, sandbox_id, write=False) is None:
        return
    await ws.accept()
    await ws.close(code=1000)
