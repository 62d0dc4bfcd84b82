"""The I/O-free half of sessions, session commands and streamed output: models, requests, shared bases.

Shared by the sync shell (``sandburg._process``) and the async one (``sandburg._async_process``), like
``sandburg._core`` for the rest: nothing here opens a socket. The WebSocket side (URLs, frames, control
messages) is in ``sandburg._ws``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, NamedTuple

from ._core import USE_CLIENT_DEFAULT, Request, Timeout, exec_body, path_segment
from ._errors import UnexpectedResponseError
from ._models import _int, _object, _str, _time, list_from_json

__all__ = [
    "CommandInfo",
    "ExecStreamResult",
    "Logs",
    "OutputChunk",
    "SessionCommandResult",
    "SessionInfo",
]

DEFAULT_SIGNAL: Final = 15
"""SIGTERM: what :meth:`Command.signal` sends unless told otherwise."""

# ------------------------------------------------------------------------------------------------- models


@dataclass
class CommandInfo:
    """A command run in a session, as the server last described it.

    ``exit_code`` is None while the command runs; ``background`` says it was started with
    ``background=True``; ``truncated`` that its recorded output reached the server's cap.
    """

    id: str
    command: str = ""
    exit_code: int | None = None
    background: bool = False
    truncated: bool = False
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @staticmethod
    def from_json(data: Any) -> CommandInfo:
        """Decode a ``Command`` JSON object; raises :class:`UnexpectedResponseError` without an ``id``."""
        d = _object(data, "Command")
        if not _str(d, "id"):
            raise UnexpectedResponseError("Command object without an 'id'", body=data)
        code = d.get("exitCode")
        return CommandInfo(
            id=d["id"],
            command=_str(d, "command"),
            exit_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            background=d.get("runAsync") is True,
            truncated=d.get("truncated") is True,
            started_at=_time(d, "startedAt"),
            ended_at=_time(d, "endedAt"),
        )


@dataclass
class SessionInfo:
    """A session (a long-lived shell in the sandbox) and the commands run in it so far, oldest first."""

    id: str
    commands: list[CommandInfo] = field(default_factory=list)

    @staticmethod
    def from_json(data: Any) -> SessionInfo:
        """Decode a ``Session`` JSON object; raises :class:`UnexpectedResponseError` without a ``sessionId``."""
        d = _object(data, "Session")
        if not _str(d, "sessionId"):
            raise UnexpectedResponseError("Session object without a 'sessionId'", body=data)
        commands = [CommandInfo.from_json(c) for c in list_from_json(d.get("commands"), "Command")]
        return SessionInfo(id=d["sessionId"], commands=commands)


@dataclass(frozen=True)
class SessionCommandResult:
    """The outcome of a command that :meth:`Session.exec` waited for.

    ``output`` is stdout and stderr interleaved as the command wrote them (invalid UTF-8 replaced);
    ``truncated`` says the server's output cap cut them. ``exit_code`` is None only when the server stopped
    waiting before the command ended (it goes on in the session: ``session.get_command(cmd_id)``).
    """

    cmd_id: str
    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    output: str = ""
    truncated: bool = False

    @staticmethod
    def from_json(data: Any) -> SessionCommandResult:
        """Decode a ``SessionExecuteResponse``; raises :class:`UnexpectedResponseError` without a ``cmdId``."""
        d = _object(data, "SessionExecuteResponse")
        if not _str(d, "cmdId"):
            raise UnexpectedResponseError("SessionExecuteResponse without a 'cmdId'", body=data)
        code = d.get("exitCode")
        return SessionCommandResult(
            cmd_id=d["cmdId"],
            exit_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            stdout=_str(d, "stdout"),
            stderr=_str(d, "stderr"),
            output=_str(d, "output"),
            truncated=d.get("truncated") is True,
        )


@dataclass(frozen=True)
class Logs:
    """A command's recorded output from some offset (see :meth:`Command.logs`).

    ``next_offset`` is where the next call continues (pass it as ``offset``); ``truncated`` says the
    command's output reached the server's cap. Invalid UTF-8 is replaced; follow the logs for exact bytes.
    """

    output: str
    stdout: str
    stderr: str
    next_offset: int = 0
    truncated: bool = False

    @staticmethod
    def from_json(data: Any) -> Logs:
        """Decode a ``CommandLogs`` JSON object."""
        d = _object(data, "CommandLogs")
        return Logs(
            output=_str(d, "output"),
            stdout=_str(d, "stdout"),
            stderr=_str(d, "stderr"),
            next_offset=_int(d, "nextOffset"),
            truncated=d.get("truncated") is True,
        )


class OutputChunk(NamedTuple):
    """A piece of a command's output as it was written: ``stream`` (``"stdout"`` or ``"stderr"``) and its
    bytes. A tuple, so ``for stream, data in ...`` works too."""

    stream: Literal["stdout", "stderr"]
    data: bytes


@dataclass(frozen=True)
class ExecStreamResult:
    """How a streamed command ended (:attr:`ExecStream.result`).

    ``timed_out``: the server killed it at its ``timeout`` (its ``exit_code`` is then 137); ``truncated``:
    its output reached the server's cap and the rest was dropped; ``duration_ms``: its wall-clock time.
    """

    exit_code: int
    timed_out: bool = False
    truncated: bool = False
    duration_ms: float = 0.0

    @staticmethod
    def from_json(data: Any) -> ExecStreamResult:
        """Decode the stream's final ``{"type": "control", "status": "exited", ...}`` message."""
        d = _object(data, "exit message")
        code, duration = d.get("exitCode"), d.get("durationMs")
        if not isinstance(code, int) or isinstance(code, bool):
            raise UnexpectedResponseError("exit message without an integer 'exitCode'", body=data)
        return ExecStreamResult(
            exit_code=code,
            timed_out=d.get("timedOut") is True,
            truncated=d.get("truncated") is True,
            duration_ms=float(duration)
            if isinstance(duration, int | float) and duration is not True
            else 0.0,
        )


