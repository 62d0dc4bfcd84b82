"""The volume service: an organization's persistent volumes (create, list, get, delete), the mounts sandboxes ask
for at create, and the keys that unlock them (docs/volumes.md).

A volume is an ext4 filesystem in a sparse file, its top directory encrypted with fscrypt (node/volumes.py). Its
64-byte key is derived from the server's master key (secretcrypto.py) with HKDF-SHA256, info = the volume id: no
volume key is ever stored, and a volume copied away from the host is unreadable without the master key.
Volumes stay mounted on the host from create to delete (mounted again at start-up after a reboot): a running
sandbox outlives a server restart, and so must the filesystem under its bind mount.
"""

from __future__ import annotations

import builtins
import logging
import posixpath
import re
import threading
import uuid
from collections.abc import Sequence
from dataclasses import replace

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .._codes import ErrorCode
from ..node.errors import NodeError
from ..node.spec import VolumeMountSpec
from ..node.volumes import KEY_BYTES, Volumes
from .db import SandboxVolume, Volume, utcnow
from .errors import ApiError
from .schemas import VolumeMount
from .secretcrypto import MasterKey

log = logging.getLogger("sandburg.server")

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
MIN_SIZE_MIB = 16  # ext4 with a journal needs a few MiB of its own
MAX_SIZE_MIB = 1 << 20  # 1 TiB: sparse, so this bounds what a volume may grow to, not what it takes at once
DEFAULT_SIZE_MIB = 10 * 1024  # what Daytona's SDK gets (its CreateVolume has no size)
MAX_MOUNTS = 16
# paths a volume must not cover: the kernel's and the runtime's own (the toolbox agent lives under /.sandburg)
RESERVED = ("/proc", "/sys", "/dev", "/.sandburg")


def volume_key(master: MasterKey, vid: str) -> bytes:
    """The fscrypt master key of volume `vid`: HKDF-SHA256 of the server's master key, one per volume."""
    secret: bytes = master._key  # noqa: SLF001 - the only other reader of the master key than its own sealing
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=b"sandburg volume key v1", info=vid.encode()
    )
    return hkdf.derive(secret)


def check_mount_path(path: str) -> str:
    """An absolute, normalised path inside the sandbox that is not `/` and not under a reserved tree."""
    if not path.startswith("/") or "\0" in path or path != posixpath.normpath(path) or path.startswith("//"):
        raise ApiError(
            ErrorCode.INVALID_VOLUME, f"mountPath {path[:200]!r}: an absolute path without . or .."
        )
    if path == "/" or any(path == r or path.startswith(r + "/") for r in RESERVED):
        raise ApiError(
            ErrorCode.INVALID_VOLUME, f"mountPath {path!r}: not / and not under {', '.join(RESERVED)}"
        )
    return path


def check_subpath(subpath: str | None) -> str:
    """A relative path inside the volume ('' = all of it); Daytona's prefixes may end with '/'."""
    parts = [p for p in (subpath or "").split("/") if p]
    if (subpath or "").startswith("/") or "\0" in (subpath or "") or any(p in (".", "..") for p in parts):
        raise ApiError(ErrorCode.INVALID_VOLUME, f"subpath {subpath!r}: a relative path without . or ..")
    return "/".join(parts)


