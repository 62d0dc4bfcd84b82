"""The SDK's exceptions: one tree, rooted at :class:`SandburgError`.

```
SandburgError
├── ConfigurationError                  client-side: bad or missing settings
│   └── CredentialsNotFoundError        no API key in the args, the env or credentials.json
├── SandburgConnectionError             transport failure: refused, reset, DNS, TLS, ...
│   └── SandburgTimeoutError            ... or an HTTP timeout (also a builtin TimeoutError)
├── UnexpectedResponseError             a 2xx answer the SDK cannot parse
└── APIError                            the server answered an error (status_code, code, message, body)
    ├── BadRequestError                 400
    │   └── InvalidPathError            INVALID_FILE_PATH, NOT_A_DIRECTORY, IS_A_DIRECTORY
    ├── AuthenticationError             401
    │   └── GitAuthFailedError          GIT_AUTH_FAILED: the git remote refused the credentials
    ├── PermissionDeniedError           403 FORBIDDEN: the key's role or scopes do not allow this
    │   ├── FileAccessDeniedError       FILE_ACCESS_DENIED
    │   └── QuotaExceededError          QUOTA_EXCEEDED: over an organization's quota; nothing was made
    ├── NotFoundError                   404
    │   ├── SandboxNotFoundError        SANDBOX_NOT_FOUND
    │   ├── ImageNotFoundError          IMAGE_NOT_FOUND
    │   ├── FileNotFoundInSandboxError  FILE_NOT_FOUND
    │   ├── SessionNotFoundError        SESSION_NOT_FOUND, COMMAND_NOT_FOUND, PTY_NOT_FOUND
    │   ├── SecretNotFoundError         SECRET_NOT_FOUND
    │   ├── VolumeNotFoundError         VOLUME_NOT_FOUND
    │   ├── OrganizationNotFoundError   ORGANIZATION_NOT_FOUND
    │   ├── KeyNotFoundError            KEY_NOT_FOUND
    │   ├── GitRepoNotFoundError        GIT_REPO_NOT_FOUND
    │   └── GitBranchNotFoundError      GIT_BRANCH_NOT_FOUND
    ├── ExecTimeoutError                408 PROCESS_EXECUTION_TIMEOUT (also a builtin TimeoutError)
    ├── ConflictError                   409, DIRECTORY_NOT_EMPTY
    │   ├── SandboxNameConflictError    SANDBOX_NAME_CONFLICT
    │   ├── SandboxNotRunningError      SANDBOX_NOT_RUNNING
    │   ├── SandboxBusyError            SANDBOX_BUSY
    │   ├── FileExistsInSandboxError    FILE_EXISTS
    │   ├── SessionExistsError          SESSION_EXISTS
    │   ├── GitBranchExistsError        GIT_BRANCH_EXISTS
    │   ├── GitPushRejectedError        GIT_PUSH_REJECTED
    │   ├── GitDirtyWorktreeError       GIT_DIRTY_WORKTREE
    │   ├── GitMergeConflictError       GIT_MERGE_CONFLICT
    │   ├── ImageNameConflictError      IMAGE_NAME_CONFLICT
    │   ├── ImageInUseError             IMAGE_IN_USE
    │   ├── ImageNotReadyError          IMAGE_NOT_READY
    │   ├── SecretInUseError            SECRET_IN_USE: a sandbox still references the secret
    │   ├── VolumeInUseError            VOLUME_IN_USE: a sandbox still mounts the volume
    │   ├── VolumeNameConflictError     VOLUME_NAME_CONFLICT
    │   ├── OrganizationExistsError     ORGANIZATION_EXISTS
    │   └── LastAdminKeyError           LAST_ADMIN_KEY: the organization's last admin key
    ├── GoneError                       410
    │   └── SessionEndedError           SESSION_ENDED, COMMAND_ALREADY_COMPLETED
    ├── PayloadTooLargeError            413
    │   └── SecretTooLargeError         SECRET_TOO_LARGE
    ├── UnprocessableError              422
    │   ├── InvalidResourcesError       INVALID_RESOURCES
    │   ├── GitRemoteRejectedError      GIT_REMOTE_REJECTED
    │   ├── GitNotAvailableError        GIT_NOT_AVAILABLE: the sandbox's image has no git
    │   ├── ImageBuildFailedError       IMAGE_BUILD_FAILED: a build step failed
    │   ├── UnsafeImageError            UNSAFE_IMAGE: paths that escape the image root
    │   ├── MemorySnapshotUnsupportedError  MEMORY_SNAPSHOT_UNSUPPORTED: memory=True on the container tier
    │   ├── InvalidSecretError          INVALID_SECRET: a bad secret name, env name or value
    │   └── InvalidVolumeError          INVALID_VOLUME: a bad volume name or size, mount path or subpath
    ├── RateLimitError                  429
    ├── DiskQuotaExceededError          507 DISK_QUOTA_EXCEEDED  } 5xx, but retrying can't help, so they
    ├── NotSupportedError               501 NOT_IMPLEMENTED      } are deliberately not ServerErrors
    └── ServerError                     5xx
        ├── AgentUnavailableError       AGENT_UNAVAILABLE
        ├── PidsLimitReachedError       503 PIDS_LIMIT_REACHED
        ├── GitTransportError           502 GIT_TRANSPORT_FAILED
        └── ImagePullFailedError        502 IMAGE_PULL_FAILED
```

Every ``Image*Error`` (and ``UnsafeImageError``) is also an :class:`ImageError`.

Every ``Secret*Error`` (and ``InvalidSecretError``) is also a :class:`SecretError`.

Every ``Volume*Error`` (and ``InvalidVolumeError``) is also a :class:`VolumeError`.

Every ``Git*Error`` is also a :class:`GitError`, so ``except GitError`` catches whatever ``sandbox.git`` raises
because of git itself.

Which class an error answer becomes: :func:`error_class`, by ``code`` first (:data:`CODE_ERRORS`), then by
status (:data:`STATUS_ERRORS`, and any other 5xx is a :class:`ServerError`).
"""

