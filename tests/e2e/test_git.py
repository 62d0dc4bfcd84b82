"""Git workflows against the real server on both tiers: ``sandbox.git`` (sync and async), the raw HTTP API with
Daytona's field names, and ``sandburg git``.

There is no network yet, so each sandbox runs its own git server on its loopback: tests/e2e/git_server.py (smart
HTTP through `git http-backend`, basic auth USER:PASSWORD) in a background session command, serving bare
repositories under /srv/git. Each test gets a fresh bare repository with one commit (README "hello"), whose
pre-receive hook refuses pushes to the branch `locked`. One debian-12 sandbox per tier for the module.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from sandburg import (
    AsyncSandburg,
    FileNotFoundInSandboxError,
    GitAuthFailedError,
    GitBranchExistsError,
    GitBranchNotFoundError,
    GitDirtyWorktreeError,
    GitFileState,
    GitMergeConflictError,
    GitNotAvailableError,
    GitPushRejectedError,
    GitRemoteRejectedError,
    GitRepoNotFoundError,
    Sandbox,
    Sandburg,
)
from tests.e2e.conftest import TIERS

USER, PASSWORD, PORT = "alice", "pw-7d1f0c2b9e", 8418
AUTHOR, EMAIL = "Ada Lovelace", "ada@example.com"
SERVER_SCRIPT = Path(__file__).with_name("git_server.py")
SEED = """set -e
export GIT_AUTHOR_NAME=seed GIT_AUTHOR_EMAIL=seed@example.com GIT_COMMITTER_NAME=seed GIT_COMMITTER_EMAIL=seed@x
git init -q --bare -b main /srv/git/{name}.git
cat > /srv/git/{name}.git/hooks/pre-receive <<'EOF'
#!/bin/sh
while read old new ref; do
  if [ "$ref" = refs/heads/locked ]; then echo "the branch locked is protected"; exit 1; fi
done
EOF
chmod +x /srv/git/{name}.git/hooks/pre-receive
rm -rf /tmp/seed-{name} && git clone -q /srv/git/{name}.git /tmp/seed-{name} 2>/dev/null
cd /tmp/seed-{name} && echo hello > README && git add README && git commit -qm init && git push -q origin main
rm -rf /tmp/seed-{name}
"""


def uid() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module", params=TIERS)
def box(sb: Sandburg, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    b = sb.create(image="debian-12", isolation=request.param, labels={"test": "test_git"})
    try:
        b.fs.upload_local(SERVER_SCRIPT, "/srv/git_server.py")
        b.fs.mkdir("/srv/git")
        server = b.process.create_session("git-server")
        cmd = server.exec(f"python3 /srv/git_server.py /srv/git {PORT} {USER} {PASSWORD}", background=True)
        deadline = time.monotonic() + 30
        while "listening" not in (logs := cmd.logs()).stdout:
            cmd.refresh()
            assert cmd.exit_code is None, f"the git server exited: {logs.output}"
            assert time.monotonic() < deadline, f"the git server did not start: {logs.output}"
            time.sleep(0.1)
        yield b
    finally:
        b.delete()


@pytest.fixture
def url(box: Sandbox) -> str:
    """A fresh bare repository on the sandbox's git server, with one commit; its URL."""
    name = f"r{uid()}"
    r = box.process.exec(SEED.format(name=name), timeout=60)
    assert r.exit_code == 0, r.stdout + r.stderr
    return f"http://127.0.0.1:{PORT}/{name}.git"


@pytest.fixture
def d(box: Sandbox) -> str:
    """A fresh directory path for the test's clones (not created)."""
    return f"/workspace/git-{uid()}"


def sh(box: Sandbox, command: str) -> str:
    r = box.process.exec(command, timeout=60)
    assert r.exit_code == 0, (command, r.stdout, r.stderr)
    return r.stdout


def write(box: Sandbox, path: str, text: str) -> None:
    box.fs.upload_file(text.encode(), path)


def states(box: Sandbox, repo: str) -> dict[str, tuple[str, str]]:
    return {f.name: (f.staging, f.worktree) for f in box.git.status(repo).file_status}


