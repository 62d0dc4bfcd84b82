"""The toolbox agent: serves docs/agent-protocol.md on a Unix socket inside the sandbox.

Runs as `python3 -S agent.py` or `-c "from sandburg.agent.agent import main; main()"` under the runtime layer's
CPython, as the child of tini. Its start-up time is part of every sandbox's time-to-first-exec, and under gVisor
each module import costs gofer round trips, so the agent imports only builtin/C modules (`_socket`, `_thread`,
`_signal`, `select`, `_json`, `pwd`, `grp`) and the frozen `os`/`stat`: not socket.py, threading, signal, json
or subprocess, which pull in enum, re and collections (about 9 ms more on the host, a multiple under gVisor).

Configuration: SANDBURG_AGENT_SOCKET (default /.sandburg/run/agent.sock), SANDBURG_WORKDIR (default /workspace).
With SANDBURG_AGENT_TCP=<port> and SANDBURG_AGENT_TOKEN=<hex> it listens on 0.0.0.0:<port> instead (the gVisor
tier: a socket bound on a host path makes `runsc checkpoint` fail, a TCP listener in gVisor's netstack is saved
and restored with the sandbox), and a connection must begin with the token's bytes or is closed unanswered; the
socket's directory stays the run dir (session logs). One thread per connection, one operation at a time on a connection. SIGTERM/SIGINT: kill running commands, exit 0.
"""

from __future__ import annotations

import _socket
import _thread
import os
import sys
from time import sleep

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time; mypy goes by the name
if TYPE_CHECKING:
    import signal as _signal  # _signal has no stubs; same functions
else:
    import _signal
if TYPE_CHECKING or __package__:
    from . import execute, files, search, sessions, terminal, tree
    from . import protocol as P
else:  # run as a script: sys.path[0] is this directory and the sandburg package may not be importable
    import execute
    import files
    import protocol as P
    import search
    import sessions
    import terminal
    import tree

DEFAULT_SOCKET = "/.sandburg/run/agent.sock"
FAMILY = _socket.AF_UNIX  # AF_INET when listening on TCP (main)
TOKEN = b""  # what a TCP connection must send first
DEFAULT_WORKDIR = "/workspace"
_STOP_SIGNALS = {_signal.SIGTERM, _signal.SIGINT}
_SCRUBBED = ("PYTHONHOME", "PYTHONPATH")  # and every SANDBURG_*: the agent's settings are not the sandbox's


def op_ping(sock: _socket.socket, reader: P.FrameReader, req: dict[str, object]) -> dict[str, object]:
    return {"ok": True, "version": P.VERSION, "pid": os.getpid()}


def op_open_deleted(sock: _socket.socket, reader: P.FrameReader, req: dict[str, object]) -> dict[str, object]:
    """Files that processes hold open after they were deleted, on the filesystems the host serves (the root and
    /.sandburg): gVisor cannot checkpoint those (docs/snapshots.md), so the host asks before a memory snapshot."""
    devs = set()
    for mp in ("/", "/.sandburg", sessions.RUN_DIR):
        try:
            devs.add(os.stat(mp).st_dev)
        except OSError:
            pass
    found: list[str] = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == str(os.getpid()):
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.endswith(" (deleted)") and os.stat(f"/proc/{pid}/fd/{fd}").st_dev in devs:
                    found.append(f"pid {pid}: {target}")
            except OSError:
                continue
    return {"ok": True, "files": found[:20]}


OPS = {"ping": op_ping, "open_deleted": op_open_deleted, "exec": execute.op_exec, "write_file": files.op_write_file, "read_file": files.op_read_file,
       "list": files.op_list, "stat": files.op_stat}  # fmt: skip
OPS.update({"mkdir": tree.op_mkdir, "delete": tree.op_delete, "move": tree.op_move, "chmod": tree.op_chmod,
            "chown": tree.op_chown, "find": search.op_find, "search": search.op_search, "replace": search.op_replace})  # fmt: skip
OPS.update(sessions.OPS)
OPS.update(terminal.OPS)


# -------------------------------------------------------------------------------------------------- server


def _answer(sock: _socket.socket, reader: P.FrameReader, payload: bytes) -> dict[str, object]:
    try:
        req = P.loads(payload)
    except ValueError as exc:
        return files.error_result("BAD_REQUEST", f"request is not JSON: {exc}")
    if not isinstance(req, dict):
        return files.error_result("BAD_REQUEST", "request must be a JSON object")
    op = req.get("op")
    handler = OPS.get(op) if isinstance(op, str) else None
    if handler is None:
        return files.error_result("BAD_REQUEST", f"unknown op {op!r}")
    try:
        return handler(sock, reader, req)
    except files.OpError as exc:
        return files.error_result(exc.code, exc.message)
    except OSError as exc:
        return files.os_error_result(exc)
    except ValueError as exc:  # e.g. an embedded NUL byte in argv or env
        return files.error_result("BAD_REQUEST", str(exc))


def _authenticated(sock: _socket.socket) -> bool:
    """Read the connection's first len(TOKEN) bytes (5 s at most) and compare them in constant time."""
    got = b""
    sock.settimeout(5)
    try:
        while len(got) < len(TOKEN):
            chunk = sock.recv(len(TOKEN) - len(got))
            if not chunk:
                return False
            got += chunk
    except OSError:
        return False
    finally:
        sock.settimeout(None)
    diff = 0
    for a, b in zip(got, TOKEN, strict=True):
        diff |= a ^ b
    return diff == 0


