"""Memory snapshots on the gvisor tier against the real server (runsc checkpoint/restore, docs/snapshots.md):
running processes resume where they were (a shell counter, a Python REPL and its variables), in place and in
N forks that then diverge; the agent's channel survives checkpoint → restore → exec; what gVisor cannot save
is refused with a typed error and the sandbox keeps running."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import time
import uuid

import pytest

from sandburg import (
    ImageNotFoundError,
    MemorySnapshotUnsupportedError,
    Sandbox,
    SandboxNotRunningError,
    Sandburg,
)
from sandburg.agent import protocol as P

# a shell loop whose count lives only in the shell's memory (the file is what it last wrote, replaced by a rename:
# a read never sees it half-written)
COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /root/count.new; mv -f /root/count.new /root/count; sleep 0.1; done"
# a Python REPL reading a FIFO that a sleeping writer keeps open; what it prints goes to /root/repl.out
REPL = "mkfifo /tmp/repl.in && (sleep 100000 > /tmp/repl.in &) && exec python3 -i -u < /tmp/repl.in > /root/repl.out 2>&1"


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


def count(box: Sandbox) -> int:
    out = box.process.exec("cat /root/count").stdout.strip()
    return int(out or 0)


def wait_for(pred, within: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def say(box: Sandbox, line: str, expect: str) -> None:
    """Send one line to the REPL and wait until `expect` shows up in its output."""
    assert box.process.exec(f"echo {shlex.quote(line)} > /tmp/repl.in").exit_code == 0
    wait_for(lambda: expect in box.process.exec("cat /root/repl.out").stdout, what=f"REPL output {expect!r}")


def start_workload(box: Sandbox) -> None:
    box.process.create_session("counter").exec(COUNTER, background=True)
    box.process.create_session("repl").exec(REPL, background=True)
    wait_for(lambda: count(box) >= 5, what="the counter")
    wait_for(lambda: box.process.exec("test -p /tmp/repl.in").exit_code == 0, what="the REPL's FIFO")
    say(box, "x = 41 * 1000 + 7", ">>>")
    say(box, "print('x is', x)", "x is 41007")


def test_memory_snapshot_resumes_processes_in_place(make_box, snaps):
    box = make_box(image="debian-12", isolation="gvisor")
    start_workload(box)
    name = uniq("warm")
    snaps.append(name)
    snap = box.snapshot(name, memory=True)
    assert snap.memory and snap.settings["isolation"] == "gvisor"
    c0 = count(box)
    # the sandbox kept running after the capture: the same processes go on counting
    c1 = wait_for(lambda: (c := count(box)) >= c0 + 5 and c, what="the counter after the snapshot")
    say(box, "x = 0", ">>>")
    say(box, "print('changed', x)", "changed 0")

    box.restore(name)
    assert box.state == "started" and box.id == snap.sandbox_id
    c2 = count(box)
    assert c0 - 2 <= c2 < c1, (c0, c1, c2)  # back at the snapshot's count, not where the original was
    # and still counting from there: the shell's memory came back (a fresh start would count from 1)
    wait_for(lambda: count(box) >= c2 + 3, what="the restored counter")
    assert count(box) < c1 + 50
    say(box, "print('after', x + 1)", "after 41008")  # the REPL's variable as it was at the snapshot
    assert "changed 0" not in box.process.exec("cat /root/repl.out").stdout  # its files rolled back too
    # a second restore from the same snapshot works the same way (the snapshot is immutable)
    box.restore(name)
    say(box, "print('again', x)", "again 41007")


def test_memory_fork_children_diverge(sb, make_box, snaps):
    parent = make_box(image="debian-12", isolation="gvisor")
    start_workload(parent)
    host = parent.process.exec("hostname").stdout
    name = uniq("warm-fork")
    snaps.append(name)
    parent.snapshot(name, memory=True)
    c0 = count(parent)
    wait_for(lambda: count(parent) >= c0 + 10, what="the parent's counter")  # the parent is well ahead now
    a, b = sb.fork(name, count=2)
    try:
        assert len({a.id, b.id, parent.id}) == 3 and a.isolation == b.isolation == "gvisor"
        for child in (a, b):
            c = count(child)
            # from the snapshot's count on: behind the parent, which never stopped, and not from 1
            assert c0 - 2 <= c < count(parent), (c, c0)
            wait_for(lambda child=child, c=c: count(child) >= c + 3, what="a fork's counter")
            say(child, "print('fork sees', x)", "fork sees 41007")
            # the UTS namespace is restored with the processes: a memory fork keeps the parent's hostname
            assert child.process.exec("hostname").stdout == host
        say(a, "x = 1", ">>>")
        say(b, "x = 2", ">>>")
        a.process.exec("echo only-a > /root/f")
        say(a, "print('a has', x)", "a has 1")
        say(b, "print('b has', x)", "b has 2")
        say(parent, "print('parent has', x)", "parent has 41007")
        assert b.process.exec("cat /root/f").exit_code != 0
        assert parent.process.exec("cat /root/f").exit_code != 0
        # each child answers on its own address and keeps running independently of the others
        a.delete()
        assert count(b) > 0 and b.process.exec("echo alive").stdout == "alive\n"
    finally:
        for child in (a, b):
            try:
                child.delete()
            except Exception as exc:
                if "not found" not in str(exc).lower():
                    raise


def test_what_cannot_be_checkpointed_is_refused(sb, make_box, snaps):
    box = make_box(image="debian-12", isolation="gvisor")
    hold = (
        "python3 -c \"import os,time; f=open('/root/held','w'); os.unlink('/root/held'); time.sleep(1000)\""
    )
    box.process.create_session("hold").exec(hold, background=True)
    wait_for(lambda: "held" in box.process.exec("ls -l /proc/*/fd 2>/dev/null").stdout, what="the held file")
    name = uniq("refused")
    snaps.append(name)
    with pytest.raises(MemorySnapshotUnsupportedError) as err:
        box.snapshot(name, memory=True)
    assert "deleted but still open" in str(err.value) and "/root/held" in str(err.value)
    assert box.process.exec("echo alive").stdout == "alive\n"  # nothing was attempted: the sandbox is intact
    with pytest.raises(ImageNotFoundError):
        sb.snapshots.get(name)
    # files that live in the sandbox's memory (/tmp is gVisor's own tmpfs) are fine
    box.process.delete_session("hold")
    tmp_hold = hold.replace("/root/held", "/tmp/held")
    box.process.create_session("hold2").exec(tmp_hold, background=True)
    wait_for(lambda: "held" in box.process.exec("ls -l /proc/*/fd 2>/dev/null").stdout, what="the /tmp file")
    assert box.snapshot(name, memory=True).memory

    box.stop()
    with pytest.raises(SandboxNotRunningError):
        box.snapshot(uniq("stopped"), memory=True)


def test_agent_port_answers_only_with_the_token(make_box, server):
    """The gVisor agent listens on TCP inside the sandbox (a host socket would break checkpoint): any host process
    can route to the bridge, so a connection that does not begin with the sandbox's token gets nothing."""
    box = make_box(image="busybox", isolation="gvisor")
    with open(os.path.join(server.data_dir, "sandboxes", box.id, "agent.json")) as fh:
        ep = json.load(fh)
    ping = P.frame(P.REQUEST, json.dumps({"op": "ping"}).encode())

    def ask(prefix: bytes) -> tuple[bytes, bytes] | None:
        with socket.create_connection((ep["host"], ep["port"]), timeout=10) as s:
            s.sendall(prefix + ping)
            try:
                return P.FrameReader(s).read()
            except (P.ProtocolError, ConnectionError):
                return None

    frame = ask(ep["token"].encode())  # positive control: the host's own client
    assert frame is not None and frame[0] == P.RESULT and json.loads(frame[1])["ok"] is True
    assert ask(b"") is None  # the ping's own bytes are taken as a (wrong) token
    assert ask(b"0" * len(ep["token"])) is None
    assert box.process.exec("echo alive").stdout == "alive\n"


