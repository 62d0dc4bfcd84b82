"""Attacks from inside a sandbox, on both tiers: each attempt fails with the error it must, next to a positive
control (the same probe doing an allowed thing), and leaves the host as it was.

Checks that already live elsewhere are not repeated here: host files and processes invisible, hostname, /proc/sys
read-only and user namespaces refused on `container` (tests/integration/test_isolation.py); symlinked files in
downloads and uploads (tests/e2e/test_bad_input.py::test_paths_stay_inside_the_sandbox, tests/e2e/test_files.py::
test_symlinks_pointing_out_resolve_inside); sandbox to sandbox and sandbox to the API port on the bridge
(tests/e2e/test_network.py); OOM, pids and disk quota (tests/e2e/test_limits.py); audit store invisible
(tests/e2e/test_audit.py::test_sandbox_cannot_reach_the_audit_store). docs/security.md maps each defense to its test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandburg import APIError, NotFoundError, Sandbox, Sandburg
from tests._support.fakenet import FakeNet
from tests._support.server import ServerProcess
from tests.e2e.conftest import TIERS

PROBE = (Path(__file__).parent / "probe.py").read_bytes()


@pytest.fixture(scope="module", params=TIERS)
def box(sb: Sandburg, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    b = sb.create(image="debian-12", isolation=request.param, network="all", labels={"test": "security"})
    try:
        b.fs.upload_file(PROBE, "/opt/probe.py")
        yield b
    finally:
        b.delete()


def attempt(box: Sandbox, *argv: str) -> dict[str, Any]:
    r = box.process.exec("python3 /opt/probe.py " + " ".join(f"'{a}'" for a in argv), timeout=60)
    assert r.exit_code == 0, r
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


def fails(box: Sandbox, *argv: str) -> str:
    res = attempt(box, *argv)
    assert not res["ok"], (argv, res)
    return str(res["errno"])


def ok(box: Sandbox, *argv: str) -> Any:
    res = attempt(box, *argv)
    assert res["ok"], (argv, res)
    return res["value"]


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A directory on the host holding a marker no sandbox may read."""
    d = Path(f"/tmp/sandburg-sec-{uuid.uuid4().hex}")
    d.mkdir()
    (d / "secret").write_text("host secret")
    try:
        yield d
    finally:
        shutil.rmtree(d)


def test_host_files_through_proc_root_and_mountinfo(
    box: Sandbox, host_dir: Path, server: ServerProcess
) -> None:
    marker = host_dir / "secret"
    # positive control: the same reads reach the sandbox's own files through the same /proc links
    assert ok(box, "read", "/proc/self/root/etc/os-release").startswith("PRETTY_NAME")
    pid1 = attempt(box, "read", "/proc/1/root/etc/debian_version")  # gVisor: only for pid 1's tracers
    assert pid1["ok"] or pid1["errno"] == "EACCES", pid1
    pids = box.process.exec("ls -d /proc/[0-9]* | cut -d/ -f3").stdout.split()
    assert "1" in pids and len(pids) < 30
    for pid in [*pids, "self", "thread-self"]:
        for path in (f"/proc/{pid}/root{marker}", f"/proc/{pid}/cwd/../../..{marker}"):
            res = attempt(box, "read", path)
            assert not res["ok"] and res["errno"] in ("ENOENT", "ESRCH", "EACCES"), (path, res)
    # mountinfo names host paths on `container`; opening them inside the sandbox reaches its own tree only
    mountinfo = box.process.exec("cat /proc/self/mountinfo").stdout
    fields = [line.split() for line in mountinfo.splitlines()]
    assert any(f[4] == "/" for f in fields)  # positive control: the sandbox's own root is listed
    # `container`: the runtime layer's bind names its host directory; gVisor's Sentry shows no host path
    host_paths = {
        f[3] for f in fields if f[3].startswith(("/var/lib/", "/tmp/", "/run/")) and os.path.exists(f[3])
    }
    assert host_paths or box.isolation == "gvisor", mountinfo
    # whatever host paths mountinfo names, they are not reachable inside
    for path in sorted(host_paths)[:20]:
        assert fails(box, "read", path) in ("ENOENT", "EACCES"), path
    for path in (server.data_dir, f"{server.data_dir}/sandburg.db", str(host_dir)):
        assert fails(box, "read", path) == "ENOENT", path
        assert fails(box, "read", f"/proc/1/root{path}") in ("ENOENT", "EACCES"), path
    # a file handle names an inode on the host's filesystem without a path: CAP_DAC_READ_SEARCH is not granted
    assert fails(box, "open_by_handle_at") == {"container": "EPERM", "gvisor": "ENOTSUP"}[box.isolation]
    assert ok(box, "getpid") is True