def sessions_from_json(data: Any) -> list[SessionInfo]:
    """Decode ``[Session]``."""
    return [SessionInfo.from_json(s) for s in list_from_json(data, "Session")]


# ----------------------------------------------------------------------------------------------- requests


def _base(sandbox_id: str) -> str:
    return f"/toolbox/{path_segment(sandbox_id, 'a sandbox id')}/process/session"


def _session(sandbox_id: str, session_id: str) -> str:
    return f"{_base(sandbox_id)}/{path_segment(session_id, 'a session id')}"


def _command(sandbox_id: str, session_id: str, command_id: str) -> str:
    return f"{_session(sandbox_id, session_id)}/command/{path_segment(command_id, 'a command id')}"


def create_session_request(sandbox_id: str, session_id: str) -> Request:
    """``POST /toolbox/{id}/process/session`` (201, no body)."""
    path_segment(session_id, "a session id")
    return Request("POST", _base(sandbox_id), json={"sessionId": session_id})


def list_sessions_request(sandbox_id: str) -> Request:
    """``GET /toolbox/{id}/process/session``."""
    return Request("GET", _base(sandbox_id))


def get_session_request(sandbox_id: str, session_id: str) -> Request:
    """``GET /toolbox/{id}/process/session/{sessionId}``."""
    return Request("GET", _session(sandbox_id, session_id))


def delete_session_request(sandbox_id: str, session_id: str) -> Request:
    """``DELETE /toolbox/{id}/process/session/{sessionId}`` (204)."""
    return Request("DELETE", _session(sandbox_id, session_id))


def session_exec_request(
    sandbox_id: str, session_id: str, command: str, background: bool, timeout: float | None
) -> Request:
    """``POST .../session/{sessionId}/exec``. A foreground command is waited for up to ``timeout`` seconds
    (None: as long as it runs); starting a background one takes an ordinary request's time."""
    if not isinstance(command, str):
        raise TypeError(f"command must be a str (a shell command line), got {type(command).__name__}")
    read: Timeout = USE_CLIENT_DEFAULT if background else timeout
    body = {"command": command, "runAsync": bool(background)}
    return Request("POST", f"{_session(sandbox_id, session_id)}/exec", json=body, timeout=read)


