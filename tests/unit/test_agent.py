"""The toolbox agent, run for real as a host subprocess (`python -S agent.py`), driven through AgentClient."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import resource
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sandburg.agent import protocol as P
from sandburg.node.agent_client import AgentClient, AgentError, AgentUnavailable, ExecResult, wait_ready

AGENT = Path(__file__).resolve().parents[2] / "sandburg" / "agent" / "agent.py"
T = TypeVar("T")


@dataclass
class Agent:
    proc: subprocess.Popen[bytes]
    sock: str
    workdir: Path
    baseline: tuple[int, int] = (0, 0)  # open fds and threads of the idle agent

    def run(self, fn: Callable[[AgentClient], Awaitable[T]]) -> T:
        """asyncio.run(fn(client)) with a fresh client, closed afterwards."""

        async def main() -> T:
            async with AgentClient(self.sock) as client:
                return await fn(client)

        return asyncio.run(main())


def start_agent(base: Path, extra_env: dict[str, str] | None = None) -> Agent:
    workdir = base / "ws"
    workdir.mkdir()
    sock = str(base / "agent.sock")
    env = dict(os.environ, SANDBURG_AGENT_SOCKET=sock, SANDBURG_WORKDIR=str(workdir), **(extra_env or {}))
    # -E -S as in the runtime layer: the agent's own interpreter ignores PYTHON* (the children's env is scrubbed)
    proc = subprocess.Popen([sys.executable, "-E", "-S", str(AGENT)], env=env, cwd="/")
    deadline = time.monotonic() + 5
    while True:
        try:
            wait_ready(sock, 0.1)
            break
        except AgentUnavailable:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_agent(proc)
                raise
    time.sleep(0.02)  # the probe's connection thread ends
    wait_for_warm_shell(proc.pid)
    return Agent(proc, sock, workdir, proc_counts(proc.pid))


def warm_shells(pid: int) -> list[int]:
    """The agent's idle warm shells (children blocked sourcing their script from fd 3)."""
    out = []
    for child, _state in children(pid):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if b"/proc/self/fd/3" in f.read():
                    out.append(child)
        except OSError:
            continue
    return out