# -- sandbox.git ----------------------------------------------------------------------------------------------------


def test_clone_credentials_are_checked_used_once_and_stored_nowhere(box: Sandbox, url: str, d: str) -> None:
    git = box.git
    with pytest.raises(GitAuthFailedError) as info:
        git.clone(url, f"{d}/a", username=USER, password="wrong-password")
    assert info.value.status_code == 401 and info.value.code == "GIT_AUTH_FAILED"
    assert "wrong-password" not in info.value.message
    with pytest.raises(GitAuthFailedError):
        git.clone(url, f"{d}/a")  # no credentials: git may not prompt, so it fails at once
    with pytest.raises(FileNotFoundInSandboxError):
        box.fs.info(f"{d}/a")  # a failed clone leaves nothing

    git.clone(url, f"{d}/a", username=USER, password=PASSWORD)
    assert box.fs.download_file(f"{d}/a/README") == b"hello\n"
    config = box.fs.download_file(f"{d}/a/.git/config").decode()
    assert f"url = {url}" in config and PASSWORD not in config and USER not in config
    # nothing in the sandbox's files holds the password: not the repository, not a credential store
    assert sh(box, f"grep -rl -- {PASSWORD} /workspace /root /tmp /etc 2>/dev/null || true") == ""

    with pytest.raises(GitRepoNotFoundError):
        git.clone(f"http://127.0.0.1:{PORT}/no-such.git", f"{d}/b", username=USER, password=PASSWORD)
    with pytest.raises(GitRepoNotFoundError):
        git.status(d)  # a directory that is not a repository

    # a branch, a commit and a shallow clone
    git.clone(url, f"{d}/c", branch="main", depth=1, username=USER, password=PASSWORD)
    (first,) = git.history(f"{d}/c")
    git.clone(url, f"{d}/e", commit_id=first.hash, username=USER, password=PASSWORD)
    st = git.status(f"{d}/e")
    assert (st.detached, st.current_branch) == (True, "HEAD")
    with pytest.raises(GitBranchNotFoundError):
        git.clone(url, f"{d}/f", branch="nope", username=USER, password=PASSWORD)
    with pytest.raises(GitBranchNotFoundError):
        git.clone(url, f"{d}/g", commit_id="0" * 40, username=USER, password=PASSWORD)
    with pytest.raises(FileNotFoundInSandboxError):
        box.fs.info(f"{d}/g")  # removed again: the commit was not there


def test_edit_add_commit_push_and_pull(box: Sandbox, url: str, d: str) -> None:
    git, a, b = box.git, f"{d}/a", f"{d}/b"
    git.clone(url, a, username=USER, password=PASSWORD)
    st = git.status(a)
    assert (st.current_branch, st.upstream, st.branch_published, st.ahead, st.behind, st.is_clean) == (
        "main", "origin/main", True, 0, 0, True,
    )  # fmt: skip

    write(box, f"{a}/README", "hello, world\n")
    write(box, f"{a}/docs/notes.txt", "notes\n")
    assert states(box, a) == {
        "README": (GitFileState.UNMODIFIED, GitFileState.MODIFIED),
        "docs/notes.txt": (GitFileState.UNTRACKED, GitFileState.UNTRACKED),
    }
    git.add(a, ["README", "docs"])
    assert states(box, a) == {"README": ("Modified", "Unmodified"), "docs/notes.txt": ("Added", "Unmodified")}
    sha = git.commit(a, "say hello to the world", AUTHOR, EMAIL)
    assert len(sha) == 40 and sh(box, f"git -C {a} rev-parse HEAD").strip() == sha
    latest = git.history(a)[0]
    assert (latest.hash, latest.author, latest.email, latest.message) == (
        sha, AUTHOR, EMAIL, "say hello to the world\n",
    )  # fmt: skip
    assert latest.timestamp is not None and len(git.history(a, limit=1)) == 1
    assert git.status(a).ahead == 1

    with pytest.raises(GitAuthFailedError):
        git.push(a)  # the remote wants credentials
    git.push(a, USER, PASSWORD)
    assert (git.status(a).ahead, git.status(a).is_clean) == (0, True)
    assert sh(box, f"git -C /srv/git/{url.rsplit('/', 1)[1]} rev-parse main").strip() == sha

    git.clone(url, b, username=USER, password=PASSWORD)
    assert box.fs.download_file(f"{b}/README") == b"hello, world\n"
    write(box, f"{a}/README", "third\n")
    git.add(a, ".")
    third = git.commit(a, "third", AUTHOR, EMAIL)
    git.push(a, USER, PASSWORD)
    git.pull(b, USER, PASSWORD)
    assert git.history(b)[0].hash == third
    assert box.fs.download_file(f"{b}/README") == b"third\n"

    empty = git.commit(a, "nothing changed", AUTHOR, EMAIL, allow_empty=True)
    assert empty != third and git.history(a)[0].message == "nothing changed\n"


