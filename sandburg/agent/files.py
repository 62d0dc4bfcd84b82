"""File operations of the agent (write_file, read_file, list, stat) and the protocol's path rules.

Also the helpers the other operations share: OpError, opt_*(), resolve(), and ItemStream, which sends a list
result as D frames (a result frame is at most 1 MiB, a listing or a search can be much more).
"""

from __future__ import annotations

import _socket
import errno
import os
from grp import getgrgid
from pwd import getpwuid
from stat import S_ISDIR, S_ISLNK, S_ISREG

TYPE_CHECKING = False  # see agent.py
if TYPE_CHECKING or __package__:
    from . import protocol as P
else:  # run as a script from this directory
    import protocol as P

_workdir = "/workspace"
UPLOADS: set[str] = set()  # temp files of uploads in progress, removed if the agent is stopped
ERRNO_CODES = {
    errno.ENOENT: "FILE_NOT_FOUND",
    errno.EACCES: "FILE_ACCESS_DENIED",
    errno.EPERM: "FILE_ACCESS_DENIED",
    errno.ENOTDIR: "NOT_A_DIRECTORY",
    errno.EISDIR: "IS_A_DIRECTORY",
    errno.EEXIST: "FILE_EXISTS",
    errno.ENOSPC: "DISK_QUOTA_EXCEEDED",
    errno.EDQUOT: "DISK_QUOTA_EXCEEDED",
    errno.EFBIG: "DISK_QUOTA_EXCEEDED",
    errno.EAGAIN: "PIDS_LIMIT_REACHED",  # fork/spawn refused: the sandbox is at its process limit
    errno.ENOTEMPTY: "DIRECTORY_NOT_EMPTY",
    errno.ELOOP: "INVALID_FILE_PATH",  # too many levels of symlinks
    errno.ENAMETOOLONG: "INVALID_FILE_PATH",
    errno.EROFS: "FILE_ACCESS_DENIED",  # e.g. the runtime layer at /.sandburg
    errno.EBUSY: "FILE_ACCESS_DENIED",  # a mount point cannot be removed or renamed
    errno.EINVAL: "BAD_REQUEST",  # e.g. moving a directory into itself
}
LIST_LIMIT = 100_000  # default cap of entries in a list result


def set_workdir(path: str) -> None:
    """Where relative paths start (SANDBURG_WORKDIR)."""
    global _workdir
    _workdir = resolve(path if path.startswith("/") else "/" + path)


class OpError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def bad_request(message: str) -> OpError:
    return OpError("BAD_REQUEST", message)


def _wrong_type(name: str, what: str) -> OpError:
    return bad_request(f"{name!r} must be {what}")


# Optional request arguments: absent or null means the default. A JSON bool is not a number here.
def opt_str(req: dict[str, object], name: str, default: str) -> str:
    value = req.get(name)
    if value is None:
        return default
    if isinstance(value, str):
        return value
    raise _wrong_type(name, "a string")


def opt_int(req: dict[str, object], name: str, default: int) -> int:
    value = req.get(name)
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _wrong_type(name, "an integer")


def opt_float(req: dict[str, object], name: str) -> float | None:
    value = req.get(name)
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    raise _wrong_type(name, "a number")


def opt_bool(req: dict[str, object], name: str, default: bool) -> bool:
    value = req.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    raise _wrong_type(name, "a boolean")


def resolve(path: object) -> str:
    """Absolute, normalized path; relative paths start at the workdir. Lexical, like the protocol says."""
    if not isinstance(path, str):
        raise bad_request("'path' must be a string")
    if "\0" in path:
        raise OpError("INVALID_FILE_PATH", "path contains a NUL byte")
    full = path if path.startswith("/") else _workdir + "/" + path
    parts: list[str] = []
    for part in full.split("/"):
        if part == "..":
            if not parts:
                raise OpError("INVALID_FILE_PATH", f"path climbs above /: {path!r}")
            parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/" + "/".join(parts)


def error_result(code: str, message: str) -> dict[str, object]:
    return {"ok": False, "code": code, "message": message}


def os_error_result(exc: OSError) -> dict[str, object]:
    code = ERRNO_CODES.get(exc.errno or 0, "INTERNAL_ERROR")
    text = exc.strerror or str(exc)
    return error_result(code, f"{text}: {exc.filename}" if exc.filename else text)


class ItemStream:
    """Sends a list result: D frames that each hold a JSON array of items, then an empty D (before the R).

    `add` returns False once `limit` items went out; the op then stops and its R says `truncated: true`.
    """

    BATCH = 256 << 10  # bytes of JSON per frame, well under the protocol's 1 MiB

    def __init__(self, sock: _socket.socket, limit: int) -> None:
        self.sock = sock
        self.limit = max(limit, 0)
        self.count = 0
        self.truncated = False
        self._batch: list[bytes] = []
        self._size = 0

    def add(self, item: object) -> bool:
        if self.count >= self.limit:
            self.truncated = True
            return False
        data = P.dumps(item)
        if self._size + len(data) > self.BATCH:
            self.flush()
        self._batch.append(data)
        self._size += len(data) + 1
        self.count += 1
        return True

    def flush(self) -> None:
        if self._batch:
            self.sock.sendall(P.frame(P.DATA, b"[" + b",".join(self._batch) + b"]"))
            self._batch = []
            self._size = 0

    def end(self) -> None:
        self.flush()
        self.sock.sendall(P.frame(P.DATA))


