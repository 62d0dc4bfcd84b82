"""A second organization and an API key of it, made the way an operator does: through /api/organizations and
/api/keys with the server's bootstrap (operator) key."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests._support.server import ServerProcess


def new_tenant(
    server: ServerProcess, role: str = "admin", quota: dict[str, Any] | None = None
) -> tuple[str, str, str]:
    """Make an organization (with `quota`) and a key of it; (key, organization id, key id)."""
    with httpx.Client(
        base_url=server.api_url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=30
    ) as op:
        org = op.post("/organizations", json={"name": f"t-{uuid.uuid4().hex[:12]}", "quota": quota})
        assert org.status_code == 201, org.text
        made = op.post("/keys", json={"name": "tenant", "role": role, "organization": org.json()["id"]})
        assert made.status_code == 201, made.text
        return made.json()["key"], org.json()["id"], made.json()["id"]


def revoke(server: ServerProcess, key_id: str) -> None:
    """The operator revokes a key of another organization (its last admin key included)."""
    r = httpx.delete(
        f"{server.api_url}/keys/{key_id}", headers={"Authorization": f"Bearer {server.api_key}"}, timeout=30
    )
    assert r.status_code == 200, r.text