def test_branches(box: Sandbox, url: str, d: str) -> None:
    git, a, b = box.git, f"{d}/a", f"{d}/b"
    git.clone(url, a, username=USER, password=PASSWORD)
    git.clone(url, b, username=USER, password=PASSWORD)
    assert (git.branches(a).branches, git.branches(a).current) == (["main"], "main")

    git.create_branch(a, "feature/x")  # created and checked out, as Daytona does
    assert git.branches(a) == type(git.branches(a))(["feature/x", "main"], "feature/x")
    with pytest.raises(GitBranchExistsError):
        git.create_branch(a, "main")
    write(box, f"{a}/feature.txt", "f\n")
    git.add(a, ["feature.txt"])
    git.commit(a, "feature", AUTHOR, EMAIL)
    git.push(a, USER, PASSWORD, set_upstream=True)
    assert git.status(a).upstream == "origin/feature/x"

    git.checkout(a, "main")
    assert git.status(a).current_branch == "main"
    with pytest.raises(GitBranchNotFoundError):
        git.checkout(a, "no-such-branch")
    git.delete_branch(a, "feature/x")
    assert git.branches(a).branches == ["main"]
    with pytest.raises(GitBranchNotFoundError):
        git.delete_branch(a, "feature/x")

    git.pull(b, USER, PASSWORD)  # fetches the new remote branch too
    git.checkout(b, "feature/x")  # a local branch tracking origin/feature/x
    st = git.status(b)
    assert (st.current_branch, st.upstream) == ("feature/x", "origin/feature/x")
    assert box.fs.download_file(f"{b}/feature.txt") == b"f\n"
    git.checkout(b, git.history(b)[1].hash)  # a commit: a detached HEAD
    assert git.status(b).detached and git.branches(b).current is None


def test_rejections_and_conflicts(box: Sandbox, url: str, d: str) -> None:
    git, a, b = box.git, f"{d}/a", f"{d}/b"
    for repo in (a, b):
        git.clone(url, repo, username=USER, password=PASSWORD)

    write(box, f"{a}/a.txt", "from a\n")
    git.add(a, ["a.txt"])
    git.commit(a, "a", AUTHOR, EMAIL)
    git.push(a, USER, PASSWORD)
    write(box, f"{b}/b.txt", "from b\n")
    git.add(b, ["b.txt"])
    git.commit(b, "b", AUTHOR, EMAIL)
    with pytest.raises(GitPushRejectedError) as rejected:
        git.push(b, USER, PASSWORD)
    assert rejected.value.status_code == 409
    git.pull(b, USER, PASSWORD)  # diverged: a merge commit
    assert git.status(b).ahead == 2
    git.push(b, USER, PASSWORD)

    git.pull(a, USER, PASSWORD)
    write(box, f"{a}/README", "a's line\n")
    git.add(a, ["README"])
    git.commit(a, "a edits README", AUTHOR, EMAIL)
    git.push(a, USER, PASSWORD)
    write(box, f"{b}/README", "b's line\n")
    git.add(b, ["README"])
    git.commit(b, "b edits README", AUTHOR, EMAIL)
    with pytest.raises(GitMergeConflictError):
        git.pull(b, USER, PASSWORD)
    assert states(box, b)["README"] == (GitFileState.UNMERGED, GitFileState.UNMERGED)

    git.create_branch(a, "other")
    write(box, f"{a}/README", "other\n")
    git.add(a, ["README"])
    git.commit(a, "other", AUTHOR, EMAIL)
    git.checkout(a, "main")
    write(box, f"{a}/README", "uncommitted\n")
    with pytest.raises(GitDirtyWorktreeError):
        git.checkout(a, "other")
    assert box.fs.download_file(f"{a}/README") == b"uncommitted\n"  # nothing was lost

    git.create_branch(a, "locked")
    with pytest.raises(GitRemoteRejectedError) as refused:
        git.push(a, USER, PASSWORD)
    assert refused.value.status_code == 422 and "protected" in refused.value.message


