"""The I/O-free half of the SDK, shared by the sync client (``_client``) and the async one (``_async_client``).

It turns calls into :class:`Request` values (and those into ``httpx.Request``), answer bodies into JSON for
the models' ``from_json`` (``sandburg._models``), and error answers or transport failures into the exception
tree of ``sandburg._errors``; :class:`SandboxBase` holds what both ``Sandbox`` classes know. Nothing here opens
a socket or a file: the clients only send the request, hand the status and body back, and decide nothing else.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import IO, Any, Final
from urllib.parse import quote

import httpx

from ._errors import (
    APIError,
    ConfigurationError,
    SandburgConnectionError,
    SandburgError,
    SandburgTimeoutError,
    UnexpectedResponseError,
    error_class,
)
from ._models import NetworkMode, SandboxInfo, SandboxState
from ._sizes import parse_size_mib as parse_size_mib  # re-exported (CLI, tests)

DEFAULT_TIMEOUT: Final = 60.0
"""Seconds the client waits for a connection and for each read or write of an ordinary request."""

DEFAULT_CREATE_TIMEOUT: Final = 300.0
"""Seconds :meth:`Sandburg.create` and :meth:`Sandbox.start` wait: both answer once the sandbox runs."""

CHUNK_SIZE: Final = 1 << 20
"""Bytes per chunk when a client streams a download into a local file."""

UploadData = bytes | bytearray | memoryview | IO[bytes]

# ---------------------------------------------------------------------------------------------- requests


class _UseClientDefault:
    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"


USE_CLIENT_DEFAULT: Final = _UseClientDefault()
"""Marks a :class:`Request` whose read timeout is the client's default."""

Timeout = float | None | _UseClientDefault


@dataclass(frozen=True)
class Request:
    """One HTTP call, relative to the API base URL (``path`` starts with ``/``).

    ``timeout`` overrides the client's read timeout (None: wait forever). ``stream`` asks the client not to
    read the body up front. ``upload`` names the multipart field and file name whose content the client
    supplies (the core never touches the data, so it can be streamed).
    """

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    json: Any = None
    timeout: Timeout = USE_CLIENT_DEFAULT
    stream: bool = False
    upload: tuple[str, str] | None = None


def default_headers(api_key: str, sdk_version: str) -> dict[str, str]:
    """The headers sent on every request."""
    return {
        "Authorization": f"Bearer {api_key}",
        "User-Agent": f"sandburg-python/{sdk_version}",
        "Accept": "application/json",
    }


def http_timeout(default: httpx.Timeout, override: Timeout) -> httpx.Timeout:
    """The httpx timeout for a request: the client's, with the read timeout replaced if asked."""
    if isinstance(override, _UseClientDefault):
        return default
    return httpx.Timeout(connect=default.connect, read=override, write=default.write, pool=default.pool)


