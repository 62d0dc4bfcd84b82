"""Sessions over the real server, both tiers: state kept between commands, background commands whose logs are
replayed by offset and followed live over a WebSocket, input, signals, errors."""

from __future__ import annotations

import json
import time

import pytest
from websockets.sync.client import connect

from tests.e2e.conftest import TIERS

MARKS = {b"\x01\x01\x01": "stdout", b"\x02\x02\x02": "stderr"}


def follow(server, path: str, timeout: float = 20) -> list[tuple[str, bytes]]:
    frames = []
    url = f"ws://127.0.0.1:{server.port}/api/{path}"
    with connect(
        url, additional_headers={"Authorization": f"Bearer {server.api_key}"}, open_timeout=10
    ) as ws:
        deadline = time.monotonic() + timeout
        for frame in ws:
            assert isinstance(frame, bytes)
            frames.append((MARKS[frame[:3]], frame[3:]))
            assert time.monotonic() < deadline
    return frames


@pytest.fixture(params=TIERS)
def box_id(request, make_box):
    return make_box(isolation=request.param, image="debian-12").id


def test_state_is_kept_between_commands(http, box_id):
    base = f"toolbox/{box_id}/process/session"
    assert http.post(base, json={"sessionId": "dev"}).status_code == 201
    r = http.post(base, json={"sessionId": "dev"})  # a session id reused
    assert r.status_code == 409 and r.json()["code"] == "SESSION_EXISTS"
    assert http.post(f"{base}/dev/exec", json={"command": "export X=7; cd /tmp"}).json()["exitCode"] == 0
    r = http.post(f"{base}/dev/exec", json={"command": "echo $X; pwd; echo oops >&2; false"}).json()
    assert (r["stdout"], r["stderr"], r["exitCode"]) == ("7\n/tmp\n", "oops\n", 1)
    assert r["output"] == "7\n/tmp\noops\n"
    syntax = http.post(f"{base}/dev/exec", json={"command": "echo 'unbalanced"}).json()
    assert syntax["exitCode"] == 2 and syntax["stderr"]  # the session survives a syntax error
    assert http.post(f"{base}/dev/exec", json={"command": "echo $X"}).json()["stdout"] == "7\n"
    cmds = http.get(f"{base}/dev").json()["commands"]
    assert [c["command"] for c in cmds][:2] == ["export X=7; cd /tmp", "echo $X; pwd; echo oops >&2; false"]
    assert [s["sessionId"] for s in http.get(base).json()] == ["dev"]
    assert http.delete(f"{base}/dev").status_code == 204
    assert http.get(f"{base}/dev").json()["code"] == "SESSION_NOT_FOUND"


def test_background_command_logs_replay_and_follow(http, server, box_id):
    base = f"toolbox/{box_id}/process/session"
    http.post(base, json={"sessionId": "bg"})
    r = http.post(
        f"{base}/bg/exec",
        json={
            "command": "for i in 1 2 3 4; do echo tick $i; sleep 0.25; done; echo done >&2",
            "runAsync": True,
        },
    )
    assert r.status_code == 202
    cid = r.json()["cmdId"]
    time.sleep(0.4)
    early = http.get(f"{base}/bg/command/{cid}/logs").json()
    assert early["stdout"].startswith("tick 1\n") and early["nextOffset"] > 0
    # follow replays from the start, then streams live until the command ends
    frames = follow(server, f"{base}/bg/command/{cid}/logs?follow=true")
    assert b"".join(d for s, d in frames if s == "stdout") == b"tick 1\ntick 2\ntick 3\ntick 4\n"
    assert frames[-1] == ("stderr", b"done\n")
    assert http.get(f"{base}/bg/command/{cid}").json()["exitCode"] == 0
    # replay from any offset: the rest after the first answer
    rest = http.get(f"{base}/bg/command/{cid}/logs", params={"offset": early["nextOffset"]}).json()
    assert early["stdout"] + rest["stdout"] == "tick 1\ntick 2\ntick 3\ntick 4\n"
    tail = follow(server, f"{base}/bg/command/{cid}/logs?follow=true&offset={early['nextOffset']}")
    assert b"".join(d for _, d in tail).startswith(b"tick")


