"""/api/toolbox/{sandboxId}/git/...: Daytona's toolbox git API, run by the image's own `git` (docs/git.md).

Paths, bodies, status codes and answers are those of Daytona's generated toolbox client, so `sandbox.git.*` of its
SDKs works unchanged. Each route runs one or two git command lines (built in `..gitcmd`) through the sandbox's
agent as an argv, never through a shell; credentials travel in that one command's environment only.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from ..._codes import ErrorCode
from ...node.agent_client import ExecResult
from .. import gitcmd
from ..auth import Principal
from ..errors import ApiError
from ..gitschemas import (
    GitAddRemoteRequest,
    GitAddRequest,
    GitAuthenticateRequest,
    GitBranchRequest,
    GitCheckoutRequest,
    GitCloneRequest,
    GitCommitInfo,
    GitCommitRequest,
    GitCommitResponse,
    GitConfigResponse,
    GitConfigureUserRequest,
    GitInitRequest,
    GitPushRequest,
    GitRemoteAuthRequest,
    GitResetRequest,
    GitRestoreRequest,
    GitSetConfigRequest,
    GitStatus,
    ListBranchResponse,
    ListRemotesResponse,
)
from ..redact import MIN_LENGTH
from .fswire import TRUNCATED_RESPONSE, json_response, query_path
from .toolbox import Auth, _agent, _call, _until_disconnect, audited, masked, secrets_for

router = APIRouter(prefix="/toolbox/{sandbox_id}/git", tags=["git"])
_USERINFO = re.compile(r"(://)[^/@\s]+@")
RepoPath = Annotated[str, Depends(query_path)]
NO_GIT = "git is not installed in this sandbox's image; use an image that has it, such as debian-12"


def _built(build: Callable[..., list[str]], *args: Any) -> list[str]:
    try:
        return build(*args)
    except ValueError as exc:
        raise ApiError(ErrorCode.BAD_REQUEST, str(exc)) from None


def _name(value: str, what: str) -> str:
    try:
        return gitcmd.check_name(value, what)
    except ValueError as exc:
        raise ApiError(ErrorCode.BAD_REQUEST, str(exc)) from None


class _Git:
    """Runs git for one request: in the sandbox's agent, bounded by the server's exec limits."""

    def __init__(
        self,
        request: Request,
        sandbox_id: str,
        who: Principal,
        username: str | None = None,
        password: str | None = None,
        insecure_skip_tls: bool = False,
    ) -> None:
        self.request, self.sandbox_id = request, sandbox_id
        self.svc, self.agent = _agent(request, sandbox_id, who)
        # git is a toolbox process too: the sandbox's secrets are in its env (under git's own settings), and
        # never in an error message
        self.injected = secrets_for(self.svc, who.organization_id, sandbox_id)
        settings = request.app.state.settings
        self.timeout, self.max_output = float(settings.exec_max_timeout), int(settings.max_output_bytes)
        try:
            self.auth = gitcmd.auth_env(username, password, insecure_skip_tls)
            self.secrets = gitcmd.secrets_of(username, password) + [
                v for v in self.injected.env.values() if len(v) >= MIN_LENGTH
            ]
        except UnicodeEncodeError:
            raise ApiError(ErrorCode.BAD_REQUEST, "username and password must be valid text") from None

    async def run(
        self, op: str, argv: list[str], *, env: dict[str, str] | None = None, stdin: bytes | None = None,
        check: bool = True,
    ) -> ExecResult:  # fmt: skip
        """Run `argv`; raise the classified error if it fails (unless `check` is false)."""
        full_env = {**self.injected.env, **gitcmd.ENV, **self.auth, **(env or {})}
        run = self.agent.exec(
            argv=argv, env=full_env, timeout=self.timeout, max_output=self.max_output, stdin=stdin
        )
        try:
            res = await _until_disconnect(self.request, _call(self.svc, self.sandbox_id, run))
            audited(  # credentials travel in env, never in argv
                self.request, "process", self.sandbox_id, kind="git", op=op, user=None,
                command=_USERINFO.sub(r"\1***@", masked(self.injected, shlex.join(argv))),  # a URL's user:password@ is masked
                exitCode=res.exit_code, timedOut=res.timed_out, durationMs=round(res.duration_ms, 3),
            )  # fmt: skip
        except ApiError as exc:
            if exc.code is ErrorCode.FILE_NOT_FOUND and "command not found" in exc.message:
                raise ApiError(ErrorCode.GIT_NOT_AVAILABLE, NO_GIT) from exc
            raise
        if res.timed_out:
            raise ApiError(
                ErrorCode.PROCESS_EXECUTION_TIMEOUT,
                f"git {op} timed out after {self.timeout:g}s and was killed",
            )
        if check and res.exit_code != 0:
            raise self.error(op, res)
        return res

    def error(self, op: str, res: ExecResult) -> ApiError:
        code, message = gitcmd.failure(op, res.stdout, res.stderr, res.exit_code, self.secrets)
        return ApiError(code, message)


def _ok(status: int = 200) -> Response:
    return Response(status_code=status)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape").strip()


# -- repositories ---------------------------------------------------------------------------------------------------
@router.post("/clone", response_class=Response)
async def clone(sandbox_id: str, body: GitCloneRequest, request: Request, who: Auth) -> Response:
    """Clone `url` into `path` (its missing parents are made); with `branch`, that branch; with `commit_id`, then a
    detached HEAD at that commit; with `depth`, a shallow clone. `username`/`password` are used for this clone only
    and stored nowhere (the remote URL is kept as given)."""
    git = _Git(request, sandbox_id, who, body.username, body.password, bool(body.insecure_skip_tls))
    argv = _built(gitcmd.clone_argv, body.url, body.path, body.branch, body.depth)
    if body.commit_id is None:
        await git.run("clone", argv)
        return _ok()
    detach = _built(gitcmd.detach_argv, body.path, body.commit_id)
    try:  # a failed checkout then removes the clone, but never a directory that was there before
        await _call(git.svc, sandbox_id, git.agent.stat(body.path))
        existed = True
    except ApiError as exc:
        existed = exc.code is not ErrorCode.FILE_NOT_FOUND
    await git.run("clone", argv)
    res = await git.run("checkout", detach, check=False)
    if res.exit_code != 0:
        if not existed:
            await _call(git.svc, sandbox_id, git.agent.delete(body.path, recursive=True))
        raise git.error("checkout", res)
    return _ok()


@router.post("/init", status_code=201, response_class=Response)
async def init(sandbox_id: str, body: GitInitRequest, request: Request, who: Auth) -> Response:
    """Create a repository at `path` (and its missing parents); `bare`, `initial_branch` as with git init."""
    git = _Git(request, sandbox_id, who)
    argv = ["git", "init", "--quiet"] + (["--bare"] if body.bare else [])
    if body.initial_branch is not None:
        argv.append("--initial-branch=" + _name(body.initial_branch, "initial_branch"))
    await git.run("init", [*argv, "--", body.path])
    return _ok(201)


@router.get("/status", response_model=GitStatus, responses=TRUNCATED_RESPONSE)
async def status(sandbox_id: str, request: Request, who: Auth, path: RepoPath) -> Response:
    """The current branch, its upstream and how far ahead/behind it is, and every changed or untracked file."""
    res = await _Git(request, sandbox_id, who).run("status", gitcmd.repo(path, *gitcmd.STATUS_ARGS))
    return json_response(gitcmd.parse_status(res.stdout).wire(), truncated=res.truncated)


@router.get("/history", response_model=list[GitCommitInfo], responses=TRUNCATED_RESPONSE)
async def history(
    sandbox_id: str,
    request: Request,
    who: Auth,
    path: RepoPath,
    limit: Annotated[int | None, Query(ge=1, description="at most this many commits (sandburg)")] = None,
) -> Response:
    """The commits reachable from HEAD, newest first (an empty list for a repository without commits)."""
    git = _Git(request, sandbox_id, who)
    argv = gitcmd.repo(path, "log", "-z", gitcmd.LOG_FORMAT, *([f"-n{limit}"] if limit else []))
    res = await git.run("log", argv, check=False)
    if res.exit_code != 0:
        if b"does not have any commits yet" in res.stderr:
            return json_response([])
        raise git.error("log", res)
    return json_response(gitcmd.parse_log(res.stdout, res.truncated), truncated=res.truncated)


# -- branches -------------------------------------------------------------------------------------------------------
@router.get("/branches", response_model=ListBranchResponse)
async def list_branches(sandbox_id: str, request: Request, who: Auth, path: RepoPath) -> Response:
    """The local branches, sorted, and the checked-out one (`current`, empty when HEAD is detached)."""
    git = _Git(request, sandbox_id, who)
    res = await git.run("branch", gitcmd.repo(path, *gitcmd.BRANCHES_ARGS))
    names, current = gitcmd.parse_branches(res.stdout)
    if current is None:  # a branch without commits yet, or a detached HEAD
        head = await git.run(
            "branch", gitcmd.repo(path, "symbolic-ref", "--short", "-q", "HEAD"), check=False
        )
        current = _text(head.stdout) if head.exit_code == 0 else ""
    return json_response({"branches": names, "current": current})


@router.post("/branches", status_code=201, response_class=Response)
async def create_branch(sandbox_id: str, body: GitBranchRequest, request: Request, who: Auth) -> Response:
    """Create branch `name` at HEAD and check it out (as Daytona does); an existing name is 409
    GIT_BRANCH_EXISTS."""
    argv = gitcmd.repo(body.path, "switch", "--create", _name(body.name, "name"))
    await _Git(request, sandbox_id, who).run("branch", argv)
    return _ok(201)


@router.delete("/branches", status_code=204, response_class=Response)
async def delete_branch(sandbox_id: str, body: GitBranchRequest, request: Request, who: Auth) -> Response:
    """Delete the local branch `name`, merged or not (as Daytona does); the checked-out branch cannot be."""
    await _Git(request, sandbox_id, who).run(
        "branch", gitcmd.repo(body.path, "branch", "-D", "--", body.name)
    )
    return _ok(204)


@router.post("/checkout", response_class=Response)
async def checkout(sandbox_id: str, body: GitCheckoutRequest, request: Request, who: Auth) -> Response:
    """Switch to `branch` (a remote one of that name gets a local tracking branch); a tag or commit gives a
    detached HEAD. Local changes that would be overwritten are 409 GIT_DIRTY_WORKTREE."""
    git = _Git(request, sandbox_id, who)
    res = await git.run("checkout", _built(gitcmd.checkout_argv, body.path, body.branch), check=False)
    if res.exit_code != 0 and b"a branch is expected" in res.stderr:
        res = await git.run("checkout", _built(gitcmd.detach_argv, body.path, body.branch), check=False)
    if res.exit_code != 0:
        raise git.error("checkout", res)
    return _ok()


# -- changes --------------------------------------------------------------------------------------------------------
@router.post("/add", response_class=Response)
async def add(sandbox_id: str, body: GitAddRequest, request: Request, who: Auth) -> Response:
    """Stage `files` (paths or directories relative to the repository; `.` for everything)."""
    await _Git(request, sandbox_id, who).run("add", gitcmd.repo(body.path, "add", "--", *body.files))
    return _ok()


@router.post("/commit", response_model=GitCommitResponse)
async def commit(sandbox_id: str, body: GitCommitRequest, request: Request, who: Auth) -> GitCommitResponse:
    """Commit what is staged, as `author` <`email`> (author and committer; no config needed), and answer its
    hash. Nothing staged is 400 unless `allow_empty`."""
    git = _Git(request, sandbox_id, who)
    argv = gitcmd.repo(body.path, "commit", "--quiet", "-m", body.message)
    env = gitcmd.author_env(body.author, body.email)
    await git.run("commit", argv + (["--allow-empty"] if body.allow_empty else []), env=env)
    res = await git.run("commit", gitcmd.repo(body.path, "rev-parse", "HEAD"))
    return GitCommitResponse(hash=_text(res.stdout))


@router.post("/reset", response_class=Response)
async def reset(sandbox_id: str, body: GitResetRequest, request: Request, who: Auth) -> Response:
    """git reset: `mode` soft | mixed (default) | hard | merge | keep, to `target` (default HEAD), or of `files`."""
    argv = _built(gitcmd.reset_argv, body.path, body.mode, body.target, body.files)
    await _Git(request, sandbox_id, who).run("reset", argv)
    return _ok()


@router.post("/restore", response_class=Response)
async def restore(sandbox_id: str, body: GitRestoreRequest, request: Request, who: Auth) -> Response:
    """git restore of `files`: the working tree (default) and/or the index (`staged`), from `source` if given."""
    argv = _built(gitcmd.restore_argv, body.path, body.files, body.staged, body.worktree, body.source)
    await _Git(request, sandbox_id, who).run("restore", argv)
    return _ok()


# -- remotes --------------------------------------------------------------------------------------------------------
@router.post("/push", response_class=Response)
async def push(sandbox_id: str, body: GitPushRequest, request: Request, who: Auth) -> Response:
    """Push `branch` (default: the current one) to the branch of the same name on `remote` (default origin).
    A non-fast-forward is 409 GIT_PUSH_REJECTED; a remote hook's refusal 422 GIT_REMOTE_REJECTED."""
    git = _Git(request, sandbox_id, who, body.username, body.password)
    argv = _built(gitcmd.push_argv, body.path, body.remote, body.branch, bool(body.set_upstream))
    await git.run("push", argv)
    return _ok()