def test_async_client(box: Sandbox, server: object, url: str, d: str) -> None:
    async def go() -> None:
        async with AsyncSandburg(api_url=server.api_url, api_key=server.api_key) as sb:  # type: ignore[attr-defined]
            abox = await sb.get(box.id)
            with pytest.raises(GitAuthFailedError):
                await abox.git.clone(url, d, username=USER, password="nope")
            await abox.git.clone(url, d, username=USER, password=PASSWORD)
            await abox.fs.upload_file(b"async\n", f"{d}/x")
            await abox.git.add(d, "x")
            sha = await abox.git.commit(d, "async", AUTHOR, EMAIL)
            await abox.git.push(d, USER, PASSWORD)
            assert (await abox.git.history(d))[0].hash == sha
            assert (await abox.git.status(d)).is_clean

    asyncio.run(go())


def test_an_image_without_git(make_box: Callable[..., Sandbox]) -> None:
    busybox = make_box(isolation="container")  # busybox: no git
    with pytest.raises(GitNotAvailableError) as info:
        busybox.git.status("/workspace")
    assert info.value.status_code == 422 and "debian-12" in info.value.message


# -- the raw API, with Daytona's field names ------------------------------------------------------------------


def test_raw_http_with_daytonas_field_names(box: Sandbox, http: httpx.Client, url: str, d: str) -> None:
    base = f"toolbox/{box.id}/git"
    creds = {"username": USER, "password": PASSWORD}

    r = http.post(f"{base}/clone", json={"url": url, "path": d, "username": USER, "password": "bad"})
    body = r.json()
    assert r.status_code == 401, body
    assert (body["code"], body["source"], body["statusCode"]) == ("GIT_AUTH_FAILED", "DAYTONA_DAEMON", 401)
    r = http.post(f"{base}/clone", json={"url": url, "path": d, "branch": "main", **creds})
    assert (r.status_code, r.content) == (200, b"")

    r = http.get(f"{base}/status", params={"path": d})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {
        "currentBranch": "main", "fileStatus": [], "ahead": 0, "behind": 0, "branchPublished": True,
        "detached": False, "upstream": "origin/main",
    }  # fmt: skip

    write(box, f"{d}/new.txt", "new\n")
    r = http.get(f"{base}/status", params={"path": d})
    assert r.json()["fileStatus"] == [
        {"name": "new.txt", "extra": "", "staging": "Untracked", "worktree": "Untracked"}
    ]
    assert http.post(f"{base}/add", json={"path": d, "files": ["."]}).status_code == 200
    r = http.post(f"{base}/commit", json={"path": d, "message": "raw", "author": AUTHOR, "email": EMAIL})
    assert r.status_code == 200 and set(r.json()) == {"hash"}
    sha = r.json()["hash"]
    r = http.post(f"{base}/commit", json={"path": d, "message": "again", "author": AUTHOR, "email": EMAIL})
    assert r.status_code == 400, r.json()  # nothing staged
    r = http.post(
        f"{base}/commit",
        json={"path": d, "message": "e", "author": AUTHOR, "email": EMAIL, "allow_empty": True},
    )
    assert r.status_code == 200

    assert http.post(f"{base}/branches", json={"path": d, "name": "dev"}).status_code == 201
    assert http.get(f"{base}/branches", params={"path": d}).json() == {
        "branches": ["dev", "main"],
        "current": "dev",
    }
    r = http.post(f"{base}/branches", json={"path": d, "name": "dev"})
    assert (r.status_code, r.json()["code"]) == (409, "GIT_BRANCH_EXISTS")
    assert http.post(f"{base}/checkout", json={"path": d, "branch": "main"}).status_code == 200
    r = http.post(f"{base}/checkout", json={"path": d, "branch": "nope"})
    assert (r.status_code, r.json()["code"], r.json()["source"]) == (
        404,
        "GIT_BRANCH_NOT_FOUND",
        "DAYTONA_DAEMON",
    )
    r = http.request("DELETE", f"{base}/branches", json={"path": d, "name": "dev"})
    assert (r.status_code, r.content) == (204, b"")

    r = http.post(f"{base}/push", json={"path": d, **creds})
    assert (r.status_code, r.content) == (200, b"")
    r = http.post(f"{base}/pull", json={"path": d, "remote": "origin", "branch": "main", **creds})
    assert r.status_code == 200
    history = http.get(f"{base}/history", params={"path": d}).json()
    assert history[1]["hash"] == sha and set(history[1]) == {
        "hash",
        "author",
        "email",
        "message",
        "timestamp",
    }
    assert http.get(f"{base}/remotes", params={"path": d}).json() == {
        "remotes": [{"name": "origin", "url": url}]
    }
    r = http.post(f"{base}/clone", json={"url": "--upload-pack=touch /tmp/x", "path": f"{d}-x"})
    assert r.status_code == 400 and r.json()["code"] == "BAD_REQUEST"
    r = http.post(f"{base}/clone", json={"url": url, "path": d, "depth": "1"})
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR"


