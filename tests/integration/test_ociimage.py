"""OCI images: pull from a real registry on loopback, import archives, unpack layers (sandburg.node.ociimage).

Real skopeo and docker-registry; the test image is assembled from the host's busybox (tests/_support/registry.py),
so nothing is downloaded. Rootfs dirs are plain temp dirs: unpacking needs no btrfs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator

import pytest

from sandburg.node import ociimage
from sandburg.node.errors import ImagePullError, UnsafeImageError
from tests._support.host import require_root
from tests._support.registry import (
    MALICIOUS,
    MTIME,
    BuiltImage,
    Registry,
    build_busybox_image,
    build_malicious_image,
    push,
    registry,
    registry_digest,
    write_docker_archive,
    write_oci_tarball,
)


@pytest.fixture
def work() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="sandburg-oci-test-")
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.fixture(scope="module")
def image() -> Iterator[BuiltImage]:
    require_root()
    path = tempfile.mkdtemp(prefix="sandburg-oci-image-")
    try:
        yield build_busybox_image(os.path.join(path, "layout"))
    finally:
        shutil.rmtree(path)


@pytest.fixture(scope="module")
def reg() -> Iterator[Registry]:
    with registry() as r:
        yield r


@pytest.fixture(scope="module")
def pushed(reg: Registry, image: BuiltImage) -> str:
    try:
        return push(image, reg.host)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\nregistry log:\n{reg.read_log()}") from exc


def unpack_into(work: str, layout: str, tag: str) -> tuple[str, ociimage.OciConfig]:
    rootfs = os.path.join(work, "rootfs")
    os.mkdir(rootfs)
    return rootfs, ociimage.unpack(layout, tag, rootfs)


def tree(root: str) -> dict[str, tuple[object, ...]]:
    """Everything about a tree the unpacker sets: type, mode, owner, mtime, content or link target, xattrs."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            key = os.path.relpath(path, root)
            meta = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            if stat.S_ISLNK(st.st_mode):
                out[key] = (*meta, os.readlink(path), st.st_mtime)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
                xattrs = {a: os.getxattr(path, a) for a in os.listxattr(path)}
                out[key] = (*meta, digest, st.st_nlink, st.st_mtime, xattrs)
            else:
                out[key] = (*meta, st.st_mtime)
    return out


def test_pull_applies_layers_whiteouts_and_config(pushed: str, work: str) -> None:
    layout = os.path.join(work, "layout")
    tag = ociimage.pull(pushed, layout, tls_verify=False)
    rootfs, cfg = unpack_into(work, layout, tag)
    t = tree(rootfs)
    assert sorted(t) == sorted(
        ["bin", "bin/busybox", "bin/sh", "bin/ls", "bin/true", "dev", "etc", "etc/motd", "opt", "opt/data",
         "opt/data/new1", "home", "home/user", "home/user/note", "usr", "usr/local", "usr/local/bin",
         "usr/local/bin/suid", "tmp"]
    )  # fmt: skip
    # whiteout (etc/gone), overlayfs 0/0 char device (bin/cat), opaque dir (opt/data's old1 and sub/) are gone,
    # a device node was not created (dev/null), the replaced file has the upper layer's content
    with open(os.path.join(rootfs, "etc/motd")) as fh:
        assert fh.read() == "hello again\n"
    assert os.listdir(os.path.join(rootfs, "opt/data")) == ["new1"]
    assert os.listdir(os.path.join(rootfs, "dev")) == []
    # links: symlink targets verbatim (relative and absolute), the hard link shares busybox's inode
    assert os.readlink(os.path.join(rootfs, "bin/sh")) == "busybox"
    assert os.readlink(os.path.join(rootfs, "bin/ls")) == "/bin/busybox"
    busybox = os.lstat(os.path.join(rootfs, "bin/busybox"))
    assert os.lstat(os.path.join(rootfs, "bin/true")).st_ino == busybox.st_ino
    with open("/bin/busybox", "rb") as fh:
        assert t["bin/busybox"][4] == hashlib.sha256(fh.read()).hexdigest()
    # numeric ownership, modes with setuid and sticky bits, mtimes, user xattrs only
    assert t["home/user"][1:4] == (0o750, 1000, 1000)
    assert t["home/user/note"][1:4] == (0o640, 1000, 1000)
    assert t["home/user/note"][7] == {"user.sandburg": b"yes"}
    assert t["usr/local/bin/suid"][1:4] == (0o4755, 0, 0)
    assert t["tmp"][1] == 0o1777
    assert t["bin/busybox"][1:4] == (0o755, 0, 0) and t["bin/busybox"][6] == MTIME
    assert t["etc"][4] == MTIME  # dir mtimes are set after their children are written
    assert t["bin"][4] == MTIME  # and kept when a later layer only deletes in them
    # the config, and the digest of the manifest the registry serves
    assert cfg == ociimage.OciConfig(
        env={"PATH": "/bin:/usr/bin", "GREETING": "hi=there"},
        workdir="/home/user",
        user="1000:1000",
        entrypoint=[],
        cmd=["/bin/sh", "-c", "echo hi"],
        digest=registry_digest(pushed),
    )


