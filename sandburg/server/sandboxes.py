"""The sandbox service: desired state in the store, actual state on the node, kept in step.

Every transition first writes its intent (`creating`, `stopping`, `destroying`...) and commits, then acts on the
node, then records the outcome; `reconcile()` at start-up finishes or rolls back whatever a crash interrupted and
removes anything on the host that no row owns. One lock per sandbox serialises transitions (two racing deletes:
the second finds nothing and gets 404).
"""

from __future__ import annotations

import builtins
import logging
import random
import threading
import uuid
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .._codes import ErrorCode
from ..node import crash, memsnap
from ..node.errors import ImageNotFound, NodeError
from ..node.memsnap import MemoryKeys
from ..node.monitor import ExitMonitor
from ..node.netpolicy import Policy
from ..node.node import Node
from ..node.spec import SandboxSpec
from . import archive, compat, pause, quotas, reconcile
from .config import Settings
from .db import Sandbox, SandboxVolume, utcnow
from .errors import ApiError
from .imageservice import ImageService
from .listing import decode_cursor as _decode_cursor
from .listing import encode_cursor as _encode_cursor
from .netservice import NetService
from .sandbox_build import BuildOps, build_plan_of, plan_name
from .sandbox_network import NetworkOps
from .schemas import CreateSandbox
from .secretservice import SecretService
from .volumes import VolumeService

log = logging.getLogger("sandburg.server")

ISOLATION_LABEL = "sandburg.io/isolation"
UID_BASE = 100_000
UID_SLOTS = 30_000  # 100000 + 32000 * 65536 < 2^31: such gids fit the kernel's ping_group_range (net.py)


@dataclass(frozen=True)
class Live:
    organization_id: str
    isolation: str
    secrets: Mapping[str, str] = field(default_factory=dict)  # env name -> secret name (secretservice.py)


