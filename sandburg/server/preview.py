"""Preview proxy: whatever listens on a TCP port inside a sandbox is reachable at an authenticated URL.

    GET /api/sandbox/{idOrName}/ports/{port}/preview-url -> {"sandboxId", "url", "token"} (PortPreviewUrl)
    ANY /preview/{sandboxId}/{port}[/{path}]  -> http://<sandbox ip>:<port>/<path> (HTTP and WebSocket)

The proxy routes are mounted without the /api prefix and take no API key: the URL's token is the credential.
It is accepted from `X-Daytona-Preview-Token` (Daytona's header), `X-Sandburg-Preview-Token`, the `token` query
parameter, or the `sandburg_preview_<port>` cookie. A `?token=` that authenticates is removed from the query the
app sees, and is answered with that cookie (HttpOnly, SameSite=Lax, Secure behind https, scoped to the preview's
path) so that the links, scripts and XHRs of a page opened in a browser keep working. Neither the token headers nor that cookie
reach the app; everything else does, except hop-by-hop headers. Host is the target's `ip:port`; the original one
is in X-Forwarded-Host (with X-Forwarded-For, -Proto and -Prefix).

Bodies stream both ways (uploads, downloads, server-sent events): no timeout but the 5 s connect timeout, no
redirect followed (an absolute redirect to the target's own address is rewritten to the preview URL). A refused
or failed connection answers 502 PREVIEW_UNREACHABLE. WebSocket upgrades are bridged frame by frame with the
subprotocol the app chose, and the close code of either side is passed on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Protocol
from urllib.parse import unquote, urlsplit
from weakref import WeakKeyDictionary

import httpx
from fastapi import APIRouter, Depends, Path, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from .._codes import ErrorCode
from .errors import ApiError
from .routers.sandbox import Auth
from .ws import deny

log = logging.getLogger("sandburg.server")

SECRET_BYTES = 32
TOKEN_CHARS = 32  # 192 bits of the HMAC
TOKEN_HEADERS = (b"x-daytona-preview-token", b"x-sandburg-preview-token")
COOKIE_PREFIX = "sandburg_preview_"
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"te", b"trailer", b"expect"}
WS_HANDSHAKE = {b"sec-websocket-" + x for x in (b"key", b"version", b"extensions", b"protocol")}
WS_MAX_FRAME = 16 << 20  # what uvicorn accepts from the client side
GONE = (ConnectionClosed, WebSocketDisconnect, OSError, RuntimeError)  # a side went away mid-send: expected

# ------------------------------------------------------------------------------------------------- tokens
# The token is HMAC-SHA256(server secret, "<sandboxId>:<port>"): nothing is stored, so it is checked without a
# database lookup and survives server restarts; it opens one port of one sandbox only; and replacing the secret
# file (then restarting) revokes every token at once.


def load_or_create_secret(path: str) -> bytes:
    """The server's preview secret: 32 random bytes in a 0600 file, created atomically on first use."""
    try:
        with open(path, "rb") as fh:
            secret = fh.read()
    except FileNotFoundError:
        secret = _create_secret(path)
    if len(secret) < SECRET_BYTES:
        raise RuntimeError(
            f"{path}: preview secret of {len(secret)} bytes, expected {SECRET_BYTES}; delete the file to create"
            " a new one (this revokes every preview token)"
        )
    return secret


def _create_secret(path: str) -> bytes:
    secret = secrets.token_bytes(SECRET_BYTES)
    tmp = f"{path}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secret)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            # unlike a rename, a link never replaces: if another process won the race, its secret is the one
            os.link(tmp, path)
        except FileExistsError:
            with open(path, "rb") as fh:
                return fh.read()
    finally:
        os.unlink(tmp)
    return secret


def token_for(secret: bytes, sandbox_id: str, port: int) -> str:
    mac = hmac.new(secret, f"{sandbox_id}:{port}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")[:TOKEN_CHARS]


def check_token(secret: bytes, sandbox_id: str, port: int, token: str) -> bool:
    expected = token_for(secret, sandbox_id, port).encode()
    return hmac.compare_digest(expected, token.encode("utf-8", "replace"))


