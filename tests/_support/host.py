"""Per-test-session data dirs on the host, and removing every trace of them afterwards."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import uuid

from sandburg.node import cgroups, priv
from sandburg.node.net import NetConfig, Network
from sandburg.node.node import Node, NodeConfig

TEST_ROOT = os.environ.get("SANDBURG_TEST_ROOT", "/var/lib/sandburg-test")
CACHE_DIR = os.environ.get("SANDBURG_CACHE_DIR", "/var/cache/sandburg")
IMAGES = ("busybox", "debian-12")


def require_root() -> None:
    if os.geteuid() != 0:
        raise RuntimeError(
            "these tests drive real runtimes, mounts and cgroups: run them as root (make test)"
        )


def new_data_dir(kind: str) -> tuple[str, str]:
    """A fresh data dir and cgroup parent for one test session."""
    tag = f"{kind}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    data_dir = os.path.join(TEST_ROOT, tag)
    os.makedirs(data_dir, mode=0o711)
    return data_dir, f"sandburg-test/{tag}"


def net_for(data_dir: str) -> NetConfig:
    """The bridge, subnet, nftables table and tag of a test data dir: its own, derived from its name, so that test
    servers never share network objects with each other or with a `make up` server (sandburg0, 10.213.0.0/16)."""
    h = hashlib.sha256(os.path.basename(data_dir).encode()).hexdigest()
    n = int(h[:6], 16)
    return NetConfig(
        bridge=f"sbt{h[:8]}",
        subnet=f"10.{216 + n % 16}.{(n >> 4) % 256}.0/24",
        table=f"sbt_{h[:8]}",
        tag=f"t{h[:6]}",
    )


def net_env(data_dir: str) -> dict[str, str]:
    cfg = net_for(data_dir)
    return {
        "SANDBURG_NET_BRIDGE": cfg.bridge,
        "SANDBURG_NET_SUBNET": cfg.subnet,
        "SANDBURG_NET_TABLE": cfg.table,
        "SANDBURG_NET_TAG": cfg.tag,
    }


def node_for(data_dir: str, cgroup_parent: str, net: bool = True) -> Node:
    """The node of a test data dir; `net=False`: sandboxes without networking (the node-level tests)."""
    return Node(
        NodeConfig(
            net=net_for(data_dir) if net else None,
            data_dir=data_dir,
            cache_dir=CACHE_DIR,
            cgroup_parent=cgroup_parent,
            store_size_bytes=64 << 30,
            run_limit_bytes=64 << 20,  # small, so the run-dir limit test writes little
        )
    )


def destroy(data_dir: str, cgroup_parent: str) -> list[str]:
    """Remove all sandboxes, mounts, cgroups and files of a test data dir. Returns what could not be removed."""
    problems: list[str] = []
    node = node_for(data_dir, cgroup_parent)
    if priv.is_mountpoint(node.store.root):
        try:
            node.layer = "/nonexistent"  # collect needs no layer
            node.collect(set())
        except Exception as exc:  # keep going: the rest must still be removed
            problems.append(f"collect: {exc}")
    try:
        Network(net_for(data_dir)).remove_all()
    except Exception as exc:
        problems.append(f"network: {exc}")
    for mp in priv.mounts_under(data_dir):
        r = os.system(f"umount -l '{mp}' 2>/dev/null")
        if r != 0:
            problems.append(f"umount {mp}")
    problems += detach_loops(data_dir)
    problems += cgroups.remove(cgroup_parent)
    for d in cgroups.controller_dirs(
        os.path.dirname(cgroup_parent)
    ):  # the shared sandburg-test parent, once empty
        try:
            os.rmdir(d)
        except OSError:
            pass
    shutil.rmtree(data_dir, ignore_errors=True)
    if os.path.exists(data_dir):
        problems.append(f"rm {data_dir}")
    return problems


def loop_devices(prefix: str) -> dict[str, str]:
    """Loop devices whose backing file is under `prefix` (the store, volumes): device -> file."""
    out = subprocess.run(
        ["losetup", "--list", "--noheadings", "--raw", "--output", "NAME,BACK-FILE"],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    found = {}
    for line in out.splitlines():
        dev, _, back = line.partition(" ")
        back = back.removesuffix(" (deleted)")
        if back == prefix or back.startswith(prefix.rstrip("/") + "/"):
            found[dev] = back
    return found


def detach_loops(data_dir: str) -> list[str]:
    """Detach loop devices of a test data dir that its (lazily) unmounted filesystems left attached."""
    problems = []
    for dev, back in loop_devices(data_dir).items():
        if subprocess.run(["losetup", "-d", dev], capture_output=True, check=False).returncode != 0:
            problems.append(f"losetup -d {dev} ({back})")
    return problems
