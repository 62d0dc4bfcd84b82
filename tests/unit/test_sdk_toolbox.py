"""Unit tests of the SDK's sessions, streams and file system methods: the wire format both clients send and
what they make of the answers, against ``ToolboxFake`` through ``httpx.MockTransport``; the WebSocket side
through its I/O-free helpers (``sandburg._ws``), since MockTransport cannot carry a WebSocket. The same
methods against the real server: tests/e2e/test_sdk_toolbox.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus, InvalidURI
from websockets.http11 import Response

import sandburg
from sandburg import _core as core
from sandburg import _files as fs_core
from sandburg import _sessions as S
from sandburg import _ws
from tests.unit.test_sdk_core import KEY, _error

BOX = "box1"
NAME = b"caf\xe9.py".decode("utf-8", "surrogateescape")  # a file name that is not UTF-8


def _ascii_json(status: int, data: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    """A JSON answer as the server sends it: ASCII, a name's non-UTF-8 bytes as \\udcXX escapes."""
    headers = {"content-type": "application/json", **(headers or {})}
    return httpx.Response(status, content=json.dumps(data).encode("ascii"), headers=headers)


class ToolboxFake:
    """FAKE of the toolbox's session and file routes (docs/api.md) for MockTransport: canned answers, and
    every request kept for the tests to check what was sent."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["authorization"] == f"Bearer {KEY}"
        path = request.url.path.removeprefix(f"/api/toolbox/{BOX}")
        body = (
            json.loads(request.content)
            if request.content and "json" in request.headers.get("content-type", "")
            else None
        )
        q = request.url.params
        route = (request.method, path)
        session = "/process/session"
        command = {
            "id": "c1",
            "command": "make",
            "exitCode": None,
            "runAsync": True,
            "startedAt": "2025-01-01T00:00:00Z",
        }
        if route == ("POST", session):
            if body["sessionId"] == "dup":
                return _error(409, "SESSION_EXISTS", "taken")
            return httpx.Response(201)
        if route == ("GET", session):
            return httpx.Response(200, json=[{"sessionId": "dev", "commands": [command]}])
        if route == ("GET", f"{session}/dev"):
            return httpx.Response(200, json={"sessionId": "dev", "commands": [command]})
        if route == ("GET", f"{session}/nope"):
            return _error(404, "SESSION_NOT_FOUND", "no such session")
        if route == ("DELETE", f"{session}/dev"):
            return httpx.Response(204)
        if route == ("POST", f"{session}/dev/exec"):
            if body["runAsync"]:
                return httpx.Response(202, json={"cmdId": "c1"})
            out = {
                "cmdId": "c0",
                "output": "7\n",
                "stdout": "7\n",
                "stderr": "",
                "exitCode": 0,
                "truncated": False,
            }
            return httpx.Response(200, json=out)
        if route == ("POST", f"{session}/gone/exec"):
            return _error(410, "SESSION_ENDED", "the session has ended")
        if route == ("GET", f"{session}/dev/command/c1"):
            return httpx.Response(200, json={**command, "exitCode": 3, "endedAt": "2025-01-01T00:00:01Z"})
        if route == ("GET", f"{session}/dev/command/c1/logs"):
            offset = int(q.get("offset", "0"))
            logs = {
                "output": "ab",
                "stdout": "a",
                "stderr": "b",
                "nextOffset": offset + 12,
                "truncated": False,
            }
            return httpx.Response(200, json=logs)
        if route in {
            ("POST", f"{session}/dev/command/c1/input"),
            ("POST", f"{session}/dev/command/c1/signal"),
        }:
            return httpx.Response(204)
        if route == ("POST", f"{session}/dev/command/done/input"):
            return _error(410, "COMMAND_ALREADY_COMPLETED", "takes no more input")
        return self._files(request, path, body)

    def _files(self, request: httpx.Request, path: str, body: Any) -> httpx.Response:
        q = request.url.params
        info = {"name": NAME, "path": f"/w/{NAME}", "isDir": False, "size": 3, "mode": "-rw-r--r--",
                "permissions": "0644", "modTime": "2025-01-01T00:00:00Z", "owner": "root", "group": "root",
                "linkTarget": None}  # fmt: skip
        if q.get("path", "").endswith("missing"):
            return _error(404, "FILE_NOT_FOUND", "no such file")
        match (request.method, path):
            case ("GET", "/files"):
                return _ascii_json(200, [info], headers={"X-Sandburg-Truncated": "true"})
            case ("GET", "/files/find"):
                return _ascii_json(200, [{"file": f"/w/{NAME}", "line": 2, "content": "# TODO"}])
            case ("GET", "/files/search"):
                return _ascii_json(200, {"files": [f"/w/{NAME}"], "truncated": False})
            case ("POST", "/files/replace"):
                results = [{"file": f, "success": not f.endswith("x")} for f in body["files"]]
                return _ascii_json(200, [r if r["success"] else {**r, "error": "bad"} for r in results])
            case ("POST", "/files/move"):
                if q.get("overwrite") != "true":
                    return _error(409, "FILE_EXISTS", "destination exists")
                return httpx.Response(200)
            case ("POST", "/files/permissions"):
                if q.get("owner") == "nobody-here":
                    return _error(400, "BAD_REQUEST", "unknown user")
                return httpx.Response(200)
            case ("POST", "/files/folder"):
                return httpx.Response(201)
            case ("DELETE", "/files"):
                if q.get("recursive") != "true":
                    return _error(409, "DIRECTORY_NOT_EMPTY", "not empty")
                return httpx.Response(204)
        return _error(404, "NOT_FOUND", f"no route {request.method} {path}")


def _box(fake: ToolboxFake) -> sandburg.Sandbox:
    client = sandburg.Sandburg("http://fake/api", KEY, transport=httpx.MockTransport(fake))
    return sandburg.Sandbox(client, sandburg.SandboxInfo(id=BOX, state="started"))


def _async_box(fake: ToolboxFake) -> sandburg.AsyncSandbox:
    client = sandburg.AsyncSandburg("http://fake/api", KEY, transport=httpx.MockTransport(fake))
    return sandburg.AsyncSandbox(client, sandburg.SandboxInfo(id=BOX, state="started"))


def _sent(request: httpx.Request) -> tuple[str, str, Any]:
    """(method, path and raw query under the sandbox's toolbox, JSON body or None)."""
    target = request.url.raw_path.decode().removeprefix(f"/api/toolbox/{BOX}")
    return request.method, target, json.loads(request.content) if request.content else None


# ----------------------------------------------------------------------------------------------- sessions


def test_sessions_and_commands() -> None:
    fake = ToolboxFake()
    box = _box(fake)
    s = box.process.create_session("dev")
    assert (s.id, s.commands) == ("dev", []) and isinstance(s, sandburg.SessionInfo)
    assert _sent(fake.requests[-1]) == ("POST", "/process/session", {"sessionId": "dev"})
    with pytest.raises(sandburg.SessionExistsError):
        box.process.create_session("dup")
    r = s.exec("echo $X")
    assert r == sandburg.SessionCommandResult("c0", 0, "7\n", "", "7\n", False)
    assert _sent(fake.requests[-1]) == (
        "POST",
        "/process/session/dev/exec",
        {"command": "echo $X", "runAsync": False},
    )
    assert fake.requests[-1].extensions["timeout"]["read"] is None  # a foreground command is waited for
    assert s.exec("x", timeout=5) and fake.requests[-1].extensions["timeout"]["read"] == 5

    cmd = s.exec("make", background=True)
    assert isinstance(cmd, sandburg.Command) and isinstance(cmd, sandburg.CommandInfo)
    assert (cmd.id, cmd.session_id, cmd.command, cmd.exit_code, cmd.status, cmd.is_running) == (
        "c1", "dev", "make", None, "running", True,
    )  # fmt: skip
    assert json.loads(fake.requests[-1].content)["runAsync"] is True
    assert fake.requests[-1].extensions["timeout"]["read"] == core.DEFAULT_TIMEOUT
    cmd.refresh()
    assert (cmd.exit_code, cmd.status, cmd.is_running, cmd.ended_at is not None) == (3, "exited", False, True)
    assert cmd.logs() == sandburg.Logs("ab", "a", "b", 12, False)
    assert cmd.logs(40).next_offset == 52 and fake.requests[-1].url.params["offset"] == "40"
    assert isinstance(cmd.logs(follow=True), sandburg.LogStream)  # connects only once iterated
    assert isinstance(cmd.follow_logs(7), sandburg.LogStream)
    cmd.send_input(b"a\xff", close=True)
    assert _sent(fake.requests[-1]) == (
        "POST",
        "/process/session/dev/command/c1/input",
        {"data": "a\udcff", "close": True},
    )
    assert b'"a\\udcff"' in fake.requests[-1].content  # the byte 0xFF, escaped in ASCII JSON
    cmd.send_input("x")
    cmd.signal()
    assert _sent(fake.requests[-1]) == ("POST", "/process/session/dev/command/c1/signal", {"signal": 15})
    cmd.signal(9)
    assert json.loads(fake.requests[-1].content) == {"signal": 9}
    with pytest.raises(ValueError, match="signum"):
        cmd.signal(99)
    with pytest.raises(ValueError, match="offset"):
        cmd.logs(-1)
    done = sandburg.Command(box._client, BOX, "dev", sandburg.CommandInfo(id="done"))
    with pytest.raises(sandburg.SessionEndedError):
        done.send_input("x")

    got = s.get_command("c1")
    assert (got.id, got.exit_code, got.background) == ("c1", 3, True)
    s.refresh()
    assert [c.id for c in s.commands] == ["c1"] and s.commands[0].started_at is not None
    assert box.process.get_session("dev") == s
    assert [x.id for x in box.process.list_sessions()] == ["dev"]
    with pytest.raises(sandburg.SessionNotFoundError):
        box.process.get_session("nope")
    with pytest.raises(sandburg.SessionEndedError):
        sandburg.Session(box._client, BOX, sandburg.SessionInfo(id="gone")).exec("true")
    s.delete()
    box.process.delete_session("dev")
    assert [_sent(r)[:2] for r in fake.requests[-2:]] == [("DELETE", "/process/session/dev")] * 2
    with pytest.raises(ValueError, match="session id must not be empty"):
        box.process.get_session("")
    with pytest.raises(TypeError, match="command must be a str"):
        s.exec(["ls"])  # type: ignore[call-overload]


def test_sessions_and_commands_async() -> None:
    fake = ToolboxFake()

    async def scenario() -> None:
        box = _async_box(fake)
        s = await box.process.create_session("dev")
        assert isinstance(s, sandburg.AsyncSession) and s.id == "dev"
        with pytest.raises(sandburg.SessionExistsError):
            await box.process.create_session("dup")
        assert (await s.exec("echo $X")).stdout == "7\n"
        cmd = await s.exec("make", background=True)
        assert isinstance(cmd, sandburg.AsyncCommand) and cmd.status == "running"
        await cmd.refresh()
        assert cmd.exit_code == 3
        assert await cmd.logs(40) == sandburg.Logs("ab", "a", "b", 52, False)
        assert isinstance(cmd.logs(follow=True), sandburg.AsyncLogStream)
        await cmd.send_input("x", close=True)
        await cmd.signal(2)
        assert json.loads(fake.requests[-1].content) == {"signal": 2}
        assert (await s.get_command("c1")).exit_code == 3
        await s.refresh()
        assert [x.id for x in await box.process.list_sessions()] == ["dev"]
        assert (await box.process.get_session("dev")).commands == s.commands
        with pytest.raises(sandburg.SessionNotFoundError):
            await box.process.get_session("nope")
        await s.delete()
        await box.process.delete_session("dev")
        await box._client.close()

    asyncio.run(scenario())
    assert [_sent(r)[:2] for r in fake.requests[-2:]] == [("DELETE", "/process/session/dev")] * 2


# ---------------------------------------------------------------------------------------------- files


def _check_files(fake: ToolboxFake) -> None:
    sent = [_sent(r) for r in fake.requests]
    assert sent == [
        ("GET", "/files?path=%2Fw&depth=2", None),
        ("GET", "/files/find?path=%2Fw&pattern=TODO", None),
        ("GET", "/files/find?path=%2Fw&pattern=T.DO&regex=true", None),
        ("GET", "/files/search?path=%2Fw&pattern=%2A.py", None),
        ("POST", "/files/replace", {"files": [f"/w/{NAME}", "/w/x"], "pattern": "a", "newValue": "b"}),
        ("POST", "/files/replace", {"files": ["/w/a"], "pattern": "a", "newValue": "b"}),
        ("POST", "/files/move?source=%2Fw%2Fcaf%E9.py&destination=%2Fw%2Fb", None),
        ("POST", "/files/move?source=%2Fw%2Fa&destination=%2Fw%2Fb&overwrite=true", None),
        ("POST", "/files/permissions?path=%2Fw%2Fa&mode=755", None),
        ("POST", "/files/permissions?path=%2Fw%2Fa&mode=640", None),
        ("POST", "/files/permissions?path=%2Fw%2Fa&owner=nobody&group=0", None),
        ("POST", "/files/permissions?path=%2Fw%2Fa&group=staff", None),
        ("POST", "/files/permissions?path=%2Fw%2Fa&owner=nobody-here", None),
        ("POST", "/files/folder?path=%2Fw%2Fd&mode=755", None),
        ("POST", "/files/folder?path=%2Fw%2Fd&mode=700", None),
        ("DELETE", "/files?path=%2Fw%2Fd", None),
        ("DELETE", "/files?path=%2Fw%2Fd&recursive=true", None),
        ("GET", "/files/info?path=%2Fw%2Fmissing", None),
    ]
    assert b"caf\\udce9" in fake.requests[4].content  # JSON bodies are ASCII: the byte as its escape


def test_files() -> None:
    fake = ToolboxFake()
    fs = _box(fake).fs
    listing = fs.list("/w", depth=2)
    assert isinstance(listing, sandburg.ResultList) and listing.truncated
    assert len(listing) == 1 and repr(listing).endswith("truncated=True)")
    assert (listing[0].name, listing[0].link_target, listing[0].permissions) == (NAME, None, "0644")
    found = fs.find("/w", "TODO")
    assert found == [sandburg.Match(f"/w/{NAME}", 2, "# TODO")] and not found.truncated
    fs.find("/w", "T.DO", regex=True)
    assert fs.search("/w", "*.py") == [f"/w/{NAME}"]
    assert fs.replace([f"/w/{NAME}", "/w/x"], "a", "b") == [
        sandburg.ReplaceResult(f"/w/{NAME}", True), sandburg.ReplaceResult("/w/x", False, "bad"),
    ]  # fmt: skip
    fs.replace("/w/a", "a", "b")
    with pytest.raises(sandburg.FileExistsInSandboxError):
        fs.move(f"/w/{NAME}", "/w/b")
    fs.move("/w/a", "/w/b", overwrite=True)
    fs.chmod("/w/a", 0o755)
    fs.chmod("/w/a", "640")
    fs.chown("/w/a", owner="nobody", group=0)
    fs.chown("/w/a", group="staff")
    with pytest.raises(sandburg.BadRequestError):
        fs.chown("/w/a", owner="nobody-here")
    fs.mkdir("/w/d")
    fs.mkdir("/w/d", mode=0o700)
    with pytest.raises(sandburg.ConflictError) as info:
        fs.delete("/w/d")
    assert info.value.code == "DIRECTORY_NOT_EMPTY"
    fs.delete("/w/d", recursive=True)
    with pytest.raises(sandburg.FileNotFoundInSandboxError):
        fs.info("/w/missing")
    _check_files(fake)


def test_files_async() -> None:
    fake = ToolboxFake()

    async def scenario() -> None:
        box = _async_box(fake)
        fs = box.fs
        assert (await fs.list("/w", depth=2)).truncated
        assert (await fs.find("/w", "TODO"))[0].line == 2
        await fs.find("/w", "T.DO", regex=True)
        assert await fs.search("/w", "*.py") == [f"/w/{NAME}"]
        assert [r.success for r in await fs.replace([f"/w/{NAME}", "/w/x"], "a", "b")] == [True, False]
        await fs.replace("/w/a", "a", "b")
        with pytest.raises(sandburg.FileExistsInSandboxError):
            await fs.move(f"/w/{NAME}", "/w/b")
        await fs.move("/w/a", "/w/b", overwrite=True)
        await fs.chmod("/w/a", 0o755)
        await fs.chmod("/w/a", "640")
        await fs.chown("/w/a", owner="nobody", group=0)
        await fs.chown("/w/a", group="staff")
        with pytest.raises(sandburg.BadRequestError):
            await fs.chown("/w/a", owner="nobody-here")
        await fs.mkdir("/w/d")
        await fs.mkdir("/w/d", mode=0o700)
        with pytest.raises(sandburg.ConflictError):
            await fs.delete("/w/d")
        await fs.delete("/w/d", recursive=True)
        with pytest.raises(sandburg.FileNotFoundInSandboxError):
            await fs.info("/w/missing")
        await box._client.close()

    asyncio.run(scenario())
    _check_files(fake)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda fs: fs.chmod("/w/a", 0o10000), ValueError, "invalid mode"),
        (lambda fs: fs.chmod("/w/a", "9"), ValueError, "octal digits"),
        (lambda fs: fs.chmod("/w/a", True), TypeError, "mode must be an int"),
        (lambda fs: fs.chown("/w/a"), ValueError, "an owner, a group, or both"),
        (lambda fs: fs.chown("/w/a", owner=""), TypeError, "owner must be"),
        (lambda fs: fs.list("/w", depth=0), ValueError, "depth"),
        (lambda fs: fs.find("/w", ""), ValueError, "pattern must not be empty"),
        (lambda fs: fs.delete(""), ValueError, "path must not be empty"),
        (lambda fs: fs.move("/a", b"/b"), TypeError, "destination must be a str"),
        (lambda fs: fs.replace(["/a"], "x", None), TypeError, "new_value"),
    ],
)
def test_file_arguments_are_checked_before_sending(
    call: Callable[[Any], Any], error: type, match: str
) -> None:
    fake = ToolboxFake()
    with pytest.raises(error, match=match):
        call(_box(fake).fs)
    assert fake.requests == []


