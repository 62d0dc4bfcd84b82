"""Unit tests of the SDK: its I/O-free core, credential discovery, and the sync client's plumbing.

The client tests run against ``FakeAPI``, an in-memory *fake* of the REST API in docs/api.md served
through ``httpx.MockTransport``. It exists only because no real server can run in unit tests; it checks the
wire format this SDK sends, not the server's behaviour. End-to-end tests against the real server are in
tests/e2e.
"""

from __future__ import annotations

import json
import pickle
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import sandburg
from sandburg import _core as core
from sandburg import _files as fs_core
from sandburg._codes import STATUS, ErrorCode
from sandburg._config import resolve_config
from sandburg._errors import CODE_ERRORS, STATUS_ERRORS, error_class

KEY = "sk-test"

# ------------------------------------------------------------------------------------------- fake server


def _error(status: int, code: str, message: str) -> httpx.Response:
    source = "DAYTONA_DAEMON" if code in {"FILE_NOT_FOUND", "PROCESS_EXECUTION_TIMEOUT"} else "sandburg"
    body = {"statusCode": status, "error": "x", "message": message, "code": code, "source": source}
    return httpx.Response(status, json=body)


def _multipart_file(request: httpx.Request) -> bytes:
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    for part in request.content.split(b"--" + boundary)[1:-1]:
        head, _, data = part.partition(b"\r\n\r\n")
        if b'name="file"' in head:
            return data[: -len(b"\r\n")]
    raise AssertionError("no multipart field 'file'")


