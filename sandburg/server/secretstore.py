"""Secret backends: where values live. `SecretBackend` is the interface; `SqlSecretBackend` the built-in one.

A backend stores versioned values per organization and name; it knows nothing of sandboxes, references or
redaction (secretservice.py). The built-in backend keeps them in the server's SQLite store, each version sealed by
secretcrypto (AES-256-GCM, a data key per version wrapped by the master key). HashiCorp Vault's KV v2 engine maps
onto the same five calls (put = write a new version, values = read the latest, meta/list = metadata, delete =
delete the metadata and every version) and could be added as a second implementation; it is not built.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from .db import Secret, SecretVersion, utcnow
from .secretcrypto import MasterKey, Sealed

KEEP_VERSIONS = 10  # older versions of a secret are deleted when a new one is set


@dataclass(frozen=True)
class SecretMeta:
    """What may be shown about a secret: never its value."""

    name: str
    version: int
    created_at: datetime
    updated_at: datetime


class SecretBackend(Protocol):
    """Versioned secret values of organizations. Names are validated by the caller."""

    def put(self, org_id: str, name: str, value: bytes) -> SecretMeta:
        """Store `value` as the new latest version of `name` (version 1 for a new name)."""
        ...

    def values(self, org_id: str, names: Collection[str]) -> dict[str, bytes]:
        """The latest value of each of `names` that exists (missing names are absent from the answer)."""
        ...

    def meta(self, org_id: str, name: str) -> SecretMeta | None: ...

    def list(self, org_id: str) -> list[SecretMeta]:
        """Every secret of the organization, by name."""
        ...

    def delete(self, org_id: str, name: str) -> bool:
        """Delete the secret and all its versions; False if there was none."""
        ...


def _aad(org_id: str, secret_id: str, name: str, version: int) -> bytes:
    return f"sandburg-secret\0{org_id}\0{secret_id}\0{name}\0{version}".encode()


def _meta(row: Secret) -> SecretMeta:
    return SecretMeta(row.name, row.version, row.created_at, row.updated_at)


class SqlSecretBackend:
    """The built-in backend: sealed versions in the server's SQL store (tables `secrets`, `secret_versions`)."""

    def __init__(self, sessions: sessionmaker[Session], key: MasterKey) -> None:
        self.sessions = sessions
        self.key = key
        # SQLite in WAL mode fails a read transaction that later writes once another writer went first; writes
        # are rare (a set, a delete): one at a time in this process
        self._writes = threading.Lock()

    def put(self, org_id: str, name: str, value: bytes) -> SecretMeta:
        with self._writes, self.sessions() as s:
            now = utcnow()
            row = self._row(s, org_id, name)
            if row is None:
                row = Secret(
                    id=str(uuid.uuid4()), organization_id=org_id, name=name, version=0, created_at=now,
                    updated_at=now,
                )  # fmt: skip
                s.add(row)
            version = row.version + 1
            sealed = self.key.seal(value, _aad(org_id, row.id, name, version))
            s.add(
                SecretVersion(
                    secret_id=row.id,
                    version=version,
                    key_id=sealed.key_id,
                    wrapped_key=sealed.wrapped_key,
                    nonce=sealed.nonce,
                    ciphertext=sealed.ciphertext,
                    created_at=now,
                )  # fmt: skip
            )
            row.version, row.updated_at = version, now
            s.execute(
                delete(SecretVersion).where(
                    SecretVersion.secret_id == row.id, SecretVersion.version <= version - KEEP_VERSIONS
                )
            )
            s.commit()
            return _meta(row)

    def values(self, org_id: str, names: Collection[str]) -> dict[str, bytes]:
        if not names:
            return {}
        with self.sessions() as s:
            q: Any = (
                select(Secret, SecretVersion)
                .join(SecretVersion, SecretVersion.secret_id == Secret.id)
                .where(
                    Secret.organization_id == org_id,
                    Secret.name.in_(list(names)),
                    SecretVersion.version == Secret.version,
                )
            )
            rows = [(row[0], row[1]) for row in s.execute(q)]
        out = {}
        for secret, ver in rows:
            sealed = Sealed(ver.key_id, ver.wrapped_key, ver.nonce, ver.ciphertext)
            out[secret.name] = self.key.open(sealed, _aad(org_id, secret.id, secret.name, ver.version))
        return out

    def meta(self, org_id: str, name: str) -> SecretMeta | None:
        with self.sessions() as s:
            row = self._row(s, org_id, name)
            return _meta(row) if row is not None else None

    def list(self, org_id: str) -> list[SecretMeta]:
        with self.sessions() as s:
            rows = s.scalars(select(Secret).where(Secret.organization_id == org_id).order_by(Secret.name))
            return [_meta(r) for r in rows]

    def delete(self, org_id: str, name: str) -> bool:
        with self._writes, self.sessions() as s:
            row = self._row(s, org_id, name)
            if row is None:
                return False
            s.execute(delete(SecretVersion).where(SecretVersion.secret_id == row.id))
            s.delete(row)
            s.commit()
            return True

    @staticmethod
    def _row(s: Session, org_id: str, name: str) -> Secret | None:
        return s.scalars(select(Secret).where(Secret.organization_id == org_id, Secret.name == name)).first()