def test_paths_that_are_not_utf8_travel_as_bytes() -> None:
    assert core.encode_query([("path", f"/w/{NAME} x+y&z")]) == "path=%2Fw%2Fcaf%E9.py%20x%2By%26z"
    assert core.encode_query([("labels", '{"a":"é"}')]) == "labels=%7B%22a%22%3A%22%C3%A9%22%7D"
    with httpx.Client(base_url="http://fake/api") as http:
        up = core.build_http_request(http, fs_core.upload_request(BOX, f"/w/{NAME}"), b"data")
        assert up.url.raw_path.endswith(b"/files/upload?path=%2Fw%2Fcaf%E9.py")
        assert b'filename="caf\xef\xbf\xbd.py"' in up.read()  # only informative: made valid UTF-8
        body = core.build_http_request(http, fs_core.replace_request(BOX, [NAME], "a", "é"))
        assert body.content == b'{"files":["caf\\udce9.py"],"pattern":"a","newValue":"\\u00e9"}'
        assert body.headers["content-type"] == "application/json"


def test_empty_answers_decode_as_none() -> None:
    assert core.json_answer(201, b"") is None and core.json_answer(204, b"") is None
    with pytest.raises(sandburg.UnexpectedResponseError):
        sandburg.SessionInfo.from_json(None)
    with pytest.raises(sandburg.UnexpectedResponseError, match="cmdId"):
        sandburg.SessionCommandResult.from_json({"exitCode": 0})
    with pytest.raises(sandburg.UnexpectedResponseError, match="files"):
        fs_core.search_result([], {})


