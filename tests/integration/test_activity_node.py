"""The node's activity recording with real runc/runsc (no server): both tiers record a detached child's exec and
write; a sandbox that was already running when the monitor started (a server restart) is attached to; a stop
releases every socket, fd and fanotify group, and closing the monitor ends its threads."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sandburg.node import gvisortrace
from sandburg.node.activity import ActivityMonitor
from sandburg.node.node import Node
from tests.integration.conftest import TIERS, Box

Records = list[tuple[str, str, dict[str, Any]]]


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def monitor(node: Node) -> Iterator[tuple[ActivityMonitor, Records]]:
    threads = {t.name for t in threading.enumerate()}
    fds = _fds()
    got: Records = []
    mon = ActivityMonitor(lambda s, t, p: got.append((s, t, p)), node.cgroup_path)
    node.activity = mon
    try:
        yield mon, got
    finally:
        node.activity = None
        mon.close()
        left = {t.name for t in threading.enumerate()} - threads
        assert not {n for n in left if n.startswith("sandburg-")}, left
        time.sleep(0.1)
        assert len(_fds() - fds) <= 1, (fds, _fds())  # the listdir's own fd at most


def wait_for(
    got: Records, sid: str, type_: str, pred: Callable[[dict[str, Any]], bool], timeout: float = 15
) -> None:
    deadline = time.monotonic() + timeout
    while not any(s == sid and t == type_ and pred(p) for s, t, p in list(got)):
        assert time.monotonic() < deadline, f"no {type_} for {sid}: {[x for x in got if x[0] == sid][-10:]}"
        time.sleep(0.1)


def detached_marker(box: Box) -> str:
    u = uuid.uuid4().hex[:10]
    r = box.sh(
        f"setsid sh -c 'sleep 0.3; /bin/sh -c \"sleep 0.2; true\" m-{u}; /bin/touch /tmp/w-{u}' </dev/null >/dev/null 2>&1 &"
    )
    assert r.exit_code == 0, r
    return u


def wait_for_marker(got: Records, box: Box) -> None:
    """Start `detached_marker` in `box` and wait until both its exec and its write are recorded for it."""
    u = detached_marker(box)
    wait_for(
        got,
        box.id,
        "activity.exec",
        lambda p: p.get("argv") == ["/bin/sh", "-c", "sleep 0.2; true", f"m-{u}"],
    )
    wait_for(got, box.id, "activity.write", lambda p: p.get("path") == f"/tmp/w-{u}")


@pytest.mark.parametrize("tier", TIERS)
def test_recorded_then_released(
    node: Node, make_box: Callable[..., Box], monitor: tuple[ActivityMonitor, Records], tier: str
) -> None:
    mon, got = monitor
    box = make_box(tier)
    wait_for_marker(got, box)
    assert all(s == box.id for s, _, _ in got)
    node.stop(box.id, tier)
    time.sleep(0.7)  # the loops apply the unwatch on their next turn
    assert not mon.watching(box.id)
    assert mon.procs is None or not mon.procs._fan
    assert not mon.gvisor._listeners and not mon.gvisor._conns
    assert not os.path.exists(gvisortrace.socket_path(node.bundle_paths(box.id)[0]))


@pytest.mark.parametrize("tier", TIERS)
def test_a_sandbox_running_before_the_monitor_is_attached(
    node: Node, make_box: Callable[..., Box], tier: str
) -> None:
    box = make_box(tier)  # started with no monitor: as by an earlier server
    got: Records = []
    mon = ActivityMonitor(lambda s, t, p: got.append((s, t, p)), node.cgroup_path)
    node.activity = mon
    try:
        node.adopt_activity(box.id, tier)
        assert mon.watching(box.id)
        wait_for_marker(got, box)
    finally:
        node.activity = None
        mon.unwatch(box.id)
        mon.close()
