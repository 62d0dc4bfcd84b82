"""A sandbox's state snapshot and fork through Daytona's SDK: `create_snapshot`, `snapshot.list(source_sandbox_id)`,
`fork`, `create(snapshot=<state snapshot>)`, `snapshot.delete`; `pause`, then `start` resuming the processes
(the gvisor tier, the server's default: checkpointed to disk while paused)."""

from __future__ import annotations

import time
import uuid

from _common import TEST_LABEL, catch, cleanup, emit
from daytona import CreateSandboxFromSnapshotParams, Daytona, SessionExecuteRequest

out: dict = {}
daytona = Daytona()
tag = uuid.uuid4().hex[:8]

with cleanup(daytona) as made:
    box = daytona.create(CreateSandboxFromSnapshotParams(snapshot="debian-12", labels=TEST_LABEL))
    made.append(box)
    box.process.exec("echo one > /workspace/f", timeout=30)
    name = f"state-{tag}"
    box.create_snapshot(name)
    out["after_snapshot"] = {"state": str(getattr(box.state, "value", box.state))}
    listed = [s.name for s in daytona.snapshot.list(source_sandbox_id=box.id).items]
    out["listed"] = name in listed
    box.process.exec("echo two > /workspace/f", timeout=30)

    child = box.fork(name=f"child-{tag}")
    made.append(child)
    out["fork"] = {
        "state": str(getattr(child.state, "value", child.state)),
        "new_id": child.id != box.id,
        "content": child.process.exec("cat /workspace/f", timeout=30).result.strip(),
    }
    child.process.exec("echo three > /workspace/f", timeout=30)
    out["parent_unaffected"] = box.process.exec("cat /workspace/f", timeout=30).result.strip()

    fromsnap = daytona.create(CreateSandboxFromSnapshotParams(snapshot=name, labels=TEST_LABEL))
    made.append(fromsnap)
    out["from_snapshot"] = fromsnap.process.exec("cat /workspace/f", timeout=30).result.strip()
    daytona.snapshot.delete(daytona.snapshot.get(name))
    out["deleted"] = name not in [s.name for s in daytona.snapshot.list(source_sandbox_id=box.id).items]

    # pause keeps the processes: a counter whose count exists only in its shell's memory
    counter = "i=0; while true; do i=$((i+1)); echo $i > /root/count.new; mv -f /root/count.new /root/count; sleep 0.1; done"
    box.process.create_session("counter")
    box.process.execute_session_command("counter", SessionExecuteRequest(command=counter, run_async=True))

    def count() -> int:
        return int(box.process.exec("cat /root/count 2>/dev/null || echo 0", timeout=30).result.strip() or 0)

    deadline = time.monotonic() + 30
    while count() < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    before = count()
    box.pause()
    paused = str(getattr(box.state, "value", box.state))
    while_paused = catch(lambda: box.process.exec("true", timeout=30))
    time.sleep(1.5)  # a running counter would add ~15
    box.start()
    after = count()
    time.sleep(1)
    out["pause"] = {"state": paused, "exec": while_paused, "before": before, "after": after, "later": count()}

emit(out)
