"""Restart safety: the store is the source of truth; running sandboxes survive a server restart, and a crash at
any step of create or delete leaves nothing orphaned and nothing half-made."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import httpx
import pytest

from sandburg import Sandburg
from sandburg.node import priv
from tests._support.host import node_for
from tests._support.private import private_server
from tests._support.server import ServerProcess

CREATE_STEPS = [
    "create.row",
    "create.subvolume",
    "create.bundle",
    "create.mount",
    "create.runtime",
    "create.agent",
]
DELETE_STEPS = [
    "delete.row",
    "delete.kill",
    "delete.runtime",
    "delete.umount",
    "delete.subvolume",
    "delete.bundle",
]


@pytest.fixture(scope="module")
def own_server() -> Iterator[ServerProcess]:
    """A server of this module's own, since these tests kill and restart it."""
    with private_server("restart") as srv:
        yield srv


def client(srv: ServerProcess) -> Sandburg:
    return Sandburg(api_url=srv.api_url, api_key=srv.api_key)


def assert_consistent(srv: ServerProcess) -> set[str]:
    """Host inventory == the store's rows, and no row is in a transitional state."""
    with client(srv) as sb:
        boxes = sb.list()
    ids = {b.id for b in boxes}
    assert all(b.state in ("started", "stopped", "error") for b in boxes), [(b.id, b.state) for b in boxes]
    node = node_for(srv.data_dir, srv.cgroup_parent)
    inv = node.inventory()
    assert inv.subvolumes == ids, inv
    assert inv.bundles == ids, inv
    running = {b.id for b in boxes if b.state == "started"}
    assert inv.containers["container"] | inv.containers["gvisor"] == running, inv
    assert inv.cgroups <= running, inv
    assert node.net is not None
    assert node.net.chain_ids() == ids, "every sandbox has its rules, and only those"
    assert node.net.sandbox_ids() == running, "a network namespace for each running sandbox, and only those"
    for mp in priv.mounts_under(os.path.join(srv.data_dir, "sandboxes")):
        assert os.path.basename(os.path.dirname(mp)) in running, mp
    return ids


def test_running_sandboxes_survive_restart_and_kill9(own_server):
    with client(own_server) as sb:
        boxes = [sb.create(isolation=t, image="busybox") for t in ("container", "gvisor")]
        for box in boxes:
            box.process.exec("echo state > /workspace/f; sleep 1000 >/dev/null 2>&1 &")
    try:
        for stop in (own_server.stop, own_server.kill):
            stop()
            own_server.start()
            assert_consistent(own_server)
            with client(own_server) as sb:
                for box in boxes:
                    again = sb.get(box.id)
                    assert again.state == "started"
                    # the same processes, not a restarted sandbox: the background sleep is still there
                    assert "sleep 1000" in again.process.exec("ps -o args").stdout
                    assert again.fs.download_file("/workspace/f") == b"state\n"
    finally:
        with client(own_server) as sb:
            for box in boxes:
                sb.get(box.id).delete()


def crash_during(srv: ServerProcess, step: str, action) -> None:
    srv.stop()
    srv.start(SANDBURG_CRASH_AT=step)
    with pytest.raises(httpx.HTTPError):
        with httpx.Client(
            base_url=srv.api_url + "/", headers={"Authorization": f"Bearer {srv.api_key}"}
        ) as http:
            action(http)
    assert srv.wait_exit(30) == 137, srv.tail()
    srv.start()


@pytest.mark.parametrize("step", CREATE_STEPS)
def test_crash_during_create_leaves_nothing(own_server, step):
    before = assert_consistent(own_server)
    crash_during(
        own_server,
        step,
        lambda http: http.post("sandbox", json={"image": "busybox", "isolation": "container"}, timeout=60),
    )
    assert assert_consistent(own_server) == before  # rolled back: nobody was told it exists


