"""Unit tests of ``sandburg snapshot ...``: argument parsing, the requests it builds, its output formats and exit
codes, against ``SnapshotsFake`` through ``httpx.MockTransport``. The fake stands in only because unit tests
cannot run a server; tests/e2e/test_cli_snapshot.py runs the same commands against the real one.
"""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from sandburg import Sandburg, SnapshotDiff
from sandburg.cli.main import main
from sandburg.cli.snapshot import diff_lines
from tests.unit.test_sdk_core import KEY

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
BOX_ID = "00000001-aaaa-bbbb-cccc-dddddddddddd"


def _box(i: int, name: str) -> dict[str, Any]:
    return {"id": f"0000000{i}-aaaa-bbbb-cccc-dddddddddddd", "name": name, "state": "started"}


def _snap(name: str, **kw: Any) -> dict[str, Any]:
    return {
        "id": f"id-{name}", "name": name, "kind": "state", "sandboxId": BOX_ID, "sandboxName": "web",
        "parent": None, "parentId": None, "memory": False, "env": {"A": "1"},
        "settings": {"isolation": "container", "cpu": 1}, "captureMs": 41.6,
        "createdAt": "2025-01-01T11:55:00Z", **kw,
    }  # fmt: skip


def _not_found(what: str, name: str, code: str) -> httpx.Response:
    message = f"{what} {name!r} not found"
    return httpx.Response(404, json={"statusCode": 404, "message": message, "code": code})


class SnapshotsFake:
    """FAKE of the sandbox and /api/state-snapshots routes for MockTransport: one sandbox, snapshots kept by name,
    a canned diff, requests recorded. It checks the wire the CLI sends, not the server's behaviour."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.boxes = {"web": _box(1, "web")}
        self.snaps: dict[str, dict[str, Any]] = {}
        self.diff: dict[str, list[str]] = {"added": [], "modified": [], "deleted": []}

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)

    def calls(self) -> list[tuple[str, str, str]]:
        return [(r.method, r.url.path, r.url.query.decode()) for r in self.requests]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["authorization"] == f"Bearer {KEY}"
        method, path = request.method, request.url.path.removeprefix("/api/")
        if path.startswith("sandbox/"):
            ref, _, rest = path.removeprefix("sandbox/").partition("/")
            box = next((b for b in self.boxes.values() if ref in (b["id"], b["name"])), None)
            if box is None:
                return _not_found("sandbox", ref, "SANDBOX_NOT_FOUND")
            if (method, rest) == ("POST", "snapshots"):
                name = json.loads(request.content)["name"]
                self.snaps[name] = _snap(name, sandboxId=box["id"], sandboxName=box["name"])
                return httpx.Response(201, json=self.snaps[name])
            if (method, rest) == ("POST", "restore"):
                name = json.loads(request.content)["snapshot"]
                if name not in self.snaps:
                    return _not_found("snapshot", name, "IMAGE_NOT_FOUND")
            return httpx.Response(200, json=box)
        if (method, path) == ("GET", "state-snapshots"):
            return httpx.Response(200, json={"items": list(self.snaps.values())})
        name = path.removeprefix("state-snapshots/")
        action = ""
        for suffix in ("/fork", "/diff"):
            if name.endswith(suffix):
                name, action = name.removesuffix(suffix), suffix[1:]
        if name not in self.snaps:
            return _not_found("snapshot", name, "IMAGE_NOT_FOUND")
        if action == "fork":
            body = json.loads(request.content)
            names = body.get("names") or [f"web-abc123-{i + 1}" for i in range(body["count"])]
            return httpx.Response(201, json={"items": [_box(5 + i, n) for i, n in enumerate(names)]})
        if action == "diff":
            return httpx.Response(200, json=self.diff)
        if method == "DELETE":
            return httpx.Response(200, json=self.snaps.pop(name))
        return httpx.Response(200, json=self.snaps[name])


@pytest.fixture
def fake() -> SnapshotsFake:
    return SnapshotsFake()


@pytest.fixture
def run(fake: SnapshotsFake, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the CLI over the fake at ``NOW``; returns (exit code, stdout, stderr)."""

    def factory(api_url: str | None) -> Sandburg:
        return Sandburg("http://fake/api", KEY, transport=httpx.MockTransport(fake))

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv), client_factory=factory, now=NOW)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_create(run: Any, fake: SnapshotsFake) -> None:
    assert run("snapshot", "create", "web", "before-refactor") == (
        0,
        "snapshot before-refactor of web (capture 42 ms)\n",
        "",
    )
    assert fake.calls()[-1] == ("POST", f"/api/sandbox/{BOX_ID}/snapshots", "")
    assert fake.body() == {"name": "before-refactor", "memory": False}
    code, out, _ = run("snapshot", "create", BOX_ID, "team/mem:1", "--memory", "--json")
    assert code == 0 and fake.body() == {"name": "team/mem:1", "memory": True}
    assert json.loads(out) == {
        "id": "id-team/mem:1", "name": "team/mem:1", "sandbox_id": BOX_ID, "sandbox_name": "web",
        "parent": None, "env": {"A": "1"}, "settings": {"isolation": "container", "cpu": 1},
        "capture_ms": 41.6, "created_at": "2025-01-01T11:55:00+00:00", "memory": False,
    }  # fmt: skip


