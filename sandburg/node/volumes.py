"""Persistent volumes: an ext4 filesystem in a sparse file per volume, encrypted with fscrypt (docs/volumes.md).

    <data dir>/volumes/<id>.img    the filesystem (sparse: costs what is written; its size is the volume's limit)
    <data dir>/volumes/<id>/mnt    its loop mount on the host, from create to delete (again at start-up after a reboot)
    <data dir>/volumes/<id>/mnt/data   the encrypted top directory (fscrypt v2: AES-256-XTS / AES-256-CTS);
                                   what sandboxes get, bind-mounted (an idmapped one on the container tier)

The 64-byte fscrypt master key of a volume is derived by the server from its master key (server/volumes.py);
this module receives it, adds it to the filesystem's keyring (FS_IOC_ADD_ENCRYPTION_KEY) at mount, and removes it
(FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS) before unmount. Every privileged step raises its own error class.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from dataclasses import replace

from . import idmap, priv
from .errors import NodeError
from .spec import CONTAINER, SandboxSpec, VolumeMountSpec

KEY_BYTES = 64  # fscrypt v2 master key: AES-256-XTS needs 64 bytes of key material
DATA_DIR = "data"  # the encrypted top directory inside a volume's filesystem
# <linux/fscrypt.h>
_FS_IOC_SET_ENCRYPTION_POLICY = (
    0x800C6613  # _IOR('f', 19, struct fscrypt_policy_v1); v2 goes by its version byte
)
_FS_IOC_GET_ENCRYPTION_POLICY_EX = 0xC0096616  # _IOWR('f', 22, __u8[9])
_FS_IOC_ADD_ENCRYPTION_KEY = 0xC0506617  # _IOWR('f', 23, struct fscrypt_add_key_arg)
_FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS = 0xC0406619  # _IOWR('f', 25, struct fscrypt_remove_key_arg)
_FS_IOC_GET_ENCRYPTION_KEY_STATUS = 0xC080661A  # _IOWR('f', 26, struct fscrypt_get_key_status_arg)
_KEY_SPEC_TYPE_IDENTIFIER = 2
_MODE_AES_256_XTS, _MODE_AES_256_CTS = 1, 4
_POLICY_FLAGS_PAD_32 = 0x03
_KEY_STATUS_PRESENT = 2
_libc = ctypes.CDLL(None, use_errno=True)
_MS_BIND, _MS_REC, _MS_RDONLY, _MS_REMOUNT, _MS_NOSUID, _MS_NODEV = 4096, 16384, 1, 32, 2, 4


class VolumeError(NodeError):
    """A volume step failed (the tree of node errors is in errors.py; these are the volume steps):

    VolumeError
    ├── VolumeFormatError   truncate + mkfs.ext4 of the image file
    ├── VolumeMountError    loop mount / unmount of the filesystem, bind mount into a sandbox's bundle
    ├── VolumeKeyError      adding / removing the fscrypt key
    ├── VolumePolicyError   setting / reading the encryption policy of the top directory
    └── VolumePathError     a mount's subpath (symlinks and .. refused)
    """

    step = "volume"


class VolumeFormatError(VolumeError):
    step = "volume-format"


class VolumeMountError(VolumeError):
    step = "volume-mount"


class VolumeKeyError(VolumeError):
    step = "volume-key"


class VolumePolicyError(VolumeError):
    step = "volume-policy"


class VolumePathError(VolumeError):
    step = "volume-path"


class Volumes:
    """The volumes of one data dir."""

    def __init__(self, data_dir: str) -> None:
        self.root = os.path.join(data_dir, "volumes")

    def image_path(self, vid: str) -> str:
        return os.path.join(self.root, f"{vid}.img")

    def mount_path(self, vid: str) -> str:
        return os.path.join(self.root, vid, "mnt")

    def data_path(self, vid: str) -> str:
        return os.path.join(self.mount_path(vid), DATA_DIR)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def create(self, vid: str, size_bytes: int, key: bytes) -> None:
        """Make the volume's filesystem and its encrypted top directory, and leave it mounted. Idempotent."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        img = self.image_path(vid)
        if not os.path.exists(img):
            tmp = img + ".tmp"
            # A sparse file: the volume costs the host only what is written, and ext4 cannot grow past it, so the
            # filesystem itself enforces the size limit (ENOSPC inside the sandbox, the host's disk untouched).
            with open(tmp, "wb") as fh:
                fh.truncate(size_bytes)
            # mkfs: `-O encrypt` enables fscrypt on the filesystem; `-m 0` leaves no blocks reserved for root
            # (sandbox root is the only writer); lazy init keeps mkfs of a large file instant.
            priv.run(["mkfs.ext4", "-q", "-F", "-O", "encrypt", "-m", "0", "-E",
                      "lazy_itable_init=1,lazy_journal_init=1", "-L", vid[:16], tmp],
                     VolumeFormatError, path=tmp)  # fmt: skip
            os.rename(tmp, img)  # only a whole filesystem gets the final name (a crash leaves a .tmp)
        self.mount(vid, key)
        data = self.data_path(vid)
        if not os.path.isdir(data):
            os.mkdir(data, 0o755)
        if _policy_identifier(data) is None:
            _set_policy(data, add_key(self.mount_path(vid), key))

    def mount(self, vid: str, key: bytes) -> None:
        """Loop-mount the volume (if it is not) and add its key to the filesystem's keyring. Idempotent."""
        img, mnt = self.image_path(vid), self.mount_path(vid)
        if not os.path.exists(img):
            raise VolumeMountError("the volume's image file is missing", path=img)
        os.makedirs(mnt, mode=0o700, exist_ok=True)
        if not priv.is_mountpoint(mnt):
            # `-o loop` attaches a free loop device with autoclear: unmounting also detaches it, so no loop
            # device outlives its mount. nosuid/nodev: no set-uid file or device node of a sandbox's counts on the
            # host. Not noexec: a flag of the host's mount is locked for a container's user namespace, and
            # sandboxes may run programs kept on a volume.
            priv.run(["mount", "-t", "ext4", "-o", "loop,noatime,nosuid,nodev", img, mnt],
                     VolumeMountError, path=mnt)  # fmt: skip
        add_key(mnt, key)

    def unmount(self, vid: str) -> None:
        """Remove the key (the plaintext of cached files goes with it) and unmount; idempotent."""
        mnt = self.mount_path(vid)
        if not priv.is_mountpoint(mnt):
            return
        remove_key(mnt, self.data_path(vid))
        # Unmounting (not lazily: a busy volume must not be released while a sandbox still has it) also frees the
        # loop device (autoclear).
        priv.run(["umount", mnt], VolumeMountError, path=mnt)

    def delete(self, vid: str) -> None:
        """Unmount the volume and remove its image file: its data is gone. Idempotent."""
        self.unmount(vid)
        for p in (self.image_path(vid), self.image_path(vid) + ".tmp"):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        for d in (self.mount_path(vid), os.path.dirname(self.mount_path(vid))):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass

    def is_mounted(self, vid: str) -> bool:
        return priv.is_mountpoint(self.mount_path(vid))

    def ids(self) -> set[str]:
        """Volume ids with anything on the host: an image file, a directory or a mount."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return set()
        return {n.split(".", 1)[0] for n in names}

    def usage(self, vid: str) -> int:
        """Bytes the volume's image file takes on the host (sparse: what has been written)."""
        try:
            return os.stat(self.image_path(vid)).st_blocks * 512
        except FileNotFoundError:
            return 0

    def source(self, vid: str, subpath: str = "") -> VolumeMountSpec:
        """Where a mount of `vid` at `subpath` starts (the directory is created if missing, symlinks refused);
        the destination is the caller's to set."""
        data = self.data_path(vid)
        if not os.path.isdir(data):
            raise VolumePathError("the volume is not mounted", path=data)
        os.close(open_dir(data, subpath))
        return VolumeMountSpec(data, "", subpath=subpath)