@router.post("/pull", response_class=Response)
async def pull(sandbox_id: str, body: GitRemoteAuthRequest, request: Request, who: Auth) -> Response:
    """Fetch and merge the upstream (or `remote`'s `branch`): a fast-forward when possible, else a merge commit,
    never a rebase. Conflicts are 409 GIT_MERGE_CONFLICT and leave the merge in progress. A merge commit is
    made as the configured user.name/user.email, else as `sandburg <sandburg@localhost>`."""
    git = _Git(request, sandbox_id, who, body.username, body.password)
    argv = _built(gitcmd.pull_argv, body.path, body.remote, body.branch)
    configured = await git.run("pull", gitcmd.repo(body.path, *gitcmd.IDENTITY_ARGS), check=False)
    await git.run("pull", argv, env=gitcmd.fallback_identity(configured.stdout))
    return _ok()


@router.get("/remotes", response_model=ListRemotesResponse)
async def list_remotes(sandbox_id: str, request: Request, who: Auth, path: RepoPath) -> Response:
    """The remotes and their (fetch) URLs."""
    res = await _Git(request, sandbox_id, who).run("remote", gitcmd.repo(path, "remote", "-v"))
    return json_response({"remotes": gitcmd.parse_remotes(res.stdout)})


@router.post("/remotes", status_code=201, response_class=Response)
async def add_remote(sandbox_id: str, body: GitAddRemoteRequest, request: Request, who: Auth) -> Response:
    """Add remote `name` at `url` (`overwrite` replaces the URL of an existing one; `fetch` fetches it)."""
    git = _Git(request, sandbox_id, who)
    name, url = _name(body.name, "name"), _name(body.url, "url")
    res = await git.run("remote", gitcmd.repo(body.path, "remote", "add", name, url), check=False)
    if res.exit_code != 0:
        if not (body.overwrite and b"already exists" in res.stderr):
            raise git.error("remote add", res)
        await git.run("remote", gitcmd.repo(body.path, "remote", "set-url", name, url))
    if body.fetch:
        await git.run("fetch", gitcmd.repo(body.path, "fetch", name))
    return _ok(201)


