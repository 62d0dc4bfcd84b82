"""/api/volumes: the organization's persistent volumes (docs/volumes.md), on Daytona's paths and DTO."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from .. import listing
from ..auth import Principal, authenticate
from ..db import Volume
from ..schemas import VolumeIn, VolumeOut
from ..volumes import VolumeService

router = APIRouter(prefix="/volumes", tags=["volumes"])
Auth = Annotated[Principal, Depends(authenticate)]


def service(request: Request) -> VolumeService:
    svc: VolumeService = request.app.state.volumes
    return svc


Svc = Annotated[VolumeService, Depends(service)]


def to_out(row: Volume, svc: VolumeService, users: list[str] | None = None) -> VolumeOut:
    return VolumeOut(
        id=row.id, name=row.name, organizationId=row.organization_id, state=row.state,
        createdAt=listing.iso(row.created_at), updatedAt=listing.iso(row.updated_at),
        lastUsedAt=listing.iso(row.last_used_at) if row.last_used_at else None, errorReason=row.error_reason,
        sizeMiB=row.size_mib, usedBytes=svc.host.usage(row.id),
        sandboxes=svc.users(row.id) if users is None else users,
    )  # fmt: skip


@router.get("", response_model=list[VolumeOut])
def list_volumes(
    who: Auth,
    svc: Svc,
    includeDeleted: Annotated[bool, Query(description="Daytona's; none are kept")] = False,
) -> list[VolumeOut]:
    """The organization's volumes, oldest first (a JSON array, as Daytona answers)."""
    return [to_out(r, svc) for r in svc.list(who.organization_id)]


@router.post("", response_model=VolumeOut, responses={409: {"description": "the name is taken"}})
def create_volume(body: VolumeIn, who: Auth, svc: Svc) -> VolumeOut:
    """Create an encrypted volume of `sizeMiB` (default 10 GiB, sparse on the host); answers it `ready`."""
    return to_out(svc.create(who.organization_id, body.name, body.sizeMiB), svc, [])


@router.get("/by-name/{name}", response_model=VolumeOut)
def get_volume_by_name(name: str, who: Auth, svc: Svc) -> VolumeOut:
    """The volume named `name`."""
    return to_out(svc.get(who.organization_id, name), svc)


@router.get("/{volumeId}", response_model=VolumeOut)
def get_volume(volumeId: str, who: Auth, svc: Svc) -> VolumeOut:  # noqa: N803 - Daytona's path parameter
    """The volume with this id (or name)."""
    return to_out(svc.get(who.organization_id, volumeId), svc)


@router.delete(
    "/{volumeId}", response_model=VolumeOut, responses={409: {"description": "a sandbox mounts it"}}
)
def delete_volume(volumeId: str, who: Auth, svc: Svc) -> VolumeOut:  # noqa: N803 - Daytona's path parameter
    """Delete the volume and its data; refused (409 VOLUME_IN_USE) while any sandbox mounts it."""
    return to_out(svc.delete(who.organization_id, volumeId), svc, [])
