"""The agent's file tree operations (list depth, mkdir, delete, move, chmod, chown, find, search, replace), run
for real as a host subprocess like tests/unit/test_agent.py, through AgentClient."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandburg.agent.search import glob_regex
from sandburg.node.agent_client import AgentClient, AgentError
from tests.unit.test_agent import Agent, agent_error, raw_call, start_agent, stop_agent


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    a = start_agent(tmp_path_factory.mktemp("agent-files"))
    yield a
    stop_agent(a.proc)


@pytest.fixture
def ws(agent: Agent, request: pytest.FixtureRequest) -> Path:
    """A fresh directory of the agent's workspace for one test."""
    d = agent.workdir / request.node.name
    d.mkdir()
    return d


def tree(root: Path, spec: dict[str, Any]) -> None:
    """Make files (bytes), directories (dicts) and symlinks (("->", target)) under root."""
    for name, value in spec.items():
        p = root / name
        if isinstance(value, dict):
            p.mkdir()
            tree(p, value)
        elif isinstance(value, tuple):
            p.symlink_to(value[1])
        else:
            p.write_bytes(value)


def code_of(agent: Agent, fn: Any) -> str:
    return agent_error(agent, fn).code


# -- list --------------------------------------------------------------------------------------------------------


def test_list_depth_walks_depth_first_without_entering_symlinked_directories(agent: Agent, ws: Path) -> None:
    tree(ws, {"a": {"b": {"c": {"deep.txt": b"x"}}, "f.txt": b"1"}, "z.txt": b"2", "loop": ("->", "."),
              "outside": ("->", "/etc")})  # fmt: skip
    rel = lambda entries: [e["path"][len(str(ws)) + 1 :] for e in entries]  # noqa: E731
    assert rel(agent.run(lambda c: c.list(str(ws)))) == ["a", "loop", "outside", "z.txt"]
    assert rel(agent.run(lambda c: c.list(str(ws), 2))) == ["a", "a/b", "a/f.txt", "loop", "outside", "z.txt"]
    everything = agent.run(lambda c: c.list(str(ws), 10))
    assert rel(everything) == ["a", "a/b", "a/b/c", "a/b/c/deep.txt", "a/f.txt", "loop", "outside", "z.txt"]
    assert everything.truncated is False
    by = {e["name"]: e for e in everything}
    assert (
        by["loop"]["is_dir"] is True and by["loop"]["link_target"] == "."
    )  # listed as a directory, not entered
    assert by["deep.txt"]["path"] == str(ws / "a/b/c/deep.txt")
    cut = agent.run(lambda c: c.list(str(ws), 10, limit=3))
    assert rel(cut) == ["a", "a/b", "a/b/c"] and cut.truncated is True


def test_list_of_a_big_directory_streams_past_the_frame_limit(agent: Agent, ws: Path) -> None:
    for i in range(8000):  # ~1.6 MB of FileInfo JSON: more than one 1 MiB frame
        (ws / f"file-{i:05d}-{'x' * 40}").touch()

    async def go(c: AgentClient) -> tuple[int, int]:
        n = len(await c.list(str(ws)))
        return n, len(c._idle)

    assert agent.run(go) == (8000, 1)  # and the connection went back to the pool


def test_list_errors(agent: Agent, ws: Path) -> None:
    (ws / "f").touch()
    assert code_of(agent, lambda c: c.list(str(ws / "f"), 3)) == "NOT_A_DIRECTORY"
    assert code_of(agent, lambda c: c.list(str(ws / "missing"), 3)) == "FILE_NOT_FOUND"
    assert code_of(agent, lambda c: c.list(str(ws), 0)) == "BAD_REQUEST"


# -- mkdir, delete -----------------------------------------------------------------------------------------------


