"""Pause and resume (Daytona's `pause`, resumed by `start`): the sandbox's processes are kept, nothing runs.

- `gvisor`: the processes are checkpointed to disk (`runsc checkpoint`, node/memsnap.py `suspend`) and the sandbox's
  runtime resources released: a paused gVisor sandbox holds no memory. `start` restores them (`runsc restore`).
  The checkpoint image is a layer of the layer store named in the row's `extra.pausedImage` (garbage collection
  keeps it), and is deleted once resumed, stopped or deleted.
- `container`: runc cannot checkpoint on this kernel (criu), so the processes are frozen in place (`runc pause`,
  the cgroup freezer): they use no CPU, but their memory stays allocated. `start` thaws them. A gvisor sandbox
  with secrets is frozen the same way (`runsc pause`): a checkpoint image would hold the secrets' values.

A paused sandbox refuses toolbox calls like a stopped one (SANDBOX_NOT_RUNNING), unless auto-paused or with
wake-on-use (lifecycle.py: the call resumes it); `stop` drops what was kept.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

from .._codes import ErrorCode
from ..node import memsnap
from ..node.agent_client import AgentClient, AgentClientError, Endpoint
from ..node.errors import NodeError
from ..node.spec import CONTAINER, GVISOR
from .db import Sandbox
from .errors import ApiError

if TYPE_CHECKING:
    from .sandboxes import SandboxService

PAUSED_IMAGE = "pausedImage"


def pause(svc: SandboxService, org_id: str, id_or_name: str) -> Sandbox:
    sid = svc.get(org_id, id_or_name).id
    with svc._lock(sid):
        row = svc.get(org_id, sid)
        if row.state == "paused":
            return row
        if row.state != "started":
            raise ApiError(
                ErrorCode.SANDBOX_NOT_RUNNING, f"only a started sandbox can be paused: it is {row.state}",
                state=row.state,
            )  # fmt: skip
        if row.isolation == CONTAINER or row.secrets or svc.node.net is None:
            # frozen in place: container (no checkpoint here), a sandbox with secrets (a checkpoint image would
            # hold their values: docs/secrets.md), a node without the TCP agent channel checkpoint needs
            try:
                svc.node.runtimes[row.isolation].pause(sid)
            except NodeError as exc:
                raise ApiError(ErrorCode.RUNTIME_ERROR, f"pause failed: {exc}") from exc
            svc._release(sid)  # toolbox calls are refused, not left waiting on a frozen agent
            return svc._set_state(sid, "paused")
        refuse_open_deleted(svc.node.agent_endpoint(sid))
        key = uuid.uuid4().hex
        _set_extra(svc, sid, key)  # first: garbage collection keeps the layer from the moment it exists
        svc._set_state(sid, "pausing")
        svc._release(sid)  # the sandbox's exit is ours
        try:
            memsnap.suspend(svc.node, sid, key)
        except NodeError as exc:
            svc.node.images.layers.remove(key)
            _set_extra(svc, sid, None)
            try:
                svc.node.stop(sid, GVISOR)
            finally:
                svc._set_state(sid, "error", f"pause failed: {exc}"[:200])
            raise ApiError(ErrorCode.RUNTIME_ERROR, f"pause failed: {exc}") from exc
        return svc._set_state(sid, "paused")


def resume_locked(svc: SandboxService, row: Sandbox) -> Sandbox:
    """Start a paused sandbox with the processes it had (lock held)."""
    sid = row.id
    key = str((row.extra or {}).get(PAUSED_IMAGE) or "")
    if not key:  # frozen in place
        try:
            svc.node.runtimes[row.isolation].resume(sid)
        except NodeError as exc:
            raise ApiError(ErrorCode.RUNTIME_ERROR, f"resume failed: {exc}") from exc
        running, pid = svc.node.is_running(sid, row.isolation)
        if not running:
            svc.node.stop(sid, row.isolation)
            svc._set_state(sid, "error", "the sandbox's processes were gone when it was resumed")
            raise ApiError(ErrorCode.RUNTIME_ERROR, "the sandbox's processes were gone when it was resumed")
        return svc.mark_started(sid, pid)
    svc._set_state(sid, "starting")
    try:
        pid = svc.node.start(svc._spec(row), memory=svc.node.images.layers.require(key))
    except NodeError as exc:
        svc._set_state(sid, "error", f"resume failed: {exc}"[:200])
        raise ApiError(ErrorCode.RUNTIME_ERROR, f"the sandbox could not be resumed: {exc}") from exc
    drop(svc, row)
    return svc.mark_started(sid, pid)


def drop(svc: SandboxService, row: Sandbox) -> None:
    """Forget what a paused sandbox kept (stop, delete, after a resume)."""
    key = (row.extra or {}).get(PAUSED_IMAGE)
    if key:
        _set_extra(svc, row.id, None)
        svc.node.images.layers.remove(str(key))


def _set_extra(svc: SandboxService, sid: str, key: str | None) -> None:
    with svc.sessions() as s:
        r = s.get(Sandbox, sid)
        if r is None:
            return
        extra = {k: v for k, v in (r.extra or {}).items() if k != PAUSED_IMAGE}
        r.extra = {**extra, PAUSED_IMAGE: key} if key else extra
        s.commit()


def refuse_open_deleted(endpoint: Endpoint) -> None:
    """Checkpoint precondition: gVisor cannot save a file deleted but still open on the disks the host serves, and
    a failed checkpoint kills the sandbox. Raises MEMORY_SNAPSHOT_UNSUPPORTED naming such files."""
    held = asyncio.run(open_deleted(endpoint))
    if held:
        raise ApiError(
            ErrorCode.MEMORY_SNAPSHOT_UNSUPPORTED,
            "gVisor cannot checkpoint files that are deleted but still open on the sandbox's disk; close them "
            f"(or keep such files under /tmp or /dev/shm) and try again: {'; '.join(held[:5])}",
        )


async def open_deleted(endpoint: Endpoint) -> list[str]:
    """What the sandbox holds open after deleting it, on disks gVisor cannot checkpoint (agent op)."""
    try:
        async with AgentClient(endpoint) as agent:
            return await agent.open_deleted()
    except AgentClientError as exc:
        raise ApiError(ErrorCode.RUNTIME_ERROR, f"the sandbox's agent did not answer: {exc}") from exc