def build_http_request(
    http: httpx.Client | httpx.AsyncClient, request: Request, upload: bytes | IO[bytes] | None = None
) -> httpx.Request:
    """The ``httpx.Request`` for ``request`` on either client; building it does no I/O.

    ``upload`` is the content of the multipart file that ``request.upload`` names: bytes, or a binary file
    object that httpx reads in chunks, from its beginning, while it sends.
    """
    files = None
    if request.upload is not None and upload is not None:
        field, filename = request.upload
        files = {field: (filename, upload, "application/octet-stream")}
    content, headers = None, None
    if request.json is not None:  # ASCII, so that a path's surrogate-escaped bytes travel as \udcXX
        content = json.dumps(request.json, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
        headers = {"Content-Type": "application/json"}
    return http.build_request(
        request.method,
        request.path + (f"?{encode_query(request.params)}" if request.params else ""),
        content=content,
        headers=headers,
        files=files,
        timeout=http_timeout(http.timeout, request.timeout),
    )


def encode_query(params: Iterable[tuple[str, str]]) -> str:
    """A query string, every value percent-encoded as bytes: a ``str`` holding surrogate escapes (the
    ``surrogateescape`` form of a file name that is not UTF-8) goes as its original bytes (docs/api.md)."""
    return "&".join(
        f"{quote(k, safe='')}={quote(v.encode('utf-8', 'surrogateescape'), safe='')}" for k, v in params
    )


def upload_content(data: UploadData) -> bytes | IO[bytes]:
    """Check what ``fs.upload_file`` was given: bytes-like (returned as bytes) or a binary file object.

    Raises ``TypeError`` for a path (that is ``upload_local``'s job) and for a file opened in text mode.
    """
    if isinstance(data, str | os.PathLike):
        raise TypeError("upload_file takes bytes or a binary file; use upload_local() for a local path")
    if isinstance(data, io.TextIOBase):
        raise TypeError("upload_file needs a file opened in binary mode ('rb')")
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    return data


def path_segment(value: str, what: str) -> str:
    """``value`` as one URL path segment; empty, it would silently address the collection instead."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    return quote(value, safe="")


def _seg(value: str) -> str:
    return path_segment(value, "a sandbox id or name")


def _str_map(name: str, value: Mapping[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    out = dict(value)
    for k, v in out.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"{name} keys and values must be str, got {k!r}: {v!r}")
    return out


def create_request(
    *,
    name: str | None = None,
    image: str | None = None,
    isolation: str | None = None,
    cpu: int | None = None,
    memory: int | float | str | None = None,
    disk: int | float | str | None = None,
    env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    network: str | Mapping[str, Any] | None = None,
    timeout: float | None = None,
    secrets: Iterable[str] | Mapping[str, str] | None = None,
    volumes: Iterable[Mapping[str, Any]] | None = None,
    lifecycle: Mapping[str, Any] | None = None,
) -> Request:
    """``POST /sandbox``; ``lifecycle``: :func:`lifecycle_body`'s fields; memory and disk go on the wire as exact ``memoryMiB`` / ``diskMiB``, ``network`` as
    :func:`network_create_value` makes it, ``secrets`` as a list of names or an ``{env name: secret name}``
    object."""
    body: dict[str, Any] = {
        "name": name,
        "image": image,
        "isolation": isolation,
        "cpu": cpu,
        "memoryMiB": None if memory is None else parse_size_mib(memory),
        "diskMiB": None if disk is None else parse_size_mib(disk),
        "env": _str_map("env", env),
        "labels": _str_map("labels", labels),
        "network": None if network is None else network_create_value(network),
        "secrets": _secret_refs(secrets),
        "volumes": volume_mounts(volumes),
        **(lifecycle or {}),
    }
    return Request("POST", "/sandbox", json={k: v for k, v in body.items() if v is not None}, timeout=timeout)


def volume_mounts(volumes: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]] | None:
    """``volumes=`` of a create as the wire's Daytona ``SandboxVolume`` list: each item ``{"name": volume id or
    name, "mount": absolute path, "read_only": bool (default False), "subpath": dir inside the volume}``."""
    if volumes is None:
        return None
    if isinstance(volumes, Mapping | str):
        raise TypeError('volumes: a list of {"name": ..., "mount": ...} mappings')
    out = []
    for v in volumes:
        unknown = set(v) - {"name", "mount", "read_only", "subpath"}
        if unknown or not isinstance(v.get("name"), str) or not isinstance(v.get("mount"), str):
            raise TypeError(
                f'volumes: each item is {{"name": str, "mount": str, "read_only"?, "subpath"?}}, got {v!r}'
            )
        item: dict[str, Any] = {
            "volumeId": v["name"],
            "mountPath": v["mount"],
            "readOnly": bool(v.get("read_only")),
        }
        if v.get("subpath"):
            item["subpath"] = str(v["subpath"])
        out.append(item)
    return out


def _secret_refs(secrets: Iterable[str] | Mapping[str, str] | None) -> list[str] | dict[str, str] | None:
    if secrets is None:
        return None
    if isinstance(secrets, Mapping):
        return _str_map("secrets", secrets)
    if isinstance(secrets, str):
        raise TypeError("secrets: a list of secret names or a mapping {env name: secret name}, not one str")
    names = list(secrets)
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"secrets: secret names must be str, got {n!r}")
    return names


def states_filter(state: str | Iterable[str] | None) -> tuple[str, ...]:
    """The ``states`` to list from ``Sandburg.list``'s ``state``: one state, several, or None for all."""
    return () if state is None else (state,) if isinstance(state, str) else tuple(state)


