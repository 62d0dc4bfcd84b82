"""Daytona's create options that sandburg stores and echoes before later issues act on them.

`POST /api/sandbox` takes Daytona's whole `CreateSandbox` body. What sandburg does not enforce yet (network
policy, lifecycle intervals, volumes, ...) is kept in the sandbox row's `extra` and answered back in the Sandbox
DTO, so that the SDKs see what they sent; what it cannot honour at all is refused with 501 NOT_IMPLEMENTED rather
than silently dropped (a build would otherwise give another image).
"""

from __future__ import annotations

import re
from typing import Any

from .._codes import ErrorCode
from .errors import ApiError
from .schemas import CreateSandbox

# CreateSandbox fields kept in `extra` (the same key on the wire and in the row), echoed in the Sandbox DTO
STORED = (
    "networkAllowList", "domainAllowList", "autoStopInterval", "autoPauseInterval", "autoArchiveInterval",
    "autoDeleteInterval", "ttlMinutes", "wakeOnUse", "queueTimeout", "target", "outboundProxyUrl", "otelEndpointOverride",
)  # fmt: skip

# Image names Daytona users write for the images sandburg has
IMAGE_ALIASES = {
    "debian:12": "debian-12",
    "debian:bookworm": "debian-12",
    "busybox:latest": "busybox",
}
FROM_ONLY = re.compile(r"\A\s*FROM\s+(\S+)\s*\Z", re.IGNORECASE)


def image_for(req: CreateSandbox, default: str) -> str:
    """The image a create asks for: `image`, else `snapshot`, else a `buildInfo` that is only `FROM <image>`
    (what Daytona's SDK sends for `CreateSandboxFromImageParams(image="name")`), else the default. Other
    Dockerfiles are built first (sandbox_build.py)."""
    if req.buildInfo is not None:
        m = FROM_ONLY.match(req.buildInfo.dockerfileContent)
        if m is not None:
            return IMAGE_ALIASES.get(m.group(1), m.group(1))
    name = req.image or req.snapshot or default
    return IMAGE_ALIASES.get(name, name)


def check_supported(req: CreateSandbox) -> None:
    """Options sandburg cannot honour yet: refused, never ignored."""
    if req.kvm:
        raise ApiError(ErrorCode.NOT_IMPLEMENTED, "kvm sandboxes are not possible on this host")
    if req.linkedSandbox:
        raise ApiError(
            ErrorCode.NOT_IMPLEMENTED,
            "linked sandboxes are not supported yet: they come with the snapshots issue",
        )


def stored_extra(req: CreateSandbox) -> dict[str, Any]:
    """What goes into the row's `extra`: the options above that were set, and the volumes (not mounted yet)."""
    extra: dict[str, Any] = {k: getattr(req, k) for k in STORED if getattr(req, k) is not None}
    if req.volumes:
        extra["volumes"] = [v.model_dump(exclude_none=True) for v in req.volumes]
    return extra
