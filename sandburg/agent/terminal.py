"""The `pty` operation: an interactive shell on a pseudo-terminal, for as long as its connection lasts.

The shell is spawned with posix_spawn in a new session (setsid), and its first file action opens the pty's slave
side without O_NOCTTY, which makes that terminal the session's controlling terminal — so Ctrl-C from the client
(byte 0x03 written to the master) reaches the foreground process group through the terminal driver, exactly as on
a real terminal. Frames: `I` keyboard input, `S {"resize": [cols, rows]}` or `S {"signal": N}`; the agent sends the
terminal's output as `O` frames and ends with `R {ok, exit_code}` when the shell exits. If the connection drops,
the shell's session gets SIGHUP (what a closed terminal sends), then SIGKILL.
"""

from __future__ import annotations

import _socket
import _thread
import os
import select
from time import monotonic

TYPE_CHECKING = False  # see agent.py
if TYPE_CHECKING:
    import signal as _signal
else:
    import _signal
if TYPE_CHECKING or __package__:
    from . import execute
    from . import protocol as P
    from .files import bad_request, opt_int, opt_str, resolve
else:  # run as a script from this directory
    import execute
    import protocol as P
    from files import bad_request, opt_int, opt_str, resolve


def _set_size(fd: int, cols: int, rows: int) -> None:
    import fcntl
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, rows.to_bytes(2, "little") + cols.to_bytes(2, "little") + bytes(4))


def _dims(cols: object, rows: object) -> tuple[int, int]:
    if not (isinstance(cols, int) and isinstance(rows, int) and 0 < cols <= 1000 and 0 < rows <= 1000):
        raise bad_request("cols and rows must be integers in 1..1000")
    return cols, rows


def op_pty(sock: _socket.socket, reader: P.FrameReader, req: dict[str, object]) -> dict[str, object]:
    cols, rows = _dims(opt_int(req, "cols", 80), opt_int(req, "rows", 24))
    cwd = resolve(opt_str(req, "cwd", ""))
    extra = req.get("env") or {}
    if not isinstance(extra, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in extra.items()
    ):
        raise bad_request("'env' must map strings to strings")
    env = {**execute.CHILD_ENV, "TERM": "xterm-256color", **extra}
    shell = "/bin/bash" if os.access("/bin/bash", os.X_OK) else "/bin/sh"
    argv = [shell, "-l"]
    master, slave = os.openpty()
    try:
        slave_path = os.ttyname(slave)
        _set_size(slave, cols, rows)
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, slave_path, os.O_RDWR, 0),  # after setsid: becomes the controlling tty
            (os.POSIX_SPAWN_DUP2, 0, 1),
            (os.POSIX_SPAWN_DUP2, 0, 2),
        ]
        with execute.SPAWN_LOCK:
            os.chdir(cwd)
            pid = os.posix_spawn(shell, argv, env, file_actions=actions, setsid=True,
                                 setsigdef=execute.RESET_SIGNALS, setsigmask=())  # fmt: skip
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    started = monotonic()
    execute.RUNNING.add(pid)
    status: list[int] = []
    wake_r, wake_w = os.pipe()
    _thread.start_new_thread(execute.reap, (pid, wake_w, status))
    poller = select.poll()
    for fd in (master, wake_r, sock.fileno()):
        poller.register(fd, select.POLLIN)
    exited = False
    try:
        while not exited:
            for fd, _ev in poller.poll():
                if fd == wake_r:
                    exited = True
                elif fd == master:
                    try:
                        data = os.read(master, 64 << 10)
                    except OSError:  # EIO: every slave fd is closed
                        data = b""
                    if data:
                        sock.sendall(P.frame(P.STDOUT, data))
                    else:
                        poller.unregister(master)
                else:
                    if not reader.fill():
                        raise P.ProtocolError("client closed the connection")
                    while (f := reader.pop()) is not None:
                        _control(f, master, pid)
        # the shell exited: pass on what it wrote last (the terminal's buffer), briefly
        deadline = monotonic() + 0.5
        while monotonic() < deadline and select.select([master], [], [], 0.05)[0]:
            try:
                data = os.read(master, 64 << 10)
            except OSError:
                break
            if not data:
                break
            sock.sendall(P.frame(P.STDOUT, data))
    except BaseException:
        if not status:  # the client went away: hang up like a closed terminal, then make sure
            execute.kill_group(pid, _signal.SIGHUP)
            _thread.start_new_thread(_kill_later, (pid, status))
        raise
    finally:
        os.close(master)
        os.close(wake_r)
    code = os.waitstatus_to_exitcode(status[0])
    return {"ok": True, "exit_code": 128 - code if code < 0 else code, "timed_out": False, "truncated": False,
            "duration_ms": round((monotonic() - started) * 1000, 3)}  # fmt: skip


def _control(f: tuple[bytes, bytes], master: int, pid: int) -> None:
    ftype, payload = f
    if ftype == P.STDIN:
        view = memoryview(payload)
        while view:
            select.select([], [master], [], 5)
            view = view[os.write(master, view) :]
    elif ftype == P.SIGNAL:
        try:
            msg = P.loads(payload)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        size = msg.get("resize")
        if isinstance(size, list) and len(size) == 2:
            cols, rows = _dims(size[0], size[1])
            _set_size(master, cols, rows)  # the kernel sends SIGWINCH to the foreground process group
        sig = msg.get("signal")
        if isinstance(sig, int) and 0 < sig < 65:
            execute.kill_group(pid, sig)


def _kill_later(pid: int, status: list[int]) -> None:
    deadline = monotonic() + 2
    while not status and monotonic() < deadline:
        select.select([], [], [], 0.05)
    if not status:
        execute.kill_group_surely(pid)


OPS = {"pty": op_pty}