def wait_for_warm_shell(pid: int, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not warm_shells(pid):
        assert time.monotonic() < deadline, "the agent started no warm shell"
        time.sleep(0.005)


def stop_agent(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    a = start_agent(
        tmp_path_factory.mktemp("agent"),
        {
            "SANDBURG_SECRET": "s3cret",
            "PYTHONPATH": "/nowhere",
            "PYTHONHOME": "/nowhere",
            "AGENT_TEST_MARK": "1",
        },
    )
    yield a
    stop_agent(a.proc)


@pytest.fixture
def own_agent(tmp_path: Path) -> Iterator[Agent]:
    """An agent for a test that changes its process (limits, signals)."""
    a = start_agent(tmp_path)
    yield a
    stop_agent(a.proc)


def gone(pid: int, within: float = 2.0) -> bool:
    """The process has exited (a zombie waiting for an unrelated reaper counts as exited)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except (FileNotFoundError, ProcessLookupError):
            return True  # gone between open() and read(): /proc raises ESRCH then
        time.sleep(0.01)
    return False


def children(pid: int) -> list[tuple[int, str]]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append((int(d), fields[0]))
    return out


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def collect(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in it])


def agent_error(agent: Agent, fn: Callable[[AgentClient], Awaitable[Any]]) -> AgentError:
    with pytest.raises(AgentError) as info:
        agent.run(fn)
    return info.value


# -- ping and exec ------------------------------------------------------------------------------------------


def test_ping(agent: Agent) -> None:
    res = agent.run(lambda c: c.ping())
    assert res["ok"] is True
    assert res["pid"] == agent.proc.pid
    assert res["version"] == P.VERSION


def test_exec_exit_codes_and_streams(agent: Agent) -> None:
    async def go(c: AgentClient) -> list[ExecResult]:
        return [
            await c.exec("echo out; echo err >&2; exit 7"),
            await c.exec("kill -TERM $$"),
            await c.exec(argv=["/bin/sh", "-c", "printf '%s|' \"$@\"", "sh", "a b", "c"]),
            await c.exec(argv=["true"]),
        ]

    r1, r2, r3, r4 = agent.run(go)
    assert (r1.exit_code, r1.stdout, r1.stderr, r1.timed_out, r1.truncated) == (
        7,
        b"out\n",
        b"err\n",
        False,
        False,
    )
    assert r1.duration_ms > 0
    assert r2.exit_code == 128 + signal.SIGTERM
    assert (r3.exit_code, r3.stdout) == (0, b"a b|c|")
    assert r4.exit_code == 0
    err = agent_error(agent, lambda c: c.exec(argv=["no-such-program-here"]))
    assert err.code == "FILE_NOT_FOUND"


def test_exec_env_merge_and_cwd(agent: Agent) -> None:
    sub = agent.workdir / "cwd-test"
    sub.mkdir()

    async def go(c: AgentClient) -> list[ExecResult]:
        return [
            await c.exec('printf "%s/%s" "$FOO" "$AGENT_TEST_MARK"', env={"FOO": "bar baz"}),
            await c.exec("pwd"),
            await c.exec("pwd", cwd="cwd-test"),
            await c.exec("pwd", cwd=str(sub)),
        ]

    env, default, rel, absolute = agent.run(go)
    assert env.stdout == b"bar baz/1"
    assert default.stdout.decode().strip() == str(agent.workdir)
    assert rel.stdout.decode().strip() == absolute.stdout.decode().strip() == str(sub)
    assert agent_error(agent, lambda c: c.exec("pwd", cwd="missing-dir")).code == "FILE_NOT_FOUND"


def test_exec_env_scrubbed(agent: Agent) -> None:
    res = agent.run(lambda c: c.exec("env"))
    names = {line.split("=", 1)[0] for line in res.stdout.decode().splitlines() if "=" in line}
    assert "AGENT_TEST_MARK" in names
    assert not {n for n in names if n.startswith("SANDBURG_")}
    assert "PYTHONPATH" not in names and "PYTHONHOME" not in names


def test_exec_non_utf8_bytes(agent: Agent) -> None:
    res = agent.run(lambda c: c.exec(r"printf '\377\376\000\200ok'; printf '\300' >&2"))
    assert res.stdout == b"\xff\xfe\x00\x80ok"
    assert res.stderr == b"\xc0"


def test_exec_stdin(agent: Agent) -> None:
    data = os.urandom(
        3 << 20
    )  # more than the pipes and socket buffers hold: stdin and output must interleave
    res = agent.run(lambda c: c.exec(argv=["cat"], stdin=data))
    assert res.exit_code == 0 and res.stdout == data
    assert agent.run(lambda c: c.exec("cat")).stdout == b""  # stdin is /dev/null by default


def test_timeout_kills_process_group(agent: Agent) -> None:
    t0 = time.monotonic()
    res = agent.run(lambda c: c.exec("sleep 30 & echo $!; wait", timeout=0.3))
    assert time.monotonic() - t0 < 1.5
    assert res.timed_out is True and res.exit_code == 137
    assert gone(int(res.stdout))  # the background child of the shell, killed with the whole group


def test_client_disconnect_kills_command(agent: Agent) -> None:
    async def go(c: AgentClient) -> list[int]:
        async with c.exec_stream("echo $$; sleep 30 & echo $!; wait") as proc:
            out = b""
            async for _name, chunk in proc:
                out += chunk
                if out.count(b"\n") == 2:
                    break  # leave the block while the command runs: the connection is dropped
        return [int(x) for x in out.split()]

    pids = agent.run(go)
    assert all(gone(pid) for pid in pids)


def test_signal_frame(agent: Agent) -> None:
    async def go(c: AgentClient) -> ExecResult:
        async with c.exec_stream("echo ready; sleep 30") as proc:
            async for _name, _chunk in proc:
                await proc.send_signal(signal.SIGTERM)
        return proc.result

    res = agent.run(go)
    assert res.exit_code == 128 + signal.SIGTERM and not res.timed_out


def test_max_output_truncates_without_buffering(agent: Agent) -> None:
    before = rss_kib(agent.proc.pid)
    res = agent.run(
        lambda c: c.exec(
            "head -c 200000000 /dev/zero; head -c 5000 /dev/zero >&2; echo done >&2", max_output=1000
        )
    )
    assert res.exit_code == 0 and res.truncated is True
    assert res.stdout == b"\0" * 1000 and res.stderr == b"\0" * 1000
    assert rss_kib(agent.proc.pid) - before < 20_000  # 200 MB went through without being kept
    small = agent.run(lambda c: c.exec("printf 12345", max_output=5))
    assert small.stdout == b"12345" and small.truncated is False


def test_streaming_yields_before_the_end(agent: Agent) -> None:
    async def go(c: AgentClient) -> tuple[float, list[tuple[str, bytes]], float]:
        t0 = time.monotonic()
        first_at = 0.0
        events: list[tuple[str, bytes]] = []
        async with c.exec_stream("echo first; sleep 0.5; echo second >&2") as proc:
            async for name, chunk in proc:
                if not events:
                    first_at = time.monotonic() - t0
                    with pytest.raises(RuntimeError):
                        proc.result  # noqa: B018 - not finished yet
                events.append((name, chunk))
        return first_at, events, time.monotonic() - t0

    first_at, events, total = agent.run(go)
    assert events == [("stdout", b"first\n"), ("stderr", b"second\n")]
    assert first_at < 0.4 <= 0.5 <= total


def test_background_grandchild_does_not_hang_exec(agent: Agent) -> None:
    t0 = time.monotonic()
    res = agent.run(lambda c: c.exec("echo $$; (sleep 3; echo late) & echo done"))
    assert time.monotonic() - t0 < 1.0
    pgid, done = res.stdout.split()
    assert done == b"done" and res.exit_code == 0
    os.killpg(int(pgid), signal.SIGKILL)


def test_concurrent_execs_on_one_client(agent: Agent) -> None:
    async def go(c: AgentClient) -> tuple[list[ExecResult], int]:
        results = await asyncio.gather(*(c.exec(f"sleep 0.3; echo {i}") for i in range(20)))
        return list(results), len(c._idle)

    t0 = time.monotonic()
    results, idle = agent.run(go)
    assert time.monotonic() - t0 < 1.5  # they ran side by side
    assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(20)]
    assert idle <= 4
    time.sleep(0.05)
    assert [pid for pid, state in children(agent.proc.pid) if state == "Z"] == []


def test_pool_reuses_connections_and_drops_abandoned_ones(agent: Agent) -> None:
    (agent.workdir / "pool.bin").write_bytes(os.urandom(1 << 20))

    async def go(c: AgentClient) -> None:
        await c.ping()
        first = c._idle[0]
        await c.ping()
        assert c._idle == [first]
        reader = c.read_file("pool.bin")
        assert len(await reader.__anext__()) > 0
        assert c._idle == []  # in use
        await reader.aclose()  # abandoned mid-file: aborted, not pooled
        assert c._idle == []
        assert (await c.exec("echo ok")).stdout == b"ok\n"

    agent.run(go)


# -- files --------------------------------------------------------------------------------------------------


def test_write_read_roundtrip_binary(agent: Agent) -> None:
    data = bytes(range(256)) * 1000

    async def go(c: AgentClient) -> tuple[int, bytes, dict[str, Any]]:
        size = await c.write_file("rt/bin.dat", data, mode=0o600)
        return size, await collect(c.read_file("rt/bin.dat")), await c.stat("rt/bin.dat")

    size, back, info = agent.run(go)
    assert size == len(data) and back == data
    assert stat.S_IMODE(info["mode"]) == 0o600
    assert (agent.workdir / "rt" / "bin.dat").read_bytes() == data
    assert agent.run(lambda c: c.write_file("rt/empty", b"")) == 0
    assert agent.run(lambda c: collect(c.read_file("rt/empty"))) == b""


def test_large_file_roundtrip(agent: Agent) -> None:
    data = os.urandom(20 << 20)

    async def chunks() -> AsyncIterator[bytes]:
        step = (3 << 20) + 1  # larger than a frame: the client splits it
        for i in range(0, len(data), step):
            yield data[i : i + step]
            yield b""  # an empty chunk must not end the upload

    async def go(c: AgentClient) -> tuple[int, str]:
        size = await c.write_file("big/file.bin", chunks())
        h = hashlib.sha256()
        async for chunk in c.read_file("big/file.bin"):
            assert len(chunk) <= P.MAX_PAYLOAD
            h.update(chunk)
        return size, h.hexdigest()

    size, digest = agent.run(go)
    assert size == len(data)
    assert digest == hashlib.sha256(data).hexdigest()


def test_write_creates_missing_directories(agent: Agent) -> None:
    agent.run(lambda c: c.write_file("deep/er/than/before.txt", b"hi"))
    assert (agent.workdir / "deep/er/than/before.txt").read_bytes() == b"hi"
    err = agent_error(agent, lambda c: c.write_file("nodir/x.txt", b"hi", mkdirs=False))
    assert err.code == "FILE_NOT_FOUND"


def test_file_errors(agent: Agent) -> None:
    (agent.workdir / "adir").mkdir()
    (agent.workdir / "afile").write_bytes(b"x")
    climb = "/".join([".."] * (len(agent.workdir.parts) + 1))

    async def first_chunk(c: AgentClient, path: str) -> bytes:
        return await c.read_file(path).__anext__()  # the error comes before any chunk

    cases = [
        (lambda c: first_chunk(c, "missing.txt"), "FILE_NOT_FOUND"),
        (lambda c: first_chunk(c, climb + "/etc/passwd"), "INVALID_FILE_PATH"),
        (lambda c: first_chunk(c, "a\0b"), "INVALID_FILE_PATH"),
        (lambda c: first_chunk(c, "adir"), "IS_A_DIRECTORY"),
        (lambda c: c.list("afile"), "NOT_A_DIRECTORY"),
        (lambda c: c.stat("missing.txt"), "FILE_NOT_FOUND"),
        (lambda c: c.write_file("adir", b"x"), "IS_A_DIRECTORY"),
        (lambda c: c.write_file(climb, b"x"), "INVALID_FILE_PATH"),
    ]
    for fn, code in cases:
        assert agent_error(agent, fn).code == code
    assert agent.run(lambda c: c.stat("/")) ["path"] == "/"  # fmt: skip


def upload_temps(root: Path) -> list[Path]:
    return list(root.rglob(".sandburg-upload-*"))


def test_failed_upload_leaves_nothing_and_keeps_the_connection(agent: Agent) -> None:
    (agent.workdir / "parent-file").write_bytes(b"x")

    async def go(c: AgentClient) -> str:
        with pytest.raises(AgentError) as info:
            await c.write_file("parent-file/child.txt", os.urandom(3 << 20))
        assert len(c._idle) == 1  # the agent read the data to its end: the connection is still in step
        assert (await c.ping())["ok"]
        return info.value.code

    assert agent.run(go) == "NOT_A_DIRECTORY"
    assert upload_temps(agent.workdir) == []


def test_upload_failing_midway_removes_its_temp_file(own_agent: Agent) -> None:
    resource.prlimit(own_agent.proc.pid, resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    err = agent_error(own_agent, lambda c: c.write_file("quota/f.bin", os.urandom(3 << 20)))
    assert err.code == "DISK_QUOTA_EXCEEDED" and "too large" in err.message  # EFBIG
    assert upload_temps(own_agent.workdir) == []
    assert not (own_agent.workdir / "quota/f.bin").exists()


def test_upload_abandoned_by_the_client_removes_its_temp_file(agent: Agent) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        await asyncio.sleep(0.05)  # let the agent create its temp file
        raise OSError("the client's source failed")

    with pytest.raises(OSError, match="source failed"):
        agent.run(lambda c: c.write_file("abandon/f.txt", chunks()))
    deadline = time.monotonic() + 1
    while upload_temps(agent.workdir) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert upload_temps(agent.workdir) == []
    assert not (agent.workdir / "abandon/f.txt").exists()


def test_list_and_stat_fields(agent: Agent) -> None:
    d = agent.workdir / "listing"
    d.mkdir()
    (d / "b.txt").write_bytes(b"12345")
    (d / "a-dir").mkdir()
    (d / "c-link").symlink_to("a-dir")
    (d / "d-dangling").symlink_to("nowhere")
    me = pwd.getpwuid(os.getuid()).pw_name

    entries = agent.run(lambda c: c.list("listing"))
    assert [e["name"] for e in entries] == ["a-dir", "b.txt", "c-link", "d-dangling"]
    by = {e["name"]: e for e in entries}
    f = by["b.txt"]
    st = os.lstat(d / "b.txt")
    assert f == {
        "name": "b.txt", "path": str(d / "b.txt"), "is_dir": False, "size": 5, "mode": st.st_mode,
        "mtime": st.st_mtime, "owner": me, "group": f["group"], "link_target": None,
    }  # fmt: skip
    assert isinstance(f["group"], str) and f["group"]
    assert by["a-dir"]["is_dir"] is True and stat.S_ISDIR(by["a-dir"]["mode"])
    assert by["c-link"]["link_target"] == "a-dir" and by["c-link"]["is_dir"] is True
    assert stat.S_ISLNK(by["c-link"]["mode"])
    assert by["d-dangling"]["link_target"] == "nowhere" and by["d-dangling"]["is_dir"] is False
    info = agent.run(lambda c: c.stat(str(d / "a-dir")))
    assert info["name"] == "a-dir" and info["is_dir"] is True and info["path"] == str(d / "a-dir")


# -- protocol edges and lifecycle ---------------------------------------------------------------------------


def raw_call(sock_path: str, payload: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(sock_path)
        P.send_frame(s, P.REQUEST, payload)
        frame = P.FrameReader(s).read()
    assert frame is not None and frame[0] == P.RESULT
    res = P.loads(frame[1])
    assert isinstance(res, dict)
    return res


def test_bad_requests(agent: Agent) -> None:
    for payload in [b"{nope", b"[1]", b'{"op": "fly"}', b'{"op": "exec", "command": "x", "argv": ["x"]}',
                    b'{"op": "exec", "command": "true", "timeout": "soon"}', b'{"op": "exec", "argv": ["a\\u0000"]}',
                    b'{"op": "exec", "command": "true", "env": {"A": 1}}']:  # fmt: skip
        res = raw_call(agent.sock, payload)
        assert (res["ok"], res["code"]) == (False, "BAD_REQUEST"), payload


def test_late_control_frames_are_ignored(agent: Agent) -> None:
    # A signal or stdin sent just as the command ended reaches the agent after its R: the connection stays usable.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(agent.sock)
        reader = P.FrameReader(s)
        P.send_frame(s, P.REQUEST, b'{"op": "exec", "command": "true"}')
        assert (frame := reader.read()) is not None and frame[0] == P.RESULT
        P.send_frame(s, P.SIGNAL, b'{"signal": 15}')
        P.send_frame(s, P.STDIN, b"late")
        P.send_frame(s, P.REQUEST, b'{"op": "ping"}')
        assert (frame := reader.read()) is not None and frame[0] == P.RESULT
        assert P.loads(frame[1]) == {"ok": True, "version": P.VERSION, "pid": agent.proc.pid}


def test_unreachable_agent(tmp_path: Path) -> None:
    with pytest.raises(AgentUnavailable):
        wait_ready(str(tmp_path / "none.sock"), 0.05)

    async def go() -> None:
        async with AgentClient(str(tmp_path / "none.sock")) as c:
            await c.ping()

    with pytest.raises(AgentUnavailable):
        asyncio.run(go())


def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "agent.sock").write_bytes(b"left over")
    a = start_agent(tmp_path)
    try:
        assert a.run(lambda c: c.ping())["pid"] == a.proc.pid
    finally:
        stop_agent(a.proc)


def proc_counts(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/status") as f:
        threads = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    return len(os.listdir(f"/proc/{pid}/fd")), threads


def test_warm_shell_semantics(agent: Agent) -> None:
    async def go(c: AgentClient) -> list[ExecResult]:
        return [
            await c.exec("exit 3"),
            await c.exec("echo 'unbalanced"),  # a syntax error: the shell's status 2, as with `sh -c`
            await c.exec('pwd; echo "$Q"', cwd="/tmp", env={"Q": "it's $HOME"}),
            await c.exec("echo $((1+1))\necho second line"),
            await c.exec("echo ${A-B:-unset}", env={"A-B": "x"}),  # not a shell name: the cold path
        ]

    r = agent.run(go)
    assert r[0].exit_code == 3
    assert r[1].exit_code == 2
    assert r[2].stdout == b"/tmp\nit's $HOME\n"
    assert r[3].stdout == b"2\nsecond line\n"
    assert r[4].exit_code == 0


def test_warm_shell_killed_from_inside_is_replaced(agent: Agent) -> None:
    wait_for_warm_shell(agent.proc.pid)
    victims = warm_shells(agent.proc.pid)
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    assert all(gone(pid) for pid in victims)
    r = agent.run(lambda c: c.exec("echo still works"))
    assert r.stdout == b"still works\n"
    wait_for_warm_shell(agent.proc.pid)


def test_zz_no_leaked_fds_threads_or_zombies(agent: Agent) -> None:
    # runs last in this module: everything above (timeouts, disconnects, failed uploads) has released its resources
    deadline = time.monotonic() + 2
    while proc_counts(agent.proc.pid) != agent.baseline and time.monotonic() < deadline:
        time.sleep(0.01)
    wait_for_warm_shell(agent.proc.pid)
    while proc_counts(agent.proc.pid) != agent.baseline and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc_counts(agent.proc.pid) == agent.baseline
    # nothing but the one idle warm shell waiting for the next exec
    assert [pid for pid, _ in children(agent.proc.pid)] == warm_shells(agent.proc.pid)
    assert len(warm_shells(agent.proc.pid)) == 1


def test_sigterm_kills_commands_and_exits_zero(own_agent: Agent) -> None:
    async def go(c: AgentClient) -> int:
        async with c.exec_stream("sleep 30 & echo $!; wait") as proc:
            async for _name, chunk in proc:
                own_agent.proc.send_signal(signal.SIGTERM)
                return int(chunk)
        raise AssertionError("no output")

    sleeper = own_agent.run(go)
    assert own_agent.proc.wait(2) == 0
    assert gone(sleeper)
    assert not os.path.exists(own_agent.sock)