@pytest.mark.parametrize("tier", ["container", "gvisor"])
def test_pause_keeps_processes_and_start_resumes_them(make_box, server, tier):
    """gvisor: checkpointed to disk, no runtime process while paused; container: frozen in place. Either way
    nothing runs while paused and `start` goes on from where it was; `stop` of a paused sandbox drops it."""
    box = make_box(image="debian-12", isolation=tier)
    box.process.create_session("counter").exec(COUNTER, background=True)
    wait_for(lambda: count(box) >= 5, what="the counter")
    before = count(box)
    box.pause()
    assert box.state == "paused"
    with pytest.raises(SandboxNotRunningError):
        box.process.exec("true")
    runtime = "runsc" if tier == "gvisor" else "runc"
    state = subprocess.run(
        [runtime, "--root", os.path.join(server.data_dir, runtime), "state", box.id],
        capture_output=True,
        text=True,
    )
    if tier == "gvisor":
        assert state.returncode != 0, (
            state.stdout
        )  # the sandbox is gone from the host: only its checkpoint is kept
    else:
        assert json.loads(state.stdout)["status"] == "paused"
    time.sleep(1.5)  # a running counter would add ~15
    box.start()
    assert box.state == "started"
    c = count(box)
    assert before <= c <= before + 5, (before, c)  # it did not count while paused
    wait_for(lambda: count(box) >= c + 3, what="the resumed counter")  # and goes on (a restart starts at 1)
    box.pause()
    box.stop()  # a paused sandbox can be stopped: its processes end
    box.start()
    assert box.state == "started" and "while true" not in box.process.exec("ps -eo args").stdout


def test_secrets_never_reach_a_memory_image(sb, make_box, server):
    """A process started with a secret holds its value in memory: a sandbox with secrets gets no memory snapshot
    (typed refusal, sandbox untouched), and its pause freezes it in place instead of writing a checkpoint."""
    name = f"MEM_SECRET_{uuid.uuid4().hex[:8].upper()}"
    sb.secrets.set(name, "s3cr3t-" + uuid.uuid4().hex)
    try:
        box = make_box(image="debian-12", isolation="gvisor", secrets=[name])
        with pytest.raises(MemorySnapshotUnsupportedError) as err:
            box.snapshot(uniq("with-secret"), memory=True)
        assert "secrets" in str(err.value)
        assert box.snapshot(uniq("files-only")).memory is False  # positive control: the files are fine
        box.pause()
        layers = os.path.join(server.data_dir, "store", "layers")
        before = set(os.listdir(layers))
        state = subprocess.run(
            ["runsc", "--root", os.path.join(server.data_dir, "runsc"), "state", box.id],
            capture_output=True,
            text=True,
        )
        assert json.loads(state.stdout)["status"] == "paused"  # frozen, not checkpointed
        box.start()
        assert box.process.exec("echo alive").stdout == "alive\n" and set(os.listdir(layers)) == before
        for s in sb.snapshots.list(sandbox=box.id):
            s.delete()
        box.delete()
    finally:
        sb.secrets.delete(name)
