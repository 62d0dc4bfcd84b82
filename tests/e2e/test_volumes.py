"""Persistent volumes against the real server (docs/volumes.md): they outlive sandboxes, are shared between
sandboxes of both tiers, read-only mounts are enforced, the size limit is the filesystem's, no plaintext is at rest
once the key is removed, a snapshot restore leaves them alone, delete is refused while mounted and then leaves
nothing on the host, and bad input leaves no sandbox behind."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from sandburg import (
    InvalidVolumeError,
    Sandbox,
    Sandburg,
    VolumeInfo,
    VolumeInUseError,
    VolumeNameConflictError,
    VolumeNotFoundError,
)
from sandburg.node import priv
from sandburg.node.volumes import Volumes
from tests._support.server import ServerProcess
from tests.e2e.test_bad_input import assert_error, count_sandboxes

MakeBox = Callable[..., Sandbox]


def uniq(prefix: str = "vol") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def volume(sb: Sandburg) -> Iterator[Callable[..., VolumeInfo]]:
    """Volumes of this test, deleted afterwards (the test deletes its sandboxes first; make_box's are later)."""
    made: list[str] = []

    def make(size: str = "64MiB") -> VolumeInfo:
        info = sb.volumes.create(uniq(), size=size)
        made.append(info.id)
        return info

    yield make
    for vid in made:
        try:
            for sid in sb.volumes.get(vid).sandboxes:
                sb.get(sid).delete()
            sb.volumes.delete(vid)
        except VolumeNotFoundError:
            pass


def host(server: ServerProcess) -> Volumes:
    return Volumes(server.data_dir)


def sh(box: Sandbox, cmd: str) -> str:
    r = box.process.exec(cmd, timeout=60)
    assert r.exit_code == 0, (cmd, r.stdout, r.stderr)
    return r.stdout


def loop_devices(path: str) -> str:
    return subprocess.run(["losetup", "-j", path], capture_output=True, text=True, check=False).stdout.strip()


def test_survives_delete_and_recreate_then_cleanup(
    sb: Sandburg, make_box: MakeBox, volume: Callable[..., VolumeInfo], server: ServerProcess
) -> None:
    vol = volume()
    assert vol.state == "ready" and vol.size_mib == 64 and vol.sandboxes == ()
    assert sb.volumes.get(vol.name).id == vol.id and vol.id in [v.id for v in sb.volumes.list()]
    mount = [{"name": vol.name, "mount": "/workspace/data"}]
    one = make_box(isolation="container", volumes=mount)
    assert one.raw["volumes"] == [{"volumeId": vol.id, "mountPath": "/workspace/data", "readOnly": False}]
    sh(one, "echo kept > /workspace/data/f && mkdir -p /workspace/data/d && echo x > /workspace/data/d/g")
    one.delete()
    two = make_box(isolation="container", volumes=mount)
    assert sh(two, "cat /workspace/data/f").strip() == "kept"
    assert sb.volumes.get(vol.id).sandboxes == (two.id,)
    with pytest.raises(VolumeInUseError):
        sb.volumes.delete(vol.name)
    two.stop()  # a stopped sandbox still mounts it (it gets it back at start)
    with pytest.raises(VolumeInUseError):
        sb.volumes.delete(vol.name)
    two.delete()
    h = host(server)
    img = h.image_path(vol.id)
    assert os.path.exists(img) and h.is_mounted(vol.id) and loop_devices(img)
    sb.volumes.delete(vol.name)
    assert not os.path.exists(img) and not h.is_mounted(vol.id)
    assert not priv.mounts_under(os.path.dirname(h.mount_path(vol.id))) and not loop_devices(img)
    with pytest.raises(VolumeNotFoundError):
        sb.volumes.get(vol.id)


@pytest.mark.parametrize("tiers", [("container", "container"), ("container", "gvisor")])
def test_shared_between_sandboxes(
    make_box: MakeBox, volume: Callable[..., VolumeInfo], tiers: tuple[str, str]
) -> None:
    vol = volume()
    mount = [{"name": vol.id, "mount": "/mnt/shared"}]
    a, b = (make_box(isolation=t, volumes=mount) for t in tiers)
    # root in both writes (the two container sandboxes map root to different host uids: idmapped mounts)
    sh(a, "echo from-a > /mnt/shared/a && mkdir /mnt/shared/dir-a")
    sh(b, "echo from-b > /mnt/shared/b && echo more >> /mnt/shared/a")
    assert sh(a, "cat /mnt/shared/b").strip() == "from-b"
    assert sh(b, "cat /mnt/shared/a").split() == ["from-a", "more"]
    assert sh(a, "stat -c %u:%g /mnt/shared/b /mnt/shared/dir-a").split() == ["0:0", "0:0"]
    assert sh(b, "stat -c %u /mnt/shared/a").strip() == "0"


@pytest.mark.parametrize("isolation", ["container", "gvisor"])
def test_read_only_and_subpath(make_box: MakeBox, volume: Callable[..., VolumeInfo], isolation: str) -> None:
    vol = volume()
    writer = make_box(isolation="container", volumes=[{"name": vol.name, "mount": "/data"}])
    sh(writer, "mkdir -p /data/sub && echo inside > /data/sub/f && echo top > /data/top")
    ro = make_box(
        isolation=isolation,
        volumes=[
            {"name": vol.name, "mount": "/ro", "read_only": True},
            {"name": vol.name, "mount": "/sub", "subpath": "sub"},
        ],
    )
    assert sh(ro, "cat /ro/top").strip() == "top"
    r = ro.process.exec("echo no > /ro/new; touch /ro/top", timeout=30)
    assert r.exit_code != 0 and "Read-only file system" in r.stdout + r.stderr, r
    assert sh(ro, "ls /sub").split() == ["f"]  # only the subpath
    sh(ro, "echo via-sub > /sub/g")
    assert sh(writer, "cat /data/sub/g").strip() == "via-sub"


def test_size_limit(make_box: MakeBox, volume: Callable[..., VolumeInfo], server: ServerProcess) -> None:
    vol = volume(size="32MiB")
    box = make_box(isolation="container", volumes=[{"name": vol.name, "mount": "/data"}])
    r = box.process.exec("dd if=/dev/zero of=/data/big bs=1M count=64", timeout=60)
    assert r.exit_code != 0 and "No space left on device" in r.stdout + r.stderr, r
    # the filesystem stopped it: the image file never takes more than the volume's size
    assert host(server).usage(vol.id) <= 32 << 20
    box.process.exec("rm /data/big", timeout=30)
    sh(box, "dd if=/dev/zero of=/data/small bs=1M count=4")


def test_no_plaintext_at_rest(
    sb: Sandburg, make_box: MakeBox, volume: Callable[..., VolumeInfo], server: ServerProcess
) -> None:
    vol = volume()
    marker = f"PLAINTEXT-{uuid.uuid4().hex}"
    mount = [{"name": vol.name, "mount": "/data"}]
    box = make_box(isolation="container", volumes=mount)
    sh(box, f"for i in $(seq 200); do echo {marker}; done > /data/{marker}.txt && sync")
    assert marker in sh(box, f"cat /data/{marker}.txt")  # positive control: readable while mounted
    box.delete()
    h = host(server)
    # what the volume is at rest: its key removed from the kernel and the filesystem unmounted
    h.unmount(vol.id)
    assert not h.is_mounted(vol.id) and not loop_devices(h.image_path(vol.id))
    with open(h.image_path(vol.id), "rb") as fh:
        raw = fh.read()
    assert marker.encode() not in raw  # neither the contents nor the file's name
    assert b"lost+found" in raw  # the scan sees the filesystem's own plaintext names: it would find ours
    # the next sandbox gets it back: the server mounts it again with the key derived from its master key
    again = make_box(isolation="gvisor", volumes=mount)
    assert sh(again, f"head -1 /data/{marker}.txt").strip() == marker


def test_not_in_snapshots(sb: Sandburg, make_box: MakeBox, volume: Callable[..., VolumeInfo]) -> None:
    vol = volume()
    box = make_box(isolation="container", volumes=[{"name": vol.name, "mount": "/data"}])
    sh(box, "echo one > /data/v && echo one > /root/r")
    name = uniq("snap")
    box.snapshot(name)
    try:
        sh(box, "echo two > /data/v && echo two > /root/r")
        box.restore(name)
        assert sh(box, "cat /root/r").strip() == "one"  # the root rolled back
        assert sh(box, "cat /data/v").strip() == "two"  # the volume did not
    finally:
        sb.snapshots.delete(name)


def test_bad_input(sb: Sandburg, http: httpx.Client, volume: Callable[..., VolumeInfo]) -> None:
    for size in ("1MiB", "2TiB"):
        with pytest.raises(InvalidVolumeError):
            sb.volumes.create(uniq(), size=size)
    with pytest.raises(ValueError):
        sb.volumes.create(uniq(), size="lots")
    for name in ("-x", "a/b", "x" * 64, ""):
        assert_error(http.post("volumes", json={"name": name}), 422, "INVALID_VOLUME")
    assert_error(http.post("volumes", json={"name": "x", "size": 5}), 400, "VALIDATION_ERROR")
    vol = volume()
    with pytest.raises(VolumeNameConflictError):
        sb.volumes.create(vol.name)
    before = count_sandboxes(http)
    for path in (
        "relative",
        "/",
        "/proc",
        "/sys/x",
        "/dev",
        "/.sandburg/run",
        "/a/../b",
        "/a/./b",
        "//a",
        "/a/",
    ):
        body = {"image": "busybox", "volumes": [{"volumeId": vol.id, "mountPath": path}]}
        assert_error(http.post("sandbox", json=body), 422, "INVALID_VOLUME")
    for sub in ("../x", "/abs", "a/../../b"):
        body = {"image": "busybox", "volumes": [{"volumeId": vol.id, "mountPath": "/d", "subpath": sub}]}
        assert_error(http.post("sandbox", json=body), 422, "INVALID_VOLUME")
    twice = [{"volumeId": vol.id, "mountPath": "/d"}, {"volumeId": vol.name, "mountPath": "/d"}]
    assert_error(http.post("sandbox", json={"image": "busybox", "volumes": twice}), 422, "INVALID_VOLUME")
    with pytest.raises(VolumeNotFoundError):
        sb.create(image="busybox", volumes=[{"name": "no-such-volume", "mount": "/d"}])
    assert count_sandboxes(http) == before
    assert sb.volumes.get(vol.id).sandboxes == ()
    assert_error(http.get("volumes/no-such-volume"), 404, "VOLUME_NOT_FOUND")
    assert_error(http.delete("volumes/no-such-volume"), 404, "VOLUME_NOT_FOUND")
    with pytest.raises(TypeError):
        sb.create(image="busybox", volumes=[{"name": vol.name, "path": "/d"}])


def test_cli(cli: Callable[..., subprocess.CompletedProcess[str]], sb: Sandburg) -> None:
    name = uniq()
    r = cli("volume", "create", name, "--size", "48MiB")
    assert r.returncode == 0, r.stderr
    vid = r.stdout.strip()
    try:
        r = cli("volume", "ls")
        assert r.returncode == 0 and name in r.stdout and "48MiB" in r.stdout, r
        r = cli("create", "--image", "busybox", "--isolation", "container", "--volume", f"{name}:/v:ro")
        assert r.returncode == 0, r.stderr
        box = sb.get(r.stdout.strip())
        try:
            assert box.raw["volumes"] == [{"volumeId": vid, "mountPath": "/v", "readOnly": True}]
            r = cli("volume", "rm", name)
            assert r.returncode == 1 and "VOLUME_IN_USE" in r.stderr, r
        finally:
            box.delete()
        r = cli("create", "--volume", "bad-spec")
        assert r.returncode != 0 and "NAME:/path" in r.stderr
    finally:
        r = cli("volume", "rm", name)
    assert r.returncode == 0 and r.stdout.strip() == name, r


def test_gvisor_memory_snapshot_and_pause_keep_the_volume(
    sb: Sandburg, make_box: MakeBox, volume: Callable[..., VolumeInfo]
) -> None:
    """runsc checkpoint/restore with a volume's bind mount: the gofer serves it again after a pause, a memory
    snapshot and an in-place restore of it, and the restore does not roll the volume back."""
    vol = volume()
    box = make_box(isolation="gvisor", volumes=[{"name": vol.name, "mount": "/data"}])
    sh(box, "echo one > /data/v")
    name = uniq("msnap")
    box.snapshot(name, memory=True)
    try:
        assert sb.get(box.id).state == "started"
        sh(box, "echo two > /data/v")
        box.pause()
        assert sb.get(box.id).state == "paused"
        box.start()
        assert sh(box, "cat /data/v").strip() == "two"
        box.restore(name)
        assert sh(box, "cat /data/v").strip() == "two"
        sh(box, "echo three > /data/v")
        # a memory fork mounts the same volume (its restored processes have it open): shared, not copied
        (child,) = sb.fork(name)
        try:
            assert sh(child, "cat /data/v").strip() == "three"
            sh(child, "echo four > /data/v")
            assert sh(box, "cat /data/v").strip() == "four"
        finally:
            child.delete()
    finally:
        sb.snapshots.delete(name)


def test_server_restart_remounts_and_removes_orphans(
    sb: Sandburg, make_box: MakeBox, volume: Callable[..., VolumeInfo], server: ServerProcess
) -> None:
    """Start-up reconcile: a volume unmounted behind the server's back (a host reboot) is mounted again with its
    key, a running sandbox keeps its mount across the restart, and a volume no row owns leaves nothing behind."""
    kept, idle = volume(), volume()
    box = make_box(isolation="container", volumes=[{"name": kept.name, "mount": "/data"}])
    sh(box, "echo before > /data/f")
    h = host(server)
    assert h.is_mounted(idle.id)  # mounted on the host although no sandbox uses it
    server.stop()
    h.unmount(idle.id)
    orphan = str(uuid.uuid4())
    h.create(orphan, 32 << 20, os.urandom(64))  # as if its row had been lost
    server.start()
    with Sandburg(api_url=server.api_url, api_key=server.api_key) as again:
        assert h.is_mounted(idle.id) and again.volumes.get(idle.id).state == "ready"
        assert not os.path.exists(h.image_path(orphan)) and not h.is_mounted(orphan)
        assert not loop_devices(h.image_path(orphan)) and orphan not in h.ids()
        assert sh(again.get(box.id), "cat /data/f").strip() == "before"
        b2 = again.create(image="busybox", isolation="gvisor", volumes=[{"name": idle.name, "mount": "/i"}])
        try:
            sh(b2, "echo ok > /i/x")
        finally:
            b2.delete()
