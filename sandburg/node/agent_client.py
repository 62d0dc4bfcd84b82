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
import json
import socket
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal

from ..agent import protocol as P
from .agent_endpoint import Endpoint, connect_nofollow, endpoint_of

__all__ = ["Endpoint", "connect_nofollow"]  # re-exported: callers connect through this module

StreamName = Literal["stdout", "stderr"]
DEFAULT_MAX_OUTPUT = 10 << 20
# Default caps of list results (the agent stops there and says truncated; more from an agent is refused)
LIST_LIMIT = 100_000
FIND_LIMIT = 10_000
SEARCH_LIMIT = 100_000
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


class Listing(builtins.list[dict[str, Any]]):
    """FileInfo dicts of a listing (a list, as before depth existed); `truncated` when the limit cut it short."""

    truncated: bool = False


@dataclass(frozen=True, slots=True)
class FileMatch:
    """A line of a file that matched `find`: its 1-based number and its text (at most 2 KiB, UTF-8 replaced)."""

    file: str
    line: int
    content: str


@dataclass(frozen=True, slots=True)
class FindResult:
    matches: builtins.list[FileMatch]
    truncated: bool


@dataclass(frozen=True, slots=True)
class SearchResult:
    files: builtins.list[str]
    truncated: bool


@dataclass(frozen=True, slots=True)
class ReplaceOutcome:
    """What `replace` did to one file: `error` says why when `success` is false."""

    file: str
    success: bool
    error: str | None
    replacements: int