def test_mkdir(agent: Agent, ws: Path) -> None:
    assert agent.run(lambda c: c.mkdir(str(ws / "a/b/c"), 0o707)) is True
    assert stat.S_IMODE((ws / "a/b/c").stat().st_mode) == 0o707  # exactly, whatever the umask
    assert (
        agent.run(lambda c: c.mkdir(str(ws / "a/b/c"), 0o700)) is False
    )  # mkdir -p: there already, unchanged
    assert stat.S_IMODE((ws / "a/b/c").stat().st_mode) == 0o707
    assert code_of(agent, lambda c: c.mkdir(str(ws / "a"), parents=False)) == "FILE_EXISTS"
    assert code_of(agent, lambda c: c.mkdir(str(ws / "x/y"), parents=False)) == "FILE_NOT_FOUND"
    (ws / "file").touch()
    assert code_of(agent, lambda c: c.mkdir(str(ws / "file"))) == "FILE_EXISTS"
    assert code_of(agent, lambda c: c.mkdir(str(ws / "file/sub"))) == "NOT_A_DIRECTORY"
    assert code_of(agent, lambda c: c.mkdir(str(ws / "m"), 0o17777)) == "BAD_REQUEST"


def test_delete(agent: Agent, ws: Path, tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "precious").write_bytes(b"p")
    tree(ws, {"f": b"1", "empty": {}, "full": {"x": b"1", "sub": {"y": b"2", "out": ("->", str(keep))}},
              "dirlink": ("->", str(keep))})  # fmt: skip
    agent.run(lambda c: c.delete(str(ws / "f")))
    agent.run(lambda c: c.delete(str(ws / "empty")))  # an empty directory needs no `recursive`
    assert code_of(agent, lambda c: c.delete(str(ws / "full"))) == "DIRECTORY_NOT_EMPTY"
    agent.run(lambda c: c.delete(str(ws / "dirlink")))  # the link goes, never what it points to
    agent.run(lambda c: c.delete(str(ws / "full"), recursive=True))  # never enters the symlinked directory
    assert sorted(os.listdir(ws)) == []
    assert (keep / "precious").read_bytes() == b"p"
    assert code_of(agent, lambda c: c.delete(str(ws / "f"))) == "FILE_NOT_FOUND"
    assert code_of(agent, lambda c: c.delete("/")) == "INVALID_FILE_PATH"
    climb = "/".join([".."] * (len(ws.parts) + 1))
    assert code_of(agent, lambda c: c.delete(climb + "/etc")) == "INVALID_FILE_PATH"


