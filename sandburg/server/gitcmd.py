"""Git command lines for the toolbox git routes, and the parsing of what git prints. Pure: no I/O.

Every command is an argv run by the sandbox's agent directly (no shell, so nothing in a request is ever parsed as
shell syntax), in the image's own `git`, with `ENV` merged over the sandbox's environment: no prompts (a missing
credential fails at once instead of hanging), messages in English (they are classified below) and no editor.

Credentials never reach argv, a URL, a file or git's config files: `auth_env` turns them into an
`Authorization: Basic` header that git reads from its environment (`GIT_CONFIG_COUNT` / `GIT_CONFIG_KEY_n` /
`GIT_CONFIG_VALUE_n`, git ≥ 2.31) for that one command. A process's environment is readable only by its own user
(and root), unlike its argv.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from .._codes import ErrorCode

ENV: Final[dict[str, str]] = {
    "GIT_TERMINAL_PROMPT": "0",  # never wait for a username or password on a terminal
    "GIT_ASKPASS": "",  # nor ask a helper program for them (an empty value disables core.askPass/SSH_ASKPASS)
    "SSH_ASKPASS": "",
    "GCM_INTERACTIVE": "never",
    "GIT_EDITOR": "true",
    "GIT_PAGER": "cat",
    "LC_ALL": "C.UTF-8",  # English messages, whatever the sandbox's locale: classify() reads them
    "LANGUAGE": "",
}

RESET_MODES: Final = frozenset({"soft", "mixed", "hard", "merge", "keep"})
CONFIG_SCOPES: Final = frozenset({"global", "local", "system"})


def check_name(value: str, what: str) -> str:
    """A branch, remote, revision or URL as git's argument: refused if git could read it as an option."""
    if not value or value.startswith("-") or "\0" in value:
        raise ValueError(f"{what} must not be empty, start with '-' or contain a NUL byte: {value!r}")
    return value


def repo(path: str, *args: str) -> list[str]:
    """`git -C <path> <args...>`: relative paths start at the sandbox's working directory (the agent's cwd)."""
    return ["git", "-C", path, *args]


def auth_env(username: str | None, password: str | None, insecure_skip_tls: bool = False) -> dict[str, str]:
    """Environment that gives one git command HTTP basic credentials (and/or skips TLS verification).

    The header is sent on this command's HTTP requests only (curl drops it on a redirect to another host). The
    empty `http.extraHeader` first clears any header from the sandbox's git config files.
    """
    entries: list[tuple[str, str]] = []
    if username is not None or password is not None:
        pair = f"{username or ''}:{password or ''}".encode("utf-8", "surrogateescape")
        entries += [
            ("http.extraHeader", ""),
            ("http.extraHeader", "Authorization: Basic " + base64.b64encode(pair).decode()),
        ]
    if insecure_skip_tls:
        entries.append(("http.sslVerify", "false"))
    if not entries:
        return {}
    env = {"GIT_CONFIG_COUNT": str(len(entries))}
    for i, (key, value) in enumerate(entries):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
    return env


def secrets_of(username: str | None, password: str | None) -> list[str]:
    """What must never appear in an error message: the password and the encoded header (not the username)."""
    if password is None:
        return []
    pair = f"{username or ''}:{password}".encode("utf-8", "surrogateescape")
    return [s for s in (password, base64.b64encode(pair).decode()) if len(s) >= 3]


def author_env(author: str, email: str) -> dict[str, str]:
    """Author and committer of a commit, without touching any config."""
    return {
        "GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": author, "GIT_COMMITTER_EMAIL": email,
    }  # fmt: skip


FALLBACK_NAME, FALLBACK_EMAIL = "sandburg", "sandburg@localhost"
IDENTITY_ARGS: Final = ("config", "--get-regexp", r"^user\.(name|email)$")


