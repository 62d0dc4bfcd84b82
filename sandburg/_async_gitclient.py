"""``sandbox.git`` of the async client: ``sandburg._gitclient`` with ``await``, name for name.

Same signatures and docstrings as the sync ``Git`` (tests/unit/test_sdk_parity.py checks it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import _git
from ._git import GitBranches, GitCommitInfo, GitStatus
from ._models import SandboxInfo

if TYPE_CHECKING:
    from ._async_client import AsyncSandburg

__all__ = ["AsyncGit"]


class AsyncGit:
    """Runs git in a sandbox (``sandbox.git``), with the image's own ``git``.

    ``path`` is the repository's directory in the sandbox (a relative one starts at the working directory,
    ``/workspace``). Failures raise a :class:`GitError` subclass: :class:`GitAuthFailedError`,
    :class:`GitRepoNotFoundError`, :class:`GitBranchNotFoundError`, :class:`GitBranchExistsError`,
    :class:`GitPushRejectedError`, :class:`GitDirtyWorktreeError`, :class:`GitMergeConflictError`,
    :class:`GitRemoteRejectedError`, :class:`GitTransportError`, or :class:`GitNotAvailableError` for an
    image without git. Credentials are used for the one call and stored nowhere.
    """

    def __init__(self, client: AsyncSandburg, sandbox: SandboxInfo) -> None:
        self._client, self._sandbox = client, sandbox

    async def clone(
        self,
        url: str,
        path: str,
        *,
        branch: str | None = None,
        commit_id: str | None = None,
        depth: int | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        """Clone ``url`` into ``path`` (missing parents are made; an existing ``path`` must be empty).

        ``branch`` checks out that branch; ``commit_id`` then leaves a detached HEAD at that commit; ``depth``
        makes a shallow clone of that many commits. ``username`` / ``password`` (a token, for most hosts) go to
        the remote as HTTP basic auth for this clone only: they are not written to the repository's config or
        anywhere else in the sandbox.
        """
        request = _git.clone_request(
            self._sandbox.id, url, path, branch=branch, commit_id=commit_id, depth=depth,
            username=username, password=password,
        )  # fmt: skip
        await self._client._send(request)

    async def init(self, path: str, *, bare: bool = False, initial_branch: str | None = None) -> None:
        """Create a repository in ``path`` (and its missing parents); ``bare`` without a working tree."""
        await self._client._send(_git.init_request(self._sandbox.id, path, bare, initial_branch))

    async def status(self, path: str) -> GitStatus:
        """The current branch, its upstream, how far ahead and behind it is, and every changed file."""
        return GitStatus.from_json(await self._client._send(_git.status_request(self._sandbox.id, path)))

    async def branches(self, path: str) -> GitBranches:
        """The local branches and the checked-out one."""
        return GitBranches.from_json(await self._client._send(_git.branches_request(self._sandbox.id, path)))

    async def create_branch(self, path: str, name: str) -> None:
        """Create branch ``name`` at HEAD and check it out (as Daytona does); raises
        :class:`GitBranchExistsError` if it exists."""
        await self._client._send(_git.create_branch_request(self._sandbox.id, path, name))

    async def delete_branch(self, path: str, name: str) -> None:
        """Delete the local branch ``name``, merged or not; the checked-out branch cannot be deleted."""
        await self._client._send(_git.delete_branch_request(self._sandbox.id, path, name))

    async def checkout(self, path: str, branch: str) -> None:
        """Switch to ``branch`` (a remote branch of that name gets a local tracking branch; a tag or a commit
        gives a detached HEAD). Raises :class:`GitDirtyWorktreeError` if local changes would be overwritten."""
        await self._client._send(_git.checkout_request(self._sandbox.id, path, branch))

    async def add(self, path: str, files: str | Iterable[str]) -> None:
        """Stage ``files`` (paths relative to ``path``, or one path; ``"."`` stages everything)."""
        await self._client._send(_git.add_request(self._sandbox.id, path, files))

    async def commit(
        self, path: str, message: str, author: str, email: str, allow_empty: bool = False
    ) -> str:
        """Commit what is staged as ``author <email>`` (author and committer) and return the commit's hash.

        With nothing staged it raises :class:`BadRequestError` unless ``allow_empty``.
        """
        request = _git.commit_request(self._sandbox.id, path, message, author, email, allow_empty)
        return _git.commit_hash(await self._client._send(request))

    async def push(
        self,
        path: str,
        username: str | None = None,
        password: str | None = None,
        *,
        branch: str | None = None,
        remote: str | None = None,
        set_upstream: bool = False,
    ) -> None:
        """Push ``branch`` (default: the current one) to the branch of the same name on ``remote`` (default
        ``origin``); ``set_upstream`` makes it the upstream. Raises :class:`GitPushRejectedError` when the
        remote has commits this branch lacks (pull first)."""
        request = _git.push_request(
            self._sandbox.id,
            path,
            username,
            password,
            branch=branch,
            remote=remote,
            set_upstream=set_upstream,
        )
        await self._client._send(request)

    async def pull(
        self,
        path: str,
        username: str | None = None,
        password: str | None = None,
        *,
        branch: str | None = None,
        remote: str | None = None,
    ) -> None:
        """Fetch and merge the upstream (or ``remote``'s ``branch``): a fast-forward when possible, else a merge
        commit, never a rebase. Raises :class:`GitMergeConflictError` on conflicts (the merge is left in
        progress) and :class:`GitDirtyWorktreeError` when local changes would be overwritten."""
        request = _git.pull_request(self._sandbox.id, path, username, password, branch=branch, remote=remote)
        await self._client._send(request)

    async def history(self, path: str, *, limit: int | None = None) -> list[GitCommitInfo]:
        """The commits reachable from HEAD, newest first (at most ``limit``); empty before the first commit."""
        return _git.history(await self._client._send(_git.history_request(self._sandbox.id, path, limit)))
