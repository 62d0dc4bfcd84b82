from __future__ import annotations

from fastapi import APIRouter

from ..._version import __version__
from ..schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health() -> Health:
    """Liveness; needs no API key."""
    return Health(status="ok", version=__version__)
