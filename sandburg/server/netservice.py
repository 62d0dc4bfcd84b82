"""Sandbox networking on the server side: addresses, policies, the resolver, and the network records.

The node (node/net.py) owns the kernel objects; this service owns what ties them to sandboxes:

- an address per sandbox from the node's subnet (stored in the row, unique), kept for the sandbox's life;
- the egress policy (node/netpolicy.py) from the create request or Daytona's fields, stored in the row and
  applied to the node's nftables chain at create and on every update (no restart);
- the index `address -> (sandbox, organization, policy)` that the resolver (resolver.py) consults per query:
  a name the policy allows is forwarded upstream and the addresses in the answer are made reachable *before*
  the answer is sent; any other name gets NXDOMAIN;
- the network records, all into the one event pipeline (events.py): DNS answers from the resolver, allowed and
  denied connection attempts from the nftables log (kernel log), ended connections with bytes from conntrack.
  Everything is observed on the host, never from inside the sandbox.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import threading
import time
from typing import Any

from .._codes import ErrorCode
from ..node.net import Network
from ..node.netpolicy import Policy, PolicyError
from .config import Settings
from .errors import ApiError
from .events import ConnRecord, ConntrackReader, EventLog, KmsgReader, NftRecord
from .resolver import Resolver, parse_upstreams, upstreams_from_resolv_conf
from .schemas import CreateSandbox, NetworkPolicyIn

log = logging.getLogger("sandburg.server")
SWEEP_INTERVAL = (
    5.0  # seconds: how late a closed connection's record may be at most (plus conntrack's timeouts)
)


class NetService:
    def __init__(self, settings: Settings, network: Network, events: EventLog) -> None:
        self.settings = settings
        self.network = network
        self.events = events
        self._index: dict[str, tuple[str, str, Policy]] = {}  # ip -> (sandbox id, organization id, policy)
        self._by_id: dict[str, str] = {}  # sandbox id -> ip
        self._lock = threading.Lock()
        self.resolver: Resolver | None = None
        self._stop = threading.Event()
        self._kmsg = KmsgReader(settings.net_tag, self._on_nft)
        self._conntrack = ConntrackReader(settings.net_subnet, self._on_conn)

    # -- lifecycle of the service ----------------------------------------------------------------------------
    async def start(self) -> None:
        upstreams = (
            parse_upstreams(self.settings.dns_upstream)
            if self.settings.dns_upstream
            else upstreams_from_resolv_conf()
        )
        self.resolver = Resolver(self.network.cfg.gateway, 53, upstreams, self.lookup, self.learn, self.emit)
        await self.resolver.start()
        self._kmsg.start()
        self._conntrack.start()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="sandburg-ct-sweep", daemon=True)
        self._sweeper.start()

    def _sweep_loop(self) -> None:
        while not self._stop.wait(SWEEP_INTERVAL):
            self._conntrack.sweep()

    def sweep(self) -> None:
        """Closed connections' records into the log now (the network log calls this before it reads)."""
        self._conntrack.sweep()
        time.sleep(0.05)  # the kernel's DESTROY events reach the reader thread

    async def close(self) -> None:
        self._stop.set()
        if self.resolver is not None:
            await self.resolver.close()
        self._kmsg.close()
        self._conntrack.close()

    # -- policies --------------------------------------------------------------------------------------------
    def policy_for_create(self, req: CreateSandbox) -> Policy:
        """`network` (sandburg), else Daytona's networkBlockAll / networkAllowList / domainAllowList, else the
        server's default allowlist. `all` is only ever what a caller asked for."""
        default = self.settings.network_default_allow
        try:
            if req.network is not None:
                if isinstance(req.network, str):
                    return Policy.from_request(req.network, default)
                return self.policy_from_body(req.network)
            daytona = Policy.from_daytona(
                req.networkBlockAll, req.networkAllowList, req.domainAllowList, default
            )
            return daytona or Policy.from_request(None, default)
        except PolicyError as exc:
            raise ApiError(ErrorCode.VALIDATION_ERROR, f"network: {exc}") from exc

    @staticmethod
    def policy_from_body(body: NetworkPolicyIn) -> Policy:
        try:
            return Policy.build(body.mode, body.allow, body.deny)
        except PolicyError as exc:
            raise ApiError(ErrorCode.VALIDATION_ERROR, f"network: {exc}") from exc

    @staticmethod
    def policy_from_daytona(block_all: bool | None, cidrs: str | None, domains: str | None) -> Policy:
        """Daytona's network-settings call: block all, or the allow lists; `networkBlockAll: false` alone is an
        explicit request for full access."""
        try:
            policy = Policy.from_daytona(block_all, cidrs, domains)
        except PolicyError as exc:
            raise ApiError(ErrorCode.VALIDATION_ERROR, f"network: {exc}") from exc
        return policy or Policy.build("all")

    def apply(self, sid: str, org_id: str, ip: str, old: Policy | None, new: Policy) -> None:
        """Write `new` to the node (atomically) and the index. Learned addresses are kept unless the update takes
        away a name (or adds a deny): then they go, and allowed names are learned again at their next lookup."""
        keep = old is not None and set(old.allow_domains) <= set(new.allow_domains) and not (
            set(new.deny_domains) - set(old.deny_domains)
        ) and new.mode == old.mode  # fmt: skip
        self.network.set_policy(sid, ip, new, keep_learned=keep)
        self.register(sid, org_id, ip, new)

    # -- addresses -------------------------------------------------------------------------------------------
    def allocate(self, used: set[str]) -> str:
        """A free address of the subnet (not the network, gateway or broadcast address)."""
        net = self.network.cfg.network
        first, last = int(net.network_address) + 2, int(net.broadcast_address) - 1
        if last < first:
            raise ApiError(ErrorCode.INVALID_RESOURCES, f"subnet {net} has no room for sandboxes")
        for _ in range(64):
            ip = str(ipaddress.IPv4Address(random.randint(first, last)))
            if ip not in used:
                return ip
        for n in range(first, last + 1):  # nearly full: look at every address
            ip = str(ipaddress.IPv4Address(n))
            if ip not in used:
                return ip
        raise ApiError(ErrorCode.INVALID_RESOURCES, f"no free address left in {net}")

    def register(self, sid: str, org_id: str, ip: str, policy: Policy) -> None:
        with self._lock:
            self._index[ip] = (sid, org_id, policy)
            self._by_id[sid] = ip

    def forget(self, sid: str) -> None:
        with self._lock:
            ip = self._by_id.pop(sid, None)
            if ip is not None:
                self._index.pop(ip, None)

    def ip_of(self, sid: str) -> str | None:
        with self._lock:
            return self._by_id.get(sid)

    # -- callbacks of the resolver and the readers -------------------------------------------------------------
    def lookup(self, ip: str) -> tuple[str, Policy] | None:
        with self._lock:
            hit = self._index.get(ip)
        return (hit[0], hit[2]) if hit else None

    def learn(self, sid: str, ips: list[str], ttl: int) -> None:
        self.network.learn(sid, ips, ttl)

    def emit(self, sid: str, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            ip = self._by_id.get(sid)
            hit = self._index.get(ip) if ip else None
        if hit is not None:
            self.events.emit(hit[1], sid, kind, data)

    def _owner(self, ip: str) -> tuple[str, str] | None:
        with self._lock:
            hit = self._index.get(ip)
        return (hit[0], hit[1]) if hit else None

    def _on_nft(self, rec: NftRecord) -> None:
        owner = self._owner(rec.src)
        if owner is None:
            return
        kind = "allow" if rec.verdict == "allow" else "deny"
        data: dict[str, Any] = {"proto": rec.proto, "dst": rec.dst, "dport": rec.dport, "sport": rec.sport}
        if rec.verdict in ("always-deny", "host-deny"):
            data["reason"] = {"always-deny": "always denied range", "host-deny": "the node itself"}[
                rec.verdict
            ]
        if rec.icmp_type is not None:
            data["icmpType"] = rec.icmp_type
        self.events.emit(owner[1], owner[0], kind, data)

    def _on_conn(self, rec: ConnRecord) -> None:
        owner = self._owner(rec.src)
        if owner is None:
            return
        self.events.emit(
            owner[1], owner[0], "conn",
            {"proto": rec.proto, "dst": rec.dst, "dport": rec.dport, "sport": rec.sport, "bytesOut": rec.bytes_out,
             "bytesIn": rec.bytes_in, "packetsOut": rec.packets_out, "packetsIn": rec.packets_in},
        )  # fmt: skip