# ---------------------------------------------------------------------------------------- preview-url route


class SandboxRow(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def state(self) -> str: ...


class Targets(Protocol):
    """What the proxy needs of the SandboxService (`app.state.sandboxes`)."""

    def preview_target(self, sandbox_id: str) -> str | None:
        """The started sandbox's IPv4 address, else None; called on the event loop, so it must not block."""

    def get(self, org_id: str, id_or_name: str) -> SandboxRow: ...


def targets(conn: HTTPConnection) -> Targets:
    svc: Targets = conn.app.state.sandboxes
    return svc


class PortPreviewUrl(BaseModel):
    sandboxId: str
    url: str
    token: str


router = APIRouter(tags=["sandbox"])


@router.get("/sandbox/{sandbox_id_or_name}/ports/{port}/preview-url", response_model=PortPreviewUrl)
def get_port_preview_url(
    sandbox_id_or_name: str,
    port: Annotated[int, Path(ge=1, le=65535)],
    request: Request,
    who: Auth,
    svc: Annotated[Targets, Depends(targets)],
) -> PortPreviewUrl:
    """The URL of the sandbox's port and the token to send with it (header `X-Daytona-Preview-Token`, or once as
    `?token=` in a browser, which then keeps it in a cookie)."""
    row = svc.get(who.organization_id, sandbox_id_or_name)
    if row.state != "started":
        raise ApiError(ErrorCode.SANDBOX_NOT_RUNNING, f"sandbox is {row.state}")
    secret: bytes = request.app.state.preview_secret
    url = f"{_base(request)}/preview/{row.id}/{port}"
    return PortPreviewUrl(sandboxId=row.id, url=url, token=token_for(secret, row.id, port))


def _base(conn: HTTPConnection) -> str:
    public_url: str | None = conn.app.state.settings.public_url
    return (public_url or str(conn.base_url)).rstrip("/")


# ---------------------------------------------------------------------------------------- the proxy itself

proxy_router = APIRouter(include_in_schema=False)
_clients: WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = WeakKeyDictionary()


def _client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=5.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=20),
            follow_redirects=False,
            trust_env=False,  # never send sandbox traffic through the host's HTTP_PROXY
        )
    return client


async def close_clients() -> None:
    """Close the forwarding client of the running event loop (call at app shutdown)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


def _open(conn: HTTPConnection, sandbox_id: str, port: int) -> tuple[str, str]:
    """Check the port, the token (before saying anything about the sandbox) and the target: (ip, token)."""
    if not 1 <= port <= 65535:
        raise ApiError(ErrorCode.VALIDATION_ERROR, f"port must be 1..65535, got {port}")
    secret: bytes = conn.app.state.preview_secret
    candidates = [conn.headers.get(h.decode(), "") for h in TOKEN_HEADERS]
    candidates += [*conn.query_params.getlist("token"), conn.cookies.get(f"{COOKIE_PREFIX}{port}", "")]
    token = next((t for t in candidates if t and check_token(secret, sandbox_id, port, t)), None)
    if token is None:
        raise ApiError(
            ErrorCode.UNAUTHORIZED,
            "missing or invalid preview token: send the token of GET /api/sandbox/{id}/ports/{port}/preview-url"
            " in the 'X-Daytona-Preview-Token' header or as '?token='",
        )
    ip = targets(conn).preview_target(sandbox_id)
    if ip is None:
        raise ApiError(ErrorCode.SANDBOX_NOT_RUNNING, f"sandbox {sandbox_id!r} is not running")
    return ip, token


async def _open_or_wake(conn: HTTPConnection, sandbox_id: str, port: int) -> tuple[str, str]:
    """`_open`, and for a sandbox asleep with wake-on-use (docs/lifecycle.md) start it first: only once the
    token has been checked, so only a holder of a preview URL of it can wake it."""
    try:
        return _open(conn, sandbox_id, port)
    except ApiError as exc:
        wake = getattr(conn.app.state.sandboxes, "wake_id", None)
        if exc.code != ErrorCode.SANDBOX_NOT_RUNNING or wake is None:
            raise
        if not await run_in_threadpool(wake, sandbox_id):
            raise
        return _open(conn, sandbox_id, port)


def _target_path(conn: HTTPConnection, sandbox_id: str, port: int) -> bytes:
    """The raw path after /preview/<id>/<port> (percent-encoding kept as sent, leading '/') and the raw query
    without the `token` parameters that carry this preview's token."""
    raw: bytes = conn.scope.get("raw_path") or conn.scope["path"].encode()
    parts = raw.split(b"/", 4)  # "", "preview", id, port, rest
    path = b"/" + (parts[4] if len(parts) > 4 else b"")
    secret: bytes = conn.app.state.preview_secret
    kept = []
    for item in conn.scope.get("query_string", b"").split(b"&"):
        name, _, value = (unquote(x.decode("latin-1").replace("+", " ")) for x in item.partition(b"="))
        if item and not (name == "token" and check_token(secret, sandbox_id, port, value)):
            kept.append(item)
    return path + (b"?" + b"&".join(kept) if kept else b"")


