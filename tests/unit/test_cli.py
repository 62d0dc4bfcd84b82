"""Unit tests of the ``sandburg`` CLI: argument parsing, output formats and exit codes.

The SDK client under the CLI talks to ``FakeAPI``, a small in-memory *fake* of the REST API (docs/api.md)
served through ``httpx.MockTransport`` and injected with ``main(..., client_factory=...)``. It stands in
only because unit tests cannot run a server; tests/e2e runs the CLI against the real one.
"""

from __future__ import annotations

import json
import sys
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandburg import Sandburg
from sandburg.cli.main import format_age, format_mib, format_table, main

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def _box(i: int, name: str, **kw: Any) -> dict[str, Any]:
    box = {
        "id": f"0000000{i}-aaaa-bbbb-cccc-dddddddddddd",
        "name": name,
        "state": "started",
        "isolation": "gvisor",
        "image": "debian-12",
        "cpu": 2,
        "memoryMiB": 4096,
        "diskMiB": 10240,
        "env": {},
        "labels": {},
        "errorReason": None,
        "createdAt": "2025-01-01T11:55:00Z",
    }
    return {**box, **kw}


class FakeAPI:
    """FAKE of the sandburg REST API for MockTransport (see the module docstring); records the requests."""

    def __init__(self) -> None:
        self.boxes = {b["id"]: b for b in (_box(1, "web"), _box(2, "db", state="error", errorReason="oom"))}
        self.requests: list[httpx.Request] = []
        self.exec_answer: dict[str, Any] = {"exitCode": 0, "stdout": "", "stderr": "", "result": ""}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        parts = request.url.path.removeprefix("/api/").split("/")
        if parts == ["sandbox"] and request.method == "POST":
            new = _box(9, json.loads(request.content).get("name", "new"))
            self.boxes[new["id"]] = new
            return httpx.Response(200, json=new)
        if parts == ["sandbox"]:
            return httpx.Response(200, json={"items": list(self.boxes.values()), "nextCursor": None})
        box: dict[str, Any] | None = next(
            (b for b in self.boxes.values() if parts[1] in (b["id"], b["name"])), None
        )
        if box is None:
            body = {
                "statusCode": 404,
                "message": f"sandbox '{parts[1]}' not found",
                "code": "SANDBOX_NOT_FOUND",
            }
            return httpx.Response(404, json=body)
        if parts[0] == "toolbox":
            return httpx.Response(self.exec_answer.pop("status", 200), json=self.exec_answer)
        if request.method == "DELETE":
            del self.boxes[box["id"]]
            return httpx.Response(200, json={**box, "state": "destroyed"})
        if parts[2:] in (["start"], ["stop"], ["pause"]):
            box["state"] = {"start": "started", "stop": "stopped", "pause": "paused"}[parts[2]]
        return httpx.Response(200, json=box)

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


@pytest.fixture
def api() -> FakeAPI:
    return FakeAPI()


