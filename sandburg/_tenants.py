"""``sb.keys`` and ``sb.organizations``: API keys with roles and scopes, organizations with quotas (docs/tenants.md).

```python
k = sb.keys.create("ci-agent", role="member", scopes=["sandboxes", "toolbox"])
print(k.key)                      # shown this once; the server keeps only a hash
sb.keys.revoke(k.id)              # stops working at once
org = sb.organizations.create("team-b", quota={"sandboxes": 10, "cpu": 8})   # the operator only
admin = sb.keys.create("team-b admin", role="admin", organization="team-b")
sb.organizations.usage()          # what your organization uses, next to its quota
```
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import _core as core

if TYPE_CHECKING:
    from ._async_client import AsyncSandburg
    from ._client import Sandburg

__all__ = [
    "ApiKeyInfo",
    "AsyncKeys",
    "AsyncOrganizations",
    "Keys",
    "OrganizationInfo",
    "Organizations",
    "Quota",
    "Usage",
]


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


@dataclass(frozen=True)
class Quota:
    """An organization's limits (or what it uses); None is no limit."""

    sandboxes: int | None = None
    cpu: int | None = None
    memory_mib: int | None = None
    disk_mib: int | None = None
    snapshots: int | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> Quota:
        d = d or {}
        return cls(**{k: d.get(k) for k in ("sandboxes", "cpu", "memory_mib", "disk_mib", "snapshots")})


@dataclass(frozen=True)
class ApiKeyInfo:
    """An API key's metadata; ``key`` is set only in the answer of :meth:`Keys.create`."""

    id: str
    name: str
    organization_id: str
    role: str
    """``admin``, ``member`` or ``read-only``."""
    scopes: tuple[str, ...] | None
    """The areas it may use (``sandboxes``, ``toolbox:read``, ...); None: every area of its role."""
    prefix: str
    created_at: datetime | None = None
    revoked_at: datetime | None = None
    key: str | None = None
    expires_at: datetime | None = None
    """When it stops working; None: never."""

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ApiKeyInfo:
        scopes = d.get("scopes")
        return cls(
            id=str(d["id"]), name=str(d["name"]), organization_id=str(d["organizationId"]), role=str(d["role"]),
            scopes=tuple(scopes) if scopes is not None else None, prefix=str(d["prefix"]),
            created_at=_time(d.get("createdAt")), revoked_at=_time(d.get("revokedAt")), key=d.get("key"),
            expires_at=_time(d.get("expiresAt")),
        )  # fmt: skip


@dataclass(frozen=True)
class OrganizationInfo:
    """An organization and its quotas."""

    id: str
    name: str
    quota: Quota
    created_at: datetime | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> OrganizationInfo:
        return cls(
            id=str(d["id"]), name=str(d["name"]), quota=Quota.from_json(d.get("quota")),
            created_at=_time(d.get("createdAt")),
        )  # fmt: skip


@dataclass(frozen=True)
class Usage:
    """What an organization uses (``used``) next to its limits (``quota``)."""

    organization_id: str
    used: Quota
    quota: Quota

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Usage:
        return cls(str(d["organizationId"]), Quota.from_json(d.get("used")), Quota.from_json(d.get("quota")))


def _org(id_or_name: str) -> str:
    return f"/organizations/{core.path_segment(id_or_name, 'an organization id or name')}"


def _key(key_id: str) -> str:
    return f"/keys/{core.path_segment(key_id, 'a key id')}"


def create_key_request(
    name: str,
    role: str,
    scopes: Iterable[str] | None,
    organization: str | None,
    expires_at: datetime | None = None,
) -> core.Request:
    body: dict[str, Any] = {"name": name, "role": role}
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise ValueError(
                "expires_at: give an aware datetime (e.g. datetime.now(UTC) + timedelta(days=30))"
            )
        body["expiresAt"] = expires_at.isoformat()
    if scopes is not None:
        body["scopes"] = list(scopes)
    if organization is not None:
        body["organization"] = organization
    return core.Request("POST", "/keys", json=body)


class Keys:
    """The organization's API keys (``sb.keys``); making and revoking them needs an admin key."""

    def __init__(self, client: Sandburg) -> None:
        self._client = client

    def create(
        self,
        name: str,
        role: str = "member",
        scopes: Iterable[str] | None = None,
        organization: str | None = None,
        expires_at: datetime | None = None,
    ) -> ApiKeyInfo:
        """A new key; its secret is in ``.key`` of the answer and nowhere else. ``organization``: another one
        (the operator only); ``expires_at``: when it stops working (an aware datetime)."""
        req = create_key_request(name, role, scopes, organization, expires_at)
        return ApiKeyInfo.from_json(self._client._send(req))

    def list(self, organization: str | None = None) -> builtins.list[ApiKeyInfo]:
        """The organization's keys, revoked ones included (never the secret)."""
        params = (("organization", organization),) if organization else ()
        data = self._client._send(core.Request("GET", "/keys", params=params))
        return [ApiKeyInfo.from_json(d) for d in data["items"]]

    def current(self) -> ApiKeyInfo:
        """The key this client uses: its role, scopes and organization."""
        return ApiKeyInfo.from_json(self._client._send(core.Request("GET", "/keys/current")))

    def revoke(self, key_id: str) -> ApiKeyInfo:
        """Revoke a key (it stops working at once); :class:`LastAdminKeyError` for the last admin key."""
        return ApiKeyInfo.from_json(self._client._send(core.Request("DELETE", _key(key_id))))


