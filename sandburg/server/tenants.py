"""Organizations and their API keys (docs/tenants.md).

The operator (an admin key of the `default` organization, the one `sandburg server` bootstraps) makes
organizations, sets their quotas and gives each its first admin key; from then on that organization's admins make
and revoke its keys themselves. A key is shown once, in the answer that creates it, and stored as its SHA-256
hash; revoking it takes effect at once (the key cache is dropped). Nobody sees another organization exists: a
non-operator naming one gets 404, like any other organization's things.
"""

from __future__ import annotations

import builtins
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .._codes import ErrorCode
from . import access, quotas
from .auth import KeyCache, Principal, hash_key, new_key
from .db import ApiKey, Organization, utcnow
from .errors import ApiError

ORG_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(frozen=True)
class NewKey:
    row: ApiKey
    key: str  # the only time it exists outside the caller's hands


class TenantService:
    def __init__(self, sessions: sessionmaker[Session], keys: KeyCache) -> None:
        self.sessions = sessions
        self.keys = keys

    # -- organizations ---------------------------------------------------------------------------------------
    def create_org(self, who: Principal, name: str, quota: quotas.Amounts) -> Organization:
        _operator(who)
        if not ORG_NAME.match(name):
            raise ApiError(
                ErrorCode.VALIDATION_ERROR,
                f"organization name {name!r}: 1-63 of a-z, 0-9 and '-', starting with a letter or digit",
            )
        with self.sessions() as s:
            org = Organization(id=str(uuid.uuid4()), name=name, created_at=utcnow())
            quotas.store(org, quota)
            s.add(org)
            try:
                s.commit()
            except IntegrityError as exc:
                raise ApiError(
                    ErrorCode.ORGANIZATION_EXISTS, f"an organization named {name!r} exists"
                ) from exc
            s.refresh(org)
            s.expunge(org)
            return org

    def list_orgs(self, who: Principal) -> builtins.list[Organization]:
        with self.sessions() as s:
            q = select(Organization).order_by(Organization.created_at, Organization.name)
            if not who.operator:
                q = q.where(Organization.id == who.organization_id)
            rows = list(s.scalars(q))
            s.expunge_all()
            return rows

    def get_org(self, who: Principal, id_or_name: str) -> Organization:
        if id_or_name == "current":
            id_or_name = who.organization_id
        with self.sessions() as s:
            org = s.scalars(
                select(Organization).where(
                    (Organization.id == id_or_name) | (Organization.name == id_or_name)
                )
            ).first()
            if org is None or (not who.operator and org.id != who.organization_id):
                raise ApiError(ErrorCode.ORGANIZATION_NOT_FOUND, f"no organization {id_or_name!r}")
            s.expunge(org)
            return org

    def usage(self, org_id: str) -> quotas.Amounts:
        with self.sessions() as s:
            return quotas.usage(s, org_id)

    def set_quota(self, who: Principal, id_or_name: str, quota: quotas.Amounts) -> Organization:
        _operator(who)
        org_id = self.get_org(who, id_or_name).id
        with self.sessions() as s:
            org = s.get(Organization, org_id)
            assert org is not None
            quotas.store(org, quota)  # a lower quota than in use refuses new things; it stops nothing
            s.commit()
            s.refresh(org)
            s.expunge(org)
            return org

    # -- keys ------------------------------------------------------------------------------------------------
    def create_key(
        self, who: Principal, name: str, role: str, scopes: builtins.list[str] | None, org: str | None,
        expires_at: datetime | None = None,
    ) -> NewKey:  # fmt: skip
        if role not in access.ROLES:
            raise ApiError(
                ErrorCode.VALIDATION_ERROR, f"role: one of {', '.join(access.ROLES)}, not {role!r}"
            )
        wanted = access.parse_scopes(scopes)
        if not name.strip() or len(name) > 100:
            raise ApiError(ErrorCode.VALIDATION_ERROR, "name: 1 to 100 characters")
        if expires_at is not None:
            if expires_at.tzinfo is not None:  # stored as naive UTC, like every time in the store
                expires_at = expires_at.astimezone(UTC).replace(tzinfo=None)
            if expires_at <= utcnow():
                raise ApiError(ErrorCode.VALIDATION_ERROR, "expiresAt: a time in the future (UTC)")
        org_id = self.get_org(who, org).id if org else who.organization_id
        if org_id != who.organization_id:
            _operator(who)
        elif not access.may_grant(who.role, who.scopes, role, wanted):
            raise ApiError(
                ErrorCode.FORBIDDEN,
                "a key can only make keys with at most its own role and within its own scopes",
            )
        key = new_key()
        row = ApiKey(
            id=str(uuid.uuid4()), organization_id=org_id, name=name.strip(), prefix=key[:10],
            key_hash=hash_key(key), role=role, scopes=sorted(wanted) if wanted is not None else None,
            created_by=who.key_id, created_at=utcnow(), expires_at=expires_at,
        )  # fmt: skip
        with self.sessions() as s:
            s.add(row)
            s.commit()
            s.refresh(row)
            s.expunge(row)
        return NewKey(row, key)

    def list_keys(self, who: Principal, org: str | None = None) -> builtins.list[ApiKey]:
        org_id = self.get_org(who, org).id if org else who.organization_id
        with self.sessions() as s:
            rows = list(
                s.scalars(select(ApiKey).where(ApiKey.organization_id == org_id).order_by(ApiKey.created_at))
            )
            s.expunge_all()
            return rows

    def get_key(self, who: Principal, key_id: str) -> ApiKey:
        with self.sessions() as s:
            row = s.get(ApiKey, key_id)
            if row is None or (row.organization_id != who.organization_id and not who.operator):
                raise ApiError(ErrorCode.KEY_NOT_FOUND, f"no API key {key_id!r}")
            s.expunge(row)
            return row

    def revoke_key(self, who: Principal, key_id: str) -> ApiKey:
        """Revoke a key (idempotent); refused if it is the caller's organization's last unscoped admin key."""
        self.get_key(who, key_id)
        with self.sessions() as s:
            row = s.get(ApiKey, key_id)
            assert row is not None
            if row.revoked_at is None:
                # an organization must not lock itself out; the operator may cut another one off entirely
                if row.role == "admin" and row.scopes is None and row.organization_id == who.organization_id:
                    others = s.scalar(
                        select(func.count()).select_from(ApiKey).where(
                            ApiKey.organization_id == row.organization_id, ApiKey.role == "admin",
                            ApiKey.scopes.is_(None), ApiKey.revoked_at.is_(None), ApiKey.id != row.id,
                        )
                    )  # fmt: skip
                    if not others:
                        raise ApiError(
                            ErrorCode.LAST_ADMIN_KEY,
                            "this is the organization's last unscoped admin key: make another before revoking it",
                        )
                row.revoked_at = utcnow()
                s.commit()
            s.refresh(row)
            s.expunge(row)
        self.keys.invalidate()
        return row


def _operator(who: Principal) -> None:
    if not who.operator:
        raise ApiError(
            ErrorCode.FORBIDDEN,
            "only the operator (an unscoped admin key of the 'default' organization) manages organizations",
        )
