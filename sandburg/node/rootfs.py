"""Writing into a sandbox's root from the host without following the sandbox's symlinks.

A sandbox root is untrusted content: `/etc/hosts` inside it may be a symlink to a host file. Every component is
opened relative to the previous one with O_NOFOLLOW, so a write lands inside the root or fails.
"""

from __future__ import annotations

import errno
import os
import stat

from .errors import BundleError


def write_file(root: str, relpath: str, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `root/relpath`; a symlink in the way is replaced by a regular file."""
    parts = [p for p in relpath.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise BundleError("invalid path inside the sandbox root", path=relpath)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for name in parts[:-1]:
            try:
                nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(name, 0o755, dir_fd=fd)
                nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nfd
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            out = os.open(parts[-1], flags, mode, dir_fd=fd)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            os.unlink(parts[-1], dir_fd=fd)  # a symlink: remove the link itself, never its target
            out = os.open(parts[-1], flags | os.O_EXCL, mode, dir_fd=fd)
        with os.fdopen(out, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        raise BundleError(
            f"writing {relpath} into the sandbox root failed", path=root, detail=exc.strerror
        ) from exc
    finally:
        os.close(fd)


def ensure_entry(root: str, relpath: str, directory: bool) -> None:
    """Create `root/relpath` (an empty directory or file) unless something is already there, without following
    any symlink: in an image from a registry, `etc` may be a symlink to a host directory."""
    parts = [p for p in relpath.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise BundleError("invalid path inside the sandbox root", path=relpath)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for i, name in enumerate(parts):
            last = i == len(parts) - 1
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None and (last or not stat.S_ISDIR(st.st_mode)):
                return  # already there (whatever it is), or a non-directory in the way: leave it
            if st is None and (not last or directory):
                os.mkdir(name, 0o755, dir_fd=fd)
            elif st is None:
                os.close(
                    os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=fd)
                )
                return
            if not last:
                nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = nfd
    except OSError as exc:
        raise BundleError(f"creating {relpath} in the root failed", path=root, detail=exc.strerror) from exc
    finally:
        os.close(fd)


def open_in(root: str, relpath: str, flags: int = os.O_RDONLY) -> int:
    """Open `root/relpath` for the host without following any symlink below `root` (FileNotFoundError, ELOOP or
    ENOTDIR when something is in the way). The caller closes the fd."""
    parts = [p for p in relpath.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise FileNotFoundError(errno.ENOENT, "invalid path", relpath)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for name in parts[:-1]:
            nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nfd
        if not parts:
            return os.dup(fd)
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)


def listdir_in(root: str, relpath: str) -> list[str]:
    """Names in the directory `root/relpath`, reached without following symlinks ([] if it is not there)."""
    try:
        fd = open_in(root, relpath, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return []
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def read_in(root: str, relpath: str, limit: int = 1 << 20) -> bytes | None:
    """The first `limit` bytes of the regular file `root/relpath`, or None when it is not there."""
    try:
        fd = open_in(root, relpath)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit)
    finally:
        os.close(fd)
