"""The git routes' command lines, credentials environment, output parsing and failure classification
(sandburg/server/gitcmd.py). Pure functions on recorded git 2.39 output; the last test checks the status parser
against a real `git` on this host when there is one. The routes themselves run in tests/e2e/test_git.py."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sandburg._codes import ErrorCode
from sandburg.server import gitcmd

# -- command lines -------------------------------------------------------------------------------------------------


def test_clone_argv_puts_url_and_path_after_the_end_of_options() -> None:
    assert gitcmd.clone_argv("https://h/r.git", "/w/r") == ["git", "clone", "--", "https://h/r.git", "/w/r"]
    assert gitcmd.clone_argv("https://h/r.git", "-w", "dev", 3) == [
        "git", "clone", "--branch", "dev", "--depth", "3", "--", "https://h/r.git", "-w",
    ]  # fmt: skip
    # git ignores --depth for a local path: a file:// URL keeps it shallow
    assert gitcmd.clone_argv("/srv/o.git", "c", None, 1)[-2] == "file:///srv/o.git"
    assert gitcmd.clone_argv("/srv/o.git", "c")[-2] == "/srv/o.git"


@pytest.mark.parametrize(
    "call",
    [
        lambda: gitcmd.clone_argv("--upload-pack=touch /x", "p"),
        lambda: gitcmd.clone_argv("u", "p", "--orphan"),
        lambda: gitcmd.checkout_argv("p", "-f"),
        lambda: gitcmd.push_argv("p", "--exec=x", None),
        lambda: gitcmd.push_argv("p", None, "-d"),
        lambda: gitcmd.pull_argv("p", None, "--rebase"),
        lambda: gitcmd.detach_argv("p", ""),
        lambda: gitcmd.reset_argv("p", "hard", "--x", None),
        lambda: gitcmd.reset_argv("p", "sideways", None, None),
        lambda: gitcmd.restore_argv("p", [], None, None, None),
        lambda: gitcmd.restore_argv("p", ["a"], None, None, "-s"),
        lambda: gitcmd.config_argv(None, "local", "--get", "k"),
        lambda: gitcmd.config_argv("p", "worktree", "--get", "k"),
        lambda: gitcmd.check_name("a\0b", "branch"),
    ],
)
def test_what_git_could_read_as_an_option_is_refused(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


def test_push_and_pull_defaults() -> None:
    assert gitcmd.push_argv("r", None, None) == ["git", "-C", "r", "push", "origin", "HEAD"]
    assert gitcmd.push_argv("r", "up", "dev", True) == [
        "git",
        "-C",
        "r",
        "push",
        "--set-upstream",
        "up",
        "dev",
    ]
    assert gitcmd.pull_argv("r", None, None) == ["git", "-C", "r", "pull", "--no-rebase", "--no-edit"]
    assert gitcmd.pull_argv("r", "up", None)[-1] == "up"
    assert gitcmd.pull_argv("r", None, "dev")[-2:] == ["origin", "dev"]


def test_reset_restore_and_config() -> None:
    assert gitcmd.reset_argv("r", None, None, None) == ["git", "-C", "r", "reset", "HEAD"]
    assert gitcmd.reset_argv("r", "hard", "HEAD~1", None)[-2:] == ["--hard", "HEAD~1"]
    assert gitcmd.reset_argv("r", "mixed", None, ["a", "-b"]) == [
        "git",
        "-C",
        "r",
        "reset",
        "HEAD",
        "--",
        "a",
        "-b",
    ]
    assert gitcmd.restore_argv("r", ["-x"], True, True, "HEAD~2") == [
        "git", "-C", "r", "restore", "--staged", "--worktree", "--source=HEAD~2", "--", "-x",
    ]  # fmt: skip
    assert gitcmd.config_argv(None, None, "--get", "user.name") == [
        "git",
        "config",
        "--global",
        "--get",
        "user.name",
    ]
    assert gitcmd.config_argv("r", "local", "k", "v") == ["git", "-C", "r", "config", "--local", "k", "v"]


# -- credentials -----------------------------------------------------------------------------------------------


def test_credentials_become_an_auth_header_in_the_environment_only() -> None:
    assert gitcmd.auth_env(None, None) == {}
    env = gitcmd.auth_env("alice", "s3cr:et")
    assert env["GIT_CONFIG_COUNT"] == "2"
    # the first entry clears headers from the sandbox's own git config, the second is ours
    assert (env["GIT_CONFIG_KEY_0"], env["GIT_CONFIG_VALUE_0"]) == ("http.extraHeader", "")
    assert env["GIT_CONFIG_KEY_1"] == "http.extraHeader"
    scheme, token = env["GIT_CONFIG_VALUE_1"].split(": ", 1)[1].split(" ")
    assert scheme == "Basic" and base64.b64decode(token) == b"alice:s3cr:et"
    assert all("s3cr" not in v for v in env.values())
    tls = gitcmd.auth_env(None, "tok", insecure_skip_tls=True)
    assert tls["GIT_CONFIG_COUNT"] == "3" and tls["GIT_CONFIG_VALUE_2"] == "false"
    assert gitcmd.auth_env(None, None, True) == {
        "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.sslVerify", "GIT_CONFIG_VALUE_0": "false",
    }  # fmt: skip
    assert gitcmd.ENV["GIT_TERMINAL_PROMPT"] == "0" and gitcmd.ENV["GIT_ASKPASS"] == ""


def test_failure_messages_never_carry_the_password() -> None:
    token = base64.b64encode(b"alice:hunter22").decode()
    out = f"fatal: unable to access 'https://alice:hunter22@h/r/': header {token}\nhint: try again\n".encode()
    code, message = gitcmd.failure("push", b"", out, 128, gitcmd.secrets_of("alice", "hunter22"))
    assert code is ErrorCode.GIT_TRANSPORT_FAILED
    assert "hunter22" not in message and token not in message and "***" in message
    assert "hint" not in message and message.startswith("git push failed: ")
    assert gitcmd.failure("add", b"", b"", 1) == (ErrorCode.BAD_REQUEST, "git add failed: exit code 1")


# -- failures --------------------------------------------------------------------------------------------------

GIT_MESSAGES = [
    ("fatal: could not read Username for 'http://h': terminal prompts disabled", ErrorCode.GIT_AUTH_FAILED),
    ("remote: Invalid username or password.\nfatal: Authentication failed for 'https://h/r/'", ErrorCode.GIT_AUTH_FAILED),
    ("fatal: unable to access 'https://h/r/': The requested URL returned error: 403", ErrorCode.GIT_AUTH_FAILED),
    ("git@h: Permission denied (publickey).\nfatal: Could not read from remote repository.", ErrorCode.GIT_AUTH_FAILED),
    ("fatal: repository 'http://h/nope.git/' not found", ErrorCode.GIT_REPO_NOT_FOUND),
    ("fatal: repository '/srv/no-such.git' does not exist", ErrorCode.GIT_REPO_NOT_FOUND),
    ("fatal: not a git repository (or any of the parent directories): .git", ErrorCode.GIT_REPO_NOT_FOUND),
    ("fatal: cannot change to '/w/x': No such file or directory", ErrorCode.GIT_REPO_NOT_FOUND),
    ("fatal: 'upstream' does not appear to be a git repository", ErrorCode.GIT_REPO_NOT_FOUND),
    ("fatal: Remote branch nope not found in upstream origin", ErrorCode.GIT_BRANCH_NOT_FOUND),
    ("fatal: invalid reference: nope", ErrorCode.GIT_BRANCH_NOT_FOUND),
    ("error: branch 'feature' not found.", ErrorCode.GIT_BRANCH_NOT_FOUND),
    ("error: src refspec nope does not match any", ErrorCode.GIT_BRANCH_NOT_FOUND),
    ("There is no tracking information for the current branch.", ErrorCode.GIT_BRANCH_NOT_FOUND),
    ("fatal: a branch named 'main' already exists", ErrorCode.GIT_BRANCH_EXISTS),
    (
        " ! [rejected]        main -> main (fetch first)\nerror: failed to push some refs to 'http://h/r.git'\n"
        "hint: Updates were rejected because the remote contains work that you do not",
        ErrorCode.GIT_PUSH_REJECTED,
    ),
    (" ! [rejected]        main -> main (non-fast-forward)", ErrorCode.GIT_PUSH_REJECTED),
    (
        "remote: locked\n ! [remote rejected] locked -> locked (pre-receive hook declined)\n"
        "error: failed to push some refs",
        ErrorCode.GIT_REMOTE_REJECTED,
    ),
    (
        "error: Your local changes to the following files would be overwritten by checkout:\n\ta\n"
        "Please commit your changes or stash them before you switch branches.",
        ErrorCode.GIT_DIRTY_WORKTREE,
    ),
    (
        "Auto-merging a\nCONFLICT (content): Merge conflict in a\n"
        "Automatic merge failed; fix conflicts and then commit the result.",
        ErrorCode.GIT_MERGE_CONFLICT,
    ),
    ("error: Committing is not possible because you have unmerged files.", ErrorCode.GIT_MERGE_CONFLICT),
    ("fatal: unable to access 'http://h/': Could not resolve host: h", ErrorCode.GIT_TRANSPORT_FAILED),
    ("fatal: unable to access 'http://127.0.0.1:1/r/': Failed to connect to 127.0.0.1 port 1", ErrorCode.GIT_TRANSPORT_FAILED),
    ("error: RPC failed; curl 56 Recv failure\nfatal: early EOF", ErrorCode.GIT_TRANSPORT_FAILED),
    ("fatal: destination path 'r' already exists and is not an empty directory.", ErrorCode.FILE_EXISTS),
    ("fatal: pathspec 'nope.txt' did not match any files", ErrorCode.FILE_NOT_FOUND),
    ("error: pathspec 'x' did not match any file(s) known to git", ErrorCode.FILE_NOT_FOUND),
    ("fatal: write error: No space left on device", ErrorCode.DISK_QUOTA_EXCEEDED),
    ("On branch main\nnothing to commit, working tree clean", ErrorCode.BAD_REQUEST),
    ("fatal: 'a..b' is not a valid branch name", ErrorCode.BAD_REQUEST),
    ("error: Cannot delete branch 'main' checked out at '/w/r'", ErrorCode.BAD_REQUEST),
]  # fmt: skip


@pytest.mark.parametrize(
    ("output", "code"), GIT_MESSAGES, ids=[c.value + str(i) for i, (_, c) in enumerate(GIT_MESSAGES)]
)
def test_classify(output: str, code: ErrorCode) -> None:
    assert gitcmd.classify(output) is code


# -- parsing ---------------------------------------------------------------------------------------------------

H1, H2 = "7898192261" * 4, "93829c7b4a" * 4
STATUS = (
    b"# branch.oid a3b04da27966415eac1d1846b51b98f6ec4515ea\0# branch.head main\0# branch.upstream origin/main\0"
    b"# branch.ab +2 -1\0"
    + f"1 MM N... 100644 100644 100644 {H1} {H2} a.txt\0".encode()
    + f"1 .D N... 100644 100644 000000 {H1} {H1} gone\0".encode()
    + f"1 A. N... 000000 100644 100644 {'0' * 40} {H1} dir/with space\0".encode()
    + f"2 R. N... 100644 100644 100644 {H1} {H1} R100 new name\0old name\0".encode()
    + f"u UU N... 100644 100644 100644 100644 {H1} {H2} {H1} conflicted\0".encode()
    + b"? caf\xe9\0? untracked/deep.txt\0"
)


def test_parse_status() -> None:
    st = gitcmd.parse_status(STATUS)
    assert (st.current_branch, st.detached, st.upstream, st.ahead, st.behind, st.published) == (
        "main", False, "origin/main", 2, 1, True,
    )  # fmt: skip
    assert [(f["name"], f["staging"], f["worktree"], f["extra"]) for f in st.files] == [
        ("a.txt", "Modified", "Modified", ""),
        ("gone", "Unmodified", "Deleted", ""),
        ("dir/with space", "Added", "Unmodified", ""),
        ("new name", "Renamed", "Unmodified", "old name"),
        ("conflicted", "Updated but unmerged", "Updated but unmerged", ""),
        ("caf\udce9", "Untracked", "Untracked", ""),  # a name that is not UTF-8 keeps its byte
        ("untracked/deep.txt", "Untracked", "Untracked", ""),
    ]
    wire = st.wire()
    assert set(wire) == {
        "currentBranch",
        "fileStatus",
        "ahead",
        "behind",
        "branchPublished",
        "detached",
        "upstream",
    }


def test_parse_status_edge_cases() -> None:
    fresh = gitcmd.parse_status(b"# branch.oid (initial)\0# branch.head main\0")
    assert (fresh.current_branch, fresh.published, fresh.files, fresh.upstream) == ("main", False, [], "")
    detached = gitcmd.parse_status(b"# branch.oid abc\0# branch.head (detached)\0")
    assert (detached.current_branch, detached.detached) == ("HEAD", True)
    gone = gitcmd.parse_status(
        b"# branch.head dev\0# branch.upstream origin/dev\0"
    )  # upstream branch deleted
    assert (gone.upstream, gone.published, gone.ahead) == ("origin/dev", False, 0)
    cut = gitcmd.parse_status(STATUS[:-5])  # output truncated in the middle of the last record
    assert [f["name"] for f in cut.files][-1] == "caf\udce9"
    assert gitcmd.parse_status(b"") == gitcmd.Status()


def test_parse_branches_log_and_remotes() -> None:
    assert gitcmd.parse_branches(b" feature\n*main\n wip/x\n") == (["feature", "main", "wip/x"], "main")
    assert gitcmd.parse_branches(b" a\n") == (["a"], None)
    log = (
        f"{H1}\0Ada\0ada@x\0" "2025-01-02T03:04:05+01:00\0second\n\nbody\n\0"
        f"{H2}\0Bob\0bob@x\0" "2025-01-01T00:00:00+00:00\0first\n\0"
    ).encode()  # fmt: skip
    commits = gitcmd.parse_log(log)
    assert commits[0] == {
        "hash": H1, "author": "Ada", "email": "ada@x", "message": "second\n\nbody\n",
        "timestamp": "2025-01-02T03:04:05+01:00",
    }  # fmt: skip
    assert [c["hash"] for c in commits] == [H1, H2]
    assert [c["hash"] for c in gitcmd.parse_log(log, truncated=True)] == [H1]
    assert gitcmd.parse_log(b"") == []
    remotes = b"origin\thttp://h/r.git (fetch)\norigin\thttp://h/push.git (push)\nup\t/srv/o.git (fetch)\n"
    assert gitcmd.parse_remotes(remotes) == [
        {"name": "origin", "url": "http://h/r.git"}, {"name": "up", "url": "/srv/o.git"},
    ]  # fmt: skip


@pytest.mark.skipif(shutil.which("git") is None, reason="no git on this host")
def test_status_parser_against_real_git(tmp_path: Path) -> None:
    env = {**os.environ, **gitcmd.ENV, **gitcmd.author_env("T", "t@x"), "HOME": str(tmp_path)}

    def git(*args: str) -> bytes:
        return subprocess.run(
            ["git", "-C", str(tmp_path / "r"), *args], env=env, check=True, capture_output=True
        ).stdout

    subprocess.run(["git", "init", "-q", "-b", "main", str(tmp_path / "r")], env=env, check=True)
    (tmp_path / "r" / "a").write_text("1\n")
    (tmp_path / "r" / "b").write_text("2\n")
    git("add", ".")
    git("commit", "-qm", "one")
    git("mv", "b", "c")
    (tmp_path / "r" / "a").write_text("changed\n")
    (tmp_path / "r" / "new dir").mkdir()
    (tmp_path / "r" / "new dir" / "f").write_text("x")
    st = gitcmd.parse_status(git(*gitcmd.STATUS_ARGS))
    assert st.current_branch == "main" and not st.published
    assert {f["name"]: (f["staging"], f["worktree"], f["extra"]) for f in st.files} == {
        "a": ("Unmodified", "Modified", ""),
        "c": ("Renamed", "Unmodified", "b"),
        "new dir/f": ("Untracked", "Untracked", ""),
    }
    names, current = gitcmd.parse_branches(git(*gitcmd.BRANCHES_ARGS))
    assert (names, current) == (["main"], "main")
    (commit,) = gitcmd.parse_log(git("log", "-z", gitcmd.LOG_FORMAT))
    assert (commit["author"], commit["email"], commit["message"]) == ("T", "t@x", "one\n")


def test_a_merge_commit_gets_an_identity_only_where_the_config_has_none() -> None:
    assert gitcmd.fallback_identity(b"user.name Ada\nuser.email ada@x\n") == {}
    assert gitcmd.fallback_identity(b"user.name Ada\n") == {
        "GIT_AUTHOR_EMAIL": "sandburg@localhost", "GIT_COMMITTER_EMAIL": "sandburg@localhost",
    }  # fmt: skip
    assert set(gitcmd.fallback_identity(b"")) == {
        "GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL",
    }  # fmt: skip
