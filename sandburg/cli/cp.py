"""``sandburg cp``: copy files and directory trees between this machine and a sandbox.

How: one request per file on the single-file routes (``files/upload``, ``files/download``), four at a time. Each
file streams (nothing is held whole in memory) and every path goes out as percent-encoded bytes, so names that are
not UTF-8 copy too, which the text fields of the multipart bulk routes cannot carry. A directory going up is a
local walk plus ``files/folder`` per directory; coming down, one ``files?depth=`` listing of the tree.

Like ``docker cp``: copying a directory to a path that exists as a directory puts it inside (``SRC/.`` copies its
contents instead); otherwise the destination is created. Permission bits are kept; owners and times are not.
Symlinks are skipped, with a warning, in both directions: following them could copy a tree twice or reach out of
it, and a link recreated from a sandbox's listing could point anywhere on this machine. Files download to a
temporary name renamed into place, so an interrupted copy never leaves a truncated file.

Raw HTTP through the SDK client's own connection (``Sandburg._http``): these routes have no public SDK methods yet.
"""

from __future__ import annotations

import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Final
from urllib.parse import quote

import httpx

from .. import _core as core
from .._client import Sandburg
from .._errors import FileNotFoundInSandboxError, SandburgError, UnexpectedResponseError

__all__ = ["CopyStats", "copy", "split_location"]

WORKERS: Final = 4
MAX_DEPTH: Final = 1000
_BOX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CHUNK: Final = 1 << 20


def split_location(text: str) -> tuple[str | None, str]:
    """``ID_OR_NAME:PATH`` → (sandbox, path); anything else is a local path → (None, text).

    A local path with a ``:`` before its first ``/`` needs a ``./`` prefix (``./a:b``), as with ``docker cp``.
    """
    box, sep, path = text.partition(":")
    if sep and _BOX.match(box):
        return box, path or "."
    return None, text


@dataclass
class CopyStats:
    files: int = 0
    directories: int = 0
    bytes: int = 0
    skipped: int = 0


def _warn(message: str) -> None:
    print(f"sandburg: warning: {message}", file=sys.stderr, flush=True)


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}" if base.rstrip("/") else f"/{name}"


def _remote_name(path: str) -> str:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return "" if name in (".", "..") else name


class _Remote:
    """The toolbox file routes of one sandbox, over raw HTTP; paths are sent as their bytes, percent-encoded."""

    def __init__(self, sb: Sandburg, sandbox_id: str) -> None:
        self.http: httpx.Client = sb._http
        self.prefix = f"toolbox/{quote(sandbox_id, safe='')}/files"

    def url(self, suffix: str, **params: str | int | None) -> str:
        query = "&".join(
            f"{k}={quote(v.encode('utf-8', 'surrogateescape') if isinstance(v, str) else str(v), safe='/')}"
            for k, v in params.items()
            if v is not None
        )
        return f"{self.prefix}{suffix}?{query}"

    def send(self, method: str, url: str, **kw: Any) -> httpx.Response:
        try:
            r = self.http.request(method, url, **kw)
        except core.TRANSPORT_ERRORS as exc:
            raise core.error_from_transport(exc) from exc
        core.raise_for_status(r.status_code, r.content)
        return r

    @contextmanager
    def stream(self, url: str) -> Any:
        try:
            with self.http.stream("GET", url) as r:
                if not r.is_success:
                    r.read()
                    core.raise_for_status(r.status_code, r.content)
                yield r
        except core.TRANSPORT_ERRORS as exc:
            raise core.error_from_transport(exc) from exc

    def info(self, path: str) -> dict[str, Any] | None:
        try:
            return self._json(self.send("GET", self.url("/info", path=path)), dict)  # type: ignore[no-any-return]
        except FileNotFoundInSandboxError:
            return None

    def tree(self, path: str) -> list[dict[str, Any]]:
        r = self.send("GET", self.url("", path=path, depth=MAX_DEPTH))
        if r.headers.get("x-sandburg-truncated") == "true":
            raise SandburgError(
                f"{path}: too many entries to copy in one go; copy its subdirectories one by one"
            )
        entries = self._json(r, list)
        if not all(isinstance(e, dict) for e in entries):
            raise UnexpectedResponseError("malformed listing", status_code=r.status_code, body=r.text)
        return entries  # type: ignore[no-any-return]

    @staticmethod
    def _json(r: httpx.Response, kind: type) -> Any:
        body = core.decode_json(r.status_code, r.content)
        if not isinstance(body, kind):
            raise UnexpectedResponseError(
                f"expected a JSON {kind.__name__}", status_code=r.status_code, body=body
            )
        return body


def _run_all(jobs: Iterable[Callable[[], int]], stats: CopyStats) -> None:
    """Run the per-file jobs WORKERS at a time; the first failure cancels the rest and is raised."""
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = [pool.submit(job) for job in jobs]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for f in pending:
            f.cancel()
        for f in done:
            if (exc := f.exception()) is not None:
                raise exc
        for f in done:
            stats.files += 1
            stats.bytes += f.result()


# ------------------------------------------------------------------------------------------------------- up


def _raise(exc: OSError) -> None:
    raise exc


def _upload_file(remote: _Remote, local: str, target: str, mode: int) -> int:
    with open(local, "rb") as f:
        r = remote.send("POST", remote.url("/upload", path=target), files={"file": ("file", f)})
    if mode != 0o644:  # the upload made it 0644
        remote.send("POST", remote.url("/permissions", path=target, mode=f"{mode:o}"))
    size = r.json().get("size") if r.headers.get("content-type", "").startswith("application/json") else None
    return size if isinstance(size, int) else os.path.getsize(local)