class SandboxService(NetworkOps, BuildOps):
    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], node: Node, net: NetService | None = None
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.node = node
        self.net = net
        self.images: ImageService | None = None  # set by the app: resolves image names (imageservice.py)
        self.secrets: SecretService | None = None  # set by the app: secret references (secretservice.py)
        self.volumes: VolumeService | None = None  # set by the app: persistent volumes (volumes.py)
        self.live: dict[str, Live] = {}  # started sandboxes, for the toolbox's fast path
        self._locks: dict[str, threading.Lock] = {}
        self._extra_lock = threading.Lock()  # update_extra's read-merge-write, whoever calls it
        self._locks_guard = threading.Lock()
        self.monitor = ExitMonitor(self._on_exit)

    def close(self) -> None:
        self.monitor.close()

    def _lock(self, sid: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(sid, threading.Lock())

    # -- queries ---------------------------------------------------------------------------------------------
    def get(self, org_id: str, id_or_name: str) -> Sandbox:
        with self.sessions() as s:
            row = s.get(Sandbox, id_or_name)
            if row is None or row.organization_id != org_id:
                row = s.scalars(
                    select(Sandbox).where(Sandbox.organization_id == org_id, Sandbox.name == id_or_name)
                ).first()
            if row is None:
                # same answer whether it never existed or belongs to another organization
                raise ApiError(ErrorCode.SANDBOX_NOT_FOUND, f"sandbox {id_or_name!r} not found")
            return row

    def list(
        self,
        org_id: str,
        *,
        labels: dict[str, str],
        states: list[str],
        name: str | None,
        limit: int,
        cursor: str | None,
        where: Callable[[Sandbox], bool] | None = None,
        key: Callable[[Sandbox], Any] | None = None,
        descending: bool = False,
    ) -> tuple[list[Sandbox], str | None]:
        """One page of the organization's sandboxes, oldest first unless `key` sorts them. `name` is a
        case-insensitive prefix (as in Daytona); `where` filters further."""
        offset = _decode_cursor(cursor)
        with self.sessions() as s:
            q = select(Sandbox).where(Sandbox.organization_id == org_id)
            if states:
                q = q.where(Sandbox.state.in_(states))
            rows = list(s.scalars(q.order_by(Sandbox.created_at, Sandbox.id)))
        if name:
            rows = [r for r in rows if r.name.lower().startswith(name.lower())]
        if labels:
            rows = [r for r in rows if all(r.labels.get(k) == v for k, v in labels.items())]
        if where is not None:
            rows = [r for r in rows if where(r)]
        if key is not None or descending:  # a stable sort: ties stay oldest first
            rows.sort(key=key or (lambda r: (r.created_at, r.id)), reverse=descending)
        page = rows[offset : offset + limit]
        more = offset + limit < len(rows)
        return page, (_encode_cursor(offset + limit) if more else None)

    def require_running(self, org_id: str, sid: str) -> Live:
        """For the toolbox: the sandbox must exist in the caller's organization and be started."""
        live = self.live.get(sid)
        if live is not None and live.organization_id == org_id:
            return live
        row = self.get(org_id, sid)
        if row.id in self.live:
            return self.live[row.id]
        if self.wake(org_id, row.id):
            return self.live[row.id]
        raise ApiError(
            ErrorCode.SANDBOX_NOT_RUNNING, f"sandbox {sid!r} is {row.state}, not started", state=row.state,
            errorReason=row.error_reason,
        )  # fmt: skip

    def wake_id(self, sid: str) -> bool:
        """Wake on use through a preview URL, whose checked token names the sandbox by id."""
        with self.sessions() as s:
            row = s.get(Sandbox, sid)
        return row is not None and self.wake(row.organization_id, sid)

    def wake(self, org_id: str, id_or_name: str) -> bool:
        """Wake on use (docs/lifecycle.md): start a sandbox asleep that asked for it (stopped with `wakeOnUse`,
        paused by the reaper or with `wakeOnUse`); True if it runs now. Archived sandboxes do not wake."""
        try:
            row = self.get(org_id, id_or_name)
        except ApiError:
            return False
        extra = row.extra or {}
        wake = bool(extra.get("wakeOnUse"))
        paused = row.state == "paused" and (wake or bool(extra.get("autoPaused")))
        asleep = paused or row.state == "stopped" and wake
        if not asleep:
            return row.id in self.live
        try:
            self.start(org_id, row.id)
        except ApiError as exc:
            log.warning("wake on use of %s failed: %s", row.id, exc.message)
        return row.id in self.live

    # -- transitions -----------------------------------------------------------------------------------------
    def create(
        self,
        org_id: str,
        req: CreateSandbox,
        *,
        image_ref: str | None = None,
        memory: MemoryKeys | None = None,
    ) -> Sandbox:
        """Create and start a sandbox. `image_ref` (builds only) is a node ref (layer:<key>) used as its root;
        `memory` (gvisor): the processes of a memory snapshot to restore instead of booting (a memory fork)."""
        st = self.settings
        # Daytona's SDKs cannot send `isolation`: the label sandburg.io/isolation chooses the tier for them
        isolation = req.isolation or req.labels.get(ISOLATION_LABEL) or st.default_isolation
        if isolation not in ("gvisor", "container"):
            raise ApiError(
                ErrorCode.VALIDATION_ERROR, f"{ISOLATION_LABEL}: 'gvisor' or 'container', not {isolation!r}"
            )
        plan = build_plan_of(req)  # a Daytona Image (a Dockerfile): built first, in the background
        image = plan_name(req) if plan is not None else compat.image_for(req, st.default_image)
        cpu = req.cpu if req.cpu is not None else st.default_cpu
        memory_mib = (
            req.memoryMiB
            if req.memoryMiB is not None
            else (req.memory * 1024 if req.memory is not None else st.default_memory_mib)
        )
        disk_mib = (
            req.diskMiB
            if req.diskMiB is not None
            else (req.disk * 1024 if req.disk is not None else st.default_disk_mib)
        )
        _check_range("cpu", cpu, 1, st.max_cpu, "vCPU")
        _check_range("memory", memory_mib, st.min_memory_mib, st.max_memory_mib, "MiB")
        _check_range("disk", disk_mib, st.min_disk_mib, st.max_disk_mib, "MiB")
        if req.gpu:
            raise ApiError(ErrorCode.INVALID_RESOURCES, "this host has no GPUs")
        if req.user not in (None, "root"):
            raise ApiError(
                ErrorCode.VALIDATION_ERROR, f"user: only 'root' is supported yet, got {req.user!r}"
            )
        compat.check_supported(req)
        for k in req.env:
            if not k or "=" in k or "\0" in k or "\0" in req.env[k]:
                raise ApiError(ErrorCode.VALIDATION_ERROR, f"env: invalid variable name or value {k!r}")
        if image_ref is not None:
            ref, env = image_ref, dict(req.env)
        elif plan is not None:
            ref, env = "", dict(req.env)
        elif self.images is not None:
            ref, cfg = self.images.resolve(org_id, image)
            env = {**cfg.env, **req.env}  # the image's ENV, under what the caller sets
        elif self.node.images.exists(image):
            ref, env = image, dict(req.env)
        else:
            raise ApiError(
                ErrorCode.IMAGE_NOT_FOUND,
                f"image {image!r} not found; available: {', '.join(self.node.images.names())}",
            )
        if self.secrets is not None:
            refs = self.secrets.references_for_create(org_id, req.secrets, req.env, image)
        elif req.secrets:
            raise ApiError(ErrorCode.NOT_IMPLEMENTED, "this server has no secret store")
        else:
            refs = {}
        policy = self.net.policy_for_create(req) if self.net else None
        if self.volumes is not None:
            mounts = self.volumes.resolve(org_id, req.volumes)
        elif req.volumes:
            raise ApiError(ErrorCode.NOT_IMPLEMENTED, "this server has no volumes")
        else:
            mounts = []
        sid = str(uuid.uuid4())
        name = req.name or f"sb-{sid[:8]}"
        extra = compat.stored_extra(req)
        if mounts:  # echoed in the Sandbox DTO as Daytona's SandboxVolume, the id resolved
            extra["volumes"] = [{"volumeId": m.volume_id, "mountPath": m.mount_path, "readOnly": m.read_only,
                                 **({"subpath": m.subpath} if m.subpath else {})} for m in mounts]  # fmt: skip
        with self._lock(sid):
            with self.secrets.holding(org_id, refs) if self.secrets is not None else nullcontext():
                row = self._insert(
                    org_id, sid, name, isolation, image, cpu, memory_mib, disk_mib, env, req, extra, policy,
                    state="pending_build" if plan is not None else "creating", secrets=refs, mounts=mounts,
                )  # fmt: skip
            if plan is not None:
                self.build_then_boot(row, plan, policy)
                return row
            crash.point("create.row")
            return self._boot(row, ref, policy, memory)

    def _boot(
        self, row: Sandbox, ref: str, policy: Policy | None, memory: MemoryKeys | None = None
    ) -> Sandbox:
        """The node part of a create (the row is `creating`, its lock held): undone entirely on failure."""
        sid, org_id = row.id, row.organization_id
        if self.net and row.ip and policy:
            self.net.register(sid, org_id, row.ip, policy)  # the resolver answers it from its first query
        try:
            spec = replace(self._spec(row), image=ref)  # in the try: mounting its volumes may fail
            if memory is not None:
                pid = self.node.create(spec, memsnap.image_path(self.node, memory), memory.run)
            else:
                pid = self.node.create(spec)
            crash.point("create.agent")
        except ImageNotFound as exc:
            self._undo_create(row)
            raise ApiError(ErrorCode.IMAGE_NOT_FOUND, str(exc)) from exc
        except NodeError as exc:
            log.error("create %s failed: %s", sid, exc)
            self._undo_create(row)
            raise ApiError(ErrorCode.RUNTIME_ERROR, f"sandbox could not be started: {exc}") from exc
        row = self._set_state(sid, "started")
        self.live[sid] = Live(org_id, row.isolation, dict(row.secrets or {}))
        self.monitor.watch(sid, pid)
        return row

    def start(self, org_id: str, id_or_name: str) -> Sandbox:
        sid = self.get(org_id, id_or_name).id
        with self._lock(sid):
            row = self.get(org_id, sid)
            if row.state == "started":
                return row
            if row.state == "paused":
                return pause.resume_locked(self, row)
            if row.state == "archived":
                self._require_quota_to_run(row)
                return archive.unarchive_locked(self, row)
            if row.state not in ("stopped", "error"):
                raise ApiError(ErrorCode.SANDBOX_BUSY, f"sandbox is {row.state}")
            with quotas.guard():  # checked and marked `starting` (now counted) as one step
                self._require_quota_to_run(row)
                self._set_state(sid, "starting")
            return self.start_locked(sid)

    def _require_quota_to_run(self, row: Sandbox) -> None:
        """A stopped sandbox holds no vCPU or memory (quotas.py): starting it needs them within the quota."""
        with quotas.guard(), self.sessions() as s:
            quotas.require(
                s, row.organization_id, quotas.Amounts(cpu=row.cpu, memory_mib=row.memory_mib), row.id
            )

    def start_locked(self, sid: str) -> Sandbox:
        """Start a stopped sandbox; the caller holds its lock."""
        self._set_state(sid, "starting")
        with self.sessions() as s:
            row = s.get(Sandbox, sid)
        assert row is not None
        try:
            pid = self.node.start(self._spec(row))
        except NodeError as exc:
            self._set_state(sid, "error", f"start failed: {exc}"[:200])
            raise ApiError(ErrorCode.RUNTIME_ERROR, f"sandbox could not be started: {exc}") from exc
        return self.mark_started(sid, pid)

    def mark_started(self, sid: str, pid: int) -> Sandbox:
        """The sandbox runs as host pid `pid` (lock held): `started`, and watched for its exit."""
        row = self._set_state(sid, "started")
        self.live[sid] = Live(row.organization_id, row.isolation, dict(row.secrets or {}))
        self.monitor.watch(sid, pid)
        return row

    def stop(self, org_id: str, id_or_name: str) -> Sandbox:
        sid = self.get(org_id, id_or_name).id
        with self._lock(sid):
            row = self.get(org_id, sid)
            if row.state == "stopped":
                return row
            if row.state not in ("started", "error", "paused"):
                raise ApiError(ErrorCode.SANDBOX_BUSY, f"sandbox is {row.state}")
            self._set_state(sid, "stopping")
            self._release(sid)
            pause.drop(self, row)  # a paused sandbox's processes end with the stop
            try:
                self.node.stop(sid, row.isolation)
            except NodeError as exc:
                self._set_state(sid, "error", f"stop failed: {exc}"[:200])
                raise ApiError(ErrorCode.RUNTIME_ERROR, f"sandbox could not be stopped: {exc}") from exc
            return self._set_state(sid, "stopped")

    def delete(self, org_id: str, id_or_name: str) -> Sandbox:
        sid = self.get(org_id, id_or_name).id
        with self._lock(sid):
            row = self.get(org_id, sid)  # a racing delete that won leaves nothing: 404 here
            self._set_state(sid, "destroying")
            crash.point("delete.row")
            self._release(sid)
            pause.drop(self, row)
            archive.drop(self, row)
            try:
                self.node.delete(sid, row.isolation, row.ip)
            except NodeError as exc:
                self._set_state(sid, "error", f"delete failed: {exc}"[:200])
                raise ApiError(ErrorCode.RUNTIME_ERROR, f"sandbox could not be deleted: {exc}") from exc
            if self.net:
                self.net.forget(sid)
            with self.sessions() as s:
                s.delete(s.get(Sandbox, sid))
                s.commit()
        with self._locks_guard:
            self._locks.pop(sid, None)
        row.state = "destroyed"
        return row

    def set_labels(self, org_id: str, id_or_name: str, labels: dict[str, str]) -> Sandbox:
        sid = self.get(org_id, id_or_name).id
        with self.sessions() as s:
            row = s.get(Sandbox, sid)
            if row is None:
                raise ApiError(ErrorCode.SANDBOX_NOT_FOUND, f"sandbox {id_or_name!r} not found")
            row.labels = dict(labels)
            s.commit()
            return row

    def update(
        self, org_id: str, id_or_name: str, *, extra: dict[str, Any] | None = None, public: bool | None = None,
        network_block_all: bool | None = None,
    ) -> Sandbox:  # fmt: skip
        """Change stored settings (Daytona's autostop, public, network settings...): `extra` keys set to None
        are removed."""
        sid = self.get(org_id, id_or_name).id
        with self.sessions() as s:
            row = s.get(Sandbox, sid)
            if row is None:
                raise ApiError(ErrorCode.SANDBOX_NOT_FOUND, f"sandbox {id_or_name!r} not found")
            if extra:
                merged = {**(row.extra or {}), **extra}
                row.extra = {k: v for k, v in merged.items() if v is not None}
            if public is not None:
                row.public = public
            if network_block_all is not None:
                row.network_block_all = network_block_all
            s.commit()
            return row

    def update_extra(self, sid: str, extra: dict[str, Any]) -> None:
        """Set (None: remove) keys of a sandbox's `extra` by id, in one short transaction. Serialised: the reaper
        (which holds no sandbox lock) and an archive both merge into `extra`, and the later commit of two
        interleaved read-merge-writes would drop the other's key (seen: an archive's layer key lost, so a crash
        test found the archive undone)."""
        with self._extra_lock, self.sessions() as s:
            row = s.get(Sandbox, sid)
            if row is not None:
                merged = {**(row.extra or {}), **extra}
                row.extra = {k: v for k, v in merged.items() if v is not None}
                s.commit()

    # -- restart safety --------------------------------------------------------------------------------------
    def reconcile(self) -> None:
        """Bring the host in line with the store after a (re)start (reconcile.py; docs/node-runtime.md)."""
        reconcile.reconcile(self)

    # -- internals -------------------------------------------------------------------------------------------
    def _on_exit(self, sid: str, pid: int) -> None:
        threading.Thread(
            target=self._handle_exit, args=(sid, pid), name=f"exit-{sid[:8]}", daemon=True
        ).start()

    def _handle_exit(self, sid: str, pid: int) -> None:
        with self._lock(sid):
            with self.sessions() as s:
                row = s.get(Sandbox, sid)
            if row is None or row.state != "started":
                return  # an exit we caused (stop/delete) or already handled
            running, _ = self.node.is_running(sid, row.isolation)
            if running:
                return  # still (or again) alive: nothing to do
            reason = self.node.death_reason(sid) or "exited"
            log.warning("sandbox %s stopped on its own (%s)", sid, reason)
            self._release(sid)
            try:
                self.node.stop(sid, row.isolation)
            except NodeError as exc:
                log.error("cleanup after exit of %s failed: %s", sid, exc)
            self._set_state(sid, "error", reason)

    def _release(self, sid: str) -> None:
        self.live.pop(sid, None)
        self.monitor.forget(sid)

    def _undo_create(self, row: Sandbox) -> None:
        if self.net:
            self.net.forget(row.id)
        try:
            self.node.delete(row.id, row.isolation, row.ip)
        except NodeError as exc:
            log.error("cleanup of failed create %s failed: %s", row.id, exc)
            self._set_state(row.id, "error", "create failed; cleanup incomplete")
            return
        with self.sessions() as s:
            s.delete(s.get(Sandbox, row.id))
            s.commit()

    def _insert(
        self, org_id: str, sid: str, name: str, isolation: str, image: str, cpu: int, memory_mib: int, disk_mib: int,
        env: dict[str, str], req: CreateSandbox, extra: dict[str, Any], policy: Policy | None, state: str = "creating",
        secrets: dict[str, str] | None = None, mounts: builtins.list[SandboxVolume] | None = None,
    ) -> Sandbox:  # fmt: skip
        for _attempt in range(5):
            with quotas.guard(), self.sessions() as s:  # the quota check and the insert, as one step
                quotas.require(s, org_id, quotas.Amounts(1, cpu, memory_mib, disk_mib))
                if s.scalars(
                    select(Sandbox.id).where(Sandbox.organization_id == org_id, Sandbox.name == name)
                ).first():
                    raise ApiError(
                        ErrorCode.SANDBOX_NAME_CONFLICT, f"a sandbox named {name!r} already exists"
                    )
                used = set(s.scalars(select(Sandbox.uid_slot)))
                for _ in range(100):
                    slot = random.randint(1, UID_SLOTS)
                    if slot not in used:
                        break
                ip = None
                if self.net and policy:
                    ip = self.net.allocate({i for i in s.scalars(select(Sandbox.ip)) if i})
                now = utcnow()
                row = Sandbox(
                    id=sid, organization_id=org_id, name=name, state=state, isolation=isolation, image=image,
                    cpu=cpu, memory_mib=memory_mib, disk_mib=disk_mib, env=env, labels=dict(req.labels),
                    user="root", uid_slot=slot, public=bool(req.public),
                    network_block_all=bool(policy and policy.mode == "none"), ip=ip,
                    network=policy.to_json() if policy else {}, extra=extra, secrets=dict(secrets or {}),
                    created_at=now, updated_at=now,
                )  # fmt: skip
                s.add(row)
                try:
                    s.flush()  # the sandbox row first: its volume mounts refer to it
                    for m in mounts or []:
                        s.add(SandboxVolume(sandbox_id=sid, volume_id=m.volume_id, mount_path=m.mount_path,
                                            subpath=m.subpath, read_only=m.read_only, position=m.position))  # fmt: skip
                    s.commit()
                    return row
                except IntegrityError as exc:
                    if "FOREIGN KEY" in str(exc.orig):  # a volume deleted since the create resolved it
                        raise ApiError(ErrorCode.VOLUME_NOT_FOUND, "a volume to mount was deleted") from exc
                    if "name" in str(exc.orig):
                        raise ApiError(
                            ErrorCode.SANDBOX_NAME_CONFLICT, f"a sandbox named {name!r} already exists"
                        ) from exc
                    # a concurrent create drew the same uid slot or address: draw again
        raise ApiError(ErrorCode.INVALID_RESOURCES, "no free uid slot or address found; try again")

    def _set_state(self, sid: str, state: str, reason: str | None = None) -> Sandbox:
        with self.sessions() as s:
            row = s.get(Sandbox, sid)
            if row is None:
                raise ApiError(ErrorCode.SANDBOX_NOT_FOUND, f"sandbox {sid!r} not found")
            row.state = state
            row.error_reason = reason
            row.updated_at = utcnow()
            s.commit()
            return row

    def _spec(self, row: Sandbox) -> SandboxSpec:
        return SandboxSpec(
            id=row.id, hostname=_hostname(row.name), isolation=row.isolation, image=row.image, cpu=row.cpu,
            memory_mib=row.memory_mib, disk_mib=row.disk_mib, env=dict(row.env),
            uid_base=UID_BASE + row.uid_slot * 65536, pids_limit=self.settings.pids_limit, ip=row.ip or "",
            policy=Policy.from_json(row.network) if row.network else Policy.build("none"),
            volumes=self.volumes.specs(row.id) if self.volumes is not None else (),
        )  # fmt: skip


def _hostname(name: str) -> str:
    h = "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower()).strip("-")
    return h[:63] or "sandbox"


def _check_range(field: str, value: int, low: int, high: int, unit: str) -> None:
    if not low <= value <= high:
        raise ApiError(
            ErrorCode.INVALID_RESOURCES,
            f"{field} must be between {low} and {high} {unit} on this host, got {value}",
        )
