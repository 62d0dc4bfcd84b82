"""Built-in images: recipes, a shared build cache, and import into the btrfs store as read-only subvolumes.

An image lives at `store/images/<name>@<key>` where `key` hashes its recipe, so a changed recipe yields a new
subvolume and an unchanged one is never rebuilt. Debian is built with mmdebstrap into a tarball kept in the cache
dir (shared by every data dir on the host, so tests and the daemon build it once); busybox is assembled directly
from the host's busybox-static.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

from . import priv, rootfs
from .errors import ImageError, ImageNotFound
from .layers import LayerStore
from .store import Store

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEBIAN_PACKAGES = [
    # what agents reach for first; the image stays well under 400 MB
    "python3", "python3-pip", "python3-venv", "git", "curl", "wget", "ca-certificates", "sudo", "procps",
    "less", "vim-tiny", "jq", "unzip", "zip", "xz-utils", "openssh-client", "make", "file", "iproute2",
]  # fmt: skip
DEBIAN_MIRRORS = [
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
]


@dataclass(frozen=True)
class ImageConfig:
    """What an image says about how to run it (the subset of an OCI image config sandburg uses)."""

    env: dict[str, str] = field(default_factory=lambda: {"PATH": DEFAULT_PATH})
    workdir: str = "/workspace"
    user: str = "root"


@dataclass(frozen=True)
class Recipe:
    name: str
    text: str  # everything that determines the result; hashed into the key

    @property
    def key(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]


def _busybox_recipe() -> Recipe:
    with open("/bin/busybox", "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    return Recipe("busybox", f"busybox v1 {digest}")


def _debian_recipe() -> Recipe:
    return Recipe("debian-12", "mmdebstrap v1 bookworm minbase " + " ".join(DEBIAN_PACKAGES + DEBIAN_MIRRORS))


RECIPES = {"busybox": _busybox_recipe, "debian-12": _debian_recipe}
LAYER_REF = "layer:"  # `layer:<key>`: a built or pulled image's root in the layer store (layers.py)


class ImageStore:
    """Resolves image names to read-only subvolumes, building or importing them when missing."""

    def __init__(self, store: Store, cache_dir: str) -> None:
        self.store = store
        self.cache_dir = cache_dir
        self.layers = LayerStore(store)

    def names(self) -> list[str]:
        return sorted(RECIPES)

    def path(self, name: str) -> str:
        """The subvolume of the current recipe of `name` (or of the layer `layer:<key>`); ImageNotFound when it
        is not built."""
        if name.startswith(LAYER_REF):
            return self.layers.require(name[len(LAYER_REF) :])
        recipe = self._recipe(name)
        p = self.store.path("images", f"{name}@{recipe.key}")
        if not self.store.is_subvolume(p):
            raise ImageNotFound(f"image {name!r} is not built yet", path=p)
        return p

    def config(self, name: str) -> ImageConfig:
        self.path(name)
        return ImageConfig()

    def builtin(self, name: str) -> bool:
        return name in RECIPES

    def exists(self, name: str) -> bool:
        try:
            self.path(name)
        except ImageError:
            return False
        return True

    def ensure(self, name: str, log: bool = False) -> str:
        """Build/import `name` if needed and return its subvolume."""
        recipe = self._recipe(name)
        final = self.store.path("images", f"{name}@{recipe.key}")
        if self.store.is_subvolume(final):
            return final
        t0 = time.monotonic()
        tmp = self.store.path("images", f".tmp-{name}-{os.getpid()}-{int(t0 * 1000)}")
        self.store.create_subvolume(tmp)
        try:
            if name == "busybox":
                _assemble_busybox(tmp)
            else:
                tarball = self._debian_tarball(recipe, log)
                # Unpack with numeric ids and xattrs (file capabilities) exactly as mmdebstrap recorded them.
                priv.run(
                    [
                        "tar",
                        "-x",
                        "--numeric-owner",
                        "--xattrs",
                        "--xattrs-include=*",
                        "-C",
                        tmp,
                        "-f",
                        tarball,
                    ],
                    ImageError,
                    path=tmp,
                    timeout=600,
                )
            finish_rootfs(tmp)
            self.store.set_readonly(tmp)
            os.rename(tmp, final)  # atomic: an image is either complete or absent
        except BaseException:
            self.store.delete_subvolume(tmp)
            raise
        if log:
            print(f"image {name}: ready in {time.monotonic() - t0:.1f}s")
        return final

    def remove_partial(self) -> None:
        """Delete half-imported images left by a crash."""
        for n in os.listdir(self.store.path("images")):
            if n.startswith(".tmp-"):
                self.store.delete_subvolume(self.store.path("images", n))

    def _recipe(self, name: str) -> Recipe:
        try:
            return RECIPES[name]()
        except KeyError:
            raise ImageNotFound(
                f"unknown image {name!r}; built-in images: {', '.join(sorted(RECIPES))}"
            ) from None

    def _debian_tarball(self, recipe: Recipe, log: bool) -> str:
        os.makedirs(self.cache_dir, exist_ok=True)
        out = os.path.join(self.cache_dir, f"{recipe.name}@{recipe.key}.tar")
        if os.path.exists(out):
            return out
        if log:
            print(
                f"image {recipe.name}: building with mmdebstrap (once; cached in {self.cache_dir})",
                flush=True,
            )
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=".build-", suffix=".tar")
        os.close(fd)
        try:
            # mmdebstrap builds a minimal Debian from the archive, without Docker, as a reproducible tarball.
            priv.run(
                [
                    "mmdebstrap",
                    "--variant=minbase",
                    "--mode=root",
                    "--format=tar",
                    "--quiet",
                    "--include=" + ",".join(DEBIAN_PACKAGES),
                    '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin',
                    "bookworm",
                    tmp,
                    *DEBIAN_MIRRORS,
                ],  # fmt: skip
                ImageError,
                path=out,
                timeout=1800,
            )
            os.rename(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return out


def _assemble_busybox(root: str) -> None:
    for d in (
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "workspace",
        "var/tmp",
    ):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    shutil.copy2("/bin/busybox", os.path.join(root, "bin", "busybox"))
    applets = priv.run(["/bin/busybox", "--list-full"], ImageError).split()
    for applet in applets:
        dst = os.path.join(root, applet)
        if not os.path.lexists(dst):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.symlink("/bin/busybox", dst)
    with open(os.path.join(root, "etc", "passwd"), "w") as fh:
        fh.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    with open(os.path.join(root, "etc", "group"), "w") as fh:
        fh.write("root:x:0:\nnogroup:x:65534:\n")


def finish_rootfs(root: str) -> None:
    """Things every sandbox root needs whatever the image: the workspace and mount points. The root may come
    from a registry, so nothing here follows its symlinks (rootfs.ensure_entry)."""
    for d in ("workspace", "proc", "sys", "dev", "tmp", ".sandburg"):
        rootfs.ensure_entry(root, d, directory=True)
    for f in ("etc/hosts", "etc/hostname", "etc/resolv.conf"):
        rootfs.ensure_entry(root, f, directory=False)