from __future__ import annotations

from typing import Any, Final

from ._codes import ErrorCode

__all__ = [
    "CODE_ERRORS",
    "STATUS_ERRORS",
    "APIError",
    "AgentUnavailableError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "CredentialsNotFoundError",
    "DiskQuotaExceededError",
    "error_class",
    "ExecTimeoutError",
    "FileAccessDeniedError",
    "FileExistsInSandboxError",
    "FileNotFoundInSandboxError",
    "GitAuthFailedError",
    "GitBranchExistsError",
    "GitBranchNotFoundError",
    "GitDirtyWorktreeError",
    "GitError",
    "GitMergeConflictError",
    "GitNotAvailableError",
    "GitPushRejectedError",
    "GitRemoteRejectedError",
    "GitRepoNotFoundError",
    "GitTransportError",
    "GoneError",
    "ImageNotFoundError",
    "InvalidPathError",
    "InvalidResourcesError",
    "InvalidSecretError",
    "NotFoundError",
    "NotSupportedError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PidsLimitReachedError",
    "RateLimitError",
    "SandboxBusyError",
    "SandboxNameConflictError",
    "SandboxNotFoundError",
    "SandboxNotRunningError",
    "SandburgConnectionError",
    "SandburgError",
    "SandburgTimeoutError",
    "SecretError",
    "SecretInUseError",
    "SecretNotFoundError",
    "SecretTooLargeError",
    "ServerError",
    "SessionEndedError",
    "SessionExistsError",
    "SessionNotFoundError",
    "UnexpectedResponseError",
    "UnprocessableError",
    "InvalidVolumeError",
    "VolumeError",
    "VolumeInUseError",
    "VolumeNameConflictError",
    "VolumeNotFoundError",
    "QuotaExceededError",
    "OrganizationNotFoundError",
    "OrganizationExistsError",
    "KeyNotFoundError",
    "LastAdminKeyError",
]