class FakeAPI:
    """FAKE of the sandburg REST API (docs/api.md) for MockTransport; see the module docstring."""

    def __init__(self, page_size: int = 2) -> None:
        self.boxes: dict[str, dict[str, Any]] = {}
        self.files: dict[tuple[str, str], bytes] = {}
        self.requests: list[httpx.Request] = []
        self.page_size = page_size

    def client(self, **kw: Any) -> sandburg.Sandburg:
        return sandburg.Sandburg("http://fake/api", KEY, transport=httpx.MockTransport(self), **kw)

    def _find(self, ref: str) -> dict[str, Any] | None:
        return self.boxes.get(ref) or next((b for b in self.boxes.values() if b["name"] == ref), None)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/api")
        if path == "/health":
            return httpx.Response(200, json={"status": "ok", "version": "0.1.0"})
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return _error(401, "UNAUTHORIZED", "missing or invalid API key")
        parts = path.strip("/").split("/")
        if parts == ["sandbox"]:
            return self._create(request) if request.method == "POST" else self._list(request)
        box = self._find(parts[1]) if len(parts) > 1 else None
        if box is None:
            return _error(404, "SANDBOX_NOT_FOUND", f"sandbox '{parts[1]}' not found")
        if parts[0] == "toolbox":
            if box["state"] != "started":
                return _error(409, "SANDBOX_NOT_RUNNING", "sandbox is not running")
            return self._toolbox(request, box, parts[2:])
        action = (request.method, *parts[2:])
        if action == ("GET",):
            return httpx.Response(200, json=box)
        if action == ("DELETE",):
            del self.boxes[box["id"]]
            return httpx.Response(200, json={**box, "state": "destroyed"})
        if action in {("POST", "start"), ("POST", "stop")}:
            box["state"] = "started" if parts[2] == "start" else "stopped"
            return httpx.Response(200, json=box)
        if action == ("PUT", "labels"):
            box["labels"] = json.loads(request.content)["labels"]
            return httpx.Response(200, json={"labels": box["labels"]})
        return _error(404, "NOT_FOUND", "no such route")

    def _create(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        name = body.get("name") or f"sandbox-{uuid.uuid4().hex[:8]}"
        if self._find(name):
            return _error(409, "SANDBOX_NAME_CONFLICT", f"name '{name}' is taken")
        mib = body.get("memoryMiB", 4096)
        box = {
            "id": str(uuid.uuid4()),
            "name": name,
            "state": "started",
            "isolation": body.get("isolation", "gvisor"),
            "image": body.get("image", "debian-12"),
            "snapshot": body.get("image", "debian-12"),
            "cpu": body.get("cpu", 2),
            "memory": -(-mib // 1024),
            "memoryMiB": mib,
            "disk": 10,
            "diskMiB": body.get("diskMiB", 10240),
            "env": body.get("env", {}),
            "labels": body.get("labels", {}),
            "errorReason": None,
            "createdAt": "2025-01-01T00:00:00Z",
        }
        self.boxes[box["id"]] = box
        return httpx.Response(200, json=box)

    def _list(self, request: httpx.Request) -> httpx.Response:
        q = request.url.params
        labels = json.loads(q.get("labels", "{}"))
        states = q.get_list("states")
        found = [
            b
            for b in self.boxes.values()
            if labels.items() <= b["labels"].items() and (not states or b["state"] in states)
        ]
        start, size = int(q.get("cursor", "0")), min(int(q.get("limit", "100")), self.page_size)
        more = start + size < len(found)
        return httpx.Response(
            200,
            json={"items": found[start : start + size], "nextCursor": str(start + size) if more else None},
        )

    def _toolbox(self, request: httpx.Request, box: dict[str, Any], parts: list[str]) -> httpx.Response:
        key, path = (box["id"], request.url.params.get("path", "")), request.url.params.get("path", "")
        if parts == ["process", "execute"]:
            body = json.loads(request.content)
            if body["command"].startswith("sleep"):
                answer = _error(408, "PROCESS_EXECUTION_TIMEOUT", f"timed out after {body['timeout']}s")
                return httpx.Response(408, json={**json.loads(answer.content), "stdout": "zz", "stderr": ""})
            env = {**box["env"], **body.get("envs", {})}
            out = f"{env.get('A', '')}\n0\n" if body["command"] == "echo $A && id -u" else ""
            return httpx.Response(
                200,
                json={
                    "exitCode": 0,
                    "result": out,
                    "stdout": out,
                    "stderr": "",
                    "truncated": False,
                    "durationMs": 3,
                },
            )
        if parts == ["files", "upload"]:
            self.files[key] = _multipart_file(request)
            return httpx.Response(200, json={"path": path, "size": len(self.files[key])})
        if key not in self.files:
            return _error(404, "FILE_NOT_FOUND", f"no such file: {path}")
        if parts == ["files", "download"]:
            return httpx.Response(
                200, content=self.files[key], headers={"content-type": "application/octet-stream"}
            )
        info = {"name": path.rsplit("/", 1)[-1], "path": path, "isDir": False, "size": len(self.files[key])}
        return httpx.Response(200, json=info if parts == ["files", "info"] else [info])


@pytest.fixture
def api() -> FakeAPI:
    return FakeAPI()


@pytest.fixture
def sb(api: FakeAPI) -> Any:
    with api.client() as client:
        yield client


# ------------------------------------------------------------------------------------------------ sizes


@pytest.mark.parametrize(
    ("value", "mib"),
    [
        (4, 4096),
        (1.5, 1536),
        ("512MiB", 512),
        ("4GiB", 4096),
        ("1.5GiB", 1536),
        ("10G", 10240),
        ("100M", 100),
        ("2", 2048),
        (" 3 gib ", 3072),
        ("4GB", 4096),
        ("512mi", 512),
        ("1TiB", 1024 * 1024),
        (".5G", 512),
    ],
)
def test_parse_size_mib(value: int | float | str, mib: int) -> None:
    assert core.parse_size_mib(value) == mib


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("", "expected a number"),
        ("abc", "expected a number"),
        ("4XB", "expected a number"),
        ("-1G", "expected a number"),
        ("1e3G", "expected a number"),
        ("nan", "expected a number"),
        ("0", "greater than zero"),
        (0, "greater than zero"),
        ("0.3M", "whole number of MiB"),
        (1.0001, "whole number of MiB"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (True, "expected a number"),
        (None, "expected a number"),
    ],
)
def test_parse_size_mib_rejects(value: Any, hint: str) -> None:
    with pytest.raises(ValueError, match="invalid size") as info:
        core.parse_size_mib(value)
    assert hint in str(info.value)
    assert repr(value) in str(info.value)


# ----------------------------------------------------------------------------------------------- errors


def test_every_code_maps_to_a_specific_class() -> None:
    assert set(CODE_ERRORS) == set(ErrorCode), "every code in sandburg/_codes.py needs an exception class"
    for code in ErrorCode:
        err = core.error_from_response(STATUS[code], json.dumps({"code": code, "message": "m"}).encode())
        assert type(err) is CODE_ERRORS[code] is error_class(STATUS[code], code)
        assert type(err) is not sandburg.APIError
        assert (err.status_code, err.code, err.message) == (STATUS[code], code, "m")
        # the code's class refines what its status alone gives, except the 5xx codes that _errors.py
        # deliberately keeps out of ServerError because retrying them cannot help
        if code not in {ErrorCode.DISK_QUOTA_EXCEEDED, ErrorCode.NOT_IMPLEMENTED}:
            assert isinstance(err, error_class(STATUS[code], None)), code


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        *STATUS_ERRORS.items(),
        (500, sandburg.ServerError),
        (503, sandburg.ServerError),
        (507, sandburg.ServerError),
        (418, sandburg.APIError),
    ],
)
def test_unknown_code_falls_back_to_status(status: int, cls: type[sandburg.APIError]) -> None:
    err = core.error_from_response(status, b'{"code": "SOMETHING_NEW", "message": "hm"}')
    assert type(err) is cls and err.code == "SOMETHING_NEW" and err.message == "hm"


