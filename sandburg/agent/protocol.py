"""Framing of the agent protocol (docs/agent-protocol.md), shared by the agent and the host.

A frame is 1 type byte, a 4-byte big-endian payload length, then the payload (at most MAX_PAYLOAD bytes).

Imported by the agent at every sandbox start, where each module import is a round trip to the gofer under
gVisor: this module imports nothing but the C modules `_json` (instead of `json`, which drags in `re` and
`enum`) and nothing at all for framing (`int.from_bytes` instead of `struct`).
"""

from __future__ import annotations

from _json import encode_basestring_ascii, make_encoder, make_scanner

VERSION = "0.1.0"

REQUEST = b"Q"  # host -> agent: JSON request, starts one operation
RESULT = b"R"  # agent -> host: JSON result, ends the operation
STDOUT = b"O"  # agent -> host: stdout bytes of a running command
STDERR = b"E"  # agent -> host: stderr bytes of a running command
STDIN = b"I"  # host -> agent: stdin bytes; empty closes the command's stdin
SIGNAL = b"S"  # host -> agent: control JSON for a running command, e.g. {"signal": 15}
DATA = b"D"  # both: file data; empty ends the data

FRAME_TYPES = frozenset((REQUEST, RESULT, STDOUT, STDERR, STDIN, SIGNAL, DATA))
HEADER_SIZE = 5
MAX_PAYLOAD = 1 << 20
FILE_CHUNK = 64 << 10  # D frames sent by the agent
_RECV_SIZE = 256 << 10


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame stream (the connection is unusable)."""


def header(ftype: bytes, size: int) -> bytes:
    return ftype + size.to_bytes(4, "big")


def frame(ftype: bytes, payload: bytes = b"") -> bytes:
    """Encode one frame (header and payload in one buffer: one send, one syscall)."""
    return ftype + len(payload).to_bytes(4, "big") + payload


def parse_header(head: bytes) -> tuple[bytes, int]:
    """Validate a 5-byte header; return (type, payload size)."""
    ftype = head[:1]
    size = int.from_bytes(head[1:5], "big")
    if ftype not in FRAME_TYPES:
        raise ProtocolError(f"unknown frame type {ftype!r}")
    if size > MAX_PAYLOAD:
        raise ProtocolError(f"frame of {size} bytes exceeds {MAX_PAYLOAD}")
    return ftype, size


class FrameReader:
    """Buffered frame reader over a blocking socket (anything with recv()).

    `read()` blocks for the next frame. For a caller that multiplexes the socket with poll(), `fill()` does one
    recv() when poll says the socket is readable and `pop()` returns the frames it completed; frames already
    buffered must be popped before polling again (a client may pipeline frames behind a request).
    """

    __slots__ = ("_sock", "_buf")

    def __init__(self, sock: object) -> None:
        self._sock = sock
        self._buf = bytearray()

    def fill(self) -> bool:
        """One recv(); False at end of stream."""
        data = self._sock.recv(_RECV_SIZE)  # type: ignore[attr-defined]
        if not data:
            return False
        self._buf += data
        return True

    def pop(self) -> tuple[bytes, bytes] | None:
        """The next complete buffered frame as (type, payload), or None."""
        buf = self._buf
        if len(buf) < HEADER_SIZE:
            return None
        ftype, size = parse_header(bytes(buf[:HEADER_SIZE]))
        end = HEADER_SIZE + size
        if len(buf) < end:
            return None
        with memoryview(buf) as view:  # one copy of the payload, not two
            payload = bytes(view[HEADER_SIZE:end])
        del buf[:end]  # O(1) at the front of a bytearray
        return ftype, payload

    def read(self) -> tuple[bytes, bytes] | None:
        """Block for the next frame; None when the peer closed cleanly between frames."""
        while True:
            f = self.pop()
            if f is not None:
                return f
            if not self.fill():
                if self._buf:
                    raise ProtocolError("connection closed in the middle of a frame")
                return None


def send_frame(sock: object, ftype: bytes, payload: bytes = b"") -> None:
    """Blocking send of one frame."""
    sock.sendall(frame(ftype, payload))  # type: ignore[attr-defined]


def _no_default(obj: object) -> object:
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _constant(name: str) -> float:
    raise ValueError(f"invalid JSON constant {name}")


class _ScanContext:
    # The attributes the C scanner reads (json.decoder.JSONDecoder without its Python fallbacks).
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_constant)
    memo: dict[str, str] = {}


_encode = make_encoder(None, _no_default, encode_basestring_ascii, None, ":", ",", False, False, False)
_scan = make_scanner(_ScanContext())  # type: ignore[arg-type]


def dumps(obj: object) -> bytes:
    """Compact ASCII JSON (what json.dumps(obj, separators=(",", ":"), allow_nan=False) gives)."""
    return "".join(_encode(obj, 0)).encode("ascii")


def loads(data: bytes) -> object:
    """Parse one JSON document; ValueError when it is not one."""
    try:
        text = data.decode("utf-8").strip(" \t\r\n")
        obj, end = _scan(text, 0)
        if end == len(text):
            return obj
    except UnicodeDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None
    except (StopIteration, SystemError, ValueError, RecursionError):
        # The C scanner reports syntax errors through json.decoder, which it cannot import itself (it only
        # looks in sys.modules): pay for the json package only on this rare path, for a precise message.
        pass
    import json

    try:
        return json.loads(text, parse_constant=_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