def test_symlinked_directory_does_not_carry_uploads_or_downloads_out(box: Sandbox, host_dir: Path) -> None:
    link = f"/workspace/out-{uuid.uuid4().hex[:6]}"
    assert box.process.exec(f"ln -s {host_dir} {link} && ln -s /etc/shadow {link}-shadow").exit_code == 0
    with pytest.raises(NotFoundError):
        box.fs.download_file(f"{link}/secret")
    # /etc/shadow resolves inside: the sandbox's own shadow, never the host's
    own_shadow = box.process.exec("cat /etc/shadow").stdout.encode()
    assert box.fs.download_file(f"{link}-shadow") == own_shadow
    assert b"root:" in own_shadow and own_shadow != Path("/etc/shadow").read_bytes()
    try:
        box.fs.upload_file(b"planted", f"{link}/planted")
    except APIError:
        pass  # refused is fine; what matters is where it did not land
    assert not (host_dir / "planted").exists()
    assert sorted(p.name for p in host_dir.iterdir()) == ["secret"]
    # positive control: an upload through a link to a directory of the sandbox's own lands there
    box.process.exec(f"mkdir -p /workspace/real && ln -sfn /workspace/real {link}-in")
    box.fs.upload_file(b"inside", f"{link}-in/f")
    assert box.process.exec("cat /workspace/real/f").stdout == "inside"


def test_mount_and_proc_sys(box: Sandbox) -> None:
    for fstype in ("tmpfs", "proc", "cgroup2"):
        assert fails(box, "mount", fstype, "/mnt") == "EPERM", fstype
    assert ok(box, "getpid") is True  # the probe's syscall path works
    hostname = Path("/proc/sys/kernel/hostname").read_text()
    for path in ("/proc/sys/kernel/hostname", "/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger"):
        # container: read-only bind (EROFS; ENOENT for sysrq-trigger); gvisor: the Sentry refuses (EIO, EPERM)
        want = {"container": ("EROFS", "ENOENT"), "gvisor": ("EIO", "EPERM")}[box.isolation]
        assert fails(box, "write", path, "pwned") in want, path
    assert Path("/proc/sys/kernel/hostname").read_text() == hostname
    assert "pwned" not in Path("/proc/sys/kernel/core_pattern").read_text()
    assert ok(box, "write", "/proc/self/comm", "renamed") == 7  # positive control: a writable /proc file


def test_kernel_modules(box: Sandbox) -> None:
    assert fails(box, "init_module") == "EPERM"
    assert fails(box, "finit_module") == "EPERM"
    r = box.process.exec("modprobe dummy || insmod /nonexistent.ko")
    assert r.exit_code != 0
    assert ok(box, "getpid") is True


def host_cgroup(server: ServerProcess, controller: str, box: Sandbox) -> Path:
    """The sandbox's cgroup on the host (cgroup v1 on this host, v2 elsewhere)."""
    v1 = Path("/sys/fs/cgroup", controller, server.cgroup_parent, box.id)
    return v1 if v1.exists() else Path("/sys/fs/cgroup", server.cgroup_parent, box.id)