def test_error_bodies_that_are_not_the_documented_shape() -> None:
    err = core.error_from_response(502, b"<html>Bad gateway</html>")
    assert type(err) is sandburg.ServerError
    assert (err.code, err.message, err.body) == ("HTTP_502", "502 Bad Gateway", "<html>Bad gateway</html>")
    err = core.error_from_response(404, b"")
    assert type(err) is sandburg.NotFoundError and err.message == "404 Not Found"
    err = core.error_from_response(429, b"slow down")
    assert isinstance(err, sandburg.RateLimitError) and err.message == "429 Too Many Requests: slow down"
    body = {"code": "VALIDATION_ERROR", "message": ["a", "b"], "details": [{"loc": ["cpu"], "msg": "bad"}]}
    err = core.error_from_response(400, json.dumps(body).encode())
    assert isinstance(err, sandburg.BadRequestError) and err.message == "a; b"
    assert err.details == [{"loc": ["cpu"], "msg": "bad"}]


def test_error_classes_behave() -> None:
    err = core.error_from_response(408, b'{"code": "PROCESS_EXECUTION_TIMEOUT", "message": "too slow"}')
    assert isinstance(err, sandburg.ExecTimeoutError) and isinstance(err, TimeoutError)
    assert isinstance(err, sandburg.SandburgError) and str(err) == "too slow"
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is type(err) and (clone.status_code, clone.code, clone.body) == (
        408,
        err.code,
        err.body,
    )
    assert issubclass(sandburg.SandboxNotRunningError, sandburg.ConflictError)
    assert issubclass(sandburg.FileNotFoundInSandboxError, sandburg.NotFoundError)
    assert issubclass(sandburg.SandburgTimeoutError, sandburg.SandburgConnectionError)
    assert issubclass(sandburg.CredentialsNotFoundError, sandburg.ConfigurationError)
    for name in sandburg.__all__:
        obj = getattr(sandburg, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, sandburg.SandburgError), name


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (httpx.ConnectError("refused"), sandburg.SandburgConnectionError),
        (httpx.ReadTimeout("slow"), sandburg.SandburgTimeoutError),
        (httpx.RemoteProtocolError("bye"), sandburg.SandburgConnectionError),
        (httpx.UnsupportedProtocol("ftp"), sandburg.ConfigurationError),
    ],
)
def test_transport_errors_are_translated(exc: Exception, cls: type[Exception]) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    with sandburg.Sandburg("http://fake/api", KEY, transport=httpx.MockTransport(fail)) as client:
        with pytest.raises(cls) as info:
            client.get("box")
    assert type(info.value) is cls and info.value.__cause__ is exc


# --------------------------------------------------------------------------------------- request building