# ------------------------------------------------------------------------------------ WebSocket helpers


def test_exec_stream_frames() -> None:
    state = _ws.ExecStreamState()
    assert state.frame(b"\x01\x01\x01out") == sandburg.OutputChunk("stdout", b"out")
    assert state.frame(b"\x02\x02\x02err") == ("stderr", b"err")
    assert state.frame("not json") is None and state.frame('{"type": "other"}') is None
    with pytest.raises(sandburg.SandburgConnectionError, match="closed before the command ended .code 1006"):
        state.closed(1006, "")
    end = {
        "type": "control",
        "status": "exited",
        "exitCode": 3,
        "timedOut": True,
        "truncated": False,
        "durationMs": 12.5,
    }
    assert state.frame(json.dumps(end)) is None
    assert state.result == sandburg.ExecStreamResult(3, True, False, 12.5)
    state.closed(1000, "")  # after the exit message: the normal end
    with pytest.raises(sandburg.UnexpectedResponseError):
        _ws.ExecStreamState().frame('{"type": "control", "status": "exited"}')


@pytest.mark.parametrize(
    ("message", "cls", "code"),
    [
        (
            "PIDS_LIMIT_REACHED: the sandbox is at its process limit",
            sandburg.PidsLimitReachedError,
            "PIDS_LIMIT_REACHED",
        ),
        ("FILE_NOT_FOUND: no such directory: /nope", sandburg.FileNotFoundInSandboxError, "FILE_NOT_FOUND"),
        ("bad request: 1 validation error", sandburg.BadRequestError, "VALIDATION_ERROR"),
        ("the agent did not answer", sandburg.AgentUnavailableError, "AGENT_UNAVAILABLE"),
        ("SOMETHING_NEW: x", sandburg.AgentUnavailableError, "AGENT_UNAVAILABLE"),
    ],
)
def test_exec_stream_errors_map_like_rest_answers(message: str, cls: type, code: str) -> None:
    with pytest.raises(cls) as info:
        _ws.ExecStreamState().frame(json.dumps({"type": "control", "status": "error", "error": message}))
    assert type(info.value) is cls and info.value.code == code