class VolumeService:
    def __init__(self, sessions: sessionmaker[Session], data_dir: str, master: MasterKey) -> None:
        self.sessions = sessions
        self.host = Volumes(data_dir)
        self._master = master
        # held by create and delete, and around each volume's mount: one filesystem operation per volume at a time
        self._guard = threading.Lock()

    def key(self, vid: str) -> bytes:
        return volume_key(self._master, vid)

    # -- the API ---------------------------------------------------------------------------------------------
    def create(self, org_id: str, name: str, size_mib: int | None) -> Volume:
        if not NAME.match(name):
            raise ApiError(
                ErrorCode.INVALID_VOLUME,
                f"name {name[:80]!r}: letters, digits, '.', '_' and '-', starting with a letter or digit, at most 63",
            )
        size = DEFAULT_SIZE_MIB if size_mib is None else size_mib
        if not MIN_SIZE_MIB <= size <= MAX_SIZE_MIB:
            raise ApiError(
                ErrorCode.INVALID_VOLUME,
                f"size must be between {MIN_SIZE_MIB} and {MAX_SIZE_MIB} MiB, got {size}",
            )
        vid = str(uuid.uuid4())
        now = utcnow()
        with self._guard:
            with self.sessions() as s:
                row = Volume(id=vid, organization_id=org_id, name=name, state="creating", size_mib=size,
                             created_at=now, updated_at=now)  # fmt: skip
                s.add(row)
                try:
                    s.commit()
                except IntegrityError as exc:
                    raise ApiError(
                        ErrorCode.VOLUME_NAME_CONFLICT, f"a volume named {name!r} already exists"
                    ) from exc
            try:
                self.host.create(vid, size << 20, self.key(vid))
            except NodeError as exc:
                log.error("volume %s: create failed: %s", vid, exc)
                self._forget(vid)
                raise ApiError(ErrorCode.RUNTIME_ERROR, f"the volume could not be created: {exc}") from exc
            return self._set(vid, state="ready")

    def list(self, org_id: str) -> builtins.list[Volume]:
        with self.sessions() as s:
            q = select(Volume).where(Volume.organization_id == org_id).order_by(Volume.created_at, Volume.id)
            return builtins.list(s.scalars(q))

    def get(self, org_id: str, id_or_name: str) -> Volume:
        with self.sessions() as s:
            row = s.get(Volume, id_or_name)
            if row is None or row.organization_id != org_id:
                q = select(Volume).where(Volume.organization_id == org_id, Volume.name == id_or_name)
                row = s.scalars(q).first()
        if row is None:
            # the same answer whether it never existed or belongs to another organization
            raise ApiError(ErrorCode.VOLUME_NOT_FOUND, f"volume {id_or_name!r} not found")
        return row

    def users(self, vid: str) -> builtins.list[str]:
        """Ids of the sandboxes (any state) that mount the volume."""
        with self.sessions() as s:
            q = select(SandboxVolume.sandbox_id).where(SandboxVolume.volume_id == vid)
            return sorted(set(s.scalars(q)))

    def delete(self, org_id: str, id_or_name: str) -> Volume:
        """Delete the volume and its data; refused (VOLUME_IN_USE) while any sandbox, even a stopped one, mounts
        it. The row goes first: the store's foreign key refuses it if a create added a mount meanwhile."""
        row = self.get(org_id, id_or_name)
        with self._guard:
            users = self.users(row.id)
            if users:
                raise ApiError(ErrorCode.VOLUME_IN_USE, f"volume {row.name!r} is mounted by sandbox(es) "
                               f"{', '.join(users)}: delete them first", sandboxes=users)  # fmt: skip
            try:
                self._forget(row.id)
            except IntegrityError as exc:
                raise ApiError(
                    ErrorCode.VOLUME_IN_USE, f"volume {row.name!r} is mounted by a sandbox"
                ) from exc
            try:
                self.host.delete(row.id)
            except NodeError as exc:  # the row is gone: the start-up reconcile removes what is left
                log.error("volume %s: removing it from the host failed: %s", row.id, exc)
        row.state = "deleted"
        return row

    # -- sandboxes -------------------------------------------------------------------------------------------
    def resolve(self, org_id: str, mounts: Sequence[VolumeMount]) -> builtins.list[SandboxVolume]:
        """The mounts of a create, validated: each volume exists in the organization and is ready, each path is
        allowed and used once. Rows without a sandbox id yet (the caller inserts them with its sandbox)."""
        if len(mounts) > MAX_MOUNTS:
            raise ApiError(ErrorCode.INVALID_VOLUME, f"volumes: at most {MAX_MOUNTS} per sandbox")
        out: builtins.list[SandboxVolume] = []
        seen: set[str] = set()
        for i, m in enumerate(mounts):
            path = check_mount_path(m.mountPath)
            if path in seen:
                raise ApiError(ErrorCode.INVALID_VOLUME, f"mountPath {path!r} given twice")
            seen.add(path)
            vol = self.get(org_id, m.volumeId)
            if vol.state != "ready":
                raise ApiError(ErrorCode.INVALID_VOLUME, f"volume {vol.name!r} is {vol.state}, not ready")
            out.append(SandboxVolume(mount_path=path, volume_id=vol.id, subpath=check_subpath(m.subpath),
                                     read_only=bool(m.readOnly), position=i))  # fmt: skip
        return out

    def specs(self, sid: str) -> tuple[VolumeMountSpec, ...]:
        """What the node mounts into sandbox `sid`: each volume mounted on the host (with its key) first."""
        with self.sessions() as s:
            q = select(SandboxVolume).where(SandboxVolume.sandbox_id == sid).order_by(SandboxVolume.position)
            rows = builtins.list(s.scalars(q))
        out = []
        for r in rows:
            with self._guard:
                self.host.mount(r.volume_id, self.key(r.volume_id))
            src = self.host.source(r.volume_id, r.subpath)
            out.append(replace(src, destination=r.mount_path, read_only=r.read_only))
        if rows:
            with self.sessions() as s:
                for vol in s.scalars(select(Volume).where(Volume.id.in_({r.volume_id for r in rows}))):
                    vol.last_used_at = utcnow()
                s.commit()
        return tuple(out)

    # -- restart safety --------------------------------------------------------------------------------------
    def reconcile(self) -> None:
        """At start-up: mount every ready volume (with its key) and finish interrupted creates."""
        with self.sessions() as s:
            rows = builtins.list(s.scalars(select(Volume)))
        for row in rows:
            try:
                if row.state == "creating":
                    self.host.create(row.id, row.size_mib << 20, self.key(row.id))
                    self._set(row.id, state="ready")
                elif row.state == "ready":
                    self.host.mount(row.id, self.key(row.id))
            except NodeError as exc:
                log.error("volume %s: reconcile failed: %s", row.id, exc)
                self._set(row.id, state="error", error_reason=f"mount failed: {exc}"[:200])

    def collect(self) -> None:
        """After the sandboxes' reconcile (which unmounts orphaned sandboxes, the last users of orphaned
        volumes): remove from the host every volume no row owns — image file, mount and loop device."""
        with self.sessions() as s:
            keep = set(s.scalars(select(Volume.id)))
        for vid in sorted(self.host.ids() - keep):
            try:
                self.host.delete(vid)
                log.warning("removed orphaned volume %s from the host", vid)
            except NodeError as exc:
                log.error("volume %s: removing the orphan failed: %s", vid, exc)

    # -- internals -------------------------------------------------------------------------------------------
    def _set(self, vid: str, **fields: object) -> Volume:
        with self.sessions() as s:
            row = s.get(Volume, vid)
            if row is None:
                raise ApiError(ErrorCode.VOLUME_NOT_FOUND, f"volume {vid!r} not found")
            for k, v in fields.items():
                setattr(row, k, v)
            row.updated_at = utcnow()
            s.commit()
            return row

    def _forget(self, vid: str) -> None:
        with self.sessions() as s:
            row = s.get(Volume, vid)
            if row is not None:
                s.delete(row)
                s.commit()