# -- configuration --------------------------------------------------------------------------------------------------
@router.get("/config", response_model=GitConfigResponse)
async def get_config(
    sandbox_id: str, request: Request, who: Auth, key: Annotated[str, Query(min_length=1)],
    path: str | None = None, scope: str | None = None,
) -> Response:  # fmt: skip
    """A config value at `scope` (global by default; local needs `path`), null when unset."""
    git = _Git(request, sandbox_id, who)
    res = await git.run("config", _built(gitcmd.config_argv, path, scope, "--get", key), check=False)
    if res.exit_code == 1 and not res.stderr.strip():
        return json_response({"value": None})
    if res.exit_code != 0:
        raise git.error("config", res)
    return json_response({"value": res.stdout.decode("utf-8", "surrogateescape").removesuffix("\n")})


@router.post("/config", response_class=Response)
async def set_config(sandbox_id: str, body: GitSetConfigRequest, request: Request, who: Auth) -> Response:
    """Set `key` to `value` at `scope` (global by default; local needs `path`)."""
    argv = _built(gitcmd.config_argv, body.path, body.scope, _name(body.key, "key"), body.value)
    await _Git(request, sandbox_id, who).run("config", argv)
    return _ok()


@router.post("/config/user", response_class=Response)
async def configure_user(
    sandbox_id: str, body: GitConfigureUserRequest, request: Request, who: Auth
) -> Response:
    """Set user.name and user.email at `scope` (global by default; local needs `path`)."""
    git = _Git(request, sandbox_id, who)
    for key, value in (("user.name", body.name), ("user.email", body.email)):
        await git.run("config", _built(gitcmd.config_argv, body.path, body.scope, key, value))
    return _ok()