def test_create_on_an_unknown_sandbox_exits_1(run: Any, fake: SnapshotsFake) -> None:
    assert run("snapshot", "create", "nope", "s") == (
        1,
        "",
        "error: sandbox 'nope' not found (SANDBOX_NOT_FOUND)\n",
    )
    assert fake.snaps == {}


def test_ls_table_and_json(run: Any, fake: SnapshotsFake) -> None:
    fake.snaps = {
        "v1": _snap("v1", createdAt="2025-01-01T09:00:00Z"),
        "team/v2:1": _snap("team/v2:1", parent="v1", settings={"isolation": "gvisor"}),
        "orphan": _snap("orphan", sandboxId=None, sandboxName=None, settings={}, createdAt="2024-12-30T12:00:00Z"),
    }  # fmt: skip
    code, out, err = run("snapshot", "ls")
    assert (code, err) == (0, "")
    assert out == textwrap.dedent("""\
        NAME       SANDBOX  PARENT  AGE  ISOLATION
        v1         web      -       3h   container
        team/v2:1  web      v1      5m   gvisor
        orphan     -        -       2d   -
    """)
    assert fake.calls() == [("GET", "/api/state-snapshots", "")]
    code, out, _ = run("snapshot", "ls", "--sandbox", "web", "--json")
    assert fake.calls()[-1] == ("GET", "/api/state-snapshots", "sandbox=web")
    assert code == 0 and [s["name"] for s in json.loads(out)] == ["v1", "team/v2:1", "orphan"]
    assert json.loads(out)[1]["parent"] == "v1"


def test_ls_of_nothing_prints_the_headers(run: Any) -> None:
    assert run("snapshot", "ls") == (0, "NAME  SANDBOX  PARENT  AGE  ISOLATION\n", "")


def test_restore(run: Any, fake: SnapshotsFake) -> None:
    fake.snaps = {"v1": _snap("v1")}
    assert run("snapshot", "restore", "web", "v1") == (0, f"restored web ({BOX_ID}) to v1\n", "")
    assert fake.calls()[-1] == ("POST", f"/api/sandbox/{BOX_ID}/restore", "")
    assert fake.body() == {"snapshot": "v1"}
    assert run("snapshot", "restore", "web", "nope") == (
        1,
        "",
        "error: snapshot 'nope' not found (IMAGE_NOT_FOUND)\n",
    )


def test_fork(run: Any, fake: SnapshotsFake) -> None:
    fake.snaps = {"team/v1": _snap("team/v1")}
    code, out, err = run("snapshot", "fork", "team/v1", "--count", "2")
    assert (code, err) == (0, "")
    assert out == textwrap.dedent("""\
        NAME          ID
        web-abc123-1  00000005-aaaa-bbbb-cccc-dddddddddddd
        web-abc123-2  00000006-aaaa-bbbb-cccc-dddddddddddd
    """)
    assert fake.calls() == [("POST", "/api/state-snapshots/team/v1/fork", "")]
    assert fake.body() == {"count": 2}
    # --count defaults to the number of names
    code, out, _ = run(
        "snapshot", "fork", "team/v1", "--name", "a", "--name", "b", "--isolation", "gvisor", "--json"
    )
    assert fake.body() == {"count": 2, "names": ["a", "b"], "isolation": "gvisor"}
    assert code == 0 and [b["name"] for b in json.loads(out)] == ["a", "b"]
    run("snapshot", "fork", "team/v1")
    assert fake.body() == {"count": 1}
    assert run("snapshot", "fork", "gone")[::2] == (1, "error: snapshot 'gone' not found (IMAGE_NOT_FOUND)\n")