def test_create_request_is_camel_case_with_exact_sizes() -> None:
    req = core.create_request(
        name="b",
        isolation="gvisor",
        cpu=2,
        memory="1.5GiB",
        disk=10,
        env={"A": "1"},
        labels={"t": "x"},
        timeout=9,
    )
    assert (req.method, req.path, req.timeout) == ("POST", "/sandbox", 9)
    assert req.json == {
        "name": "b",
        "isolation": "gvisor",
        "cpu": 2,
        "memoryMiB": 1536,
        "diskMiB": 10240,
        "env": {"A": "1"},
        "labels": {"t": "x"},
    }
    assert core.create_request().json == {}
    with pytest.raises(ValueError, match="invalid size"):
        core.create_request(memory="lots")
    with pytest.raises(TypeError, match="env keys and values must be str"):
        core.create_request(env={"A": 1})  # type: ignore[dict-item]


def test_list_request() -> None:
    req = core.list_request(labels={"b": "2", "a": "1"}, states=["started", "stopped"], limit=5, cursor="c")
    assert (req.method, req.path) == ("GET", "/sandbox")
    assert req.params == (
        ("labels", '{"a":"1","b":"2"}'),
        ("states", "started"),
        ("states", "stopped"),
        ("limit", "5"),
        ("cursor", "c"),
    )
    assert core.list_request().params == ()


def test_exec_and_file_requests() -> None:
    req = core.exec_request("id1", "ls", cwd="/w", env={"A": "1"}, timeout=5)
    assert (req.method, req.path) == ("POST", "/toolbox/id1/process/execute")
    assert req.json == {"command": "ls", "cwd": "/w", "envs": {"A": "1"}, "timeout": 5}
    assert req.timeout == 5 + core.EXEC_TIMEOUT_MARGIN
    bare = core.exec_request("id1", "ls")
    assert bare.json == {"command": "ls"} and bare.timeout is None
    up = fs_core.upload_request("id1", "/workspace/a b.txt")
    assert (up.path, up.params, up.upload) == (
        "/toolbox/id1/files/upload",
        (("path", "/workspace/a b.txt"),),
        ("file", "a b.txt"),
    )
    assert fs_core.download_request("id1", "/x").stream
    assert core.get_request("a/b").path == "/sandbox/a%2Fb"
    with pytest.raises(ValueError, match="must not be empty"):
        core.get_request("")
    with pytest.raises(TypeError, match="command must be a str"):
        core.exec_request("id1", ["ls", "-l"])  # type: ignore[arg-type]


def test_helpers_both_clients_share() -> None:
    assert core.states_filter(None) == () and core.states_filter("started") == ("started",)
    assert core.states_filter(["started", "stopped"]) == ("started", "stopped")
    assert core.upload_content(memoryview(b"ab")) == b"ab" and core.upload_content(b"ab") == b"ab"
    with pytest.raises(TypeError, match="upload_local"):
        core.upload_content(Path("/etc/hosts"))  # type: ignore[arg-type]
    assert core.json_answer(200, b'{"a": 1}') == {"a": 1}
    with pytest.raises(sandburg.SandboxNotFoundError):
        core.json_answer(404, b'{"code": "SANDBOX_NOT_FOUND", "message": "gone"}')
    with httpx.Client(base_url="http://fake/api", timeout=7.0) as http:
        req = core.build_http_request(http, fs_core.upload_request("id1", "/w/f"), b"data")
    assert (req.method, str(req.url)) == ("POST", "http://fake/api/toolbox/id1/files/upload?path=%2Fw%2Ff")
    assert (
        req.headers["content-type"].startswith("multipart/form-data")
        and req.extensions["timeout"]["read"] == 7
    )


def test_http_timeout_overrides_only_read() -> None:
    default = httpx.Timeout(7.0)
    assert core.http_timeout(default, core.USE_CLIENT_DEFAULT) is default
    t = core.http_timeout(default, 30.0)
    assert (t.connect, t.read, t.write, t.pool) == (7.0, 30.0, 7.0, 7.0)
    assert core.http_timeout(default, None).read is None