def _headers(conn: HTTPConnection, port: int, *, websocket: bool) -> list[tuple[bytes, bytes]]:
    """The client's headers as the app should see them (see the module docstring)."""
    dropped = {t.strip().lower().encode() for t in conn.headers.get("connection", "").split(",")}
    dropped |= HOP_BY_HOP | {b"host", *TOKEN_HEADERS} | (WS_HANDSHAKE if websocket else set())
    cookie = f"{COOKIE_PREFIX}{port}".encode()
    out: list[tuple[bytes, bytes]] = []
    for name, value in conn.headers.raw:
        if name in dropped or name.startswith((b"proxy-", b"x-forwarded-")):
            continue
        if name == b"cookie":
            pairs = [p for p in value.split(b";") if p.strip().partition(b"=")[0] != cookie]
            if not pairs:
                continue
            value = b";".join(pairs).strip()
        out.append((name, value))
    client = conn.client.host if conn.client else ""
    forwarded_for = ", ".join(x for x in (conn.headers.get("x-forwarded-for", ""), client) if x)
    forwarded = {
        b"x-forwarded-for": forwarded_for,
        b"x-forwarded-proto": {"ws": "http", "wss": "https"}.get(conn.url.scheme, conn.url.scheme),
        b"x-forwarded-host": conn.headers.get("host", ""),
        b"x-forwarded-prefix": _prefix(conn, port, public=False),
    }
    return out + [(k, v.encode("latin-1")) for k, v in forwarded.items() if v]


def _prefix(conn: HTTPConnection, port: int, *, public: bool) -> str:
    """The preview's base: as a URL (public) or as the path part only (cookies, X-Forwarded-Prefix)."""
    base = _base(conn) if public else urlsplit(_base(conn)).path.rstrip("/")
    return f"{base}/preview/{conn.path_params['sandbox_id']}/{port}"


def _unreachable(sandbox_id: str, port: int, exc: Exception) -> ApiError:
    if isinstance(exc, httpx.ConnectError | ConnectionRefusedError):
        why = "nothing is listening on it (connection refused)"
    elif isinstance(exc, httpx.TimeoutException | TimeoutError):
        why = "the connection timed out"
    else:
        why = f"the connection failed ({type(exc).__name__}: {exc})"
    return ApiError(ErrorCode.PREVIEW_UNREACHABLE, f"port {port} of sandbox {sandbox_id!r}: {why}")


