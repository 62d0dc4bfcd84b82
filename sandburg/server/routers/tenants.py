"""/api/organizations and /api/keys (docs/tenants.md): organizations with quotas, and API keys with roles and scopes.

A key's secret is in the answer that creates it and nowhere else, ever: listings show its prefix. Who may call
what is access.py's (keys: admins) and the service's (organizations: the operator) decision.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from .. import listing, quotas, unsupported
from ..auth import Principal, authenticate
from ..db import ApiKey, Organization
from ..schemas import Strict
from ..tenants import TenantService

router = APIRouter(tags=["tenants"])
Auth = Annotated[Principal, Depends(authenticate)]


def service(request: Request) -> TenantService:
    svc: TenantService = request.app.state.tenants
    return svc


Svc = Annotated[TenantService, Depends(service)]


class Quota(BaseModel):
    """Limits of an organization; null is no limit (quotas.py says what counts)."""

    sandboxes: int | None = None
    cpu: int | None = None
    memory_mib: int | None = None
    disk_mib: int | None = None
    snapshots: int | None = None


class OrganizationIn(Strict):
    name: str = Field(max_length=63)
    quota: dict[str, Any] | None = None


class OrganizationOut(BaseModel):
    id: str
    name: str
    createdAt: str
    quota: Quota


class OrganizationList(BaseModel):
    items: list[OrganizationOut]


class Usage(BaseModel):
    organizationId: str
    used: Quota
    quota: Quota


class KeyIn(Strict):
    name: str = Field(max_length=100)
    role: str = "member"
    scopes: list[str] | None = None
    organization: str | None = Field(default=None, description="id or name; another one: the operator only")
    expiresAt: datetime | None = Field(default=None, description="when the key stops working (ISO 8601)")


class KeyOut(BaseModel):
    id: str
    name: str
    organizationId: str
    role: str
    scopes: list[str] | None
    prefix: str
    createdAt: str
    createdBy: str | None
    expiresAt: str | None
    revokedAt: str | None


class NewKeyOut(KeyOut):
    key: str = Field(description="the API key: shown this once, stored only as a hash")


class KeyList(BaseModel):
    items: list[KeyOut]


def org_out(org: Organization) -> OrganizationOut:
    return OrganizationOut(id=org.id, name=org.name, createdAt=listing.iso(org.created_at), quota=_quota(org))


def _quota(org: Organization) -> Quota:
    q = quotas.Amounts(
        org.max_sandboxes, org.max_cpu, org.max_memory_mib, org.max_disk_mib, org.max_snapshots
    )
    return Quota(**q.to_json())


def key_out(row: ApiKey) -> KeyOut:
    return KeyOut(
        id=row.id, name=row.name, organizationId=row.organization_id, role=row.role, scopes=row.scopes,
        prefix=row.prefix, createdAt=listing.iso(row.created_at), createdBy=row.created_by,
        expiresAt=listing.iso(row.expires_at) if row.expires_at else None,
        revokedAt=listing.iso(row.revoked_at) if row.revoked_at else None,
    )  # fmt: skip


# -- organizations ---------------------------------------------------------------------------------------------
@router.post("/organizations", response_model=OrganizationOut, status_code=201)
def create_organization(body: OrganizationIn, who: Auth, svc: Svc) -> OrganizationOut:
    """Make an organization (the operator only), with optional quotas; give it an admin key with POST /api/keys
    naming it."""
    return org_out(svc.create_org(who, body.name, quotas.parse(body.quota)))


@router.get("/organizations", response_model=OrganizationList)
def list_organizations(who: Auth, svc: Svc) -> OrganizationList:
    """Every organization for the operator; your own for any other key."""
    return OrganizationList(items=[org_out(o) for o in svc.list_orgs(who)])


@router.get("/organizations/{organization}", response_model=OrganizationOut)
def get_organization(organization: str, request: Request, who: Auth, svc: Svc) -> OrganizationOut:
    """An organization by id or name, or `current` (the key's own)."""
    daytona_only = unsupported.not_implemented("GET", request.url.path)  # /organizations/invitations
    if daytona_only is not None:
        raise daytona_only
    return org_out(svc.get_org(who, organization))


@router.put("/organizations/{organization}/quota", response_model=OrganizationOut)
def set_quota(organization: str, body: dict[str, Any], who: Auth, svc: Svc) -> OrganizationOut:
    """Replace the organization's quotas (the operator only); a field left out or null is no limit. A quota below
    what is in use refuses new things and stops nothing."""
    return org_out(svc.set_quota(who, organization, quotas.parse(body)))


@router.get("/organizations/{organization}/usage", response_model=Usage)
def get_usage(organization: str, who: Auth, svc: Svc) -> Usage:
    """What the organization uses now, next to its quotas."""
    org = svc.get_org(who, organization)
    return Usage(organizationId=org.id, used=Quota(**svc.usage(org.id).to_json()), quota=_quota(org))


# -- keys ------------------------------------------------------------------------------------------------------
@router.post("/keys", response_model=NewKeyOut, status_code=201)
def create_key(body: KeyIn, who: Auth, svc: Svc) -> NewKeyOut:
    """Make an API key (admins): `role` admin, member or read-only; `scopes` narrow it to areas (`sandboxes`,
    `toolbox:read`, ...). The key is in this answer only."""
    made = svc.create_key(who, body.name, body.role, body.scopes, body.organization, body.expiresAt)
    return NewKeyOut(**key_out(made.row).model_dump(), key=made.key)


@router.get("/keys", response_model=KeyList)
def list_keys(
    who: Auth,
    svc: Svc,
    organization: Annotated[str | None, Query(description="the operator: another one")] = None,
) -> KeyList:
    """The organization's keys, revoked ones included (prefix and metadata, never the key)."""
    return KeyList(items=[key_out(k) for k in svc.list_keys(who, organization)])


@router.get("/keys/current", response_model=KeyOut)
def current_key(who: Auth, svc: Svc) -> KeyOut:
    """The key making this request: its role, scopes and organization (any key may ask)."""
    return key_out(svc.get_key(who, who.key_id))


@router.get("/keys/{key_id}", response_model=KeyOut)
def get_key(key_id: str, who: Auth, svc: Svc) -> KeyOut:
    return key_out(svc.get_key(who, key_id))


@router.delete("/keys/{key_id}", response_model=KeyOut)
def revoke_key(key_id: str, who: Auth, svc: Svc) -> KeyOut:
    """Revoke a key: it stops working at once. Refused (409 LAST_ADMIN_KEY) for the organization's last admin key."""
    return key_out(svc.revoke_key(who, key_id))