def test_pager_follows_cursors_and_stops() -> None:
    box = {"id": "x"}
    pager = core.SandboxPager(states=["started"], limit=3)
    req = pager.next_request()
    assert req is not None and ("limit", "3") in req.params and ("states", "started") in req.params
    pager.feed({"items": [box, box], "nextCursor": "p2"})
    req = pager.next_request()
    assert req is not None and ("cursor", "p2") in req.params and ("limit", "1") in req.params
    pager.feed({"items": [box, box], "nextCursor": "p3"})
    assert pager.next_request() is None and len(pager.items) == 3
    looping = core.SandboxPager()
    looping.feed({"items": [box], "nextCursor": "same"})
    looping.feed({"items": [box], "nextCursor": "same"})
    assert looping.next_request() is None
    with pytest.raises(sandburg.UnexpectedResponseError):
        core.SandboxPager().feed([box])


def test_models_decode_the_wire_form() -> None:
    info = sandburg.SandboxInfo.from_json(
        {"id": "i", "memory": 2, "disk": 3, "createdAt": "2025-01-01T00:00:00Z", "env": None, "extra": 1}
    )
    assert (info.memory_mib, info.disk_mib, info.env) == (2048, 3072, {})
    assert info.created_at == datetime(2025, 1, 1, tzinfo=UTC) and info.raw["extra"] == 1
    with pytest.raises(sandburg.UnexpectedResponseError, match="without an 'id'"):
        sandburg.SandboxInfo.from_json({"name": "x"})
    with pytest.raises(sandburg.UnexpectedResponseError, match="exitCode"):
        sandburg.ExecResult.from_json({"result": ""})
    with pytest.raises(sandburg.UnexpectedResponseError, match="expected a JSON answer"):
        core.decode_json(200, b"<html>")


# ------------------------------------------------------------------------------------------ credentials


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Path]:
    for name in ("SANDBURG_API_URL", "SANDBURG_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SANDBURG_DATA_DIR", str(tmp_path))

    def write(**values: str) -> Path:
        path = tmp_path / "credentials.json"
        path.write_text(json.dumps(values))
        return path

    return write


def test_credentials_order(monkeypatch: pytest.MonkeyPatch, clean_env: Callable[..., Path]) -> None:
    clean_env(api_url="http://file/api", api_key="file-key")
    assert resolve_config() == sandburg.ClientConfig("http://file/api", "file-key")
    monkeypatch.setenv("SANDBURG_API_KEY", "env-key")
    assert resolve_config() == sandburg.ClientConfig("http://file/api", "env-key")
    monkeypatch.setenv("SANDBURG_API_URL", "http://env/api/")
    assert resolve_config() == sandburg.ClientConfig("http://env/api", "env-key")
    assert resolve_config("http://arg/api", "arg-key") == sandburg.ClientConfig("http://arg/api", "arg-key")
    assert "arg-key" not in repr(resolve_config("http://arg/api", "arg-key"))


def test_credentials_default_url_and_missing_key(clean_env: Callable[..., Path]) -> None:
    assert resolve_config(api_key="k").api_url == "http://127.0.0.1:3000/api"
    clean_env(api_key="file-key")
    assert resolve_config() == sandburg.ClientConfig("http://127.0.0.1:3000/api", "file-key")
    clean_env(api_url="http://file/api")
    with pytest.raises(sandburg.CredentialsNotFoundError, match="SANDBURG_API_KEY") as info:
        sandburg.Sandburg()
    assert info.value.code == "CREDENTIALS_NOT_FOUND"


def test_credentials_file_problems(clean_env: Callable[..., Path]) -> None:
    path = clean_env()
    path.write_text("{not json")
    with pytest.raises(sandburg.ConfigurationError, match="not valid JSON"):
        resolve_config()
    path.write_text("[]")
    with pytest.raises(sandburg.ConfigurationError, match="JSON object"):
        resolve_config()
    path.unlink()
    path.mkdir()  # unreadable as a file: reported in the message, not raised as OSError
    with pytest.raises(sandburg.CredentialsNotFoundError, match="could not read"):
        resolve_config()


# -------------------------------------------------------------------------------- client over the fake


