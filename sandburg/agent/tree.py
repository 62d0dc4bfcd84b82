"""Operations on the file tree: mkdir, delete, move, chmod, chown (docs/agent-protocol.md).

`delete` and `move` act on a symlink itself, never on what it points to, and a recursive delete never enters a
symlinked directory: it walks with directory fds opened O_NOFOLLOW, so a link swapped in meanwhile is not followed
either. `chmod` and `chown` follow a final symlink, like chmod(1) and chown(1). Owner and group names are looked
up in the sandbox's own /etc/passwd and /etc/group (the agent sees nothing else).
"""

from __future__ import annotations

import _socket
import errno
import os
from grp import getgrnam
from pwd import getpwnam
from stat import S_IMODE, S_ISDIR, S_ISFIFO, S_ISLNK, S_ISREG

TYPE_CHECKING = False  # see agent.py
if TYPE_CHECKING or __package__:
    from . import protocol as P
    from .files import OpError, bad_request, mkdirs, opt_bool, opt_int, resolve
else:  # run as a script from this directory
    import protocol as P
    from files import OpError, bad_request, mkdirs, opt_bool, opt_int, resolve

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_COPY_CHUNK = 1 << 20


def _ok() -> dict[str, object]:
    return {"ok": True}


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def _mode(req: dict[str, object], default: int) -> int:
    mode = opt_int(req, "mode", default)
    if not 0 <= mode <= 0o7777:
        raise bad_request("'mode' must be a permission mode between 0 and 0o7777")
    return mode


def _lexists(path: str) -> bool:
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    return True


# ------------------------------------------------------------------------------------------------ mkdir


def op_mkdir(sock: _socket.socket, reader: P.FrameReader, req: dict[str, object]) -> dict[str, object]:
    """Create a directory with exactly `mode` (not masked by the umask); `parents` (default) like mkdir -p."""
    path = resolve(req.get("path"))
    mode = _mode(req, 0o755)
    parents = opt_bool(req, "parents", True)
    try:
        if not S_ISDIR(os.stat(path).st_mode):
            raise FileExistsError(errno.EEXIST, "File exists", path)
        if not parents:
            raise FileExistsError(errno.EEXIST, "Directory exists", path)
        return {"ok": True, "created": False}
    except FileNotFoundError:
        pass
    if parents:
        mkdirs(_parent(path))
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if parents and S_ISDIR(os.stat(path).st_mode):  # made meanwhile: mkdir -p is content
            return {"ok": True, "created": False}
        raise
    os.chmod(path, mode)
    return {"ok": True, "created": True}


# ----------------------------------------------------------------------------------------------- delete


def op_delete(sock: _socket.socket, reader: P.FrameReader, req: dict[str, object]) -> dict[str, object]:
    path = resolve(req.get("path"))
    recursive = opt_bool(req, "recursive", False)
    if path == "/":
        raise OpError("INVALID_FILE_PATH", "refusing to delete /")
    if not S_ISDIR(os.lstat(path).st_mode):  # a file, or a symlink (to a directory or not): unlink it
        os.unlink(path)
    elif recursive:
        rmtree(path)
    else:
        try:
            os.rmdir(path)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise OpError(
                    "DIRECTORY_NOT_EMPTY", f"directory not empty (delete it recursively): {path}"
                ) from None
            raise
    return _ok()


