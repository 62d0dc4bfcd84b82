"""The I/O-free half of ``sandbox.fs``: the file system's requests and the decoding of their answers.

Paths are ``str``. A file name that is not UTF-8 is a ``str`` holding its bytes as surrogate escapes (Python's
``surrogateescape``, as ``os.fsdecode`` and the SDK's own answers give them): query strings carry the original
bytes percent-encoded (:func:`sandburg._core.encode_query`), JSON bodies the escapes (docs/api.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from ._core import Request, path_segment
from ._errors import UnexpectedResponseError
from ._models import FileInfo, Match, ReplaceResult, ResultList, list_from_json

TRUNCATED_HEADER: Final = "x-sandburg-truncated"
"""The answer header by which the server says a listing, find or search stopped at its limit."""


def _path(path: str, what: str = "a sandbox path") -> str:
    if not isinstance(path, str):
        raise TypeError(f"{what} must be a str, got {type(path).__name__}")
    if not path:
        raise ValueError(f"{what} must not be empty")
    return path


def _file_request(method: str, sandbox_id: str, suffix: str, path: str, **kw: Any) -> Request:
    params = (("path", _path(path)), *kw.pop("params", ()))
    sandbox = path_segment(sandbox_id, "a sandbox id")
    return Request(method, f"/toolbox/{sandbox}/files{suffix}", params=params, **kw)


def _mode(mode: int | str) -> str:
    """A permission mode as the octal string the API takes: ``0o755`` or ``"755"`` → ``"755"``."""
    if isinstance(mode, str):
        try:
            mode = int(mode, 8)
        except ValueError:
            raise ValueError(f"invalid mode {mode!r}: expected octal digits such as '755'") from None
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise TypeError(f"mode must be an int such as 0o755 (or an octal str), got {type(mode).__name__}")
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"invalid mode {mode:#o}: must be between 0 and 0o7777")
    return f"{mode:o}"


def list_files_request(sandbox_id: str, path: str, depth: int | None = None) -> Request:
    """``GET /toolbox/{id}/files?path=&depth=``."""
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise ValueError(f"depth must be a whole number of at least 1, got {depth!r}")
    extra = () if depth is None else (("depth", str(depth)),)
    return _file_request("GET", sandbox_id, "", path, params=extra)


def file_info_request(sandbox_id: str, path: str) -> Request:
    """``GET /toolbox/{id}/files/info?path=``."""
    return _file_request("GET", sandbox_id, "/info", path)


def download_request(sandbox_id: str, path: str) -> Request:
    """``GET /toolbox/{id}/files/download?path=``, streamed."""
    return _file_request("GET", sandbox_id, "/download", path, stream=True)


def upload_request(sandbox_id: str, path: str) -> Request:
    """``POST /toolbox/{id}/files/upload?path=`` with multipart field ``file``.

    The multipart file name is informative only (the server writes to ``path``): it is made valid UTF-8.
    """
    name = _path(path).rstrip("/").rsplit("/", 1)[-1]
    name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return _file_request("POST", sandbox_id, "/upload", path, upload=("file", name))


def find_request(sandbox_id: str, path: str, pattern: str, regex: bool = False) -> Request:
    """``GET /toolbox/{id}/files/find?path=&pattern=&regex=``."""
    extra = (("pattern", _path(pattern, "pattern")),) + ((("regex", "true"),) if regex else ())
    return _file_request("GET", sandbox_id, "/find", path, params=extra)


def search_request(sandbox_id: str, path: str, pattern: str) -> Request:
    """``GET /toolbox/{id}/files/search?path=&pattern=``."""
    return _file_request("GET", sandbox_id, "/search", path, params=(("pattern", _path(pattern, "pattern")),))


def replace_request(sandbox_id: str, files: Iterable[str], pattern: str, new_value: str) -> Request:
    """``POST /toolbox/{id}/files/replace`` with ``{"files", "pattern", "newValue"}``; one path alone is fine."""
    paths = [_path(f, "each file") for f in ([files] if isinstance(files, str) else files)]
    if not isinstance(new_value, str):
        raise TypeError(f"new_value must be a str, got {type(new_value).__name__}")
    body = {"files": paths, "pattern": _path(pattern, "pattern"), "newValue": new_value}
    return Request("POST", f"/toolbox/{path_segment(sandbox_id, 'a sandbox id')}/files/replace", json=body)


def move_request(sandbox_id: str, source: str, destination: str, overwrite: bool = False) -> Request:
    """``POST /toolbox/{id}/files/move?source=&destination=&overwrite=``."""
    params = [("source", _path(source, "source")), ("destination", _path(destination, "destination"))]
    if overwrite:
        params.append(("overwrite", "true"))
    sandbox = path_segment(sandbox_id, "a sandbox id")
    return Request("POST", f"/toolbox/{sandbox}/files/move", params=tuple(params))


def chmod_request(sandbox_id: str, path: str, mode: int | str) -> Request:
    """``POST /toolbox/{id}/files/permissions?path=&mode=`` (mode in octal)."""
    return _file_request("POST", sandbox_id, "/permissions", path, params=(("mode", _mode(mode)),))


def chown_request(sandbox_id: str, path: str, owner: str | int | None, group: str | int | None) -> Request:
    """``POST /toolbox/{id}/files/permissions?path=&owner=&group=``: names, or numeric ids."""
    extra: list[tuple[str, str]] = []
    for key, value in (("owner", owner), ("group", group)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise TypeError(f"{key} must be a name or a numeric id, got {value!r}")
        extra.append((key, str(value)))
    if not extra:
        raise ValueError("chown needs an owner, a group, or both")
    return _file_request("POST", sandbox_id, "/permissions", path, params=tuple(extra))


def mkdir_request(sandbox_id: str, path: str, mode: int | str = 0o755) -> Request:
    """``POST /toolbox/{id}/files/folder?path=&mode=``."""
    return _file_request("POST", sandbox_id, "/folder", path, params=(("mode", _mode(mode)),))


def delete_request(sandbox_id: str, path: str, recursive: bool = False) -> Request:
    """``DELETE /toolbox/{id}/files?path=&recursive=``."""
    return _file_request("DELETE", sandbox_id, "", path, params=(("recursive", "true"),) if recursive else ())


def _truncated(headers: Mapping[str, str]) -> bool:
    return headers.get(TRUNCATED_HEADER, "").strip().lower() == "true"


def file_listing(data: Any, headers: Mapping[str, str]) -> ResultList[FileInfo]:
    """Decode the answer of ``GET files``: its entries, and whether the header says they were cut."""
    return ResultList((FileInfo.from_json(x) for x in list_from_json(data, "FileInfo")), _truncated(headers))


def matches(data: Any, headers: Mapping[str, str]) -> ResultList[Match]:
    """Decode the answer of ``GET files/find``."""
    return ResultList((Match.from_json(x) for x in list_from_json(data, "Match")), _truncated(headers))


def search_result(data: Any, headers: Mapping[str, str]) -> ResultList[str]:
    """Decode the answer of ``GET files/search``: ``{"files": [str], "truncated": bool}``."""
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise UnexpectedResponseError("expected {'files': [...]}", body=data)
    files = [f for f in data["files"] if isinstance(f, str)]
    return ResultList(files, data.get("truncated") is True or _truncated(headers))


def replace_results(data: Any) -> list[ReplaceResult]:
    """Decode the answer of ``POST files/replace``: one result per file, in order."""
    return [ReplaceResult.from_json(x) for x in list_from_json(data, "ReplaceResult")]
