"""Unit tests of ``sandbox.git`` in both clients and of ``sandburg git``: the wire they send (Daytona's toolbox git
API: paths, snake_case bodies, status codes) and what they make of the answers, against ``GitFake`` through
``httpx.MockTransport``. The same calls against the real server and a git server in a sandbox:
tests/e2e/test_git.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

import sandburg
from sandburg import _git
from sandburg.cli.git import format_status
from sandburg.cli.main import main
from tests.unit.test_sdk_core import KEY

BOX = "box1"
STATUS = {
    "currentBranch": "main", "upstream": "origin/main", "ahead": 1, "behind": 0, "branchPublished": True,
    "detached": False,
    "fileStatus": [
        {"name": "a.txt", "extra": "", "staging": "Modified", "worktree": "Unmodified"},
        {"name": "new", "extra": "old", "staging": "Renamed", "worktree": "Modified"},
        {"name": "caf\udce9", "extra": "", "staging": "Untracked", "worktree": "Untracked"},
    ],
}  # fmt: skip
HISTORY = [
    {
        "hash": "a" * 40,
        "author": "Ada",
        "email": "ada@x",
        "message": "m\n",
        "timestamp": "2025-01-02T03:04:05+01:00",
    }
]


class GitFake:
    """FAKE of the toolbox git routes (docs/git.md) for MockTransport: canned answers, the requests kept."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["authorization"] == f"Bearer {KEY}"
        if request.url.path.startswith("/api/sandbox/"):
            return httpx.Response(200, json={"id": BOX, "name": "web", "state": "started"})
        route = (request.method, request.url.path.removeprefix(f"/api/toolbox/{BOX}/git"))
        body = json.loads(request.content) if request.content else None
        if route == ("POST", "/clone"):
            if body.get("password") == "wrong":
                err = {"statusCode": 401, "message": "git clone failed: Authentication failed",
                       "code": "GIT_AUTH_FAILED", "source": "DAYTONA_DAEMON"}  # fmt: skip
                return httpx.Response(401, json=err)
            return httpx.Response(200)
        if route == ("GET", "/status"):
            return httpx.Response(
                200, content=json.dumps(STATUS).encode("ascii"), headers={"content-type": "application/json"}
            )
        if route == ("GET", "/branches"):
            return httpx.Response(200, json={"branches": ["dev", "main"], "current": "main"})
        if route in {("POST", "/branches"), ("POST", "/init")}:
            return httpx.Response(201)
        if route == ("DELETE", "/branches"):
            return httpx.Response(204)
        if route == ("POST", "/commit"):
            return httpx.Response(200, json={"hash": "c" * 40})
        if route == ("GET", "/history"):
            return httpx.Response(200, json=HISTORY)
        if route == ("POST", "/checkout") and body["branch"] == "nope":
            err = {
                "statusCode": 404,
                "message": "no branch",
                "code": "GIT_BRANCH_NOT_FOUND",
                "source": "DAYTONA_DAEMON",
            }
            return httpx.Response(404, json=err)
        return httpx.Response(200)


def _box(fake: GitFake) -> sandburg.Sandbox:
    client = sandburg.Sandburg("http://fake/api", KEY, transport=httpx.MockTransport(fake))
    return client.get(BOX)


def test_requests_follow_daytonas_wire() -> None:
    fake = GitFake()
    git = _box(fake).git
    git.clone("https://h/r.git", "repo", branch="dev", commit_id="abc", depth=2, username="u", password="p")
    assert (fake.requests[-1].method, fake.requests[-1].url.path) == ("POST", f"/api/toolbox/{BOX}/git/clone")
    assert fake.body() == {
        "url": "https://h/r.git", "path": "repo", "branch": "dev", "commit_id": "abc", "depth": 2,
        "username": "u", "password": "p",
    }  # fmt: skip
    git.clone("https://h/r.git", "repo")
    assert fake.body() == {"url": "https://h/r.git", "path": "repo"}  # nothing unset goes on the wire
    git.create_branch("repo", "dev")
    assert fake.body() == {"path": "repo", "name": "dev"}
    git.delete_branch("repo", "dev")
    assert fake.requests[-1].method == "DELETE" and fake.body() == {"path": "repo", "name": "dev"}
    git.checkout("repo", "main")
    assert fake.body() == {"path": "repo", "branch": "main"}
    git.add("repo", "a.txt")
    assert fake.body() == {"path": "repo", "files": ["a.txt"]}
    git.add("repo", ["a", "b"])
    assert fake.body()["files"] == ["a", "b"]
    assert git.commit("repo", "msg", "Ada", "ada@x") == "c" * 40
    assert fake.body() == {
        "path": "repo",
        "message": "msg",
        "author": "Ada",
        "email": "ada@x",
        "allow_empty": False,
    }
    git.push("repo", "u", "p", branch="dev", set_upstream=True)
    assert fake.body() == {
        "path": "repo",
        "branch": "dev",
        "set_upstream": True,
        "username": "u",
        "password": "p",
    }
    git.pull("repo", remote="up")
    assert fake.body() == {"path": "repo", "remote": "up"}
    git.init("repo", initial_branch="main")
    assert fake.body() == {"path": "repo", "bare": False, "initial_branch": "main"}
    git.status("/w/caf\udce9")
    assert fake.requests[-1].url.raw_path.endswith(
        b"/git/status?path=%2Fw%2Fcaf%E9"
    )  # a non-UTF-8 name's bytes
    git.history("repo", limit=5)
    assert fake.requests[-1].url.params["limit"] == "5"


