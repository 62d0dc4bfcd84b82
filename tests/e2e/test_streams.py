"""Streaming exec and terminals over WebSockets, on both tiers; `sandburg shell` driven through tmux; output
volume that must not grow the server's memory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.e2e.conftest import TIERS

OUT, ERR = b"\x01\x01\x01", b"\x02\x02\x02"


def ws(server, path: str, **kw):
    return connect(
        f"ws://127.0.0.1:{server.port}/api/{path}",
        additional_headers={"Authorization": f"Bearer {server.api_key}"},
        open_timeout=20,
        **kw,
    )


def collect(conn, timeout: float = 30) -> tuple[bytes, bytes, dict]:
    out, err, ctl = b"", b"", {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            frame = conn.recv(timeout=timeout)
            if isinstance(frame, bytes):
                if frame.startswith(OUT):
                    out += frame[3:]
                elif frame.startswith(ERR):
                    err += frame[3:]
            else:
                ctl = json.loads(frame)
    except ConnectionClosed:
        pass
    return out, err, ctl


@pytest.fixture(params=TIERS)
def box(request, make_box):
    return make_box(isolation=request.param, image="debian-12")


def test_exec_stream_output_stdin_and_exit(server, box):
    with ws(server, f"toolbox/{box.id}/process/execute/stream") as conn:
        conn.send(
            json.dumps({"command": "echo first; read x; echo got:$x; echo oops >&2; exit 3", "stdin": True})
        )
        assert conn.recv(timeout=20) == OUT + b"first\n"  # output arrives while the command still runs
        conn.send(json.dumps({"type": "stdin", "data": "hello\n"}))
        out, err, ctl = collect(conn)
    assert (out, err) == (b"got:hello\n", b"oops\n")
    assert ctl["status"] == "exited" and ctl["exitCode"] == 3 and ctl["timedOut"] is False


def test_exec_stream_signal_and_disconnect(server, box):
    with ws(server, f"toolbox/{box.id}/process/execute/stream") as conn:
        conn.send(
            json.dumps(
                {"command": "trap 'echo term; exit 9' TERM; echo ready; while true; do sleep 0.1; done"}
            )
        )
        assert conn.recv(timeout=20) == OUT + b"ready\n"
        conn.send(json.dumps({"type": "signal", "signal": 15}))
        out, _, ctl = collect(conn)
    assert out == b"term\n" and ctl["exitCode"] == 9
    # a client that goes away kills its command
    with ws(server, f"toolbox/{box.id}/process/execute/stream") as conn:
        conn.send(json.dumps({"command": "echo ready; sleep 424242"}))
        assert conn.recv(timeout=20) == OUT + b"ready\n"
    deadline = time.monotonic() + 10
    while "424242" in box.process.exec("ps -eo args").stdout:
        if time.monotonic() > deadline:  # what is left, to tell which process survived and in which group
            listing = box.process.exec("ps -eo pid,ppid,pgid,stat,args").stdout
            raise AssertionError(f"the command outlived its client:\n{listing}")
        time.sleep(0.2)


def test_stream_refuses_bad_keys_and_stopped_sandboxes(server, make_box):
    box = make_box(isolation="container")
    with pytest.raises(InvalidStatus) as info:
        with connect(f"ws://127.0.0.1:{server.port}/api/toolbox/{box.id}/process/execute/stream",
                     additional_headers={"Authorization": "Bearer sb_wrong"}):  # fmt: skip
            pass
    assert info.value.response.status_code == 401
    box.stop()
    with pytest.raises(InvalidStatus) as info:
        with ws(server, f"toolbox/{box.id}/process/execute/stream"):
            pass
    assert info.value.response.status_code == 409


def test_pty_daytona_handshake_resize_ctrl_c_and_exit(server, http, box):
    path = f"toolbox/{box.id}/process/pty/create-connect?id=term1&cols=90&rows=20"
    with ws(server, path, subprotocols=["X-Daytona-Pty-Exit-Control"]) as conn:
        assert json.loads(conn.recv(timeout=20)) == {"type": "control", "status": "connected"}
        assert conn.subprotocol == "X-Daytona-Pty-Exit-Control"
        info = http.get(f"toolbox/{box.id}/process/pty/term1").json()
        assert (info["active"], info["cols"], info["rows"]) == (True, 90, 20)
        read_until(conn, b"# ")  # the prompt: readline may drop what is typed before it sets up the terminal
        conn.send(b"stty size\n")
        screen = read_until(conn, b"20 90")
        assert (
            http.post(f"toolbox/{box.id}/process/pty/term1/resize", json={"cols": 120, "rows": 40}).json()[
                "cols"
            ]
            == 120
        )
        screen += type_until(conn, b"stty size\n", b"40 120")
        conn.send(json.dumps({"type": "resize", "cols": 70, "rows": 10}))  # in band (sandburg)
        type_until(conn, b"stty size\n", b"10 70")
        conn.send(b"sleep 300\n")
        time.sleep(0.5)
        conn.send(b"\x03")  # Ctrl-C reaches the foreground process through the terminal
        conn.send(b"echo after-ctrl-c\n")
        read_until(conn, b"after-ctrl-c\r\n")
        conn.send(b"exit 7\n")
        _, _, ctl = collect(conn)
    assert ctl == {"type": "control", "status": "exited", "exitCode": 7}
    assert http.get(f"toolbox/{box.id}/process/pty/term1").status_code == 404


def test_pty_client_that_disappears_leaves_nothing(server, box):
    with ws(server, f"toolbox/{box.id}/process/pty/create-connect?id=gone") as conn:
        conn.recv(timeout=20)
        read_until(conn, b"# ")
        conn.send(b"sleep 313131\n")
        time.sleep(0.5)
    deadline = time.monotonic() + 10
    while "313131" in box.process.exec("ps -eo args").stdout:
        assert time.monotonic() < deadline, "the terminal's processes outlived their client"
        time.sleep(0.2)


def type_until(conn, keys: bytes, marker: bytes, tries: int = 5, wait: float = 3) -> bytes:
    """Type `keys` until `marker` shows up: on gVisor, keys that arrive while readline handles the SIGWINCH of a
    resize (it switches the terminal out of raw mode and back) can be dropped by the Sentry's line discipline,
    as in a real terminal where a resize races typing. A dropped line is typed again; output is never faked."""
    buf = b""
    for _ in range(tries):
        conn.send(keys)
        deadline = time.monotonic() + wait
        while marker not in buf and (left := deadline - time.monotonic()) > 0:
            try:
                frame = conn.recv(timeout=left)
            except TimeoutError:
                break
            if isinstance(frame, bytes):
                buf += frame
        if marker in buf:
            return buf
    raise AssertionError(f"{marker!r} never came after {tries} tries: {buf[-300:]!r}")


def read_until(conn, marker: bytes, timeout: float = 15) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while marker not in buf:
        assert time.monotonic() < deadline, buf[-300:]
        frame = conn.recv(timeout=timeout)
        if isinstance(frame, bytes):
            buf += frame
    return buf


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by make setup")
def test_sandburg_shell_through_tmux(server, make_box, tmp_path):
    box = make_box(isolation="container", image="debian-12")
    session = f"sbshell-{os.getpid()}"
    done = tmp_path / "exit-code"
    env = f"SANDBURG_API_URL={server.api_url} SANDBURG_API_KEY={server.api_key}"
    cmd = f"{env} {sys.executable} -m sandburg.cli.main shell {box.id}; echo $? > {done}"

    def tmux(*args: str) -> str:
        return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=20, check=True).stdout

    def screen_shows(text: str, within: float = 15) -> None:
        deadline = time.monotonic() + within
        while text not in tmux("capture-pane", "-p", "-t", session):
            assert time.monotonic() < deadline, tmux("capture-pane", "-p", "-t", session)
            time.sleep(0.1)

    tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", cmd)
    try:
        screen_shows("root@")
        tmux("send-keys", "-t", session, "stty size", "Enter")
        screen_shows("30 100")
        tmux("resize-window", "-t", session, "-x", "120", "-y", "40")
        time.sleep(0.5)
        tmux("send-keys", "-t", session, "stty size", "Enter")
        screen_shows("40 120")
        tmux("send-keys", "-t", session, "sleep 300", "Enter")
        time.sleep(0.5)
        tmux("send-keys", "-t", session, "C-c")
        tmux("send-keys", "-t", session, "echo typed-after-ctrl-c", "Enter")
        screen_shows("typed-after-ctrl-c\n")
        tmux("send-keys", "-t", session, "exit 4", "Enter")
        deadline = time.monotonic() + 15
        while not done.exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert done.read_text().strip() == "4"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


@pytest.mark.parametrize("tier", TIERS)
def test_two_gib_of_output_does_not_grow_the_server(server, http, make_box, tier):
    box = make_box(isolation=tier)
    before = rss_mib(server.proc.pid)
    r = http.post(
        f"toolbox/{box.id}/process/execute",
        json={"command": "head -c 2147483648 /dev/zero; echo end >&2", "timeout": 300},
        timeout=httpx.Timeout(330),
    ).json()
    assert r["exitCode"] == 0 and r["truncated"] is True
    assert len(r["stdout"]) == 10 << 20 and r["stderr"] == "end\n"  # capped at the server's 10 MiB default
    with ws(server, f"toolbox/{box.id}/process/execute/stream") as conn:
        conn.send(json.dumps({"command": "head -c 2147483648 /dev/zero"}))
        out, _, ctl = collect(conn, timeout=300)
    assert ctl["exitCode"] == 0 and ctl["truncated"] is True and len(out) == 10 << 20
    assert rss_mib(server.proc.pid) - before < 100
