"""The I/O-free half of ``sandbox.git``: the git routes' requests, and the models their answers decode into.

The wire is Daytona's toolbox git API (docs/git.md): snake_case request fields (``commit_id``, ``allow_empty``,
``set_upstream``), a camelCase status answer. Paths are sandbox paths (relative ones start at the sandbox's
working directory); a name that is not UTF-8 is a ``str`` holding its bytes as surrogate escapes, as for files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from ._core import USE_CLIENT_DEFAULT, Request, Timeout, path_segment
from ._errors import UnexpectedResponseError
from ._models import _int, _object, _str, _time, list_from_json

__all__ = ["GitBranches", "GitCommitInfo", "GitFileState", "GitFileStatus", "GitStatus"]


class GitFileState(StrEnum):
    """How a file differs, in the index (``staging``) or the working tree (``worktree``). Daytona's names."""

    UNMODIFIED = "Unmodified"
    UNTRACKED = "Untracked"
    MODIFIED = "Modified"
    ADDED = "Added"
    DELETED = "Deleted"
    RENAMED = "Renamed"
    COPIED = "Copied"
    UNMERGED = "Updated but unmerged"


@dataclass(frozen=True)
class GitFileStatus:
    """One changed or untracked file: its path (relative to the repository path given), its state in the index
    and in the working tree (:class:`GitFileState` values), and for a rename or copy the original path
    (``extra``, else empty)."""

    name: str
    staging: str
    worktree: str
    extra: str = ""

    @staticmethod
    def from_json(data: Any) -> GitFileStatus:
        """Decode a ``FileStatus`` JSON object."""
        d = _object(data, "FileStatus")
        return GitFileStatus(
            name=_str(d, "name"),
            staging=_str(d, "staging"),
            worktree=_str(d, "worktree"),
            extra=_str(d, "extra"),
        )


@dataclass(frozen=True)
class GitStatus:
    """A repository's state (:meth:`Git.status`).

    ``current_branch`` is ``"HEAD"`` when ``detached``. ``upstream`` is the tracked branch (e.g. ``origin/main``,
    empty when none); ``branch_published`` says it exists, and then ``ahead`` / ``behind`` count the commits
    each side lacks. ``file_status`` lists every changed or untracked file.
    """

    current_branch: str
    file_status: list[GitFileStatus] = field(default_factory=list)
    ahead: int = 0
    behind: int = 0
    branch_published: bool = False
    detached: bool = False
    upstream: str = ""

    @property
    def is_clean(self) -> bool:
        """Whether nothing is changed, staged or untracked."""
        return not self.file_status

    @staticmethod
    def from_json(data: Any) -> GitStatus:
        """Decode a ``GitStatus`` JSON object."""
        d = _object(data, "GitStatus")
        return GitStatus(
            current_branch=_str(d, "currentBranch"),
            file_status=[
                GitFileStatus.from_json(x) for x in list_from_json(d.get("fileStatus"), "FileStatus")
            ],
            ahead=_int(d, "ahead"),
            behind=_int(d, "behind"),
            branch_published=d.get("branchPublished") is True,
            detached=d.get("detached") is True,
            upstream=_str(d, "upstream"),
        )


@dataclass(frozen=True)
class GitBranches:
    """The local branches (:meth:`Git.branches`) and the checked-out one (None when HEAD is detached)."""

    branches: list[str]
    current: str | None = None

    @staticmethod
    def from_json(data: Any) -> GitBranches:
        """Decode a ``ListBranchResponse`` JSON object."""
        d = _object(data, "ListBranchResponse")
        names = [b for b in list_from_json(d.get("branches"), "branch") if isinstance(b, str)]
        return GitBranches(branches=names, current=_str(d, "current") or None)


@dataclass(frozen=True)
class GitCommitInfo:
    """One commit of :meth:`Git.history`: hash, author name and email, the full message, the author date."""

    hash: str
    author: str = ""
    email: str = ""
    message: str = ""
    timestamp: datetime | None = None

    @staticmethod
    def from_json(data: Any) -> GitCommitInfo:
        """Decode a ``GitCommitInfo`` JSON object."""
        d = _object(data, "GitCommitInfo")
        return GitCommitInfo(
            hash=_str(d, "hash"),
            author=_str(d, "author"),
            email=_str(d, "email"),
            message=_str(d, "message"),
            timestamp=_time(d, "timestamp"),
        )


# ---------------------------------------------------------------------------------------------- requests


