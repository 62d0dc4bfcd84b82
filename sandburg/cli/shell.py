"""`sandburg shell <sandbox>`: an interactive terminal in the sandbox over the PTY WebSocket.

The local terminal goes to raw mode (restored on exit), keystrokes go up as binary frames — Ctrl-C is just byte
0x03, which the sandbox's terminal driver turns into SIGINT for its foreground process — window size changes
(SIGWINCH) are sent as resize messages, and the command exits with the remote shell's exit status.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import sys
import termios
import threading
import tty
from types import FrameType

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .._client import Sandburg
from .._ws import PTY_SUBPROTOCOL, control, ws_url


def _size() -> tuple[int, int]:
    """The local terminal's size, asked of the terminal itself (COLUMNS/LINES in the env may be stale)."""
    for fd in (1, 0, 2):
        try:
            size = os.get_terminal_size(fd)
            return size.columns, size.lines
        except OSError:
            continue
    fallback = shutil.get_terminal_size((80, 24))
    return fallback.columns, fallback.lines


def run(sb: Sandburg, ref: str, cwd: str | None) -> int:
    box = sb.get(ref)
    cols, rows = _size()
    url = ws_url(
        sb.api_url, f"/toolbox/{box.id}/process/pty/create-connect", {"cols": cols, "rows": rows, "cwd": cwd}
    )
    headers = {"Authorization": sb._http.headers["authorization"]}
    stdin = sys.stdin.fileno()
    is_tty = os.isatty(stdin)
    with connect(url, additional_headers=headers, subprotocols=[PTY_SUBPROTOCOL], open_timeout=30) as ws:  # type: ignore[list-item]
        first = ws.recv(timeout=30)
        msg = control(first) if isinstance(first, str) else None
        if not msg or msg.get("status") != "connected":
            print(f"error: terminal did not start: {first!r}", file=sys.stderr)
            return 1
        exit_code: list[int] = []
        done_r, done_w = os.pipe()
        wake_r, wake_w = os.pipe()

        def reader() -> None:
            try:
                for frame in ws:
                    if isinstance(frame, bytes):
                        os.write(sys.stdout.fileno(), frame)
                        continue
                    ctl = control(frame)
                    if ctl and ctl.get("status") == "exited":
                        exit_code.append(int(ctl.get("exitCode", 0)))
                    elif ctl and ctl.get("status") == "error":
                        print(f"\r\nerror: {ctl.get('error')}", file=sys.stderr)
            except ConnectionClosed:
                pass
            finally:
                os.close(done_w)

        def on_winch(_sig: int, _frame: FrameType | None) -> None:
            os.write(wake_w, b"w")

        saved = termios.tcgetattr(stdin) if is_tty else None
        old_winch = signal.signal(signal.SIGWINCH, on_winch)
        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        try:
            if is_tty:
                tty.setraw(stdin)
            stdin_open = True
            while True:
                watch = [done_r, wake_r] + ([stdin] if stdin_open else [])
                ready, _, _ = select.select(watch, [], [])
                if done_r in ready:
                    break
                if wake_r in ready:
                    os.read(wake_r, 64)
                    c, r = _size()
                    ws.send(json.dumps({"type": "resize", "cols": c, "rows": r}))
                if stdin in ready:
                    data = os.read(stdin, 4096)
                    if data:
                        ws.send(data)
                    else:
                        stdin_open = False  # local EOF: the remote shell decides when to end
        finally:
            if saved is not None:
                termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
            signal.signal(signal.SIGWINCH, old_winch)
            for fd in (done_r, wake_r, wake_w):
                os.close(fd)
        thread.join(timeout=2)
    return exit_code[0] if exit_code else 0
