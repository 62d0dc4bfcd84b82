"""A sandbox's state snapshot and fork through Daytona's SDK: `create_snapshot`, `snapshot.list(source_sandbox_id)`,
`fork`, `create(snapshot=<state snapshot>)`, `snapshot.delete`; `pause` (a typed 501: not served yet)."""

from __future__ import annotations

import uuid

from _common import TEST_LABEL, catch, cleanup, emit
from daytona import CreateSandboxFromSnapshotParams, Daytona

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
    out["pause"] = catch(lambda: box.pause())

emit(out)