class _Conn:
    __slots__ = ("reader", "writer", "loop", "__weakref__")

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
    data = json.dumps({k: v for k, v in args.items() if v is not None}, separators=(",", ":")).encode()
    if len(data) > P.MAX_PAYLOAD:  # the agent would drop the connection: say what is wrong instead
        raise AgentError("PAYLOAD_TOO_LARGE", f"the {op} request is larger than {P.MAX_PAYLOAD >> 20} MiB")
    return data


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
    """Client of the toolbox agent at `endpoint` (a socket path or an Endpoint); keeps up to `max_idle` idle
    connections."""

    def __init__(self, endpoint: str | Endpoint, max_idle: int = 4) -> None:
        self.endpoint = endpoint_of(endpoint)
        self.max_idle = max_idle
        self._idle: builtins.list[_Conn] = []
        self._all: weakref.WeakSet[_Conn] = weakref.WeakSet()  # in use too: close_threadsafe aborts them
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
            sock = self.endpoint.connect(timeout=5.0)
            sock.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=sock, limit=_STREAM_LIMIT)
        except OSError as exc:
            raise AgentUnavailable(f"cannot connect to the agent at {self.endpoint}: {exc}") from exc
        conn = _Conn(reader, writer)
        self._all.add(conn)
        return conn

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
            # a message may quote a non-UTF-8 path (lone surrogates): escape them, it becomes JSON and logs
            text = str(message).encode("utf-8", "backslashreplace").decode("utf-8")
            raise AgentError(code if isinstance(code, str) else "INTERNAL_ERROR", text)
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
        # Operations still running end with AgentUnavailable: the sandbox is stopping or gone. Over TCP nothing
        # else would tell (a dead gVisor netstack sends no FIN or reset).
        for conn in list(self._all):
            if conn not in idle and not conn.loop.is_closed():
                conn.loop.call_soon_threadsafe(conn.writer.transport.abort)

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

    async def open_deleted(self) -> builtins.list[str]:
        """Deleted files still held open on the host-served filesystems ("pid N: path"; at most 20)."""
        res = await self._call(_request("open_deleted"))
        files = _field(res, "files", builtins.list)
        return [str(f)[:4096] for f in files[:20]]

    def pty(
        self, *, cols: int = 80, rows: int = 24, cwd: str | None = None, env: dict[str, str] | None = None
    ) -> ExecStream:
        """Open an interactive login shell on a terminal; use like exec_stream (output arrives as "stdout").

        `write_stdin` types, `resize` changes the window, the iteration ends when the shell exits. Leaving the block
        early hangs up the terminal (SIGHUP, then SIGKILL)."""
        request = _request("pty", cols=cols, rows=rows, cwd=cwd, env=env)
        return ExecStream(self, request, None, 1 << 62)

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

    async def list(self, path: str, depth: int | None = None, *, limit: int = LIST_LIMIT) -> Listing:
        """FileInfo dicts of a directory's entries, sorted by name; with `depth` > 1 also of its subdirectories'
        (depth first, a directory right before its entries; symlinked directories are not entered).

        At most `limit` entries; `.truncated` says the listing was cut there.
        """
        items, res = await self._items(_request("list", path=path, depth=depth, limit=limit), limit)
        if not all(isinstance(e, dict) for e in items):
            raise AgentUnavailable("malformed result from the agent: entries")
        listing = Listing(items)
        listing.truncated = res.get("truncated") is True
        return listing

    async def stat(self, path: str) -> dict[str, Any]:
        """FileInfo of `path` (not following a final symlink): name, path, is_dir, size, mode, mtime, ..."""
        return _field(await self._call(_request("stat", path=path)), "info", dict)  # type: ignore[no-any-return]

    # -- file tree, search and replace -----------------------------------------------------------------------
    async def _items(self, request: bytes, limit: int) -> tuple[builtins.list[Any], dict[str, Any]]:
        """Run an op whose result streams as D frames of JSON arrays, an empty D, then R: (items, R)."""
        conn = await self._acquire()
        items: builtins.list[Any] = []
        try:
            conn.send(P.REQUEST, request)
            while True:
                ftype, payload = await conn.recv()
                if ftype != P.DATA:  # an error R can come without the end frame
                    break
                if not payload:
                    ftype, payload = await conn.recv()
                    break
                try:
                    batch = json.loads(payload)
                except ValueError:
                    batch = None
                if not isinstance(batch, builtins.list):
                    raise AgentUnavailable("malformed result from the agent: a D frame is not a JSON array")
                items.extend(batch)
                if len(items) > limit:
                    raise AgentUnavailable(f"the agent sent more than the {limit} items asked for")
        except BaseException:
            conn.abort()
            raise
        return items, self._finish(conn, ftype, payload)

    async def mkdir(self, path: str, mode: int | None = None, *, parents: bool = True) -> bool:
        """Create a directory with exactly `mode` (default 0o755); like `mkdir -p` unless `parents=False`.

        True if it was created, False if it already existed (FILE_EXISTS instead when `parents=False`).
        """
        req = _request("mkdir", path=path, mode=mode, parents=None if parents else False)
        return bool(_field(await self._call(req), "created", bool))

    async def delete(self, path: str, *, recursive: bool = False) -> None:
        """Delete a file, a symlink (never its target) or a directory; a non-empty one needs `recursive=True`
        (else DIRECTORY_NOT_EMPTY). A recursive delete does not enter symlinked directories."""
        await self._call(_request("delete", path=path, recursive=recursive or None))

    async def move(self, source: str, destination: str, *, overwrite: bool = False) -> None:
        """Rename `source` to `destination` (copy and delete across file systems); an existing destination is
        FILE_EXISTS unless `overwrite=True`."""
        await self._call(
            _request("move", source=source, destination=destination, overwrite=overwrite or None)
        )

    async def chmod(self, path: str, mode: int) -> None:
        """Set the permission bits (0..0o7777) of `path`, following a final symlink."""
        await self._call(_request("chmod", path=path, mode=mode))

    async def chown(self, path: str, owner: str | int | None = None, group: str | int | None = None) -> None:
        """Change the owner and/or group of `path` (names from the sandbox's /etc/passwd and /etc/group, or ids)."""
        await self._call(_request("chown", path=path, owner=owner, group=group))

    async def find(
        self, path: str, pattern: str, *, regex: bool = False, limit: int = FIND_LIMIT
    ) -> FindResult:
        """Lines containing `pattern` in the text files under `path` (grep -rn; binary files are skipped).

        `pattern` is a fixed string, or a Python regular expression over bytes with `regex=True`.
        """
        req = _request("find", path=path, pattern=pattern, regex=regex or None, limit=limit)
        items, res = await self._items(req, limit)
        try:
            matches = [
                FileMatch(_field(m, "file", str), _field(m, "line", int), _field(m, "content", str))
                for m in items
            ]
        except (AttributeError, TypeError):
            raise AgentUnavailable("malformed result from the agent: matches") from None
        return FindResult(matches, res.get("truncated") is True)

    async def search(self, path: str, pattern: str, *, limit: int = SEARCH_LIMIT) -> SearchResult:
        """Paths of the files under `path` whose name (or, for a pattern with a `/`, relative path) matches the
        glob `pattern` (`*`, `?`, `**`, `[...]`, `{a,b}`)."""
        items, res = await self._items(_request("search", path=path, pattern=pattern, limit=limit), limit)
        if not all(isinstance(f, str) for f in items):
            raise AgentUnavailable("malformed result from the agent: files")
        return SearchResult(items, res.get("truncated") is True)

    async def replace(
        self, files: builtins.list[str], pattern: str, new_value: str
    ) -> builtins.list[ReplaceOutcome]:
        """Replace every occurrence of the fixed string `pattern` in each file (written atomically, mode kept).

        One outcome per file, in order. Many files go in several requests (a request frame is at most 1 MiB).
        """
        budget = P.MAX_PAYLOAD // 2 - len(json.dumps([pattern, new_value]))
        batches: builtins.list[builtins.list[str]] = []
        size = budget
        for f in files:
            n = len(json.dumps(f)) + 1
            if size + n > budget:
                batches.append([])
                size = 0
            batches[-1].append(f)
            size += n
        out: builtins.list[ReplaceOutcome] = []
        for batch in batches:
            req = _request("replace", files=batch, pattern=pattern, new_value=new_value)
            items, _res = await self._items(req, len(batch))
            if len(items) != len(batch):
                raise AgentUnavailable("malformed result from the agent: not one replace result per file")
            for r in items:
                if not isinstance(r, dict):
                    raise AgentUnavailable("malformed result from the agent: replace")
                error, count = r.get("error"), r.get("replacements", 0)
                if not isinstance(error, str | None) or not isinstance(count, int) or isinstance(count, bool):
                    raise AgentUnavailable("malformed result from the agent: replace")
                out.append(ReplaceOutcome(_field(r, "file", str), _field(r, "success", bool), error, count))
        return out


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

    async def resize(self, cols: int, rows: int) -> None:
        """Resize a terminal (streams from AgentClient.pty)."""
        self._running().send(P.SIGNAL, json.dumps({"resize": [int(cols), int(rows)]}).encode())

    def _running(self) -> _Conn:
        if self._conn is None:
            raise RuntimeError("the command is not running (not entered, or already finished)")
        return self._conn

    def _abort(self) -> None:
        if self._conn is not None:
            self._conn.abort()
            self._conn = None


def wait_ready(endpoint: str | Endpoint, timeout: float) -> dict[str, Any]:
    """Block until the agent at `endpoint` answers a ping (retrying every ~1 ms); its ping result.

    Raises AgentUnavailable after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    ping = P.frame(P.REQUEST, _request("ping"))
    where = endpoint_of(endpoint)
    while (remaining := deadline - time.monotonic()) > 0:
        sock: socket.socket | None = None
        try:
            sock = where.connect(timeout=remaining)
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
    raise AgentUnavailable(f"the agent at {where} did not answer within {timeout:g} s: {last}")