def test_diff_lines_are_sorted_by_path_like_git() -> None:
    diff = SnapshotDiff(
        added=["/workspace/e", "/workspace/e/f", "/workspace/d/new"],
        modified=["/workspace/d/change", "/etc/é"],
        deleted=["/workspace/d/drop", "/etc/z"],
    )
    assert diff_lines(diff) == [
        "D /etc/z",
        "M /etc/é",
        "M /workspace/d/change",
        "D /workspace/d/drop",
        "A /workspace/d/new",
        "A /workspace/e",
        "A /workspace/e/f",
    ]
    assert diff_lines(SnapshotDiff()) == []


def test_diff(run: Any, fake: SnapshotsFake) -> None:
    fake.snaps = {"v1": _snap("v1"), "v2": _snap("v2")}
    fake.diff = {"added": ["/b/new"], "modified": ["/a"], "deleted": ["/b/gone"]}
    assert run("snapshot", "diff", "v1", "v2") == (0, "M /a\nD /b/gone\nA /b/new\n", "")
    assert fake.calls()[-1] == ("GET", "/api/state-snapshots/v1/diff", "against=v2")
    code, out, _ = run("snapshot", "diff", "v1", "--sandbox", "web", "--json")
    assert fake.calls()[-1] == ("GET", "/api/state-snapshots/v1/diff", "sandbox=web")
    assert code == 0 and json.loads(out) == fake.diff
    fake.diff = {"added": [], "modified": [], "deleted": []}
    assert run("snapshot", "diff", "v1", "v2") == (0, "", "")
    assert run("snapshot", "diff", "nope", "v2") == (
        1,
        "",
        "error: snapshot 'nope' not found (IMAGE_NOT_FOUND)\n",
    )


def test_rm_keeps_going_and_reports_each_error(run: Any, fake: SnapshotsFake) -> None:
    fake.snaps = {n: _snap(n) for n in ("a", "team/b:1")}
    code, out, err = run("snapshot", "rm", "a", "nope", "team/b:1")
    assert (code, out) == (1, "a\nteam/b:1\n")
    assert err == "error: snapshot 'nope' not found (IMAGE_NOT_FOUND)\n"
    assert fake.snaps == {}
    assert [c for c in fake.calls() if c[0] == "DELETE"][-1] == (
        "DELETE",
        "/api/state-snapshots/team/b:1",
        "",
    )


def test_inspect(run: Any, fake: SnapshotsFake) -> None:
    fake.snaps = {"v2": _snap("v2", parent="v1")}
    code, out, _ = run("snapshot", "inspect", "v2")
    assert code == 0 and fake.calls() == [("GET", "/api/state-snapshots/v2", "")]
    data = json.loads(out)
    assert (data["name"], data["parent"], data["sandbox_id"], data["created_at"]) == (
        "v2",
        "v1",
        BOX_ID,
        "2025-01-01T11:55:00+00:00",
    )
    assert run("snapshot", "inspect", "nope") == (
        1,
        "",
        "error: snapshot 'nope' not found (IMAGE_NOT_FOUND)\n",
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["snapshot"], "the following arguments are required: ACTION"),
        (["snapshot", "create", "web"], "the following arguments are required: NAME"),
        (["snapshot", "restore", "web"], "the following arguments are required: NAME"),
        (["snapshot", "fork", "v1", "--count", "0"], "expected a positive integer, got '0'"),
        (
            ["snapshot", "fork", "v1", "--count", "3", "--name", "a"],
            "1 --name for --count 3 (one name per fork)",
        ),
        (["snapshot", "fork", "v1", "--isolation", "vm"], "invalid choice: 'vm'"),
        (["snapshot", "diff", "v1"], "give OTHER (a snapshot) or --sandbox S, one of them"),
        (["snapshot", "diff", "v1", "v2", "--sandbox", "web"], "give OTHER (a snapshot) or --sandbox S"),
        (["snapshot", "rm"], "the following arguments are required: NAME"),
        (["snapshot", "inspect"], "the following arguments are required: NAME"),
        (["snapshot", "bogus"], "invalid choice: 'bogus'"),
    ],
)
def test_usage_errors_exit_2_without_a_request(
    run: Any, fake: SnapshotsFake, argv: list[str], message: str
) -> None:
    code, out, err = run(*argv)
    assert code == 2 and out == "" and message in err, err
    assert "Traceback" not in err
    assert fake.requests == []