class SandburgError(Exception):
    """Root of every exception the SDK raises.

    ``message`` is the human-readable text; ``code`` is a stable machine-readable code (the server's code
    for :class:`APIError`, a client-side code such as ``CONNECTION_ERROR`` otherwise).
    """

    code: str = "SANDBURG_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[SandburgError], args: tuple[Any, ...], kwargs: dict[str, Any]) -> SandburgError:
    """Unpickle an error whose constructor takes more than the message (multiprocessing, pytest-xdist)."""
    return cls(*args, **kwargs)


class ConfigurationError(SandburgError):
    """The client's settings are missing or invalid (raised before any request is sent)."""

    code = "CONFIGURATION_ERROR"


class CredentialsNotFoundError(ConfigurationError):
    """No API key was given, found in ``SANDBURG_API_KEY``, or found in ``credentials.json``."""

    code = "CREDENTIALS_NOT_FOUND"


class SandburgConnectionError(SandburgError):
    """The request did not get an HTTP answer: connection refused or reset, DNS or TLS failure, ..."""

    code = "CONNECTION_ERROR"


class SandburgTimeoutError(SandburgConnectionError, TimeoutError):
    """The HTTP request timed out on the client side (connect, read, write or pool timeout)."""

    code = "CLIENT_TIMEOUT"


class UnexpectedResponseError(SandburgError):
    """The server answered with a success status but a body the SDK cannot understand."""

    code = "UNEXPECTED_RESPONSE"

    def __init__(self, message: str, *, status_code: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), (self.message,), {"status_code": self.status_code, "body": self.body})


class APIError(SandburgError):
    """The server answered with an error status.

    Attributes: ``status_code`` (HTTP status), ``code`` (stable code from ``sandburg._codes``, or
    ``HTTP_<status>`` when the answer had none), ``message`` and ``body`` (the decoded JSON answer, or its text
    when it was not JSON).
    """

    def __init__(self, status_code: int, code: str, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.body = body

    def __reduce__(self) -> tuple[Any, ...]:
        # the default rebuilds from self.args == (message,), which doesn't fit this signature
        return _rebuild, (type(self), (self.status_code, self.code, self.message, self.body), {})

    @property
    def details(self) -> list[Any]:
        """The ``details`` list of a validation error (``[{"loc": [...], "msg": ...}]``), else ``[]``."""
        if isinstance(self.body, dict):
            details = self.body.get("details")
            if isinstance(details, list):
                return details
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code}, code={self.code!r}, message={self.message!r})"


class BadRequestError(APIError):
    """400: the request is malformed or fails validation (see :attr:`APIError.details`)."""


class InvalidPathError(BadRequestError):
    """400: a sandbox path is invalid, or is not (or is) a directory where the operation needs it."""


class AuthenticationError(APIError):
    """401: the API key is missing, unknown or revoked."""


class PermissionDeniedError(APIError):
    """403: the key is valid but not allowed to do this."""


class FileAccessDeniedError(PermissionDeniedError):
    """403: the in-sandbox file system refused access to a path."""


class NotFoundError(APIError):
    """404: the resource does not exist."""


class SandboxNotFoundError(NotFoundError):
    """404: no sandbox has this id or name (in your organization)."""


class ImageError(APIError):
    """An image operation failed (the subclasses say which)."""


class ImageNotFoundError(NotFoundError, ImageError):
    """404: the requested image is not available on the server."""


class FileNotFoundInSandboxError(NotFoundError):
    """404: the path does not exist inside the sandbox."""


class ExecTimeoutError(APIError, TimeoutError):
    """408: the command ran past its ``timeout`` and was killed by the server.

    :attr:`stdout` / :attr:`stderr` hold the output it wrote before that, when the server sent it.
    """

    def _output(self, key: str) -> str:
        value = self.body.get(key) if isinstance(self.body, dict) else None
        return value if isinstance(value, str) else ""

    @property
    def stdout(self) -> str:
        """What the command wrote to stdout before it was killed ("" if the server did not say)."""
        return self._output("stdout")

    @property
    def stderr(self) -> str:
        """What the command wrote to stderr before it was killed ("" if the server did not say)."""
        return self._output("stderr")


class ConflictError(APIError):
    """409: the request conflicts with the resource's current state."""


class SandboxNameConflictError(ConflictError):
    """409: another sandbox of your organization already has this name."""