def get_command_request(sandbox_id: str, session_id: str, command_id: str) -> Request:
    """``GET .../session/{sessionId}/command/{commandId}``."""
    return Request("GET", _command(sandbox_id, session_id, command_id))


def command_logs_request(sandbox_id: str, session_id: str, command_id: str, offset: int = 0) -> Request:
    """``GET .../command/{commandId}/logs?offset=``."""
    return Request("GET", f"{_command(sandbox_id, session_id, command_id)}/logs", params=_offset(offset))


def command_input_request(
    sandbox_id: str, session_id: str, command_id: str, data: str | bytes, close: bool = False
) -> Request:
    """``POST .../command/{commandId}/input`` with ``{"data", "close"}``; bytes that are not UTF-8 travel as
    surrogate escapes, which the server writes back as the original bytes."""
    body = {"data": input_text(data), "close": bool(close)}
    return Request("POST", f"{_command(sandbox_id, session_id, command_id)}/input", json=body)


def command_signal_request(sandbox_id: str, session_id: str, command_id: str, signum: int) -> Request:
    """``POST .../command/{commandId}/signal`` with ``{"signal"}``."""
    body = {"signal": check_signal(signum)}
    return Request("POST", f"{_command(sandbox_id, session_id, command_id)}/signal", json=body)


def follow_logs_path(
    sandbox_id: str, session_id: str, command_id: str, offset: int
) -> tuple[str, dict[str, Any]]:
    """The WebSocket path and query of ``.../command/{commandId}/logs`` (replay from ``offset``, then follow)."""
    return f"{_command(sandbox_id, session_id, command_id)}/logs", dict(_offset(offset))


def exec_stream_path(sandbox_id: str) -> str:
    """The WebSocket path of ``/toolbox/{id}/process/execute/stream``."""
    return f"/toolbox/{path_segment(sandbox_id, 'a sandbox id')}/process/execute/stream"


def exec_stream_message(
    command: str,
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    stdin: bool = False,
) -> dict[str, Any]:
    """The exec stream's first message: ``POST process/execute``'s body plus ``stdin``."""
    return {**exec_body(command, cwd=cwd, env=env, timeout=timeout), "stdin": bool(stdin)}


def _offset(offset: int) -> tuple[tuple[str, str], ...]:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a whole number of bytes (0 or more), got {offset!r}")
    return (("offset", str(offset)),) if offset else ()


def input_text(data: str | bytes) -> str:
    """Input for a command as ``str``: bytes are decoded with ``surrogateescape`` so that none is lost."""
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data).decode("utf-8", "surrogateescape")
    if not isinstance(data, str):
        raise TypeError(f"input must be str or bytes, got {type(data).__name__}")
    return data


def check_signal(signum: int) -> int:
    """A signal number (1-64); raises ``ValueError`` for anything else."""
    if isinstance(signum, bool) or not isinstance(signum, int) or not 1 <= signum <= 64:
        raise ValueError(f"signum must be a signal number from 1 to 64, got {signum!r}")
    return int(signum)


# ---------------------------------------------------------------------------------------- shared bases


class SessionBase(SessionInfo):
    """What ``Session`` and ``AsyncSession`` share: the last known fields, updated in place."""

    def _apply(self, data: Any) -> None:
        info = SessionInfo.from_json(data)
        self.id, self.commands = info.id, info.commands


class CommandBase(CommandInfo):
    """What ``Command`` and ``AsyncCommand`` share: the last known fields, updated in place."""

    session_id: str
    """The id of the session the command runs in."""

    def _update(self, info: CommandInfo) -> None:
        for name in CommandInfo.__dataclass_fields__:
            setattr(self, name, getattr(info, name))

    @property
    def is_running(self) -> bool:
        """Whether the command was still running when last looked at (``exit_code`` is None)."""
        return self.exit_code is None

    @property
    def status(self) -> Literal["running", "exited"]:
        """``"running"`` or ``"exited"``, as last looked at; ``refresh()`` looks again."""
        return "running" if self.exit_code is None else "exited"
