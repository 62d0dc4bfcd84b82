"""Wire helpers of the files routes: sandbox paths as bytes, JSON that carries them, FileInfo.

File names on Linux are bytes. On the wire a path that is not UTF-8 travels as follows (docs/api.md):

* in a query string, percent-encoded bytes (`path=/workspace/caf%E9`). Starlette decodes query strings as UTF-8
  with replacement, which would lose such bytes, so the path parameters are re-read from the raw query string
  and decoded with surrogateescape (a byte 0xE9 becomes the lone surrogate U+DCE9);
* in JSON, both ways, as that lone surrogate, escaped: `"caf\\udce9"`. Python's `json.loads` gives it back and
  `os.fsencode` turns it into the original bytes. Responses that carry paths are therefore encoded here with
  `json.dumps` (ASCII, surrogates escaped): pydantic refuses to serialize a lone surrogate.
"""

from __future__ import annotations

import json
import stat as stat_mod
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

from fastapi import Query, Request, Response

from ..._codes import ErrorCode
from ..errors import ApiError

TRUNCATED_HEADER = "X-Sandburg-Truncated"
TRUNCATED_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"headers": {TRUNCATED_HEADER: {"description": "`true` when the result was cut at its limit"}}}
}
_PATH_DOC = "a path in the sandbox; bytes that are not UTF-8 percent-encoded (e.g. %E9)"


def raw_query(request: Request, name: str, fallback: str) -> str:
    """The last value of query parameter `name`, its percent-encoded bytes decoded with surrogateescape."""
    value = None
    key = name.encode()
    for part in request.scope.get("query_string", b"").split(b"&"):
        k, _, v = part.partition(b"=")
        if unquote_to_bytes(k.replace(b"+", b" ")) == key:
            value = unquote_to_bytes(v.replace(b"+", b" "))
    return fallback if value is None else value.decode("utf-8", "surrogateescape")


# Dependencies: FastAPI validates and documents the parameter, raw_query supplies its exact bytes.
def query_path(request: Request, path: Annotated[str, Query(min_length=1, description=_PATH_DOC)]) -> str:
    return raw_query(request, "path", path)


def query_dir(request: Request, path: Annotated[str, Query(description=_PATH_DOC)] = "/workspace") -> str:
    return raw_query(request, "path", path) or "/workspace"


def query_source(request: Request, source: Annotated[str, Query(min_length=1, description=_PATH_DOC)]) -> str:
    return raw_query(request, "source", source)


def query_destination(
    request: Request, destination: Annotated[str, Query(min_length=1, description=_PATH_DOC)]
) -> str:
    return raw_query(request, "destination", destination)


def query_pattern(request: Request, pattern: Annotated[str, Query(min_length=1)]) -> str:
    return raw_query(request, "pattern", pattern)


def json_response(data: Any, *, status: int = 200, truncated: bool = False) -> Response:
    """JSON with non-ASCII escaped, lone surrogates (non-UTF-8 bytes of paths) included."""
    body = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii")
    headers = {TRUNCATED_HEADER: "true"} if truncated else None
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def file_info(d: dict[str, Any]) -> dict[str, Any]:
    """The agent's FileInfo as Daytona's (schemas.FileInfo), a dict ready for json_response."""
    try:
        mode = int(d["mode"])
        link = d.get("link_target")
        return {
            "name": str(d["name"]),
            "path": str(d["path"]),
            "isDir": bool(d["is_dir"]),
            "size": int(d["size"]),
            "mode": stat_mod.filemode(mode),
            "permissions": f"{stat_mod.S_IMODE(mode):04o}",
            "modTime": datetime.fromtimestamp(float(d["mtime"]), UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "owner": str(d["owner"]),
            "group": str(d["group"]),
            "linkTarget": None if link is None else str(link),
        }
    except (KeyError, TypeError, ValueError, OverflowError, OSError) as exc:
        raise ApiError(ErrorCode.AGENT_UNAVAILABLE, f"malformed file info from the agent: {exc!r}") from None