def test_target_usage(api: FakeAPI, sb: sandburg.Sandburg) -> None:
    box = sb.create(isolation="gvisor", cpu=2, memory="4GiB", env={"A": "1"}, labels={"team": "x"})
    assert isinstance(box, sandburg.Sandbox) and isinstance(box, sandburg.SandboxInfo)
    assert (box.state, box.isolation, box.cpu, box.memory_mib, box.labels) == (
        "started",
        "gvisor",
        2,
        4096,
        {"team": "x"},
    )
    assert json.loads(api.requests[-1].content)["memoryMiB"] == 4096
    assert api.requests[-1].extensions["timeout"]["read"] == sandburg.DEFAULT_CREATE_TIMEOUT
    r = box.process.exec("echo $A && id -u", cwd="/workspace", timeout=10)
    assert (r.exit_code, r.stdout, r.stderr, r.duration_ms) == (0, "1\n0\n", "", 3.0)
    assert api.requests[-1].extensions["timeout"]["read"] == 20
    assert box.fs.upload_file(b"hello", "/workspace/a.txt") == sandburg.UploadResult("/workspace/a.txt", 5)
    assert box.fs.download_file("/workspace/a.txt") == b"hello"
    box.stop()
    assert box.state == "stopped" and not box.is_running
    with pytest.raises(sandburg.SandboxNotRunningError):
        box.process.exec("true")
    box.start()
    assert box.state == sandburg.SandboxState.STARTED
    box.delete()
    assert box.state == "destroyed"
    with pytest.raises(sandburg.SandboxNotFoundError, match="not found"):
        box.refresh()


def test_get_list_labels_and_health(api: FakeAPI, sb: sandburg.Sandburg) -> None:
    a = sb.create(name="a", labels={"team": "x"})
    sb.create(name="b", labels={"team": "x"})
    sb.create(name="c", labels={"team": "y"})
    sb.get("b").stop()
    assert sb.get("a") == a and sb.get(a.id).name == "a"
    assert [b.name for b in sb.list()] == ["a", "b", "c"]  # three pages of two
    assert [b.name for b in sb.list(labels={"team": "x"}, state="started")] == ["a"]
    assert [b.name for b in sb.list(state=["started", "stopped"], limit=2)] == ["a", "b"]
    assert a.set_labels({"team": "z"}) == {"team": "z"} == a.labels
    assert sb.get("a").labels == {"team": "z"}
    with pytest.raises(sandburg.SandboxNameConflictError):
        sb.create(name="a")
    assert sb.health() == sandburg.HealthInfo("ok", "0.1.0")
    assert api.requests[0].headers["user-agent"].startswith("sandburg-python/")


def test_exec_timeout_and_auth_errors(api: FakeAPI, sb: sandburg.Sandburg) -> None:
    box = sb.create()
    with pytest.raises(sandburg.ExecTimeoutError, match="timed out after 1s") as info:
        box.process.exec("sleep 100", timeout=1)
    assert info.value.status_code == 408 and info.value.code == "PROCESS_EXECUTION_TIMEOUT"
    assert (info.value.stdout, info.value.stderr) == ("zz", "")
    with sandburg.Sandburg("http://fake/api", "wrong", transport=httpx.MockTransport(api)) as bad:
        with pytest.raises(sandburg.AuthenticationError):
            bad.get(box.id)


def test_files(api: FakeAPI, sb: sandburg.Sandburg, tmp_path: Path) -> None:
    box = sb.create()
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 1000)
    assert box.fs.upload_local(src, "/w/src.bin").size == 256000
    with src.open("rb") as f:
        box.fs.upload_file(f, "/w/copy.bin")
    box.fs.upload_file(bytearray(b"\r\n--x\r\n"), "/w/tricky")
    assert box.fs.download_file("/w/tricky") == b"\r\n--x\r\n"
    dest = tmp_path / "out.bin"
    assert box.fs.download_to("/w/copy.bin", dest) == 256000
    assert dest.read_bytes() == src.read_bytes()
    with pytest.raises(sandburg.FileNotFoundInSandboxError):
        box.fs.download_to("/w/missing", tmp_path / "missing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin", "src.bin"]  # no partial files left
    assert box.fs.info("/w/src.bin") == sandburg.FileInfo(name="src.bin", path="/w/src.bin", size=256000)
    assert [f.name for f in box.fs.list("/w/src.bin")] == ["src.bin"]
    with pytest.raises(TypeError, match="upload_local"):
        box.fs.upload_file(str(src), "/w/x")  # type: ignore[arg-type]
