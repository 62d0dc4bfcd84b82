"""Memory snapshots of gVisor sandboxes: running processes and their memory, with the files (docs/snapshots.md).

A memory snapshot is three layers of the layer store (layers.py): the root (as a file-only snapshot), the run
dir (session logs the processes hold open must be where they left them), and the checkpoint image that
`runsc checkpoint` writes, next to the token the restored agent will expect (agent_endpoint.py). Capture:
`runsc pause` → `checkpoint --leave-running` → btrfs snapshots of root and run dir → `runsc resume`, so memory
and disk come from the same instant and the sandbox keeps running. Restore: stop the sandbox, replace root and
run dir by writable snapshots, `runsc restore` (node.start with `memory`). A fork restores the same image into a
new sandbox (node.create with `memory`), whose netns holds its own address: netstack takes whatever address
eth0 has at restore, and connections that were open are reset (--net-disconnect-ok).

Measured recipe and gotchas: docs/gvisor-checkpoint.md. A failed checkpoint leaves the sandbox without its
runsc control server, so the caller checks preconditions first (no deleted-but-open files on host-served
filesystems: the agent lists them) and treats a failure as fatal for the sandbox.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from . import crash
from .errors import RuntimeError_
from .node import AGENT_TOKEN_FILE, Node
from .spec import GVISOR, SandboxSpec


@dataclass(frozen=True)
class MemoryKeys:
    """Layer keys of one memory snapshot."""

    root: str
    run: str
    image: str

    @classmethod
    def new(cls) -> MemoryKeys:
        return cls(uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex)

    def to_json(self) -> dict[str, str]:
        return {"root": self.root, "run": self.run, "image": self.image}

    @classmethod
    def from_json(cls, obj: dict[str, str]) -> MemoryKeys:
        return cls(obj["root"], obj["run"], obj["image"])

    def all(self) -> list[str]:
        return [self.root, self.run, self.image]


@contextmanager
def _image_layer(node: Node, sid: str, key: str) -> Iterator[str]:
    """A writable subvolume for `runsc checkpoint` to write into; committed as the layer `key`, with the token the
    restored agent will expect, when the block succeeds; discarded when it fails."""
    layers = node.images.layers
    token = node.agent_endpoint(sid).token
    tmp = layers.begin(key, None)
    try:
        yield tmp
        fd = os.open(os.path.join(tmp, AGENT_TOKEN_FILE), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token)
        layers.commit(tmp, key)
    except BaseException:
        if os.path.lexists(tmp):
            layers.discard(tmp)
        raise


def capture(node: Node, sid: str, keys: MemoryKeys) -> None:
    """Checkpoint the running gVisor sandbox `sid` into the layers `keys`; it keeps running. Raises
    RuntimeError_ with the layers removed; the sandbox may then be dead (check node.is_running)."""
    rt = node.runtimes[GVISOR]
    layers = node.images.layers
    try:
        with _image_layer(node, sid, keys.image) as tmp:
            rt.pause(sid)  # nothing runs between the memory image and the disk snapshots
            try:
                crash.point("snapshot.frozen")
                rt.checkpoint(sid, tmp, leave_running=True)
                layers.snapshot_into(node.root_path(sid), keys.root)
                layers.snapshot_into(node.run_path(sid), keys.run)
            finally:
                try:
                    rt.resume(sid)
                except RuntimeError_:
                    pass  # a failed checkpoint took the sandbox down: the caller finds it not running
    except BaseException:
        for key in keys.all():
            layers.remove(key)
        raise


def image_path(node: Node, keys: MemoryKeys) -> str:
    return node.images.layers.require(keys.image)


def restore(node: Node, spec: SandboxSpec, keys: MemoryKeys) -> int:
    """Replace the (stopped) sandbox's root and run dir by the snapshot's and restore its processes; the host pid.
    Idempotent after a crash: every step is done again from the immutable layers."""
    layers = node.images.layers
    node.stop(spec.id, GVISOR)
    crash.point("restore.stop")
    root, run = node.root_path(spec.id), node.run_path(spec.id)
    node.store.delete_subvolume(root)
    node.store.snapshot(layers.require(keys.root), root, limit_bytes=spec.disk_mib * 1024 * 1024)
    node.store.delete_subvolume(run)
    node.store.snapshot(layers.require(keys.run), run, limit_bytes=node.cfg.run_limit_bytes)
    crash.point("restore.root")
    return node.start(spec, memory=image_path(node, keys))


def suspend(node: Node, sid: str, key: str) -> None:
    """Pause a running gVisor sandbox to disk: checkpoint its processes into the layer `key`, then release its
    runtime resources (memory, cgroup, netns). Its root and run dir stay as they are, which is what the image
    expects at resume: nothing can change them while it is paused (the toolbox refuses a sandbox not started)."""
    with _image_layer(node, sid, key) as tmp:
        node.runtimes[GVISOR].checkpoint(sid, tmp, leave_running=False)  # the sandbox exits when it is saved
    node.stop(sid, GVISOR)
