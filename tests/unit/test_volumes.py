"""Volumes without a host: mount path and subpath rules, the per-volume key, config.json mounts, the SDK's and the
CLI's mount syntax."""

from __future__ import annotations

import argparse

import pytest

from sandburg import _core as core
from sandburg.cli.volume import mount_arg
from sandburg.node.spec import BundlePaths, SandboxSpec, VolumeMountSpec, build_config
from sandburg.server.errors import ApiError
from sandburg.server.secretcrypto import MasterKey
from sandburg.server.volumes import check_mount_path, check_subpath, volume_key


@pytest.mark.parametrize("path", ["/workspace/data", "/d", "/etc/x", "/procfs", "/devices", "/.sandburgx"])
def test_mount_paths_allowed(path: str) -> None:
    assert check_mount_path(path) == path


@pytest.mark.parametrize(
    "path",
    ["", "rel", "/", "//x", "/a/", "/a/../b", "/a/./b", "/..", "/proc", "/proc/x", "/sys", "/dev/shm",
     "/.sandburg", "/.sandburg/run", "/a\0b"],
)  # fmt: skip
def test_mount_paths_refused(path: str) -> None:
    with pytest.raises(ApiError) as exc:
        check_mount_path(path)
    assert exc.value.code == "INVALID_VOLUME" and exc.value.status == 422


def test_subpaths() -> None:
    assert check_subpath(None) == "" and check_subpath("") == ""
    assert check_subpath("a/b/") == "a/b" and check_subpath("a//b") == "a/b"
    for bad in ("/a", "..", "a/../b", "./a", "a\0"):
        with pytest.raises(ApiError):
            check_subpath(bad)


def test_volume_key_is_per_volume_and_stable() -> None:
    m = MasterKey(bytes(range(32)))
    k = volume_key(m, "v1")
    assert len(k) == 64 and k == volume_key(MasterKey(bytes(range(32))), "v1")
    assert k != volume_key(m, "v2") and k != volume_key(MasterKey(bytes(32)), "v1")


def test_config_mounts_volumes_last_and_read_only() -> None:
    spec = SandboxSpec(
        id="x", hostname="h", isolation="container", image="i", cpu=1, memory_mib=256, disk_mib=1024,
        volumes=(VolumeMountSpec("/b/vol0", "/data"), VolumeMountSpec("/b/vol1", "/ro", read_only=True)),
    )  # fmt: skip
    cfg = build_config(spec, BundlePaths("/b/rootfs", "/layer", "/run"), "/sb/x", {})
    a, b = cfg["mounts"][-2:]
    assert a == {"destination": "/data", "type": "bind", "source": "/b/vol0",
                 "options": ["rbind", "rw", "nosuid", "nodev"]}  # fmt: skip
    assert b["destination"] == "/ro" and "ro" in b["options"] and "rw" not in b["options"]


def test_sdk_and_cli_mount_syntax() -> None:
    body = core.create_request(volumes=[{"name": "data", "mount": "/d"},
                                        {"name": "x", "mount": "/r", "read_only": True, "subpath": "s"}]).json  # fmt: skip
    assert body is not None and body["volumes"] == [
        {"volumeId": "data", "mountPath": "/d", "readOnly": False},
        {"volumeId": "x", "mountPath": "/r", "readOnly": True, "subpath": "s"},
    ]
    for bad in ({"name": "d"}, {"name": "d", "mount": "/d", "mode": "ro"}):
        with pytest.raises(TypeError):
            core.create_request(volumes=[bad])
    with pytest.raises(TypeError):
        core.create_request(volumes={"name": "d", "mount": "/d"})  # type: ignore[arg-type]
    assert mount_arg("data:/w/d") == {"name": "data", "mount": "/w/d", "read_only": False}
    assert mount_arg("data:/w/d:ro")["read_only"] is True
    for bad in ("data", "data:rel", ":/x", "data:/x:rx"):
        with pytest.raises(argparse.ArgumentTypeError):
            mount_arg(bad)
