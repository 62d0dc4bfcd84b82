"""Restart safety: after a (re)start, bring the host in line with the store (docs/node-runtime.md).

Every sandbox row is looked at once: interrupted creates are rolled back, interrupted deletes finished, a pause
or snapshot cut short is settled, network rules re-applied, running sandboxes adopted (watched again), and what
the host holds that no row names is removed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import select

from ..node import statesnap
from ..node.errors import NodeError
from ..node.netpolicy import Policy
from . import archive, pause
from .db import Sandbox

if TYPE_CHECKING:
    from .sandboxes import SandboxService

log = logging.getLogger("sandburg.server")


def reconcile(svc: SandboxService) -> None:
    """Bring the host in line with the store after a (re)start; see docs/node-runtime.md."""
    with svc.sessions() as s:
        rows = list(s.scalars(select(Sandbox)))
    for row in rows:
        try:
            if (
                svc.net
                and row.ip
                and row.state not in ("creating", "destroying", "pending_build", "build_failed")
            ):
                # the rules survive a server restart; re-applying them keeps them in step with the store
                policy = Policy.from_json(row.network)
                svc.net.apply(row.id, row.organization_id, row.ip, policy, policy)  # keeps learned addresses
            _reconcile_one(svc, row)
        except NodeError as exc:
            log.error("reconcile %s failed: %s", row.id, exc)
            svc._set_state(row.id, "error", f"reconcile failed: {exc}"[:200])
    with svc.sessions() as s:
        keep = set(s.scalars(select(Sandbox.id)))
    removed = svc.node.collect(keep)
    if removed:
        log.warning("removed %d orphaned sandbox(es) from the host: %s", len(removed), ", ".join(removed))


def _reconcile_one(svc: SandboxService, row: Sandbox) -> None:
    sid = row.id
    root = svc.node.root_path(sid)
    if row.state not in ("creating", "destroying") and svc.node.store.is_subvolume(root):
        # the size limit lives in the store's quota tree: re-apply it (a store switched to simple quotas,
        # or restored from a backup, has none)
        svc.node.store.limit(root, row.disk_mib * 1024 * 1024)
    if row.state == "pending_build":
        svc._set_state(sid, "build_failed", "the image build was interrupted by a server restart")
        return
    if row.state in ("stopped", "archived") and (row.extra or {}).get(archive.ARCHIVED_LAYER):
        row = archive.reconcile_one(svc, row)
        if row.state == "archived":
            return
    if row.state in ("creating", "destroying"):
        # creating: nobody was told it exists — roll back; destroying: finish what was asked
        svc.node.delete(sid, row.isolation, row.ip)
        with svc.sessions() as s:
            s.delete(s.get(Sandbox, sid))
            s.commit()
        return
    if row.state == "pausing":  # a crash during a pause: paused if the checkpoint is whole, else started
        key = str((row.extra or {}).get(pause.PAUSED_IMAGE) or "")
        if key and svc.node.images.layers.exists(key):
            svc.node.stop(sid, row.isolation)
            svc._set_state(sid, "paused")
            return
        pause.drop(svc, row)
        row.state = "started"
    if row.state in ("started", "starting") and statesnap.thaw(svc.node, sid, row.isolation):
        log.warning("sandbox %s was left frozen by an interrupted snapshot: resumed", sid)
    running, pid = svc.node.is_running(sid, row.isolation)
    if row.state in ("started", "starting"):
        if running:
            svc.node.agent_ready(sid)
            svc.mark_started(sid, pid)
        elif row.state == "starting":
            svc.node.stop(sid, row.isolation)
            svc._set_state(sid, "stopped")
        else:
            reason = svc.node.death_reason(sid) or "exited"
            svc.node.stop(sid, row.isolation)
            svc._set_state(sid, "error", reason)
    elif row.state in ("stopping", "stopped", "error"):
        if running or row.state == "stopping":
            svc.node.stop(sid, row.isolation)
        if row.state == "stopping":
            svc._set_state(sid, "stopped")