def upload(sb: Sandburg, src: str, box: str, dst: str) -> CopyStats:
    """Copy the local file or directory `src` to `dst` in sandbox `box`."""
    remote = _Remote(sb, sb.get(box).id)
    stats = CopyStats()
    st = os.stat(src)  # a symlink named on the command line is followed, as cp does
    there = remote.info(dst)
    name = os.path.basename(os.path.abspath(src))
    if not stat.S_ISDIR(st.st_mode):
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{src}: not a regular file or a directory")
        target = _join(dst, name) if dst.endswith("/") or (there and there.get("isDir")) else dst
        _run_all([lambda: _upload_file(remote, src, target, stat.S_IMODE(st.st_mode))], stats)
        return stats
    if there is not None and not there.get("isDir"):
        raise ValueError(f"cannot copy the directory {src} onto the file {box}:{dst}")
    top = dst if there is None or src.endswith("/.") else _join(dst, name)
    jobs: list[Callable[[], int]] = []
    for d, dirs, files in os.walk(src, onerror=_raise):  # an unreadable directory is an error, not a gap
        rel = os.path.relpath(d, src)
        here = top if rel == "." else _join(top, rel)
        remote.send("POST", remote.url("/folder", path=here, mode=f"{stat.S_IMODE(os.stat(d).st_mode):o}"))
        stats.directories += 1
        for n in sorted(dirs):
            if os.path.islink(os.path.join(d, n)):
                _warn(f"skipped the symlink {os.path.join(d, n)}")
                stats.skipped += 1
        for n in sorted(files):
            p = os.path.join(d, n)
            lst = os.lstat(p)
            if not stat.S_ISREG(lst.st_mode):
                _warn(f"skipped {p}: {'a symlink' if stat.S_ISLNK(lst.st_mode) else 'not a regular file'}")
                stats.skipped += 1
                continue
            jobs.append(partial(_upload_file, remote, p, _join(here, n), stat.S_IMODE(lst.st_mode)))
    _run_all(jobs, stats)
    return stats


# ----------------------------------------------------------------------------------------------------- down


def _download_file(remote: _Remote, path: str, target: str, mode: int) -> int:
    directory, name = os.path.split(target)
    fd, tmp = tempfile.mkstemp(dir=directory or ".", prefix=f".{name}.", suffix=".part")
    try:
        size = 0
        with os.fdopen(fd, "wb") as out, remote.stream(remote.url("/download", path=path)) as r:
            for chunk in r.iter_bytes(_CHUNK):
                out.write(chunk)
                size += len(chunk)
        os.chmod(tmp, mode & 0o777)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return size


def _mode(entry: dict[str, Any]) -> int:
    try:
        return int(str(entry.get("permissions")), 8)
    except ValueError:
        return 0o644


def download(sb: Sandburg, box: str, src: str, dst: str) -> CopyStats:
    """Copy the file or directory `src` of sandbox `box` to the local path `dst`."""
    remote = _Remote(sb, sb.get(box).id)
    stats = CopyStats()
    info = remote.info(src)
    if info is None:
        raise FileNotFoundInSandboxError(404, "FILE_NOT_FOUND", f"{box}:{src}: no such file or directory")
    name = _remote_name(str(info.get("path") or src))
    if not info.get("isDir"):
        target = os.path.join(dst, name) if os.path.isdir(dst) and name else dst
        _run_all([lambda: _download_file(remote, str(info["path"]), target, _mode(info))], stats)
        return stats
    if os.path.exists(dst) and not os.path.isdir(dst):
        raise ValueError(f"cannot copy the directory {box}:{src} onto the file {dst}")
    top = os.path.join(dst, name) if os.path.isdir(dst) and name and not src.endswith("/.") else dst
    root = str(info["path"]).rstrip("/") + "/"
    os.makedirs(top, exist_ok=True)
    stats.directories += 1
    dirs: list[tuple[str, int]] = [(top, _mode(info))]
    jobs: list[Callable[[], int]] = []
    for e in remote.tree(str(info["path"])):
        path = str(e.get("path"))
        rel = path[len(root) :] if path.startswith(root) else ""
        if not rel or any(part in ("", ".", "..") for part in rel.split("/")):
            raise UnexpectedResponseError(f"the listing holds a path outside {root}: {path!r}")
        local = os.path.join(top, *rel.split("/"))
        if e.get("linkTarget") is not None:
            _warn(f"skipped the symlink {box}:{path}")
            stats.skipped += 1
        elif e.get("isDir"):
            os.makedirs(local, 0o700, exist_ok=True)
            dirs.append((local, _mode(e)))
            stats.directories += 1
        elif str(e.get("mode", "-")).startswith("-"):
            jobs.append(partial(_download_file, remote, path, local, _mode(e)))
        else:
            _warn(f"skipped {box}:{path}: not a regular file")
            stats.skipped += 1
    _run_all(jobs, stats)
    for d, mode in reversed(dirs):  # last: a read-only directory must first take its files
        os.chmod(d, mode & 0o777)
    return stats


def copy(sb: Sandburg, src: str, dst: str) -> CopyStats:
    """``sandburg cp SRC DST``: exactly one of them is ``ID_OR_NAME:PATH``."""
    (src_box, src_path), (dst_box, dst_path) = split_location(src), split_location(dst)
    if dst_box is not None and src_box is None:
        return upload(sb, src_path, dst_box, dst_path)
    if src_box is not None and dst_box is None:
        return download(sb, src_box, src_path, dst_path)
    raise ValueError("exactly one of SRC and DST must be ID_OR_NAME:PATH")