def list_request(
    *,
    labels: Mapping[str, str] | None = None,
    states: Iterable[str] = (),
    name: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Request:
    """One page of ``GET /sandbox`` (``labels`` is sent as a JSON object, ``states`` repeated)."""
    params: list[tuple[str, str]] = []
    if labels:
        params.append(
            ("labels", json.dumps(_str_map("labels", labels), separators=(",", ":"), sort_keys=True))
        )
    params.extend(("states", str(s)) for s in states)
    if name is not None:
        params.append(("name", name))
    if limit is not None:
        params.append(("limit", str(limit)))
    if cursor is not None:
        params.append(("cursor", cursor))
    return Request("GET", "/sandbox", params=tuple(params))


def get_request(id_or_name: str) -> Request:
    """``GET /sandbox/{idOrName}``."""
    return Request("GET", f"/sandbox/{_seg(id_or_name)}")


def delete_request(id_or_name: str) -> Request:
    """``DELETE /sandbox/{idOrName}``."""
    return Request("DELETE", f"/sandbox/{_seg(id_or_name)}")


def start_request(id_or_name: str, timeout: float | None) -> Request:
    """``POST /sandbox/{idOrName}/start``."""
    return Request("POST", f"/sandbox/{_seg(id_or_name)}/start", timeout=timeout)


def pause_request(id_or_name: str) -> Request:
    """``POST /sandbox/{idOrName}/pause``."""
    return Request("POST", f"/sandbox/{_seg(id_or_name)}/pause", timeout=None)


def archive_request(id_or_name: str) -> Request:
    """``POST /sandbox/{idOrName}/archive``."""
    return Request("POST", f"/sandbox/{_seg(id_or_name)}/archive", timeout=None)


LIFECYCLE_FIELDS: Final = {
    "auto_stop": "autoStopInterval", "auto_pause": "autoPauseInterval", "auto_archive": "autoArchiveInterval",
    "auto_delete": "autoDeleteInterval", "ttl": "ttlMinutes", "wake_on_use": "wakeOnUse",
}  # fmt: skip


def lifecycle_body(**values: int | bool | None) -> dict[str, Any]:
    """The wire fields of the lifecycle settings given (None: not given): minutes, ``wake_on_use`` a bool."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        if name == "wake_on_use":
            if not isinstance(value, bool):
                raise TypeError(f"wake_on_use must be a bool, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int (minutes), got {value!r}")
        elif value < (-1 if name == "auto_delete" else 0):
            raise ValueError(f"{name} must be >= {-1 if name == 'auto_delete' else 0}, got {value}")
        out[LIFECYCLE_FIELDS[name]] = value
    return out


def set_lifecycle_request(id_or_name: str, body: Mapping[str, Any]) -> Request:
    """``POST /sandbox/{idOrName}/lifecycle`` (sandburg): the settings given change, the others are kept."""
    return Request("POST", f"/sandbox/{_seg(id_or_name)}/lifecycle", json=dict(body))


def stop_request(id_or_name: str) -> Request:
    """``POST /sandbox/{idOrName}/stop``."""
    return Request("POST", f"/sandbox/{_seg(id_or_name)}/stop")


def set_labels_request(id_or_name: str, labels: Mapping[str, str]) -> Request:
    """``PUT /sandbox/{idOrName}/labels`` (replaces all labels)."""
    return Request("PUT", f"/sandbox/{_seg(id_or_name)}/labels", json={"labels": _str_map("labels", labels)})


EXEC_TIMEOUT_MARGIN: Final = 10.0
"""Seconds the HTTP read timeout exceeds an exec ``timeout``, so the server's 408 arrives first."""


def exec_body(
    command: str,
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """The ``ExecuteRequest`` body (also the first message of the exec stream)."""
    if not isinstance(command, str):
        raise TypeError(f"command must be a str (a shell command line), got {type(command).__name__}")
    body: dict[str, Any] = {"command": command}
    if cwd is not None:
        body["cwd"] = cwd
    if env is not None:
        body["envs"] = _str_map("env", env)
    if timeout is not None:
        body["timeout"] = timeout
    return body


def exec_request(
    sandbox_id: str,
    command: str,
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Request:
    """``POST /toolbox/{id}/process/execute``. Without ``timeout`` the client waits as long as the server."""
    body = exec_body(command, cwd=cwd, env=env, timeout=timeout)
    read = None if timeout is None else timeout + EXEC_TIMEOUT_MARGIN
    return Request("POST", f"/toolbox/{_seg(sandbox_id)}/process/execute", json=body, timeout=read)


# ---------------------------------------------------------------------------------------------- network

NETWORK_MODES: Final = tuple(m.value for m in NetworkMode)
"""The policy modes the server knows: ``none``, ``all``, ``list``."""

NETWORK_LOG_KINDS: Final = ("dns", "allow", "deny", "conn")
"""The kinds of network log records (``kinds`` of :meth:`Network.log`)."""


def _entries(name: str, value: Any) -> list[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValueError(f"{name} must be a list of str (domains, *.wildcards, IPv4 CIDRs), got {value!r}")
    out = list(value)
    for item in out:
        if not isinstance(item, str):
            raise ValueError(f"{name} entries must be str, got {item!r}")
    return out


def _mode(mode: Any) -> str:
    if not isinstance(mode, str) or mode not in NETWORK_MODES:
        raise ValueError(f"network mode must be one of {', '.join(NETWORK_MODES)}, got {mode!r}")
    return mode


def network_policy_body(
    allow: Iterable[str] = (), deny: Iterable[str] = (), mode: str = "list"
) -> dict[str, Any]:
    """The ``{"mode", "allow", "deny"}`` body of a policy. Only the types are checked here (the server
    validates the entries themselves): raises ``ValueError`` for an unknown mode, a bare ``str`` instead of a
    list, or an entry that is not a ``str``."""
    return {"mode": _mode(mode), "allow": _entries("allow", allow), "deny": _entries("deny", deny)}


def network_create_value(network: str | Mapping[str, Any]) -> str | dict[str, Any]:
    """The ``network`` of ``POST /sandbox``: ``"none"``, ``"all"``, or a mapping with ``allow`` / ``deny``
    (and ``mode``, default ``"list"``) made into a full policy body. Raises ``ValueError`` for anything else."""
    if isinstance(network, str):
        if network not in ("none", "all"):
            raise ValueError(f"network must be 'none', 'all' or a mapping with allow/deny, got {network!r}")
        return network
    if not isinstance(network, Mapping):
        raise ValueError(f"network must be 'none', 'all' or a mapping with allow/deny, got {network!r}")
    unknown = sorted(str(k) for k in network if k not in ("mode", "allow", "deny"))
    if unknown:
        raise ValueError(f"network takes the keys mode, allow and deny, got {', '.join(unknown)}")
    return network_policy_body(network.get("allow", ()), network.get("deny", ()), network.get("mode", "list"))


def get_network_request(id_or_name: str) -> Request:
    """``GET /sandbox/{idOrName}/network``."""
    return Request("GET", f"/sandbox/{_seg(id_or_name)}/network")


def set_network_request(
    id_or_name: str, *, allow: Iterable[str] = (), deny: Iterable[str] = (), mode: str = "list"
) -> Request:
    """``PUT /sandbox/{idOrName}/network`` (replaces the whole policy)."""
    body = network_policy_body(allow, deny, mode)
    return Request("PUT", f"/sandbox/{_seg(id_or_name)}/network", json=body)


def _count(name: str, value: Any, least: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}")
    return value


def network_log_request(
    id_or_name: str, *, limit: int = 100, since: int = 0, kinds: Iterable[str] | None = None
) -> Request:
    """``GET /sandbox/{idOrName}/network/log`` with ``limit``, ``since`` and ``kind`` repeated."""
    params = [("limit", str(_count("limit", limit, 1))), ("since", str(_count("since", since, 0)))]
    if kinds is not None:
        for kind in [kinds] if isinstance(kinds, str) else kinds:
            if kind not in NETWORK_LOG_KINDS:
                raise ValueError(f"network log kinds are {', '.join(NETWORK_LOG_KINDS)}, got {kind!r}")
            params.append(("kind", kind))
    return Request("GET", f"/sandbox/{_seg(id_or_name)}/network/log", params=tuple(params))


def preview_url_request(id_or_name: str, port: int) -> Request:
    """``GET /sandbox/{idOrName}/ports/{port}/preview-url``; raises ``ValueError`` for a port outside 1-65535."""
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an integer from 1 to 65535, got {port!r}")
    return Request("GET", f"/sandbox/{_seg(id_or_name)}/ports/{port}/preview-url")


def health_request() -> Request:
    """``GET /health``."""
    return Request("GET", "/health")


class SandboxPager:
    """Follows ``nextCursor`` for ``GET /sandbox`` until the server or ``limit`` says stop.

    Use: ``while (req := pager.next_request()) is not None: pager.feed(<decoded JSON answer>)``, then read
    ``pager.items``.
    """

    PAGE_MAX: Final = 1000

    def __init__(
        self,
        *,
        labels: Mapping[str, str] | None = None,
        states: Iterable[str] = (),
        name: str | None = None,
        limit: int | None = None,
    ) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._labels, self._states, self._name, self._limit = labels, tuple(states), name, limit
        self._cursor: str | None = None
        self._seen: set[str] = set()
        self._done = False
        self.items: list[SandboxInfo] = []

    def next_request(self) -> Request | None:
        """The request for the next page, or None when all pages are in."""
        if self._done:
            return None
        page = None if self._limit is None else min(self._limit - len(self.items), self.PAGE_MAX)
        return list_request(
            labels=self._labels, states=self._states, name=self._name, limit=page, cursor=self._cursor
        )

    def feed(self, data: Any) -> None:
        """Take in one decoded page ``{"items": [...], "nextCursor": ...}``."""
        if not isinstance(data, dict) or not isinstance(data.get("items"), list):
            raise UnexpectedResponseError("expected {'items': [...], 'nextCursor': ...}", body=data)
        self.items.extend(SandboxInfo.from_json(item) for item in data["items"])
        cursor = data.get("nextCursor")
        if self._limit is not None and len(self.items) >= self._limit:
            del self.items[self._limit :]
            self._done = True
        # a cursor seen before would loop forever: treat it as the end
        elif not isinstance(cursor, str) or not cursor or cursor in self._seen:
            self._done = True
        else:
            self._seen.add(cursor)
            self._cursor = cursor


# --------------------------------------------------------------------------------------------- responses


def decode_json(status_code: int, content: bytes) -> Any:
    """The JSON body of a successful answer."""
    try:
        return json.loads(content)
    except ValueError as exc:
        text = content[:200].decode("utf-8", "replace")
        raise UnexpectedResponseError(
            f"expected a JSON answer, got {text!r}", status_code=status_code, body=text
        ) from exc


def json_answer(status_code: int, content: bytes) -> Any:
    """The decoded JSON of a 2xx answer (None for an empty one, such as a 201 or 204 without a body);
    raises the mapped :class:`APIError` for any other status."""
    raise_for_status(status_code, content)
    return decode_json(status_code, content) if content else None


class SandboxBase(SandboxInfo):
    """What ``Sandbox`` and ``AsyncSandbox`` share: the last known fields, updated in place from answers."""

    def _update(self, info: SandboxInfo) -> None:
        for name in SandboxInfo.__dataclass_fields__:
            setattr(self, name, getattr(info, name))

    def _apply(self, data: Any) -> None:
        """Take in a decoded ``Sandbox`` answer."""
        self._update(SandboxInfo.from_json(data))

    @property
    def is_running(self) -> bool:
        """Whether the last known state is ``started``."""
        return self.state == SandboxState.STARTED


# ------------------------------------------------------------------------------------------------ errors


def error_from_response(status_code: int, content: bytes) -> APIError:
    """Build the exception for an error answer from its status and raw body (JSON or not)."""
    body: Any = None
    text = content.decode("utf-8", "replace").strip()
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = text
    code = message = None
    if isinstance(body, dict):
        code = body.get("code") if isinstance(body.get("code"), str) else None
        raw = body.get("message")
        message = "; ".join(map(str, raw)) if isinstance(raw, list) else raw if isinstance(raw, str) else None
    if not message:
        try:
            message = f"{status_code} {HTTPStatus(status_code).phrase}"
        except ValueError:
            message = f"HTTP {status_code}"
        # a proxy's plain-text explanation helps; its HTML page doesn't
        if text and not isinstance(body, dict) and not text.startswith("<"):
            message += f": {text[:200]}"
    return error_class(status_code, code)(status_code, code or f"HTTP_{status_code}", message, body)


def raise_for_status(status_code: int, content: bytes) -> None:
    """Raise the mapped :class:`APIError` unless the status is 2xx."""
    if not 200 <= status_code < 300:
        raise error_from_response(status_code, content)


TRANSPORT_ERRORS: Final = (httpx.HTTPError, httpx.InvalidURL)
"""What httpx raises when there is no usable answer; the clients pass it to :func:`error_from_transport`."""


def error_from_transport(exc: httpx.HTTPError | httpx.InvalidURL) -> SandburgError:
    """Translate an httpx failure (no usable answer) into the SDK's tree; raise it ``from exc``."""
    try:
        where = f" ({exc.request.method} {exc.request.url})" if isinstance(exc, httpx.RequestError) else ""
    except RuntimeError:  # the exception was raised before a request existed
        where = ""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return ConfigurationError(f"invalid API URL: {detail}")
    if isinstance(exc, httpx.TimeoutException):
        return SandburgTimeoutError(f"request timed out{where}: {detail}")
    return SandburgConnectionError(f"could not reach the sandburg server{where}: {detail}")
