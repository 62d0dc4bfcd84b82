"""State snapshots of a sandbox's root: capture (frozen, consistent), restore in place, and diff.

A state snapshot is a read-only btrfs snapshot of the sandbox's root subvolume in the layer store
(`layers/<key>`, layers.py): every file of the writable root (installed packages, uncommitted git changes,
/tmp...), made in 5 ms whatever its size, sharing every extent with the sandbox. A running sandbox is frozen
for the capture (`runc pause` / `runsc pause`: no process writes half a file into it) and thawed right after,
in a `finally`. Restoring replaces the root by a writable snapshot of the layer, with the sandbox's size limit;
the sandbox must be stopped for that, and is started again by the caller. Forks are ordinary creates from the
layer (node.create), so they get new roots, names, addresses and hostnames.

Diff walks both trees with lstat only. btrfs keeps inode numbers across snapshots of one lineage, and a file's
ctime changes with any change to its data or metadata and cannot be set by userspace, so an entry is unchanged
exactly when its type, inode number and ctime are equal; anything else at the same path is `modified`.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from . import crash
from .errors import RuntimeError_
from .node import Node

SKIP = ("proc", "sys", "dev", ".sandburg")  # mount points: empty in the root, filled at run time


@dataclass
class Diff:
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def capture(node: Node, sid: str, isolation: str, key: str, running: bool) -> str:
    """Snapshot the sandbox's root into the layer `key`; freezes a running sandbox meanwhile."""
    rt = node.runtimes[isolation]
    paused = False
    if running:
        try:
            rt.pause(sid)
            paused = True
        except RuntimeError_:
            # not running after all (it exited meanwhile): its root is quiet anyway
            paused = False
    try:
        crash.point("snapshot.frozen")
        return node.images.layers.snapshot_into(node.root_path(sid), key)
    finally:
        if paused:
            rt.resume(sid)


def thaw(node: Node, sid: str, isolation: str) -> bool:
    """Resume a sandbox left frozen (a crash during a capture); True if it was."""
    rt = node.runtimes[isolation]
    st = rt.state(sid)
    if st is not None and st.get("status") == "paused":
        rt.resume(sid)
        return True
    return False


def restore_root(node: Node, sid: str, key: str, disk_mib: int) -> None:
    """Replace the (stopped) sandbox's root by a writable snapshot of layer `key`. Idempotent: after a crash it
    is simply done again (the layer is immutable)."""
    layer = node.images.layers.require(key)
    root = node.root_path(sid)
    node.store.delete_subvolume(root)
    node.store.snapshot(layer, root, limit_bytes=disk_mib * 1024 * 1024)


def _entries(root: str) -> dict[str, tuple[int, int, int]]:
    """path → (file type, inode, ctime_ns) of everything under `root` (relative paths, `/`-rooted)."""
    out: dict[str, tuple[int, int, int]] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            it = os.scandir(os.path.join(root, rel) if rel else root)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with it:
            for e in it:
                path = f"{rel}/{e.name}" if rel else e.name
                if not rel and e.name in SKIP:
                    continue
                st = e.stat(follow_symlinks=False)
                out["/" + path] = (stat.S_IFMT(st.st_mode), st.st_ino, st.st_ctime_ns)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(path)
    return out


def diff(old_root: str, new_root: str) -> Diff:
    """What changed from `old_root` to `new_root`: sorted paths added, modified, deleted. Directories appear
    as added or deleted, never as modified: what changed in them is listed entry by entry."""
    a, b = _entries(old_root), _entries(new_root)
    d = Diff()
    for path, meta in b.items():
        before = a.get(path)
        if before is None:
            d.added.append(path)
        elif before != meta and meta[0] != stat.S_IFDIR:  # a directory's change is in its entries' lines
            d.modified.append(path)
    d.deleted = [p for p in a if p not in b]
    d.added.sort()
    d.modified.sort()
    d.deleted.sort()
    return d
