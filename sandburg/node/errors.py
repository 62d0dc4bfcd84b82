"""Errors of the node runtime: one class per privileged step, each carrying the path and the OS error.

NodeError
├── StoreError            btrfs store: loop file, mkfs, mount, quota
│   ├── SubvolumeError    snapshot / delete of a subvolume
│   └── QuotaError        qgroup limit of a sandbox root
├── ImageError            building or importing an image
│   ├── ImageNotFound     no such image
│   ├── ImagePullError    skopeo could not copy an OCI image (registry, reference, archive)
│   └── UnsafeImageError  a layer tried to write outside the rootfs (.., absolute, through a symlink)
├── RuntimeLayerError     building the read-only /.sandburg layer
├── BundleError           writing the OCI bundle (config.json, run dir)
├── IdmapError            user namespace + idmapped mount of a container root
├── MountError            mounting / unmounting
├── RuntimeError_         runc / runsc invocation (create, kill, delete, state)
├── CgroupError           reading or removing cgroups
└── AgentStartError       the toolbox agent did not answer after start
"""

from __future__ import annotations


class NodeError(Exception):
    """A node runtime step failed. `step` names it, `path` is what it acted on, `detail` the OS's words."""

    step = "node"

    def __init__(self, message: str, *, path: str | None = None, detail: str | None = None) -> None:
        self.path = path
        self.detail = detail
        parts = [f"{self.step}: {message}"]
        if path:
            parts.append(f"({path})")
        if detail:
            parts.append(f": {detail.strip()}")
        super().__init__(" ".join(parts))


class StoreError(NodeError):
    step = "store"


class SubvolumeError(StoreError):
    step = "subvolume"


class QuotaError(StoreError):
    step = "quota"


class ImageError(NodeError):
    step = "image"


class ImageNotFound(ImageError):
    step = "image"


class ImagePullError(ImageError):
    step = "image-pull"


class UnsafeImageError(ImageError):
    step = "image-unpack"


class RuntimeLayerError(NodeError):
    step = "runtime-layer"


class BundleError(NodeError):
    step = "bundle"


class IdmapError(NodeError):
    step = "idmap"


class MountError(NodeError):
    step = "mount"


class RuntimeError_(NodeError):  # noqa: N801 - avoid shadowing the builtin RuntimeError
    step = "oci-runtime"


class CgroupError(NodeError):
    step = "cgroup"


class NetworkError(NodeError):
    step = "network"


class AgentStartError(NodeError):
    step = "agent"