def fallback_identity(configured: bytes) -> dict[str, str]:
    """For a merge commit made by pull: the identity parts the repository's config lacks (from the output of
    IDENTITY_ARGS), so that git does not refuse for want of a name; what is configured stays in charge."""
    keys = {line.split(b" ", 1)[0] for line in configured.splitlines()}
    env: dict[str, str] = {}
    if b"user.name" not in keys:
        env.update(GIT_AUTHOR_NAME=FALLBACK_NAME, GIT_COMMITTER_NAME=FALLBACK_NAME)
    if b"user.email" not in keys:
        env.update(GIT_AUTHOR_EMAIL=FALLBACK_EMAIL, GIT_COMMITTER_EMAIL=FALLBACK_EMAIL)
    return env


# -- command lines -------------------------------------------------------------------------------------------------
def clone_argv(url: str, path: str, branch: str | None = None, depth: int | None = None) -> list[str]:
    """`git clone`; with `depth`, an absolute local path becomes a file:// URL (git ignores --depth otherwise)."""
    argv = ["git", "clone"]
    if branch is not None:
        argv += ["--branch", check_name(branch, "branch")]
    if depth is not None:
        argv += ["--depth", str(depth)]
        if url.startswith("/"):
            url = "file://" + url
    return [*argv, "--", check_name(url, "url"), path]


def detach_argv(path: str, rev: str) -> list[str]:
    return repo(path, "-c", "advice.detachedHead=false", "switch", "--detach", check_name(rev, "commit"))


def checkout_argv(path: str, branch: str) -> list[str]:
    return repo(path, "switch", check_name(branch, "branch"))


def push_argv(path: str, remote: str | None, branch: str | None, set_upstream: bool = False) -> list[str]:
    """Push `branch` (default: the current one, as HEAD) to the same name on `remote` (default origin)."""
    argv = repo(path, "push")
    if set_upstream:
        argv.append("--set-upstream")
    return [*argv, check_name(remote or "origin", "remote"), check_name(branch or "HEAD", "branch")]


def pull_argv(path: str, remote: str | None, branch: str | None) -> list[str]:
    """Fetch and merge (fast-forward when possible; never a rebase), without an editor."""
    argv = repo(path, "pull", "--no-rebase", "--no-edit")
    if branch is not None:
        return [*argv, check_name(remote or "origin", "remote"), check_name(branch, "branch")]
    return argv if remote is None else [*argv, check_name(remote, "remote")]


def reset_argv(path: str, mode: str | None, target: str | None, files: list[str] | None) -> list[str]:
    if mode is not None and mode not in RESET_MODES:
        raise ValueError(f"mode must be one of {', '.join(sorted(RESET_MODES))}, got {mode!r}")
    argv = repo(path, "reset")
    if mode is not None and not (files and mode == "mixed"):  # git deprecates --mixed with paths
        argv.append(f"--{mode}")
    argv.append(check_name(target or "HEAD", "target"))
    return [*argv, "--", *files] if files else argv


def restore_argv(
    path: str, files: list[str], staged: bool | None, worktree: bool | None, source: str | None
) -> list[str]:
    if not files:
        raise ValueError("files must name at least one path")
    argv = repo(path, "restore")
    if staged:
        argv.append("--staged")
    if worktree:
        argv.append("--worktree")
    if source is not None:
        argv.append("--source=" + check_name(source, "source"))
    return [*argv, "--", *files]


def config_argv(path: str | None, scope: str | None, *args: str) -> list[str]:
    """`git config --<scope> ...`, in the repository at `path` when given (required for the local scope)."""
    scope = scope or "global"
    if scope not in CONFIG_SCOPES:
        raise ValueError(f"scope must be one of global, local, system, got {scope!r}")
    if scope == "local" and not path:
        raise ValueError("path is required for the local scope")
    base = repo(path) if path else ["git"]
    return [*base, "config", f"--{scope}", *args]


STATUS_ARGS: Final = ("status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all")
BRANCHES_ARGS: Final = ("for-each-ref", "--format=%(HEAD)%(refname:strip=2)", "refs/heads")
LOG_FORMAT: Final = "--format=%H%x00%an%x00%ae%x00%aI%x00%B"


# -- parsing -------------------------------------------------------------------------------------------------------
def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")  # names that are not UTF-8 keep their bytes (docs/api.md)


