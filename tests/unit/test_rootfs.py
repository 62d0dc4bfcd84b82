"""Host-side writes into a sandbox root never follow the sandbox's symlinks out of it."""

from __future__ import annotations

import os
from pathlib import Path

from sandburg.node.rootfs import write_file


def test_symlinked_target_is_replaced_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    outside = tmp_path / "host-file"
    outside.write_text("host")
    os.symlink(outside, root / "etc" / "hosts")
    write_file(str(root), "etc/hosts", b"sandbox")
    assert outside.read_text() == "host"
    assert not (root / "etc" / "hosts").is_symlink()
    assert (root / "etc" / "hosts").read_bytes() == b"sandbox"


def test_symlinked_directory_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "host-etc"
    outside.mkdir()
    os.symlink(outside, root / "etc")
    try:
        write_file(str(root), "etc/hosts", b"x")
    except Exception as exc:  # noqa: BLE001 - the class is what the next assert checks
        assert type(exc).__name__ == "BundleError"
    assert not (outside / "hosts").exists()