def mkdirs(path: str) -> None:
    # not os.makedirs: a file in the way must be ENOTDIR (NOT_A_DIRECTORY), where makedirs says EEXIST
    try:
        if not S_ISDIR(os.stat(path).st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
        return
    except FileNotFoundError:
        pass
    mkdirs(path.rsplit("/", 1)[0] or "/")
    try:
        os.mkdir(path)
    except FileExistsError:
        if not S_ISDIR(os.stat(path).st_mode):  # lost a race to something that is not a directory
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path) from None


def op_write_file(sock: _socket.socket, reader: P.FrameReader, req: dict[str, object]) -> dict[str, object]:
    error: OSError | OpError | None = None
    path = tmp = ""
    fd = -1
    size = 0
    try:
        try:
            path = resolve(req.get("path"))
            mode = opt_int(req, "mode", 0o644) & 0o7777
            parent = path.rsplit("/", 1)[0] or "/"
            if opt_bool(req, "mkdirs", True):
                mkdirs(parent)
            name = f"{parent}/.sandburg-upload-{os.urandom(8).hex()}"
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            tmp = name
            UPLOADS.add(tmp)
        except (OSError, OpError) as exc:
            error = exc
        # Whatever happened, consume the data up to its end frame: the connection stays in step for the next op.
        while True:
            f = reader.read()
            if f is None or f[0] != P.DATA:
                raise P.ProtocolError("expected D frames")
            data = f[1]
            if not data:
                break
            if error is None:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    size += len(data)
                except OSError as exc:  # ENOSPC, EDQUOT, EFBIG, EIO: drop the rest, answer after the end
                    error = exc
        if error is None:
            os.fchmod(fd, mode)
            os.close(fd)
            fd = -1
            os.rename(tmp, path)
            UPLOADS.discard(tmp)
            tmp = ""
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            UPLOADS.discard(tmp)
    if error is not None:
        raise error
    return {"ok": True, "size": size}


def op_read_file(sock: _socket.socket, reader: P.FrameReader, req: dict[str, object]) -> dict[str, object]:
    path = resolve(req.get("path"))
    # O_NONBLOCK: opening a FIFO without a writer must not hang the connection
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        if not S_ISREG(mode):
            os.set_blocking(fd, True)
        size = 0
        while chunk := os.read(fd, P.FILE_CHUNK):
            sock.sendall(P.frame(P.DATA, chunk))
            size += len(chunk)
        sock.sendall(P.frame(P.DATA))
    finally:
        os.close(fd)
    return {"ok": True, "size": size}


class _Names:
    """uid/gid -> name from the sandbox's /etc/passwd and /etc/group, cached for one request."""

    def __init__(self) -> None:
        self.users: dict[int, str] = {}
        self.groups: dict[int, str] = {}

    def user(self, uid: int) -> str:
        if uid not in self.users:
            try:
                self.users[uid] = getpwuid(uid).pw_name
            except KeyError:
                self.users[uid] = str(uid)
        return self.users[uid]

    def group(self, gid: int) -> str:
        if gid not in self.groups:
            try:
                self.groups[gid] = getgrgid(gid).gr_name
            except KeyError:
                self.groups[gid] = str(gid)
        return self.groups[gid]


def _file_info(path: str, st: os.stat_result, names: _Names) -> dict[str, object]:
    mode = st.st_mode
    target = None
    is_dir = S_ISDIR(mode)
    if S_ISLNK(mode):
        target = os.readlink(path)
        try:  # a link to a directory counts as one; size, mode and times stay the link's own
            is_dir = S_ISDIR(os.stat(path).st_mode)
        except OSError:
            pass
    return {"name": path.rsplit("/", 1)[1] or "/", "path": path, "is_dir": is_dir, "size": st.st_size,
            "mode": mode, "mtime": st.st_mtime, "owner": names.user(st.st_uid), "group": names.group(st.st_gid),
            "link_target": target}  # fmt: skip


def _names_in(path: str) -> list[str]:
    with os.scandir(path) as it:
        return sorted(e.name for e in it)


def op_list(sock: _socket.socket, reader: P.FrameReader, req: dict[str, object]) -> dict[str, object]:
    path = resolve(req.get("path", ""))
    depth = opt_int(req, "depth", 1)
    if depth < 1:
        raise bad_request("'depth' must be at least 1")
    out = ItemStream(sock, opt_int(req, "limit", LIST_LIMIT))
    names = _Names()
    # Depth first, sorted by name at each level: a directory's entry comes right before its own entries.
    stack = [(path.rstrip("/"), iter(_names_in(path)), 1)]  # the top's errors are the op's, before any frame
    while stack:
        base, it, level = stack[-1]
        name = next(it, None)
        if name is None:
            stack.pop()
            continue
        full = f"{base}/{name}"
        try:
            st = os.lstat(full)
            info = _file_info(full, st, names)
        except OSError:  # deleted while we listed
            continue
        if not out.add(info):
            break
        if level < depth and S_ISDIR(st.st_mode):  # lstat: a symlink to a directory is listed, never entered
            try:
                stack.append((full, iter(_names_in(full)), level + 1))
            except OSError:  # unreadable or gone: listed, not entered
                pass
    out.end()
    return {"ok": True, "truncated": out.truncated}


def op_stat(sock: _socket.socket, reader: P.FrameReader, req: dict[str, object]) -> dict[str, object]:
    path = resolve(req.get("path"))
    return {"ok": True, "info": _file_info(path, os.lstat(path), _Names())}