def open_dir(root: str, subpath: str) -> int:
    """An O_PATH fd of `root`/`subpath`, made component by component (mkdir when missing) with O_NOFOLLOW: sandboxes
    write into the volume, so any component of `subpath` may be a symlink of theirs, swapped in at any time."""
    parts = [p for p in subpath.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise VolumePathError("a subpath must not contain . or ..", path=subpath)
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for part in parts:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            except OSError as exc:
                raise VolumePathError("making the subpath failed", path=subpath, detail=exc.strerror) from exc
            try:
                nfd = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                raise VolumePathError(
                    "subpath is not a directory", path=subpath, detail=exc.strerror
                ) from exc
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def attach(spec: SandboxSpec, bundle: str) -> SandboxSpec:
    """Bind-mount the spec's volumes at `<bundle>/vol<i>` (undone with the bundle's other mounts at stop) and
    return the spec naming those mounts as sources, for config.json."""
    out = []
    for i, v in enumerate(spec.volumes):
        target = os.path.join(bundle, f"vol{i}")
        bind(v.source, v.subpath, target, v.read_only, spec.uid_base if spec.isolation == CONTAINER else None)
        out.append(VolumeMountSpec(target, v.destination, v.read_only))  # config.json mounts the bind, whole
    return replace(spec, volumes=tuple(out))


def bind(root: str, subpath: str, target: str, read_only: bool, uid_base: int | None) -> None:
    """Mount `root`/`subpath` at `target` (a directory in the sandbox's bundle): idmapped to `uid_base` for the
    container tier (root inside owns what on disk is uid 0), a plain bind for gvisor (its gofer runs as host root)."""
    os.makedirs(target, mode=0o700, exist_ok=True)
    if priv.is_mountpoint(target):
        return
    # The mount is made from the fd of the O_NOFOLLOW walk, never from a path a sandbox could redirect meanwhile.
    fd = open_dir(root, subpath)
    try:
        via = f"/proc/self/fd/{fd}"
        if uid_base is not None:
            idmap.idmapped_mount(via, target, uid_base)
        elif _libc.mount(via.encode(), target.encode(), None, _MS_BIND, None) != 0:
            err = ctypes.get_errno()
            raise VolumeMountError("bind mount failed", path=target, detail=os.strerror(err))
    finally:
        os.close(fd)
    if read_only:
        # the host-side mount is read-only too, not only the sandbox's own (config.json `ro`)
        flags = _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV
        if _libc.mount(None, target.encode(), None, flags, None) != 0:
            err = ctypes.get_errno()
            raise VolumeMountError("read-only remount failed", path=target, detail=os.strerror(err))


# -- fscrypt ioctls -------------------------------------------------------------------------------------------
def _key_spec(identifier: bytes = b"") -> bytes:
    return struct.pack("=II32s", _KEY_SPEC_TYPE_IDENTIFIER, 0, identifier)


def _ioctl(path: str, req: int, buf: bytearray, error: type[VolumeError], what: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, req, buf)
    except OSError as exc:
        raise error(f"{what} failed", path=path, detail=exc.strerror) from exc
    finally:
        os.close(fd)


def add_key(mnt: str, key: bytes) -> bytes:
    """Add `key` to the filesystem's keyring (FS_IOC_ADD_ENCRYPTION_KEY); return its 16-byte identifier."""
    if len(key) != KEY_BYTES:
        raise VolumeKeyError(f"a volume key is {KEY_BYTES} bytes, got {len(key)}", path=mnt)
    # struct fscrypt_add_key_arg: key_spec (40), raw_size, key_id, 8 reserved u32, then the raw key
    buf = bytearray(_key_spec() + struct.pack("=II32x", KEY_BYTES, 0) + key)
    # The kernel derives per-file keys from this master key (HKDF-SHA512) and keeps it in the superblock's
    # keyring, which is what makes the encrypted directory readable for everyone who can reach the mount.
    _ioctl(mnt, _FS_IOC_ADD_ENCRYPTION_KEY, buf, VolumeKeyError, "FS_IOC_ADD_ENCRYPTION_KEY")
    return bytes(buf[8:24])


def remove_key(mnt: str, data: str) -> None:
    """Remove the volume's key for all users (FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS): cached plaintext is
    evicted and the directory's contents become ciphertext to anyone looking. A key not present is fine."""
    ident = _policy_identifier(data) if os.path.isdir(data) else None
    if ident is None:
        return
    buf = bytearray(_key_spec(ident) + bytes(24))
    try:
        _ioctl(mnt, _FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS, buf, VolumeKeyError,
               "FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS")  # fmt: skip
    except VolumeKeyError as exc:
        if exc.detail != os.strerror(errno.ENOKEY):
            raise


def key_present(mnt: str, data: str) -> bool:
    """True when the key of `data`'s policy is in the filesystem's keyring (FS_IOC_GET_ENCRYPTION_KEY_STATUS)."""
    ident = _policy_identifier(data)
    if ident is None:
        return False
    buf = bytearray(_key_spec(ident) + bytes(24) + bytes(64))
    _ioctl(mnt, _FS_IOC_GET_ENCRYPTION_KEY_STATUS, buf, VolumeKeyError, "FS_IOC_GET_ENCRYPTION_KEY_STATUS")
    return bool(struct.unpack_from("=I", buf, 64)[0] == _KEY_STATUS_PRESENT)


def _set_policy(path: str, identifier: bytes) -> None:
    # struct fscrypt_policy_v2: version 2, contents AES-256-XTS, names AES-256-CTS, flags (pad names to 32 bytes:
    # name lengths leak less), 4 reserved bytes, the master key identifier. Files created below inherit it.
    policy = struct.pack(
        "=BBBB4x16s", 2, _MODE_AES_256_XTS, _MODE_AES_256_CTS, _POLICY_FLAGS_PAD_32, identifier
    )
    _ioctl(
        path,
        _FS_IOC_SET_ENCRYPTION_POLICY,
        bytearray(policy),
        VolumePolicyError,
        "FS_IOC_SET_ENCRYPTION_POLICY",
    )


def _policy_identifier(path: str) -> bytes | None:
    """The master key identifier of `path`'s v2 policy, None when it has no policy."""
    # struct fscrypt_get_policy_ex_arg: policy_size (u64), then the policy
    buf = bytearray(struct.pack("=Q", 24) + bytes(24))
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, _FS_IOC_GET_ENCRYPTION_POLICY_EX, buf)
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            return None
        raise VolumePolicyError(
            "FS_IOC_GET_ENCRYPTION_POLICY_EX failed", path=path, detail=exc.strerror
        ) from exc
    finally:
        os.close(fd)
    if buf[8] != 2:
        raise VolumePolicyError("the directory has a v1 encryption policy", path=path)
    return bytes(buf[16:32])
