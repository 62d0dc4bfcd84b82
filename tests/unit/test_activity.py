"""The host-side activity recorder without a host: rate limiting and drop reports, argv clipping, the decoding of
gVisor's trace messages (hand-encoded protobuf, field numbers of points/*.proto) and of proc connector events."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from sandburg.node import gvisortrace, procevents
from sandburg.node.activity import ARGV_LIMIT, Recorder, clip_argv


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def recorder(**kw: Any) -> tuple[Recorder, list[tuple[str, str, dict[str, Any]]], Clock]:
    out: list[tuple[str, str, dict[str, Any]]] = []
    clock = Clock()
    return Recorder(lambda s, t, p: out.append((s, t, p)), clock=clock, **kw), out, clock


def test_burst_then_rate_then_one_drop_report_per_interval() -> None:
    rec, out, clock = recorder(rate=10, burst=5, interval=1.0)
    for i in range(8):
        rec.write("a", f"/f{i}", 1)
    assert [p["path"] for _, t, p in out if t == "activity.write"] == [f"/f{i}" for i in range(5)]
    assert not [x for x in out if x[1] == "activity.dropped"]  # not before the interval
    clock.t += 1.0  # refills 10 (capped at the burst: 5); the report of the 3 dropped goes out first
    rec.write("a", "/g", 1)
    assert out[5] == ("a", "activity.dropped", {"count": 3, "reasons": ["rate-limit"], "intervalS": 1.0})
    assert out[6][2]["path"] == "/g"
    # another sandbox has its own bucket
    rec.exec("b", 7, ["ls"], "/", 0, "ls")
    assert out[-1] == (
        "b",
        "activity.exec",
        {"pid": 7, "source": "host", "argv": ["ls"], "cwd": "/", "uid": 0, "comm": "ls"},
    )


def test_tick_and_forget_report_drops_of_a_quiet_sandbox() -> None:
    rec, out, clock = recorder(rate=1, burst=1, interval=1.0)
    rec.write("a", "/1", 1)
    rec.write("a", "/2", 1)
    rec.tick()
    assert len(out) == 1
    clock.t += 1.5
    rec.tick()
    assert out[-1][1] == "activity.dropped" and out[-1][2]["count"] == 1
    rec.lost("a", 4, source="sentry")
    rec.forget("a")
    assert out[-1][2]["count"] == 4 and out[-1][2]["reasons"] == ["sentry"]
    rec.forget("a")  # idempotent, nothing more
    assert len(out) == 3


def test_exec_of_a_gone_process_and_long_argv() -> None:
    rec, out, _ = recorder()
    rec.exec("a", 9, None, None, None, None)
    assert out[-1][2]["argv"] is None and out[-1][2]["exited"] is True
    rec.exec("a", 9, ["x" * 3000, "y" * 3000, "z"], "/", 0, "x")
    assert out[-1][2]["argvTruncated"] is True
    assert sum(len(a) for a in out[-1][2]["argv"]) == ARGV_LIMIT
    assert clip_argv(["é" * 3000]) == (["é" * 2048], True)
    assert clip_argv(["a", "b"]) == (["a", "b"], False)


def test_an_emit_that_raises_does_not_propagate() -> None:
    def boom(*_: Any) -> None:
        raise RuntimeError("db gone")

    Recorder(boom).write("a", "/x", 1)


# -- gVisor trace messages -----------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _f(num: int, v: int | bytes | str) -> bytes:
    if isinstance(v, int):
        return _varint(num << 3) + _varint(v)
    raw = v.encode() if isinstance(v, str) else v
    return _varint(num << 3 | 2) + _varint(len(raw)) + raw


def _ctx(pid: int = 12, cwd: str = "/work", uid: int = 1000) -> bytes:
    creds = _f(1, uid) + _f(2, uid)
    return _f(1, 123) + _f(4, pid) + _f(6, "cid") + _f(7, creds) + _f(8, cwd) + _f(9, "sh")


def test_decode_execve_info() -> None:
    msg = _f(1, _ctx()) + _f(2, "/usr/bin/env") + _f(3, "env") + _f(3, "true-x") + _f(4, "SECRET=1")
    ev = gvisortrace.decode_exec(msg)
    assert ev["argv"] == ["env", "true-x"] and ev["pid"] == 12 and ev["cwd"] == "/work" and ev["uid"] == 1000
    assert ev["comm"] == "env" and "SECRET=1" not in str(ev)  # env is never requested nor kept


def test_decode_open_keeps_writes_only_and_resolves_relative_paths() -> None:
    exit_ok = _f(2, _f(1, 3))
    w = gvisortrace.decode_open(_f(1, _ctx()) + exit_ok + _f(4, -100) + _f(6, "out.txt") + _f(7, 0o1101))
    assert w is not None and w["path"] == "/work/out.txt" and w["pid"] == 12
    at = gvisortrace.decode_open(
        _f(1, _ctx()) + exit_ok + _f(4, 5) + _f(5, "/srv") + _f(6, "a/../b") + _f(7, 1)
    )
    assert at is not None and at["path"] == "/srv/b"
    unnamed = gvisortrace.decode_open(
        _f(1, _ctx()) + exit_ok + _f(4, 5) + _f(5, "[err: FD not found]") + _f(6, "b") + _f(7, 1)
    )
    assert unnamed is not None and unnamed["path"] == "<fd 5>/b"
    assert gvisortrace.decode_open(_f(1, _ctx()) + exit_ok + _f(6, "/etc/passwd") + _f(7, 0)) is None  # read
    failed = _f(2, _f(1, -13))
    assert gvisortrace.decode_open(_f(1, _ctx()) + failed + _f(6, "/x") + _f(7, 0o101)) is None
    zero_fd = _f(2, b"")  # a zero result is left out by proto3
    assert gvisortrace.decode_open(_f(1, _ctx(uid=0)) + zero_fd + _f(6, "/x") + _f(7, 2)) == {
        "pid": 12, "container": "cid", "uid": 0, "cwd": "/work", "comm": "sh", "path": "/x",
    }  # fmt: skip


def test_hostile_messages_raise_value_error() -> None:
    for bad in (b"\x0a\x05ab", b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", b"\x0b"):
        try:
            list(gvisortrace.fields(bad))
        except ValueError:
            continue
        raise AssertionError(bad)


def test_session_config_names_the_points_and_the_socket() -> None:
    conf = gvisortrace.session_config("/b/trace.sock")["trace_session"]
    assert {p["name"] for p in conf["points"]} == {
        "sentry/execve", "syscall/open/exit", "syscall/openat/exit", "syscall/creat/exit",
    }  # fmt: skip
    assert conf["sinks"] == [{"name": "remote", "config": {"endpoint": "/b/trace.sock", "retries": 0}}]


# -- proc connector ------------------------------------------------------------------------------------------
def _proc_msg(what: int, data: bytes) -> bytes:
    ev = struct.pack("=IIQ", what, 0, 0) + data
    cn = struct.pack("=IIIIHH", 1, 1, 0, 0, len(ev), 0) + ev
    return struct.pack("=IHHII", 16 + len(cn), 3, 0, 0, 0) + cn


def test_parse_proc_events() -> None:
    buf = (
        _proc_msg(procevents.PROC_EVENT_FORK, struct.pack("=IIII", 10, 10, 11, 11))
        + _proc_msg(procevents.PROC_EVENT_EXEC, struct.pack("=II", 11, 11))
        + _proc_msg(procevents.PROC_EVENT_EXIT, struct.pack("=IIIIII", 11, 11, 0, 17, 10, 10))
        + _proc_msg(0x200, b"\0" * 24)  # comm: ignored
    )
    assert procevents.parse_proc_events(buf) == [
        (procevents.PROC_EVENT_FORK, (10, 10, 11, 11)),
        (procevents.PROC_EVENT_EXEC, (11, 11)),
        (procevents.PROC_EVENT_EXIT, (11, 11)),
    ]
    assert procevents.parse_proc_events(b"\x01\x00") == []


def test_the_setting_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from sandburg.server.config import Settings

    monkeypatch.delenv("SANDBURG_ACTIVITY", raising=False)
    assert Settings.from_env().activity is True
    for off in ("0", "off", "false", "no"):
        monkeypatch.setenv("SANDBURG_ACTIVITY", off)
        assert Settings.from_env().activity is False


def test_tracer_speaks_the_remote_sink_protocol(tmp_path: Any) -> None:
    """A fake Sentry on the tracer's socket: handshake, an exec, a message that does not decode (counted, the
    connection kept), a write, the Sentry's own drop count; unwatch removes the socket."""
    import json
    import socket
    import time

    out: list[tuple[str, str, dict[str, Any]]] = []
    tracer = gvisortrace.GvisorTracer(Recorder(lambda s, t, p: out.append((s, t, p)), interval=0.0))
    try:
        flags = tracer.prepare("sb1", str(tmp_path))
        conf = json.loads((tmp_path / "trace.json").read_text())
        assert flags == [f"--pod-init-config={tmp_path / 'trace.json'}"]
        endpoint = conf["trace_session"]["sinks"][0]["config"]["endpoint"]
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sentry:
            sentry.settimeout(5)
            sentry.connect(endpoint)
            sentry.send(_f(1, 2))  # Handshake{version: 2}
            assert sentry.recv(64) == _f(1, 2)

            def send(mtype: int, body: bytes, dropped: int = 0) -> None:
                sentry.send(struct.pack("<HHI", 8, mtype, dropped) + body)

            send(
                gvisortrace.MESSAGE_SENTRY_EXEC, _f(1, _ctx()) + _f(2, "/bin/ls") + _f(3, "ls") + _f(3, "-l")
            )
            send(gvisortrace.MESSAGE_SENTRY_EXEC, b"\x0a\x7f")  # a cut message
            send(
                gvisortrace.MESSAGE_SYSCALL_OPEN,
                _f(1, _ctx()) + _f(2, b"") + _f(6, "/w/f") + _f(7, 1),
                dropped=3,
            )
            deadline = time.monotonic() + 5
            while (
                len([x for x in out if x[1] != "activity.dropped"]) < 2
                or sum(x[2]["count"] for x in out if x[1] == "activity.dropped") < 4
            ):
                assert time.monotonic() < deadline, out
                time.sleep(0.05)
        assert ("sb1", "activity.exec") in [(s, t) for s, t, _ in out]
        assert [p["argv"] for _, t, p in out if t == "activity.exec"] == [["ls", "-l"]]
        assert [p["path"] for _, t, p in out if t == "activity.write"] == ["/w/f"]
        reasons = {r for _, t, p in out if t == "activity.dropped" for r in p["reasons"]}
        assert reasons == {"undecodable", "sentry"}
        tracer.unwatch("sb1")
        assert not (tmp_path / "trace.sock").exists()
    finally:
        tracer.close()
