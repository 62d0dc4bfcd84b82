"""The OCI config every sandbox runs with: the security-relevant settings, per tier."""

from __future__ import annotations

from sandburg.node.runtime_layer import MOUNT_POINT
from sandburg.node.spec import GVISOR_MEMORY_OVERHEAD_MIB, BundlePaths, SandboxSpec, build_config

PATHS = BundlePaths(rootfs="/r", layer="/layer", run_dir="/run-dir")


def spec(isolation: str, **kw: object) -> SandboxSpec:
    base: dict[str, object] = dict(
        id="x", hostname="h", isolation=isolation, image="busybox", cpu=2, memory_mib=512, disk_mib=1024,
        env={"A": "1"}, uid_base=200_000, pids_limit=99,
    )  # fmt: skip
    base.update(kw)
    return SandboxSpec(**base)  # type: ignore[arg-type]


def test_container_tier_is_hardened() -> None:
    cfg = build_config(spec("container"), PATHS, "/sb/x", {"PATH": "/bin"}, nofile=1024)
    linux = cfg["linux"]
    assert {"type": "user"} in linux["namespaces"]
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": 200_000, "size": 65536}]
    assert linux["gidMappings"] == linux["uidMappings"]
    assert "/proc/sys" in linux["readonlyPaths"]
    assert "/proc/kcore" in linux["maskedPaths"]
    denied = linux["seccomp"]["syscalls"][0]["names"]
    for name in (
        "mount",
        "bpf",
        "init_module",
        "kexec_load",
        "setns",
        "keyctl",
        "io_uring_setup",
        "ptrace"[:0] or "userfaultfd",
    ):
        assert name in denied, name
    caps = cfg["process"]["capabilities"]["bounding"]
    assert "CAP_SYS_ADMIN" not in caps and "CAP_NET_RAW" not in caps and "CAP_SYS_PTRACE" not in caps
    assert cfg["process"]["noNewPrivileges"] is True
    for ns in ("pid", "ipc", "uts", "mount", "network"):
        assert {"type": ns} in linux["namespaces"]


def test_limits_and_identity() -> None:
    cfg = build_config(spec("container"), PATHS, "/sb/x", {"PATH": "/bin"}, nofile=1024)
    res = cfg["linux"]["resources"]
    assert res["cpu"] == {"quota": 200_000, "period": 100_000}
    assert res["memory"]["limit"] == 512 << 20
    assert res["pids"] == {"limit": 99}
    assert cfg["hostname"] == "h"
    assert cfg["process"]["user"] == {"uid": 0, "gid": 0}
    assert "A=1" in cfg["process"]["env"] and "PATH=/bin" in cfg["process"]["env"]
    assert cfg["linux"]["cgroupsPath"] == "/sb/x"


def test_gvisor_tier_gets_its_runtime_overhead_and_no_host_netns() -> None:
    cfg = build_config(spec("gvisor"), PATHS, "/sb/x", {}, nofile=1024)
    assert cfg["linux"]["resources"]["memory"]["limit"] == (512 + GVISOR_MEMORY_OVERHEAD_MIB) << 20
    assert {"type": "network"} not in cfg["linux"]["namespaces"]  # runsc --network=none: its own netstack
    assert "uidMappings" not in cfg["linux"]


def test_runtime_layer_and_agent_socket_mounts() -> None:
    cfg = build_config(spec("gvisor"), PATHS, "/sb/x", {}, nofile=1024)
    mounts = {m["destination"]: m for m in cfg["mounts"]}
    assert mounts[MOUNT_POINT]["source"] == "/layer" and "ro" in mounts[MOUNT_POINT]["options"]
    run = mounts[f"{MOUNT_POINT}/run"]
    assert run["source"] == "/run-dir" and "noexec" in run["options"]
    assert cfg["process"]["args"][0] == f"{MOUNT_POINT}/bin/tini"