def test_cgroup_files_are_not_writable(box: Sandbox, server: ServerProcess) -> None:
    pids_max = host_cgroup(server, "pids", box) / "pids.max"
    before = pids_max.read_text()
    assert before.strip() not in ("", "max")  # the limit the sandbox would like to lift
    for name in ("memory.max", "pids.max", "cgroup.procs", "pids/pids.max", "memory/memory.limit_in_bytes"):
        # container: no cgroup fs is mounted in the sandbox (ENOENT); gvisor: its own, read-only, cgroup view
        want = {"container": ("ENOENT",), "gvisor": ("EROFS", "ENOENT")}[box.isolation]
        res = attempt(box, "write", f"/sys/fs/cgroup/{name}", "max")
        assert not res["ok"] and res["errno"] in want, (name, res)
    assert fails(box, "mount", "cgroup", "/mnt") == "EPERM"
    assert fails(box, "write", "/sys/kernel/uevent_helper", "/tmp/x") in ("EROFS", "EACCES", "ENOENT")
    assert ok(box, "write", "/tmp/cg-control", "max") == 3  # positive control: the same write elsewhere works
    assert pids_max.read_text() == before


def test_raw_sockets(box: Sandbox) -> None:
    assert ok(box, "socket", "AF_INET", "SOCK_DGRAM", "0") is True  # positive control
    assert fails(box, "socket", "AF_INET", "SOCK_RAW", "255") == "EPERM"
    assert fails(box, "socket", "AF_PACKET", "SOCK_RAW", "0") == "EPERM"


def test_spoofed_packets_do_not_arrive(
    box: Sandbox, make_box: Callable[..., Sandbox], fake_internet: FakeNet
) -> None:
    """Even if a raw socket opened, a datagram claiming another sandbox's address must not reach anyone."""
    other = make_box(image="debian-12", isolation=box.isolation, network="all")
    other_ip = other.process.exec("hostname -I").stdout.split()[0]
    target = fake_internet.addr("allowed.test")
    assert ok(box, "udp_echo", target, "7") == "plain"  # positive control: the path to the echo is open
    res = attempt(box, "spoof", other_ip, target, "7")
    assert not res["ok"] and res["errno"] == "EPERM", res


def test_host_and_api_addresses_are_unreachable(
    box: Sandbox, server: ServerProcess, fake_internet: FakeNet
) -> None:
    fake_internet.check()

    def curl(target: str) -> int:
        return box.process.exec(f"curl -s -o /dev/null -m 5 http://{target}/", timeout=30).exit_code

    assert curl(fake_internet.addr("allowed.test")) == 0  # positive control: an allowed host answers
    gateway = box.process.exec("ip route show default").stdout.split()[2]
    host_addrs = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=True).stdout.split()
    targets = [f"{gateway}:{p}" for p in (server.port, 22, 80, 8080)]
    targets += [f"{a}:{server.port}" for a in host_addrs if ":" not in a][:6]
    for t in targets:
        assert curl(t) in (7, 28), t  # refused (the node's reset) or silence; never an answer
    # 127.0.0.1 inside is the sandbox's own loopback: the API port is closed there
    assert curl(f"127.0.0.1:{server.port}") == 7
    assert curl(f"localhost:{server.port}") == 7


def test_deleting_a_neighbour_does_not_cut_the_network(
    box: Sandbox, make_box: Callable[..., Sandbox], fake_internet: FakeNet
) -> None:
    """One tenant's delete must not disturb another's sandbox: the node's bridge keeps its MAC address when a
    port goes (else every sandbox's ARP entry for the gateway goes stale for seconds)."""
    target = fake_internet.addr("allowed.test")

    def curl() -> int:
        return box.process.exec(f"curl -s -o /dev/null -m 3 http://{target}/", timeout=30).exit_code

    assert curl() == 0
    for _ in range(2):
        neighbour = make_box(image="busybox", isolation=box.isolation, network="all")
        assert curl() == 0
        neighbour.delete()
        assert curl() == 0


