"""Request and response models of the REST API (camelCase on the wire, Daytona's field names)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
Isolation = Literal["gvisor", "container"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VolumeMount(Strict):
    """Daytona's SandboxVolume (`volumeId` is the volume's id or name) plus sandburg's `readOnly`."""

    volumeId: str = Field(max_length=200)
    mountPath: str = Field(max_length=1024)
    subpath: str | None = Field(default=None, max_length=1024)
    readOnly: StrictBool | None = None


class VolumeIn(Strict):
    """Body of POST /api/volumes: Daytona's CreateVolume (`name`) plus sandburg's size (default: the server's)."""

    name: str = Field(max_length=200)
    sizeMiB: StrictInt | None = None


class VolumeOut(BaseModel):
    """Daytona's VolumeDto plus sandburg's size, bytes used on the host, and the sandboxes that mount it."""

    id: str
    name: str
    organizationId: str
    state: str
    createdAt: str
    updatedAt: str
    lastUsedAt: str | None = None
    errorReason: str | None = None
    sizeMiB: int
    usedBytes: int = 0
    sandboxes: list[str] = Field(default_factory=list)


class BuildInfoIn(Strict):
    dockerfileContent: str
    contextHashes: list[str] | None = None


class CreateSandbox(Strict):
    """Body of POST /api/sandbox: Daytona's CreateSandbox plus sandburg's `image`, `isolation`, MiB sizes."""

    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    image: str | None = Field(default=None, max_length=200)
    snapshot: str | None = Field(default=None, max_length=200)
    isolation: Isolation | None = None
    user: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    cpu: StrictInt | None = None
    gpu: StrictInt | None = None
    memory: StrictInt | None = None
    disk: StrictInt | None = None
    memoryMiB: StrictInt | None = None
    diskMiB: StrictInt | None = None
    public: StrictBool | None = None
    networkBlockAll: StrictBool | None = None
    networkAllowList: str | None = None
    domainAllowList: str | None = None
    target: str | None = None
    autoStopInterval: StrictInt | None = None
    autoPauseInterval: StrictInt | None = None
    autoArchiveInterval: StrictInt | None = None
    autoDeleteInterval: StrictInt | None = None
    ttlMinutes: StrictInt | None = None
    # sandburg: a toolbox call to this sandbox when stopped (not archived) starts it (docs/lifecycle.md)
    wakeOnUse: StrictBool | None = None
    volumes: list[VolumeMount] = Field(default_factory=list)
    buildInfo: BuildInfoIn | None = None
    # accepted for wire compatibility with Daytona's SDKs; not acted on yet
    kvm: StrictBool | None = None
    gpuType: list[str] | None = None
    spot: StrictBool | None = None
    outboundProxyUrl: str | None = None
    otelEndpointOverride: str | None = None
    queueTimeout: StrictInt | None = None
    linkedSandbox: str | None = None
    # secret references (docs/secrets.md): names (the env name is the secret's name), Daytona's one
    # {"ENV_NAME": "secret-name"} object per secret, or one such mapping; values are added at each process start
    secrets: list[str | dict[str, str]] | dict[str, str] | None = None
    # sandburg: egress policy, "none" | "all" | {"allow": [names, *.names, CIDRs], "deny": [...]}; default: the
    # server's default allowlist (docs/network.md)
    network: Literal["none", "all"] | NetworkPolicyIn | None = None


class LifecycleSettings(Strict):
    """Body of POST /api/sandbox/{id}/lifecycle (sandburg): minutes; a field set to null returns to the default."""

    autoStopInterval: int | None = Field(default=None, ge=0, le=10_000_000)
    autoPauseInterval: int | None = Field(default=None, ge=0, le=10_000_000)
    autoArchiveInterval: int | None = Field(default=None, ge=0, le=10_000_000)
    autoDeleteInterval: int | None = Field(default=None, ge=-1, le=10_000_000)
    ttlMinutes: int | None = Field(default=None, ge=0, le=10_000_000)
    wakeOnUse: StrictBool | None = None


class NetworkPolicyIn(Strict):
    mode: Literal["none", "all", "list"] = "list"
    allow: list[str] = Field(default_factory=list, max_length=1000)
    deny: list[str] = Field(default_factory=list, max_length=1000)


class NetworkPolicyOut(BaseModel):
    mode: Literal["none", "all", "list"]
    allow: list[str]
    deny: list[str]


class NetworkLog(BaseModel):
    """Recent network records of a sandbox, oldest first: `dns` answers, `allow`/`deny` connection attempts
    (new connections, from the node's firewall log), `conn` ended connections with bytes each way."""

    events: list[dict[str, Any]]
    nextSince: int


class SandboxOut(BaseModel):
    """Daytona's Sandbox DTO (all its required fields) plus sandburg's additions."""

    id: str
    organizationId: str
    name: str
    user: str
    env: dict[str, str]
    labels: dict[str, str]
    public: bool
    networkBlockAll: bool
    networkAllowList: str | None = None
    domainAllowList: str | None = None
    kvm: bool = False
    target: str
    cpu: int
    gpu: int
    memory: int
    disk: int
    state: str
    desiredState: str | None = None
    errorReason: str | None = None
    recoverable: bool = False
    snapshot: str
    toolboxProxyUrl: str
    autoStopInterval: int = 0
    autoPauseInterval: int = 0
    autoArchiveInterval: int = 0
    autoDeleteInterval: int = -1
    autoDestroyAt: str | None = None
    queueTimeout: int | None = None
    outboundProxyUrl: str | None = None
    otelEndpointOverride: str | None = None
    volumes: list[dict[str, Any]] = Field(default_factory=list)
    sandboxClass: str = "container"
    daemonVersion: str | None = None
    createdAt: str
    updatedAt: str
    lastActivityAt: str | None = None
    # sandburg
    ttlMinutes: int = 0
    wakeOnUse: bool = False
    isolation: Isolation
    image: str
    memoryMiB: int
    diskMiB: int
    network: NetworkPolicyOut | None = None
    # env name -> secret name, never a value; not `secrets`, which Daytona's clients read as their own field
    secretRefs: dict[str, str] = Field(default_factory=dict)


