"""WebSocket helpers shared by the sync and async clients: URLs, frame markers, control messages, errors.

I/O-free like ``sandburg._core``: the shells (``_process``, ``_async_process``, ``cli/shell``) open the
connections with ``websockets`` and hand every frame, close and failure to the functions here.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final, Literal
from urllib.parse import urlencode

import httpx
from websockets.exceptions import InvalidStatus, InvalidURI

from ._codes import STATUS, ErrorCode
from ._core import error_from_response
from ._errors import (
    AgentUnavailableError,
    APIError,
    BadRequestError,
    ConfigurationError,
    SandburgConnectionError,
    SandburgError,
    SandburgTimeoutError,
    SessionEndedError,
    error_class,
)
from ._sessions import ExecStreamResult, OutputChunk

STDOUT_MARK = b"\x01\x01\x01"
STDERR_MARK = b"\x02\x02\x02"
PTY_SUBPROTOCOL = "X-Daytona-Pty-Exit-Control"
MAX_FRAME: Final = 64 << 20
"""The largest frame the SDK accepts (the server's are far smaller)."""
NORMAL_CLOSURE: Final = 1000


def ws_url(api_url: str, path: str, params: dict[str, Any] | None = None) -> str:
    """The ws:// (or wss://) URL of `path` under the API base URL."""
    base = api_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    query = {k: v for k, v in (params or {}).items() if v is not None}
    return base + path + ("?" + urlencode(query) if query else "")


def split_marked(frame: bytes) -> tuple[Literal["stdout", "stderr"], bytes]:
    """A log/stream frame: ("stdout" | "stderr", bytes) by Daytona's 3-byte markers."""
    if frame.startswith(STDERR_MARK):
        return "stderr", frame[3:]
    if frame.startswith(STDOUT_MARK):
        return "stdout", frame[3:]
    return "stdout", frame


def control(text: str) -> dict[str, Any] | None:
    """A text frame's control message ({"type": "control", ...}), or None if it is not one."""
    try:
        msg = json.loads(text)
    except ValueError:
        return None
    return msg if isinstance(msg, dict) and msg.get("type") == "control" else None


# ------------------------------------------------------------------------------------------- connecting


def connect_options(headers: httpx.Headers, timeout: httpx.Timeout) -> dict[str, Any]:
    """Keyword arguments for ``websockets``' ``connect`` (sync and asyncio alike): the client's key and
    user agent, its connect timeout for the handshake, and room for large frames."""
    return {
        "additional_headers": {"Authorization": headers.get("authorization", "")},
        "user_agent_header": headers.get("user-agent"),
        "open_timeout": timeout.connect,
        "max_size": MAX_FRAME,
    }


def connect_error(exc: Exception) -> SandburgError:
    """Translate a failed WebSocket handshake into the SDK's tree; raise it ``from exc``.

    A refusal answered over HTTP (401, 404, 409 ...) becomes the same :class:`APIError` as the REST route's.
    """
    if isinstance(exc, InvalidStatus):
        return error_from_response(exc.response.status_code, bytes(exc.response.body or b""))
    if isinstance(exc, InvalidURI):
        return ConfigurationError(f"invalid API URL: {exc}")
    if isinstance(exc, TimeoutError):
        return SandburgTimeoutError(f"the WebSocket handshake timed out: {exc or type(exc).__name__}")
    return SandburgConnectionError(
        f"could not open a WebSocket to the sandburg server: {exc or type(exc).__name__}"
    )


def closed_error(code: int | None, reason: str, what: str) -> SandburgConnectionError:
    """The error for a connection that closed before ``what`` ended."""
    detail = f" (code {code}{': ' + reason if reason else ''})" if code is not None else ""
    return SandburgConnectionError(f"the connection closed before {what}{detail}")


def ended_error() -> SessionEndedError:
    """What sending input or a signal to a command that has ended raises."""
    code = ErrorCode.COMMAND_ALREADY_COMPLETED
    return SessionEndedError(STATUS[code], code, "the command has ended and takes no more input")


_CODED = re.compile(r"^([A-Z][A-Z_]+): (.*)$", re.DOTALL)


def stream_error(message: str) -> APIError:
    """The exception for the exec stream's ``{"status": "error", "error": message}``.

    The server sends the agent's failures as ``"<CODE>: <message>"`` (e.g. ``PIDS_LIMIT_REACHED: ...``):
    those map like a REST answer's code; a refused first message is a :class:`BadRequestError`; anything
    else means the agent could not be reached.
    """
    match = _CODED.match(message)
    if match and match.group(1) in STATUS:
        code = ErrorCode(match.group(1))
        return error_class(STATUS[code], code)(STATUS[code], code, match.group(2))
    if message.startswith("bad request"):
        return BadRequestError(400, ErrorCode.VALIDATION_ERROR, message)
    return AgentUnavailableError(502, ErrorCode.AGENT_UNAVAILABLE, message)


# ----------------------------------------------------------------------------------------------- frames


def output_chunk(frame: bytes | bytearray | memoryview) -> OutputChunk:
    """A binary frame of a log or exec stream as an :class:`OutputChunk`."""
    return OutputChunk(*split_marked(bytes(frame)))


class ExecStreamState:
    """What an exec stream has received so far: output frames become chunks, the final control message
    becomes :attr:`result`, an error message an exception."""

    def __init__(self) -> None:
        self.result: ExecStreamResult | None = None

    def frame(self, frame: str | bytes) -> OutputChunk | None:
        """Take in one frame: a chunk of output, or None for a control message (raises for an error one)."""
        if not isinstance(frame, str):
            return output_chunk(frame)
        msg = control(frame)
        if msg is not None and msg.get("status") == "exited":
            self.result = ExecStreamResult.from_json(msg)
        elif msg is not None and msg.get("status") == "error":
            raise stream_error(str(msg.get("error") or "the command failed"))
        return None

    def closed(self, code: int | None, reason: str) -> None:
        """The connection closed: fine after the exit message, else raise :class:`SandburgConnectionError`."""
        if self.result is None:
            raise closed_error(code, reason, "the command ended")


def log_stream_closed(code: int | None, reason: str) -> None:
    """A followed log's connection closed: the normal end is code 1000 (the command ended), else raise."""
    if code != NORMAL_CLOSURE:
        raise closed_error(code, reason, "the command ended")
