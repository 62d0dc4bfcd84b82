"""The layer store: content-addressed, read-only root filesystems at `store/layers/<key>`.

A layer is a whole root filesystem, not a diff: it is a btrfs snapshot of its parent layer (or a built-in image)
with one build step applied, so a sandbox or a child layer starts from it with one 5 ms snapshot however many
steps lie below, and unchanged files share their extents with every ancestor (no copy, no overlay stack). The key
hashes the parent's key and the step's inputs (builder.py), so an unchanged step is found and never rebuilt.

A layer is made in a writable `.tmp-<key>-…` subvolume and becomes visible only by rename after it is set
read-only: a crash leaves a temporary (removed at start-up by `remove_partial`) or a complete layer, never a
half-made one under its key. A sandbox root made from a layer is an independent snapshot, so deleting a layer never
affects sandboxes: `gc(keep)` may delete every layer no image row references.
"""

from __future__ import annotations

import itertools
import os
import re

from .errors import ImageNotFound, SubvolumeError
from .store import Store

KEY = re.compile(r"^[0-9a-f]{16,64}$")
_seq = itertools.count()


class LayerStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _dir(self) -> str:
        d = self.store.path("layers")
        os.makedirs(d, exist_ok=True)
        return d

    def path(self, key: str) -> str:
        if not KEY.match(key):
            raise ImageNotFound(f"invalid layer key {key!r}")
        return os.path.join(self._dir(), key)

    def exists(self, key: str) -> bool:
        return self.store.is_subvolume(self.path(key))

    def require(self, key: str) -> str:
        p = self.path(key)
        if not self.store.is_subvolume(p):
            raise ImageNotFound(f"layer {key} is missing from the store", path=p)
        return p

    def begin(self, key: str, parent: str | None) -> str:
        """A writable subvolume to build layer `key` in: a snapshot of `parent` (a path) or empty."""
        tmp = os.path.join(self._dir(), f".tmp-{key}-{os.getpid()}-{next(_seq)}")
        if parent is None:
            self.store.create_subvolume(tmp)
        else:
            self.store.snapshot(parent, tmp)
        return tmp

    def commit(self, tmp: str, key: str) -> str:
        """Make `tmp` the read-only layer `key` (atomic rename). A layer that appeared meanwhile wins."""
        final = self.path(key)
        self.store.set_readonly(tmp)
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if self.store.is_subvolume(final):  # a concurrent build of the same step finished first
                self.store.delete_subvolume(tmp)
                return final
            self.store.delete_subvolume(tmp)
            raise SubvolumeError("committing the layer failed", path=final, detail=exc.strerror) from exc
        return final

    def snapshot_into(self, src: str, key: str) -> str:
        """Layer `key` from an existing root (a stopped build sandbox's): a read-only snapshot, then rename."""
        if self.exists(key):
            return self.path(key)
        tmp = os.path.join(self._dir(), f".tmp-{key}-{os.getpid()}-{next(_seq)}")
        self.store.snapshot(src, tmp, readonly=True)
        return self.commit(tmp, key)

    def discard(self, tmp: str) -> None:
        self.store.delete_subvolume(tmp)

    def keys(self) -> list[str]:
        return [n for n in self.store.subvolumes("layers") if KEY.match(n)]

    def remove(self, key: str) -> None:
        p = self.path(key)
        if self.store.is_subvolume(p):
            self.store.set_writable(
                p
            )  # a read-only subvolume cannot be deleted by unprivileged callers' ioctl
            self.store.delete_subvolume(p)

    def gc(self, keep: set[str]) -> list[str]:
        """Delete every layer whose key is not in `keep`; return the keys deleted."""
        gone = [k for k in self.keys() if k not in keep]
        for k in gone:
            self.remove(k)
        return gone

    def remove_partial(self) -> None:
        """Delete layers half-made by a crash."""
        d = self._dir()
        for n in os.listdir(d):
            if n.startswith(".tmp-"):
                p = os.path.join(d, n)
                if self.store.is_subvolume(p):
                    self.store.set_writable(p)
                self.store.delete_subvolume(p)

    def size_bytes(self, key: str) -> int:
        """Apparent size of the layer's files (what the image holds, shared extents counted in full)."""
        total = 0
        for root, _dirs, files in os.walk(self.path(key)):
            for f in files:
                try:
                    total += os.lstat(os.path.join(root, f)).st_size
                except OSError:
                    pass
        return total