class SandboxList(BaseModel):
    items: list[SandboxOut]
    nextCursor: str | None = None


class Labels(Strict):
    labels: dict[str, str]


# -- Daytona's sandbox settings and helpers (routers/sandbox_settings.py) ------------------------------------------
class NetworkSettings(Strict):
    networkBlockAll: StrictBool | None = None
    networkAllowList: str | None = None
    domainAllowList: str | None = None


class Url(BaseModel):
    url: str


class ExecuteRequest(Strict):
    command: str = Field(min_length=1, max_length=1 << 20)
    cwd: str | None = None
    envs: dict[str, str] | None = None
    timeout: float | None = Field(default=None, ge=0, le=24 * 3600)  # 0: no limit (Daytona's meaning)


class ExecuteResponse(BaseModel):
    exitCode: int
    result: str
    stdout: str
    stderr: str
    truncated: bool = False
    durationMs: float = 0


class FileInfo(BaseModel):
    name: str
    path: str
    isDir: bool
    size: int
    mode: str
    permissions: str
    modTime: str
    owner: str
    group: str
    linkTarget: str | None = None


class UploadResult(BaseModel):
    path: str
    size: int


class UploadedFile(BaseModel):
    path: str
    bytes: int


class BulkUploadResult(BaseModel):
    files: list[UploadedFile]
    errors: list[str]


class DownloadRequest(Strict):
    paths: list[str] = Field(min_length=1, max_length=1000)


class Health(BaseModel):
    status: str
    version: str


class ErrorOut(BaseModel):
    statusCode: int
    error: str
    message: str
    code: str
    source: str
    details: list[dict[str, Any]] | None = None


# -- sessions and terminals (routers/sessions.py, routers/pty.py) -------------------------------------------------
class CreateSession(Strict):
    sessionId: str = Field(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")


class SessionCommand(BaseModel):
    id: str
    command: str
    exitCode: int | None = None
    # sandburg
    runAsync: bool = False
    truncated: bool = False
    startedAt: str | None = None
    endedAt: str | None = None


class SessionOut(BaseModel):
    sessionId: str
    commands: list[SessionCommand]


class SessionExecuteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    command: str = Field(min_length=1, max_length=1 << 20)
    runAsync: bool | None = None
    async_: bool | None = Field(default=None, alias="async")  # Daytona's deprecated spelling
    suppressInputEcho: bool | None = None


class SessionExecuteResponse(BaseModel):
    cmdId: str
    output: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    exitCode: int | None = None
    truncated: bool = False


class CommandLogs(BaseModel):
    output: str
    stdout: str
    stderr: str
    # sandburg: replay from any offset; the next call passes nextOffset
    nextOffset: int = 0
    truncated: bool = False


class CommandInput(Strict):
    data: str = Field(max_length=1 << 20)
    close: bool = False


class CommandSignal(Strict):
    signal: int = Field(ge=1, le=64)


class PtyResize(Strict):
    cols: int = Field(ge=1, le=1000)
    rows: int = Field(ge=1, le=1000)


class PtySessionInfo(BaseModel):
    id: str
    active: bool
    cols: int
    rows: int
    createdAt: str
    cwd: str
    envs: dict[str, str]
    lazyStart: bool = False


class PtyList(BaseModel):
    sessions: list[PtySessionInfo]


# -- files (routers/files.py): Daytona's toolbox models; paths that are not UTF-8 travel as \udcXX escapes --------
class Match(BaseModel):
    file: str
    line: int
    content: str


class SearchFilesResponse(BaseModel):
    files: list[str]
    truncated: bool = False  # sandburg: the search stopped at its limit


class ReplaceRequest(Strict):
    files: list[str] = Field(max_length=10_000)
    pattern: str = Field(min_length=1)
    newValue: str


class ReplaceResult(BaseModel):
    file: str
    success: bool
    error: str | None = None  # absent on success


# -- code run and toolbox info (routers/coderun.py, routers/toolbox_info.py) ---------------------------------------
class CodeRunRequest(Strict):
    code: str = Field(max_length=1 << 24)
    language: str = (
        ""  # python | javascript | typescript | bash; empty: the sandbox's code-toolbox-language label
    )
    argv: list[str] | None = None
    envs: dict[str, str] | None = None
    timeout: StrictInt | None = Field(default=None, ge=0, le=24 * 3600)


class CodeRunArtifacts(BaseModel):
    charts: list[dict[str, Any]] = Field(default_factory=list)


class CodeRunResponse(BaseModel):
    exitCode: int
    result: str
    artifacts: CodeRunArtifacts
    # sandburg
    stdout: str
    stderr: str
    truncated: bool = False
    durationMs: float = 0


class DirResponse(BaseModel):
    dir: str


class PortList(BaseModel):
    ports: list[int]


class PortInUse(BaseModel):
    isInUse: bool


class UploadedFileV2(BaseModel):
    name: str
    path: str
    type: str


# -- secrets (routers/secrets.py) ----------------------------------------------------------------------------------
class SecretIn(Strict):
    value: str


class SecretOut(BaseModel):
    """A secret's metadata: the value is never answered."""

    name: str
    version: int
    createdAt: str
    updatedAt: str


class SecretList(BaseModel):
    items: list[SecretOut]
