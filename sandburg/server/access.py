"""Who may do what (docs/tenants.md): a key's role is its ceiling, its scopes narrow it, and one function decides.

Every authenticated route goes through `check` (the `authenticate` dependency and the WebSocket handshake call
it), so a new route is covered by the table below and not by a decorator someone can forget: its path names an
*area*, its method says read or write.

- Roles: `admin` (everything in its organization, keys included), `member` (everything but keys and the
  organization's settings), `read-only` (reads only). An admin key of the operator's organization (`default`, the
  one `sandburg server` bootstraps) also manages other organizations and their quotas.
- Scopes (optional, per key): `area` (read and write, within the role) or `area:read`. A key with scopes may use
  only those areas; a key without any has every area its role allows.

A refusal is 403 FORBIDDEN naming the missing permission. Tenancy itself is not decided here: every lookup is by
(organization, id), so another organization's things are 404, never 403 (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Iterable

from .._codes import ErrorCode
from .errors import ApiError

ROLES = ("admin", "member", "read-only")
AREAS = (
    "sandboxes", "toolbox", "snapshots", "images", "secrets", "volumes", "audit", "keys", "organizations",
)  # fmt: skip
ADMIN_AREAS = frozenset({"keys"})  # writes to `organizations` are the operator's, checked by the service
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# POST routes that only read: they are POST because their request carries a body
READ_POSTS = ("/files/bulk-download",)
_SNAPSHOT_ACTIONS = frozenset({"snapshot", "snapshots", "restore", "fork"})
_TOP = {
    "toolbox": "toolbox", "sandbox": "sandboxes", "state-snapshots": "snapshots", "images": "images",
    "snapshots": "images", "secrets": "secrets", "volumes": "volumes", "audit": "audit", "keys": "keys",
    "organizations": "organizations",
}  # fmt: skip


def parse_scopes(scopes: Iterable[str] | None) -> frozenset[str] | None:
    """Validate a key's scopes: None (every area its role allows) or a set of `area` / `area:read`."""
    if scopes is None:
        return None
    out = set()
    for raw in scopes:
        area = str(raw).partition(":")[0]
        if area not in AREAS or raw not in (area, f"{area}:read"):
            raise ApiError(
                ErrorCode.VALIDATION_ERROR,
                f"scope {raw!r}: give an area or area:read, an area being one of {', '.join(AREAS)}",
            )
        out.add(raw)
    if not out:
        raise ApiError(ErrorCode.VALIDATION_ERROR, "scopes: give at least one, or leave it out for all")
    return frozenset(out)


def area_of(path: str) -> str | None:
    """The area a request path belongs to, None for routes open to every key (health, config, test hooks)."""
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] == "api":
        parts = parts[1:]
    if not parts or parts == ["keys", "current"]:  # any key may ask what it is
        return None
    area = _TOP.get(parts[0])
    if area == "sandboxes" and len(parts) >= 3 and parts[2] in _SNAPSHOT_ACTIONS:
        return "snapshots"
    return area


def is_write(method: str, path: str) -> bool:
    """Whether a request changes something. WebSocket handshakes pass the method their route implies."""
    if method.upper() in SAFE_METHODS:
        return False
    return not any(path.endswith(p) for p in READ_POSTS)


def allows(role: str, scopes: frozenset[str] | None, area: str, write: bool) -> bool:
    """The decision itself (pure, unit-tested)."""
    if role not in ROLES:
        return False
    if write and role == "read-only":
        return False
    if area in ADMIN_AREAS and role != "admin":
        return False
    if scopes is None:
        return True
    return area in scopes or (not write and f"{area}:read" in scopes)


def check(role: str, scopes: frozenset[str] | None, method: str, path: str) -> None:
    """Raise 403 FORBIDDEN unless a key with `role` and `scopes` may make this request."""
    area = area_of(path)
    if area is None:
        return
    write = is_write(method, path)
    if not allows(role, scopes, area, write):
        need = area if write else f"{area}:read"
        raise ApiError(
            ErrorCode.FORBIDDEN, f"this API key ({role}) may not do this: it needs {need!r}"
            + (" and a role other than read-only" if write and role == "read-only" else "")
            + (" and the admin role" if area in ADMIN_AREAS and role != "admin" else ""),
        )  # fmt: skip


def may_grant(
    role: str, scopes: frozenset[str] | None, new_role: str, new_scopes: frozenset[str] | None
) -> bool:
    """A key can only make keys with no more than it has: a role at most its own, scopes within its own."""
    if ROLES.index(new_role) < ROLES.index(role):
        return False
    if scopes is None:
        return True
    if new_scopes is None:
        return False
    return all(s in scopes or (s.endswith(":read") and s.split(":")[0] in scopes) for s in new_scopes)