def test_log_stream_end_and_handshake_errors() -> None:
    _ws.log_stream_closed(1000, "")
    with pytest.raises(sandburg.SandburgConnectionError, match="code 1011: boom"):
        _ws.log_stream_closed(1011, "boom")
    refused = Response(
        404, "Not Found", Headers(), b'{"code": "COMMAND_NOT_FOUND", "message": "no such command"}'
    )
    err = _ws.connect_error(InvalidStatus(refused))
    assert type(err) is sandburg.SessionNotFoundError and err.message == "no such command"
    assert (
        type(_ws.connect_error(InvalidStatus(Response(401, "Unauthorized", Headers(), b""))))
        is sandburg.AuthenticationError
    )
    assert type(_ws.connect_error(InvalidURI("x", "bad"))) is sandburg.ConfigurationError
    assert type(_ws.connect_error(TimeoutError())) is sandburg.SandburgTimeoutError
    assert type(_ws.connect_error(ConnectionRefusedError(111, "refused"))) is sandburg.SandburgConnectionError
    assert type(_ws.ended_error()) is sandburg.SessionEndedError


def test_websocket_urls_and_options() -> None:
    assert (
        _ws.ws_url("https://h/api/", "/toolbox/b/x", {"offset": 5, "none": None})
        == "wss://h/api/toolbox/b/x?offset=5"
    )
    path, params = S.follow_logs_path("b", "s 1", "c", 0)
    assert (path, params) == ("/toolbox/b/process/session/s%201/command/c/logs", {})
    assert S.follow_logs_path("b", "s", "c", 9)[1] == {"offset": "9"}
    assert S.exec_stream_message("ls", env={"A": "1"}, timeout=5, stdin=True) == {
        "command": "ls", "envs": {"A": "1"}, "timeout": 5, "stdin": True,
    }  # fmt: skip
    with httpx.Client(headers=core.default_headers(KEY, "9"), timeout=7) as http:
        opts = _ws.connect_options(http.headers, http.timeout)
    assert opts["additional_headers"] == {"Authorization": f"Bearer {KEY}"}
    assert (opts["user_agent_header"], opts["open_timeout"]) == ("sandburg-python/9", 7)


