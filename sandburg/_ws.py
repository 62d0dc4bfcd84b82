"""WebSocket helpers shared by the sync and async clients: URLs, frame markers, control messages."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

STDOUT_MARK = b"\x01\x01\x01"
STDERR_MARK = b"\x02\x02\x02"
PTY_SUBPROTOCOL = "X-Daytona-Pty-Exit-Control"


def ws_url(api_url: str, path: str, params: dict[str, Any] | None = None) -> str:
    """The ws:// (or wss://) URL of `path` under the API base URL."""
    base = api_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    query = {k: v for k, v in (params or {}).items() if v is not None}
    return base + path + ("?" + urlencode(query) if query else "")


def split_marked(frame: bytes) -> tuple[str, bytes]:
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