@proxy_router.api_route("/preview/{sandbox_id}/{port:int}", methods=METHODS)
@proxy_router.api_route("/preview/{sandbox_id}/{port:int}/{path:path}", methods=METHODS)
async def proxy_http(request: Request, sandbox_id: str, port: int) -> Response:
    ip, token = await _open_or_wake(request, sandbox_id, port)
    target = f"http://{ip}:{port}"
    headers = [*_headers(request, port, websocket=False), (b"host", f"{ip}:{port}".encode())]
    has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
    url = httpx.URL(target).copy_with(raw_path=_target_path(request, sandbox_id, port))
    client, content = _client(), request.stream() if has_body else None
    req = client.build_request(request.method, url, headers=headers, content=content)
    try:
        upstream = await client.send(req, stream=True)
    except httpx.TransportError as exc:
        raise _unreachable(sandbox_id, port, exc) from exc

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():  # raw: Content-Encoding and -Length stay true
                yield chunk
        finally:
            await upstream.aclose()

    out: list[tuple[bytes, bytes]] = []
    for name, value in upstream.headers.raw:
        name = name.lower()
        if name in HOP_BY_HOP or name.startswith(b"proxy-"):
            continue
        if name == b"location" and value.startswith(target.encode()):  # the app's absolute self-redirect
            value = _prefix(request, port, public=True).encode() + value[len(target) :]
        out.append((name, value))
    if token in request.query_params.getlist("token"):  # opened in a browser: keep the token in a cookie
        secure = "; Secure" if _base(request).startswith("https:") else ""
        cookie = f"{COOKIE_PREFIX}{port}={token}; Path={_prefix(request, port, public=False)}; HttpOnly"
        out.append((b"set-cookie", f"{cookie}; SameSite=Lax{secure}".encode()))
    response = StreamingResponse(body(), upstream.status_code, background=BackgroundTask(upstream.aclose))
    response.raw_headers = out
    return response


# ------------------------------------------------------------------------------------------------ WebSocket


@proxy_router.websocket("/preview/{sandbox_id}/{port:int}")
@proxy_router.websocket("/preview/{sandbox_id}/{port:int}/{path:path}")
async def proxy_websocket(ws: WebSocket, sandbox_id: str, port: int) -> None:
    try:
        ip, _ = await _open_or_wake(ws, sandbox_id, port)
    except ApiError as exc:
        await deny(ws, exc)  # an HTTP answer to the upgrade (401, 409 ...) in the usual JSON shape
        return
    uri = f"ws://{ip}:{port}" + _target_path(ws, sandbox_id, port).decode("latin-1")
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in _headers(ws, port, websocket=True)]
    subprotocols = [Subprotocol(p) for p in ws.scope.get("subprotocols", [])]
    try:
        backend = await connect(
            uri, subprotocols=subprotocols or None, additional_headers=headers, user_agent_header=None,
            proxy=None, open_timeout=5, max_size=WS_MAX_FRAME, compression=None,
        )  # fmt: skip
    except InvalidStatus as exc:  # the app refused the upgrade: pass its answer on
        answer = exc.response
        kept = {
            k: v for k, v in answer.headers.raw_items() if k.lower() in ("content-type", "www-authenticate")
        }
        await ws.send_denial_response(Response(answer.body or b"", answer.status_code, headers=kept))
        return
    except (OSError, TimeoutError, InvalidHandshake) as exc:  # refused, timed out, not a WebSocket server
        await deny(ws, _unreachable(sandbox_id, port, exc))
        return
    async with backend:
        await ws.accept(subprotocol=backend.subprotocol)
        await _bridge(ws, backend)


async def _bridge(ws: WebSocket, backend: ClientConnection) -> None:
    """Pump frames both ways until one side closes; then close the other with the same code."""

    async def upstream() -> None:  # client -> app
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                await backend.close(_sendable(msg.get("code")), msg.get("reason") or "")
                return
            data = msg.get("text") if msg.get("text") is not None else msg.get("bytes")
            if data is not None:
                await backend.send(data)

    async def downstream() -> None:  # app -> client
        with contextlib.suppress(ConnectionClosed):
            async for data in backend:
                await (ws.send_text(data) if isinstance(data, str) else ws.send_bytes(data))
        await ws.close(_sendable(backend.close_code), backend.close_reason or "")

    tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, Exception) and not isinstance(result, GONE):
                log.warning("preview websocket %s: %r", ws.url.path, result)


def _sendable(code: int | None) -> int:
    """The close code to pass on: 1005 (none given) becomes 1000, 1006 (connection lost) 1011."""
    if code is not None and (1000 <= code <= 1014 and code not in (1004, 1005, 1006) or 3000 <= code <= 4999):
        return code
    return 1011 if code == 1006 else 1000