@pytest.fixture
def run(api: FakeAPI, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the CLI over the fake; returns (exit code, stdout, stderr)."""

    def factory(api_url: str | None) -> Sandburg:
        return Sandburg(api_url or "http://fake/api", "k", transport=httpx.MockTransport(api))

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv), client_factory=factory, now=NOW)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_create_sends_the_options(run: Any, api: FakeAPI) -> None:
    argv = ["create", "--name", "n", "--isolation", "container", "--cpu", "4", "--memory", "1.5GiB"]
    code, out, err = run(*argv, "--disk", "20", "--env", "A=1=2", "--env", "B=", "--label", "team=x")
    assert (code, out, err) == (0, "00000009-aaaa-bbbb-cccc-dddddddddddd\n", "")
    assert api.body() == {
        "name": "n",
        "isolation": "container",
        "cpu": 4,
        "memoryMiB": 1536,
        "diskMiB": 20480,
        "env": {"A": "1=2", "B": ""},
        "labels": {"team": "x"},
    }
    code, out, _ = run("create", "--json")
    assert code == 0 and json.loads(out)["name"] == "new" and api.body() == {}


def test_ls_table_and_json(run: Any, api: FakeAPI) -> None:
    code, out, _ = run("ls", "--label", "team=x", "--state", "started", "--state", "error")
    assert code == 0
    assert out.splitlines() == [
        "ID                                    NAME  STATE        ISOLATION  IMAGE      CPU  MEM   AGE",
        "00000001-aaaa-bbbb-cccc-dddddddddddd  web   started      gvisor     debian-12  2    4GiB  5m",
        "00000002-aaaa-bbbb-cccc-dddddddddddd  db    error (oom)  gvisor     debian-12  2    4GiB  5m",
    ]
    params = api.requests[-1].url.params
    assert params.get_list("states") == ["started", "error"] and json.loads(params["labels"]) == {"team": "x"}
    code, out, _ = run("ls", "--json")
    assert [b["name"] for b in json.loads(out)] == ["web", "db"]


def test_exec_routes_output_and_exit_code(run: Any, api: FakeAPI) -> None:
    api.exec_answer = {"exitCode": 3, "stdout": "out\n", "stderr": "err\n", "result": "", "truncated": True}
    code, out, err = run(
        "exec", "web", "--cwd", "/w", "--env", "A=1", "--timeout", "5", "--", "ls", "-la", "a b"
    )
    assert (code, out) == (3, "out\n")
    assert err == "err\nsandburg: warning: the output was truncated by the server\n"
    assert api.body() == {"command": "ls -la 'a b'", "cwd": "/w", "envs": {"A": "1"}, "timeout": 5.0}
    api.exec_answer = {"exitCode": -9, "stdout": "", "stderr": ""}
    assert run("exec", "web", "--", "echo $HOME | wc -c")[0] == 137
    assert api.body() == {"command": "echo $HOME | wc -c"}  # a single word is a shell line, unquoted
    assert run("exec", "web", "true")[0] == 137  # without "--" for commands without options


def test_exec_timeout_shows_partial_output(run: Any, api: FakeAPI) -> None:
    api.exec_answer = {"status": 408, "message": "timed out after 1s", "code": "PROCESS_EXECUTION_TIMEOUT"}
    api.exec_answer.update(stdout="so far\n", stderr="")
    code, out, err = run("exec", "web", "--timeout", "1", "--", "sleep 9")
    assert (code, out, err) == (1, "so far\n", "error: timed out after 1s (PROCESS_EXECUTION_TIMEOUT)\n")


def test_lifecycle_commands(run: Any, api: FakeAPI) -> None:
    assert run("stop", "web")[:2] == (0, "00000001-aaaa-bbbb-cccc-dddddddddddd\n")
    assert api.boxes["00000001-aaaa-bbbb-cccc-dddddddddddd"]["state"] == "stopped"
    assert run("start", "web")[0] == 0
    assert run("pause", "web")[0] == 0
    assert api.boxes["00000001-aaaa-bbbb-cccc-dddddddddddd"]["state"] == "paused"
    last = api.requests[-1]
    assert (last.method, last.url.path) == ("POST", "/api/sandbox/00000001-aaaa-bbbb-cccc-dddddddddddd/pause")
    assert run("start", "web")[0] == 0
    code, out, _ = run("info", "web")
    assert code == 0 and "state:     started" in out and "memory:    4GiB" in out and "(5m ago)" in out
    assert json.loads(run("info", "db", "--json")[1])["errorReason"] == "oom"
    code, out, err = run("rm", "web", "nope", "db")
    assert code == 1 and len(out.splitlines()) == 2 and not api.boxes
    assert err == "error: sandbox 'nope' not found (SANDBOX_NOT_FOUND)\n"


def test_api_errors_print_message_and_code(run: Any) -> None:
    assert run("info", "ghost") == (1, "", "error: sandbox 'ghost' not found (SANDBOX_NOT_FOUND)\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required"),
        (["create", "--memory", "lots"], "invalid size 'lots'"),
        (["create", "--env", "NOVALUE"], "expected KEY=VALUE"),
        (["create", "--cpu", "0"], "positive integer"),
        (["create", "--isolation", "vm"], "invalid choice"),
        (["exec", "web", "--timeout", "-1", "--", "ls"], "positive number"),
        (["exec", "web"], "missing the command"),
        (["exec", "web", "ls", "--", "ls"], "after '--' only"),
        (["server"], "required"),
    ],
)
def test_usage_errors_exit_2(run: Any, argv: list[str], message: str) -> None:
    code, out, err = run(*argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_help_exits_0(run: Any) -> None:
    code, out, _ = run("--help")
    assert code == 0 and "exec" in out and "server" in out


def test_missing_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any) -> None:
    monkeypatch.delenv("SANDBURG_API_KEY", raising=False)
    monkeypatch.setenv("SANDBURG_DATA_DIR", str(tmp_path))
    assert main(["ls"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no API key found") and err.endswith("(CREDENTIALS_NOT_FOUND)\n")


def test_connection_errors_are_reported(capsys: Any) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused")

    def factory(api_url: str | None) -> Sandburg:
        return Sandburg("http://127.0.0.1:9/api", "k", transport=httpx.MockTransport(refuse))

    assert main(["ls"], client_factory=factory) == 1
    assert capsys.readouterr().err == (
        "error: could not reach the sandburg server (GET http://127.0.0.1:9/api/sandbox): "
        "Connection refused (CONNECTION_ERROR)\n"
    )


def test_server_commands_call_the_daemon_lazily(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    daemon = types.ModuleType("sandburg.server.daemon")

    def record(name: str, result: int) -> Any:
        def call(*args: Any) -> int:
            calls.append((name, *args))
            return result

        return call

    daemon.start, daemon.stop, daemon.status = record("start", 0), record("stop", 3), record("status", 0)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sandburg.server.daemon", daemon)
    assert run("server", "start", "--data-dir", "/d", "--port", "3001", "--foreground")[0] == 0
    assert run("server", "start")[0] == 0
    assert run("server", "stop")[0] == 3
    assert run("server", "status", "--data-dir", "/d")[0] == 0
    assert calls == [
        ("start", "/d", None, 3001, True),
        ("start", None, None, None, False),
        ("stop", None),
        ("status", "/d"),
    ]
    monkeypatch.setitem(sys.modules, "sandburg.server.daemon", None)  # makes the import fail
    code, _, err = run("server", "status")
    assert code == 1 and err.startswith("error: the sandburg server is not available")


def test_formatting_helpers() -> None:
    assert [format_mib(m) for m in (0, 512, 1024, 1536, 4096)] == ["-", "512MiB", "1GiB", "1.5GiB", "4GiB"]
    ages = [
        datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC).replace(hour=h, minute=m)
        for h, m in ((12, 0), (11, 59), (9, 0))
    ]
    assert [format_age(a, NOW) for a in ages] == ["0s", "1m", "3h"]
    assert format_age(datetime(2024, 12, 20, tzinfo=UTC), NOW) == "12d"
    assert format_age(datetime(2025, 1, 1, 11, 59, 30), NOW) == "30s"  # naive means UTC
    assert format_age(None, NOW) == "-"
    assert format_table(["A", "BB"], [["xyz", ""], ["q", "r"]]) == "A    BB\nxyz\nq    r"
