"""Plain data returned by the SDK, each with a ``from_json`` that reads the API's camelCase wire form.

Decoding is lenient about extra or missing optional fields (the server may add fields; Daytona-shaped
answers omit sandburg's) and strict only about what the SDK cannot do without, such as a sandbox ``id``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import quote

from ._errors import UnexpectedResponseError

__all__ = [
    "ExecResult",
    "FileInfo",
    "HealthInfo",
    "Match",
    "NetworkEvent",
    "NetworkLog",
    "NetworkMode",
    "NetworkPolicy",
    "PreviewUrl",
    "ReplaceResult",
    "ResultList",
    "SandboxInfo",
    "SandboxState",
    "UploadResult",
]

T = TypeVar("T")


def _object(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise UnexpectedResponseError(f"expected a {what} object, got {type(data).__name__}", body=data)
    return data


def _str(d: Mapping[str, Any], key: str) -> str:
    v = d.get(key)
    return v if isinstance(v, str) else ""


def _int(d: Mapping[str, Any], key: str) -> int:
    v = d.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _strs(d: Mapping[str, Any], key: str) -> dict[str, str]:
    v = d.get(key)
    return {k: x for k, x in v.items() if isinstance(x, str)} if isinstance(v, dict) else {}


def _time(d: Mapping[str, Any], key: str) -> datetime | None:
    v = d.get(key)
    try:
        return datetime.fromisoformat(v) if isinstance(v, str) else None
    except ValueError:
        return None


def _str_list(d: Mapping[str, Any], key: str) -> tuple[str, ...]:
    v = d.get(key)
    return tuple(x for x in v if isinstance(x, str)) if isinstance(v, list) else ()


class NetworkMode(StrEnum):
    """The modes of a :class:`NetworkPolicy`. ``NetworkPolicy.mode`` is a plain ``str`` that compares equal."""

    NONE = "none"
    """No egress at all."""
    ALL = "all"
    """Any destination (``deny`` entries still apply)."""
    LIST = "list"
    """Only what ``allow`` names, minus what ``deny`` names."""


@dataclass(frozen=True)
class NetworkPolicy:
    """A sandbox's egress policy: ``mode`` ``"none"``, ``"all"`` or ``"list"``, and its ``allow`` / ``deny``
    entries (domain names, ``*.example.com`` wildcards, IPv4 addresses or CIDRs)."""

    mode: str
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    @staticmethod
    def from_json(data: Any) -> NetworkPolicy:
        """Decode ``{"mode", "allow", "deny"}``; raises :class:`UnexpectedResponseError` without a ``mode``."""
        d = _object(data, "NetworkPolicy")
        if not _str(d, "mode"):
            raise UnexpectedResponseError("NetworkPolicy object without a 'mode'", body=data)
        return NetworkPolicy(mode=d["mode"], allow=_str_list(d, "allow"), deny=_str_list(d, "deny"))

    def to_json(self) -> dict[str, Any]:
        """The wire form, as ``PUT /sandbox/{id}/network`` takes it."""
        return {"mode": self.mode, "allow": list(self.allow), "deny": list(self.deny)}


class SandboxState(StrEnum):
    """The states a sandbox goes through. ``SandboxInfo.state`` is a plain ``str`` that compares equal."""

    CREATING = "creating"
    STARTED = "started"
    STOPPING = "stopping"
    STOPPED = "stopped"
    STARTING = "starting"
    DESTROYING = "destroying"
    DESTROYED = "destroyed"
    ERROR = "error"
    PAUSED = "paused"
    ARCHIVED = "archived"


@dataclass
class SandboxInfo:
    """A sandbox as the server described it in its last answer.

    ``memory_mib`` / ``disk_mib`` are exact; ``memory`` / ``disk`` are the Daytona-compatible GiB values
    (rounded up). ``network_policy`` is the egress policy (the wire's ``network``; None from a server without
    networking); ``sandbox.network`` manages it. ``auto_stop``, ``auto_pause``, ``auto_archive``,
    ``auto_delete`` and ``ttl`` are the lifecycle intervals in effect, in minutes (docs/lifecycle.md). ``raw`` keeps the whole JSON object, including fields this
    SDK does not model.
    """

    id: str
    name: str = ""
    state: str = ""
    isolation: str = ""
    image: str = ""
    cpu: int = 0
    memory_mib: int = 0
    disk_mib: int = 0
    memory: int = 0
    disk: int = 0
    gpu: int = 0
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    error_reason: str | None = None
    desired_state: str = ""
    user: str = ""
    organization_id: str = ""
    target: str = ""
    public: bool = False
    network_block_all: bool = False
    toolbox_proxy_url: str = ""
    network_policy: NetworkPolicy | None = None
    auto_stop: int = 0
    auto_pause: int = 0
    auto_archive: int = 0
    auto_delete: int = -1
    ttl: int = 0
    wake_on_use: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @staticmethod
    def from_json(data: Any) -> SandboxInfo:
        """Decode a ``Sandbox`` JSON object; raises :class:`UnexpectedResponseError` without an ``id``."""
        d = _object(data, "Sandbox")
        if not _str(d, "id"):
            raise UnexpectedResponseError("Sandbox object without an 'id'", body=data)
        memory, disk = _int(d, "memory"), _int(d, "disk")
        return SandboxInfo(
            id=d["id"],
            name=_str(d, "name"),
            state=_str(d, "state"),
            isolation=_str(d, "isolation"),
            image=_str(d, "image") or _str(d, "snapshot"),
            cpu=_int(d, "cpu"),
            memory_mib=_int(d, "memoryMiB") or memory * 1024,
            disk_mib=_int(d, "diskMiB") or disk * 1024,
            memory=memory,
            disk=disk,
            gpu=_int(d, "gpu"),
            env=_strs(d, "env"),
            labels=_strs(d, "labels"),
            error_reason=_str(d, "errorReason") or None,
            desired_state=_str(d, "desiredState"),
            user=_str(d, "user"),
            organization_id=_str(d, "organizationId"),
            target=_str(d, "target"),
            public=d.get("public") is True,
            network_block_all=d.get("networkBlockAll") is True,
            toolbox_proxy_url=_str(d, "toolboxProxyUrl"),
            network_policy=_policy_or_none(d.get("network")),
            auto_stop=_int(d, "autoStopInterval"),
            auto_pause=_int(d, "autoPauseInterval"),
            auto_archive=_int(d, "autoArchiveInterval"),
            auto_delete=_int(d, "autoDeleteInterval") if "autoDeleteInterval" in d else -1,
            ttl=_int(d, "ttlMinutes"),
            wake_on_use=d.get("wakeOnUse") is True,
            created_at=_time(d, "createdAt"),
            updated_at=_time(d, "updatedAt"),
            raw=d,
        )


def _policy_or_none(data: Any) -> NetworkPolicy | None:
    if not isinstance(data, dict) or not _str(data, "mode"):
        return None
    return NetworkPolicy.from_json(data)


@dataclass(frozen=True)
class ExecResult:
    """The outcome of :meth:`Process.exec`.

    ``result`` is stdout and stderr interleaved as the command wrote them; ``truncated`` says the server cut
    the output at its size limit; ``duration_ms`` is the command's wall-clock time.
    """

    exit_code: int
    stdout: str = ""
    stderr: str = ""
    result: str = ""
    truncated: bool = False
    duration_ms: float = 0.0

    @staticmethod
    def from_json(data: Any) -> ExecResult:
        """Decode an ``ExecuteResponse``; raises :class:`UnexpectedResponseError` without an ``exitCode``."""
        d = _object(data, "ExecuteResponse")
        code, duration = d.get("exitCode"), d.get("durationMs")
        if not isinstance(code, int) or isinstance(code, bool):
            raise UnexpectedResponseError("ExecuteResponse without an integer 'exitCode'", body=data)
        return ExecResult(
            exit_code=code,
            stdout=_str(d, "stdout"),
            stderr=_str(d, "stderr"),
            result=_str(d, "result"),
            truncated=d.get("truncated") is True,
            duration_ms=float(duration)
            if isinstance(duration, int | float) and duration is not True
            else 0.0,
        )


@dataclass(frozen=True)
class FileInfo:
    """One entry of a sandbox's file system (``mode`` like ``-rw-r--r--``, ``permissions`` like ``0644``).

    ``link_target`` is where a symlink points (None for anything else). A name that is not UTF-8 holds its
    bytes as surrogate escapes: ``os.fsencode(info.path)`` (or ``.encode("utf-8", "surrogateescape")``)
    gives them back, and the SDK's methods take such a ``str`` as it is.
    """

    name: str
    path: str = ""
    is_dir: bool = False
    size: int = 0
    mode: str = ""
    permissions: str = ""
    mod_time: datetime | None = None
    owner: str = ""
    group: str = ""
    link_target: str | None = None

    @staticmethod
    def from_json(data: Any) -> FileInfo:
        """Decode a ``FileInfo`` JSON object."""
        d = _object(data, "FileInfo")
        return FileInfo(
            name=_str(d, "name"),
            path=_str(d, "path"),
            is_dir=d.get("isDir") is True,
            size=_int(d, "size"),
            mode=_str(d, "mode"),
            permissions=_str(d, "permissions"),
            mod_time=_time(d, "modTime"),
            owner=_str(d, "owner"),
            group=_str(d, "group"),
            link_target=_str(d, "linkTarget") or None,
        )


@dataclass(frozen=True)
class UploadResult:
    """What the server stored for an upload: the sandbox path and its size in bytes."""

    path: str
    size: int

    @staticmethod
    def from_json(data: Any) -> UploadResult:
        """Decode ``{"path": str, "size": int}``."""
        d = _object(data, "upload result")
        return UploadResult(path=_str(d, "path"), size=_int(d, "size"))


@dataclass(frozen=True)
class HealthInfo:
    """The answer of ``GET /api/health``."""

    status: str
    version: str = ""

    @staticmethod
    def from_json(data: Any) -> HealthInfo:
        """Decode ``{"status": "ok", "version": str}``."""
        d = _object(data, "health")
        return HealthInfo(status=_str(d, "status"), version=_str(d, "version"))


def labels_from_json(data: Any) -> dict[str, str]:
    """Decode ``{"labels": {...}}`` (the answer of ``PUT /sandbox/{id}/labels``)."""
    return _strs(_object(data, "SandboxLabels"), "labels")


def file_list_from_json(data: Any) -> list[FileInfo]:
    """Decode ``[FileInfo]``; a ``null`` answer is an empty directory."""
    return [FileInfo.from_json(item) for item in list_from_json(data, "FileInfo")]


class ResultList(list[T]):
    """A list the server may have cut at its limit (entries, matches or files): :attr:`truncated` says so.

    It compares equal to a plain list with the same items.
    """

    truncated: bool
    """Whether the server stopped at its limit, so that more exist than the list holds."""

    def __init__(self, items: Iterable[T] = (), truncated: bool = False) -> None:
        super().__init__(items)
        self.truncated = truncated

    def __repr__(self) -> str:
        return f"ResultList({list.__repr__(self)}, truncated={self.truncated})"


@dataclass(frozen=True)
class Match:
    """One line that :meth:`FileSystem.find` found: the file, the line number (from 1) and its content.

    ``content`` is the line's first 2 KiB, invalid UTF-8 replaced.
    """

    file: str
    line: int
    content: str = ""

    @staticmethod
    def from_json(data: Any) -> Match:
        """Decode a ``Match`` JSON object."""
        d = _object(data, "Match")
        return Match(file=_str(d, "file"), line=_int(d, "line"), content=_str(d, "content"))


@dataclass(frozen=True)
class ReplaceResult:
    """The outcome of :meth:`FileSystem.replace` for one file; ``error`` says why it failed (else None)."""

    file: str
    success: bool
    error: str | None = None

    @staticmethod
    def from_json(data: Any) -> ReplaceResult:
        """Decode a ``ReplaceResult`` JSON object."""
        d = _object(data, "ReplaceResult")
        return ReplaceResult(
            file=_str(d, "file"), success=d.get("success") is True, error=_str(d, "error") or None
        )


def list_from_json(data: Any, what: str) -> list[Any]:
    """A JSON list answer (``null`` is empty); raises :class:`UnexpectedResponseError` for anything else."""
    if data is None:
        return []
    if not isinstance(data, list):
        raise UnexpectedResponseError(f"expected a list of {what}, got {type(data).__name__}", body=data)
    return data


@dataclass(frozen=True)
class NetworkEvent:
    """One record of a sandbox's network log, as :meth:`Network.log` returns them (oldest first).

    ``kind`` is ``"dns"`` (a DNS answer: ``name``, ``type``, ``allowed``, ``rcode``, ``answers``, ``ttl``),
    ``"allow"`` / ``"deny"`` (a new connection attempt and the policy's verdict: ``proto``, ``dst``, ``dport``,
    ``sport``, and for some ``reason`` or ``icmpType``) or ``"conn"`` (an ended connection: ``proto``,
    ``dst``, ``dport``, ``sport``, ``bytesOut``, ``bytesIn``, ``packetsOut``, ``packetsIn``). Those fields are
    in ``data``, as the server sent them; ``ts`` is the ISO 8601 UTC time (``...Z``).
    """

    id: int
    ts: str
    kind: str
    data: dict[str, Any] = field(default_factory=dict, hash=False)

    @staticmethod
    def from_json(data: Any) -> NetworkEvent:
        """Decode one event ``{"id", "ts", "kind", ...fields}``; raises :class:`UnexpectedResponseError`
        without an integer ``id``."""
        d = _object(data, "network event")
        ident = d.get("id")
        if not isinstance(ident, int) or isinstance(ident, bool):
            raise UnexpectedResponseError("network event without an integer 'id'", body=data)
        rest = {k: v for k, v in d.items() if k not in ("id", "ts", "kind")}
        return NetworkEvent(id=ident, ts=_str(d, "ts"), kind=_str(d, "kind"), data=rest)

    def get(self, key: str, default: Any = None) -> Any:
        """The field ``key`` of :attr:`data` (``event.get("dst")``), or ``default``."""
        return self.data.get(key, default)


@dataclass(frozen=True)
class NetworkLog:
    """A page of a sandbox's network log: the events, oldest first, and the ``since`` of the next page.

    Iterating it (and ``len()``) goes over :attr:`events`; pass :attr:`next_since` as ``since`` to get only
    what was recorded after them.
    """

    events: list[NetworkEvent]
    next_since: int = 0

    @staticmethod
    def from_json(data: Any, since: int = 0) -> NetworkLog:
        """Decode ``{"events": [...], "nextSince": int}``; without ``nextSince``, the last event's id (or
        ``since`` when there is none)."""
        d = _object(data, "NetworkLog")
        events = [NetworkEvent.from_json(e) for e in list_from_json(d.get("events"), "network events")]
        nxt = d.get("nextSince")
        if not isinstance(nxt, int) or isinstance(nxt, bool):
            nxt = max([since, *(e.id for e in events)])
        return NetworkLog(events=events, next_since=nxt)

    def __iter__(self) -> Iterator[NetworkEvent]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)


PREVIEW_TOKEN_HEADER = "x-daytona-preview-token"
"""The header that carries a preview token (the server also takes ``?token=`` and its cookie)."""


@dataclass(frozen=True)
class PreviewUrl:
    """Where a port of a sandbox is reachable from outside: :attr:`url` (on the sandburg server, no API key
    needed) and the :attr:`token` that must go with each request.

    Send the token as a header (:attr:`headers`) or open :attr:`authenticated_url`, whose ``?token=`` makes
    the server set a cookie, so a browser keeps access to the page's links and scripts. Anyone holding the
    token reaches the port: treat it as a secret.
    """

    url: str
    token: str = field(repr=False)
    sandbox_id: str = ""
    port: int = 0

    @staticmethod
    def from_json(data: Any, port: int = 0) -> PreviewUrl:
        """Decode ``{"sandboxId", "url", "token"}``; raises :class:`UnexpectedResponseError` without a ``url``
        or ``token``."""
        d = _object(data, "PortPreviewUrl")
        if not _str(d, "url") or not _str(d, "token"):
            raise UnexpectedResponseError("PortPreviewUrl without a 'url' and a 'token'", body=data)
        return PreviewUrl(url=d["url"], token=d["token"], sandbox_id=_str(d, "sandboxId"), port=port)

    @property
    def headers(self) -> dict[str, str]:
        """The header that authenticates a request to :attr:`url`: ``{"x-daytona-preview-token": token}``."""
        return {PREVIEW_TOKEN_HEADER: self.token}

    @property
    def authenticated_url(self) -> str:
        """:attr:`url` with ``?token=<token>``: opens in a browser, which then keeps the token in a cookie."""
        sep = "&" if "?" in self.url else "?"
        return f"{self.url}{sep}token={quote(self.token, safe='')}"
