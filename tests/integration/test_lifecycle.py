"""Create, stop, start, delete at the node level: state kept or removed exactly, every trace gone."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from sandburg.node import cgroups, priv
from sandburg.node.agent_client import AgentUnavailable, wait_ready
from sandburg.node.spec import SandboxSpec
from tests.integration.conftest import TIERS


@pytest.mark.parametrize("tier", TIERS)
def test_stop_keeps_files_start_brings_them_back(make_box, tier):
    box = make_box(tier)
    box.sh("echo kept > /workspace/f; echo also > /etc/extra")
    box.node.stop(box.id, tier)
    running, _ = box.node.is_running(box.id, tier)
    assert not running
    box.node.start(box.spec)
    assert box.out("cat /workspace/f /etc/extra") == "kept\nalso\n"


@pytest.mark.parametrize("tier", TIERS)
def test_delete_leaves_no_trace(node, tier):
    spec = SandboxSpec(
        id=str(uuid.uuid4()), hostname="gone", isolation=tier, image="busybox", cpu=1, memory_mib=256,
        disk_mib=512, uid_base=100_000 + 12345 * 65536,
    )  # fmt: skip
    node.create(spec)
    bundle, _ = node.bundle_paths(spec.id)
    assert spec.id in node.inventory().ids()
    node.delete(spec.id, tier)
    inv = node.inventory()
    assert spec.id not in inv.ids()
    assert not os.path.exists(bundle)
    assert not os.path.exists(node.root_path(spec.id))
    assert not priv.mounts_under(bundle)
    assert spec.id not in cgroups.children(node.cfg.cgroup_parent)
    assert node.runtimes[tier].state(spec.id) is None
    node.delete(spec.id, tier)  # deleting again is harmless (crash recovery repeats steps)


@pytest.mark.parametrize("tier", TIERS)
def test_disk_limit_is_enforced(make_box, tier):
    box = make_box(tier, disk_mib=128)
    r = box.sh("dd if=/dev/zero of=/workspace/big bs=1M count=400")
    assert r.exit_code != 0
    assert b"quota" in r.stderr.lower() or b"space" in r.stderr.lower(), r
    # positive control: small writes still work once the big file is gone, the sandbox is healthy
    box.sh("rm -f /workspace/big")
    assert box.out("echo ok > /workspace/small && cat /workspace/small") == "ok\n"


def test_agent_socket_replaced_by_a_symlink_is_refused(make_box, tmp_path):
    box = make_box("container")
    _, paths = box.node.bundle_paths(box.id)
    sock_path = os.path.join(paths.run_dir, "agent.sock")
    # a host socket the sandbox would like the server to talk to
    decoy = socket.socket(socket.AF_UNIX)
    decoy_path = str(tmp_path / "decoy.sock")
    decoy.bind(decoy_path)
    decoy.listen()
    try:
        wait_ready(sock_path, 5)  # positive control: the real socket answers
        os.rename(sock_path, sock_path + ".moved")
        os.symlink(decoy_path, sock_path)
        with pytest.raises(AgentUnavailable, match="not a socket"):
            wait_ready(sock_path, 0.2)
    finally:
        decoy.close()


@pytest.mark.parametrize("tier", TIERS)
def test_run_dir_is_size_limited(make_box, tier):
    # /.sandburg/run is writable from inside (the agent's socket and session logs live there); on the host it is a
    # subvolume of its own with a limit, so a sandbox cannot fill the host's disk through it
    box = make_box(tier)
    r = box.sh("dd if=/dev/zero of=/.sandburg/run/fill bs=1M count=200")
    assert r.exit_code != 0 and (b"quota" in r.stderr.lower() or b"space" in r.stderr.lower()), r
    assert os.path.getsize(os.path.join(box.node.run_path(box.id), "fill")) <= 64 << 20
    box.sh("rm -f /.sandburg/run/fill")
    assert box.out("echo ok") == "ok\n"  # the agent's socket still works
