"""Request and response models of the toolbox git routes: Daytona's toolbox models, field for field.

Daytona's git request bodies use snake_case for their multi-word fields (`commit_id`, `allow_empty`,
`set_upstream`, ...) while its GitStatus answer is camelCase (`currentBranch`, `fileStatus`): both are kept as its
generated clients send and read them. Unknown request fields are ignored (newer Daytona SDKs may send more).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StrictBool, StrictInt

NonEmpty = Annotated[str, Field(min_length=1)]


class GitCloneRequest(BaseModel):
    url: NonEmpty
    path: NonEmpty
    branch: str | None = None
    commit_id: str | None = None
    depth: StrictInt | None = Field(default=None, ge=1, description="a shallow clone of this many commits")
    insecure_skip_tls: StrictBool | None = None
    username: str | None = None
    password: str | None = None


class GitRepoRequest(BaseModel):
    path: NonEmpty


class GitBranchRequest(GitRepoRequest):
    name: NonEmpty


class GitCheckoutRequest(GitRepoRequest):
    branch: NonEmpty


class GitAddRequest(GitRepoRequest):
    files: list[str] = Field(min_length=1, description="paths relative to the repository; '.' for all")


class GitCommitRequest(GitRepoRequest):
    message: NonEmpty
    author: NonEmpty
    email: str
    allow_empty: StrictBool | None = None


class GitCommitResponse(BaseModel):
    hash: str


class GitRemoteAuthRequest(GitRepoRequest):
    username: str | None = None
    password: str | None = None
    branch: str | None = None
    remote: str | None = None


class GitPushRequest(GitRemoteAuthRequest):
    set_upstream: StrictBool | None = None


class GitInitRequest(GitRepoRequest):
    bare: StrictBool | None = None
    initial_branch: str | None = None


class GitResetRequest(GitRepoRequest):
    mode: str | None = Field(default=None, description="soft, mixed (default), hard, merge or keep")
    target: str | None = Field(default=None, description="a revision, default HEAD")
    files: list[str] | None = None


class GitRestoreRequest(GitRepoRequest):
    files: list[str] = Field(min_length=1)
    staged: StrictBool | None = None
    worktree: StrictBool | None = None
    source: str | None = None


class GitAddRemoteRequest(GitRepoRequest):
    name: NonEmpty
    url: NonEmpty
    fetch: StrictBool | None = None
    overwrite: StrictBool | None = None


class GitSetConfigRequest(BaseModel):
    key: NonEmpty
    value: str
    scope: str | None = Field(default=None, description="global (default), local or system")
    path: str | None = Field(default=None, description="the repository; required for the local scope")


class GitConfigureUserRequest(BaseModel):
    name: NonEmpty
    email: str
    scope: str | None = None
    path: str | None = None


class GitAuthenticateRequest(BaseModel):
    username: str
    password: str
    host: str | None = Field(default=None, description="default github.com")
    protocol: str | None = Field(default=None, description="default https")


class FileStatus(BaseModel):
    name: str
    extra: str = Field(description="the original path of a rename or copy, else empty")
    staging: str
    worktree: str


class GitStatus(BaseModel):
    currentBranch: str = Field(description='the branch, or "HEAD" when detached')
    fileStatus: list[FileStatus]
    ahead: int
    behind: int
    branchPublished: bool = Field(description="the branch has an upstream branch that exists")
    detached: bool
    upstream: str = Field(description='e.g. "origin/main"; empty when unset')


class ListBranchResponse(BaseModel):
    branches: list[str]
    current: str = Field(description="the checked-out branch; empty when HEAD is detached")


class GitCommitInfo(BaseModel):
    hash: str
    author: str
    email: str
    message: str
    timestamp: str = Field(description="author date, ISO-8601 with its offset")


class GitRemote(BaseModel):
    name: str
    url: str


class ListRemotesResponse(BaseModel):
    remotes: list[GitRemote]


class GitConfigResponse(BaseModel):
    value: str | None
