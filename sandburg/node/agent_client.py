"""Host side of the toolbox agent protocol (docs/agent-protocol.md): an asyncio client for one sandbox's agent.

```
AgentClientError
├── AgentError          the agent answered {ok: false}: .code (a sandburg._codes code) and .message
└── AgentUnavailable    cannot connect, the connection dropped, or the agent broke the protocol
```

The agent runs inside the sandbox, so everything it sends is untrusted: frames are bounded by the protocol's
1 MiB, results are type-checked, and command output is capped here as well as in the agent.

Connections are pooled: one operation at a time per connection, and a connection goes back to the pool only after
a clean `R`. A connection left in the middle of an operation (cancelled, abandoned generator, early exit from an
`exec_stream` block) is aborted, never reused; for a running command that makes the agent kill it.
A client belongs to the event loop it is used in (pooled connections from another loop are dropped).
"""

from __future__ import annotations

import asyncio
import builtins
import errno
import json
import os
import socket
import stat
import time
from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal

from ..agent import protocol as P

StreamName = Literal["stdout", "stderr"]
DEFAULT_MAX_OUTPUT = 10 << 20
# Beyond an exec's own timeout, how long to wait for the agent's answer before giving up on it.
_EXEC_GRACE = 10.0
_STREAM_LIMIT = 2 * P.MAX_PAYLOAD


class AgentClientError(Exception):
    """Root of the agent client's exceptions."""


class AgentError(AgentClientError):
    """The agent refused or failed the operation: an `R {ok: false, code, message}`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class AgentUnavailable(AgentClientError):
    """No answer from the agent: cannot connect, the connection dropped, or it broke the protocol."""


@dataclass(frozen=True, slots=True)
class ExecResult:
    """How a command ended. `exit_code` is 128+N for a death by signal N (137 on timeout)."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    truncated: bool
    duration_ms: float


class _Conn:
    __slots__ = ("reader", "writer", "loop")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.loop = asyncio.get_running_loop()

    def send(self, ftype: bytes, payload: bytes = b"") -> None:
        self.writer.write(P.frame(ftype, payload))

    async def recv(self) -> tuple[bytes, bytes]:
        try:
            ftype, size = P.parse_header(await self.reader.readexactly(P.HEADER_SIZE))
            return ftype, (await self.reader.readexactly(size) if size else b"")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise AgentUnavailable("the agent closed the connection") from exc
        except P.ProtocolError as exc:
            raise AgentUnavailable(f"protocol error from the agent: {exc}") from exc

    def usable(self) -> bool:
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and self.loop is asyncio.get_running_loop()
        )

    def abort(self) -> None:
        if not self.loop.is_closed():
            self.writer.transport.abort()


def _request(op: str, **args: Any) -> bytes:
    args["op"] = op
    return json.dumps({k: v for k, v in args.items() if v is not None}, separators=(",", ":")).encode()