class SandboxNotRunningError(ConflictError):
    """409: the toolbox needs a ``started`` sandbox; call :meth:`Sandbox.start` first."""


class SandboxBusyError(ConflictError):
    """409: another operation on this sandbox is in progress; retry later."""


class FileExistsInSandboxError(ConflictError):
    """409: the target path already exists inside the sandbox."""


class PayloadTooLargeError(APIError):
    """413: the upload or request body is larger than the server accepts."""


class UnprocessableError(APIError):
    """422: the request is well-formed but its values are not acceptable."""


class InvalidResourcesError(UnprocessableError):
    """422: the requested cpu / memory / disk are outside the server's limits."""


class RateLimitError(APIError):
    """429: too many requests; slow down and retry."""


class DiskQuotaExceededError(APIError):
    """507: the sandbox's disk quota is exhausted."""


class SessionNotFoundError(NotFoundError):
    """404: no such session, session command or terminal in the sandbox."""


class SessionExistsError(ConflictError):
    """409: a session with this id already exists in the sandbox."""


class GoneError(APIError):
    """410: the thing addressed existed but has ended."""


class SessionEndedError(GoneError):
    """410: the session (or the command) has ended and takes no more input."""


class NotSupportedError(APIError):
    """501: this server does not implement the operation (e.g. a Daytona endpoint sandburg lacks)."""


class ServerError(APIError):
    """5xx: the server failed; the request may succeed if retried."""


class AgentUnavailableError(ServerError):
    """502: the server could not reach the agent inside the sandbox."""


class PidsLimitReachedError(ServerError):
    """503: the sandbox is at its process limit, so nothing new can start in it; retry once processes end."""


class GitError(APIError):
    """Base of the errors git itself caused in ``sandbox.git`` (each also derives from its status's class)."""


class GitAuthFailedError(AuthenticationError, GitError):
    """401: the git remote refused the credentials (or asked for some and none were given)."""


class GitRepoNotFoundError(NotFoundError, GitError):
    """404: the path is not a git repository, or the remote repository (or remote name) does not exist."""


class GitBranchNotFoundError(NotFoundError, GitError):
    """404: no such branch, commit or upstream."""


class GitBranchExistsError(ConflictError, GitError):
    """409: a branch with this name already exists."""


class GitPushRejectedError(ConflictError, GitError):
    """409: the push was rejected as not a fast-forward: pull first."""


class GitDirtyWorktreeError(ConflictError, GitError):
    """409: uncommitted local changes would be overwritten; commit or discard them first."""


class GitMergeConflictError(ConflictError, GitError):
    """409: the merge stopped on conflicts (or unmerged files block the operation); resolve them first."""


class GitRemoteRejectedError(UnprocessableError, GitError):
    """422: the remote refused the update itself (a hook, a protected branch, ...)."""


class GitNotAvailableError(UnprocessableError, GitError):
    """422: the sandbox's image has no ``git`` (e.g. busybox); use an image with it, such as debian-12."""


class GitTransportError(ServerError, GitError):
    """502: git could not talk to the remote (DNS, connection, TLS, the remote hung up, ...)."""


class ImageNameConflictError(ConflictError, ImageError):
    """409: an image, template or snapshot of this name already exists in the organization."""


class ImageInUseError(ConflictError, ImageError):
    """409: the image is being built, or something still depends on it."""


class ImageNotReadyError(ConflictError, ImageError):
    """409: the image exists but is not active (still building, or its build failed)."""


class ImageBuildFailedError(UnprocessableError, ImageError):
    """422: a build step failed (an unknown package, a failing command); the message names the step, the
    build log has the output."""


class ImagePullFailedError(ServerError, ImageError):
    """502: the registry did not give the image (missing, unreachable, refused)."""


class UnsafeImageError(UnprocessableError, ImageError):
    """422: an image or tarball holds paths that would escape its root (``../``, writes through symlinks)."""


class MemorySnapshotUnsupportedError(UnprocessableError):
    """422: a memory snapshot of a sandbox whose tier cannot checkpoint processes (container)."""


class SecretError(APIError):
    """A secret operation failed (the subclasses say which)."""