class AsyncKeys:
    """The organization's API keys (``sb.keys``); making and revoking them needs an admin key."""

    def __init__(self, client: AsyncSandburg) -> None:
        self._client = client

    async def create(
        self,
        name: str,
        role: str = "member",
        scopes: Iterable[str] | None = None,
        organization: str | None = None,
        expires_at: datetime | None = None,
    ) -> ApiKeyInfo:
        """A new key; its secret is in ``.key`` of the answer and nowhere else."""
        req = create_key_request(name, role, scopes, organization, expires_at)
        return ApiKeyInfo.from_json(await self._client._send(req))

    async def list(self, organization: str | None = None) -> builtins.list[ApiKeyInfo]:
        """The organization's keys, revoked ones included (never the secret)."""
        params = (("organization", organization),) if organization else ()
        data = await self._client._send(core.Request("GET", "/keys", params=params))
        return [ApiKeyInfo.from_json(d) for d in data["items"]]

    async def current(self) -> ApiKeyInfo:
        """The key this client uses: its role, scopes and organization."""
        return ApiKeyInfo.from_json(await self._client._send(core.Request("GET", "/keys/current")))

    async def revoke(self, key_id: str) -> ApiKeyInfo:
        """Revoke a key (it stops working at once); :class:`LastAdminKeyError` for the last admin key."""
        return ApiKeyInfo.from_json(await self._client._send(core.Request("DELETE", _key(key_id))))


class Organizations:
    """Organizations (``sb.organizations``): your own for any key; every one, and their quotas, for the operator."""

    def __init__(self, client: Sandburg) -> None:
        self._client = client

    def create(self, name: str, quota: Mapping[str, int | None] | None = None) -> OrganizationInfo:
        """Make an organization with optional quotas (the operator only)."""
        body = {"name": name, "quota": dict(quota) if quota is not None else None}
        return OrganizationInfo.from_json(
            self._client._send(core.Request("POST", "/organizations", json=body))
        )

    def list(self) -> builtins.list[OrganizationInfo]:
        """Every organization for the operator; your own for any other key."""
        data = self._client._send(core.Request("GET", "/organizations"))
        return [OrganizationInfo.from_json(d) for d in data["items"]]

    def get(self, id_or_name: str = "current") -> OrganizationInfo:
        """An organization by id or name; ``current`` is your own."""
        return OrganizationInfo.from_json(self._client._send(core.Request("GET", _org(id_or_name))))

    def set_quota(self, id_or_name: str, quota: Mapping[str, int | None]) -> OrganizationInfo:
        """Replace the quotas (fields left out: no limit)."""
        req = core.Request("PUT", _org(id_or_name) + "/quota", json=dict(quota))
        return OrganizationInfo.from_json(self._client._send(req))

    def usage(self, id_or_name: str = "current") -> Usage:
        """What the organization uses now, next to its quotas."""
        return Usage.from_json(self._client._send(core.Request("GET", _org(id_or_name) + "/usage")))


class AsyncOrganizations:
    """Organizations (``sb.organizations``): your own for any key; every one, and their quotas, for the operator."""

    def __init__(self, client: AsyncSandburg) -> None:
        self._client = client

    async def create(self, name: str, quota: Mapping[str, int | None] | None = None) -> OrganizationInfo:
        """Make an organization with optional quotas (the operator only)."""
        body = {"name": name, "quota": dict(quota) if quota is not None else None}
        return OrganizationInfo.from_json(
            await self._client._send(core.Request("POST", "/organizations", json=body))
        )

    async def list(self) -> builtins.list[OrganizationInfo]:
        """Every organization for the operator; your own for any other key."""
        data = await self._client._send(core.Request("GET", "/organizations"))
        return [OrganizationInfo.from_json(d) for d in data["items"]]

    async def get(self, id_or_name: str = "current") -> OrganizationInfo:
        """An organization by id or name; ``current`` is your own."""
        return OrganizationInfo.from_json(await self._client._send(core.Request("GET", _org(id_or_name))))

    async def set_quota(self, id_or_name: str, quota: Mapping[str, int | None]) -> OrganizationInfo:
        """Replace the quotas (fields left out: no limit); the operator only."""
        req = core.Request("PUT", _org(id_or_name) + "/quota", json=dict(quota))
        return OrganizationInfo.from_json(await self._client._send(req))

    async def usage(self, id_or_name: str = "current") -> Usage:
        """What the organization uses now, next to its quotas."""
        return Usage.from_json(await self._client._send(core.Request("GET", _org(id_or_name) + "/usage")))