def test_signals_and_ptrace_reach_no_host_process(box: Sandbox) -> None:
    # pids inside count up from 1; a host pid above the sandbox's highest (plus room for the probes' own
    # processes) names no process of the sandbox, so the only answer that is not an escape is ESRCH
    top = max(int(p) for p in box.process.exec("ls -d /proc/[0-9]* | cut -d/ -f3").stdout.split()) + 200
    hosts: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(50):  # host pids wrap around (pid_max): start processes until one is above `top`
            hosts.append(subprocess.Popen(["sleep", "60"]))
            if hosts[-1].pid > top:
                break
        host = hosts[-1]
        assert host.pid > top
        own = box.process.exec("sleep 30 >/dev/null 2>&1 & echo $!").stdout.strip()
        assert ok(box, "kill0", "1") is True  # positive control: the sandbox's own pid 1
        assert ok(box, "kill0", own) is True
        for pid in [host.pid] + ([os.getpid()] if os.getpid() > top else []):
            assert fails(box, "kill0", str(pid)) == "ESRCH"
            assert fails(box, "ptrace_attach", str(pid)) == "ESRCH"
        assert ok(box, "ptrace_child") is True  # debuggers work on the sandbox's own processes
        assert host.poll() is None
        box.process.exec(f"kill {own}")
    finally:
        for h in hosts:
            h.kill()
            h.wait()


def test_no_credentials_inside(box: Sandbox, server: ServerProcess) -> None:
    key = server.api_key
    env = box.process.exec("env").stdout
    assert "PATH=" in env  # positive control
    assert "SANDBURG_API_KEY" not in env and key not in env
    dirs = "/etc /root /home /workspace /opt /tmp /.sandburg /proc/1/environ"
    r = box.process.exec(f"grep -rsl -- '{key}' {dirs}; echo done", timeout=120)
    assert r.stdout.strip() == "done", r
    # positive control: the same search finds a string that is there
    box.process.exec("echo sb_planted_marker > /root/.planted")
    r = box.process.exec(f"grep -rsl -- sb_planted_marker {dirs}; echo done", timeout=120)
    assert r.stdout.split() == ["/root/.planted", "done"], r
    for path in ("/var/lib/sandburg", server.data_dir, os.path.join(server.data_dir, "credentials.json")):
        assert fails(box, "read", path) == "ENOENT", path
    # without a key the API is closed even to a caller that could reach it
    assert httpx.get(f"{server.api_url}/sandbox", timeout=10).status_code == 401


def _health_ms(server: ServerProcess) -> float:
    t0 = time.monotonic()
    assert httpx.get(f"{server.api_url}/health", timeout=5).status_code == 200
    return (time.monotonic() - t0) * 1000


@pytest.mark.parametrize("tier", TIERS)
def test_fork_bomb_leaves_host_responsive(
    make_box: Callable[..., Sandbox], server: ServerProcess, tier: str
) -> None:
    box = make_box(isolation=tier)
    bystander = make_box(isolation=tier)
    try:  # the classic bomb, bounded in time by timeout(1) inside and the exec timeout outside
        box.process.exec("timeout -s KILL 10 sh -c 'b() { b | b & }; b' ; echo done", timeout=40)
    except APIError:
        pass  # gVisor may end the whole sandbox (docs/limits.md)
    assert _health_ms(server) < 3000
    assert bystander.process.exec("echo fine").stdout == "fine\n"
    events = host_cgroup(server, "pids", box) / "pids.events"
    if tier == "container":  # the bomb did reach the limit, and the limit held it (gVisor may have ended)
        assert int(events.read_text().split()[1]) > 0, events.read_text()
    pids = Path("/proc/loadavg").read_text().split()[3]  # running/total tasks on the host
    assert int(pids.split("/")[1]) < 100_000


@pytest.mark.parametrize("tier", TIERS)
def test_disk_fill_stays_in_the_quota(
    make_box: Callable[..., Sandbox], server: ServerProcess, tier: str
) -> None:
    box = make_box(isolation=tier, disk="128MiB")
    before = shutil.disk_usage(server.data_dir).free
    r = box.process.exec("dd if=/dev/zero of=/workspace/fill bs=1M count=1000 2>&1; sync", timeout=120)
    assert "quota" in r.stdout.lower() or "space" in r.stdout.lower(), r
    written = int(box.process.exec("du -sm /workspace/fill | cut -f1").stdout.strip())
    assert 50 < written <= 140, written  # positive control: writes went through up to the quota, then stopped
    # other processes share this disk, so the margin is wide; still far below the 1000 MiB the sandbox tried
    assert before - shutil.disk_usage(server.data_dir).free < 600 << 20
    box.process.exec("rm -f /workspace/fill")