def test_config_defaults() -> None:
    cfg = ociimage._config({"Env": ["LANG=C.UTF-8", "junk"], "Cmd": None}, "sha256:" + "0" * 64)
    assert cfg.env == {"LANG": "C.UTF-8", "PATH": ociimage.DEFAULT_PATH}
    assert (cfg.workdir, cfg.user, cfg.entrypoint, cfg.cmd) == ("/", "root", [], [])


def test_pull_of_missing_tag_says_manifest_unknown(reg: Registry, pushed: str, work: str) -> None:
    missing = f"{reg.host}/test/busy:nope"
    with pytest.raises(ImagePullError) as info:
        ociimage.pull(missing, os.path.join(work, "layout"), tls_verify=False)
    assert missing in str(info.value)
    assert "manifest unknown" in str(info.value)


@pytest.mark.parametrize("reference", ["127.0.0.1:1/test/busy:1", "oci:/etc", "dir:///etc", "bad ref"])
def test_pull_of_unreachable_or_invalid_reference_fails(reference: str, work: str) -> None:
    with pytest.raises(ImagePullError) as info:
        ociimage.pull(reference, os.path.join(work, "layout"), tls_verify=False, timeout=60)
    assert reference in str(info.value)
    assert not os.path.exists(os.path.join(work, "layout", "index.json"))


def test_archive_imports_give_the_pulled_tree(pushed: str, image: BuiltImage, work: str) -> None:
    trees, configs = {}, {}
    for kind in ("pull", "docker-archive", "oci-tarball"):
        sub = os.path.join(work, kind)
        os.mkdir(sub)
        layout = os.path.join(sub, "layout")
        if kind == "pull":
            tag = ociimage.pull(pushed, layout, tls_verify=False)
        else:
            archive = os.path.join(sub, "image.tar")
            if kind == "docker-archive":
                write_docker_archive(image, archive)
            else:
                write_oci_tarball(image.layout, archive)
            tag = ociimage.import_archive(archive, layout)
        rootfs, cfg = unpack_into(sub, layout, tag)
        trees[kind], configs[kind] = tree(rootfs), cfg
    assert trees["docker-archive"] == trees["pull"]
    assert trees["oci-tarball"] == trees["pull"]
    assert configs["oci-tarball"] == configs["pull"]  # the same manifest: same digest
    # a docker-archive holds a docker manifest, so only its digest differs
    assert {**configs["docker-archive"].__dict__, "digest": ""} == {**configs["pull"].__dict__, "digest": ""}
    assert [n for n in os.listdir(os.path.join(work, "oci-tarball")) if n.startswith(".oci-import-")] == []


@pytest.mark.parametrize("kind", MALICIOUS)
def test_malicious_layers_are_refused_and_touch_nothing_outside(kind: str, work: str) -> None:
    require_root()
    target = f"/tmp/sandburg-escape-{uuid.uuid4().hex}"
    os.mkdir(target)
    try:
        evil = build_malicious_image(os.path.join(work, "evil-layout"), kind, target)
        archive = os.path.join(work, "evil.tar")
        write_oci_tarball(evil.layout, archive)
        layout = os.path.join(work, "layout")
        tag = ociimage.import_archive(archive, layout)
        with pytest.raises(UnsafeImageError):
            unpack_into(work, layout, tag)
        assert os.listdir(target) == []
        assert sorted(os.listdir(work)) == ["evil-layout", "evil.tar", "layout", "rootfs"]
    finally:
        shutil.rmtree(target)