class SecretNotFoundError(NotFoundError, SecretError):
    """404: the organization has no secret of this name (a create that references one fails with it too)."""


class SecretInUseError(ConflictError, SecretError):
    """409: a sandbox still references the secret; delete those sandboxes first."""


class SecretTooLargeError(PayloadTooLargeError, SecretError):
    """413: the secret's value is larger than the server accepts (64 KiB)."""


class InvalidSecretError(UnprocessableError, SecretError):
    """422: a secret name or env name that is not ``[A-Za-z_][A-Za-z0-9_]*`` (at most 128 characters), or an
    empty value or one with a NUL character."""


class VolumeError(APIError):
    """A volume operation failed (the subclasses say which)."""


class VolumeNotFoundError(NotFoundError, VolumeError):
    """404: the organization has no volume of this id or name (a create that mounts one fails with it too)."""


class VolumeInUseError(ConflictError, VolumeError):
    """409: a sandbox (started or stopped) still mounts the volume; delete those sandboxes first."""


class VolumeNameConflictError(ConflictError, VolumeError):
    """409: the organization already has a volume of this name."""


class InvalidVolumeError(UnprocessableError, VolumeError):
    """422: a bad volume name or size, or a mount path (absolute, no ``..``, not ``/``, ``/proc``, ``/sys``,
    ``/dev``, ``/.sandburg``) or subpath that cannot be used."""


class QuotaExceededError(PermissionDeniedError):
    """403: the request would pass one of the organization's quotas (sandboxes, vCPU, memory, disk,
    snapshots); the message names it, what is in use and what was asked. Nothing was made."""


class OrganizationNotFoundError(NotFoundError):
    """404: no organization of this id or name (or it is not yours to see)."""


class OrganizationExistsError(ConflictError):
    """409: an organization of this name exists already."""


class KeyNotFoundError(NotFoundError):
    """404: no API key of this id in the organization."""


class LastAdminKeyError(ConflictError):
    """409: revoking this key would leave its organization without an admin key; make another first."""


