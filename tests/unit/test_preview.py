"""The preview proxy (sandburg/server/preview.py) over real sockets, without sandboxes.

Two real uvicorn servers run on 127.0.0.1 in threads: `backend`, a small HTTP + WebSocket app that echoes what it
receives (it stands for the app a user runs inside a sandbox), and `proxy`, a FastAPI app with the preview
routers. The proxy's sandbox service is `LoopbackTargets`, a stand-in whose sandbox `SID` "runs" at 127.0.0.1;
the e2e tests cover the same routes in front of real sandboxes and their network.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response, StreamingResponse
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect
from websockets.typing import Subprotocol

from sandburg._codes import ErrorCode
from sandburg.server import errors, preview
from sandburg.server.auth import Principal, authenticate
from sandburg.server.config import Settings
from sandburg.server.errors import ApiError

# the daemon's uvicorn WebSocket implementation warns that it is deprecated, in the servers' threads
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::uvicorn.config.UvicornDeprecationWarning"),
]

SID = "5f0c3c1e-0000-4000-8000-000000000001"
STOPPED = "5f0c3c1e-0000-4000-8000-000000000002"
SECRET = bytes(range(32))


@dataclass
class Row:
    id: str
    state: str
    organization_id: str


class LoopbackTargets:
    """Stand-in for SandboxService: sandbox SID runs at 127.0.0.1, STOPPED is stopped (named "web", "old")."""

    def preview_target(self, sandbox_id: str) -> str | None:
        return "127.0.0.1" if sandbox_id == SID else None

    def get(self, org_id: str, id_or_name: str) -> Row:
        for sid, name, state in ((SID, "web", "started"), (STOPPED, "old", "stopped")):
            if id_or_name in (sid, name):
                return Row(sid, state, org_id)
        raise ApiError(ErrorCode.SANDBOX_NOT_FOUND, f"sandbox {id_or_name!r} not found")


def backend_app() -> FastAPI:
    app = FastAPI()
    release: dict[str, asyncio.Event] = {}
    closed: dict[str, int] = {}  # the close code of the last WebSocket client

    def gate() -> asyncio.Event:
        return release.setdefault("stream", asyncio.Event())

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first\n"
            await asyncio.wait_for(gate().wait(), 5)  # only once the client has read the first chunk
            yield b"second\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    @app.post("/release")
    async def release_stream() -> dict[str, bool]:
        gate().set()
        return {"ok": True}

    @app.get("/redirect")
    async def redirect(request: Request) -> Response:
        return Response(status_code=302, headers={"location": f"http://{request.headers['host']}/elsewhere"})

    @app.get("/cookies")
    async def cookies() -> Response:
        response = Response("ok")
        response.set_cookie("a", "1")
        response.set_cookie("b", "2")
        return response

    @app.get("/last-close")
    async def last_close() -> dict[str, int]:
        return closed

    @app.api_route("/{path:path}", methods=preview.METHODS)
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse(_seen(request, (await request.body()).decode()))

    @app.websocket("/ws")
    async def ws_echo(ws: WebSocket) -> None:
        await ws.accept(subprotocol="chat" if "chat" in ws.scope["subprotocols"] else None)
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                closed["code"] = msg["code"]
                return
            if msg.get("text") == "whoami":
                await ws.send_text(json.dumps(_seen(ws, "")))
            elif msg.get("text") == "close-4001":
                await ws.close(4001, "bye")
                return
            elif msg.get("text") is not None:
                await ws.send_text(msg["text"])
            else:
                await ws.send_bytes(msg["bytes"])

    return app


def _seen(conn: Request | WebSocket, body: str) -> dict[str, Any]:
    return {
        "method": conn.scope.get("method", "WS"),
        "path": conn.scope["raw_path"].decode(),
        "query": conn.scope["query_string"].decode(),
        "headers": [[k.decode(), v.decode()] for k, v in conn.scope["headers"]],
        "body": body,
    }


def proxy_app() -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await preview.close_clients()  # as app.py does at shutdown

    app = FastAPI(lifespan=lifespan)
    errors.install(app)
    app.include_router(preview.router, prefix="/api")
    app.include_router(preview.proxy_router)
    app.dependency_overrides[authenticate] = lambda: Principal("org-1", "key-1")
    app.state.settings = Settings(public_url=None)
    app.state.preview_secret = SECRET
    app.state.sandboxes = LoopbackTargets()
    return app


@contextmanager
def serve(app: FastAPI) -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    # the implementations the daemon runs (daemon.py)
    config = uvicorn.Config(app, log_level="warning", loop="uvloop", http="httptools", ws="websockets")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


@dataclass
class Servers:
    proxy: int
    backend: int
    app: FastAPI  # the proxy's

    def url(self, path: str = "", port: int | None = None, sid: str = SID) -> str:
        return f"http://127.0.0.1:{self.proxy}/preview/{sid}/{port or self.backend}{path}"

    def token(self, port: int | None = None, sid: str = SID) -> str:
        return preview.token_for(SECRET, sid, port or self.backend)


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    app = proxy_app()
    with serve(backend_app()) as backend, serve(app) as proxy:
        yield Servers(proxy, backend, app)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10) as client:
        yield client


def _headers(seen: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in seen["headers"]}


# ------------------------------------------------------------------------------------------------ tokens


def test_token_is_stable_per_sandbox_and_port() -> None:
    token = preview.token_for(SECRET, SID, 3000)
    assert len(token) == 32 and token == preview.token_for(SECRET, SID, 3000)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    others = {preview.token_for(SECRET, SID, 3001), preview.token_for(SECRET, STOPPED, 3000)}
    others.add(preview.token_for(b"x" * 32, SID, 3000))
    assert token not in others and len(others) == 3
    assert preview.check_token(SECRET, SID, 3000, token)
    for bad in ("", token[:-1], token + "x", "é" * 32, preview.token_for(SECRET, SID, 3001)):
        assert not preview.check_token(SECRET, SID, 3000, bad)


def test_secret_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = str(tmp_path / "preview.key")
    secret = preview.load_or_create_secret(path)
    assert len(secret) == 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert preview.load_or_create_secret(path) == secret
    assert os.listdir(tmp_path) == ["preview.key"]  # no temporary file left
    Path(path).write_bytes(b"short")
    with pytest.raises(RuntimeError, match="delete the file"):
        preview.load_or_create_secret(path)


# ------------------------------------------------------------------------------------- preview-url route


def test_preview_url_route(servers: Servers, http: httpx.Client) -> None:
    api = f"http://127.0.0.1:{servers.proxy}/api/sandbox"
    r = http.get(f"{api}/web/ports/3000/preview-url")
    assert r.status_code == 200, r.text
    url = f"http://127.0.0.1:{servers.proxy}/preview/{SID}/3000"
    assert r.json() == {"sandboxId": SID, "url": url, "token": preview.token_for(SECRET, SID, 3000)}
    for port in (0, 65536, "x"):
        r = http.get(f"{api}/web/ports/{port}/preview-url")
        assert (r.status_code, r.json()["code"]) == (400, "VALIDATION_ERROR")
    r = http.get(f"{api}/old/ports/3000/preview-url")
    assert (r.status_code, r.json()["code"]) == (409, "SANDBOX_NOT_RUNNING")
    r = http.get(f"{api}/nope/ports/3000/preview-url")
    assert (r.status_code, r.json()["code"]) == (404, "SANDBOX_NOT_FOUND")


# ------------------------------------------------------------------------------------------------- HTTP


def test_header_token_forwards_method_path_query_body(servers: Servers, http: httpx.Client) -> None:
    r = http.post(
        servers.url("/a%2Fb/c?x=1&y=two%20words"),
        content=b"hello",
        headers={"X-Daytona-Preview-Token": servers.token(), "X-Custom": "kept", "Cookie": "app=1"},
    )
    assert r.status_code == 200, r.text
    seen = r.json()
    assert (seen["method"], seen["path"], seen["query"], seen["body"]) == (
        "POST", "/a%2Fb/c", "x=1&y=two%20words", "hello",
    )  # fmt: skip
    headers = _headers(seen)
    assert "x-daytona-preview-token" not in headers and "set-cookie" not in r.headers
    assert (headers["x-custom"], headers["cookie"]) == ("kept", "app=1")
    assert headers["host"] == f"127.0.0.1:{servers.backend}"
    assert headers["x-forwarded-host"] == f"127.0.0.1:{servers.proxy}"
    assert (headers["x-forwarded-for"], headers["x-forwarded-proto"]) == ("127.0.0.1", "http")
    assert headers["x-forwarded-prefix"] == f"/preview/{SID}/{servers.backend}"


def test_chunked_upload_is_streamed_in(servers: Servers, http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"a" * 70_000
        yield b"b"

    r = http.put(servers.url("/up"), content=chunks(), headers={"X-Daytona-Preview-Token": servers.token()})
    assert r.status_code == 200 and r.json()["body"] == "a" * 70_000 + "b"
    assert _headers(r.json())["transfer-encoding"] == "chunked"


def test_every_method_and_the_bare_root(servers: Servers, http: httpx.Client) -> None:
    headers = {"X-Sandburg-Preview-Token": servers.token()}
    for method in ("GET", "PUT", "PATCH", "DELETE", "OPTIONS"):
        r = http.request(method, servers.url(), headers=headers)
        assert (r.status_code, r.json()["method"], r.json()["path"]) == (200, method, "/")
    r = http.head(servers.url("/x"), headers=headers)
    assert r.status_code == 200 and r.content == b""


def test_query_token_sets_a_cookie_that_works_alone(servers: Servers, http: httpx.Client) -> None:
    r = http.get(servers.url("/page"), params={"a": "1", "token": servers.token()})
    assert r.status_code == 200, r.text
    assert r.json()["query"] == "a=1"
    cookie = r.headers["set-cookie"]
    name = f"sandburg_preview_{servers.backend}"
    assert (
        cookie == f"{name}={servers.token()}; Path=/preview/{SID}/{servers.backend}; HttpOnly; SameSite=Lax"
    )
    r = http.get(servers.url("/next"), headers={"Cookie": f"app=1; {name}={servers.token()}"})
    assert r.status_code == 200, r.text
    assert _headers(r.json())["cookie"] == "app=1" and "set-cookie" not in r.headers
    r = http.get(servers.url("/next"), headers={"Cookie": f"{name}={servers.token()}"})
    assert r.status_code == 200 and "cookie" not in _headers(r.json())
    # an app's own `token` parameter is none of the proxy's business
    r = http.get(servers.url("/q?token=app-own"), headers={"X-Daytona-Preview-Token": servers.token()})
    assert r.json()["query"] == "token=app-own"


@pytest.mark.parametrize("token", [None, "wrong", "other-port"])
def test_missing_or_wrong_token_is_401(servers: Servers, http: httpx.Client, token: str | None) -> None:
    if token == "other-port":
        token = servers.token(port=servers.backend + 1)
    headers = {"X-Daytona-Preview-Token": token} if token else {}
    r = http.get(servers.url("/x"), headers=headers)
    assert (r.status_code, r.json()["code"], r.json()["statusCode"]) == (401, "UNAUTHORIZED", 401)
    r = http.get(servers.url("/x"), params={"token": token or ""})
    assert r.status_code == 401


def test_stopped_sandbox_and_closed_port(servers: Servers, http: httpx.Client) -> None:
    r = http.get(
        servers.url("/", sid=STOPPED), headers={"x-daytona-preview-token": servers.token(sid=STOPPED)}
    )
    assert (r.status_code, r.json()["code"]) == (409, "SANDBOX_NOT_RUNNING")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = int(s.getsockname()[1])
    r = http.get(
        servers.url("/", port=closed), headers={"x-daytona-preview-token": servers.token(port=closed)}
    )
    assert (r.status_code, r.json()["code"]) == (502, "PREVIEW_UNREACHABLE")
    assert "connection refused" in r.json()["message"]


def test_responses_stream_and_keep_their_headers(servers: Servers, http: httpx.Client) -> None:
    headers = {"X-Daytona-Preview-Token": servers.token()}
    with http.stream("GET", servers.url("/stream"), headers=headers) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines) == "first"  # the backend holds the rest until /release: nothing is buffered
        assert http.post(servers.url("/release"), headers=headers).status_code == 200
        assert next(lines) == "second"
    r = http.get(servers.url("/redirect"), headers=headers)
    assert r.status_code == 302 and r.headers["location"] == servers.url("/elsewhere")
    r = http.get(servers.url("/cookies"), headers=headers)
    assert r.headers.get_list("set-cookie") == ["a=1; Path=/; SameSite=lax", "b=2; Path=/; SameSite=lax"]


# ------------------------------------------------------------------------------------------------ WebSocket


def test_websocket_echoes_text_and_binary(servers: Servers) -> None:
    url = servers.url("/ws?x=1").replace("http://", "ws://")
    headers = {"X-Daytona-Preview-Token": servers.token()}
    with ws_connect(url, additional_headers=headers, subprotocols=[Subprotocol("chat")]) as ws:
        assert ws.subprotocol == "chat"
        ws.send("hello")
        assert ws.recv(5) == "hello"
        ws.send(b"\x00\x01binary")
        assert ws.recv(5) == b"\x00\x01binary"
        ws.send("whoami")
        seen = json.loads(ws.recv(5))
        assert (seen["path"], seen["query"]) == ("/ws", "x=1")
        assert "x-daytona-preview-token" not in _headers(seen)
        ws.send("close-4001")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(5)
        assert info.value.rcvd is not None and (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "bye")


def test_websocket_with_query_token_and_client_close_code(servers: Servers, http: httpx.Client) -> None:
    url = servers.url("/ws").replace("http://", "ws://") + f"?token={servers.token()}"
    with ws_connect(url) as ws:
        ws.send("whoami")
        assert json.loads(ws.recv(5))["query"] == ""
        ws.close(4005, "client bye")
    headers = {"X-Daytona-Preview-Token": servers.token()}
    deadline = time.monotonic() + 5
    while http.get(servers.url("/last-close"), headers=headers).json().get("code") != 4005:
        assert time.monotonic() < deadline, "the backend did not see the client's close code"
        time.sleep(0.02)


@pytest.mark.parametrize("token", [None, "wrong"])
def test_websocket_without_token_is_refused(servers: Servers, token: str | None) -> None:
    url = servers.url("/ws").replace("http://", "ws://") + (f"?token={token}" if token else "")
    with pytest.raises(InvalidStatus) as info:
        ws_connect(url, open_timeout=5)
    assert info.value.response.status_code == 401
    assert json.loads(info.value.response.body or b"{}")["code"] == "UNAUTHORIZED"


def test_public_url_shapes_links_cookies_and_redirects(servers: Servers, http: httpx.Client) -> None:
    settings = servers.app.state.settings
    settings.public_url = "https://sb.example/base/"
    try:
        r = http.get(f"http://127.0.0.1:{servers.proxy}/api/sandbox/{SID}/ports/8080/preview-url")
        assert r.json()["url"] == f"https://sb.example/base/preview/{SID}/8080"
        r = http.get(servers.url("/redirect"), params={"token": servers.token()})
        prefix = f"/base/preview/{SID}/{servers.backend}"
        assert r.headers["location"] == f"https://sb.example{prefix}/elsewhere"
        assert r.headers["set-cookie"].endswith(f"; Path={prefix}; HttpOnly; SameSite=Lax; Secure")
        r = http.get(servers.url("/x"), params={"token": servers.token()})
        assert _headers(r.json())["x-forwarded-prefix"] == prefix
    finally:
        settings.public_url = None


def test_websocket_refused_by_the_app(servers: Servers) -> None:
    url = servers.url("/no-such-socket").replace("http://", "ws://") + f"?token={servers.token()}"
    with pytest.raises(InvalidStatus) as info:
        ws_connect(url, open_timeout=5)
    assert info.value.response.status_code == 403  # the backend's own answer, passed on


def test_websocket_to_closed_port_is_502(servers: Servers) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = int(s.getsockname()[1])
    url = servers.url("/ws", port=closed).replace("http://", "ws://") + f"?token={servers.token(port=closed)}"
    with pytest.raises(InvalidStatus) as info:
        ws_connect(url, open_timeout=5)
    assert info.value.response.status_code == 502
