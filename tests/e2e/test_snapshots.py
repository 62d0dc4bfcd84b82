"""State snapshots against the real server: what is captured, rollback in place, N-way forks, lineage, diff,
templates, deletion, typed errors (docs/snapshots.md). Both tiers; layers are real btrfs snapshots."""

from __future__ import annotations

import uuid

import pytest

from sandburg import ImageNotFoundError, MemorySnapshotUnsupportedError, SandboxNotFoundError, Sandburg

TIERS = ["container", "gvisor"]


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def snaps(sb: Sandburg):
    made: list[str] = []
    yield made
    for n in made:
        try:
            sb.snapshots.delete(n)
        except ImageNotFoundError:
            pass


@pytest.mark.parametrize("tier", TIERS)
def test_rollback_after_rm_and_install(sb, make_box, snaps, tier):
    box = make_box(image="debian-12", isolation=tier, env={"STAGE": "one"})
    r = box.process.exec(
        "mkdir -p /workspace/data && seq 1 500 > /workspace/data/nums && git init -q /workspace/repo && "
        "cd /workspace/repo && echo v1 > f && git add f && git -c user.email=a@b -c user.name=a commit -qm one && "
        "echo uncommitted >> f && echo /opt-state > /opt/state"
    )
    assert r.exit_code == 0, r
    name = uniq("after-data")
    snaps.append(name)
    snap = box.snapshot(name)
    assert snap.name == name and snap.sandbox_id == box.id and snap.env == {"STAGE": "one"}
    assert snap.settings["isolation"] == tier
    # the sandbox keeps running after the capture, with its processes
    assert box.process.exec("echo alive").stdout == "alive\n"

    # something risky: wipe the workspace, install a package with pip, change /etc
    r = box.process.exec(
        "rm -rf /workspace/* && python3 -m pip install --break-system-packages --no-index -q /nonexistent; "
        "mkdir -p /usr/local/lib/python3.11/dist-packages/fakepkg && touch /usr/local/lib/python3.11/dist-packages/fakepkg/__init__.py && "
        "echo changed > /etc/motd"
    )
    assert box.process.exec("ls /workspace").stdout == ""
    box.restore(name)
    assert box.state == "started" and box.id == snap.sandbox_id
    r = box.process.exec(
        "wc -l < /workspace/data/nums; cd /workspace/repo && git status --porcelain && cat f; cat /opt/state; "
        "python3 -c 'import fakepkg' 2>&1 | tail -1; grep -c changed /etc/motd; echo $STAGE"
    )
    lines = r.stdout.splitlines()
    assert lines[0] == "500" and lines[1] == " M f" and lines[2:4] == ["v1", "uncommitted"], r.stdout
    assert lines[4] == "/opt-state" and "No module named 'fakepkg'" in lines[5], r.stdout
    assert lines[6] == "0" and lines[7] == "one", r.stdout


@pytest.mark.parametrize("tier", TIERS)
def test_fork_children_diverge_independently(sb, make_box, snaps, tier):
    parent = make_box(image="debian-12", isolation=tier)
    parent.process.exec("echo base > /workspace/state")
    name = uniq("fork-base")
    snaps.append(name)
    parent.snapshot(name)
    a, b = sb.fork(name, count=2)
    try:
        assert len({a.id, b.id, parent.id}) == 3 and len({a.name, b.name, parent.name}) == 3
        assert a.labels["sandburg.io/forked-from"] == name and a.isolation == tier
        for child in (a, b):
            assert child.process.exec("cat /workspace/state").stdout == "base\n"
        a.process.exec("echo strategy-a > /workspace/state")
        b.process.exec("echo strategy-b > /workspace/state; rm -f /etc/hostname")
        assert a.process.exec("cat /workspace/state").stdout == "strategy-a\n"
        assert b.process.exec("cat /workspace/state").stdout == "strategy-b\n"
        assert parent.process.exec("cat /workspace/state; cat /etc/hostname").stdout.split()[0] == "base"
        # new identities: each child its own hostname and address
        ha = a.process.exec("hostname").stdout.strip()
        hb = b.process.exec("hostname").stdout.strip()
        assert ha != hb and ha == a.name.lower()
        ips = {c.process.exec("hostname -I").stdout.split()[0] for c in (a, b, parent)}
        assert len(ips) == 3
    finally:
        a.delete()
        b.delete()


def test_lineage_diff_and_template(sb, make_box, snaps):
    box = make_box(image="debian-12", isolation="container")
    box.process.exec(
        "mkdir -p /workspace/d && echo 1 > /workspace/d/keep && echo 1 > /workspace/d/change && echo 1 > /workspace/d/drop"
    )
    first, second = uniq("v1"), uniq("v2")
    snaps += [first, second]
    box.snapshot(first)
    box.process.exec(
        "echo 2 >> /workspace/d/change && rm /workspace/d/drop && echo n > /workspace/d/new && mkdir /workspace/e && "
        "touch /workspace/e/f"
    )
    s2 = box.snapshot(second)
    assert s2.parent == first
    listed = box.snapshots()
    assert [s.name for s in listed] == [first, second] and listed[0].parent is None
    d = sb.snapshots.get(first).diff(second)
    assert d.added == ["/workspace/d/new", "/workspace/e", "/workspace/e/f"], d
    assert d.modified == ["/workspace/d/change"] and d.deleted == ["/workspace/d/drop"], d
    # against the sandbox's files now
    box.process.exec("echo 3 > /workspace/d/keep")
    assert s2.diff(sandbox=box.id).modified == ["/workspace/d/keep"]
    # a snapshot as a template, on the other tier
    t = sb.create(snapshot=first, isolation="gvisor", labels={"test": "template"})
    try:
        assert t.process.exec("cat /workspace/d/drop").stdout == "1\n"
    finally:
        t.delete()


def test_delete_is_safe_and_errors_are_typed(sb, make_box, snaps):
    box = make_box(image="busybox", isolation="container")
    box.process.exec("echo kept > /root/f")
    name = uniq("gone")
    box.snapshot(name)
    child = sb.fork(name)[0]
    try:
        sb.snapshots.delete(name)  # the fork has its own root: deleting the snapshot is safe
        assert child.process.exec("cat /root/f").stdout == "kept\n"
        with pytest.raises(ImageNotFoundError):
            box.restore(name)
        with pytest.raises(ImageNotFoundError):
            sb.fork(name)
    finally:
        child.delete()
    with pytest.raises(MemorySnapshotUnsupportedError):
        box.snapshot(uniq("mem"), memory=True)
    taken = uniq("taken")
    snaps.append(taken)
    box.snapshot(taken)
    with pytest.raises(Exception) as err:
        box.snapshot(taken)
    assert getattr(err.value, "code", "") == "IMAGE_NAME_CONFLICT"
    with pytest.raises(SandboxNotFoundError):
        sb.get("no-such-sandbox").snapshot("x")
