"""State snapshots of sandboxes: create, list, restore in place, fork, diff, delete (docs/snapshots.md).

A snapshot is an image row of kind `state` (the organization's one namespace of images, templates and
snapshots) whose layer is a frozen btrfs snapshot of the sandbox's root (node/statesnap.py). Its `source` keeps
what the snapshot captured besides files: the sandbox's env and settings (isolation, resources, network
policy), labels, and its parent snapshot (the one the sandbox was made from, restored to or last snapshotted:
lineage). Secret values are never stored: env holds only what the sandbox was created with.

Atomicity: the layer is complete (snapshot, read-only, rename) before the row is written, and a layer without a
row is garbage-collected at start-up, so a crash leaves the whole snapshot or none. Restore writes its intent
(`restoring`, the layer key in `extra`) before touching the root; reconcile finishes it after a crash.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .._codes import ErrorCode
from ..node import crash, memsnap, statesnap
from ..node.errors import NodeError
from ..node.images import LAYER_REF
from ..node.memsnap import MemoryKeys
from ..node.spec import CONTAINER, GVISOR
from . import quotas
from .buildplan import ImageConfig
from .db import Image, Sandbox, SandboxVolume, utcnow
from .errors import ApiError
from .pause import refuse_open_deleted
from .schemas import CreateSandbox, NetworkPolicyIn, VolumeMount

if TYPE_CHECKING:
    from .imageservice import ImageService
    from .sandboxes import SandboxService

FORK_PARENT = "forkedFrom"  # in a fork's `extra`: the id of the sandbox its snapshot was taken of
log = logging.getLogger("sandburg.server")
FORKED_FROM = "sandburg.io/forked-from"
MAX_FORKS = 50


class StateSnapshots:
    def __init__(self, sandboxes: SandboxService, images: ImageService) -> None:
        self.sandboxes = sandboxes
        self.images = images
        self.node = sandboxes.node
        self.sessions = sandboxes.sessions

    # -- queries ---------------------------------------------------------------------------------------------
    def get(self, org_id: str, name: str) -> Image:
        row = self.images.find(org_id, name)
        if row is None or row.kind != "state":
            raise ApiError(ErrorCode.IMAGE_NOT_FOUND, f"snapshot {name!r} not found")
        return row

    def list_states(self, org_id: str, sandbox_id: str | None = None) -> list[Image]:
        rows = self.images.list_images(org_id, "state")
        if sandbox_id:
            sid = self.sandboxes.get(org_id, sandbox_id).id
            rows = [r for r in rows if (r.source or {}).get("sandbox", {}).get("id") == sid]
        return rows

    # -- create ----------------------------------------------------------------------------------------------
    def create(
        self, org_id: str, id_or_name: str, name: str, *, memory: bool = False, quota: bool = True
    ) -> Image:
        """Snapshot the sandbox as `name`. `quota=False`: a snapshot that lives for one request (Daytona's fork)
        and takes no slot of the organization's snapshot quota."""
        box = self.sandboxes.get(org_id, id_or_name)
        if memory:
            if box.isolation == CONTAINER:
                raise ApiError(
                    ErrorCode.MEMORY_SNAPSHOT_UNSUPPORTED,
                    "memory snapshots need the gvisor tier (runsc checkpoint); this sandbox runs on container: "
                    "snapshot its files with memory=False",
                )
            if box.secrets:
                raise ApiError(
                    ErrorCode.MEMORY_SNAPSHOT_UNSUPPORTED,
                    "this sandbox has secrets, and a memory image would hold their values (its processes keep "
                    "their env): snapshot its files with memory=False (docs/secrets.md)",
                )
            if self.node.net is None:
                raise ApiError(
                    ErrorCode.MEMORY_SNAPSHOT_UNSUPPORTED,
                    "memory snapshots need the node's networking (the agent's channel must be TCP in gVisor's "
                    "netstack); this server runs without it",
                )
        if self.images.find(org_id, name) is not None:
            raise ApiError(ErrorCode.IMAGE_NAME_CONFLICT, f"the name {name!r} is taken in this organization")
        want = quotas.Amounts(snapshots=1 if quota else 0)
        with self.sessions() as s:  # before anything is captured; checked again at the insert
            quotas.require(s, org_id, want)
        sid = box.id
        key = uuid.uuid4().hex
        with self.sandboxes._lock(sid):
            box = self.sandboxes.get(org_id, sid)
            if box.state not in ("started", "stopped", "error"):
                raise ApiError(ErrorCode.SANDBOX_BUSY, f"sandbox is {box.state}")
            t0 = time.monotonic()
            keys = self._capture_memory(box) if memory else None
            if keys is not None:
                key = keys.root
            else:
                try:
                    statesnap.capture(self.node, sid, box.isolation, key, running=box.state == "started")
                except NodeError as exc:
                    raise ApiError(ErrorCode.RUNTIME_ERROR, f"snapshot failed: {exc}") from exc
            crash.point("snapshot.layer")
            extra = box.extra or {}
            source = {
                "sandbox": {"id": sid, "name": box.name}, "parent": extra.get("snapshot"), "image": box.image,
                "labels": dict(box.labels or {}), "isolation": box.isolation, "cpu": box.cpu,
                "memoryMiB": box.memory_mib, "diskMiB": box.disk_mib, "network": dict(box.network or {}),
                "captureMs": round((time.monotonic() - t0) * 1000, 1),
                **({"memory": keys.to_json(), "volumes": self._volumes_of(sid)} if keys else {}),
                "secrets": dict(box.secrets or {}),  # references only: forks inherit them
            }  # fmt: skip
            now = utcnow()
            row = Image(
                id=str(uuid.uuid4()), organization_id=org_id, name=name, kind="state", state="active",
                source=source, layer=LAYER_REF + key, layers=keys.all() if keys else [key],
                config=ImageConfig(env=dict(box.env or {})).to_json(), created_at=now, updated_at=now,
            )  # fmt: skip
            try:
                with quotas.guard(), self.sessions() as s:
                    quotas.require(s, org_id, want)
                    s.add(row)
                    s.commit()
            except (IntegrityError, ApiError) as exc:
                for k in keys.all() if keys else [key]:
                    self.node.images.layers.remove(k)
                if isinstance(exc, ApiError):
                    raise
                raise ApiError(ErrorCode.IMAGE_NAME_CONFLICT, f"the name {name!r} is taken") from exc
            self._set_parent(sid, row.id)
            return row

    def _volumes_of(self, sid: str) -> list[dict[str, Any]]:
        """The volumes mounted in the sandbox (a memory fork's processes hold them open: it mounts them too)."""
        with self.sessions() as s:
            rows = s.scalars(
                select(SandboxVolume).where(SandboxVolume.sandbox_id == sid).order_by(SandboxVolume.position)
            )
            return [
                {
                    "volumeId": v.volume_id,
                    "mountPath": v.mount_path,
                    "subpath": v.subpath or None,
                    "readOnly": v.read_only,
                }
                for v in rows
            ]

    def _capture_memory(self, box: Sandbox) -> MemoryKeys:
        """Checkpoint a running gvisor sandbox (lock held). A checkpoint that fails takes the sandbox down with
        it (runsc): what makes it fail is refused first, and a sandbox lost anyway is marked `error`."""
        sid = box.id
        if box.state != "started":
            raise ApiError(
                ErrorCode.SANDBOX_NOT_RUNNING,
                f"a memory snapshot captures running processes: sandbox is {box.state}; start it first",
                state=box.state,
            )
        refuse_open_deleted(self.node.agent_endpoint(sid))
        keys = MemoryKeys.new()
        try:
            memsnap.capture(self.node, sid, keys)
        except NodeError as exc:
            if not self.node.is_running(sid, box.isolation)[0]:
                self.sandboxes._release(sid)
                self.sandboxes._set_state(sid, "error", f"memory snapshot failed: {exc}"[:200])
            raise ApiError(ErrorCode.RUNTIME_ERROR, f"memory snapshot failed: {exc}") from exc
        return keys

    # -- restore ---------------------------------------------------------------------------------------------
    def restore(self, org_id: str, id_or_name: str, snapshot: str) -> Sandbox:
        """Replace the sandbox's files (and env) by the snapshot's; id, name, network policy stay. A started
        sandbox is started again (its processes are those of a fresh start), a stopped one stays stopped."""
        snap = self.get(org_id, snapshot)
        assert snap.layer is not None
        key = snap.layer[len(LAYER_REF) :]
        sid = self.sandboxes.get(org_id, id_or_name).id
        with self.sandboxes._lock(sid):
            box = self.sandboxes.get(org_id, sid)
            if box.state not in ("started", "stopped", "error"):
                raise ApiError(ErrorCode.SANDBOX_BUSY, f"sandbox is {box.state}")
            was_running = box.state == "started"
            mem = (snap.source or {}).get("memory")
            # processes come back only on gvisor (a container-tier sandbox gets the snapshot's files)
            mem = mem if mem and box.isolation == GVISOR and self.node.net is not None else None
            with self.sessions() as s:  # intent first: reconcile finishes a restore a crash interrupted
                r = s.get(Sandbox, sid)
                assert r is not None
                r.state = "restoring"
                r.extra = {**(r.extra or {}), "restoring": key, "restartAfterRestore": was_running}
                if mem:
                    r.extra["restoringMemory"] = mem
                r.env = ImageConfig.from_json(snap.config).env
                s.commit()
            crash.point("restore.row")
            return self.finish_restore(sid)

    def finish_restore(self, sid: str) -> Sandbox:
        """The node part of a restore (lock held, row `restoring`): stop, swap the root, start if it ran."""
        with self.sessions() as s:
            box = s.get(Sandbox, sid)
        assert box is not None
        extra = dict(box.extra or {})
        key = str(extra["restoring"])
        self.sandboxes._release(sid)
        if extra.get("restoringMemory"):
            return self._finish_memory_restore(sid, extra)
        try:
            self.node.stop(sid, box.isolation)
            crash.point("restore.stop")
            statesnap.restore_root(self.node, sid, key, box.disk_mib)
            crash.point("restore.root")
        except NodeError as exc:
            self.sandboxes._set_state(sid, "error", f"restore failed: {exc}"[:200])
            raise ApiError(ErrorCode.RUNTIME_ERROR, f"restore failed: {exc}") from exc
        self._restored(sid, extra, key, state="stopped")
        if extra.get("restartAfterRestore"):
            return self.sandboxes.start_locked(sid)
        return self.sandboxes._set_state(sid, "stopped")

    def _finish_memory_restore(self, sid: str, extra: dict[str, Any]) -> Sandbox:
        """Root, run dir and processes of a memory snapshot (row `restoring` until done: a crash is finished by
        recover). The sandbox is started afterwards whatever its state was: the processes are what was restored."""
        keys = MemoryKeys.from_json(extra["restoringMemory"])
        with self.sessions() as s:
            box = s.get(Sandbox, sid)
        assert box is not None
        try:
            pid = memsnap.restore(self.node, self.sandboxes._spec(box), keys)
        except NodeError as exc:
            self.node.stop(sid, box.isolation)
            self.sandboxes._set_state(sid, "error", f"restore failed: {exc}"[:200])
            raise ApiError(ErrorCode.RUNTIME_ERROR, f"restore failed: {exc}") from exc
        self._restored(sid, extra, keys.root)
        return self.sandboxes.mark_started(sid, pid)

    def _restored(self, sid: str, extra: dict[str, Any], key: str, state: str | None = None) -> None:
        """Drop the restore's intent and record the snapshot (of layer `key`) as the sandbox's parent, in one
        commit with the new `state` if given."""
        with self.sessions() as s:
            r = s.get(Sandbox, sid)
            assert r is not None
            snap_id = next(
                (i.id for i in s.scalars(select(Image).where(Image.layer == LAYER_REF + key))), None
            )
            drop = ("restoring", "restartAfterRestore", "restoringMemory")
            r.extra = {k: v for k, v in extra.items() if k not in drop}
            if snap_id:
                r.extra["snapshot"] = snap_id
            if state is not None:
                r.state = state
            s.commit()

    def recover(self) -> None:
        """At start-up: finish the restores a crash interrupted."""
        with self.sessions() as s:
            ids = list(s.scalars(select(Sandbox.id).where(Sandbox.state == "restoring")))
        for sid in ids:
            with self.sandboxes._lock(sid):
                try:
                    self.finish_restore(sid)
                except ApiError as exc:
                    log.error("finishing the restore of %s failed: %s", sid, exc.message)

    # -- fork ------------------------------------------------------------------------------------------------
    def fork(
        self, org_id: str, snapshot: str, count: int = 1, names: list[str] | None = None,
        isolation: str | None = None,
    ) -> list[Sandbox]:  # fmt: skip
        """`count` new sandboxes from the snapshot, each with its own root, name, address and hostname; the
        snapshot's settings (isolation, resources, env, network policy, labels) unless overridden."""
        if not 1 <= count <= MAX_FORKS:
            raise ApiError(ErrorCode.VALIDATION_ERROR, f"count must be between 1 and {MAX_FORKS}")
        if names is not None and len(names) != count:
            raise ApiError(ErrorCode.VALIDATION_ERROR, "names: one name per fork")
        snap = self.get(org_id, snapshot)
        src = snap.source or {}
        with self.sessions() as s:  # all of them within the quota, or none started (each create checks again)
            quotas.require(s, org_id, quotas.Amounts(
                count, count * int(src.get("cpu") or 0), count * int(src.get("memoryMiB") or 0),
                count * int(src.get("diskMiB") or 0),
            ))  # fmt: skip
        base = (src.get("sandbox") or {}).get("name") or snap.name
        tag = uuid.uuid4().hex[:6]
        reqs = []
        for i in range(count):
            net = src.get("network") or {}
            reqs.append(
                CreateSandbox(
                    name=names[i] if names else f"{base}-{tag}-{i + 1}"[:63],
                    image=snap.name,
                    isolation=isolation or src.get("isolation"),  # type: ignore[arg-type]
                    cpu=src.get("cpu"),
                    memoryMiB=src.get("memoryMiB"),
                    diskMiB=src.get("diskMiB"),
                    labels={**(src.get("labels") or {}), FORKED_FROM: snap.name[:63]},
                    network=NetworkPolicyIn(**net) if net else None,
                )  # fmt: skip
            )
        made: list[Sandbox] = []
        errors: list[ApiError] = []
        lock = threading.Lock()

        mem = src.get("memory") if self.node.net is not None else None
        mounts = [VolumeMount(**v) for v in src.get("volumes") or []]

        def one(req: CreateSandbox) -> None:
            try:
                # a memory snapshot forks with its processes on gvisor, with its files on container
                keys = MemoryKeys.from_json(mem) if mem and req.isolation == GVISOR else None
                if keys is not None and mounts:  # the same volumes, where the restored processes left them
                    req = req.model_copy(update={"volumes": mounts})
                row = self.sandboxes.create(org_id, req, memory=keys)
                self._set_parent(row.id, snap.id, (src.get("sandbox") or {}).get("id"))
                with lock:
                    made.append(row)
            except ApiError as exc:
                with lock:
                    errors.append(exc)

        with ThreadPoolExecutor(max_workers=min(count, 8)) as pool:
            list(pool.map(one, reqs))
        if errors:  # all or nothing: a half-made fork is not what was asked for
            for row in made:
                try:
                    self.sandboxes.delete(org_id, row.id)
                except ApiError as exc:
                    log.error("cleanup of fork %s failed: %s", row.id, exc)
            raise errors[0]
        order = {r.name: i for i, r in enumerate(reqs)}
        return sorted(made, key=lambda r: order.get(r.name, 0))

    # -- diff / delete ---------------------------------------------------------------------------------------
    def diff(
        self, org_id: str, old: str, new: str | None = None, sandbox: str | None = None
    ) -> statesnap.Diff:
        """From snapshot `old` to snapshot `new`, or to the current files of `sandbox`."""
        a = self.get(org_id, old)
        assert a.layer is not None
        old_root = self.node.images.path(a.layer)
        if new is not None:
            b = self.get(org_id, new)
            assert b.layer is not None
            new_root = self.node.images.path(b.layer)
        elif sandbox is not None:
            new_root = self.node.root_path(self.sandboxes.get(org_id, sandbox).id)
        else:
            raise ApiError(ErrorCode.VALIDATION_ERROR, "diff: name another snapshot or a sandbox")
        return statesnap.diff(old_root, new_root)

    def delete(self, org_id: str, name: str) -> Image:
        """Always safe: sandboxes and forks made from it have roots of their own (btrfs shares the extents)."""
        row = self.get(org_id, name)
        return self.images.delete(org_id, row.id)

    def _set_parent(self, sid: str, snapshot_id: str, forked_from: str | None = None) -> None:
        """Record the snapshot a sandbox was restored or forked from; a fork also records the sandbox that
        snapshot was taken of (Daytona's fork tree: parent, ancestors, forks)."""
        with self.sessions() as s:
            r = s.get(Sandbox, sid)
            if r is not None:
                extra = {**(r.extra or {}), "snapshot": snapshot_id}
                if forked_from and forked_from != sid:
                    extra[FORK_PARENT] = forked_from
                r.extra = extra
                s.commit()

    # -- fork tree (Daytona) ---------------------------------------------------------------------------------
    def parent(self, org_id: str, id_or_name: str) -> Sandbox:
        """The sandbox this one was forked from; SANDBOX_NOT_FOUND if none (or it was deleted)."""
        box = self.sandboxes.get(org_id, id_or_name)
        pid = (box.extra or {}).get(FORK_PARENT)
        if not pid:
            raise ApiError(ErrorCode.SANDBOX_NOT_FOUND, f"sandbox {box.name!r} was not forked from another")
        return self.sandboxes.get(org_id, str(pid))

    def ancestors(self, org_id: str, id_or_name: str) -> list[Sandbox]:
        """Parent, grandparent, ... as far as they still exist."""
        out: list[Sandbox] = []
        box = self.sandboxes.get(org_id, id_or_name)
        seen = {box.id}
        while (pid := (box.extra or {}).get(FORK_PARENT)) and pid not in seen and len(out) < 1000:
            try:
                box = self.sandboxes.get(org_id, str(pid))
            except ApiError:
                break
            seen.add(box.id)
            out.append(box)
        return out

    def forks(self, org_id: str, id_or_name: str) -> list[Sandbox]:
        """The sandboxes forked from this one (deleted ones are gone: sandburg keeps no rows of them)."""
        sid = self.sandboxes.get(org_id, id_or_name).id
        with self.sessions() as s:
            rows = s.scalars(
                select(Sandbox).where(Sandbox.organization_id == org_id).order_by(Sandbox.created_at)
            )
            return [r for r in rows if (r.extra or {}).get(FORK_PARENT) == sid]


def lineage(rows: list[Image]) -> list[dict[str, Any]]:
    """Each snapshot with its parent's name (None for a first snapshot or a deleted parent)."""
    names = {r.id: r.name for r in rows}
    return [{"name": r.name, "parent": names.get((r.source or {}).get("parent") or "")} for r in rows]
