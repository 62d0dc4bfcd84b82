"""Idmapped mounts: give a container sandbox its root with on-disk uid 0 shown as the sandbox's host uid range.

The `container` tier runs in a user namespace (root inside = an unprivileged host uid). Its root filesystem is a
btrfs snapshot owned by uid 0 on disk; an idmapped mount of it, made with a user namespace that has the sandbox's
mapping, lets root inside own its files while everything written stays uid 0 on disk (so snapshots and images are
tier-independent and nothing is chowned). Uses open_tree / mount_setattr / move_mount (Linux >= 5.12).
"""

from __future__ import annotations

import ctypes
import os
import struct
import subprocess
import time

from .errors import IdmapError

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_OPEN_TREE, _SYS_MOVE_MOUNT, _SYS_MOUNT_SETATTR = 428, 429, 442  # x86_64
_OPEN_TREE_CLONE, _OPEN_TREE_CLOEXEC = 1, 0o2000000
_AT_FDCWD, _AT_EMPTY_PATH = -100, 0x1000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOUNT_ATTR_IDMAP = 0x100000
RANGE = 65536


def _fail(step: str, path: str) -> IdmapError:
    err = ctypes.get_errno()
    return IdmapError(f"{step} failed", path=path, detail=os.strerror(err))


def userns_fd(host_base: int, size: int = RANGE) -> int:
    """An fd of a new user namespace mapping 0..size-1 to host_base.. (uid and gid)."""
    # A short-lived `unshare --user` child owns the namespace; the host (root) writes its maps and keeps an fd,
    # which keeps the namespace alive after the child is gone. No fork of this (threaded) process is needed.
    child = subprocess.Popen(["unshare", "--user", "sleep", "30"], stdin=subprocess.DEVNULL)
    try:
        mine = os.stat("/proc/self/ns/user").st_ino
        deadline = time.monotonic() + 5
        while True:
            try:
                if os.stat(f"/proc/{child.pid}/ns/user").st_ino != mine:
                    break
            except FileNotFoundError:
                pass
            if child.poll() is not None or time.monotonic() > deadline:
                raise IdmapError("unshare --user did not start", detail=f"exit {child.returncode}")
            time.sleep(0.0002)
        try:
            for f in ("uid_map", "gid_map"):
                with open(f"/proc/{child.pid}/{f}", "w") as fh:
                    fh.write(f"0 {host_base} {size}\n")
            return os.open(f"/proc/{child.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise IdmapError(
                "writing the id maps failed", path=f"/proc/{child.pid}", detail=exc.strerror
            ) from exc
    finally:
        child.kill()
        child.wait()


def idmapped_mount(src: str, dst: str, host_base: int) -> None:
    """Mount `src` at `dst` with uids/gids 0..65535 shown as host_base.. ."""
    ns = userns_fd(host_base)
    try:
        # open_tree(CLONE) detaches a copy of the mount so its idmapping can be set before it becomes visible.
        fd = _libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, src.encode(), _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC)
        if fd < 0:
            raise _fail("open_tree", src)
        try:
            attr = ctypes.create_string_buffer(struct.pack("=QQQQ", _MOUNT_ATTR_IDMAP, 0, 0, ns), 32)
            if _libc.syscall(_SYS_MOUNT_SETATTR, fd, b"", _AT_EMPTY_PATH, attr, 32) != 0:
                raise _fail("mount_setattr(MOUNT_ATTR_IDMAP)", src)
            if (
                _libc.syscall(_SYS_MOVE_MOUNT, fd, b"", _AT_FDCWD, dst.encode(), _MOVE_MOUNT_F_EMPTY_PATH)
                != 0
            ):
                raise _fail("move_mount", dst)
        finally:
            os.close(fd)
    finally:
        os.close(ns)