def test_network_calls_wait_as_long_as_the_server() -> None:
    assert _git.clone_request(BOX, "u", "p").timeout is None
    assert _git.push_request(BOX, "p").timeout is None
    assert _git.pull_request(BOX, "p").timeout is None
    assert _git.status_request(BOX, "p").timeout is not None  # the client's default


def test_answers_decode_into_models() -> None:
    git = _box(GitFake()).git
    st = git.status("repo")
    assert (st.current_branch, st.upstream, st.ahead, st.branch_published, st.is_clean) == (
        "main", "origin/main", 1, True, False,
    )  # fmt: skip
    assert st.file_status[1] == sandburg.GitFileStatus("new", "Renamed", "Modified", "old")
    assert st.file_status[2].name == "caf\udce9"
    assert st.file_status[0].staging == sandburg.GitFileState.MODIFIED
    assert git.branches("repo") == sandburg.GitBranches(["dev", "main"], "main")
    assert sandburg.GitBranches.from_json({"branches": ["a"], "current": ""}).current is None
    (c,) = git.history("repo")
    assert (c.hash, c.author, c.message) == ("a" * 40, "Ada", "m\n")
    assert c.timestamp == datetime(2025, 1, 2, 2, 4, 5, tzinfo=UTC)


def test_errors_map_to_git_classes() -> None:
    git = _box(GitFake()).git
    with pytest.raises(sandburg.GitAuthFailedError) as info:
        git.clone("https://h/r.git", "repo", username="u", password="wrong")
    assert isinstance(info.value, sandburg.AuthenticationError) and isinstance(info.value, sandburg.GitError)
    assert info.value.status_code == 401 and info.value.code == "GIT_AUTH_FAILED"
    with pytest.raises(sandburg.GitBranchNotFoundError):
        git.checkout("repo", "nope")


@pytest.mark.parametrize(
    ("call", "exc"),
    [
        (lambda g: g.clone("", "p"), ValueError),
        (lambda g: g.clone("u", "p", depth=0), ValueError),
        (lambda g: g.clone("u", "p", password=b"x"), TypeError),
        (lambda g: g.add("p", []), ValueError),
        (lambda g: g.commit("p", "", "a", "e"), ValueError),
        (lambda g: g.history("p", limit=0), ValueError),
        (lambda g: g.status(None), TypeError),
    ],
)
def test_bad_arguments_fail_before_sending(call: Any, exc: type[Exception]) -> None:
    fake = GitFake()
    git = _box(fake).git
    sent = len(fake.requests)
    with pytest.raises(exc):
        call(git)
    assert len(fake.requests) == sent


def test_async_client_sends_the_same() -> None:
    sync_fake, async_fake = GitFake(), GitFake()
    _box(sync_fake).git.push("repo", "u", "p")

    async def go() -> tuple[str, sandburg.GitStatus]:
        async with sandburg.AsyncSandburg(
            "http://fake/api", KEY, transport=httpx.MockTransport(async_fake)
        ) as sb:
            box = await sb.get(BOX)
            await box.git.push("repo", "u", "p")
            with pytest.raises(sandburg.GitAuthFailedError):
                await box.git.clone("u", "p", password="wrong")
            return await box.git.commit("repo", "m", "a", "e", allow_empty=True), await box.git.status("repo")

    sha, st = asyncio.run(go())
    assert async_fake.body(1) == sync_fake.body(1)
    assert sha == "c" * 40 and st.current_branch == "main"


def test_cli_git(capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    fake = GitFake()

    def factory(api_url: str | None) -> sandburg.Sandburg:
        return sandburg.Sandburg("http://fake/api", KEY, transport=httpx.MockTransport(fake))

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["git", "web", *argv], client_factory=factory)
        out, err = capsysbinary.readouterr()
        return code, out.decode("utf-8", "surrogateescape"), err.decode()

    monkeypatch.setenv("SANDBURG_GIT_PASSWORD", "tok")
    assert run("clone", "https://h/r.git", "repo", "--username", "u", "--depth", "1")[0] == 0
    assert fake.body() == {
        "url": "https://h/r.git",
        "path": "repo",
        "depth": 1,
        "username": "u",
        "password": "tok",
    }
    code, out, _ = run("status", "repo")
    assert out.splitlines() == [
        "## main...origin/main [ahead 1]",
        "M  a.txt",
        "RM old -> new",
        "?? caf\udce9",
    ]
    assert json.loads(run("status", "repo", "--json")[1])["file_status"][0]["name"] == "a.txt"
    assert run("branches", "repo")[1] == "  dev\n* main\n"
    assert run("commit", "repo", "-m", "msg", "--author", "Ada", "--email", "a@x")[1] == "c" * 40 + "\n"
    run("branch", "repo", "dev", "-d")
    assert fake.requests[-1].method == "DELETE"
    monkeypatch.delenv("SANDBURG_GIT_PASSWORD")
    run("push", "repo", "-u")
    assert fake.body() == {"path": "repo", "set_upstream": True}
    code, _, err = run("checkout", "repo", "nope")
    assert code == 1 and "GIT_BRANCH_NOT_FOUND" in err
    monkeypatch.setattr(sys, "stdin", io.StringIO("wrong\n"))
    code, _, err = run("clone", "u", "p", "--password-stdin")
    assert code == 1 and "(GIT_AUTH_FAILED)" in err and fake.body()["password"] == "wrong"
    assert "2025-01-02" in run("log", "repo")[1]


def test_format_status_of_a_detached_head_and_a_gone_upstream() -> None:
    detached = sandburg.GitStatus(current_branch="HEAD", detached=True)
    assert format_status(detached) == "## HEAD (detached)"
    gone = sandburg.GitStatus(current_branch="dev", upstream="origin/dev")
    assert format_status(gone) == "## dev...origin/dev [gone]"