@pytest.mark.parametrize("step", DELETE_STEPS)
def test_crash_during_delete_finishes_the_delete(own_server, step):
    with client(own_server) as sb:
        box = sb.create(isolation="container", image="busybox")
    crash_during(own_server, step, lambda http: http.delete(f"sandbox/{box.id}", timeout=60))
    assert box.id not in assert_consistent(own_server)


@pytest.mark.parametrize("step", ["create.runtime", "delete.kill"])
def test_crash_with_gvisor(own_server, step):
    before = assert_consistent(own_server)
    if step.startswith("create"):
        crash_during(
            own_server,
            step,
            lambda http: http.post("sandbox", json={"image": "busybox", "isolation": "gvisor"}, timeout=60),
        )
    else:
        with client(own_server) as sb:
            box = sb.create(isolation="gvisor", image="busybox")
        crash_during(own_server, step, lambda http: http.delete(f"sandbox/{box.id}", timeout=60))
    assert assert_consistent(own_server) == before


def test_crash_hook_is_refused_outside_test_mode(own_server):
    env = own_server.env(SANDBURG_CRASH_AT="create.row")
    env.pop("SANDBURG_TEST_MODE")
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "sandburg.server"], env=env, capture_output=True, timeout=60)
    assert r.returncode != 0
    assert b"SANDBURG_CRASH_AT is a test hook" in r.stderr


@pytest.mark.parametrize("tier", ["container", "gvisor"])
def test_session_logs_replay_after_restart(own_server, tier):
    with client(own_server) as sb:
        box = sb.create(isolation=tier, image="busybox")
    base = f"toolbox/{box.id}/process/session"

    def http() -> httpx.Client:
        return httpx.Client(
            base_url=own_server.api_url + "/",
            headers={"Authorization": f"Bearer {own_server.api_key}"},
            timeout=60,
        )

    try:
        with http() as h:
            assert h.post(base, json={"sessionId": "long"}).status_code == 201
            cid = h.post(
                f"{base}/long/exec",
                json={"command": "for i in $(seq 1 40); do echo tick $i; sleep 0.1; done", "runAsync": True},
            ).json()["cmdId"]
            time.sleep(0.5)
            first = h.get(f"{base}/long/command/{cid}/logs").json()
        assert first["stdout"].startswith("tick 1\n")
        own_server.kill()  # a crash while the command runs
        own_server.start()
        with http() as h:
            deadline = time.monotonic() + 30
            while (
                h.get(f"{base}/long/command/{cid}").json()["exitCode"] is None
            ):  # re-attached: it ends normally
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert h.get(f"{base}/long/command/{cid}").json()["exitCode"] == 0
            rest = h.get(f"{base}/long/command/{cid}/logs", params={"offset": first["nextOffset"]}).json()
            whole = h.get(f"{base}/long/command/{cid}/logs").json()
        assert (
            first["stdout"] + rest["stdout"]
            == whole["stdout"]
            == "".join(f"tick {i}\n" for i in range(1, 41))
        )
        # and the session itself is still there, with its state
        with http() as h:
            assert h.post(f"{base}/long/exec", json={"command": "echo still"}).json()["stdout"] == "still\n"
    finally:
        with client(own_server) as sb:
            sb.get(box.id).delete()


