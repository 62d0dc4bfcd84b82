"""The btrfs store: image subvolumes (read-only) and sandbox roots (writable snapshots with a qgroup limit).

A sparse loop file formatted btrfs is used when the data dir is not itself on btrfs. Snapshots and deletes go
through the btrfs ioctls directly (no `btrfs` process per call): creating a sandbox root with its size limit is a
BTRFS_IOC_SNAP_CREATE_V2 and one BTRFS_IOC_QGROUP_LIMIT (together under 2 ms). (A qgroup-inherit struct on the
snapshot ioctl is accepted by this kernel but sets no limit, hence the second ioctl.)
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from . import priv
from .errors import QuotaError, StoreError, SubvolumeError

# <linux/btrfs.h>
_VOL_ARGS_V2_SIZE = 4096
_IOC_SNAP_CREATE_V2 = 0x50009417  # _IOW(0x94, 23, struct btrfs_ioctl_vol_args_v2)
_IOC_SUBVOL_CREATE_V2 = 0x50009418  # _IOW(0x94, 24, ...)
_IOC_SNAP_DESTROY = 0x5000940F  # _IOW(0x94, 15, struct btrfs_ioctl_vol_args)
_IOC_SUBVOL_GETFLAGS = 0x80089419  # _IOR(0x94, 25, __u64)
_IOC_SUBVOL_SETFLAGS = 0x4008941A  # _IOW(0x94, 26, __u64)
_IOC_QGROUP_LIMIT = 0x8030942B  # _IOR(0x94, 43, struct btrfs_ioctl_qgroup_limit_args)
_IOC_QUOTA_CTL = 0xC0109428  # _IOWR(0x94, 40, struct btrfs_ioctl_quota_ctl_args)
_IOC_FS_INFO = 0x8400941F  # _IOR(0x94, 31, struct btrfs_ioctl_fs_info_args)
_QUOTA_CTL_ENABLE, _QUOTA_CTL_DISABLE, _QUOTA_CTL_ENABLE_SIMPLE = 1, 2, 4
_SUBVOL_RDONLY = 1 << 1
_QGROUP_LIMIT_MAX_RFER = 1 << 0
_NAME_MAX = 4039


def _vol_args_v2(fd: int, name: str, flags: int) -> bytearray:
    raw = name.encode()
    if not raw or len(raw) > _NAME_MAX or b"/" in raw:
        raise SubvolumeError("invalid subvolume name", path=name)
    buf = bytearray(_VOL_ARGS_V2_SIZE)
    struct.pack_into("=qQQ", buf, 0, fd, 0, flags)
    buf[56 : 56 + len(raw)] = raw
    return buf


class Store:
    """A btrfs filesystem holding `images/` and `sandboxes/` subvolumes."""

    def __init__(self, data_dir: str, size_bytes: int) -> None:
        self.data_dir = data_dir
        self.image_file = os.path.join(data_dir, "store.img")
        self.root = os.path.join(data_dir, "store")
        self.size_bytes = size_bytes

    # -- filesystem ------------------------------------------------------------------------------------------
    def ensure(self) -> None:
        """Mount the store (creating its loop file on first use) and enable quotas. Idempotent."""
        os.makedirs(self.root, exist_ok=True)
        if not priv.is_mountpoint(self.root):
            if _fs_type(self.data_dir) == "btrfs":
                raise StoreError(
                    "data dir on btrfs: not supported yet, use a non-btrfs data dir", path=self.data_dir
                )
            if not os.path.exists(self.image_file):
                # A sparse file: it takes disk space only as sandboxes write.
                with open(self.image_file, "wb") as fh:
                    fh.truncate(self.size_bytes)
                priv.run(["mkfs.btrfs", "-q", self.image_file], StoreError, path=self.image_file)
            # Loop-mount it; `-o loop` attaches a free loop device (creating one via loop-control if needed) and
            # detaches it again on umount.
            priv.run(["mount", "-o", "loop,noatime", self.image_file, self.root], StoreError, path=self.root)
        self._ensure_simple_quotas()
        for sub in ("images", "layers", "sandboxes", "run", "tmp"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)

    def quota_mode(self) -> str | None:
        """'squota', 'qgroup', or None when quotas are off (read from /sys/fs/btrfs/<fsid>/qgroups)."""
        buf = bytearray(1024)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.ioctl(fd, _IOC_FS_INFO, buf)
        finally:
            os.close(fd)
        fsid = buf[16:32].hex()
        uuid = f"{fsid[:8]}-{fsid[8:12]}-{fsid[12:16]}-{fsid[16:20]}-{fsid[20:]}"
        qdir = f"/sys/fs/btrfs/{uuid}/qgroups"
        if not os.path.isdir(qdir):
            return None
        try:
            with open(os.path.join(qdir, "mode")) as fh:
                return fh.read().strip()
        except FileNotFoundError:
            return "qgroup"  # kernels before simple quotas have no mode file

    def _quota_ctl(self, cmd: int) -> None:
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.ioctl(fd, _IOC_QUOTA_CTL, bytearray(struct.pack("=QQ", cmd, 0)))
        finally:
            os.close(fd)

    def _ensure_simple_quotas(self) -> None:
        # Quotas give every sandbox root its size limit. Simple quotas (squota, Linux >= 6.7) charge each extent to
        # the subvolume that wrote it, so deleting a sandbox costs no qgroup accounting. With full qgroups the
        # btrfs cleaner's accounting of deleted snapshots stalled new snapshots for 1.2-1.8 s each (measured:
        # docs/architecture.md); with squota they stay at 2-3 ms.
        mode = self.quota_mode()
        if mode == "squota":
            return
        try:
            if mode is not None:
                self._quota_ctl(_QUOTA_CTL_DISABLE)
            self._quota_ctl(_QUOTA_CTL_ENABLE_SIMPLE)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTTY):
                raise QuotaError(
                    "enabling simple quotas failed", path=self.root, detail=exc.strerror
                ) from exc
            # an older kernel: full qgroups still enforce the limit, at the cost described above
            self._quota_ctl(_QUOTA_CTL_ENABLE)

    def unmount(self) -> None:
        """Unmount the store (tests and `make clean`); the loop device is released with it."""
        if priv.is_mountpoint(self.root):
            priv.run(["umount", self.root], StoreError, path=self.root)

    # -- subvolumes ------------------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def create_subvolume(self, path: str) -> None:
        """An empty writable subvolume (images are built into one)."""
        parent, name = os.path.split(path)
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.ioctl(fd, _IOC_SUBVOL_CREATE_V2, _vol_args_v2(0, name, 0))
        except OSError as exc:
            raise SubvolumeError("create failed", path=path, detail=exc.strerror) from exc
        finally:
            os.close(fd)

    def snapshot(self, src: str, dst: str, *, readonly: bool = False, limit_bytes: int | None = None) -> None:
        """Snapshot `src` to `dst` (5 ms whatever the size), optionally read-only and with a size limit."""
        parent, name = os.path.split(dst)
        flags = _SUBVOL_RDONLY if readonly else 0
        sfd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
        try:
            dfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.ioctl(dfd, _IOC_SNAP_CREATE_V2, _vol_args_v2(sfd, name, flags))
            finally:
                os.close(dfd)
        except OSError as exc:
            raise SubvolumeError(f"snapshot of {src} failed", path=dst, detail=exc.strerror) from exc
        finally:
            os.close(sfd)
        if limit_bytes is not None:
            self.limit(dst, limit_bytes)

    def limit(self, path: str, limit_bytes: int) -> None:
        """Cap the bytes a subvolume references (its qgroup's max_rfer): the sandbox's disk limit."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            # qgroupid 0 = the qgroup of the subvolume `fd` is in
            fcntl.ioctl(
                fd, _IOC_QGROUP_LIMIT, struct.pack("=Q5Q", 0, _QGROUP_LIMIT_MAX_RFER, limit_bytes, 0, 0, 0)
            )
        except OSError as exc:
            raise QuotaError("setting the size limit failed", path=path, detail=exc.strerror) from exc
        finally:
            os.close(fd)

    def set_readonly(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            buf = bytearray(8)
            fcntl.ioctl(fd, _IOC_SUBVOL_GETFLAGS, buf)
            (flags,) = struct.unpack("=Q", buf)
            fcntl.ioctl(fd, _IOC_SUBVOL_SETFLAGS, struct.pack("=Q", flags | _SUBVOL_RDONLY))
        except OSError as exc:
            raise SubvolumeError("set read-only failed", path=path, detail=exc.strerror) from exc
        finally:
            os.close(fd)

    def set_writable(self, path: str) -> None:
        """Clear the read-only flag (before deleting a layer: deleting a read-only subvolume is refused)."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            buf = bytearray(8)
            fcntl.ioctl(fd, _IOC_SUBVOL_GETFLAGS, buf)
            (flags,) = struct.unpack("=Q", buf)
            fcntl.ioctl(fd, _IOC_SUBVOL_SETFLAGS, struct.pack("=Q", flags & ~_SUBVOL_RDONLY))
        except OSError as exc:
            raise SubvolumeError("clear read-only failed", path=path, detail=exc.strerror) from exc
        finally:
            os.close(fd)

    def delete_subvolume(self, path: str) -> None:
        """Delete a subvolume; a missing one is not an error (deletes are retried after crashes)."""
        parent, name = os.path.split(path)
        try:
            fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            return
        try:
            buf = bytearray(4096)
            raw = name.encode()
            buf[8 : 8 + len(raw)] = raw
            fcntl.ioctl(fd, _IOC_SNAP_DESTROY, buf)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise SubvolumeError("delete failed", path=path, detail=exc.strerror) from exc
        finally:
            os.close(fd)

    def is_subvolume(self, path: str) -> bool:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return False
        return st.st_ino == 256  # the root directory of every btrfs subvolume has inode 256

    def subvolumes(self, kind: str) -> list[str]:
        """Names of the subvolumes directly under `images/`, `sandboxes/` or `run/`."""
        base = self.path(kind)
        try:
            names = os.listdir(base)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if self.is_subvolume(os.path.join(base, n)))

    def referenced_bytes(self, path: str) -> int | None:
        """Bytes referenced by a subvolume according to its qgroup (None when quotas are off)."""
        out = priv.run(["btrfs", "qgroup", "show", "-rf", "--raw", path], QuotaError, path=path)
        for line in out.splitlines():
            fields = line.split()
            if fields and fields[0].startswith("0/"):
                return int(fields[1])
        return None


def _fs_type(path: str) -> str:
    best, fstype = "", ""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            pre, _, post = line.partition(" - ")
            mp = pre.split(" ")[4]
            if (real == mp or real.startswith(mp.rstrip("/") + "/")) and len(mp) > len(best):
                best, fstype = mp, post.split(" ")[0]
    return fstype
