"""What a sandbox can see: its own root, processes, hostname — never the host's or another sandbox's."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from tests.integration.conftest import TIERS


@pytest.mark.parametrize("tier", TIERS)
def test_own_root_hostname_and_workspace(make_box, tier):
    box = make_box(tier, hostname="iso-host")
    assert box.out("hostname").strip() == "iso-host"
    assert box.out("id -u").strip() == "0"
    assert box.out("cd /workspace && pwd").strip() == "/workspace"
    assert "127.0.1.1\tiso-host" in box.out("cat /etc/hosts")


@pytest.mark.parametrize("tier", TIERS)
def test_host_files_and_processes_are_invisible(make_box, tier):
    marker = f"/tmp/sandburg-host-marker-{uuid.uuid4().hex}"
    with open(marker, "w") as fh:
        fh.write("host secret")
    host_sleep = subprocess.Popen(["sleep", "31.4159"])
    try:
        box = make_box(tier)
        # positive control: the same tools see the sandbox's own files and processes
        assert box.sh("test -e /bin/sh").exit_code == 0
        assert box.sh(f"test -e {marker}").exit_code == 1
        ps = box.out("ps -o pid,args")
        assert "31.4159" not in ps
        assert "tini" in ps  # the sandbox's own PID 1 is there
        # every pid the sandbox sees is one of its own few processes
        assert len(box.out("ls -d /proc/[0-9]*").split()) < 15
    finally:
        host_sleep.kill()
        host_sleep.wait()
        os.unlink(marker)


@pytest.mark.parametrize("tier", TIERS)
def test_sandboxes_do_not_see_each_other(make_box, tier):
    a = make_box(tier)
    b = make_box(tier)
    a.sh("sleep 27.1828 >/dev/null 2>&1 &")
    a.sh("echo mine > /workspace/a-only")
    assert "27.1828" in a.out("ps -o args")
    assert "27.1828" not in b.out("ps -o args")
    assert b.sh("test -e /workspace/a-only").exit_code == 1


def test_gvisor_ls_l_works_with_debian_coreutils(make_box):
    # Debian 12's runsc broke statx (ls -l printed "Invalid argument"); the pinned trixie build must not.
    box = make_box("gvisor", image="debian-12")
    r = box.sh("ls -l /usr/bin/python3 /etc/passwd")
    assert r.exit_code == 0, r
    assert b"Invalid argument" not in r.stderr
    assert b"/etc/passwd" in r.stdout


def test_container_root_is_not_host_root(make_box):
    box = make_box("container")
    # inside: root; its user namespace maps 0 to an unprivileged host uid range
    uid_map = box.out("cat /proc/self/uid_map").split()
    assert uid_map[:3] == ["0", str(box.spec.uid_base), "65536"]
    # outside: the sandbox's processes run as that host uid, not as 0
    with open(f"/proc/{box.pid}/status") as fh:
        uids = next(line.split()[1:] for line in fh if line.startswith("Uid:"))
    assert uids[0] == str(box.spec.uid_base)
    # files root writes inside are root's on disk (idmapped mount), so images and snapshots stay tier-independent
    box.sh("echo x > /root/owned")
    st = os.stat(os.path.join(box.node.root_path(box.id), "root", "owned"))
    assert (st.st_uid, st.st_gid) == (0, 0)


def test_container_hardening(make_box):
    box = make_box("container")
    # positive control for each: the tool runs and reports the expected failure, not "not found"
    r = box.sh("echo 1 > /proc/sys/kernel/hostname")
    assert r.exit_code != 0 and b"Read-only file system" in r.stderr
    r = box.sh("unshare -U true")  # a new user namespace is refused by seccomp
    assert r.exit_code != 0 and b"Operation not permitted" in r.stderr, r
    r = box.sh("mount -t tmpfs none /mnt")
    assert r.exit_code != 0 and (b"Operation not permitted" in r.stderr or b"ermission denied" in r.stderr), r
    caps = box.out("grep CapEff /proc/self/status").split()[1]
    cap_sys_admin = 1 << 21
    assert int(caps, 16) & cap_sys_admin == 0
    assert int(caps, 16) != 0  # root inside still has the ordinary capabilities (chown, setuid, ...)


def test_gvisor_runs_a_userspace_kernel(make_box):
    box = make_box("gvisor")
    # gVisor's Sentry answers uname itself; the host kernel is 6.x
    assert box.out("uname -r").strip() != os.uname().release
