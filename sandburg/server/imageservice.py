"""Named images of an organization: build, pull, import, resolve, list, delete, and layer garbage collection.

One namespace per organization holds images built here and pulled (`kind: image`), Daytona snapshots
(`template`) and, with the snapshots issue, saved sandbox states (`state`). Built-in images (debian-12, busybox)
are visible to every organization under their names. A row is written first (`building`), the work runs in a
thread, and the row ends `active` or `error` with a stable error code; the build log is a file per image that the
API streams while it grows.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .._codes import ErrorCode
from .._images import default_name, is_local, is_reference
from ..node import ociimage
from ..node.errors import ImageError, ImagePullError, NodeError, UnsafeImageError
from ..node.images import LAYER_REF, finish_rootfs
from ..node.node import Node
from . import compat, quotas
from .builder import Builder, BuildFailed, BuildRequest
from .buildplan import ImageConfig, Plan, base_key, resolve
from .db import Image, Sandbox, utcnow
from .errors import ApiError

log = logging.getLogger("sandburg.server")


KINDS = ("image", "template", "state")


class ImageService:
    def __init__(
        self, sessions: sessionmaker[Session], node: Node, builder: Builder, data_dir: str,
        build_isolation: str = "container",
    ) -> None:  # fmt: skip
        self.build_isolation = build_isolation  # the tier of build sandboxes unless a build names one
        self.sessions = sessions
        self.node = node
        self.builder = builder
        self.logs_dir = os.path.join(data_dir, "builds")
        self.work_dir = os.path.join(data_dir, "pulls")
        os.makedirs(self.logs_dir, mode=0o700, exist_ok=True)
        os.makedirs(builder.context_dir, mode=0o700, exist_ok=True)
        self._gate = threading.Semaphore(2)  # builds and pulls at once; more wait their turn
        self._threads: set[threading.Thread] = set()

    # -- names -----------------------------------------------------------------------------------------------
    def find(self, org_id: str, name: str) -> Image | None:
        with self.sessions() as s:
            row = s.scalars(select(Image).where(Image.organization_id == org_id, Image.name == name)).first()
            if row is None:
                row = s.get(Image, name)
                if row is not None and row.organization_id != org_id:
                    row = None
            return row

    def get(self, org_id: str, name: str) -> Image:
        row = self.find(org_id, name)
        if row is None:
            raise ApiError(ErrorCode.IMAGE_NOT_FOUND, f"image {name!r} not found")
        return row

    def resolve(self, org_id: str, name: str) -> tuple[str, ImageConfig]:
        """The node ref (built-in name or layer:<key>) and config of an image name a create or build names."""
        name = compat.IMAGE_ALIASES.get(name, name)
        row = self.find(org_id, name)
        if row is not None:
            if row.state != "active" or not row.layer:
                raise ApiError(
                    ErrorCode.IMAGE_NOT_READY, f"image {name!r} is {row.state}, not active"
                    + (f": {row.error_reason}" if row.error_reason else ""),
                )  # fmt: skip
            with self.sessions() as s:
                r = s.get(Image, row.id)
                if r is not None:
                    r.last_used_at = utcnow()
                    s.commit()
            return row.layer, ImageConfig.from_json(row.config)
        if self.node.images.builtin(name) and self.node.images.exists(name):
            return name, ImageConfig()
        raise ApiError(
            ErrorCode.IMAGE_NOT_FOUND,
            f"image {name!r} not found; built-in images: {', '.join(self.node.images.names())}",
        )

    def parent_key(self, ref: str) -> tuple[str, str]:
        """(cache key, subvolume path) of a node ref, as the parent of build steps."""
        if ref.startswith(LAYER_REF):
            return ref[len(LAYER_REF) :], self.node.images.path(ref)
        return base_key(ref, self.node.images._recipe(ref).key), self.node.images.path(ref)

    def list_images(self, org_id: str, kind: str | None = None) -> list[Image]:
        with self.sessions() as s:
            q = select(Image).where(Image.organization_id == org_id)
            if kind:
                q = q.where(Image.kind == kind)
            return list(s.scalars(q.order_by(Image.created_at, Image.id)))

    def builtins(self) -> list[str]:
        return [n for n in self.node.images.names() if self.node.images.exists(n)]

    # -- build -----------------------------------------------------------------------------------------------
    def build(
        self, org_id: str, name: str, plan: Plan, *, kind: str = "image", isolation: str | None = None,
        allow: tuple[str, ...] = (), source: dict[str, Any] | None = None,
    ) -> Image:  # fmt: skip
        """Start building `plan` as `name` (a rebuild takes over the row: it ends `active` with the new layers,
        or `error`); returns the row. Everything cached: the row is active on return."""
        isolation = isolation or self.build_isolation
        if self.find(org_id, plan.base) is None and is_reference(plan.base):
            self.pull_base(org_id, plan.base)  # `FROM registry/repo:tag`: pulled once, then a cached base
            plan = Plan(default_name(plan.base), plan.steps)
        parent_ref, base_cfg = self.resolve(org_id, plan.base)
        parent, _path = self.parent_key(parent_ref)
        resolved = resolve(plan, parent, base_cfg)
        for step in plan.steps:
            if step.kind == "files":
                if not os.path.exists(self.builder.context_path(step.args[1])):
                    raise ApiError(
                        ErrorCode.VALIDATION_ERROR,
                        f"{step.describe()}: build context {step.args[1]} was not uploaded (POST /api/images/context)",
                    )
        final_ref = f"{LAYER_REF}{resolved.final_layer}" if resolved.final_layer else parent_ref
        chain = [k for k in resolved.keys if k]
        if parent_ref.startswith(LAYER_REF):
            chain.insert(0, parent)
        src = {**(source or {}), "plan": plan.to_json(), "isolation": isolation, "allow": list(allow)}
        row = self._claim(org_id, name, kind, src)
        with self.sessions() as s:
            r = s.get(Image, row.id)
            if r is not None:
                r.layers = chain  # kept from the start: a failed build keeps its finished steps cached
                s.commit()
        log_path = os.path.join(self.logs_dir, row.id + ".log")
        with open(log_path, "w", encoding="utf-8") as fh:
            fh.write(f"build of {name!r} from {plan.base} ({len(plan.steps)} steps)\n")
        req = BuildRequest(
            image_id=row.id, organization_id=org_id, plan=plan, resolved=resolved, parent_ref=parent_ref,
            isolation=isolation, allow=allow, log_path=log_path,
        )  # fmt: skip
        layers = self.node.images.layers

        def work() -> None:
            self.builder.run(req)
            if resolved.final_layer:
                layers.require(resolved.final_layer)
            self._finish(row.id, final_ref, chain, resolved.final)

        if all(not k or layers.exists(k) for k in resolved.keys):
            self._run(row.id, log_path, work)  # all cached: answer with the active image
            return self.get(org_id, row.id)
        self._spawn(row.id, log_path, work)
        return self.get(org_id, row.id)

    # -- pull / import ---------------------------------------------------------------------------------------
    def pull_base(self, org_id: str, reference: str) -> Image:
        """Pull `reference` as the image `default_name(reference)` and wait for it (a build's base)."""
        name = default_name(reference)
        row = self.find(org_id, name)
        if row is None or row.state == "error":
            row = self.pull(org_id, name, reference, tls_verify=not is_local(reference))
        while row.state == "building":
            time.sleep(0.2)
            row = self.get(org_id, row.id)
        if row.state != "active":
            code = ErrorCode((row.source or {}).get("errorCode") or ErrorCode.IMAGE_PULL_FAILED.value)
            raise ApiError(code, f"pulling {reference}: {row.error_reason}")
        return row

    def template_of(
        self, org_id: str, name: str, image: str, entrypoint: list[str], resources: dict[str, Any]
    ) -> Image:
        """A Daytona snapshot of an existing image (same layer, no copy), or of a registry reference (pulled)."""
        src = {"imageName": image, "resources": resources}
        alias = compat.IMAGE_ALIASES.get(image, image)
        if self.find(org_id, alias) is None and not self.node.images.builtin(alias):
            if not is_reference(image):
                raise ApiError(
                    ErrorCode.IMAGE_NOT_FOUND,
                    f"image {image!r} not found: name an image of this server ({', '.join(self.builtins())}, or "
                    "one built or pulled here) or a registry reference (host/repository:tag)",
                )
            return self._start_unpack(
                org_id, name, "template", {**src, "pull": image}, f"pull of {image}",
                lambda layout: ociimage.pull(image, layout, tls_verify=not is_local(image)),
            )  # fmt: skip
        ref, cfg = self.resolve(org_id, alias)
        if entrypoint:
            cfg = replace(cfg, entrypoint=tuple(entrypoint))
        row = self._claim(org_id, name, "template", src)
        with open(os.path.join(self.logs_dir, row.id + ".log"), "w", encoding="utf-8") as fh:
            fh.write(f"template of {image}\n")
        chain = [ref[len(LAYER_REF) :]] if ref.startswith(LAYER_REF) else []
        self._finish(row.id, ref, chain, cfg)
        return self.get(org_id, row.id)

    def pull(self, org_id: str, name: str, reference: str, *, tls_verify: bool = True) -> Image:
        return self._start_unpack(
            org_id, name, "image", {"pull": reference}, f"pull of {reference}",
            lambda layout: ociimage.pull(reference, layout, tls_verify=tls_verify),
        )  # fmt: skip

    def import_archive(self, org_id: str, name: str, archive: str) -> Image:
        """Import an OCI-layout or docker-archive tarball (already on disk; removed afterwards)."""

        def fetch(layout: str) -> str:
            try:
                return ociimage.import_archive(archive, layout)
            finally:
                os.unlink(archive)

        source = {"import": os.path.basename(archive)}
        return self._start_unpack(org_id, name, "image", source, "import of an uploaded archive", fetch)

    def _start_unpack(
        self,
        org_id: str,
        name: str,
        kind: str,
        source: dict[str, Any],
        header: str,
        fetch: Callable[[str], str],
    ) -> Image:
        """Claim `name`, then fetch (into an OCI layout) and unpack in the background; returns the row."""
        row = self._claim(org_id, name, kind, source)
        log_path = os.path.join(self.logs_dir, row.id + ".log")
        with open(log_path, "w", encoding="utf-8") as fh:
            fh.write(header + "\n")
        self._spawn(row.id, log_path, lambda: self._unpack(row.id, log_path, fetch))
        return self.get(org_id, row.id)

    def _unpack(self, image_id: str, log_path: str, fetch: Callable[[str], str]) -> None:
        os.makedirs(self.work_dir, mode=0o700, exist_ok=True)
        work = tempfile.mkdtemp(dir=self.work_dir)
        layers = self.node.images.layers
        tmp = layers.begin(uuid.uuid4().hex, None)
        try:
            layout = os.path.join(work, "layout")
            tag = fetch(layout)
            cfg = ociimage.unpack(layout, tag, tmp)
            finish_rootfs(tmp)
            key = hashlib.sha256(f"oci {cfg.digest}".encode()).hexdigest()[:32]
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(f"unpacked {cfg.digest}\n")
            if layers.exists(key):
                layers.discard(tmp)
            else:
                layers.commit(tmp, key)
            config = ImageConfig(
                env=cfg.env, workdir=cfg.workdir or "/", user=cfg.user or "root",
                entrypoint=tuple(cfg.entrypoint), cmd=tuple(cfg.cmd),
            )  # fmt: skip
            self._finish(image_id, LAYER_REF + key, [key], config)
        finally:
            if os.path.exists(tmp):
                layers.discard(tmp)
            shutil.rmtree(work, ignore_errors=True)

    # -- delete / gc -----------------------------------------------------------------------------------------
    def delete(self, org_id: str, name: str) -> Image:
        row = self.get(org_id, name)
        if row.state == "building":
            raise ApiError(
                ErrorCode.IMAGE_IN_USE, f"image {name!r} is being built; delete it when it is done"
            )
        with self.sessions() as s:
            r = s.get(Image, row.id)
            if r is not None:
                s.delete(r)
                s.commit()
        try:
            os.unlink(os.path.join(self.logs_dir, row.id + ".log"))
        except FileNotFoundError:
            pass
        self.gc()
        return row

    def gc(self) -> list[str]:
        """Delete every layer no image references (sandbox roots are independent snapshots: unaffected)."""
        with self.sessions() as s:
            rows = list(s.scalars(select(Image)))
            # the checkpoint images of paused gvisor sandboxes (pause.py), archived roots (archive.py)
            keep: set[str] = {
                str(e[k])
                for e in s.scalars(select(Sandbox.extra))
                if e
                for k in ("pausedImage", "archivedLayer")
                if e.get(k)
            }
        for r in rows:
            keep.update(r.layers or [])
            if r.layer and r.layer.startswith(LAYER_REF):
                keep.add(r.layer[len(LAYER_REF) :])
        gone = self.node.images.layers.gc(keep)
        if gone:
            log.info("removed %d unused layer(s)", len(gone))
        return gone

    def recover(self) -> None:
        """After a restart: builds that were running are failed (their sandboxes are deleted by the caller)."""
        with self.sessions() as s:
            for r in s.scalars(select(Image).where(Image.state.in_(("building", "pending")))):
                r.state = "error"
                r.error_reason = "interrupted by a server restart; build again"
                r.source = {**(r.source or {}), "errorCode": ErrorCode.IMAGE_BUILD_FAILED.value}
            s.commit()
        self.gc()

    def log_path(self, row: Image) -> str:
        return os.path.join(self.logs_dir, row.id + ".log")

    def close(self, timeout: float = 5.0) -> None:
        for t in list(self._threads):
            t.join(timeout)

    # -- internals -------------------------------------------------------------------------------------------
    def _claim(self, org_id: str, name: str, kind: str, source: dict[str, Any]) -> Image:
        """Insert the row, or take over the existing one of that name (a rebuild), as `building`."""
        now = utcnow()
        with quotas.guard(), self.sessions() as s:
            row = s.scalars(select(Image).where(Image.organization_id == org_id, Image.name == name)).first()
            if row is not None:
                if row.state == "building":
                    raise ApiError(ErrorCode.IMAGE_IN_USE, f"image {name!r} is already being built")
                if row.kind != kind:
                    raise ApiError(
                        ErrorCode.IMAGE_NAME_CONFLICT,
                        f"the name {name!r} is taken by a {row.kind} of this organization",
                    )
                row.state, row.error_reason, row.source, row.updated_at = "building", None, source, now
            else:
                quotas.require(s, org_id, quotas.Amounts(snapshots=1))  # a rebuild takes no new slot
                row = Image(
                    id=str(uuid.uuid4()), organization_id=org_id, name=name, kind=kind, state="building", source=source,
                    layer=None, layers=[], config={}, created_at=now, updated_at=now,
                )  # fmt: skip
                s.add(row)
            try:
                s.commit()
            except IntegrityError as exc:
                raise ApiError(
                    ErrorCode.IMAGE_NAME_CONFLICT, f"an image named {name!r} already exists"
                ) from exc
            return row

    def _finish(self, image_id: str, ref: str, chain: list[str], cfg: ImageConfig) -> None:
        size = None
        if ref.startswith(LAYER_REF):
            size = self.node.images.layers.size_bytes(ref[len(LAYER_REF) :])
        with self.sessions() as s:
            r = s.get(Image, image_id)
            if r is None:
                return
            r.state, r.layer, r.layers, r.config = "active", ref, chain, cfg.to_json()
            r.size_bytes, r.error_reason, r.updated_at = size, None, utcnow()
            s.commit()

    def _fail(self, image_id: str, code: ErrorCode, message: str, log_path: str) -> None:
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(f"ERROR: {message}\n")
        with self.sessions() as s:
            r = s.get(Image, image_id)
            if r is None:
                return
            r.state, r.error_reason = "error", message[:2000]
            r.source = {**(r.source or {}), "errorCode": code.value}
            s.commit()
        self.gc()

    def _run(self, image_id: str, log_path: str, work: Callable[[], None]) -> None:
        try:
            with self._gate:
                work()
        except BuildFailed as exc:
            self._fail(image_id, exc.code, str(exc), log_path)
        except UnsafeImageError as exc:
            self._fail(image_id, ErrorCode.UNSAFE_IMAGE, str(exc), log_path)
        except ImagePullError as exc:
            self._fail(image_id, ErrorCode.IMAGE_PULL_FAILED, str(exc), log_path)
        except (ImageError, NodeError, ApiError, OSError) as exc:
            log.error("image %s failed: %s", image_id, exc)
            self._fail(image_id, ErrorCode.IMAGE_BUILD_FAILED, str(exc), log_path)
        except Exception as exc:  # a thread must record its end, whatever happened
            log.exception("image %s failed unexpectedly", image_id)
            self._fail(image_id, ErrorCode.INTERNAL_ERROR, f"internal error: {exc}", log_path)

    def _spawn(self, image_id: str, log_path: str, work: Callable[[], None]) -> None:
        def target() -> None:
            try:
                self._run(image_id, log_path, work)
            finally:
                self._threads.discard(threading.current_thread())

        t = threading.Thread(target=target, name=f"build-{image_id[:8]}", daemon=True)
        self._threads.add(t)
        t.start()