def test_streams_connect_lazily_and_check_their_arguments() -> None:
    fake = ToolboxFake()
    box = _box(fake)
    stream = box.process.exec_stream("cat")  # nothing sent, nothing opened
    assert (stream.result, stream.exit_code) == (None, None)
    with pytest.raises(ValueError, match="stdin=True"):
        stream.send_input("x")
    with pytest.raises(ValueError, match="signum"):
        stream.signal(0)
    with pytest.raises(TypeError, match="env keys and values must be str"):
        box.process.exec_stream("ls", env={"A": 1})  # type: ignore[dict-item]
    stream.close()
    with pytest.raises(sandburg.SessionEndedError):  # closed: the command cannot be reached any more
        stream.signal()
    assert list(stream) == [] and fake.requests == []


def test_streams_report_an_unreachable_server() -> None:
    with sandburg.Sandburg("http://127.0.0.1:1/api", KEY) as sb:
        box = sandburg.Sandbox(sb, sandburg.SandboxInfo(id=BOX))
        with pytest.raises(sandburg.SandburgConnectionError):
            list(box.process.exec_stream("true"))
        cmd = sandburg.Command(sb, BOX, "s", sandburg.CommandInfo(id="c"))
        with pytest.raises(sandburg.SandburgConnectionError):
            with cmd.logs(follow=True):
                pass

    async def scenario() -> None:
        async with sandburg.AsyncSandburg("http://127.0.0.1:1/api", KEY) as sb:
            box = sandburg.AsyncSandbox(sb, sandburg.SandboxInfo(id=BOX))
            with pytest.raises(sandburg.SandburgConnectionError):
                async for _ in box.process.exec_stream("true"):
                    pass
            cmd = sandburg.AsyncCommand(sb, BOX, "s", sandburg.CommandInfo(id="c"))
            with pytest.raises(sandburg.SandburgConnectionError):
                async with cmd.follow_logs():
                    pass

    asyncio.run(scenario())
