"""sandburg: self-hosted sandboxes for AI agents — the Python SDK.

```python
from sandburg import Sandburg

with Sandburg() as sb:                       # SANDBURG_API_URL / SANDBURG_API_KEY, else credentials.json
    box = sb.create(isolation="gvisor", cpu=2, memory="4GiB")
    r = box.process.exec("echo hi", cwd="/workspace", timeout=10)
    print(r.exit_code, r.stdout)
    box.delete()
```

:class:`AsyncSandburg` is the same client for asyncio (``async with AsyncSandburg() as sb:``, then ``await``
each call); both share one I/O-free core.

Only the names in ``__all__`` are public; the ``_``-prefixed modules may change without notice. Importing
this package never imports the server or the node runtime.
"""

from ._async_client import (
    AsyncCommand,
    AsyncExecStream,
    AsyncFileSystem,
    AsyncGit,
    AsyncLogStream,
    AsyncNetwork,
    AsyncProcess,
    AsyncSandbox,
    AsyncSandburg,
    AsyncSession,
)
from ._client import (
    Command,
    ExecStream,
    FileSystem,
    Git,
    LogStream,
    Network,
    Process,
    Sandbox,
    Sandburg,
    Session,
)
from ._config import ClientConfig, resolve_config
from ._core import DEFAULT_CREATE_TIMEOUT, DEFAULT_TIMEOUT
from ._errors import (
    AgentUnavailableError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    CredentialsNotFoundError,
    DiskQuotaExceededError,
    ExecTimeoutError,
    FileAccessDeniedError,
    FileExistsInSandboxError,
    FileNotFoundInSandboxError,
    GitAuthFailedError,
    GitBranchExistsError,
    GitBranchNotFoundError,
    GitDirtyWorktreeError,
    GitError,
    GitMergeConflictError,
    GitNotAvailableError,
    GitPushRejectedError,
    GitRemoteRejectedError,
    GitRepoNotFoundError,
    GitTransportError,
    GoneError,
    ImageBuildFailedError,
    ImageError,
    ImageInUseError,
    ImageNameConflictError,
    ImageNotFoundError,
    ImageNotReadyError,
    ImagePullFailedError,
    InvalidPathError,
    InvalidResourcesError,
    NotFoundError,
    NotSupportedError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PidsLimitReachedError,
    RateLimitError,
    SandboxBusyError,
    SandboxNameConflictError,
    SandboxNotFoundError,
    SandboxNotRunningError,
    SandburgConnectionError,
    SandburgError,
    SandburgTimeoutError,
    ServerError,
    SessionEndedError,
    SessionExistsError,
    SessionNotFoundError,
    UnexpectedResponseError,
    UnprocessableError,
    UnsafeImageError,
)
from ._git import GitBranches, GitCommitInfo, GitFileState, GitFileStatus, GitStatus
from ._models import (
    ExecResult,
    FileInfo,
    HealthInfo,
    Match,
    NetworkEvent,
    NetworkLog,
    NetworkMode,
    NetworkPolicy,
    PreviewUrl,
    ReplaceResult,
    ResultList,
    SandboxInfo,
    SandboxState,
    UploadResult,
)
from ._sessions import (
    CommandInfo,
    ExecStreamResult,
    Logs,
    OutputChunk,
    SessionCommandResult,
    SessionInfo,
)
from ._sizes import parse_size_mib
from ._version import __version__ as __version__  # the package version, e.g. "0.1.0"

__all__ = [
    "DEFAULT_CREATE_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "APIError",
    "AgentUnavailableError",
    "AsyncCommand",
    "AsyncExecStream",
    "AsyncFileSystem",
    "AsyncGit",
    "AsyncLogStream",
    "AsyncNetwork",
    "AsyncProcess",
    "AsyncSandbox",
    "AsyncSandburg",
    "AsyncSession",
    "AuthenticationError",
    "BadRequestError",
    "ClientConfig",
    "Command",
    "CommandInfo",
    "ConfigurationError",
    "ConflictError",
    "CredentialsNotFoundError",
    "DiskQuotaExceededError",
    "ExecResult",
    "ExecStream",
    "ExecStreamResult",
    "ExecTimeoutError",
    "FileAccessDeniedError",
    "FileExistsInSandboxError",
    "FileInfo",
    "FileNotFoundInSandboxError",
    "FileSystem",
    "Git",
    "GitAuthFailedError",
    "GitBranchExistsError",
    "GitBranchNotFoundError",
    "GitBranches",
    "GitCommitInfo",
    "GitDirtyWorktreeError",
    "GitError",
    "GitFileState",
    "GitFileStatus",
    "GitMergeConflictError",
    "GitNotAvailableError",
    "ImageError",
    "ImageNameConflictError",
    "ImageInUseError",
    "ImageNotReadyError",
    "ImageBuildFailedError",
    "ImagePullFailedError",
    "UnsafeImageError",
    "GitPushRejectedError",
    "GitRemoteRejectedError",
    "GitRepoNotFoundError",
    "GitStatus",
    "GitTransportError",
    "GoneError",
    "HealthInfo",
    "ImageNotFoundError",
    "InvalidPathError",
    "InvalidResourcesError",
    "LogStream",
    "Logs",
    "Match",
    "Network",
    "NetworkEvent",
    "NetworkLog",
    "NetworkMode",
    "NetworkPolicy",
    "NotFoundError",
    "NotSupportedError",
    "OutputChunk",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PidsLimitReachedError",
    "PreviewUrl",
    "Process",
    "RateLimitError",
    "ReplaceResult",
    "ResultList",
    "Sandbox",
    "SandboxBusyError",
    "SandboxInfo",
    "SandboxNameConflictError",
    "SandboxNotFoundError",
    "SandboxNotRunningError",
    "SandboxState",
    "Sandburg",
    "SandburgConnectionError",
    "SandburgError",
    "SandburgTimeoutError",
    "ServerError",
    "Session",
    "SessionCommandResult",
    "SessionEndedError",
    "SessionExistsError",
    "SessionInfo",
    "SessionNotFoundError",
    "UnexpectedResponseError",
    "UnprocessableError",
    "UploadResult",
    "parse_size_mib",
    "resolve_config",
]

# Present public names as members of the package (httpx does the same), so reprs and docs say
# `sandburg.Sandbox` rather than the private module they happen to live in.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("sandburg._"):
        try:
            _obj.__module__ = "sandburg"
        except (AttributeError, TypeError):  # pragma: no cover - constants have no writable __module__
            pass
del _name, _obj