def _send_chunks(conn: _Conn, ftype: bytes, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    for i in range(0, len(view), P.MAX_PAYLOAD):  # never an empty frame: for D and I that means "the end"
        conn.send(ftype, bytes(view[i : i + P.MAX_PAYLOAD]))


def _decode_result(payload: bytes) -> dict[str, Any]:
    try:
        res = json.loads(payload)
    except ValueError as exc:
        raise AgentUnavailable(f"malformed result from the agent: {exc}") from None
    if not isinstance(res, dict) or not isinstance(res.get("ok"), bool):
        raise AgentUnavailable("malformed result from the agent: no 'ok'")
    return res


def _field(res: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = res.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise AgentUnavailable(f"malformed result from the agent: {name!r}")
    return value


class AgentClient:
    """Client of the toolbox agent listening on `socket_path`; keeps up to `max_idle` idle connections."""

    def __init__(self, socket_path: str, max_idle: int = 4) -> None:
        self.socket_path = socket_path
        self.max_idle = max_idle
        self._idle: builtins.list[_Conn] = []
        self._closed = False

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- connections -----------------------------------------------------------------------------------------
    async def _acquire(self) -> _Conn:
        if self._closed:
            raise RuntimeError("AgentClient is closed")
        while self._idle:
            conn = self._idle.pop()
            if conn.usable():
                return conn
            conn.abort()
        try:
            sock = connect_nofollow(self.socket_path, timeout=5.0)
            sock.setblocking(False)
            reader, writer = await asyncio.open_unix_connection(sock=sock, limit=_STREAM_LIMIT)
        except OSError as exc:
            raise AgentUnavailable(f"cannot connect to the agent at {self.socket_path}: {exc}") from exc
        return _Conn(reader, writer)

    def _release(self, conn: _Conn) -> None:
        if not self._closed and len(self._idle) < self.max_idle and conn.usable():
            self._idle.append(conn)
        else:
            conn.writer.close()

    def _finish(self, conn: _Conn, ftype: bytes, payload: bytes) -> dict[str, Any]:
        """End an operation on its R frame: pool the connection, raise AgentError for {ok: false}."""
        if ftype != P.RESULT:
            conn.abort()
            raise AgentUnavailable(f"protocol error from the agent: unexpected {ftype!r} frame")
        try:
            res = _decode_result(payload)
        except AgentUnavailable:
            conn.abort()
            raise
        self._release(conn)
        if not res["ok"]:
            code, message = res.get("code"), res.get("message")
            raise AgentError(code if isinstance(code, str) else "INTERNAL_ERROR", str(message))
        return res

    async def _call(self, request: bytes) -> dict[str, Any]:
        conn = await self._acquire()
        try:
            conn.send(P.REQUEST, request)
            ftype, payload = await conn.recv()
        except BaseException:
            conn.abort()
            raise
        return self._finish(conn, ftype, payload)

    def close_threadsafe(self) -> None:
        """Close the idle connections from any thread (each on its own event loop); the client is unusable after.

        Never just drop a client with pooled connections: a transport collected by the GC while its socket object
        is still attached closes the same fd number twice, and the second close can hit a file opened meanwhile
        by another thread (seen as SQLite's "disk I/O error").
        """
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            if not conn.loop.is_closed():
                conn.loop.call_soon_threadsafe(conn.writer.close)

    async def close(self) -> None:
        """Close the idle connections; the client cannot be used afterwards."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            if conn.loop is asyncio.get_running_loop():
                conn.writer.close()
                try:
                    await conn.writer.wait_closed()
                except OSError:
                    pass
            else:
                conn.abort()

    # -- operations ------------------------------------------------------------------------------------------
    async def ping(self) -> dict[str, Any]:
        """`{ok, version, pid}` of the agent."""
        return await self._call(_request("ping"))

    def exec_stream(
        self,
        command: str | None = None,
        *,
        argv: builtins.list[str] | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        max_output: int | None = None,
        stdin: bool = False,
    ) -> ExecStream:
        """Start a command and stream its output; use as `async with client.exec_stream(...) as proc:`.

        Iterate `proc` for `("stdout" | "stderr", bytes)` chunks as they come; when the iteration ends,
        `proc.result` is the ExecResult (its stdout/stderr are empty: the bytes were streamed). With
        `stdin=True`, feed the command with `proc.write_stdin()` / `proc.close_stdin()`. Leaving the block before
        the end kills the command. `timeout` (seconds) makes the agent kill the command's process group.
        """
        request = _request(
            "exec", command=command, argv=argv, cwd=cwd, env=env, timeout=timeout, max_output=max_output,
            stdin=stdin or None,
        )  # fmt: skip
        deadline = None if timeout is None else timeout + _EXEC_GRACE
        cap = DEFAULT_MAX_OUTPUT if max_output is None else max_output
        return ExecStream(self, request, deadline, cap)

    async def exec(
        self,
        command: str | None = None,
        *,
        argv: builtins.list[str] | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        max_output: int | None = None,
        stdin: bytes | None = None,
    ) -> ExecResult:
        """Run `command` through the sandbox's shell (or `argv` directly) and collect its output.

        `env` is merged over the sandbox's environment; `stdin` bytes are fed to the command (else /dev/null);
        at most `max_output` bytes (default 10 MiB) are kept per stream, then `truncated` is set. Raises
        AgentError (e.g. FILE_NOT_FOUND for a missing cwd or program) and AgentUnavailable.
        """
        out = {"stdout": bytearray(), "stderr": bytearray()}
        async with self.exec_stream(
            command,
            argv=argv,
            cwd=cwd,
            env=env,
            timeout=timeout,
            max_output=max_output,
            stdin=stdin is not None,
        ) as proc:
            if stdin is not None:
                # no drain: the transport flushes it while we read the output (waiting for the agent to take all
                # stdin first would deadlock on a command that writes much before it reads everything)
                _send_chunks(proc._running(), P.STDIN, stdin)
                await proc.close_stdin()
            async for name, chunk in proc:
                out[name] += chunk
        return replace(proc.result, stdout=bytes(out["stdout"]), stderr=bytes(out["stderr"]))

    async def write_file(
        self, path: str, data: bytes | AsyncIterable[bytes], mode: int | None = None, *, mkdirs: bool = True
    ) -> int:
        """Write a file atomically (a temp file renamed over `path`); returns its size.

        `data` is bytes or an async iterable of chunks. Missing parent directories are created unless
        `mkdirs=False`; `mode` defaults to 0o644.
        """
        conn = await self._acquire()
        try:
            conn.send(
                P.REQUEST, _request("write_file", path=path, mode=mode, mkdirs=None if mkdirs else False)
            )
            if isinstance(data, (bytes, bytearray, memoryview)):
                _send_chunks(conn, P.DATA, data)
                await conn.writer.drain()
            else:
                async for chunk in data:
                    _send_chunks(conn, P.DATA, chunk)
                    await conn.writer.drain()
            conn.send(P.DATA)
            ftype, payload = await conn.recv()
        except BaseException:
            conn.abort()  # mid-upload: the agent sees the connection drop and removes its temp file
            raise
        return int(_field(self._finish(conn, ftype, payload), "size", int))

    async def read_file(self, path: str) -> AsyncGenerator[bytes, None]:
        """Stream a file's bytes. An error (FILE_NOT_FOUND, IS_A_DIRECTORY, ...) is raised before any chunk.

        Stopping early drops the connection; `aclose()` the generator to do so at once rather than at its GC.
        """
        conn = await self._acquire()
        finished = False
        try:
            conn.send(P.REQUEST, _request("read_file", path=path))
            while True:
                ftype, payload = await conn.recv()
                if ftype == P.DATA and payload:
                    yield payload
                    continue
                if ftype == P.DATA:  # the end of the data; the result follows
                    ftype, payload = await conn.recv()
                finished = True
                self._finish(conn, ftype, payload)
                return
        finally:
            if not finished:
                conn.abort()

    async def list(self, path: str) -> builtins.list[dict[str, Any]]:
        """FileInfo dicts of a directory's entries, sorted by name."""
        entries = _field(await self._call(_request("list", path=path)), "entries", builtins.list)
        if not all(isinstance(e, dict) for e in entries):
            raise AgentUnavailable("malformed result from the agent: 'entries'")
        return entries  # type: ignore[no-any-return]

    async def stat(self, path: str) -> dict[str, Any]:
        """FileInfo of `path` (not following a final symlink): name, path, is_dir, size, mode, mtime, ..."""
        return _field(await self._call(_request("stat", path=path)), "info", dict)  # type: ignore[no-any-return]


class ExecStream:
    """A command running in the sandbox (see AgentClient.exec_stream)."""

    def __init__(self, client: AgentClient, request: bytes, deadline: float | None, cap: int) -> None:
        self._client = client
        self._request = request
        self._timeout = deadline
        self._deadline: float | None = None
        self._cap = cap
        self._seen = {"stdout": 0, "stderr": 0}
        self._truncated = False
        self._conn: _Conn | None = None
        self._result: ExecResult | None = None

    async def __aenter__(self) -> ExecStream:
        self._conn = await self._client._acquire()
        self._conn.send(P.REQUEST, self._request)
        if self._timeout is not None:
            self._deadline = asyncio.get_running_loop().time() + self._timeout
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._conn is not None:  # still running: dropping the connection makes the agent kill it
            self._conn.abort()
            self._conn = None

    def __aiter__(self) -> ExecStream:
        return self

    async def __anext__(self) -> tuple[StreamName, bytes]:
        while self._result is None:
            conn = self._running()
            try:
                async with asyncio.timeout_at(self._deadline):
                    ftype, payload = await conn.recv()
            except TimeoutError:
                self._abort()
                raise AgentUnavailable("the agent did not end the command after its timeout") from None
            except BaseException:
                self._abort()
                raise
            if ftype == P.RESULT:
                self._conn = None
                res = self._client._finish(conn, ftype, payload)
                self._result = ExecResult(
                    exit_code=_field(res, "exit_code", int), stdout=b"", stderr=b"",
                    timed_out=_field(res, "timed_out", bool), truncated=_field(res, "truncated", bool) or self._truncated,
                    duration_ms=float(_field(res, "duration_ms", (int, float))),
                )  # fmt: skip
                raise StopAsyncIteration
            if ftype == P.STDOUT or ftype == P.STDERR:
                name: StreamName = "stdout" if ftype == P.STDOUT else "stderr"
                room = self._cap - self._seen[name]  # an agent that ignores max_output cannot flood the host
                if len(payload) > room:
                    payload, self._truncated = payload[: max(room, 0)], True
                if payload:
                    self._seen[name] += len(payload)
                    return name, payload
                continue
            self._abort()
            raise AgentUnavailable(f"protocol error from the agent: unexpected {ftype!r} frame during exec")
        raise StopAsyncIteration

    @property
    def result(self) -> ExecResult:
        """How the command ended; available once the iteration has finished."""
        if self._result is None:
            raise RuntimeError("the command has not finished (iterate the stream to its end first)")
        return self._result

    async def write_stdin(self, data: bytes) -> None:
        """Send bytes to the command's stdin (exec_stream(..., stdin=True)); waits while the agent is behind.

        The agent stops taking stdin while the command does not read it: a command that must write its output
        before it reads more needs the output consumed concurrently (another task), or this waits forever.
        """
        _send_chunks(self._running(), P.STDIN, data)
        await self._running().writer.drain()

    async def close_stdin(self) -> None:
        """Close the command's stdin (it reads EOF)."""
        self._running().send(P.STDIN)

    async def send_signal(self, signum: int) -> None:
        """Send signal `signum` to the command's process group."""
        self._running().send(P.SIGNAL, json.dumps({"signal": int(signum)}).encode())

    def _running(self) -> _Conn:
        if self._conn is None:
            raise RuntimeError("the command is not running (not entered, or already finished)")
        return self._conn

    def _abort(self) -> None:
        if self._conn is not None:
            self._conn.abort()
            self._conn = None


def wait_ready(socket_path: str, timeout: float) -> dict[str, Any]:
    """Block until the agent at `socket_path` answers a ping (retrying every ~1 ms); its ping result.

    Raises AgentUnavailable after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    ping = P.frame(P.REQUEST, _request("ping"))
    while (remaining := deadline - time.monotonic()) > 0:
        sock: socket.socket | None = None
        try:
            sock = connect_nofollow(socket_path, timeout=remaining)
            sock.sendall(ping)
            frame = P.FrameReader(sock).read()
            if frame is not None and frame[0] == P.RESULT:
                res = _decode_result(frame[1])
                if res["ok"]:
                    return res
            last = AgentUnavailable(f"unexpected answer to ping: {frame!r}")
        except (OSError, P.ProtocolError, AgentUnavailable) as exc:
            last = exc
        finally:
            if sock is not None:
                sock.close()
        time.sleep(0.001)
    raise AgentUnavailable(f"the agent at {socket_path} did not answer within {timeout:g} s: {last}")


def connect_nofollow(path: str, timeout: float) -> socket.socket:
    """Connect to the Unix socket at `path`, refusing anything that is not a socket there (e.g. a symlink).

    The directory holding the agent's socket is writable from inside the sandbox: a process there could replace
    the socket with a symlink to some host socket. Opening the path with O_PATH|O_NOFOLLOW, checking that it is a
    socket, and connecting through /proc/self/fd/N makes the host talk to that very inode or to nothing.
    """
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise OSError(errno.ENOTSOCK, f"{path} is not a socket")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(timeout, 0.001))
            sock.connect(f"/proc/self/fd/{fd}")
        except BaseException:
            sock.close()
            raise
        return sock
    finally:
        os.close(fd)
