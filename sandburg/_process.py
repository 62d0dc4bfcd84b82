"""``sandbox.process`` of the sync client and what it hands out: sessions, their commands, streamed output.

A thin I/O shell like ``sandburg._client``: requests and models come from ``sandburg._sessions``, frames and
errors of the WebSockets from ``sandburg._ws``; ``sandburg._async_process`` mirrors it name for name.
WebSockets are opened with ``websockets.sync.client`` and the client's own API key.
"""

from __future__ import annotations

import builtins
import json
import threading
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, overload

from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import ClientConnection, connect

from . import _core as core
from . import _sessions as S
from . import _ws
from ._models import ExecResult, SandboxInfo
from ._sessions import CommandInfo, ExecStreamResult, Logs, OutputChunk, SessionCommandResult, SessionInfo

if TYPE_CHECKING:
    from ._client import Sandburg

__all__ = ["Command", "ExecStream", "LogStream", "Process", "Session"]


def _connect(client: Sandburg, path: str, params: dict[str, Any] | None = None) -> ClientConnection:
    url = _ws.ws_url(client.api_url, path, params)
    try:
        opened = connect(url, **_ws.connect_options(client._http.headers, client._http.timeout))
    except (WebSocketException, OSError) as exc:
        raise _ws.connect_error(exc) from exc
    # entered as the context manager that websockets >= 17.1 asks for; close() is what leaving it does
    ws: ClientConnection = opened.__enter__()
    return ws


def _close_info(exc: ConnectionClosed) -> tuple[int | None, str]:
    return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd is not None else (None, "")


