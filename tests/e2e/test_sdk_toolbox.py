"""The SDK's sessions, streams and file system methods against the real server, on both tiers, through
``Sandburg`` and ``AsyncSandburg`` (driven with ``asyncio.run``, no async test plugin).

One debian-12 sandbox per tier for the module (python3, bash, nobody/nogroup); every test works in its own
session or directory. The raw wire of the same routes is tested in test_sessions.py, test_streams.py and
test_files.py; here it is what the SDK makes of it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Iterator

import pytest

from sandburg import (
    AsyncCommand,
    AsyncSandburg,
    AuthenticationError,
    BadRequestError,
    Command,
    CommandInfo,
    ConflictError,
    ExecStreamResult,
    FileExistsInSandboxError,
    FileNotFoundInSandboxError,
    Logs,
    OutputChunk,
    ReplaceResult,
    Sandbox,
    SandboxNotRunningError,
    Sandburg,
    SessionCommandResult,
    SessionEndedError,
    SessionExistsError,
    SessionNotFoundError,
)
from tests.e2e.conftest import TIERS

TICKS = "for i in 1 2 3 4; do echo tick $i; sleep 0.3; done; echo done >&2"
TRAP = "trap 'echo term; exit 9' TERM; echo ready; while true; do sleep 0.1; done"


@pytest.fixture(scope="module", params=TIERS)
def box(sb: Sandburg, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    b = sb.create(image="debian-12", isolation=request.param, labels={"test": "test_sdk_toolbox"})
    try:
        yield b
    finally:
        b.delete()


@pytest.fixture
def d(box: Sandbox, request: pytest.FixtureRequest) -> str:
    """A fresh directory in the sandbox for one test."""
    path = f"/workspace/{request.node.originalname}-{uuid.uuid4().hex[:6]}"
    box.fs.mkdir(path)
    return path


def uid() -> str:
    return uuid.uuid4().hex[:8]


def joined(chunks: Iterable[OutputChunk], stream: str) -> bytes:
    return b"".join(c.data for c in chunks if c.stream == stream)


def wait_ready(cmd: Command, within: float = 15) -> None:
    """Until the command has written "ready": then its stdin is open (closing it earlier can leave the
    command waiting for a writer forever, see the report on the agent's stdin FIFO)."""
    deadline = time.monotonic() + within
    while "ready" not in cmd.logs().stdout:
        assert time.monotonic() < deadline, f"command {cmd.command!r} did not get ready"
        time.sleep(0.1)


def wait_end(cmd: Command, within: float = 15) -> int:
    deadline = time.monotonic() + within
    while True:
        cmd.refresh()
        if cmd.exit_code is not None:
            return cmd.exit_code
        assert time.monotonic() < deadline, f"command {cmd.command!r} did not end"
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------- sessions


def test_session_keeps_state(box: Sandbox) -> None:
    s = box.process.create_session(f"dev-{uid()}")
    assert s.commands == []
    with pytest.raises(SessionExistsError):
        box.process.create_session(s.id)
    assert s.exec("export X=7; cd /tmp").exit_code == 0
    r = s.exec("echo $X; pwd; echo oops >&2; false")
    assert isinstance(r, SessionCommandResult) and r.cmd_id
    assert (r.exit_code, r.stdout, r.stderr, r.output, r.truncated) == (
        1,
        "7\n/tmp\n",
        "oops\n",
        "7\n/tmp\noops\n",
        False,
    )
    assert s.exec("echo $X").stdout == "7\n"
    s.refresh()
    assert [c.command for c in s.commands] == [
        "export X=7; cd /tmp",
        "echo $X; pwd; echo oops >&2; false",
        "echo $X",
    ]
    assert [c.exit_code for c in s.commands] == [0, 1, 0] and not any(c.background for c in s.commands)
    got = box.process.get_session(s.id)
    assert got == s and got.commands[1].id == r.cmd_id
    assert s.id in [x.id for x in box.process.list_sessions()]
    assert s.exec("exit 5").exit_code == 5
    with pytest.raises(SessionEndedError):  # the shell has exited: the session takes no more commands
        s.exec("echo after")
    s.delete()
    with pytest.raises(SessionNotFoundError):
        box.process.get_session(s.id)
    with pytest.raises(SessionNotFoundError):
        s.exec("true")
    other = box.process.create_session(f"other-{uid()}")
    box.process.delete_session(other.id)
    assert other.id not in [x.id for x in box.process.list_sessions()]


def test_background_command_logs_replay_then_follow(sb: Sandburg, box: Sandbox) -> None:
    s = box.process.create_session(f"bg-{uid()}")
    cmd = s.exec(TICKS, background=True)
    assert isinstance(cmd, Command) and cmd.id and cmd.session_id == s.id
    assert (cmd.exit_code, cmd.status, cmd.is_running, cmd.background) == (None, "running", True, True)
    time.sleep(0.45)
    early = cmd.logs()
    assert isinstance(early, Logs) and early.stdout.startswith("tick 1\n") and early.next_offset > 0
    cmd.refresh()
    assert cmd.exit_code is None  # still running: what follows is partly replayed, partly live
    stamps: list[float] = []
    chunks = []
    for chunk in cmd.logs(follow=True):
        stamps.append(time.monotonic())
        chunks.append(chunk)
    assert joined(chunks, "stdout") == b"tick 1\ntick 2\ntick 3\ntick 4\n"
    assert chunks[-1] == OutputChunk("stderr", b"done\n") and tuple(chunks[-1]) == ("stderr", b"done\n")
    assert stamps[-1] - stamps[0] > 0.4  # the live part arrived as it was written
    cmd.refresh()
    assert (cmd.exit_code, cmd.status, cmd.is_running) == (0, "exited", False)
    assert cmd.started_at is not None and cmd.ended_at is not None
    rest = cmd.logs(offset=early.next_offset)
    assert early.stdout + rest.stdout == "tick 1\ntick 2\ntick 3\ntick 4\n" and rest.stderr == "done\n"
    assert cmd.logs(offset=rest.next_offset) == Logs("", "", "", rest.next_offset, False)
    # following from an offset, as a context manager: the rest only; a finished command just replays
    with cmd.follow_logs(early.next_offset) as stream:
        tail = list(stream)
    assert joined(tail, "stdout") == rest.stdout.encode()
    # the same command found again by id
    again = s.get_command(cmd.id)
    assert (again.id, again.command, again.exit_code, again.background) == (cmd.id, TICKS, 0, True)
    with pytest.raises(SessionNotFoundError):
        s.get_command("0123456789abcdef")
    with pytest.raises(SessionNotFoundError):  # refused at the WebSocket handshake, mapped as over REST
        list(Command(sb, box.id, s.id, CommandInfo(id="0123456789abcdef")).logs(follow=True))
    with pytest.raises(ValueError, match="offset"):
        cmd.logs(offset=-1)
    s.delete()


def test_background_command_input_and_signals(box: Sandbox) -> None:
    s = box.process.create_session(f"io-{uid()}")
    reader = s.exec("read line; echo got:$line", background=True)
    reader.send_input("hello\n")
    assert wait_end(reader) == 0 and reader.logs().stdout == "got:hello\n"
    with pytest.raises(SessionEndedError):
        reader.send_input("late\n")
    cat = s.exec("echo ready; cat", background=True)
    wait_ready(cat)
    cat.send_input("é".encode())  # bytes or str
    cat.send_input("b\n", close=True)  # then EOF: cat ends
    assert wait_end(cat) == 0
    assert b"".join(c.data for c in cat.logs(follow=True)) == b"ready\n\xc3\xa9b\n"
    trapper = s.exec(TRAP, background=True)
    wait_ready(trapper)
    trapper.signal()  # SIGTERM by default: the command's trap runs, and it ends
    # (its exit code is not asserted: the session's job reports 137 for it today, not the trap's 9)
    assert wait_end(trapper) != 0 and trapper.logs().stdout == "ready\nterm\n"
    sleeper = s.exec("sleep 600", background=True)
    time.sleep(0.3)
    sleeper.signal(9)
    assert wait_end(sleeper) == 137
    with pytest.raises(SessionEndedError):
        sleeper.signal()
    with pytest.raises(ValueError, match="signum"):
        sleeper.signal(0)
    assert s.exec("echo alive").stdout == "alive\n"  # the session outlives its commands' signals
    s.delete()


# ---------------------------------------------------------------------------------------- exec stream


def test_exec_stream_stdin_and_exit_code(box: Sandbox) -> None:
    script = "echo first; read x; echo got:$x; echo oops >&2; exit 3"
    with box.process.exec_stream(script, stdin=True) as stream:
        chunks = iter(stream)
        assert next(chunks) == ("stdout", b"first\n")  # output arrives while the command runs
        assert stream.exit_code is None and stream.result is None
        stream.send_input("hello\n")
        rest = list(chunks)
    assert (joined(rest, "stdout"), joined(rest, "stderr")) == (b"got:hello\n", b"oops\n")
    assert stream.exit_code == 3 and isinstance(stream.result, ExecStreamResult)
    assert (stream.result.timed_out, stream.result.truncated) == (False, False)
    with pytest.raises(SessionEndedError):
        stream.send_input("late\n")

    # a bare loop, exact bytes, cwd and env; stdin closed by the caller
    stream = box.process.exec_stream("printf 'a\\377b'; echo $A-$PWD >&2", cwd="/tmp", env={"A": "1"})
    chunks = list(stream)
    assert (joined(chunks, "stdout"), joined(chunks, "stderr"), stream.exit_code) == (
        b"a\xffb",
        b"1-/tmp\n",
        0,
    )
    cat = box.process.exec_stream("cat; echo end", stdin=True)
    cat.send_input(b"\x00\xffabc", close=True)  # starts the command, then EOF
    assert joined(cat, "stdout") == b"\x00\xffabcend\n" and cat.exit_code == 0
    with pytest.raises(ValueError, match="stdin=True"):
        box.process.exec_stream("true").send_input("x")


def test_exec_stream_signal_timeout_and_close(box: Sandbox) -> None:
    with box.process.exec_stream(TRAP) as stream:
        for chunk in stream:
            assert chunk == ("stdout", b"ready\n")
            break  # inside `with` the command goes on
        stream.signal(15)
        assert joined(stream, "stdout") == b"term\n"
    assert stream.exit_code == 9
    slow = box.process.exec_stream("echo start; sleep 30", timeout=1)
    assert joined(slow, "stdout") == b"start\n"
    assert slow.result is not None and slow.result.timed_out and slow.exit_code == 137
    # closing a stream (here by leaving the block early) kills a command that still runs
    with box.process.exec_stream("echo ready; sleep 424242") as stream:
        next(iter(stream))
    with pytest.raises(SessionEndedError):
        stream.signal()
    deadline = time.monotonic() + 10
    while "424242" in box.process.exec("ps -eo args").stdout:
        assert time.monotonic() < deadline, "the command outlived its stream"
        time.sleep(0.2)


def test_streams_refuse_a_stopped_sandbox_and_a_bad_key(server, make_box) -> None:
    box = make_box(isolation="container", image="busybox")
    with Sandburg(server.api_url, "sb_wrong") as bad:
        with pytest.raises(AuthenticationError):  # refused at the WebSocket handshake, mapped as over REST
            list(Sandbox(bad, box).process.exec_stream("true"))
    box.stop()
    with pytest.raises(SandboxNotRunningError):
        list(box.process.exec_stream("true"))
    with pytest.raises(SandboxNotRunningError):
        box.fs.mkdir("/workspace/x")


# ------------------------------------------------------------------------------------------ file system


def test_fs_tree_find_search(box: Sandbox, d: str) -> None:
    box.fs.mkdir(f"{d}/src/deep", mode=0o750)
    box.fs.mkdir(f"{d}/src")  # an existing directory is fine
    assert box.fs.info(f"{d}/src/deep").permissions == "0750"
    box.fs.upload_file(b"x = 1  # TODO\n", f"{d}/a.py")
    box.fs.upload_file(b"print('x')\n# TODO: fix\n", f"{d}/src/b.py")
    box.fs.upload_file(b"nothing to do\n", f"{d}/src/notes.txt")
    top = box.fs.list(d)
    assert [(f.name, f.is_dir) for f in top] == [("a.py", False), ("src", True)] and top.truncated is False
    deep = box.fs.list(d, depth=3)
    assert [f.path for f in deep] == [
        f"{d}/a.py", f"{d}/src", f"{d}/src/b.py", f"{d}/src/deep", f"{d}/src/notes.txt",
    ]  # fmt: skip
    found = box.fs.find(d, "TODO")
    assert sorted((m.file, m.line, m.content) for m in found) == [
        (f"{d}/a.py", 1, "x = 1  # TODO"), (f"{d}/src/b.py", 2, "# TODO: fix"),
    ]  # fmt: skip
    assert [m.file for m in box.fs.find(d, r"T.DO:", regex=True)] == [f"{d}/src/b.py"]
    assert box.fs.find(d, "T.DO") == []  # a fixed string by default
    assert sorted(box.fs.search(d, "*.py")) == [f"{d}/a.py", f"{d}/src/b.py"]
    assert box.fs.search(d, "src/**/*.txt") == [f"{d}/src/notes.txt"]
    with pytest.raises(FileNotFoundInSandboxError):
        box.fs.list(f"{d}/missing")
    with pytest.raises(FileNotFoundInSandboxError):
        box.fs.find(f"{d}/missing", "x")
    with pytest.raises(FileExistsInSandboxError):
        box.fs.mkdir(f"{d}/a.py")
    with pytest.raises(ValueError, match="depth"):
        box.fs.list(d, depth=0)


def test_fs_replace_move_permissions_delete(box: Sandbox, d: str) -> None:
    box.fs.upload_file(b"x + x\n", f"{d}/a.py")
    results = box.fs.replace([f"{d}/a.py", f"{d}/missing.py"], "x", "yy")
    assert results[0] == ReplaceResult(f"{d}/a.py", True)
    assert results[1].file == f"{d}/missing.py" and not results[1].success and results[1].error
    assert box.fs.download_file(f"{d}/a.py") == b"yy + yy\n"
    assert box.fs.replace(f"{d}/a.py", "yy", "z") == [ReplaceResult(f"{d}/a.py", True)]  # one path alone

    box.fs.upload_file(b"other", f"{d}/b.py")
    with pytest.raises(FileExistsInSandboxError):
        box.fs.move(f"{d}/a.py", f"{d}/b.py")
    box.fs.move(f"{d}/a.py", f"{d}/b.py", overwrite=True)
    assert box.fs.download_file(f"{d}/b.py") == b"z + z\n"
    with pytest.raises(FileNotFoundInSandboxError):
        box.fs.move(f"{d}/a.py", f"{d}/c.py")

    box.fs.chmod(f"{d}/b.py", 0o755)
    assert box.fs.info(f"{d}/b.py").permissions == "0755"
    box.fs.chmod(f"{d}/b.py", "640")
    assert box.fs.info(f"{d}/b.py").mode == "-rw-r-----"
    box.fs.chown(f"{d}/b.py", owner="nobody", group="nogroup")
    info = box.fs.info(f"{d}/b.py")
    assert (info.owner, info.group) == ("nobody", "nogroup")
    box.fs.chown(f"{d}/b.py", group=0)
    assert (box.fs.info(f"{d}/b.py").owner, box.fs.info(f"{d}/b.py").group) == ("nobody", "root")
    with pytest.raises(BadRequestError):
        box.fs.chown(f"{d}/b.py", owner="no-such-user")
    with pytest.raises(FileNotFoundInSandboxError):
        box.fs.chmod(f"{d}/missing", 0o644)
    with pytest.raises(ValueError, match="owner, a group"):
        box.fs.chown(f"{d}/b.py")
    with pytest.raises(ValueError, match="invalid mode"):
        box.fs.chmod(f"{d}/b.py", 0o17777)

    box.fs.upload_file(b"x", f"{d}/sub/f")
    with pytest.raises(ConflictError) as info_exc:
        box.fs.delete(f"{d}/sub")
    assert info_exc.value.code == "DIRECTORY_NOT_EMPTY"
    box.fs.delete(f"{d}/sub", recursive=True)
    box.fs.delete(f"{d}/b.py")
    assert box.fs.list(d) == []
    with pytest.raises(FileNotFoundInSandboxError):
        box.fs.delete(f"{d}/b.py")


def test_fs_names_that_are_not_utf8(box: Sandbox, d: str) -> None:
    name = b"caf\xe9.py".decode("utf-8", "surrogateescape")  # as os.fsdecode gives it
    box.fs.upload_file(b"# TODO\n", f"{d}/{name}")
    assert box.process.exec(f"ls {d} | od -c | head -1").stdout.split()[1:7] == [
        "c",
        "a",
        "f",
        "351",
        ".",
        "p",
    ]
    assert [f.name for f in box.fs.list(d)] == [name]
    assert box.fs.info(f"{d}/{name}").path == f"{d}/{name}"
    assert [m.file for m in box.fs.find(d, "TODO")] == [f"{d}/{name}"]
    assert box.fs.search(d, "*.py") == [f"{d}/{name}"]
    assert box.fs.replace([f"{d}/{name}"], "TODO", "DONE")[0].success
    assert box.fs.download_file(f"{d}/{name}") == b"# DONE\n"
    other = b"\xff\xfe".decode("utf-8", "surrogateescape")
    box.fs.move(f"{d}/{name}", f"{d}/{other}")
    box.fs.chmod(f"{d}/{other}", 0o600)
    assert box.fs.info(f"{d}/{other}").permissions == "0600"
    box.fs.delete(f"{d}/{other}")
    assert box.fs.list(d) == []


# ---------------------------------------------------------------------------------------------- async


def test_the_same_through_the_async_client(server, box: Sandbox) -> None:
    d = f"/workspace/async-{uid()}"

    async def scenario() -> None:
        async with AsyncSandburg(server.api_url, server.api_key) as sb:
            abox = await sb.get(box.id)
            s = await abox.process.create_session(f"a-{uid()}")
            with pytest.raises(SessionExistsError):
                await abox.process.create_session(s.id)
            await s.exec("export X=7")
            assert (await s.exec("echo $X")).stdout == "7\n"
            assert s.id in [x.id for x in await abox.process.list_sessions()]
            assert (await abox.process.get_session(s.id)).commands[-1].command == "echo $X"

            cmd = await s.exec(TICKS, background=True)
            assert isinstance(cmd, AsyncCommand) and cmd.exit_code is None
            await asyncio.sleep(0.45)
            early = await cmd.logs()
            assert early.stdout.startswith("tick 1\n")
            chunks = [chunk async for chunk in cmd.logs(follow=True)]
            assert joined(chunks, "stdout") == b"tick 1\ntick 2\ntick 3\ntick 4\n"
            assert chunks[-1] == ("stderr", b"done\n")
            await cmd.refresh()
            assert cmd.exit_code == 0 and (await cmd.logs(offset=early.next_offset)).stderr == "done\n"
            async with cmd.follow_logs() as stream:
                assert joined([c async for c in stream], "stderr") == b"done\n"

            cat = await s.exec("echo ready; cat", background=True)
            async with cat.logs(follow=True) as stream:
                async for chunk in stream:
                    if chunk.data == b"ready\n":
                        await cat.send_input("hi\n", close=True)
                    else:
                        assert chunk == ("stdout", b"hi\n")
            trapper = await s.exec(TRAP, background=True)
            async for chunk in trapper.logs(follow=True):
                if chunk.data == b"ready\n":
                    await trapper.signal()
            await trapper.refresh()
            assert trapper.exit_code and (await trapper.logs()).stdout == "ready\nterm\n"
            with pytest.raises(SessionEndedError):
                await trapper.send_input("x")
            await s.delete()
            with pytest.raises(SessionNotFoundError):
                await abox.process.get_session(s.id)

            script = "echo first; read x; echo got:$x >&2; exit 3"
            async with abox.process.exec_stream(script, stdin=True) as es:
                got = []
                async for chunk in es:
                    got.append(chunk)
                    if chunk.data == b"first\n":
                        await es.send_input(b"hello\n")
            assert got == [("stdout", b"first\n"), ("stderr", b"got:hello\n")] and es.exit_code == 3
            bare = abox.process.exec_stream(TRAP)
            async for chunk in bare:
                if chunk.data == b"ready\n":
                    await bare.signal()
            assert bare.exit_code == 9 and bare.result is not None and not bare.result.timed_out

            await abox.fs.mkdir(f"{d}/src", mode=0o700)
            await abox.fs.upload_file(b"a TODO\n", f"{d}/src/a.py")
            assert [f.path for f in await abox.fs.list(d, depth=2)] == [f"{d}/src", f"{d}/src/a.py"]
            assert [(m.file, m.line) for m in await abox.fs.find(d, "TODO")] == [(f"{d}/src/a.py", 1)]
            assert await abox.fs.search(d, "*.py") == [f"{d}/src/a.py"]
            assert (await abox.fs.replace([f"{d}/src/a.py"], "TODO", "DONE"))[0].success
            await abox.fs.move(f"{d}/src/a.py", f"{d}/b.py")
            await abox.fs.chmod(f"{d}/b.py", 0o751)
            await abox.fs.chown(f"{d}/b.py", owner="nobody")
            info = await abox.fs.info(f"{d}/b.py")
            assert (info.permissions, info.owner) == ("0751", "nobody")
            with pytest.raises(ConflictError):
                await abox.fs.delete(d)
            await abox.fs.delete(d, recursive=True)
            with pytest.raises(FileNotFoundInSandboxError):
                await abox.fs.info(d)

    asyncio.run(asyncio.wait_for(scenario(), 240))