def test_input_signals_and_sigterm_escalation(http, box_id):
    base = f"toolbox/{box_id}/process/session"
    http.post(base, json={"sessionId": "io"})
    cid = http.post(
        f"{base}/io/exec", json={"command": "read line; echo got:$line", "runAsync": True}
    ).json()["cmdId"]
    assert http.post(f"{base}/io/command/{cid}/input", json={"data": "hello\n"}).status_code == 204
    wait_exit(http, f"{base}/io/command/{cid}")
    assert http.get(f"{base}/io/command/{cid}/logs").json()["stdout"] == "got:hello\n"
    r = http.post(f"{base}/io/command/{cid}/input", json={"data": "late\n"})
    assert r.status_code == 410 and r.json()["code"] == "COMMAND_ALREADY_COMPLETED"
    # a command that ignores SIGTERM is killed after the grace period
    stubborn = http.post(
        f"{base}/io/exec", json={"command": "trap '' TERM; sleep 60", "runAsync": True}
    ).json()["cmdId"]
    time.sleep(0.3)
    t0 = time.monotonic()
    assert http.post(f"{base}/io/command/{stubborn}/signal", json={"signal": 15}).status_code == 204
    code = wait_exit(http, f"{base}/io/command/{stubborn}", within=10)
    assert code in (137, 143) and 2 < time.monotonic() - t0 < 9
    # the session goes on, and `exit` ends it with a clear error afterwards
    assert http.post(f"{base}/io/exec", json={"command": "echo alive"}).json()["stdout"] == "alive\n"
    assert http.post(f"{base}/io/exec", json={"command": "exit 5"}).json()["exitCode"] == 5
    r = http.post(f"{base}/io/exec", json={"command": "echo after"})
    assert r.status_code == 410 and r.json()["code"] == "SESSION_ENDED"


def test_binary_output_and_output_cap(http, box_id):
    base = f"toolbox/{box_id}/process/session"
    http.post(base, json={"sessionId": "bin"})
    r = http.post(f"{base}/bin/exec", json={"command": "printf 'a\\377b\\000c'"}).json()
    assert r["stdout"] == "a\ufffdb\x00c"  # not UTF-8: replaced in JSON, never an error
    big = http.post(f"{base}/bin/exec", json={"command": "head -c 30000000 /dev/zero | tr '\\0' x"}).json()
    assert big["truncated"] is True and len(big["stdout"]) == 10 << 20  # the server's default cap


def wait_exit(http, path: str, within: float = 10) -> int:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        code = http.get(path).json()["exitCode"]
        if code is not None:
            return int(code)
        time.sleep(0.1)
    raise AssertionError(f"{path} did not end")


def test_unknown_session_and_command(http, box_id):
    base = f"toolbox/{box_id}/process/session"
    r = http.post(f"{base}/nope/exec", json={"command": "true"})
    assert r.status_code == 404 and r.json()["code"] == "SESSION_NOT_FOUND"
    http.post(base, json={"sessionId": "s1"})
    r = http.get(f"{base}/s1/command/0123456789abcdef/logs")
    assert r.status_code == 404 and r.json()["code"] == "COMMAND_NOT_FOUND"
    r = http.post(base, json={"sessionId": "../x"})
    assert r.status_code == 400
    assert json.loads(r.text)["code"] == "VALIDATION_ERROR"


def test_trapped_term_reports_its_own_exit_and_early_stdin_close(http, box_id):
    base = f"toolbox/{box_id}/process/session"
    http.post(base, json={"sessionId": "tr"})
    cid = http.post(
        f"{base}/tr/exec",
        json={
            "command": "trap 'echo term; exit 9' TERM; echo ready; while true; do sleep 0.1; done",
            "runAsync": True,
        },
    ).json()["cmdId"]
    deadline = time.monotonic() + 10
    while "ready" not in http.get(f"{base}/tr/command/{cid}/logs").json()["stdout"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    http.post(f"{base}/tr/command/{cid}/signal", json={"signal": 15})
    assert wait_exit(http, f"{base}/tr/command/{cid}") == 9
    assert http.get(f"{base}/tr/command/{cid}/logs").json()["stdout"] == "ready\nterm\n"
    # stdin closed at once, before the job had opened it: the command still sees EOF and ends
    cat = http.post(f"{base}/tr/exec", json={"command": "cat; echo eof", "runAsync": True}).json()["cmdId"]
    assert http.post(f"{base}/tr/command/{cat}/input", json={"data": "x\n", "close": True}).status_code == 204
    assert wait_exit(http, f"{base}/tr/command/{cat}") == 0
    assert http.get(f"{base}/tr/command/{cat}/logs").json()["stdout"] == "x\neof\n"
    # input bytes that are not UTF-8 pass as \udcXX escapes
    raw = http.post(
        f"{base}/tr/exec", json={"command": "od -An -tx1 | tr -d ' \\n'", "runAsync": True}
    ).json()["cmdId"]
    body = b'{"data": "\\udcff\\udcfe", "close": true}'
    assert (
        http.post(
            f"{base}/tr/command/{raw}/input", content=body, headers={"content-type": "application/json"}
        ).status_code
        == 204
    )
    wait_exit(http, f"{base}/tr/command/{raw}")
    assert http.get(f"{base}/tr/command/{raw}/logs").json()["stdout"] == "fffe"