# The tables below come after every class they name.
CODE_ERRORS: Final[dict[str, type[APIError]]] = {
    ErrorCode.BAD_REQUEST: BadRequestError,
    ErrorCode.VALIDATION_ERROR: BadRequestError,
    ErrorCode.INVALID_FILE_PATH: InvalidPathError,
    ErrorCode.NOT_A_DIRECTORY: InvalidPathError,
    ErrorCode.IS_A_DIRECTORY: InvalidPathError,
    ErrorCode.UNAUTHORIZED: AuthenticationError,
    ErrorCode.FORBIDDEN: PermissionDeniedError,
    ErrorCode.FILE_ACCESS_DENIED: FileAccessDeniedError,
    ErrorCode.NOT_FOUND: NotFoundError,
    ErrorCode.SANDBOX_NOT_FOUND: SandboxNotFoundError,
    ErrorCode.IMAGE_NOT_FOUND: ImageNotFoundError,
    ErrorCode.FILE_NOT_FOUND: FileNotFoundInSandboxError,
    ErrorCode.PROCESS_EXECUTION_TIMEOUT: ExecTimeoutError,
    ErrorCode.SANDBOX_NAME_CONFLICT: SandboxNameConflictError,
    ErrorCode.SANDBOX_NOT_RUNNING: SandboxNotRunningError,
    ErrorCode.SANDBOX_BUSY: SandboxBusyError,
    ErrorCode.FILE_EXISTS: FileExistsInSandboxError,
    ErrorCode.DIRECTORY_NOT_EMPTY: ConflictError,
    ErrorCode.PAYLOAD_TOO_LARGE: PayloadTooLargeError,
    ErrorCode.DISK_QUOTA_EXCEEDED: DiskQuotaExceededError,
    ErrorCode.INVALID_RESOURCES: InvalidResourcesError,
    ErrorCode.RATE_LIMITED: RateLimitError,
    ErrorCode.INTERNAL_ERROR: ServerError,
    ErrorCode.RUNTIME_ERROR: ServerError,
    ErrorCode.PREVIEW_UNREACHABLE: ServerError,
    ErrorCode.AGENT_UNAVAILABLE: AgentUnavailableError,
    ErrorCode.NOT_IMPLEMENTED: NotSupportedError,
    ErrorCode.PIDS_LIMIT_REACHED: PidsLimitReachedError,
    ErrorCode.SESSION_NOT_FOUND: SessionNotFoundError,
    ErrorCode.COMMAND_NOT_FOUND: SessionNotFoundError,
    ErrorCode.PTY_NOT_FOUND: SessionNotFoundError,
    ErrorCode.SESSION_EXISTS: SessionExistsError,
    ErrorCode.SESSION_ENDED: SessionEndedError,
    ErrorCode.COMMAND_ALREADY_COMPLETED: SessionEndedError,
    ErrorCode.GIT_AUTH_FAILED: GitAuthFailedError,
    ErrorCode.GIT_REPO_NOT_FOUND: GitRepoNotFoundError,
    ErrorCode.GIT_BRANCH_NOT_FOUND: GitBranchNotFoundError,
    ErrorCode.GIT_BRANCH_EXISTS: GitBranchExistsError,
    ErrorCode.GIT_PUSH_REJECTED: GitPushRejectedError,
    ErrorCode.GIT_DIRTY_WORKTREE: GitDirtyWorktreeError,
    ErrorCode.GIT_MERGE_CONFLICT: GitMergeConflictError,
    ErrorCode.GIT_TRANSPORT_FAILED: GitTransportError,
    ErrorCode.GIT_REMOTE_REJECTED: GitRemoteRejectedError,
    ErrorCode.GIT_NOT_AVAILABLE: GitNotAvailableError,
    ErrorCode.IMAGE_NAME_CONFLICT: ImageNameConflictError,
    ErrorCode.IMAGE_IN_USE: ImageInUseError,
    ErrorCode.IMAGE_NOT_READY: ImageNotReadyError,
    ErrorCode.IMAGE_BUILD_FAILED: ImageBuildFailedError,
    ErrorCode.IMAGE_PULL_FAILED: ImagePullFailedError,
    ErrorCode.UNSAFE_IMAGE: UnsafeImageError,
    ErrorCode.MEMORY_SNAPSHOT_UNSUPPORTED: MemorySnapshotUnsupportedError,
    ErrorCode.SECRET_NOT_FOUND: SecretNotFoundError,
    ErrorCode.SECRET_IN_USE: SecretInUseError,
    ErrorCode.INVALID_SECRET: InvalidSecretError,
    ErrorCode.SECRET_TOO_LARGE: SecretTooLargeError,
    ErrorCode.VOLUME_NOT_FOUND: VolumeNotFoundError,
    ErrorCode.VOLUME_IN_USE: VolumeInUseError,
    ErrorCode.VOLUME_NAME_CONFLICT: VolumeNameConflictError,
    ErrorCode.INVALID_VOLUME: InvalidVolumeError,
    ErrorCode.QUOTA_EXCEEDED: QuotaExceededError,
    ErrorCode.ORGANIZATION_NOT_FOUND: OrganizationNotFoundError,
    ErrorCode.ORGANIZATION_EXISTS: OrganizationExistsError,
    ErrorCode.KEY_NOT_FOUND: KeyNotFoundError,
    ErrorCode.LAST_ADMIN_KEY: LastAdminKeyError,
}
"""Error class per stable ``code``; consulted before :data:`STATUS_ERRORS`."""

STATUS_ERRORS: Final[dict[int, type[APIError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: ExecTimeoutError,
    409: ConflictError,
    410: GoneError,
    413: PayloadTooLargeError,
    422: UnprocessableError,
    429: RateLimitError,
}
"""Error class per HTTP status, for answers without a known ``code`` (5xx → :class:`ServerError`)."""


def error_class(status_code: int, code: str | None) -> type[APIError]:
    """The exception class for an error answer: by ``code`` first, then by status."""
    if code is not None and code in CODE_ERRORS:
        return CODE_ERRORS[code]
    if status_code in STATUS_ERRORS:
        return STATUS_ERRORS[status_code]
    return ServerError if status_code >= 500 else APIError
