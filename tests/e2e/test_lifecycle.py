"""Lifecycle automation with an accelerated clock (docs/lifecycle.md): auto-stop only when idle, a running session
command prevents it, auto-pause keeps processes and wakes on use, archive and start, auto-delete, ttl, wake on use,
and a server restart between two clock advances keeps the schedule."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from sandburg import Sandbox, SandboxBusyError, SandboxNotRunningError, Sandburg
from tests._support.host import node_for
from tests._support.private import private_server
from tests._support.server import ServerProcess

MIN = 60.0
LABELS = {"test": "lifecycle"}


@pytest.fixture(scope="module")
def own_server() -> Iterator[ServerProcess]:
    """A server of this module's own: a test clock, a fast reaper, and restarts."""
    with private_server("lifecycle", SANDBURG_TEST_CLOCK="1", SANDBURG_REAPER_INTERVAL="0.2") as srv:
        yield srv


@pytest.fixture
def sb(own_server: ServerProcess) -> Iterator[Sandburg]:
    with Sandburg(api_url=own_server.api_url, api_key=own_server.api_key) as client:
        yield client
        for box in client.list():
            try:
                box.delete()
            except Exception:
                pass


def advance(srv: ServerProcess, seconds: float) -> None:
    r = httpx.post(srv.api_url + "/_test/clock", json={"advance": seconds}, timeout=10)
    r.raise_for_status()


def state_of(sb: Sandburg, sid: str) -> str:
    boxes = [
        b for b in sb.list() if b.id == sid
    ]  # the list, not GET /sandbox/{id}: neither is activity anyway
    return boxes[0].state if boxes else "gone"


def wait_state(sb: Sandburg, sid: str, want: str, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := state_of(sb, sid)) != want:
        assert time.monotonic() < deadline, f"sandbox {sid} is {got}, not {want}, after {timeout}s"
        time.sleep(0.1)


