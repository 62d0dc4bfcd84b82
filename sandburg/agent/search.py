"""Searching and editing file contents: find (grep -rn), search (file names by glob), replace.

Walks never enter a symlinked directory (no loops) and skip what they cannot read. Content is bytes: patterns are
encoded back to the bytes they stand for (UTF-8, surrogateescape), so non-UTF-8 files and names work. `re` is
imported only when a glob or a regular expression needs it: it costs start-up time the agent does not pay.
"""

from __future__ import annotations

import _socket
import os
from stat import S_IMODE, S_ISREG

TYPE_CHECKING = False  # see agent.py
if TYPE_CHECKING or __package__:
    from . import protocol as P
    from .files import UPLOADS, ItemStream, OpError, bad_request, opt_bool, opt_int, os_error_result, resolve
else:  # run as a script from this directory
    import protocol as P
    from files import UPLOADS, ItemStream, OpError, bad_request, opt_bool, opt_int, os_error_result, resolve

if TYPE_CHECKING:
    import re
    from collections.abc import Callable, Iterator

FIND_LIMIT = 10_000  # default cap of matches
SEARCH_LIMIT = 100_000  # default cap of file names
WALK_LIMIT = 1_000_000  # entries a walk looks at before it gives up and says truncated
BINARY_PROBE = 8192  # a NUL byte in a file's first bytes makes it binary (skipped), as grep does
CONTENT_MAX = 2048  # bytes of a matching line returned
LINE_PIECE = 1 << 20  # longer lines are searched in pieces of this size
REPLACE_MAX = 128 << 20  # larger files are refused by replace (it holds a file in memory)


def _pattern(req: dict[str, object], name: str = "pattern") -> str:
    value = req.get(name)
    if not isinstance(value, str) or not value:
        raise bad_request(f"'{name}' must be a non-empty string")
    return value


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class _Walk:
    """Depth-first walk under a directory, sorted by name, not entering symlinked directories.

    Yields (path, path relative to the top, name, is a directory). Unreadable directories are skipped; after
    WALK_LIMIT entries it stops and sets `truncated`.
    """

    def __init__(self, top: str) -> None:
        self.top = top.rstrip("/")
        self.truncated = False
        with os.scandir(top) as it:  # the top's errors (missing, not a directory) are the op's
            self._first = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in it)

    def __iter__(self) -> Iterator[tuple[str, str, str, bool]]:
        seen = 0
        stack = [(self.top, "", iter(self._first))]
        while stack:
            base, rel, it = stack[-1]
            entry = next(it, None)
            if entry is None:
                stack.pop()
                continue
            seen += 1
            if seen > WALK_LIMIT:
                self.truncated = True
                return
            name, is_dir = entry
            full, rel_name = f"{base}/{name}", f"{rel}{name}"
            yield full, rel_name, name, is_dir
            if is_dir:
                try:
                    with os.scandir(full) as sub:
                        children = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in sub)
                except OSError:
                    continue
                stack.append((full, rel_name + "/", iter(children)))


# ------------------------------------------------------------------------------------------------- find


def op_find(sock: _socket.socket, reader: P.FrameReader, req: dict[str, object]) -> dict[str, object]:
    """Lines containing `pattern` (a fixed string, as Daytona's; or a regular expression with `regex: true`)."""
    path = resolve(req.get("path"))
    needle = _bytes(_pattern(req))
    if opt_bool(req, "regex", False):
        import re

        try:
            match: Callable[[bytes], object] = re.compile(needle).search
        except re.error as exc:
            raise bad_request(f"invalid regular expression: {exc}") from None
    else:
        match = lambda line: needle in line  # noqa: E731
    out = ItemStream(sock, opt_int(req, "limit", FIND_LIMIT))
    walk: _Walk | None = None
    if S_ISREG(os.stat(path).st_mode):  # a file named by the request is searched, a symlink to one too
        _grep(path, match, out, 0)
    else:
        walk = _Walk(path)
        for full, _rel, _name, is_dir in walk:
            if not is_dir and not _grep(full, match, out, os.O_NOFOLLOW):
                break
    out.end()
    return {"ok": True, "truncated": out.truncated or (walk is not None and walk.truncated)}


def _grep(path: str, match: Callable[[bytes], object], out: ItemStream, flags: int) -> bool:
    """Report the matching lines of one regular text file; False once the result is full."""
    try:  # O_NONBLOCK: a FIFO put in place meanwhile must not hang the walk
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | flags)
    except OSError:
        return True
    with open(fd, "rb") as f:
        try:
            if not S_ISREG(os.fstat(fd).st_mode) or b"\0" in f.read(BINARY_PROBE):
                return True
            f.seek(0)
        except OSError:
            return True
        lineno, reported = 1, 0
        while True:
            try:
                piece = f.readline(LINE_PIECE)
            except OSError:  # EIO and the like: what was found stands
                break
            if not piece:
                break
            if reported != lineno and match(piece):
                reported = lineno
                line = piece[:-1] if piece.endswith(b"\n") else piece
                line = line[:-1] if line.endswith(b"\r") else line
                content = line[:CONTENT_MAX].decode("utf-8", "replace")
                if not out.add(
                    {"file": path, "line": lineno, "content": content}
                ):  # a send error is the op's
                    return False
            if piece.endswith(b"\n"):
                lineno += 1
    return True