class Process:
    """Runs commands in a sandbox (``sandbox.process``)."""

    def __init__(self, client: Sandburg, sandbox: SandboxInfo) -> None:
        self._client, self._sandbox = client, sandbox

    def exec(
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
        return ExecResult.from_json(self._client._send(request))

    def exec_stream(
        self,
        command: str,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        stdin: bool = False,
    ) -> ExecStream:
        """Run a shell command line and stream its output as it is written (see :class:`ExecStream`).

        Nothing is sent yet: the command starts when the stream is entered (``with``), iterated, or sent
        input or a signal. ``cwd``, ``env`` and ``timeout`` are as for :meth:`exec`, except that a timeout
        ends the stream with ``result.timed_out`` rather than raising. ``stdin=True`` gives the command a
        stdin fed by :meth:`ExecStream.send_input` (else it reads nothing).
        """
        message = S.exec_stream_message(command, cwd=cwd, env=env, timeout=timeout, stdin=stdin)
        return ExecStream(self._client, S.exec_stream_path(self._sandbox.id), message)

    def create_session(self, session_id: str) -> Session:
        """Start a session: a shell that keeps its state (variables, working directory) between commands.

        Raises :class:`SessionExistsError` if the sandbox already has a session with this id.
        """
        self._client._send(S.create_session_request(self._sandbox.id, session_id))
        return Session(self._client, self._sandbox.id, SessionInfo(id=session_id))

    def get_session(self, session_id: str) -> Session:
        """The session with this id; raises :class:`SessionNotFoundError` if there is none."""
        data = self._client._send(S.get_session_request(self._sandbox.id, session_id))
        return Session(self._client, self._sandbox.id, SessionInfo.from_json(data))

    def list_sessions(self) -> builtins.list[Session]:
        """The sandbox's sessions."""
        data = self._client._send(S.list_sessions_request(self._sandbox.id))
        return [Session(self._client, self._sandbox.id, info) for info in S.sessions_from_json(data)]

    def delete_session(self, session_id: str) -> None:
        """End a session: its shell and every command still running in it are killed, its logs deleted."""
        self._client._send(S.delete_session_request(self._sandbox.id, session_id))


class Session(S.SessionBase):
    """A session in a sandbox: its last known :class:`SessionInfo` fields plus the operations on it.

    Commands run one after the other in the session's shell, so ``cd`` and ``export`` carry over.
    """

    def __init__(self, client: Sandburg, sandbox_id: str, info: SessionInfo) -> None:
        self._client, self._sandbox_id = client, sandbox_id
        self.id, self.commands = info.id, info.commands

    def refresh(self) -> None:
        """Re-read the session's commands from the server."""
        self._apply(self._client._send(S.get_session_request(self._sandbox_id, self.id)))

    @overload
    def exec(
        self, command: str, *, background: Literal[False] = False, timeout: float | None = None
    ) -> SessionCommandResult: ...
    @overload
    def exec(self, command: str, *, background: Literal[True], timeout: float | None = None) -> Command: ...
    @overload
    def exec(
        self, command: str, *, background: bool = False, timeout: float | None = None
    ) -> SessionCommandResult | Command: ...
    def exec(
        self, command: str, *, background: bool = False, timeout: float | None = None
    ) -> SessionCommandResult | Command:
        """Run a shell command line in the session.

        By default wait for it and return its :class:`SessionCommandResult` (``timeout``: how many seconds
        to wait, None for as long as it runs; past it :class:`SandburgTimeoutError` is raised and the
        command goes on). With ``background=True`` return at once a :class:`Command` to follow it by.
        Raises :class:`SessionEndedError` once the session's shell has exited.
        """
        request = S.session_exec_request(self._sandbox_id, self.id, command, background, timeout)
        data = self._client._send(request)
        if not background:
            return SessionCommandResult.from_json(data)
        info = CommandInfo(id=SessionCommandResult.from_json(data).cmd_id, command=command, background=True)
        return Command(self._client, self._sandbox_id, self.id, info)

    def get_command(self, command_id: str) -> Command:
        """The command with this id; raises :class:`SessionNotFoundError` if the session has none."""
        data = self._client._send(S.get_command_request(self._sandbox_id, self.id, command_id))
        return Command(self._client, self._sandbox_id, self.id, CommandInfo.from_json(data))

    def delete(self) -> None:
        """End the session: its shell and every command still running in it are killed, its logs deleted."""
        self._client._send(S.delete_session_request(self._sandbox_id, self.id))


class Command(S.CommandBase):
    """A command run in a session: its last known :class:`CommandInfo` fields plus the operations on it."""

    def __init__(self, client: Sandburg, sandbox_id: str, session_id: str, info: CommandInfo) -> None:
        self._client, self._sandbox_id = client, sandbox_id
        self.session_id = session_id
        self._update(info)

    def refresh(self) -> None:
        """Re-read the command's fields (``exit_code``, ...) from the server."""
        data = self._client._send(S.get_command_request(self._sandbox_id, self.session_id, self.id))
        self._update(CommandInfo.from_json(data))

    @overload
    def logs(self, offset: int = 0, *, follow: Literal[False] = False) -> Logs: ...
    @overload
    def logs(self, offset: int = 0, *, follow: Literal[True]) -> LogStream: ...
    @overload
    def logs(self, offset: int = 0, *, follow: bool = False) -> Logs | LogStream: ...
    def logs(self, offset: int = 0, *, follow: bool = False) -> Logs | LogStream:
        """The command's output recorded from byte ``offset`` of its log (0: from the start).

        Without ``follow``, what is there now, as :class:`Logs` (its ``next_offset`` continues). With
        ``follow=True``, :meth:`follow_logs`: a :class:`LogStream` of :class:`OutputChunk` that replays the
        log from ``offset`` and then follows it live until the command ends (async: ``async for``).
        """
        if follow:
            return self.follow_logs(offset)
        request = S.command_logs_request(self._sandbox_id, self.session_id, self.id, offset)
        return Logs.from_json(self._client._send(request))

    def follow_logs(self, offset: int = 0) -> LogStream:
        """A :class:`LogStream` replaying the command's output from byte ``offset``, then following it live
        until the command ends. Nothing is opened until it is entered or iterated."""
        path, params = S.follow_logs_path(self._sandbox_id, self.session_id, self.id, offset)
        return LogStream(self._client, path, params)

    def send_input(self, data: str | bytes, close: bool = False) -> None:
        """Write ``data`` to the command's stdin (a background command's); ``close=True`` then closes it.

        Raises :class:`SessionEndedError` once the command has ended.
        """
        request = S.command_input_request(self._sandbox_id, self.session_id, self.id, data, close)
        self._client._send(request)

    def signal(self, signum: int = S.DEFAULT_SIGNAL) -> None:
        """Send signal ``signum`` (default SIGTERM) to the command's processes (a background command's).

        A command still running some seconds after SIGTERM is killed. Raises :class:`SessionEndedError`
        once the command has ended.
        """
        request = S.command_signal_request(self._sandbox_id, self.session_id, self.id, signum)
        self._client._send(request)


class LogStream:
    """A command's output, replayed and then followed live until the command ends.

    Iterate it (``for`` / ``async for``) for :class:`OutputChunk` values. It connects when entered or
    first iterated. Inside ``with`` (``async with``) the connection lasts until the block ends, so a loop
    may stop and resume; a bare loop that stops early closes it.
    """

    def __init__(self, client: Sandburg, path: str, params: dict[str, Any]) -> None:
        self._client, self._path, self._params = client, path, params
        self._ws: ClientConnection | None = None
        self._lock = threading.Lock()
        self._entered = self._done = False

    def _open(self) -> ClientConnection | None:
        with self._lock:
            if self._ws is None and not self._done:
                self._ws = _connect(self._client, self._path, self._params)
            return self._ws

    def __enter__(self) -> LogStream:
        self._entered = True
        self._open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[OutputChunk]:
        return self._chunks()

    def _chunks(self) -> Iterator[OutputChunk]:
        try:
            while (ws := self._open()) is not None:
                try:
                    frame = ws.recv()
                except ConnectionClosed as exc:
                    if not self._done:
                        self.close()
                        _ws.log_stream_closed(*_close_info(exc))
                    return
                if not isinstance(frame, str):
                    yield _ws.output_chunk(frame)
        finally:
            if not self._entered:
                self.close()

    def close(self) -> None:
        """Stop following and close the connection (the command itself goes on)."""
        with self._lock:
            ws, self._ws, self._done = self._ws, None, True
        if ws is not None:
            ws.close()


class ExecStream:
    """A command whose output streams as it is written (:meth:`Process.exec_stream`).

    Iterate it (``for`` / ``async for``) for :class:`OutputChunk` values until the command ends; then
    :attr:`result` and :attr:`exit_code` are set. It starts the command when entered, first iterated, or
    sent input or a signal. Inside ``with`` (``async with``) the command lasts until the block ends, so a
    loop may stop, send input, and resume; closing the stream (or a bare loop that stops early) kills a
    command that still runs.
    """

    def __init__(self, client: Sandburg, path: str, message: dict[str, Any]) -> None:
        self._client, self._path, self._message = client, path, message
        self._state = _ws.ExecStreamState()
        self._ws: ClientConnection | None = None
        self._lock = threading.Lock()
        self._entered = self._done = False

    @property
    def result(self) -> ExecStreamResult | None:
        """How the command ended, once the stream has been read to its end (else None)."""
        return self._state.result

    @property
    def exit_code(self) -> int | None:
        """The command's exit code, once the stream has been read to its end (else None)."""
        return None if self._state.result is None else self._state.result.exit_code

    def _open(self) -> ClientConnection | None:
        with self._lock:
            if self._ws is None and not self._done:
                ws = _connect(self._client, self._path)
                try:
                    ws.send(json.dumps(self._message))
                except ConnectionClosed as exc:
                    ws.close()
                    raise _ws.closed_error(*_close_info(exc), "the command started") from exc
                self._ws = ws
            return self._ws

    def __enter__(self) -> ExecStream:
        self._entered = True
        self._open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[OutputChunk]:
        return self._chunks()

    def _chunks(self) -> Iterator[OutputChunk]:
        try:
            while self._state.result is None and (ws := self._open()) is not None:
                try:
                    frame = ws.recv()
                except ConnectionClosed as exc:
                    if not self._done:
                        self.close()
                        self._state.closed(*_close_info(exc))
                    return
                chunk = self._state.frame(frame)
                if chunk is not None:
                    yield chunk
            self.close()  # the command has ended: the server closes too
        finally:
            if not self._entered:
                self.close()

    def _send(self, *messages: str | bytes) -> None:
        ws = self._open() if self._state.result is None else None
        if ws is None:
            raise _ws.ended_error()
        try:
            for message in messages:
                ws.send(message)
        except ConnectionClosed as exc:
            raise _ws.ended_error() from exc

    def send_input(self, data: str | bytes, close: bool = False) -> None:
        """Write ``data`` to the command's stdin; ``close=True`` then closes it (the command reads EOF).

        Needs ``exec_stream(..., stdin=True)``. Raises :class:`SessionEndedError` once the command has
        ended (or the stream was closed).
        """
        if not self._message.get("stdin"):
            raise ValueError("this command has no stdin: start it with exec_stream(..., stdin=True)")
        raw = S.input_text(data).encode("utf-8", "surrogateescape")
        self._send(*([raw] if raw else []), *([json.dumps({"type": "stdin_close"})] if close else []))

    def signal(self, signum: int = S.DEFAULT_SIGNAL) -> None:
        """Send signal ``signum`` (default SIGTERM) to the command's process group.

        Raises :class:`SessionEndedError` once the command has ended (or the stream was closed).
        """
        self._send(json.dumps({"type": "signal", "signal": S.check_signal(signum)}))

    def close(self) -> None:
        """Close the stream; a command that still runs is killed."""
        with self._lock:
            ws, self._ws, self._done = self._ws, None, True
        if ws is not None:
            ws.close()
