"""The synchronous client: a thin I/O shell over ``sandburg._core`` and ``httpx.Client``.

``sandburg._async_client`` mirrors it name for name (same signatures and docstrings, ``async`` where this one
does I/O; tests/unit/test_sdk_parity.py checks it). To add a method, put its request building and answer
parsing in ``_core`` / ``_files`` / ``_sessions`` / ``_models``, then add a thin method here and its twin
there. ``sandbox.process`` and what it hands out (sessions, commands, streams) live in ``_process``.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import IO, Any

import httpx

from . import _core as core
from . import _files, _localfs
from ._audit import Audit
from ._config import resolve_config
from ._core import DEFAULT_CREATE_TIMEOUT, DEFAULT_TIMEOUT, UploadData
from ._gitclient import Git
from ._images import Images
from ._models import (
    FileInfo,
    HealthInfo,
    Match,
    NetworkLog,
    NetworkPolicy,
    PreviewUrl,
    ReplaceResult,
    ResultList,
    SandboxInfo,
    UploadResult,
    labels_from_json,
)
from ._process import Command, ExecStream, LogStream, Process, Session
from ._secrets import Secrets
from ._snapshots import Snapshot, Snapshots, restore_request, snapshot_request
from ._tenants import Keys, Organizations
from ._version import __version__
from ._volumes import Volumes

__all__ = [
    "DEFAULT_CREATE_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "Command",
    "ExecStream",
    "FileSystem",
    "Git",
    "LogStream",
    "Network",
    "Process",
    "Sandbox",
    "Sandburg",
    "Session",
]


class Sandburg:
    """A connection to a sandburg server.

    ``api_url`` and ``api_key`` default to ``SANDBURG_API_URL`` / ``SANDBURG_API_KEY``, then to
    ``$SANDBURG_DATA_DIR/credentials.json``, and the URL finally to ``http://127.0.0.1:3000/api``.
    ``timeout`` (seconds, None for no limit) applies to ordinary requests; long calls take their own.
    ``transport`` replaces httpx's network transport, e.g. with ``httpx.MockTransport`` in tests.
    Use it as a context manager, or call :meth:`close`, to release its connections.
    """

    def __init__(
        self,
        api_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        config = resolve_config(api_url, api_key)
        self.api_url: str = config.api_url
        """The resolved base URL, e.g. ``http://127.0.0.1:3000/api``."""
        self._http = httpx.Client(
            base_url=config.api_url,
            headers=core.default_headers(config.api_key, __version__),
            timeout=timeout,
            transport=transport,
        )

    # ---------------------------------------------------------------------------------------- plumbing

    def _exchange(self, request: core.Request, upload: bytes | IO[bytes] | None = None) -> httpx.Response:
        """Send ``request`` and return its successful answer, read; or raise the mapped error."""
        try:
            response = self._http.send(core.build_http_request(self._http, request, upload))
        except core.TRANSPORT_ERRORS as exc:
            raise core.error_from_transport(exc) from exc
        core.raise_for_status(response.status_code, response.content)
        return response

    def _send(self, request: core.Request, upload: bytes | IO[bytes] | None = None) -> Any:
        """Send ``request`` and return its decoded JSON answer (None if empty), or raise the mapped error."""
        response = self._exchange(request, upload)
        return core.json_answer(response.status_code, response.content)

    @contextmanager
    def _stream(self, request: core.Request) -> Iterator[httpx.Response]:
        """Send ``request`` and yield the successful answer unread, for streaming its body."""
        try:
            response = self._http.send(core.build_http_request(self._http, request), stream=True)
            try:
                if not response.is_success:
                    core.raise_for_status(response.status_code, response.read())
                yield response
            finally:
                response.close()
        except core.TRANSPORT_ERRORS as exc:
            raise core.error_from_transport(exc) from exc

    def _sandbox(self, data: Any) -> Sandbox:
        return Sandbox(self, SandboxInfo.from_json(data))

    # ------------------------------------------------------------------------------------------ public

    def create(
        self,
        *,
        name: str | None = None,
        image: str | None = None,
        snapshot: str | None = None,
        isolation: str | None = None,
        cpu: int | None = None,
        memory: int | float | str | None = None,
        disk: int | float | str | None = None,
        env: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        network: str | Mapping[str, Any] | None = None,
        secrets: Iterable[str] | Mapping[str, str] | None = None,
        volumes: Iterable[Mapping[str, Any]] | None = None,
        auto_stop: int | None = None,
        auto_pause: int | None = None,
        auto_archive: int | None = None,
        auto_delete: int | None = None,
        ttl: int | None = None,
        wake_on_use: bool | None = None,
        timeout: float | None = DEFAULT_CREATE_TIMEOUT,
    ) -> Sandbox:
        """Create a sandbox and return it once it is ``started``.

        ``image`` names any image (built-in, built, pulled, a template); ``snapshot`` a state snapshot to start
        from (the same namespace: either works). ``isolation`` is ``"gvisor"`` (server default) or ``"container"``. ``memory`` and ``disk`` are GiB
        when numbers, or strings such as ``"512MiB"`` / ``"4GiB"`` (see :func:`parse_size_mib`); omitted
        values take the server's defaults. ``network`` is the egress policy: ``"none"`` (no network),
        ``"all"`` (anything), or a mapping ``{"allow": [...], "deny": [...]}`` of domain names,
        ``*.example.com`` wildcards and IPv4 addresses or CIDRs (``"mode"``, default ``"list"``, may be given
        too); omitted, the server's default policy applies. ``sandbox.network`` changes it later.
        ``secrets`` names secrets of the organization (``sb.secrets``) whose current values every process
        started through the toolbox gets as env vars: a list of names (the env var is the secret's name) or a
        mapping ``{env name: secret name}``; their values are masked as ``***`` in the output answered.
        ``volumes`` mounts volumes of the organization (``sb.volumes``): a list of ``{"name": volume name or id,
        "mount": "/absolute/path", "read_only": False, "subpath": "dir/in/volume"}`` (the last two optional).
        ``auto_stop`` (minutes idle, 0 = never), ``auto_pause`` (minutes idle, processes kept), ``auto_archive``
        and ``auto_delete`` (minutes stopped; ``auto_delete`` -1 = never, 0 = right after a stop), ``ttl``
        (minutes after creation, 0 = none) and ``wake_on_use`` (a toolbox call starts it when stopped) set its
        lifecycle (docs/lifecycle.md); omitted ones take the server's defaults.
        ``timeout`` is how long to wait for the server, in seconds. Raises ``ValueError`` for a malformed
        size or a ``network`` of the wrong shape before anything is sent.
        """
        request = core.create_request(
            name=name,
            image=image if snapshot is None else snapshot,
            isolation=isolation,
            cpu=cpu,
            memory=memory,
            disk=disk,
            env=env,
            labels=labels,
            network=network,
            timeout=timeout,
            secrets=secrets,
            volumes=volumes,
            lifecycle=core.lifecycle_body(
                auto_stop=auto_stop,
                auto_pause=auto_pause,
                auto_archive=auto_archive,
                auto_delete=auto_delete,
                ttl=ttl,
                wake_on_use=wake_on_use,
            ),
        )
        return self._sandbox(self._send(request))

    def get(self, id_or_name: str) -> Sandbox:
        """The sandbox with this id or name; raises :class:`SandboxNotFoundError` if there is none."""
        return self._sandbox(self._send(core.get_request(id_or_name)))

    def list(
        self,
        *,
        labels: Mapping[str, str] | None = None,
        state: str | Iterable[str] | None = None,
        name: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[Sandbox]:
        """Sandboxes matching every given filter, following the server's pages.

        ``labels`` must all match; ``state`` is one state or several (any matches); ``limit`` caps the
        number returned (default: all of them).
        """
        pager = core.SandboxPager(labels=labels, states=core.states_filter(state), name=name, limit=limit)
        while (request := pager.next_request()) is not None:
            pager.feed(self._send(request))
        return [Sandbox(self, info) for info in pager.items]

    @property
    def images(self) -> Images:
        """Images: build, pull, import, list, delete (docs/images.md)."""
        return Images(self)

    @property
    def snapshots(self) -> Snapshots:
        """State snapshots: list, get, delete, fork (docs/snapshots.md)."""
        return Snapshots(self)

    @property
    def secrets(self) -> Secrets:
        """Secrets: set, list, get (metadata), delete (docs/secrets.md)."""
        return Secrets(self)

    @property
    def audit(self) -> Audit:
        """The audit log: list, export (JSON lines), verify (docs/audit.md)."""
        return Audit(self)

    @property
    def volumes(self) -> Volumes:
        """Persistent encrypted volumes: create, list, get, delete (docs/volumes.md)."""
        return Volumes(self)

    @property
    def keys(self) -> Keys:
        """API keys: create (shown once), list, current, revoke (docs/tenants.md)."""
        return Keys(self)

    @property
    def organizations(self) -> Organizations:
        """Organizations, their quotas and usage (docs/tenants.md)."""
        return Organizations(self)

    def fork(
        self,
        snapshot: str,
        count: int = 1,
        *,
        names: Iterable[str] | None = None,
        isolation: str | None = None,
    ) -> builtins.list[Sandbox]:
        """``count`` new sandboxes from the state snapshot ``snapshot``, each independent of the others."""
        return self.snapshots.fork(snapshot, count, names=names, isolation=isolation)

    def health(self) -> HealthInfo:
        """The server's health and version."""
        return HealthInfo.from_json(self._send(core.health_request()))

    def close(self) -> None:
        """Close the underlying connections. The client cannot be used afterwards."""
        self._http.close()

    def __enter__(self) -> Sandburg:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Sandburg(api_url={self.api_url!r})"


class Sandbox(core.SandboxBase):
    """A sandbox: its last known :class:`SandboxInfo` fields plus the operations on it.

    Lifecycle calls update the fields in place from the server's answer; :meth:`refresh` re-reads them.
    Run commands through :attr:`process` and move files through :attr:`fs`.
    """

    process: Process
    """Runs commands in the sandbox."""
    fs: FileSystem
    """Reads and writes the sandbox's files."""
    git: Git
    """Runs git in the sandbox: clone, status, branches, commit, push, pull, ..."""
    network: Network
    """The sandbox's egress policy and network log."""

    def __init__(self, client: Sandburg, info: SandboxInfo) -> None:
        self._client = client
        self._update(info)
        self.process = Process(client, self)
        self.fs = FileSystem(client, self)
        self.git = Git(client, self)
        self.network = Network(client, self)

    def refresh(self) -> None:
        """Re-read the sandbox's fields (state, labels, ...) from the server."""
        self._apply(self._client._send(core.get_request(self.id)))

    def start(self, *, timeout: float | None = DEFAULT_CREATE_TIMEOUT) -> None:
        """Start a stopped sandbox, or resume a paused one, and wait until it runs (a no-op if it is already
        started)."""
        self._apply(self._client._send(core.start_request(self.id, timeout)))

    def pause(self) -> None:
        """Keep the sandbox's processes without running them; :meth:`start` resumes them where they were.
        gvisor: checkpointed to disk (no memory held); container: frozen in place (docs/snapshots.md)."""
        self._apply(self._client._send(core.pause_request(self.id)))

    def archive(self) -> None:
        """Archive a stopped sandbox: its files are kept as a read-only layer and its disk subvolumes released;
        :meth:`start` restores them (docs/lifecycle.md). Raises :class:`SandboxBusyError` if it is not stopped."""
        self._apply(self._client._send(core.archive_request(self.id)))

    def set_lifecycle(
        self,
        *,
        auto_stop: int | None = None,
        auto_pause: int | None = None,
        auto_archive: int | None = None,
        auto_delete: int | None = None,
        ttl: int | None = None,
        wake_on_use: bool | None = None,
    ) -> None:
        """Change the lifecycle settings given (minutes, as in :meth:`Sandburg.create`); the others are kept."""
        body = core.lifecycle_body(
            auto_stop=auto_stop,
            auto_pause=auto_pause,
            auto_archive=auto_archive,
            auto_delete=auto_delete,
            ttl=ttl,
            wake_on_use=wake_on_use,
        )
        self._apply(self._client._send(core.set_lifecycle_request(self.id, body)))

    def stop(self) -> None:
        """Stop the sandbox; its files are kept (a no-op if it is already stopped)."""
        self._apply(self._client._send(core.stop_request(self.id)))

    def delete(self) -> None:
        """Destroy the sandbox and its files; afterwards :attr:`state` is ``"destroyed"``."""
        self._apply(self._client._send(core.delete_request(self.id)))

    def set_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """Replace all of the sandbox's labels and return the labels the server stored."""
        self.labels = labels_from_json(self._client._send(core.set_labels_request(self.id, labels)))
        return self.labels

    def snapshot(self, name: str, *, memory: bool = False) -> Snapshot:
        """Save every file of the sandbox, its env and settings as the snapshot ``name``; the sandbox is frozen
        for the capture (milliseconds) and keeps running. ``memory=True`` (gvisor) would keep processes too."""
        data = self._client._send(snapshot_request(self.id, name, memory))
        return Snapshot(self._client, data)

    def restore(self, snapshot: str) -> None:
        """Roll the sandbox back to ``snapshot`` in place: same id, name and network policy; its files and env
        become the snapshot's, and a started sandbox is started again."""
        self._apply(self._client._send(restore_request(self.id, snapshot)))

    def snapshots(self) -> builtins.list[Snapshot]:
        """This sandbox's snapshots, oldest first."""
        return self._client.snapshots.list(sandbox=self.id)

    def preview_url(self, port: int) -> PreviewUrl:
        """The URL where ``port`` of the running sandbox is reachable over HTTP and WebSocket, and its token.

        The URL is on the sandburg server and takes no API key: each request carries the token instead, as
        the ``x-daytona-preview-token`` header (:attr:`PreviewUrl.headers`) or, in a browser, once as
        ``?token=`` (:attr:`PreviewUrl.authenticated_url`). Raises ``ValueError`` for a port outside 1-65535
        and :class:`SandboxNotRunningError` unless the sandbox is started.
        """
        return PreviewUrl.from_json(self._client._send(core.preview_url_request(self.id, port)), port)


class FileSystem:
    """Reads and writes files in a sandbox (``sandbox.fs``). Paths are absolute paths inside it.

    A path is a ``str``; a name that is not UTF-8 is a ``str`` holding its bytes as surrogate escapes (as
    ``os.fsdecode`` and the SDK's own answers give them), and reaches the sandbox as those exact bytes.
    """

    def __init__(self, client: Sandburg, sandbox: SandboxInfo) -> None:
        self._client, self._sandbox = client, sandbox

    def upload_file(self, data: UploadData, remote_path: str) -> UploadResult:
        """Write ``data`` to the file ``remote_path`` in the sandbox.

        ``data`` is bytes or a binary file object, which is streamed from its beginning. To send a
        local file by name use :meth:`upload_local`.
        """
        content = core.upload_content(data)
        request = _files.upload_request(self._sandbox.id, remote_path)
        return UploadResult.from_json(self._client._send(request, upload=content))

    def upload_local(self, local_path: str | os.PathLike[str], remote_path: str) -> UploadResult:
        """Stream the local file ``local_path`` to ``remote_path`` in the sandbox."""
        with open(local_path, "rb") as f:
            return self.upload_file(f, remote_path)

    def download_file(self, remote_path: str) -> bytes:
        """The whole content of ``remote_path``; prefer :meth:`download_to` for large files."""
        with self._client._stream(_files.download_request(self._sandbox.id, remote_path)) as response:
            return response.read()

    def download_to(self, remote_path: str, local_path: str | os.PathLike[str]) -> int:
        """Stream ``remote_path`` into the local file ``local_path`` and return the number of bytes.

        The data goes to a temporary file next to ``local_path``, renamed into place once complete, so a
        failed download never leaves a truncated file behind.
        """
        written = 0
        with _localfs.atomic_write(local_path) as out:
            request = _files.download_request(self._sandbox.id, remote_path)
            with self._client._stream(request) as response:
                for chunk in response.iter_bytes(core.CHUNK_SIZE):
                    out.write(chunk)
                    written += len(chunk)
        return written

    def list(self, path: str, *, depth: int | None = None) -> ResultList[FileInfo]:
        """The entries of the directory ``path``, sorted by name.

        With ``depth`` > 1 its subdirectories' entries too, down to that depth, each directory right before
        its entries (a symlinked directory is listed, not entered). The server stops at 100 000 entries:
        then the list's ``truncated`` is true.
        """
        response = self._client._exchange(_files.list_files_request(self._sandbox.id, path, depth))
        return _files.file_listing(core.json_answer(response.status_code, response.content), response.headers)

    def info(self, path: str) -> FileInfo:
        """Details of the file or directory ``path``; raises :class:`FileNotFoundInSandboxError`."""
        return FileInfo.from_json(self._client._send(_files.file_info_request(self._sandbox.id, path)))

    def find(self, path: str, pattern: str, *, regex: bool = False) -> ResultList[Match]:
        """The lines containing ``pattern`` in the text files under ``path`` (or in the file ``path``), like
        ``grep -rn``; binary files are skipped.

        ``pattern`` is a fixed string, or with ``regex=True`` a Python regular expression. The server stops
        at 10 000 matches: then the list's ``truncated`` is true.
        """
        request = _files.find_request(self._sandbox.id, path, pattern, regex)
        response = self._client._exchange(request)
        return _files.matches(core.json_answer(response.status_code, response.content), response.headers)

    def search(self, path: str, pattern: str) -> ResultList[str]:
        """The paths of the files under the directory ``path`` whose name matches the glob ``pattern`` at
        any depth (``"*.py"``); a pattern with a ``/`` matches the path relative to ``path``
        (``"src/**/*.ts"``). ``*``, ``?``, ``**``, ``[a-z]``, ``{a,b}``. At most 100 000: then the list's
        ``truncated`` is true.
        """
        response = self._client._exchange(_files.search_request(self._sandbox.id, path, pattern))
        return _files.search_result(
            core.json_answer(response.status_code, response.content), response.headers
        )

    def replace(self, files: Iterable[str], pattern: str, new_value: str) -> builtins.list[ReplaceResult]:
        """Replace every occurrence of the fixed string ``pattern`` by ``new_value`` in each of ``files``
        (one path alone is fine), and return one :class:`ReplaceResult` per file, in order.

        A file that fails (missing, binary, too large, ...) is reported in its result, not raised. A
        changed file is rewritten atomically, keeping its mode and owner.
        """
        request = _files.replace_request(self._sandbox.id, files, pattern, new_value)
        return _files.replace_results(self._client._send(request))

    def move(self, source: str, destination: str, *, overwrite: bool = False) -> None:
        """Rename ``source`` to ``destination`` (across file systems: copy, then delete).

        An existing ``destination`` raises :class:`FileExistsInSandboxError` unless ``overwrite=True``.
        """
        self._client._send(_files.move_request(self._sandbox.id, source, destination, overwrite))

    def chmod(self, path: str, mode: int | str) -> None:
        """Set the permission bits of ``path`` (a final symlink is followed): ``0o755``, or ``"755"``."""
        self._client._send(_files.chmod_request(self._sandbox.id, path, mode))

    def chown(self, path: str, owner: str | int | None = None, group: str | int | None = None) -> None:
        """Set the owner and/or group of ``path`` (a final symlink is followed).

        Each is a name from the sandbox's ``/etc/passwd`` / ``/etc/group`` or a numeric id; an unknown name
        raises :class:`BadRequestError`. Raises ``ValueError`` when neither is given.
        """
        self._client._send(_files.chown_request(self._sandbox.id, path, owner, group))

    def mkdir(self, path: str, mode: int | str = 0o755) -> None:
        """Create the directory ``path`` with exactly ``mode``, and its missing parents (like ``mkdir -p``).

        An existing directory is fine (its mode is kept); anything else there raises
        :class:`FileExistsInSandboxError`.
        """
        self._client._send(_files.mkdir_request(self._sandbox.id, path, mode))

    def delete(self, path: str, *, recursive: bool = False) -> None:
        """Delete the file, symlink (never its target) or directory ``path``.

        A directory that is not empty needs ``recursive=True`` (else :class:`ConflictError`, code
        ``DIRECTORY_NOT_EMPTY``); a recursive delete does not enter symlinked directories.
        """
        self._client._send(_files.delete_request(self._sandbox.id, path, recursive))


class Network:
    """A sandbox's egress policy and network log (``sandbox.network``).

    A policy is a ``mode``: ``"none"`` (no egress), ``"all"`` (any destination) or ``"list"`` (only what
    ``allow`` names); ``deny`` entries win over ``allow``. Entries are domain names (``pypi.org``),
    wildcards (``*.example.com``) and IPv4 addresses or CIDRs (``10.0.0.0/8``). Link-local and loopback
    addresses, other sandboxes and the host stay blocked in every mode. Changes take effect on the running
    sandbox at once, without a restart.
    """

    def __init__(self, client: Sandburg, sandbox: SandboxInfo) -> None:
        self._client, self._sandbox = client, sandbox

    def _keep(self, data: Any) -> NetworkPolicy:
        self._sandbox.network_policy = policy = NetworkPolicy.from_json(data)
        return policy

    def get(self) -> NetworkPolicy:
        """The sandbox's current policy (also stored in ``sandbox.network_policy``)."""
        return self._keep(self._client._send(core.get_network_request(self._sandbox.id)))

    def update(
        self, *, allow: Iterable[str] = (), deny: Iterable[str] = (), mode: str = "list"
    ) -> NetworkPolicy:
        """Replace the whole policy (entries not given are dropped, not kept) and return the stored one.

        It takes effect on the running sandbox at once, without a restart: new connections follow it (open
        ones are kept). Raises ``ValueError`` for an unknown ``mode`` or entries that are not a list of
        ``str`` before anything is sent, and :class:`BadRequestError` for entries the server rejects.
        """
        request = core.set_network_request(self._sandbox.id, allow=allow, deny=deny, mode=mode)
        return self._keep(self._client._send(request))

    def block_all(self) -> NetworkPolicy:
        """Cut all egress (mode ``"none"``) at once; replaces the policy, dropping its entries."""
        return self.update(mode="none")

    def allow_all(self) -> NetworkPolicy:
        """Allow egress to anywhere (mode ``"all"``) at once; replaces the policy, so no ``deny`` entries."""
        return self.update(mode="all")

    def log(self, *, limit: int = 100, since: int = 0, kinds: Iterable[str] | None = None) -> NetworkLog:
        """The sandbox's recent network records after the id ``since``, oldest first: the newest ``limit``.

        ``kinds`` keeps only some of ``"dns"``, ``"allow"``, ``"deny"``, ``"conn"`` (default: all). To follow
        the log, pass the answer's :attr:`NetworkLog.next_since` as the next call's ``since``.
        """
        request = core.network_log_request(self._sandbox.id, limit=limit, since=since, kinds=kinds)
        return NetworkLog.from_json(self._client._send(request), since)
