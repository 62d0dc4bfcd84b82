"""The asynchronous client: a thin I/O shell over ``sandburg._core`` and ``httpx.AsyncClient``.

It mirrors ``sandburg._client`` name for name: every public method has the sync one's signature and
docstring (``Async``-prefixed types aside) and is ``async`` where the sync one does I/O;
tests/unit/test_sdk_parity.py fails when the two drift. Request building, answer parsing and error mapping
all live in ``_core`` / ``_models``, so a method here only awaits the sending.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import IO, Any

import httpx

from . import _core as core
from . import _localfs
from ._config import resolve_config
from ._core import DEFAULT_CREATE_TIMEOUT, DEFAULT_TIMEOUT, UploadData
from ._models import (
    ExecResult,
    FileInfo,
    HealthInfo,
    SandboxInfo,
    UploadResult,
    file_list_from_json,
    labels_from_json,
)
from ._version import __version__

__all__ = ["AsyncFileSystem", "AsyncProcess", "AsyncSandbox", "AsyncSandburg"]


class AsyncSandburg:
    """An asynchronous connection to a sandburg server: :class:`Sandburg` with ``await``.

    Every method of :class:`Sandburg` is here with the same parameters, and is a coroutine. ``transport``
    is an ``httpx.AsyncBaseTransport`` (``httpx.MockTransport`` works for both clients). Use it as an
    ``async with`` context manager, or ``await`` :meth:`close`, to release its connections. Uploads and
    downloads stream; the local file is read and written in chunks on the event loop's thread, as httpx
    itself does for uploads.
    """

    def __init__(
        self,
        api_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        config = resolve_config(api_url, api_key)
        self.api_url: str = config.api_url
        """The resolved base URL, e.g. ``http://127.0.0.1:3000/api``."""
        self._http = httpx.AsyncClient(
            base_url=config.api_url,
            headers=core.default_headers(config.api_key, __version__),
            timeout=timeout,
            transport=transport,
        )

    # ---------------------------------------------------------------------------------------- plumbing

    async def _send(self, request: core.Request, upload: bytes | IO[bytes] | None = None) -> Any:
        """Send ``request`` and return its decoded JSON answer, or raise the mapped error."""
        try:
            response = await self._http.send(core.build_http_request(self._http, request, upload))
        except core.TRANSPORT_ERRORS as exc:
            raise core.error_from_transport(exc) from exc
        return core.json_answer(response.status_code, response.content)

    @asynccontextmanager
    async def _stream(self, request: core.Request) -> AsyncIterator[httpx.Response]:
        """Send ``request`` and yield the successful answer unread, for streaming its body."""
        try:
            response = await self._http.send(core.build_http_request(self._http, request), stream=True)
            try:
                if not response.is_success:
                    core.raise_for_status(response.status_code, await response.aread())
                yield response
            finally:
                await response.aclose()
        except core.TRANSPORT_ERRORS as exc:
            raise core.error_from_transport(exc) from exc

    def _sandbox(self, data: Any) -> AsyncSandbox:
        return AsyncSandbox(self, SandboxInfo.from_json(data))

    # ------------------------------------------------------------------------------------------ public

    async def create(
        self,
        *,
        name: str | None = None,
        image: str | None = None,
        isolation: str | None = None,
        cpu: int | None = None,
        memory: int | float | str | None = None,
        disk: int | float | str | None = None,
        env: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        timeout: float | None = DEFAULT_CREATE_TIMEOUT,
    ) -> AsyncSandbox:
        """Create a sandbox and return it once it is ``started``.

        ``isolation`` is ``"gvisor"`` (server default) or ``"container"``. ``memory`` and ``disk`` are GiB
        when numbers, or strings such as ``"512MiB"`` / ``"4GiB"`` (see :func:`parse_size_mib`); omitted
        values take the server's defaults. ``timeout`` is how long to wait for the server, in seconds.
        Raises ``ValueError`` for a malformed size before anything is sent.
        """
        request = core.create_request(
            name=name,
            image=image,
            isolation=isolation,
            cpu=cpu,
            memory=memory,
            disk=disk,
            env=env,
            labels=labels,
            timeout=timeout,
        )
        return self._sandbox(await self._send(request))

    async def get(self, id_or_name: str) -> AsyncSandbox:
        """The sandbox with this id or name; raises :class:`SandboxNotFoundError` if there is none."""
        return self._sandbox(await self._send(core.get_request(id_or_name)))

    async def list(
        self,
        *,
        labels: Mapping[str, str] | None = None,
        state: str | Iterable[str] | None = None,
        name: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[AsyncSandbox]:
        """Sandboxes matching every given filter, following the server's pages.

        ``labels`` must all match; ``state`` is one state or several (any matches); ``limit`` caps the
        number returned (default: all of them).
        """
        pager = core.SandboxPager(labels=labels, states=core.states_filter(state), name=name, limit=limit)
        while (request := pager.next_request()) is not None:
            pager.feed(await self._send(request))
        return [AsyncSandbox(self, info) for info in pager.items]

    async def health(self) -> HealthInfo:
        """The server's health and version."""
        return HealthInfo.from_json(await self._send(core.health_request()))

    async def close(self) -> None:
        """Close the underlying connections. The client cannot be used afterwards."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncSandburg:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncSandburg(api_url={self.api_url!r})"


class AsyncSandbox(core.SandboxBase):
    """A sandbox of an :class:`AsyncSandburg`: :class:`Sandbox` with ``await``.

    Its fields are the last known :class:`SandboxInfo`, updated in place by the lifecycle coroutines;
    :meth:`refresh` re-reads them. Run commands through :attr:`process` and move files through :attr:`fs`.
    """

    process: AsyncProcess
    """Runs commands in the sandbox."""
    fs: AsyncFileSystem
    """Reads and writes the sandbox's files."""

    def __init__(self, client: AsyncSandburg, info: SandboxInfo) -> None:
        self._client = client
        self._update(info)
        self.process = AsyncProcess(client, self)
        self.fs = AsyncFileSystem(client, self)

    async def refresh(self) -> None:
        """Re-read the sandbox's fields (state, labels, ...) from the server."""
        self._apply(await self._client._send(core.get_request(self.id)))

    async def start(self, *, timeout: float | None = DEFAULT_CREATE_TIMEOUT) -> None:
        """Start a stopped sandbox and wait until it runs (a no-op if it is already started)."""
        self._apply(await self._client._send(core.start_request(self.id, timeout)))

    async def stop(self) -> None:
        """Stop the sandbox; its files are kept (a no-op if it is already stopped)."""
        self._apply(await self._client._send(core.stop_request(self.id)))

    async def delete(self) -> None:
        """Destroy the sandbox and its files; afterwards :attr:`state` is ``"destroyed"``."""
        self._apply(await self._client._send(core.delete_request(self.id)))

    async def set_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """Replace all of the sandbox's labels and return the labels the server stored."""
        self.labels = labels_from_json(await self._client._send(core.set_labels_request(self.id, labels)))
        return self.labels


class AsyncProcess:
    """Runs commands in a sandbox (``sandbox.process``) — :class:`Process` with ``await``."""

    def __init__(self, client: AsyncSandburg, sandbox: SandboxInfo) -> None:
        self._client, self._sandbox = client, sandbox

    async def exec(
        self,
        command: str,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run a shell command line and wait for it to finish.

        ``cwd`` defaults to the sandbox's working directory, ``env`` adds variables to the sandbox's.
        After ``timeout`` seconds the server kills the command and :class:`ExecTimeoutError` is raised;
        without one, the server's own limit applies. A non-zero exit code is not an error: check
        :attr:`ExecResult.exit_code`.
        """
        request = core.exec_request(self._sandbox.id, command, cwd=cwd, env=env, timeout=timeout)
        return ExecResult.from_json(await self._client._send(request))


class AsyncFileSystem:
    """Reads and writes files in a sandbox (``sandbox.fs``) — :class:`FileSystem` with ``await``."""

    def __init__(self, client: AsyncSandburg, sandbox: SandboxInfo) -> None:
        self._client, self._sandbox = client, sandbox

    async def upload_file(self, data: UploadData, remote_path: str) -> UploadResult:
        """Write ``data`` to the file ``remote_path`` in the sandbox.

        ``data`` is bytes or a binary file object, which is streamed from its beginning. To send a
        local file by name use :meth:`upload_local`.
        """
        content = core.upload_content(data)
        request = core.upload_request(self._sandbox.id, remote_path)
        return UploadResult.from_json(await self._client._send(request, upload=content))

    async def upload_local(self, local_path: str | os.PathLike[str], remote_path: str) -> UploadResult:
        """Stream the local file ``local_path`` to ``remote_path`` in the sandbox."""
        with open(local_path, "rb") as f:
            return await self.upload_file(f, remote_path)

    async def download_file(self, remote_path: str) -> bytes:
        """The whole content of ``remote_path``; prefer :meth:`download_to` for large files."""
        async with self._client._stream(core.download_request(self._sandbox.id, remote_path)) as response:
            return await response.aread()

    async def download_to(self, remote_path: str, local_path: str | os.PathLike[str]) -> int:
        """Stream ``remote_path`` into the local file ``local_path`` and return the number of bytes.

        The data goes to a temporary file next to ``local_path``, renamed into place once complete, so a
        failed download never leaves a truncated file behind.
        """
        written = 0
        with _localfs.atomic_write(local_path) as out:
            request = core.download_request(self._sandbox.id, remote_path)
            async with self._client._stream(request) as response:
                async for chunk in response.aiter_bytes(core.CHUNK_SIZE):
                    out.write(chunk)
                    written += len(chunk)
        return written

    async def list(self, path: str) -> builtins.list[FileInfo]:
        """The entries of the directory ``path``."""
        return file_list_from_json(await self._client._send(core.list_files_request(self._sandbox.id, path)))

    async def info(self, path: str) -> FileInfo:
        """Details of the file or directory ``path``; raises :class:`FileNotFoundInSandboxError`."""
        return FileInfo.from_json(await self._client._send(core.file_info_request(self._sandbox.id, path)))