def test_kill9_during_a_build_leaves_no_half_made_image(own_server):
    """A build interrupted by kill -9: after the restart the image is `error` (interrupted), the build sandbox is
    gone, no temporary layer is left, and a new build of the same steps works (its first layer was cached)."""
    layers = os.path.join(own_server.data_dir, "store", "layers")
    steps = [{"kind": "run", "args": ["echo first > /first"]}, {"kind": "run", "args": ["sleep 60"]}]
    with client(own_server) as sb:
        sb.images.build("interrupted", steps, wait=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the first layer is made, the second step is running
            if "[2/" not in "".join(sb.images.logs("interrupted")) and "#2 [run]" in "".join(
                sb.images.logs("interrupted")
            ):
                break
            time.sleep(0.2)
        assert "#2 [run]" in "".join(sb.images.logs("interrupted"))
    own_server.kill()
    own_server.start()
    with client(own_server) as sb:
        img = sb.images.get("interrupted")
        assert img.state == "error" and "restart" in (img.error_reason or ""), img
        assert not [b for b in sb.list() if "sandburg.io/build" in b.labels]
        assert not [n for n in os.listdir(layers) if n.startswith(".tmp-")]
        logs: list[str] = []
        steps[1] = {"kind": "run", "args": ["echo second > /second"]}
        assert sb.images.build("interrupted", steps, on_log=logs.append).state == "active"
        assert "#1 [run] run echo first > /first ... CACHED" in "".join(logs), "".join(logs)
        sb.images.delete("interrupted")
        assert os.listdir(layers) == [], os.listdir(layers)  # garbage-collected with the image
    assert_consistent(own_server)


@pytest.mark.parametrize(
    ("step", "tier"),
    [("snapshot.frozen", "container"), ("snapshot.layer", "container"), ("snapshot.frozen", "gvisor"),
     ("snapshot.layer", "gvisor")],
)  # fmt: skip
def test_crash_during_a_snapshot_leaves_the_whole_snapshot_or_none(own_server, step, tier):
    """kill -9 while the sandbox is frozen for the capture, or after the layer is made but before the snapshot's
    row: no snapshot is visible, a made layer is garbage-collected at start-up, and the sandbox is healthy
    (thawed: its processes run). On gvisor it is a memory snapshot (checkpoint image and run dir layers too)."""
    layers = os.path.join(own_server.data_dir, "store", "layers")
    memory = tier == "gvisor"
    with client(own_server) as sb:
        box = sb.create(isolation=tier, image="busybox")
        box.process.exec("echo before > /root/f")
    crash_during(
        own_server,
        step,
        lambda http: http.post(f"sandbox/{box.id}/snapshots", json={"name": "half", "memory": memory}),
    )
    try:
        with client(own_server) as sb:
            assert [s.name for s in sb.snapshots.list()] == []
            assert os.listdir(layers) == []
            again = sb.get(box.id)
            assert again.state == "started"
            assert again.process.exec("cat /root/f").stdout == "before\n"
            assert again.snapshot("whole", memory=memory).memory is memory  # the name was never taken
            assert [s.name for s in sb.snapshots.list()] == ["whole"]
            sb.snapshots.delete("whole")
            assert os.listdir(layers) == []
    finally:
        with client(own_server) as sb:
            sb.get(box.id).delete()
    assert_consistent(own_server)


@pytest.mark.parametrize(
    ("step", "tier"),
    [("restore.row", "container"), ("restore.stop", "container"), ("restore.root", "container"),
     ("restore.root", "gvisor")],
)  # fmt: skip
def test_crash_during_a_restore_finishes_it(own_server, step, tier):
    """On gvisor from a memory snapshot: the restore finished at start-up brings the processes back too."""
    memory = tier == "gvisor"
    with client(own_server) as sb:
        box = sb.create(isolation=tier, image="busybox")
        box.process.exec("echo snap > /root/f")
        if memory:  # a shell whose variable exists only in memory, and only after the snapshot
            box.process.create_session("mem").exec("v=kept; sleep 100000", background=True)
        box.snapshot("r1", memory=memory)
        box.process.exec("echo later > /root/f")
    crash_during(
        own_server, step, lambda http: http.post(f"sandbox/{box.id}/restore", json={"snapshot": "r1"})
    )
    try:
        with client(own_server) as sb:
            again = sb.get(box.id)
            assert again.state == "started", again
            assert again.process.exec("cat /root/f").stdout == "snap\n"
            if memory:  # the snapshot's sleep is back (a fresh start would have no process of the session)
                assert "sleep 100000" in again.process.exec("ps -o args").stdout
    finally:
        with client(own_server) as sb:
            sb.get(box.id).delete()
            sb.snapshots.delete("r1")
    assert_consistent(own_server)
