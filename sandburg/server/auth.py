"""API keys: generated once, shown once, stored as SHA-256 hashes; each belongs to one organization, with a role
and optional scopes (access.py decides what they allow; docs/tenants.md).

Keys are 32 random bytes, so a fast hash is as good as a slow one here (no dictionary to attack); lookups are
cached in memory for a short time so that a toolbox call costs no database round trip.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
import uuid
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from .._codes import ErrorCode
from . import access
from .db import ApiKey, Organization, utcnow
from .errors import ApiError

KEY_PREFIX = "sb_"
DEFAULT_ORG = "default"


@dataclass(frozen=True)
class Principal:
    organization_id: str
    key_id: str
    role: str = "admin"
    scopes: frozenset[str] | None = None
    operator: bool = False  # an admin key of the operator's organization: manages the other organizations


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeyCache:
    def __init__(self, sessions: sessionmaker[Session], ttl: float = 10.0) -> None:
        self.sessions = sessions
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def lookup(self, key: str) -> Principal | None:
        h = hash_key(key)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(h)
            if hit and hit[0] > now:
                return hit[1]
        with self.sessions() as s:
            found = s.execute(
                select(ApiKey, Organization.name)
                .join(Organization, Organization.id == ApiKey.organization_id)
                .where(ApiKey.key_hash == h, ApiKey.revoked_at.is_(None))
            ).first()
            principal = None
            ttl = self.ttl
            if found is not None:
                row, org_name = found
                if (
                    row.expires_at is not None
                ):  # an expired key is an invalid one; a cached answer ends with it
                    ttl = min(ttl, (row.expires_at - utcnow()).total_seconds())
                if ttl > 0:
                    principal = Principal(
                        row.organization_id, row.id, row.role,
                        frozenset(row.scopes) if row.scopes is not None else None,
                        operator=row.role == "admin" and org_name == DEFAULT_ORG and row.scopes is None,
                    )  # fmt: skip
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[h] = (now + (ttl if principal else self.ttl), principal)
        return principal

    def invalidate(self) -> None:
        """Forget every cached answer: a revoked key stops working at once, not after the cache's ttl."""
        with self._lock:
            self._cache.clear()


def authenticate(request: Request) -> Principal:
    """FastAPI dependency: the caller's organization, from `Authorization: Bearer <key>`."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(ErrorCode.UNAUTHORIZED, "missing API key: send 'Authorization: Bearer <key>'")
    cache: KeyCache = request.app.state.keys
    principal = cache.lookup(key.strip())
    if principal is None:
        raise ApiError(ErrorCode.UNAUTHORIZED, "invalid or revoked API key")
    access.check(principal.role, principal.scopes, request.method, request.url.path)
    return principal


def bootstrap(sessions: sessionmaker[Session], credentials_path: str, api_url: str) -> str | None:
    """Make sure the default organization exists and the local credentials file holds a valid key.

    Returns the key when a new one was created (to print once), else None.
    """
    with sessions() as s:
        org = s.scalars(select(Organization).where(Organization.name == DEFAULT_ORG)).first()
        if org is None:
            org = Organization(id=str(uuid.uuid4()), name=DEFAULT_ORG, created_at=utcnow())
            s.add(org)
            s.commit()
        existing = _read_credentials(credentials_path)
        if existing:
            row = s.scalars(
                select(ApiKey).where(ApiKey.key_hash == hash_key(existing), ApiKey.revoked_at.is_(None))
            ).first()
            if row is not None:
                _write_credentials(credentials_path, api_url, existing, org.id)
                return None
        key = new_key()
        s.add(
            ApiKey(
                id=str(uuid.uuid4()), organization_id=org.id, name="local admin", prefix=key[:10],
                key_hash=hash_key(key), role="admin", scopes=None, created_at=utcnow(),
            )
        )  # fmt: skip
        s.commit()
        _write_credentials(credentials_path, api_url, key, org.id)
        return key


def _read_credentials(path: str) -> str | None:
    try:
        with open(path) as fh:
            key = json.load(fh).get("api_key")
            return key if isinstance(key, str) else None
    except (OSError, ValueError):
        return None


def _write_credentials(path: str, api_url: str, key: str, org_id: str) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"api_url": api_url, "api_key": key, "organization_id": org_id}, fh)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
