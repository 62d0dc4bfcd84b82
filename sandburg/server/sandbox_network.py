"""The network operations of the sandbox service: policy updates, the network log, preview targets.

A mixin of `SandboxService` (sandboxes.py), which owns the rows, the locks and the node; `NetService`
(netservice.py) owns addresses, the resolver's index and the network records.
"""

from __future__ import annotations

import builtins
import threading
from typing import TYPE_CHECKING, Any

from .._codes import ErrorCode
from ..node.errors import NodeError
from ..node.netpolicy import Policy
from .db import Sandbox, utcnow
from .errors import ApiError
from .schemas import NetworkPolicyIn

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from .netservice import NetService


class NetworkOps:
    net: NetService | None
    sessions: sessionmaker[Session]
    live: dict[str, Any]

    def get(self, org_id: str, id_or_name: str) -> Sandbox:
        raise NotImplementedError

    def _lock(self, sid: str) -> threading.Lock:
        raise NotImplementedError

    def _net(self) -> NetService:
        if self.net is None:
            raise ApiError(ErrorCode.NOT_IMPLEMENTED, "networking is off on this server")
        return self.net

    def set_network(self, org_id: str, id_or_name: str, policy: Policy, **daytona: Any) -> Sandbox:
        """Replace the sandbox's egress policy; a running sandbox gets it at its next new connection."""
        net = self._net()
        sid = self.get(org_id, id_or_name).id
        with self._lock(sid):
            row = self.get(org_id, sid)
            if row.state in ("creating", "destroying") or not row.ip:
                raise ApiError(ErrorCode.SANDBOX_BUSY, f"sandbox is {row.state}")
            try:
                net.apply(sid, org_id, row.ip, Policy.from_json(row.network), policy)
            except NodeError as exc:
                raise ApiError(
                    ErrorCode.RUNTIME_ERROR, f"network policy could not be applied: {exc}"
                ) from exc
            with self.sessions() as s:
                r = s.get(Sandbox, sid)
                assert r is not None
                r.network = policy.to_json()
                r.network_block_all = policy.mode == "none"
                extra = {**(r.extra or {}), **daytona}
                r.extra = {k: v for k, v in extra.items() if v is not None}
                r.updated_at = utcnow()
                s.commit()
                return r

    def net_policy_from_daytona(self, block_all: bool, cidrs: str | None, domains: str | None) -> Policy:
        return self._net().policy_from_daytona(block_all, cidrs, domains)

    def net_policy_from_body(self, body: NetworkPolicyIn) -> Policy:
        return self._net().policy_from_body(body)

    def network_log(
        self, sid: str, *, since: int, limit: int, kinds: builtins.list[str]
    ) -> builtins.list[dict[str, Any]]:
        if self.net is None:
            return []
        self.net.sweep()
        self.net.events.flush(timeout=2.0)  # what happened before the call is in the answer
        return self.net.events.query(sid, since_id=since, limit=limit, kinds=kinds or None)

    def preview_target(self, sid: str) -> str | None:
        """The address of a started sandbox, for the preview proxy."""
        if sid not in self.live or self.net is None:
            return None
        return self.net.ip_of(sid)
