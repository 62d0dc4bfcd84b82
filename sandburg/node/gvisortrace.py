"""gVisor tier: what a sandbox's processes exec and open for writing, from runsc's runtime monitoring.

runsc is started with `--pod-init-config` naming a trace session (the points below) whose "remote" sink connects
to a SOCK_SEQPACKET Unix socket the host listens on, one per sandbox: in its bundle dir, or under /run when that
path is too long for a socket address; never visible inside a sandbox. Attribution comes from which socket a
connection arrived on, not from what the Sentry says: the Sentry is untrusted (a sandbox that broke out of the
application kernel could claim any container id), so every field is bounded and decoded by the small protobuf
reader below. The Sentry writes without blocking and counts what it drops when our socket buffer is full (the
header's DroppedCount), so a slow reader never slows a sandbox.

Protocol (gVisor pkg/sentry/seccheck/sinks/remote): the sandbox sends Handshake{version}, we answer
Handshake{version=2}; then each datagram is an 8-byte header (u16 header size, u16 message type, u32 dropped
count, little endian) followed by one protobuf message (points/{common,sentry,syscall}.proto).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import selectors
import socket
import struct
from collections.abc import Iterator
from typing import Any

from .activity import Recorder, SelectorLoop

log = logging.getLogger("sandburg.node.activity")

WIRE_VERSION = 2
MESSAGE_SENTRY_EXEC = 3
MESSAGE_SYSCALL_OPEN = 7
# one datagram; a larger one (an exec with a huge argv) arrives cut, fails to decode and is counted as dropped
MAX_MESSAGE = 256 * 1024
O_ACCMODE, O_WRONLY, O_RDWR, O_CREAT, O_TRUNC = 0o3, 0o1, 0o2, 0o100, 0o1000
AT_FDCWD = -100
# only what a record uses: each context field is computed by the Sentry at every point (cwd is a path walk), and
# opens are frequent (reads included: the points cannot filter on flags)
_EXEC_CTX = ["group_id", "credentials", "cwd"]
_OPEN_CTX = ["group_id", "cwd"]
SOCKET_NAME = "trace.sock"
SHORT_DIR = "/run/sandburg-trace"
MAX_SUN_PATH = 107
NOT_FILES = ("/dev/", "/proc/", "/sys/")  # devices (2>/dev/null) and kernel files are not file writes


def session_config(endpoint: str) -> dict[str, Any]:
    """The `--pod-init-config` document: exec of a new image, and every open whose flags may write."""
    opens: list[dict[str, Any]] = [
        {"name": f"syscall/{n}/exit", "context_fields": _OPEN_CTX} for n in ("open", "creat")
    ]
    # openat's directory fd, resolved by the Sentry (only when it is not AT_FDCWD)
    opens.append({"name": "syscall/openat/exit", "optional_fields": ["fd_path"], "context_fields": _OPEN_CTX})
    return {
        "trace_session": {
            "name": "Default",
            "ignore_missing": True,  # a runsc without one of these points still starts the sandbox
            "points": [{"name": "sentry/execve", "context_fields": _EXEC_CTX}, *opens],
            "sinks": [{"name": "remote", "config": {"endpoint": endpoint, "retries": 0}}],
        }
    }


# -- a minimal protobuf reader: varints, length-delimited fields; everything else skipped ------------------------
def _varint(buf: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("bad varint")
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, i
        shift += 7


def fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: ints for varints and fixed fields, bytes for the rest."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
            yield num, v
        elif wt == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ValueError("truncated field")
            yield num, buf[i : i + n]
            i += n
        elif wt == 1:
            yield num, int.from_bytes(buf[i : i + 8], "little")
            i += 8
        elif wt == 5:
            yield num, int.from_bytes(buf[i : i + 4], "little")
            i += 4
        else:
            raise ValueError(f"wire type {wt}")


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _text(v: int | bytes) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else ""


def context(buf: bytes) -> dict[str, Any]:
    """common.proto ContextData: 4 thread_group_id, 6 container_id, 7 credentials (2 effective_uid), 8 cwd,
    9 process_name."""
    out: dict[str, Any] = {}
    for num, v in fields(buf):
        if num == 4 and isinstance(v, int):
            out["pid"] = _signed(v)
        elif num == 6:
            out["container"] = _text(v)
        elif num == 7 and isinstance(v, bytes):
            out["uid"] = 0  # proto3 leaves a zero uid out
            for n2, v2 in fields(v):
                if n2 == 1 and isinstance(v2, int):
                    out["uid"] = v2
        elif num == 8:
            out["cwd"] = _text(v)
        elif num == 9:
            out["comm"] = _text(v)
    return out


def decode_exec(buf: bytes) -> dict[str, Any]:
    """sentry.proto ExecveInfo: 1 context_data, 2 binary_path, 3 argv (repeated)."""
    ctx: dict[str, Any] = {}
    argv: list[str] = []
    binary = ""
    for num, v in fields(buf):
        if num == 1 and isinstance(v, bytes):
            ctx = context(v)
        elif num == 2:
            binary = _text(v)
        elif num == 3:
            argv.append(_text(v))
    # the context is the task's before the exec: its name is the old image's, so take the new binary's
    return {**ctx, "argv": argv, "binary": binary, "comm": os.path.basename(binary)[:15] or None}


def decode_open(buf: bytes) -> dict[str, Any] | None:
    """syscall.proto Open: 1 context_data, 2 exit (1 result), 4 fd, 5 fd_path, 6 pathname, 7 flags. None unless
    it succeeded with flags that can write."""
    raw_ctx = b""
    result, fd, fd_path, path, flags = -1, AT_FDCWD, "", "", 0
    for num, v in fields(buf):
        if num == 1 and isinstance(v, bytes):
            raw_ctx = v  # decoded only for a write: most opens read
        elif num == 2 and isinstance(v, bytes):
            result = 0  # proto3 leaves a zero result out
            for n2, v2 in fields(v):
                if n2 == 1 and isinstance(v2, int):
                    result = _signed(v2)
        elif num == 4 and isinstance(v, int):
            fd = _signed(v)
        elif num == 5:
            fd_path = _text(v)
        elif num == 6:
            path = _text(v)
        elif num == 7 and isinstance(v, int):
            flags = v
    if result < 0 or not (flags & O_ACCMODE in (O_WRONLY, O_RDWR) or flags & (O_CREAT | O_TRUNC)):
        return None
    ctx = context(raw_ctx)
    if not path.startswith("/"):
        base = ctx.get("cwd", "") if fd == AT_FDCWD else fd_path
        if base.startswith("/"):
            path = os.path.normpath(os.path.join(base, path))
        else:  # a directory the Sentry did not name ("[err: ...]"): kept relative and marked, never guessed
            path = f"<{'cwd' if fd == AT_FDCWD else f'fd {fd}'}>/{path}"
    return {**ctx, "path": path}


def socket_path(bundle: str) -> str:
    """Where `bundle`'s sandbox connects: in the bundle dir, or, when that path is longer than a Unix socket
    address allows (a long data dir), under SHORT_DIR by a hash of the bundle's path. Neither is visible inside
    a sandbox."""
    path = os.path.join(bundle, SOCKET_NAME)
    if len(path.encode()) <= MAX_SUN_PATH:
        return path
    os.makedirs(SHORT_DIR, mode=0o700, exist_ok=True)
    return os.path.join(SHORT_DIR, hashlib.sha256(bundle.encode()).hexdigest()[:32] + ".sock")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _Conn:
    def __init__(self, sid: str, sock: socket.socket, listener: socket.socket) -> None:
        self.sid = sid
        self.sock = sock
        self.listener = listener  # a stop drops its own listener's connections, never a restart's new ones
        self.handshaken = False
        self.sentry_dropped = 0  # the last DroppedCount seen


class GvisorTracer(SelectorLoop):
    """One thread for every gVisor sandbox: a listening socket per sandbox, its connections, the decoding."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(recorder, "sandburg-gvisor-trace")  # _pending: (op, arg), every (un)registration
        self._listeners: dict[str, tuple[socket.socket, str]] = {}  # sid -> (listener, path)
        self._conns: dict[str, list[_Conn]] = {}
        self._thread.start()

    # -- called by the node ----------------------------------------------------------------------------------
    def prepare(self, sid: str, bundle: str) -> list[str]:
        """Listen for `sid`'s Sentry; the runsc global flags that make it connect (empty if it cannot)."""
        self.unwatch(sid)
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            path = socket_path(bundle)
            _unlink(path)  # a leftover of a crash
            lsock.bind(path)
            os.chmod(path, 0o600)
            lsock.listen(4)
            lsock.setblocking(False)
            conf = os.path.join(bundle, "trace.json")
            with open(conf, "w") as fh:
                json.dump(session_config(path), fh)
        except OSError as exc:
            lsock.close()
            log.warning("activity: cannot listen for sandbox %s: %s", sid, exc)
            return []
        with self._lock:
            self._listeners[sid] = (lsock, path)
            self._pending.append(("listen", (sid, lsock)))
        self._wake()
        return [f"--pod-init-config={conf}"]

    def write_session_file(self, sid: str, bundle: str) -> str:
        """The session alone (what `runsc trace create --config` reads), for a sandbox already running."""
        path = os.path.join(bundle, "trace-session.json")
        with open(path, "w") as fh:
            json.dump(session_config(socket_path(bundle))["trace_session"], fh)
        return path

    def unwatch(self, sid: str) -> None:
        with self._lock:
            entry = self._listeners.pop(sid, None)
            if entry is None and sid not in self._conns:
                return
            if entry is not None:  # now, not in the loop: a restart's prepare() binds this path next
                _unlink(entry[1])
            self._pending.append(("drop", (sid, entry)))
        self._wake()

    def close(self) -> None:
        for op, arg in self._end_thread():  # what the loop had no turn for: the listeners of a last unwatch()
            if op == "drop":
                self._drop(*arg)
        for sid in list(self._listeners):
            entry = self._listeners.pop(sid)
            _unlink(entry[1])
            self._drop(sid, entry)
        for sid in list(self._conns):
            self._drop(sid, None)
        self._close_selector()

    # -- the loop (one thread; activity.SelectorLoop) --------------------------------------------------------
    def _apply(self, op: tuple[str, Any]) -> None:
        what, arg = op
        if what == "listen":
            sid, lsock = arg
            self._sel.register(lsock, selectors.EVENT_READ, ("listen", sid))
        else:
            self._drop(*arg)

    def _ready(self, key: selectors.SelectorKey) -> None:
        if key.data[0] == "listen":
            self._accept(key.data[1], key.fileobj)  # type: ignore[arg-type]
        else:
            self._read(key.data[1])

    def _drop(self, sid: str, entry: tuple[socket.socket, str] | None) -> None:
        if entry is not None:
            lsock, _ = entry
            try:
                self._sel.unregister(lsock)
            except (KeyError, ValueError):
                pass
            lsock.close()
        for conn in [c for c in self._conns.get(sid, []) if entry is None or c.listener is entry[0]]:
            self._read(conn)  # what the Sentry sent before it went away
            self._close_conn(conn)
        if not self._conns.get(sid):
            self._conns.pop(sid, None)

    def _close_conn(self, conn: _Conn) -> None:
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        conns = self._conns.get(conn.sid, [])
        if conn in conns:
            conns.remove(conn)

    def _accept(self, sid: str, lsock: socket.socket) -> None:
        try:
            sock, _ = lsock.accept()
        except OSError:
            return
        sock.setblocking(False)
        conns = self._conns.setdefault(sid, [])
        if len(conns) >= 4:  # one per Sentry; a few more after restores, never unbounded
            old = conns.pop(0)
            self._close_conn(old)
        conn = _Conn(sid, sock, lsock)
        conns.append(conn)
        self._sel.register(sock, selectors.EVENT_READ, ("conn", conn))

    def _read(self, conn: _Conn) -> None:
        for _ in range(256):  # bounded per wake-up: one busy sandbox cannot starve the others
            try:
                msg = conn.sock.recv(MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                msg = b""
            if not msg:
                self._close_conn(conn)
                return
            try:
                self._handle(conn, msg)
            except (ValueError, struct.error, UnicodeError) as exc:
                if not conn.handshaken:  # not a Sentry speaking this protocol
                    log.warning("activity: bad handshake from sandbox %s: %s", conn.sid, exc)
                    self._close_conn(conn)
                    return
                self.recorder.lost(conn.sid, 1, source="undecodable")  # bounded work, then the next one

    def _handle(self, conn: _Conn, msg: bytes) -> None:
        if not conn.handshaken:
            version = next((v for n, v in fields(msg) if n == 1 and isinstance(v, int)), 0)
            if version < 1:
                raise ValueError("bad handshake")
            conn.sock.send(b"\x08" + bytes([WIRE_VERSION]))  # Handshake{version: 2}
            conn.handshaken = True
            return
        size, mtype, dropped = struct.unpack_from("<HHI", msg)
        if size < 8 or size > len(msg):
            raise ValueError("bad header")
        if dropped != conn.sentry_dropped:
            self.recorder.lost(conn.sid, (dropped - conn.sentry_dropped) & 0xFFFFFFFF, source="sentry")
            conn.sentry_dropped = dropped
        body = msg[size:]
        if mtype == MESSAGE_SENTRY_EXEC:
            ev = decode_exec(body)
            self.recorder.exec(
                conn.sid, ev.get("pid", 0), ev["argv"], ev.get("cwd"), ev.get("uid"), ev.get("comm")
            )
        elif mtype == MESSAGE_SYSCALL_OPEN:
            op = decode_open(body)
            if op is not None and not op["path"].startswith(NOT_FILES):
                self.recorder.write(conn.sid, op["path"], op.get("pid", 0))
