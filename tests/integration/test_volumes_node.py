"""The node's volumes (node/volumes.py) on this host: fscrypt keeps plaintext off the disk (with a plain ext4 image as
the positive control), removing the key locks the directory, and subpaths refuse a sandbox's symlinks."""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandburg.node import priv
from sandburg.node.node import Node
from sandburg.node.volumes import VolumePathError, Volumes, bind, key_present, remove_key


@pytest.fixture
def vols(node: Node) -> Volumes:
    return Volumes(node.cfg.data_dir)


@pytest.fixture
def vid(vols: Volumes) -> Iterator[str]:
    v = str(uuid.uuid4())
    yield v
    vols.delete(v)
    assert not os.path.exists(vols.image_path(v)) and not priv.is_mountpoint(vols.mount_path(v))


def test_no_plaintext_at_rest_and_control(vols: Volumes, vid: str, tmp_path: Path) -> None:
    key, marker = os.urandom(64), f"MARKER-{uuid.uuid4().hex}".encode()
    vols.create(vid, 32 << 20, key)
    with open(os.path.join(vols.data_path(vid), "notes.txt"), "wb") as fh:
        fh.write(marker * 100)
    vols.unmount(vid)
    with open(vols.image_path(vid), "rb") as fh:
        assert marker not in fh.read()
    vols.mount(vid, key)
    with open(os.path.join(vols.data_path(vid), "notes.txt"), "rb") as fh:
        assert fh.read() == marker * 100  # the same key (derived again by the server) opens it
    # positive control: the same write on an ext4 image without encryption is found by the same scan
    img, mnt = str(tmp_path / "plain.img"), str(tmp_path / "mnt")
    os.mkdir(mnt)
    with open(img, "wb") as fh:
        fh.truncate(32 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", img], check=True)
    subprocess.run(["mount", "-o", "loop", img, mnt], check=True)
    try:
        with open(os.path.join(mnt, "notes.txt"), "wb") as fh:
            fh.write(marker * 100)
    finally:
        subprocess.run(["umount", mnt], check=True)
    with open(img, "rb") as fh:
        assert marker in fh.read()


def test_key_removal_locks_the_directory(vols: Volumes, vid: str) -> None:
    key = os.urandom(64)
    vols.create(vid, 32 << 20, key)
    mnt, data = vols.mount_path(vid), vols.data_path(vid)
    with open(os.path.join(data, "plain-name"), "w") as fh:
        fh.write("x")
    assert key_present(mnt, data)
    remove_key(mnt, data)
    assert not key_present(mnt, data)
    assert os.listdir(data) != ["plain-name"]  # names are ciphertext without the key
    with pytest.raises(OSError) as exc:
        open(os.path.join(data, os.listdir(data)[0])).read()
    assert exc.value.errno == errno.ENOKEY
    vols.mount(vid, key)  # adds the key again
    assert os.listdir(data) == ["plain-name"]


def test_subpath_refuses_symlinks(vols: Volumes, vid: str, tmp_path: Path) -> None:
    vols.create(vid, 32 << 20, os.urandom(64))
    data = vols.data_path(vid)
    os.symlink("/etc", os.path.join(data, "escape"))  # what a sandbox could write into its volume
    for sub in ("escape", "escape/x", "../x"):
        with pytest.raises(VolumePathError):
            vols.source(vid, sub)
    assert vols.source(vid, "a/b/").source == data and os.path.isdir(os.path.join(data, "a/b"))
    # the node's bind walks the subpath again: a symlink swapped in after the check is refused there too
    os.rename(os.path.join(data, "a"), os.path.join(data, "moved"))
    os.symlink("/etc", os.path.join(data, "a"))
    target = str(tmp_path / "target")
    with pytest.raises(VolumePathError):
        bind(data, "a/b", target, False, None)
    assert not priv.is_mountpoint(target)