# -- the CLI ------------------------------------------------------------------------------------------------


@pytest.fixture
def git_cli(server: object, box: Sandbox) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`sandburg git <box> ...` in a child process; `password` goes in as $SANDBURG_GIT_PASSWORD."""
    base = dict(os.environ, SANDBURG_API_URL=server.api_url, SANDBURG_API_KEY=server.api_key)  # type: ignore[attr-defined]
    base.pop("SANDBURG_GIT_PASSWORD", None)

    def run(
        *args: str, password: str | None = None, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = base if password is None else {**base, "SANDBURG_GIT_PASSWORD": password}
        r = subprocess.run(
            [sys.executable, "-m", "sandburg.cli.main", "git", box.id, *args],
            env=env, input=stdin, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if check:
            assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r

    return run


def test_cli(
    box: Sandbox, git_cli: Callable[..., subprocess.CompletedProcess[str]], url: str, d: str
) -> None:
    a, b = f"{d}/a", f"{d}/b"
    git_cli("clone", url, a, "--username", USER, password=PASSWORD)
    git_cli("clone", url, b, "--username", USER, "--password-stdin", stdin=PASSWORD + "\n")
    assert git_cli("status", a).stdout == "## main...origin/main\n"
    write(box, f"{a}/cli.txt", "cli\n")
    assert git_cli("status", a).stdout.splitlines()[1] == "?? cli.txt"
    git_cli("add", a, "cli.txt")
    sha = git_cli("commit", a, "-m", "from the cli", "--author", AUTHOR, "--email", EMAIL).stdout.strip()
    assert len(sha) == 40
    r = git_cli("push", a, check=False)
    assert r.returncode == 1 and "(GIT_AUTH_FAILED)" in r.stderr and "Traceback" not in r.stderr
    git_cli("push", a, "--username", USER, password=PASSWORD)
    git_cli("pull", b, "--username", USER, password=PASSWORD)
    assert git_cli("log", b, "-n", "1").stdout.startswith(sha[:12])
    git_cli("branch", b, "topic")
    assert git_cli("branches", b).stdout == "  main\n* topic\n"
    git_cli("checkout", b, "main")
    git_cli("branch", b, "topic", "-d")
    r = git_cli("checkout", b, "topic", check=False)
    assert r.returncode == 1 and "(GIT_BRANCH_NOT_FOUND)" in r.stderr
