"""`sandburg cp` both ways with a directory tree, against the real server, on both tiers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.e2e.conftest import TIERS
from tests.e2e.test_cli import cli  # noqa: F401  (the fixture)


def make_tree(root: Path) -> dict[str, bytes]:
    """A local tree with nested, empty and executable entries, binary data and a name that is not UTF-8."""
    files = {
        "a.txt": b"alpha\n",
        "sub/b.bin": bytes(range(256)) * 1000,
        "sub/deeper/c.txt": b"",
        "run.sh": b"#!/bin/sh\necho hi\n",
        os.fsdecode(b"caf\xe9.txt"): b"latin-1 name",
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "empty").mkdir()
    os.chmod(root / "run.sh", 0o755)
    (root / "link").symlink_to("a.txt")  # skipped, with a warning
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.mark.parametrize("tier", TIERS)
def test_cp_directory_tree_both_ways(cli, make_box, tmp_path, tier):  # noqa: F811
    box = make_box(isolation=tier)
    src = tmp_path / "src"
    expected = make_tree(src)

    r = cli("cp", str(src), f"{box.id}:/workspace/up")  # /workspace/up does not exist: it becomes the copy
    assert "copied 5 files" in r.stdout and "1 skipped" in r.stdout
    assert "skipped" in r.stderr and "link" in r.stderr
    listing = box.process.exec("cd /workspace/up && find . | sort && stat -c %a run.sh").stdout
    assert "./empty\n" in listing and "./sub/deeper/c.txt\n" in listing and listing.endswith("755\n")
    assert "./link" not in listing

    cli("cp", str(src), f"{box.name}:/workspace/up")  # an existing directory: the copy goes inside, as src
    assert box.process.exec("test -f /workspace/up/src/sub/b.bin").exit_code == 0

    down = tmp_path / "down"
    r = cli("cp", f"{box.id}:/workspace/up", str(down))  # down does not exist: it becomes the copy
    got = read_tree(down)
    assert {k: v for k, v in got.items() if not k.startswith("src/")} == expected
    assert {k[4:]: v for k, v in got.items() if k.startswith("src/")} == expected
    assert (down / "empty").is_dir() and stat.S_IMODE((down / "run.sh").stat().st_mode) == 0o755
    assert not list(down.rglob("*.part"))

    # single files, into a directory and to a new name
    cli("cp", f"{box.id}:/workspace/up/a.txt", str(down))
    cli("cp", f"{box.id}:/workspace/up/sub/b.bin", str(tmp_path / "b-copy"))
    assert (tmp_path / "b-copy").read_bytes() == expected["sub/b.bin"]
    cli("cp", str(tmp_path / "b-copy"), f"{box.id}:/workspace/single/")
    assert box.fs.download_file("/workspace/single/b-copy") == expected["sub/b.bin"]
    # the contents of a directory, with SRC/.
    cli("cp", f"{box.id}:/workspace/up/sub/.", str(tmp_path / "sub-contents"))
    assert sorted(os.listdir(tmp_path / "sub-contents")) == ["b.bin", "deeper"]


def test_cp_errors(cli, make_box, tmp_path):  # noqa: F811
    box = make_box(isolation="container")
    r = cli("cp", f"{box.id}:/workspace/nope", str(tmp_path / "x"), check=False)
    assert r.returncode == 1 and "FILE_NOT_FOUND" in r.stderr and "Traceback" not in r.stderr
    r = cli("cp", str(tmp_path / "missing"), f"{box.id}:/workspace/x", check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    r = cli("cp", str(tmp_path), str(tmp_path / "y"), check=False)
    assert r.returncode == 2 and "exactly one" in r.stderr
    r = cli("cp", f"{box.id}:/workspace/../../etc", str(tmp_path / "z"), check=False)
    assert r.returncode == 1 and "INVALID_FILE_PATH" in r.stderr
    r = cli("cp", str(tmp_path), "no-such-box:/x", check=False)
    assert r.returncode == 1 and "SANDBOX_NOT_FOUND" in r.stderr