_STATES = {
    ".": "Unmodified", "M": "Modified", "T": "Modified", "A": "Added", "D": "Deleted", "R": "Renamed",
    "C": "Copied", "U": "Updated but unmerged", "?": "Untracked",
}  # fmt: skip
UNMERGED = "Updated but unmerged"


@dataclass
class Status:
    """`git status --porcelain=v2 --branch -z` as Daytona's GitStatus."""

    current_branch: str = ""
    detached: bool = False
    upstream: str = ""
    ahead: int = 0
    behind: int = 0
    published: bool = False
    files: list[dict[str, str]] = field(default_factory=list)

    def wire(self) -> dict[str, Any]:
        return {
            "currentBranch": self.current_branch, "fileStatus": self.files, "ahead": self.ahead,
            "behind": self.behind, "branchPublished": self.published, "detached": self.detached,
            "upstream": self.upstream,
        }  # fmt: skip


def _entry(name: bytes, staging: str, worktree: str, extra: bytes = b"") -> dict[str, str]:
    return {"name": _text(name), "extra": _text(extra), "staging": staging, "worktree": worktree}


def parse_status(out: bytes) -> Status:
    """Parse the porcelain v2 records; a record cut short (output truncated) is dropped."""
    st = Status()
    fields = out.split(b"\0")
    if fields and fields[-1]:
        fields.pop()  # no terminating NUL: the last record is incomplete
    i = 0
    while i < len(fields):
        rec = fields[i]
        i += 1
        kind = rec[:2]
        if kind == b"# ":
            key, _, value = _text(rec[2:]).partition(" ")
            if key == "branch.head":
                st.detached = value == "(detached)"
                st.current_branch = "HEAD" if st.detached else value
            elif key == "branch.upstream":
                st.upstream = value
            elif key == "branch.ab":
                m = re.fullmatch(r"\+(\d+) -(\d+)", value)
                if m:
                    st.ahead, st.behind, st.published = int(m[1]), int(m[2]), True
        elif kind == b"1 " and len(parts := rec.split(b" ", 8)) == 9:
            xy = _text(parts[1])
            st.files.append(_entry(parts[8], _STATES.get(xy[0], "Modified"), _STATES.get(xy[1], "Modified")))
        elif kind == b"2 " and len(parts := rec.split(b" ", 9)) == 10 and i < len(fields):
            xy, orig = _text(parts[1]), fields[i]
            i += 1
            st.files.append(
                _entry(parts[9], _STATES.get(xy[0], "Modified"), _STATES.get(xy[1], "Modified"), orig)
            )
        elif kind == b"u " and len(parts := rec.split(b" ", 10)) == 11:
            st.files.append(_entry(parts[10], UNMERGED, UNMERGED))
        elif kind == b"? ":
            st.files.append(_entry(rec[2:], "Untracked", "Untracked"))
    return st


def parse_branches(out: bytes) -> tuple[list[str], str | None]:
    """`for-each-ref --format=%(HEAD)%(refname:strip=2) refs/heads`: the local branches and the checked-out one."""
    names, current = [], None
    for line in out.split(b"\n"):
        if len(line) < 2:
            continue
        name = _text(line[1:])
        names.append(name)
        if line[:1] == b"*":
            current = name
    return names, current


def parse_log(out: bytes, truncated: bool = False) -> list[dict[str, str]]:
    """`git log -z` with LOG_FORMAT: hash, author, email, ISO-8601 date and the raw message of each commit."""
    fields = out.split(b"\0")
    if fields and not fields[-1]:
        fields.pop()
    count = len(fields) // 5
    if truncated and count:
        count -= 1  # the last complete-looking commit may have lost the end of its message
    commits = []
    for k in range(count):
        h, name, email, when, message = (_text(f) for f in fields[5 * k : 5 * k + 5])
        commits.append({"hash": h, "author": name, "email": email, "message": message, "timestamp": when})
    return commits


