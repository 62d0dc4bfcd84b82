"""Archive (Daytona's `POST /sandbox/{id}/archive`, and the reaper's auto-archive): a stopped sandbox's writable
root is kept as a read-only layer of the layer store and its subvolumes are released; `start` restores it.

Order, so that a crash at any step leaves something `reconcile` can finish (see `reconcile_one`):
1. `extra.archivedLayer = key` (garbage collection keeps the layer from the moment it exists: imageservice.gc)
2. the root snapshotted into layer `key` (read-only, 5 ms on btrfs whatever the size)
3. root and run dir deleted, state `archived`.
Unarchive (in `start`): the layer snapshotted back as the root with the disk limit, the layer and the key
removed, then an ordinary start.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from .._codes import ErrorCode
from ..node import crash
from ..node.errors import NodeError
from .db import Sandbox
from .errors import ApiError

if TYPE_CHECKING:
    from .sandboxes import SandboxService

log = logging.getLogger("sandburg.server")
ARCHIVED_LAYER = "archivedLayer"


def archive(svc: SandboxService, org_id: str, id_or_name: str) -> Sandbox:
    sid = svc.get(org_id, id_or_name).id
    with svc._lock(sid):
        row = svc.get(org_id, sid)
        if row.state == "archived":
            return row
        if row.state != "stopped":
            raise ApiError(
                ErrorCode.SANDBOX_BUSY,
                f"only a stopped sandbox can be archived: it is {row.state}",
                state=row.state,
            )
        key = uuid.uuid4().hex
        _set_key(svc, sid, key)
        node = svc.node
        try:
            node.images.layers.snapshot_into(node.root_path(sid), key)
        except NodeError as exc:
            node.images.layers.remove(key)
            _set_key(svc, sid, None)
            raise ApiError(ErrorCode.RUNTIME_ERROR, f"archive failed: {exc}") from exc
        crash.point("archive.layer")
        # the layer is whole: from here on the archive is what holds the files
        node.store.delete_subvolume(node.root_path(sid))
        node.store.delete_subvolume(node.run_path(sid))
        crash.point("archive.release")
        return svc._set_state(sid, "archived")


def unarchive_locked(svc: SandboxService, row: Sandbox) -> Sandbox:
    """Start an archived sandbox (lock held): its root back from the layer, then an ordinary start."""
    sid, node = row.id, svc.node
    key = str((row.extra or {}).get(ARCHIVED_LAYER) or "")
    root = node.root_path(sid)
    if not node.store.is_subvolume(root):
        try:
            node.store.snapshot(node.images.layers.require(key), root, limit_bytes=row.disk_mib << 20)
        except NodeError as exc:
            raise ApiError(ErrorCode.RUNTIME_ERROR, f"the archive could not be restored: {exc}") from exc
    crash.point("unarchive.root")
    _finish_unarchive(svc, sid, key)
    return svc.start_locked(sid)


def drop(svc: SandboxService, row: Sandbox) -> None:
    """Delete the archive of a sandbox being deleted."""
    key = (row.extra or {}).get(ARCHIVED_LAYER)
    if key:
        svc.node.images.layers.remove(str(key))


def reconcile_one(svc: SandboxService, row: Sandbox) -> Sandbox:
    """After a crash: finish or undo an archive or unarchive that was interrupted; returns the row as it now is."""
    sid, node = row.id, svc.node
    key = str((row.extra or {}).get(ARCHIVED_LAYER) or "")
    has_root = node.store.is_subvolume(node.root_path(sid))
    if row.state == "stopped" and key:
        if has_root:  # interrupted before the root went: the archive is undone
            _finish_unarchive(svc, sid, key)
        else:
            log.warning("sandbox %s: an interrupted archive was finished", sid)
            node.store.delete_subvolume(node.run_path(sid))
            return svc._set_state(sid, "archived")
    elif row.state == "archived" and has_root:  # interrupted unarchive: the root is back
        _finish_unarchive(svc, sid, key)
        return svc._set_state(sid, "stopped")
    with svc.sessions() as s:
        fresh = s.get(Sandbox, sid)
    return fresh or row


def _finish_unarchive(svc: SandboxService, sid: str, key: str) -> None:
    if key:
        svc.node.images.layers.remove(key)
    _set_key(svc, sid, None)


def _set_key(svc: SandboxService, sid: str, key: str | None) -> None:
    svc.update_extra(sid, {ARCHIVED_LAYER: key})
