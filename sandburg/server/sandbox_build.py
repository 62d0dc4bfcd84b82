"""Creating a sandbox from a Daytona `Image` (a Dockerfile): build first, then boot, as Daytona does.

A mixin of `SandboxService`. The create answers at once with the sandbox `pending_build`; a thread builds the
Dockerfile into a template image named after its content (`dockerfile-<hash>`: the same Dockerfile is built
once and then reused), then boots the sandbox from it (`creating` → `started`), or leaves it `build_failed` with
the build's error as `errorReason`. Daytona's SDK polls for exactly these states and streams the build log from
`GET /sandbox/{id}/build-logs` meanwhile. A delete during the build wins: the thread finds the row gone (or no
longer `pending_build`) under the sandbox's lock and boots nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from .._codes import ErrorCode
from .compat import FROM_ONLY
from .db import Image, Sandbox
from .dockerplan import plan_from_dockerfile
from .dockerplan import plan_name as _plan_name
from .errors import ApiError
from .schemas import CreateSandbox

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from ..node.netpolicy import Policy
    from .buildplan import Plan
    from .imageservice import ImageService

log = logging.getLogger("sandburg.server")


def build_plan_of(req: CreateSandbox) -> Plan | None:
    """The plan of a create's `buildInfo`, or None when it has none or is only `FROM <image>`."""
    if req.buildInfo is None:
        return None
    text = req.buildInfo.dockerfileContent
    if FROM_ONLY.match(text) and not req.buildInfo.contextHashes:
        return None
    return plan_from_dockerfile(text, req.buildInfo.contextHashes)


def plan_name(req: CreateSandbox) -> str:
    assert req.buildInfo is not None
    return _plan_name(req.buildInfo.dockerfileContent, req.buildInfo.contextHashes)


class BuildOps:
    images: ImageService | None
    sessions: sessionmaker[Session]

    def _lock(self, sid: str) -> threading.Lock:
        raise NotImplementedError

    def _set_state(self, sid: str, state: str, reason: str | None = None) -> Sandbox:
        raise NotImplementedError

    def _boot(self, row: Sandbox, ref: str, policy: Policy | None) -> Sandbox:
        raise NotImplementedError

    def build_then_boot(self, row: Sandbox, plan: Plan, policy: Policy | None) -> None:
        threading.Thread(
            target=self._build_then_boot, args=(row, plan, policy), name=f"build-{row.id[:8]}", daemon=True
        ).start()

    def build_image_of(self, row: Sandbox) -> Image | None:
        """The image a `pending_build` / `build_failed` sandbox is (was) built from."""
        if self.images is None:
            return None
        return self.images.find(row.organization_id, row.image)

    def _build_then_boot(self, row: Sandbox, plan: Plan, policy: Policy | None) -> None:
        assert self.images is not None
        org, sid = row.organization_id, row.id
        try:
            img = self.images.find(org, row.image)
            if img is None or img.state != "active":
                if img is None or img.state != "building":
                    img = self.images.build(org, row.image, plan, kind="template")
                img = self._wait_built(org, img.id)
            if img.state != "active":
                raise ApiError(ErrorCode.IMAGE_BUILD_FAILED, img.error_reason or "the image build failed")
            ref, cfg = self.images.resolve(org, row.image)
        except ApiError as exc:
            self._build_failed(sid, exc.message)
            return
        except Exception as exc:  # the thread must leave the sandbox in a final state whatever happened
            log.exception("build for sandbox %s failed", sid)
            self._build_failed(sid, f"internal error: {exc}")
            return
        with self._lock(sid):
            with self.sessions() as s:
                current = s.get(Sandbox, sid)
            if current is None or current.state != "pending_build":
                return  # deleted (or otherwise moved on) while it was building
            with self.sessions() as s:
                r = s.get(Sandbox, sid)
                if r is not None:  # the image's ENV, under what the caller set
                    r.env = {**cfg.env, **(r.env or {})}
                    s.commit()
            current = self._set_state(sid, "creating")
            try:
                self._boot(current, ref, policy)
            except ApiError as exc:
                log.error("boot after build of %s failed: %s", sid, exc.message)

    def _wait_built(self, org: str, image_id: str) -> Image:
        assert self.images is not None
        while True:
            img = self.images.get(org, image_id)
            if img.state != "building":
                return img
            time.sleep(0.2)

    def _build_failed(self, sid: str, reason: str) -> None:
        with self._lock(sid):
            with self.sessions() as s:
                current = s.get(Sandbox, sid)
            if current is not None and current.state == "pending_build":
                self._set_state(sid, "build_failed", reason[:200])