def _text(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    return value


def _opt(value: str | None, what: str) -> str | None:
    return None if value is None else _text(value, what)


def _url(sandbox_id: str, suffix: str) -> str:
    return f"/toolbox/{path_segment(sandbox_id, 'a sandbox id')}/git/{suffix}"


def _post(
    sandbox_id: str, suffix: str, body: dict[str, Any], *, long: bool = False, method: str = "POST"
) -> Request:
    """A JSON body without its None fields; ``long`` ones (network, hooks) wait as long as the server allows."""
    json = {k: v for k, v in body.items() if v is not None}
    timeout: Timeout = None if long else USE_CLIENT_DEFAULT
    return Request(method, _url(sandbox_id, suffix), json=json, timeout=timeout)


def _get(sandbox_id: str, suffix: str, path: str, *extra: tuple[str, str]) -> Request:
    return Request("GET", _url(sandbox_id, suffix), params=(("path", _text(path, "path")), *extra))


def _credentials(username: str | None, password: str | None) -> dict[str, Any]:
    for what, value in (("username", username), ("password", password)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    return {"username": username, "password": password}


def clone_request(
    sandbox_id: str,
    url: str,
    path: str,
    *,
    branch: str | None = None,
    commit_id: str | None = None,
    depth: int | None = None,
    username: str | None = None,
    password: str | None = None,
) -> Request:
    """``POST /toolbox/{id}/git/clone``."""
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise ValueError(f"depth must be a whole number of at least 1, got {depth!r}")
    body = {
        "url": _text(url, "url"), "path": _text(path, "path"), "branch": _opt(branch, "branch"),
        "commit_id": _opt(commit_id, "commit_id"), "depth": depth, **_credentials(username, password),
    }  # fmt: skip
    return _post(sandbox_id, "clone", body, long=True)


def status_request(sandbox_id: str, path: str) -> Request:
    """``GET /toolbox/{id}/git/status?path=``."""
    return _get(sandbox_id, "status", path)


def branches_request(sandbox_id: str, path: str) -> Request:
    """``GET /toolbox/{id}/git/branches?path=``."""
    return _get(sandbox_id, "branches", path)


def history_request(sandbox_id: str, path: str, limit: int | None = None) -> Request:
    """``GET /toolbox/{id}/git/history?path=&limit=``."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a whole number of at least 1, got {limit!r}")
    return _get(sandbox_id, "history", path, *((("limit", str(limit)),) if limit is not None else ()))


def init_request(
    sandbox_id: str, path: str, bare: bool = False, initial_branch: str | None = None
) -> Request:
    """``POST /toolbox/{id}/git/init``."""
    body = {"path": _text(path, "path"), "bare": bool(bare), "initial_branch": _opt(initial_branch, "branch")}
    return _post(sandbox_id, "init", body)


def create_branch_request(sandbox_id: str, path: str, name: str) -> Request:
    """``POST /toolbox/{id}/git/branches`` (creates and checks out)."""
    return _post(sandbox_id, "branches", {"path": _text(path, "path"), "name": _text(name, "name")})


def delete_branch_request(sandbox_id: str, path: str, name: str) -> Request:
    """``DELETE /toolbox/{id}/git/branches`` with a JSON body."""
    body = {"path": _text(path, "path"), "name": _text(name, "name")}
    return _post(sandbox_id, "branches", body, method="DELETE")


def checkout_request(sandbox_id: str, path: str, branch: str) -> Request:
    """``POST /toolbox/{id}/git/checkout``."""
    return _post(sandbox_id, "checkout", {"path": _text(path, "path"), "branch": _text(branch, "branch")})


def add_request(sandbox_id: str, path: str, files: str | Iterable[str]) -> Request:
    """``POST /toolbox/{id}/git/add``; one path alone is fine."""
    paths = [_text(f, "each file") for f in ([files] if isinstance(files, str) else files)]
    if not paths:
        raise ValueError("add needs at least one path ('.' for everything)")
    return _post(sandbox_id, "add", {"path": _text(path, "path"), "files": paths})


def commit_request(
    sandbox_id: str, path: str, message: str, author: str, email: str, allow_empty: bool = False
) -> Request:
    """``POST /toolbox/{id}/git/commit``."""
    if not isinstance(email, str):
        raise TypeError(f"email must be a str, got {type(email).__name__}")
    body = {
        "path": _text(path, "path"), "message": _text(message, "message"), "author": _text(author, "author"),
        "email": email, "allow_empty": bool(allow_empty),
    }  # fmt: skip
    return _post(sandbox_id, "commit", body, long=True)


def push_request(
    sandbox_id: str,
    path: str,
    username: str | None = None,
    password: str | None = None,
    *,
    branch: str | None = None,
    remote: str | None = None,
    set_upstream: bool = False,
) -> Request:
    """``POST /toolbox/{id}/git/push``."""
    body = {
        "path": _text(path, "path"), "branch": _opt(branch, "branch"), "remote": _opt(remote, "remote"),
        "set_upstream": bool(set_upstream), **_credentials(username, password),
    }  # fmt: skip
    return _post(sandbox_id, "push", body, long=True)


def pull_request(
    sandbox_id: str,
    path: str,
    username: str | None = None,
    password: str | None = None,
    *,
    branch: str | None = None,
    remote: str | None = None,
) -> Request:
    """``POST /toolbox/{id}/git/pull``."""
    body = {
        "path": _text(path, "path"), "branch": _opt(branch, "branch"), "remote": _opt(remote, "remote"),
        **_credentials(username, password),
    }  # fmt: skip
    return _post(sandbox_id, "pull", body, long=True)


def commit_hash(data: Any) -> str:
    """Decode ``{"hash": str}`` (the answer of ``POST git/commit``)."""
    h = _str(_object(data, "GitCommitResponse"), "hash")
    if not h:
        raise UnexpectedResponseError("GitCommitResponse without a 'hash'", body=data)
    return h


def history(data: Any) -> list[GitCommitInfo]:
    """Decode ``[GitCommitInfo]``."""
    return [GitCommitInfo.from_json(x) for x in list_from_json(data, "GitCommitInfo")]