@router.post("/credentials", response_class=Response)
async def store_credentials(
    sandbox_id: str, body: GitAuthenticateRequest, request: Request, who: Auth
) -> Response:
    """Daytona's `dangerously_authenticate`: store the credentials for `protocol`://`host` in the sandbox's
    ~/.git-credentials (plain text, git's `store` helper, enabled globally), for every later git command."""
    fields = {
        "protocol": body.protocol or "https", "host": body.host or "github.com",
        "username": body.username, "password": body.password,
    }  # fmt: skip
    if any("\n" in v or "\0" in v for v in fields.values()):
        raise ApiError(ErrorCode.BAD_REQUEST, "credentials must not contain a newline or a NUL byte")
    git = _Git(request, sandbox_id, who)
    git.secrets = gitcmd.secrets_of(body.username, body.password)
    helpers = await git.run(
        "config", ["git", "config", "--global", "--get-all", "credential.helper"], check=False
    )
    if "store" not in _text(helpers.stdout).splitlines():
        await git.run("config", ["git", "config", "--global", "--add", "credential.helper", "store"])
    data = "".join(f"{k}={v}\n" for k, v in fields.items()) + "\n"
    await git.run(
        "credential", ["git", "credential", "approve"], stdin=data.encode("utf-8", "surrogateescape")
    )
    return _ok()