def _serve(fd: int) -> None:
    sock = _socket.socket(FAMILY, _socket.SOCK_STREAM, 0, fd)
    reader = P.FrameReader(sock)
    try:
        if TOKEN:
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)  # small frames: no Nagle delay
            if not _authenticated(sock):
                return
        while (f := reader.read()) is not None:
            if f[0] in (P.STDIN, P.SIGNAL):
                continue  # sent for a command that ended meanwhile (the client had not seen its R yet)
            if f[0] != P.REQUEST:  # out of step with the client: say so once and drop the connection
                err = files.error_result("BAD_REQUEST", f"expected a Q frame, got {f[0]!r}")
                sock.sendall(P.frame(P.RESULT, P.dumps(err)))
                break
            try:
                result = _answer(sock, reader, f[1])
            except (P.ProtocolError, ConnectionError):
                break
            except RuntimeError as exc:  # "can't start new thread": the sandbox is at its process limit
                result = files.error_result(
                    "PIDS_LIMIT_REACHED", f"the sandbox is at its process limit: {exc}"
                )
            except Exception as exc:
                result = files.error_result("INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")
            sock.sendall(P.frame(P.RESULT, P.dumps(result)))
    except (P.ProtocolError, OSError):
        pass  # the connection is unusable: drop it, the host sees the close
    except BaseException as exc:  # never let a connection take the agent down
        _log(f"connection failed: {type(exc).__name__}: {exc}")
    finally:
        sock.close()


def _log(msg: str) -> None:
    try:
        sys.stderr.write(f"sandburg-agent: {msg}\n")
        sys.stderr.flush()
    except Exception:
        pass


def _refuse(fd: int) -> None:
    """Answer a connection that cannot get a thread with PIDS_LIMIT_REACHED (its request stays unread)."""
    sock = _socket.socket(FAMILY, _socket.SOCK_STREAM, 0, fd)
    try:
        sock.settimeout(1)
        err = files.error_result("PIDS_LIMIT_REACHED", "the sandbox is at its process limit; try again later")
        sock.sendall(P.frame(P.RESULT, P.dumps(err)))
    except OSError:
        pass
    finally:
        sock.close()


def _accept_loop(srv: _socket.socket) -> None:
    try:
        while True:
            try:
                fd, _addr = srv._accept()  # type: ignore[attr-defined]
            except OSError as exc:  # EMFILE and friends: back off instead of spinning
                _log(f"accept: {exc}")
                sleep(0.05)
                continue
            try:
                _thread.start_new_thread(_serve, (fd,))
            except RuntimeError:  # no thread: the sandbox is at its pids limit (a fork bomb?); keep going
                _refuse(fd)
    except BaseException as exc:
        _log(f"accept loop died: {type(exc).__name__}: {exc}")
        os._exit(1)


def main() -> None:
    global FAMILY, TOKEN
    environ = os.environ
    path = environ.get("SANDBURG_AGENT_SOCKET") or DEFAULT_SOCKET
    sessions.RUN_DIR = os.path.dirname(path)
    files.set_workdir(environ.get("SANDBURG_WORKDIR") or DEFAULT_WORKDIR)
    execute.CHILD_ENV.update(
        (k, v) for k, v in environ.items() if not k.startswith("SANDBURG_") and k not in _SCRUBBED
    )
    for fd in (0, 1, 2):  # a pipe must never land on 0-2, where a child's dup2 would clobber it
        try:
            os.fstat(fd)
        except OSError:
            os.dup2(os.open("/dev/null", os.O_RDWR), fd)
    # Threads inherit the mask: block SIGTERM/SIGINT everywhere and take them synchronously in the main thread
    # with sigwait (a Python handler runs only when the main thread runs bytecode, not while it is in accept()).
    _signal.pthread_sigmask(_signal.SIG_BLOCK, _STOP_SIGNALS)
    # The first warm shell starts now, so its start-up (~45 ms under gVisor) overlaps the agent's own.
    _thread.start_new_thread(execute.spawn_warm, ())
    port = environ.get("SANDBURG_AGENT_TCP")
    if port:
        FAMILY, TOKEN = _socket.AF_INET, environ.get("SANDBURG_AGENT_TOKEN", "").encode()
        if len(TOKEN) < 32:
            _log("SANDBURG_AGENT_TOKEN must have at least 32 characters")
            os._exit(2)
        srv = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        srv.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        srv.bind(("0.0.0.0", int(port)))
        path = ""
    else:
        srv = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            os.unlink(path)  # a stale socket from a previous run
        except FileNotFoundError:
            pass
        srv.bind(path)
    srv.listen(128)
    _thread.start_new_thread(_accept_loop, (srv,))
    _signal.sigwait(_STOP_SIGNALS)
    sessions.kill_all()
    for pgid in list(execute.RUNNING):
        execute.kill_group(pgid)  # their connections die with us, and a command never outlives its connection
    for tmp in list(files.UPLOADS):
        try:
            os.unlink(tmp)  # no partial upload is left behind
        except OSError:
            pass
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass
    os._exit(0)


if __name__ == "__main__":
    main()