def parse_remotes(out: bytes) -> list[dict[str, str]]:
    """`git remote -v`: `name<TAB>url (fetch)` lines; one entry per remote, with its fetch URL."""
    seen: dict[str, str] = {}
    for line in _text(out).splitlines():
        name, tab, rest = line.partition("\t")
        url, _, kind = rest.rpartition(" ")
        if tab and url and (kind == "(fetch)" or name not in seen):
            seen[name] = url
    return [{"name": n, "url": u} for n, u in seen.items()]


# -- failures ------------------------------------------------------------------------------------------------------
# (code, pattern over the lower-cased output). The first match wins, so the order matters: an auth failure also
# says "unable to access", a rejected push also says "failed to push some refs".
_RULES: Final[list[tuple[ErrorCode, re.Pattern[str]]]] = [
    (code, re.compile("|".join(needles)))
    for code, needles in [
        (ErrorCode.GIT_AUTH_FAILED, [
            r"authentication failed", r"invalid username or password", r"could not read (username|password)",
            r"terminal prompts disabled", r"returned error: 40[13]", r"http basic: access denied",
            r"permission denied \(publickey", r"host key verification failed",
        ]),
        (ErrorCode.GIT_REMOTE_REJECTED, [r"\[remote rejected\]", r"hook declined", r"protected branch"]),
        (ErrorCode.GIT_PUSH_REJECTED, [
            r"! \[rejected\]", r"non-fast-forward", r"\(fetch first\)", r"updates were rejected", r"stale info",
        ]),
        (ErrorCode.GIT_REPO_NOT_FOUND, [
            r"repository not found", r"returned error: 404", r"does not appear to be a git repository",
            r"not a git repository", r"cannot change to", r"no such remote", r"remote: not found",
            r"repository '.*' (does not exist|not found)",
        ]),
        (ErrorCode.GIT_MERGE_CONFLICT, [
            r"automatic merge failed", r"conflict \(", r"fix conflicts", r"unmerged files", r"needs merge",
            r"you have not concluded your merge", r"merge_head exists",
        ]),
        (ErrorCode.GIT_DIRTY_WORKTREE, [
            r"would be overwritten by", r"please commit your changes or stash them",
        ]),
        (ErrorCode.GIT_BRANCH_EXISTS, [r"a branch named .* already exists"]),
        (ErrorCode.GIT_BRANCH_NOT_FOUND, [
            r"invalid reference", r"not found in upstream", r"couldn't find remote ref", r"src refspec",
            r"unknown revision", r"not a valid object name", r"reference is not a tree", r"not a commit",
            r"you are not currently on a branch", r"not a full refname", r"no tracking information",
            r"bad revision", r"branch '.*' not found", r"ambiguous argument",
        ]),
        (ErrorCode.GIT_TRANSPORT_FAILED, [
            r"could not resolve host", r"failed to connect", r"connection refused", r"connection timed out",
            r"couldn't connect", r"unable to access", r"ssl certificate", r"the remote end hung up",
            r"early eof", r"rpc failed", r"could not read from remote repository", r"connection reset",
            r"network is unreachable", r"empty reply from server", r"returned error: 5\d\d",
        ]),
        (ErrorCode.FILE_EXISTS, [r"already exists and is not an empty directory"]),
        (ErrorCode.FILE_NOT_FOUND, [r"did not match any file"]),
        (ErrorCode.DISK_QUOTA_EXCEEDED, [r"no space left on device", r"disk quota exceeded"]),
    ]
]  # fmt: skip


def classify(output: str) -> ErrorCode:
    """The code of a failed git command from its output (BAD_REQUEST when nothing specific matches)."""
    low = output.lower()
    for code, pattern in _RULES:
        if pattern.search(low):
            return code
    return ErrorCode.BAD_REQUEST


def failure(
    op: str, stdout: bytes, stderr: bytes, exit_code: int, secrets: Sequence[str] = ()
) -> tuple[ErrorCode, str]:
    """Code and message for a git command that exited non-zero; `secrets` are blanked out of the message."""
    text = (_text(stderr) + "\n" + _text(stdout)).strip()
    for secret in secrets:
        text = text.replace(secret, "***")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("hint:")]
    detail = "\n".join(lines[-15:])[-2000:] or f"exit code {exit_code}"
    return classify(text), f"git {op} failed: {detail}"