def stays(sb: Sandburg, sid: str, want: str, seconds: float = 1.0) -> None:
    """Several reaper passes (0.2 s each) leave the sandbox as it is."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert state_of(sb, sid) == want
        time.sleep(0.1)


def create(sb: Sandburg, **kw: object) -> Sandbox:
    return sb.create(image="busybox", isolation="gvisor", labels=LABELS, memory="256MiB", disk=1, **kw)  # type: ignore[arg-type]


def test_auto_stop_only_when_idle(own_server: ServerProcess, sb: Sandburg) -> None:
    box = create(sb, auto_stop=10)
    assert (box.auto_stop, box.auto_archive, box.auto_delete) == (10, 10080, -1)  # the defaults echoed
    time.sleep(0.5)
    advance(own_server, 6 * MIN)
    assert box.process.exec("true").exit_code == 0  # activity: the idle time starts again
    advance(own_server, 6 * MIN)
    stays(sb, box.id, "started")
    advance(own_server, 5 * MIN)
    wait_state(sb, box.id, "stopped")


def test_running_session_command_prevents_auto_stop(own_server: ServerProcess, sb: Sandburg) -> None:
    box = create(sb, auto_stop=1)
    session = box.process.create_session("work")
    cmd = session.exec("read line", background=True)  # runs until its input comes
    advance(own_server, 3 * MIN)
    stays(sb, box.id, "started")
    cmd.send_input("done\n")
    deadline = time.monotonic() + 15
    while cmd.exit_code is None:
        assert time.monotonic() < deadline, f"the session command did not end: {cmd!r}"
        time.sleep(0.1)
        cmd.refresh()
    advance(own_server, 2 * MIN)
    wait_state(sb, box.id, "stopped")


def test_auto_pause_keeps_processes_and_wakes_on_use(own_server: ServerProcess, sb: Sandburg) -> None:
    box = create(sb, auto_stop=0, auto_pause=1)
    assert box.auto_pause == 1
    # a job of the session's shell: it outlives the session command that started it, which has ended
    counter = "i=0; while true; do i=$((i+1)); echo $i > /root/count.new; mv -f /root/count.new /root/count; sleep 0.1; done"
    box.process.create_session("bg").exec(f"({counter}) >/dev/null 2>&1 &")
    time.sleep(0.5)
    assert int(box.process.exec("cat /root/count").result) > 0
    advance(own_server, 2 * MIN)
    wait_state(sb, box.id, "paused", timeout=20)
    before = int(box.process.exec("cat /root/count").result)  # the call wakes it
    assert state_of(sb, box.id) == "started"
    time.sleep(0.5)
    after = int(box.process.exec("cat /root/count").result)
    assert after > before > 0  # the same loop, continued


def test_archive_then_start_restores_files(own_server: ServerProcess, sb: Sandburg) -> None:
    box = create(sb, auto_stop=0)
    box.fs.upload_file(b"kept\n", "/root/note.txt")
    with pytest.raises(SandboxBusyError):
        box.archive()  # only a stopped sandbox
    box.stop()
    box.set_lifecycle(auto_archive=1)
    assert box.auto_archive == 1
    time.sleep(0.5)  # seen stopped first
    advance(own_server, 2 * MIN)
    wait_state(sb, box.id, "archived")
    node = node_for(own_server.data_dir, own_server.cgroup_parent)
    assert not node.store.is_subvolume(node.root_path(box.id))  # released
    with pytest.raises(SandboxNotRunningError):
        box.process.exec("true")  # an archived sandbox does not wake
    box.start()
    assert box.process.exec("cat /root/note.txt").result == "kept\n"
    box.stop()
    box.archive()  # the API's archive
    assert box.state == "archived"
    box.start()
    assert box.process.exec("cat /root/note.txt").result == "kept\n"


def test_auto_delete_after_stop(own_server: ServerProcess, sb: Sandburg) -> None:
    box = create(sb, auto_stop=0, auto_delete=0)
    box.stop()
    wait_state(sb, box.id, "gone")


def test_ttl_deletes_even_a_busy_sandbox(own_server: ServerProcess, sb: Sandburg) -> None:
    box = create(sb, auto_stop=0, ttl=5)
    assert box.ttl == 5
    box.process.create_session("work").exec("sleep 1000", background=True)
    advance(own_server, 4 * MIN)
    stays(sb, box.id, "started")
    advance(own_server, 2 * MIN)
    wait_state(sb, box.id, "gone")


def test_wake_on_use_of_a_stopped_sandbox(own_server: ServerProcess, sb: Sandburg) -> None:
    box = create(sb, auto_stop=0, wake_on_use=True)
    assert box.wake_on_use
    box.process.exec("echo there > /root/x")
    box.stop()
    assert box.process.exec("cat /root/x").result == "there\n"  # started transparently
    assert state_of(sb, box.id) == "started"
    # a preview request wakes it too, once its token is checked (nothing listens on the port: 502, but started)
    preview = box.preview_url(8000)
    box.stop()
    assert httpx.get(preview.url, timeout=30).status_code == 401  # no token: not woken
    assert state_of(sb, box.id) == "stopped"
    r = httpx.get(preview.url, headers=preview.headers, timeout=60)
    assert r.status_code == 502 and state_of(sb, box.id) == "started", r.text
    plain = create(sb, auto_stop=0)
    plain.stop()
    with pytest.raises(SandboxNotRunningError):
        plain.process.exec("true")


def test_restart_keeps_the_schedule(own_server: ServerProcess, sb: Sandburg) -> None:
    box = create(sb, auto_stop=10)
    time.sleep(0.5)  # its last activity is stored
    advance(own_server, 6 * MIN)
    time.sleep(0.5)
    own_server.stop()
    own_server.start()
    with Sandburg(api_url=own_server.api_url, api_key=own_server.api_key) as again:
        stays(again, box.id, "started", 0.6)
        advance(own_server, 5 * MIN)
        wait_state(again, box.id, "stopped")


def crash_during(srv: ServerProcess, step: str, path: str) -> None:
    srv.stop()
    srv.start(SANDBURG_CRASH_AT=step)
    with pytest.raises(httpx.HTTPError):
        httpx.post(srv.api_url + path, headers={"Authorization": f"Bearer {srv.api_key}"}, timeout=60)
    assert srv.wait_exit(30) == 137, srv.tail()
    srv.start()


@pytest.mark.parametrize(
    ("step", "after"),
    [("archive.layer", "stopped"), ("archive.release", "archived"), ("unarchive.root", "stopped")],
)
def test_crash_during_archive_or_unarchive(own_server: ServerProcess, step: str, after: str) -> None:
    node = node_for(own_server.data_dir, own_server.cgroup_parent)
    layers = set(node.images.layers.keys())
    with Sandburg(api_url=own_server.api_url, api_key=own_server.api_key) as sb:
        box = create(sb, auto_stop=0)
        box.fs.upload_file(b"kept\n", "/root/note.txt")
        box.stop()
        if step.startswith("unarchive"):
            box.archive()
        action = "start" if step.startswith("unarchive") else "archive"
    crash_during(own_server, step, f"/sandbox/{box.id}/{action}")
    with Sandburg(api_url=own_server.api_url, api_key=own_server.api_key) as sb:
        again = sb.get(box.id)
        assert again.state == after  # finished or rolled back, never half-made
        assert node.store.is_subvolume(node.root_path(box.id)) == (after == "stopped")
        assert (set(node.images.layers.keys()) != layers) == (
            after == "archived"
        )  # its archive, or none left
        again.start()
        assert again.process.exec("cat /root/note.txt").result == "kept\n"
        again.delete()
    assert set(node.images.layers.keys()) == layers
