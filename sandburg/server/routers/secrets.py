"""/api/secrets: the organization's secrets (docs/secrets.md). Values go in, never out: every answer is metadata."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from .. import listing
from ..auth import Principal, authenticate
from ..schemas import SecretIn, SecretList, SecretOut
from ..secretservice import SecretService
from ..secretstore import SecretMeta

router = APIRouter(prefix="/secrets", tags=["secrets"])
Auth = Annotated[Principal, Depends(authenticate)]


def service(request: Request) -> SecretService:
    svc: SecretService = request.app.state.secrets
    return svc


Svc = Annotated[SecretService, Depends(service)]


def to_out(meta: SecretMeta) -> SecretOut:
    return SecretOut(
        name=meta.name, version=meta.version, createdAt=listing.iso(meta.created_at),
        updatedAt=listing.iso(meta.updated_at),
    )  # fmt: skip


@router.get("", response_model=SecretList)
def list_secrets(who: Auth, svc: Svc) -> SecretList:
    """The organization's secrets by name, with their latest version."""
    return SecretList(items=[to_out(m) for m in svc.list(who.organization_id)])


@router.put("/{name}", response_model=SecretOut, responses={413: {"description": "value over 64 KiB"}})
def set_secret(name: str, body: SecretIn, who: Auth, svc: Svc) -> SecretOut:
    """Store a value: a new secret (version 1), or a new version of an existing one. Running sandboxes that
    reference it get the new value from their next command on."""
    return to_out(svc.set(who.organization_id, name, body.value))


@router.get("/{name}", response_model=SecretOut)
def get_secret(name: str, who: Auth, svc: Svc) -> SecretOut:
    """The secret's metadata (the value is never answered)."""
    return to_out(svc.get(who.organization_id, name))


@router.delete("/{name}", response_model=SecretOut, responses={409: {"description": "a sandbox uses it"}})
def delete_secret(name: str, who: Auth, svc: Svc) -> SecretOut:
    """Delete the secret and all its versions; refused (409 SECRET_IN_USE) while a sandbox references it."""
    return to_out(svc.delete(who.organization_id, name))
