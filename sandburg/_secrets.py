"""``sb.secrets``: the organization's secrets (docs/secrets.md).

A value is sent once, by :meth:`Secrets.set`, and never comes back: the server answers metadata only (name,
version, times). Setting an existing name stores a new version; sandboxes created with ``secrets=[name]`` (or
``{"ENV_NAME": name}``) get the current value in the env of every process started through the toolbox, a running
sandbox included from its next command on, and see it masked as ``***`` in the output the API answers.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import _core as core

if TYPE_CHECKING:
    from ._async_client import AsyncSandburg
    from ._client import Sandburg

__all__ = ["AsyncSecrets", "SecretInfo", "Secrets"]


@dataclass(frozen=True)
class SecretInfo:
    """A secret's metadata; the value is never part of it."""

    name: str
    version: int
    """The latest version: 1 for a new secret, one more at each :meth:`Secrets.set`."""
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SecretInfo:
        return cls(
            name=str(d["name"]), version=int(d["version"]), created_at=_time(d.get("createdAt")),
            updated_at=_time(d.get("updatedAt")),
        )  # fmt: skip


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _path(name: str) -> str:
    return f"/secrets/{core.path_segment(name, 'a secret name')}"


def set_request(name: str, value: str) -> core.Request:
    if not isinstance(value, str):
        raise TypeError(f"a secret's value is a str, got {type(value).__name__}")
    return core.Request("PUT", _path(name), json={"value": value})


def _items(data: Any) -> builtins.list[SecretInfo]:
    return [SecretInfo.from_json(d) for d in data["items"]]


class Secrets:
    """The organization's secrets (``sb.secrets``)."""

    def __init__(self, client: Sandburg) -> None:
        self._client = client

    def set(self, name: str, value: str) -> SecretInfo:
        """Store ``value`` under ``name`` (a new version if it exists) and return its metadata. Raises
        :class:`InvalidSecretError` for a bad name or an empty value, :class:`SecretTooLargeError` over 64 KiB."""
        return SecretInfo.from_json(self._client._send(set_request(name, value)))

    def list(self) -> builtins.list[SecretInfo]:
        """Every secret of the organization, by name (metadata only)."""
        return _items(self._client._send(core.Request("GET", "/secrets")))

    def get(self, name: str) -> SecretInfo:
        """The secret's metadata; raises :class:`SecretNotFoundError` if there is none."""
        return SecretInfo.from_json(self._client._send(core.Request("GET", _path(name))))

    def delete(self, name: str) -> SecretInfo:
        """Delete the secret and all its versions; raises :class:`SecretInUseError` while a sandbox uses it."""
        return SecretInfo.from_json(self._client._send(core.Request("DELETE", _path(name))))


class AsyncSecrets:
    """The organization's secrets (``sb.secrets``)."""

    def __init__(self, client: AsyncSandburg) -> None:
        self._client = client

    async def set(self, name: str, value: str) -> SecretInfo:
        """Store ``value`` under ``name`` (a new version if it exists) and return its metadata. Raises
        :class:`InvalidSecretError` for a bad name or an empty value, :class:`SecretTooLargeError` over 64 KiB."""
        return SecretInfo.from_json(await self._client._send(set_request(name, value)))

    async def list(self) -> builtins.list[SecretInfo]:
        """Every secret of the organization, by name (metadata only)."""
        return _items(await self._client._send(core.Request("GET", "/secrets")))

    async def get(self, name: str) -> SecretInfo:
        """The secret's metadata; raises :class:`SecretNotFoundError` if there is none."""
        return SecretInfo.from_json(await self._client._send(core.Request("GET", _path(name))))

    async def delete(self, name: str) -> SecretInfo:
        """Delete the secret and all its versions; raises :class:`SecretInUseError` while a sandbox uses it."""
        return SecretInfo.from_json(await self._client._send(core.Request("DELETE", _path(name))))