def test_recursive_delete_of_a_deep_tree(agent: Agent, ws: Path) -> None:
    d = ws / "deep"
    d.mkdir()
    fd = os.open(d, os.O_RDONLY)
    try:  # 1500 levels: deeper than Python's recursion limit, longer than PATH_MAX as a path
        for _ in range(1500):
            os.mkdir("d", dir_fd=fd)
            new = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = new
        os.close(os.open("leaf", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
    finally:
        os.close(fd)
    agent.run(lambda c: c.delete(str(d), recursive=True))
    assert not d.exists()


# -- move ----------------------------------------------------------------------------------------------------------


def test_move(agent: Agent, ws: Path) -> None:
    tree(ws, {"a": b"A", "b": b"B", "dir": {"inner": b"i"}, "dangling": ("->", "nowhere")})
    agent.run(lambda c: c.move(str(ws / "a"), str(ws / "a2")))
    assert (ws / "a2").read_bytes() == b"A" and not (ws / "a").exists()
    assert code_of(agent, lambda c: c.move(str(ws / "a2"), str(ws / "b"))) == "FILE_EXISTS"
    agent.run(lambda c: c.move(str(ws / "a2"), str(ws / "b"), overwrite=True))
    assert (ws / "b").read_bytes() == b"A"
    agent.run(lambda c: c.move(str(ws / "dangling"), str(ws / "dangling2")))  # the link itself moves
    assert os.readlink(ws / "dangling2") == "nowhere"
    assert code_of(agent, lambda c: c.move(str(ws / "missing"), str(ws / "x"))) == "FILE_NOT_FOUND"
    assert code_of(agent, lambda c: c.move(str(ws / "b"), str(ws / "no/such/dir"))) == "FILE_NOT_FOUND"
    assert (
        code_of(agent, lambda c: c.move(str(ws / "dir"), str(ws / "dir/inside"))) == "BAD_REQUEST"
    )  # EINVAL
    assert code_of(agent, lambda c: c.move("/", str(ws / "root"))) == "INVALID_FILE_PATH"


def test_move_across_file_systems_copies_then_deletes(agent: Agent, ws: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(ws).st_dev:
        pytest.skip("needs /dev/shm on another file system than the workspace")
    tree(
        ws, {"src": {"run.sh": b"#!/bin/sh\n", "sub": {"data": os.urandom(3 << 20)}, "ln": ("->", "run.sh")}}
    )
    os.chmod(ws / "src/run.sh", 0o751)
    os.utime(ws / "src/sub/data", (1_000_000, 1_000_000))
    before = (ws / "src/sub/data").read_bytes()
    dst = shm / f"sandburg-test-{os.getpid()}-{ws.name}"
    try:
        agent.run(lambda c: c.move(str(ws / "src"), str(dst)))
        assert not (ws / "src").exists()
        assert (dst / "sub/data").read_bytes() == before
        assert stat.S_IMODE((dst / "run.sh").stat().st_mode) == 0o751
        assert (dst / "sub/data").stat().st_mtime == 1_000_000
        assert os.readlink(dst / "ln") == "run.sh"
        assert not [p for p in shm.iterdir() if p.name.startswith(".sandburg-move-")]
        # and back, a single file, over an existing one
        (ws / "target").write_bytes(b"old")
        agent.run(lambda c: c.move(str(dst / "run.sh"), str(ws / "target"), overwrite=True))
        assert (ws / "target").read_bytes() == b"#!/bin/sh\n"
    finally:
        agent.run(lambda c: c.delete(str(dst), recursive=True))


# -- chmod, chown ------------------------------------------------------------------------------------------------


def test_chmod_and_chown(agent: Agent, ws: Path) -> None:
    (ws / "f").touch()
    (ws / "link").symlink_to("f")
    agent.run(lambda c: c.chmod(str(ws / "link"), 0o4711))  # follows the link, like chmod(1)
    assert stat.S_IMODE((ws / "f").stat().st_mode) == 0o4711
    assert code_of(agent, lambda c: c.chmod(str(ws / "missing"), 0o644)) == "FILE_NOT_FOUND"
    assert code_of(agent, lambda c: c.chmod(str(ws / "f"), -1)) == "BAD_REQUEST"
    me, my_group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    agent.run(lambda c: c.chown(str(ws / "f"), me, my_group))
    agent.run(lambda c: c.chown(str(ws / "f"), str(os.getuid())))
    agent.run(lambda c: c.chown(str(ws / "f"), group=os.getgid()))
    st = (ws / "f").stat()
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    err = agent_error(agent, lambda c: c.chown(str(ws / "f"), "no-such-user-xyz"))
    assert err.code == "BAD_REQUEST" and "/etc/passwd" in err.message
    assert code_of(agent, lambda c: c.chown(str(ws / "f"), group="no-such-group-xyz")) == "BAD_REQUEST"
    assert code_of(agent, lambda c: c.chown(str(ws / "missing"), me)) == "FILE_NOT_FOUND"
    if os.getuid() == 0:
        agent.run(lambda c: c.chown(str(ws / "f"), "1234", "4321"))
        st = (ws / "f").stat()
        assert (st.st_uid, st.st_gid) == (1234, 4321)


# -- find, search ------------------------------------------------------------------------------------------------


def test_find(agent: Agent, ws: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_bytes(b"needle outside\n")
    tree(ws, {"a.txt": b"one needle\r\ntwo\nneedle three", "bin.dat": b"needle\0binary",
              "sub": {"b.txt": b"x\n" * 5 + b"NEEDLE needle\n", "latin1.txt": b"caf\xe9 needle\n"},
              "outside": ("->", str(tmp_path)), "long.txt": b"needle" + b"y" * 10_000})  # fmt: skip
    res = agent.run(lambda c: c.find(str(ws), "needle"))
    got = [(m.file[len(str(ws)) + 1 :], m.line, m.content) for m in res.matches]
    assert got == [
        ("a.txt", 1, "one needle"), ("a.txt", 3, "needle three"), ("long.txt", 1, "needle" + "y" * 2042),
        ("sub/b.txt", 6, "NEEDLE needle"), ("sub/latin1.txt", 1, "caf\ufffd needle"),
    ]  # fmt: skip
    assert res.truncated is False
    res = agent.run(lambda c: c.find(str(ws), r"^NEEDLE|thr.e$", regex=True))
    assert [(Path(m.file).name, m.line) for m in res.matches] == [("a.txt", 3), ("b.txt", 6)]
    res = agent.run(lambda c: c.find(str(ws / "sub/b.txt"), "needle"))  # one file
    assert [m.line for m in res.matches] == [6]
    res = agent.run(lambda c: c.find(str(ws), "needle", limit=2))
    assert len(res.matches) == 2 and res.truncated is True
    assert code_of(agent, lambda c: c.find(str(ws), "(", regex=True)) == "BAD_REQUEST"
    assert code_of(agent, lambda c: c.find(str(ws), "")) == "BAD_REQUEST"
    assert code_of(agent, lambda c: c.find(str(ws / "missing"), "x")) == "FILE_NOT_FOUND"


def test_search(agent: Agent, ws: Path) -> None:
    tree(ws, {"a.py": b"", "b.txt": b"", ".hidden.py": b"", "pkg": {"c.py": b"", "d.py": {}, "x.txt": b"",
              "deep": {"e.py": b"", "y.txt": b""}}, "ln": ("->", "pkg")})  # fmt: skip
    rel = lambda r: sorted(f[len(str(ws)) + 1 :] for f in r.files)  # noqa: E731
    search = lambda p: agent.run(lambda c: c.search(str(ws), p))  # noqa: E731
    assert rel(search("*.py")) == [
        ".hidden.py",
        "a.py",
        "pkg/c.py",
        "pkg/deep/e.py",
    ]  # not the directory d.py
    assert rel(search("pkg/**/*.txt")) == ["pkg/deep/y.txt", "pkg/x.txt"]
    assert rel(search("**/deep/*")) == ["pkg/deep/e.py", "pkg/deep/y.txt"]
    assert rel(search("*.{py,txt}")) == [".hidden.py", "a.py", "b.txt", "pkg/c.py", "pkg/deep/e.py",
                                         "pkg/deep/y.txt", "pkg/x.txt"]  # fmt: skip
    assert rel(search("[!a-c]*")) == [".hidden.py", "ln", "pkg/deep/e.py", "pkg/deep/y.txt", "pkg/x.txt"]
    assert rel(search("?.txt")) == ["b.txt", "pkg/deep/y.txt", "pkg/x.txt"]
    capped = agent.run(lambda c: c.search(str(ws), "*", limit=2))
    assert len(capped.files) == 2 and capped.truncated
    assert code_of(agent, lambda c: c.search(str(ws), "{a,b")) == "BAD_REQUEST"
    assert code_of(agent, lambda c: c.search(str(ws / "a.py"), "*")) == "NOT_A_DIRECTORY"


@pytest.mark.parametrize(
    "pattern, yes, no",
    [
        ("*.py", ["a.py", ".x.py"], ["a.pyc", "d/a.py"]),
        ("**/*.py", ["a.py", "d/e/a.py"], ["a.pyc"]),
        ("src/**", ["src/a", "src/a/b"], ["src", "srcx/a"]),
        ("a**b", ["ab", "axxb"], ["a/b"]),
        ("[]a]", ["]", "a"], ["b"]),
        ("\\*", ["*"], ["a"]),
        ("{a,b{c,d}}", ["a", "bc", "bd"], ["b", "ab"]),
        ("a[", ["a["], ["a"]),
        ("(x)+", ["(x)+"], ["x", "xx"]),
    ],
)
def test_glob_regex(pattern: str, yes: list[str], no: list[str]) -> None:
    rx = glob_regex(pattern)
    assert [s for s in yes if not rx.fullmatch(s)] == []
    assert [s for s in no if rx.fullmatch(s)] == []


# -- replace -------------------------------------------------------------------------------------------------------


def test_replace(agent: Agent, ws: Path) -> None:
    tree(ws, {"a.txt": b"foo bar foo", "bin": b"\0foo\xff", "same.txt": b"nothing here", "ln": ("->", "a.txt"),
              "dir": {}})  # fmt: skip
    os.chmod(ws / "a.txt", 0o640)
    os.utime(ws / "same.txt", (1_000_000, 1_000_000))
    files = [str(ws / n) for n in ("ln", "bin", "same.txt", "missing", "dir")]
    res = agent.run(lambda c: c.replace(files, "foo", "\udcfe"))  # the byte 0xfe, written raw
    assert [(Path(r.file).name, r.success, r.replacements) for r in res] == [
        ("ln", True, 2), ("bin", True, 1), ("same.txt", True, 0), ("missing", False, 0), ("dir", False, 0),
    ]  # fmt: skip
    assert (
        res[0].error is None and "No such file" in (res[3].error or "") and "regular" in (res[4].error or "")
    )
    assert (ws / "a.txt").read_bytes() == b"\xfe bar \xfe" and (ws / "ln").is_symlink()
    assert stat.S_IMODE((ws / "a.txt").stat().st_mode) == 0o640
    assert (ws / "bin").read_bytes() == b"\0\xfe\xff"
    assert (ws / "same.txt").stat().st_mtime == 1_000_000  # untouched
    assert not list(ws.glob(".sandburg-upload-*"))
    assert code_of(agent, lambda c: c.replace(files, "", "x")) == "BAD_REQUEST"


def test_replace_in_many_files_and_a_request_too_large(agent: Agent, ws: Path) -> None:
    paths = []
    for i in range(2500):  # ~750 KB of names: more than one request frame
        p = ws / f"{i:04d}-{'n' * 250}"
        p.write_bytes(b"a")
        paths.append(str(p))
    res = agent.run(lambda c: c.replace(paths, "a", "b"))
    assert [r.file for r in res] == paths and all(r.success and r.replacements == 1 for r in res)
    assert {p.read_bytes() for p in ws.iterdir()} == {b"b"}
    err = agent_error(agent, lambda c: c.replace(paths[:1], "a", "x" * (2 << 20)))
    assert err.code == "PAYLOAD_TOO_LARGE"


# -- names that are not UTF-8, protocol edges ----------------------------------------------------------------------


def test_non_utf8_names_round_trip(agent: Agent, ws: Path) -> None:
    raw = os.fsencode(ws) + b"/caf\xe9-\xff.txt"
    with open(raw, "wb") as f:
        f.write(b"hello needle\n")
    name = os.fsdecode(raw)  # surrogateescape: "...caf\udce9-\udcff.txt"
    assert "\udcff" in name
    entries = agent.run(lambda c: c.list(str(ws)))
    assert [e["path"] for e in entries] == [name]
    assert agent.run(lambda c: c.stat(name))["name"] == "caf\udce9-\udcff.txt"
    assert agent.run(lambda c: c.search(str(ws), "*\udcff*")).files == [name]
    assert agent.run(lambda c: c.find(str(ws), "needle")).matches[0].file == name
    agent.run(lambda c: c.move(name, name + "\udcfe"))
    assert os.path.exists(raw + b"\xfe")
    err = agent_error(agent, lambda c: c.delete(name))
    assert err.code == "FILE_NOT_FOUND" and "\\udcff" in err.message  # escaped: the message stays valid UTF-8
    agent.run(lambda c: c.delete(name + "\udcfe"))
    assert os.listdir(ws) == []


def test_bad_requests_to_the_new_ops(agent: Agent) -> None:
    for payload in [b'{"op": "list", "path": "/", "depth": "2"}', b'{"op": "mkdir", "path": "/x", "mode": "755"}',
                    b'{"op": "delete", "path": 1}', b'{"op": "move", "source": "/a"}', b'{"op": "chmod", "path": "/"}',
                    b'{"op": "chown", "path": "/", "owner": true}', b'{"op": "find", "path": "/"}',
                    b'{"op": "search", "path": "/", "pattern": 3}', b'{"op": "replace", "files": "/a", "pattern": "x", "new_value": ""}',
                    b'{"op": "replace", "files": [], "pattern": "x"}', b'{"op": "delete", "path": "/\\ud800"}']:  # fmt: skip
        res = raw_call(agent.sock, payload)
        assert (res["ok"], res["code"]) == (False, "BAD_REQUEST"), (payload, res)


def test_errors_keep_the_connection(agent: Agent, ws: Path) -> None:
    async def go(c: AgentClient) -> int:
        for _ in range(3):
            with pytest.raises(AgentError):
                await c.find(str(ws / "missing"), "x")
            await c.search(str(ws), "*")
        return len(c._idle)

    assert agent.run(go) == 1