def _open_dir(name: str, dir_fd: int) -> tuple[int, list[tuple[str, bool]]]:
    """Open a directory entry without following a symlink; its entries as (name, is a directory)."""
    fd = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        with os.scandir(fd) as it:
            return fd, [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    except BaseException:
        os.close(fd)
        raise


def rmtree(path: str) -> None:
    """Remove a directory tree, entering only real directories (iterative: deep trees are fine)."""
    parent_fd = os.open(_parent(path), _DIR)
    stack: list[tuple[int, list[tuple[str, bool]], str]] = []
    try:
        fd, entries = _open_dir(path.rsplit("/", 1)[1], parent_fd)
        stack.append((fd, entries, path.rsplit("/", 1)[1]))
        while stack:
            fd, entries, name = stack[-1]
            if entries:
                child, is_dir = entries.pop()
                try:
                    if is_dir:
                        stack.append((*_open_dir(child, fd), child))
                    else:
                        os.unlink(child, dir_fd=fd)
                except FileNotFoundError:
                    pass  # removed meanwhile
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    os.unlink(child, dir_fd=fd)  # replaced by a symlink or a file meanwhile: remove that
                continue
            stack.pop()
            os.close(fd)
            os.rmdir(name, dir_fd=stack[-1][0] if stack else parent_fd)
    finally:
        for fd, _entries, _name in stack:
            os.close(fd)
        os.close(parent_fd)


# ------------------------------------------------------------------------------------------------- move


def op_move(sock: _socket.socket, reader: P.FrameReader, req: dict[str, object]) -> dict[str, object]:
    """rename(2); across file systems (EXDEV) a copy to a temporary name, renamed into place, then a delete."""
    src = resolve(req.get("source"))
    dst = resolve(req.get("destination"))
    overwrite = opt_bool(req, "overwrite", False)
    if src == "/" or dst == "/":
        raise OpError("INVALID_FILE_PATH", "cannot move / or move something onto /")
    os.lstat(src)  # FILE_NOT_FOUND names the source; a dangling symlink is moved as the link it is
    if not overwrite and _lexists(dst):
        raise OpError("FILE_EXISTS", f"the destination exists: {dst}")
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _move_across(src, dst)
    return _ok()


def _move_across(src: str, dst: str) -> None:
    os.stat(_parent(dst))  # a missing destination directory is FILE_NOT_FOUND before anything is copied
    tmp = f"{_parent(dst)}/.sandburg-move-{os.urandom(8).hex()}"
    try:
        copy_tree(src, tmp)
        os.rename(tmp, dst)
    except BaseException:
        try:
            if S_ISDIR(os.lstat(tmp).st_mode):
                rmtree(tmp)
            else:
                os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        if S_ISDIR(os.lstat(src).st_mode):
            rmtree(src)
        else:
            os.unlink(src)
    except OSError as exc:
        raise OpError(
            "FILE_ACCESS_DENIED", f"copied to {dst} but could not remove the source: {exc}"
        ) from None


def _copy_meta(path: str, st: os.stat_result) -> None:
    try:  # before chmod: a chown may clear the setuid/setgid bits
        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
    except PermissionError:
        pass
    if not S_ISLNK(st.st_mode):
        os.chmod(path, S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_file(src: str, dst: str) -> None:
    fin = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            while chunk := os.read(fin, _COPY_CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fout, view) :]
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def copy_tree(src: str, dst: str) -> None:
    """Copy a file, symlink or directory tree with modes, owners and times; `dst` must not exist."""
    dirs: list[tuple[str, os.stat_result]] = []
    todo = [(src, dst)]
    while todo:
        s, d = todo.pop()
        st = os.lstat(s)
        if S_ISLNK(st.st_mode):
            os.symlink(os.readlink(s), d)
        elif S_ISDIR(st.st_mode):
            os.mkdir(d, 0o700)  # its own mode last: a read-only directory must still take its entries
            dirs.append((d, st))
            with os.scandir(s) as it:
                todo.extend((f"{s}/{e.name}", f"{d}/{e.name}") for e in it)
            continue
        elif S_ISREG(st.st_mode):
            _copy_file(s, d)
        elif S_ISFIFO(st.st_mode):
            os.mkfifo(d, 0o600)
        else:
            raise OpError("BAD_REQUEST", f"cannot move a device or socket across file systems: {s}")
        _copy_meta(d, st)
    for d, st in reversed(dirs):  # children before parents: setting a child's times touches no parent
        _copy_meta(d, st)


# ---------------------------------------------------------------------------------------- chmod, chown


def op_chmod(sock: _socket.socket, reader: P.FrameReader, req: dict[str, object]) -> dict[str, object]:
    path = resolve(req.get("path"))
    if req.get("mode") is None:
        raise bad_request("'mode' is required")
    os.chmod(path, _mode(req, 0))
    return _ok()


def _id(value: object, what: str) -> int:
    """-1 (unchanged) for None, a number as is, else the name looked up in the sandbox's passwd/group."""
    if value is None or value == "":
        return -1
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if not isinstance(value, str):
        raise bad_request(f"'{what}' must be a name or a non-negative number")
    if value.isascii() and value.isdigit():
        return int(value)
    try:
        return getpwnam(value).pw_uid if what == "owner" else getgrnam(value).gr_gid
    except KeyError:
        where = "/etc/passwd" if what == "owner" else "/etc/group"
        raise bad_request(
            f"no {'user' if what == 'owner' else 'group'} {value!r} in the sandbox's {where}"
        ) from None


def op_chown(sock: _socket.socket, reader: P.FrameReader, req: dict[str, object]) -> dict[str, object]:
    path = resolve(req.get("path"))
    uid, gid = _id(req.get("owner"), "owner"), _id(req.get("group"), "group")
    os.chown(path, uid, gid)  # (-1, -1) changes nothing but still says whether the path exists
    return _ok()
