"""Resource limits per tier, as docs/limits.md states them.

container: the kernel kills the offending process (OOM) or fork fails with EAGAIN (pids); the sandbox stays started.
gvisor: the host cgroup also holds gVisor's own Sentry and Gofer, so exceeding a limit may end the whole sandbox,
which then shows state=error with reason=oom|pids. Either way the host and the other sandboxes are unaffected.
"""

from __future__ import annotations

import time

import pytest

from sandburg import APIError, DiskQuotaExceededError, NotFoundError, PidsLimitReachedError
from tests.e2e.conftest import TIERS

MEMORY_BOMB = "python3 -c 'b = bytearray(900 << 20); print(len(b))'"
FORK_BOMB = "for i in $(seq 400); do sleep 4 & done; echo forked"


def wait_state(box, want: str, within: float = 15) -> None:
    deadline = time.monotonic() + within
    box.refresh()
    while box.state != want and time.monotonic() < deadline:
        time.sleep(0.05)
        box.refresh()
    assert box.state == want, (box.state, box.error_reason)


def test_container_oom_kills_the_process_not_the_sandbox(make_box):
    box = make_box(isolation="container", image="debian-12", memory="256MiB")
    bystander = make_box(isolation="container")
    r = box.process.exec(MEMORY_BOMB)
    assert r.exit_code == 137  # SIGKILL from the kernel's OOM killer
    assert box.process.exec("echo alive").stdout == "alive\n"
    box.refresh()
    assert box.state == "started"
    assert bystander.process.exec("echo fine").stdout == "fine\n"


def test_container_pids_limit_makes_fork_fail(make_box):
    box = make_box(isolation="container")  # busybox: its shell fails a fork at once (bash retries for 15 s)
    r = box.process.exec(FORK_BOMB, timeout=60)
    assert b"Resource temporarily unavailable" in r.stderr.encode() or "fork" in r.stderr, r
    assert "forked" in r.stdout or r.exit_code != 0
    box.refresh()
    assert box.state == "started"
    # while the 250-odd sleeps hold every slot, nothing new can start: a typed error, not a hang or a crash
    deadline = time.monotonic() + 20
    while True:  # once they end (4 s), the sandbox is fully usable again
        try:
            assert box.process.exec("echo alive").stdout == "alive\n"
            break
        except PidsLimitReachedError:
            assert time.monotonic() < deadline
            time.sleep(0.5)


def test_gvisor_memory_limit_ends_the_sandbox_with_reason_oom(make_box):
    box = make_box(isolation="gvisor", image="debian-12", memory="256MiB")
    bystander = make_box(isolation="gvisor")
    try:
        r = box.process.exec(MEMORY_BOMB)
        # gVisor may also kill just the process; then the sandbox must still be usable
        assert r.exit_code == 137
        box.refresh()
        assert box.state == "started"
    except APIError:  # the agent went away with the sandbox
        wait_state(box, "error")
        assert box.error_reason == "oom"
    assert bystander.process.exec("echo fine").stdout == "fine\n"


def test_gvisor_pids_limit_ends_the_sandbox_with_reason_pids(make_box):
    box = make_box(isolation="gvisor")
    try:
        box.process.exec(FORK_BOMB, timeout=120)
        box.refresh()
        if box.state == "started":  # the Sentry refused the forks itself: the sandbox survives
            assert box.process.exec("echo alive").stdout == "alive\n"
            return
    except APIError:  # the agent went away with the sandbox
        pass
    wait_state(box, "error")
    assert box.error_reason == "pids"


@pytest.mark.parametrize("tier", TIERS)
def test_disk_limit(make_box, tier):
    box = make_box(isolation=tier, disk="128MiB")
    r = box.process.exec("dd if=/dev/zero of=/workspace/fill bs=1M count=300")
    assert r.exit_code != 0 and ("quota" in r.stderr.lower() or "space" in r.stderr.lower()), r
    box.process.exec("rm -f /workspace/fill")
    # an upload larger than the disk: a clean error, and no partial file left behind
    with pytest.raises(DiskQuotaExceededError):
        box.fs.upload_file(b"\0" * (200 << 20), "/workspace/too-big")
    with pytest.raises(NotFoundError):
        box.fs.info("/workspace/too-big")
    assert ".sandburg-upload" not in box.process.exec("ls -a /workspace").stdout
    box.fs.upload_file(b"small", "/workspace/small")  # positive control
    assert box.fs.download_file("/workspace/small") == b"small"
