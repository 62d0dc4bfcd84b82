"""A sandbox's egress policy and network records: `GET|PUT /sandbox/{id}/network`, `GET .../network/log`.

The policy takes effect on a running sandbox at its next new connection (established ones are kept); the log is
the sandbox's part of the event pipeline (events.py): DNS answers, allowed and denied connection attempts, and
ended connections with their bytes, all recorded on the host. docs/network.md.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ..schemas import NetworkLog, NetworkPolicyIn, NetworkPolicyOut
from .sandbox import Auth, Svc

router = APIRouter(tags=["network"])
LOG_KINDS = ("dns", "allow", "deny", "conn")


@router.get("/sandbox/{sandbox_id_or_name}/network", response_model=NetworkPolicyOut)
def get_network(sandbox_id_or_name: str, who: Auth, svc: Svc) -> NetworkPolicyOut:
    row = svc.get(who.organization_id, sandbox_id_or_name)
    return NetworkPolicyOut(**(row.network or {"mode": "none", "allow": [], "deny": []}))


@router.put("/sandbox/{sandbox_id_or_name}/network", response_model=NetworkPolicyOut)
def set_network(sandbox_id_or_name: str, body: NetworkPolicyIn, who: Auth, svc: Svc) -> NetworkPolicyOut:
    """Replace the policy: `mode` none | all | list, `allow` and `deny` entries (names, `*.names`, CIDRs)."""
    policy = svc.net_policy_from_body(body)
    row = svc.set_network(who.organization_id, sandbox_id_or_name, policy)
    return NetworkPolicyOut(**row.network)


@router.get("/sandbox/{sandbox_id_or_name}/network/log", response_model=NetworkLog)
def network_log(
    sandbox_id_or_name: str,
    who: Auth,
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    since: Annotated[
        int, Query(ge=0, description="only records after this id (nextSince of a previous call)")
    ] = 0,
    kind: Annotated[list[str] | None, Query(description="dns, allow, deny, conn")] = None,
) -> NetworkLog:
    row = svc.get(who.organization_id, sandbox_id_or_name)
    events = svc.network_log(
        row.id, since=since, limit=limit, kinds=[k for k in kind or [] if k in LOG_KINDS]
    )
    return NetworkLog(events=events, nextSince=max([since, *(int(e["id"]) for e in events)]))