# ----------------------------------------------------------------------------------------------- search


def op_search(sock: _socket.socket, reader: P.FrameReader, req: dict[str, object]) -> dict[str, object]:
    """Files (not directories) under `path` whose name matches the glob `pattern`, recursively.

    A pattern with a `/` matches the path relative to `path` (`src/**/*.py`); one without matches the name at any
    depth (`*.py`). `*` and `?` stay within a name, `**` spans directories, `[a-z]`, `[!a]` and `{a,b}` work.
    """
    top = resolve(req.get("path"))
    pattern = _pattern(req)
    rx = glob_regex(pattern)
    by_path = "/" in pattern
    out = ItemStream(sock, opt_int(req, "limit", SEARCH_LIMIT))
    walk = _Walk(top)
    for full, rel, name, is_dir in walk:
        if not is_dir and rx.fullmatch(rel if by_path else name) and not out.add(full):
            break
    out.end()
    return {"ok": True, "truncated": out.truncated or walk.truncated}


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob (`*`, `?`, `**`, `[...]`, `[!...]`, `{a,b}`, `\\x`) to a regular expression."""
    import re

    out: list[str] = []
    i, n, braces = 0, len(pattern), 0
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if i < n and pattern[i] == "*":  # "**"
                i += 1
                at_start = i == 2 or pattern[i - 3] == "/"
                if at_start and i < n and pattern[i] == "/":
                    out.append("(?:[^/]*/)*")  # "**/": any number of directories, none included
                    i += 1
                elif at_start and i == n:
                    out.append(".*")
                else:
                    out.append("[^/]*")
            else:
                out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1 if i < n and pattern[i] in "!^" else i
            j = pattern.find("]", j + 1 if j < n and pattern[j] == "]" else j)
            if j < 0:
                out.append(re.escape(c))
                continue
            body = pattern[i:j]
            negate = body[:1] in ("!", "^")
            body = "".join("\\" + ch if ch in "\\[]^&~|" else ch for ch in (body[1:] if negate else body))
            out.append(f"[^/{body}]" if negate else f"[{body}]")
            i = j + 1
        elif c == "{":
            out.append("(?:")
            braces += 1
        elif c == "," and braces:
            out.append("|")
        elif c == "}" and braces:
            out.append(")")
            braces -= 1
        elif c == "\\" and i < n:
            out.append(re.escape(pattern[i]))
            i += 1
        else:
            out.append(re.escape(c))
    if braces:
        raise bad_request(f"invalid glob pattern (unclosed '{{'): {pattern!r}")
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error as exc:
        raise bad_request(f"invalid glob pattern {pattern!r}: {exc}") from None


# ---------------------------------------------------------------------------------------------- replace


def op_replace(sock: _socket.socket, reader: P.FrameReader, req: dict[str, object]) -> dict[str, object]:
    """Replace every occurrence of a fixed string in each file; one result per file, in order."""
    files = req.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise bad_request("'files' must be a list of strings")
    old = _bytes(_pattern(req))
    new_value = req.get("new_value")
    if not isinstance(new_value, str):
        raise bad_request("'new_value' must be a string")
    new = _bytes(new_value)
    out = ItemStream(sock, len(files))
    for name in files:
        try:
            result: dict[str, object] = {
                "file": name,
                "success": True,
                "replacements": _replace(name, old, new),
            }
        except OpError as exc:
            result = {"file": name, "success": False, "error": exc.message}
        except OSError as exc:
            result = {"file": name, "success": False, "error": os_error_result(exc)["message"]}
        except ValueError as exc:  # a path that cannot be encoded
            result = {"file": name, "success": False, "error": str(exc)}
        out.add(result)
    out.end()
    return {"ok": True}


def _replace(name: str, old: bytes, new: bytes) -> int:
    # The file a symlink points to is edited (the link stays); the new content replaces the file atomically.
    path = os.path.realpath(resolve(name))
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not S_ISREG(st.st_mode):
            raise OpError("BAD_REQUEST", f"not a regular file: {name}")
        if st.st_size > REPLACE_MAX:
            raise OpError("BAD_REQUEST", f"larger than {REPLACE_MAX >> 20} MiB: {name}")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    count = data.count(old)
    if count:
        _rewrite(path, data.replace(old, new), st)
    return count


def _rewrite(path: str, data: bytes, st: os.stat_result) -> None:
    tmp = f"{path.rsplit('/', 1)[0] or '/'}/.sandburg-upload-{os.urandom(8).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    UPLOADS.add(tmp)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            try:  # before fchmod: a chown may clear the setuid/setgid bits
                os.fchown(fd, st.st_uid, st.st_gid)
            except PermissionError:
                pass
            os.fchmod(fd, S_IMODE(st.st_mode))
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    finally:
        UPLOADS.discard(tmp)
