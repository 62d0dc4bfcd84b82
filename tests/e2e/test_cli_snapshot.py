"""`sandburg snapshot ...` as a subprocess against the real server: create, diff against a sandbox's files, restore
in place, fork, ls, inspect, rm, and the failures' exit codes (docs/cli.md, docs/snapshots.md)."""

from __future__ import annotations

import contextlib
import json
import re
import uuid

import pytest

from sandburg import ImageNotFoundError, Sandburg, SandburgError

FORKED_FROM = "sandburg.io/forked-from"


@pytest.fixture
def names(sb: Sandburg):
    """Unique snapshot names; the snapshots of these names, and the sandboxes forked from them, are deleted at
    the end."""
    made: list[str] = []

    def new(prefix: str) -> str:
        made.append(f"cli-{prefix}-{uuid.uuid4().hex[:8]}")
        return made[-1]

    try:
        yield new
    finally:
        for name in made:
            for box in sb.list(labels={FORKED_FROM: name}):
                with contextlib.suppress(SandburgError):
                    box.delete()
            with contextlib.suppress(ImageNotFoundError):
                sb.snapshots.delete(name)


def row(ls_out: str, name: str) -> list[str]:
    return next(line.split() for line in ls_out.splitlines() if line.split()[0] == name)


def test_create_diff_restore_fork_ls_inspect_rm(cli, sb, make_box, names):
    box = make_box(image="busybox", isolation="container")
    r = box.process.exec(
        "mkdir -p /workspace/d && echo keep > /workspace/d/keep && echo v1 > /workspace/d/change && "
        "echo drop > /workspace/d/drop"
    )
    assert r.exit_code == 0, r
    base = names("base")
    r = cli("snapshot", "create", box.name, base)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert re.fullmatch(rf"snapshot {base} of {box.name} \(capture \d+ ms\)\n", r.stdout), r.stdout

    r = box.process.exec(
        "echo v2 >> /workspace/d/change && rm /workspace/d/drop && mkdir /workspace/new && "
        "echo n > /workspace/new/f"
    )
    assert r.exit_code == 0, r
    r = cli("snapshot", "diff", base, "--sandbox", box.id)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert r.stdout == (
        "M /workspace/d/change\nD /workspace/d/drop\nA /workspace/new\nA /workspace/new/f\n"
    ), r.stdout
    r = cli("snapshot", "diff", base, "--sandbox", box.name, "--json")
    assert json.loads(r.stdout) == {
        "added": ["/workspace/new", "/workspace/new/f"],
        "modified": ["/workspace/d/change"],
        "deleted": ["/workspace/d/drop"],
    }, r.stdout

    # a second snapshot: its parent is the first, and a diff between the two shows the same changes
    second = names("second")
    r = cli("snapshot", "create", box.id, second)
    assert r.returncode == 0 and r.stdout.startswith(f"snapshot {second} of {box.id} "), (r.stdout, r.stderr)
    r = cli("snapshot", "diff", base, second)
    assert r.stdout.splitlines() == [
        "M /workspace/d/change",
        "D /workspace/d/drop",
        "A /workspace/new",
        "A /workspace/new/f",
    ], (r.stdout, r.stderr)

    r = cli("snapshot", "restore", box.name, base)
    assert (r.returncode, r.stdout) == (0, f"restored {box.name} ({box.id}) to {base}\n"), r.stderr
    res = box.process.exec("cat /workspace/d/drop /workspace/d/change; ls /workspace")
    assert res.stdout.split() == ["drop", "v1", "d"], res
    assert cli("snapshot", "diff", base, "--sandbox", box.id).stdout == ""

    r = cli("snapshot", "fork", base, "--count", "2")
    assert r.returncode == 0, (r.stdout, r.stderr)
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ID"] and len(lines) == 3, r.stdout
    forks = [line.split() for line in lines[1:]]
    try:
        assert len({fid for _, fid in forks} | {box.id}) == 3
        for fname, fid in forks:
            child = sb.get(fid)
            assert (child.name, child.labels[FORKED_FROM], child.isolation) == (fname, base, "container")
            assert child.process.exec("cat /workspace/d/drop").stdout == "drop\n"
    finally:
        for _, fid in forks:
            with contextlib.suppress(SandburgError):
                sb.get(fid).delete()

    r = cli("snapshot", "ls")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split() == ["NAME", "SANDBOX", "PARENT", "AGE", "ISOLATION"]
    b, s = row(r.stdout, base), row(r.stdout, second)
    assert (b[:3], b[4:]) == ([base, box.name, "-"], ["container"]), r.stdout
    assert (s[:3], s[4:]) == ([second, box.name, base], ["container"]), r.stdout
    assert re.fullmatch(r"\d+[smhd]", b[3]), r.stdout
    r = cli("snapshot", "ls", "--sandbox", box.name, "--json")
    assert [x["name"] for x in json.loads(r.stdout)] == [base, second], r.stdout

    r = cli("snapshot", "inspect", second)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["name"], info["parent"], info["sandbox_id"], info["sandbox_name"]) == (
        second,
        base,
        box.id,
        box.name,
    )
    assert info["settings"]["isolation"] == "container" and info["capture_ms"] >= 0

    r = cli("snapshot", "rm", base, second)
    assert (r.returncode, r.stdout) == (0, f"{base}\n{second}\n"), r.stderr
    for name in (base, second):
        with pytest.raises(ImageNotFoundError):
            sb.snapshots.get(name)
    # the sandbox keeps its files
    assert box.process.exec("cat /workspace/d/change").stdout == "v1\n"


def test_failures_exit_1_with_the_code_and_no_traceback(cli, make_box, names):
    box = make_box(image="busybox", isolation="container")
    unknown = names("unknown")
    for argv in (
        ("restore", box.id, unknown),
        ("fork", unknown),
        ("diff", unknown, "--sandbox", box.id),
        ("inspect", unknown),
        ("rm", unknown),
    ):
        r = cli("snapshot", *argv)
        assert r.returncode == 1 and r.stdout == "", (argv, r.stdout, r.stderr)
        assert r.stderr == f"error: snapshot {unknown!r} not found (IMAGE_NOT_FOUND)\n", (argv, r.stderr)

    taken = names("taken")
    assert cli("snapshot", "create", box.id, taken).returncode == 0
    r = cli("snapshot", "create", box.id, taken)
    assert r.returncode == 1 and r.stderr.endswith("(IMAGE_NAME_CONFLICT)\n"), r.stderr
    r = cli("snapshot", "create", box.id, names("mem"), "--memory")
    assert r.returncode == 1 and "(MEMORY_SNAPSHOT_UNSUPPORTED)" in r.stderr, r.stderr
    r = cli("snapshot", "create", "no-such-sandbox", names("x"))
    assert r.returncode == 1 and r.stderr.endswith("(SANDBOX_NOT_FOUND)\n"), r.stderr
    for r in (cli("snapshot", "diff", taken), cli("snapshot", "fork", taken, "--count", "2", "--name", "a")):
        assert r.returncode == 2 and r.stderr.startswith("usage: sandburg"), r.stderr
