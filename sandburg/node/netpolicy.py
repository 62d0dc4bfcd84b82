"""A sandbox's egress policy: pure data and matching, no I/O (unit-tested).

    mode "none"  nothing leaves the sandbox (DNS answers NXDOMAIN for every name)
    mode "all"   everything but the always-denied ranges and `deny`
    mode "list"  only `allow`: domain names (exact, or `*.example.com` for strict subdomains), and CIDRs / IPs

`deny` (CIDRs, IPs, or names) wins over `allow`. Always denied whatever the policy: link-local (169.254.0.0/16,
cloud metadata), loopback, the sandbox subnet (other sandboxes) and the host itself.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

MODES = ("none", "all", "list")
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
MAX_ENTRIES = 1000


class PolicyError(ValueError):
    """A policy entry that is neither a valid domain pattern nor a CIDR."""


def _is_cidr(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


def _domain(entry: str) -> str:
    name = entry.strip().lower().rstrip(".")
    body = name[2:] if name.startswith("*.") else name
    labels = body.split(".")
    if not body or len(body) > 253 or len(labels) < 1 or not all(_LABEL.match(lbl) for lbl in labels):
        raise PolicyError(f"{entry!r} is neither a domain name (optionally '*.'-prefixed) nor a CIDR")
    return name


@dataclass(frozen=True)
class Policy:
    mode: str = "list"
    allow_domains: tuple[str, ...] = ()
    allow_cidrs: tuple[str, ...] = ()
    deny_domains: tuple[str, ...] = ()
    deny_cidrs: tuple[str, ...] = ()

    # -- building ---------------------------------------------------------------------------------------------
    @classmethod
    def build(
        cls, mode: str, allow: list[str] | tuple[str, ...] = (), deny: list[str] | tuple[str, ...] = ()
    ) -> Policy:
        if mode not in MODES:
            raise PolicyError(f"network mode must be one of {', '.join(MODES)}, not {mode!r}")
        if len(allow) + len(deny) > MAX_ENTRIES:
            raise PolicyError(f"at most {MAX_ENTRIES} allow/deny entries")
        a_dom: list[str] = []
        a_cidr: list[str] = []
        d_dom: list[str] = []
        d_cidr: list[str] = []
        for src, doms, cidrs in ((allow, a_dom, a_cidr), (deny, d_dom, d_cidr)):
            for raw in src:
                if not isinstance(raw, str) or not raw.strip():
                    raise PolicyError(f"{raw!r}: entries must be non-empty strings")
                entry = raw.strip()
                if _is_cidr(entry):
                    net = ipaddress.ip_network(entry, strict=False)
                    if net.version != 4:
                        raise PolicyError(f"{entry!r}: only IPv4 is routed into sandboxes")
                    cidrs.append(str(net))
                else:
                    doms.append(_domain(entry))
        return cls(mode, tuple(sorted(set(a_dom))), tuple(sorted(set(a_cidr))), tuple(sorted(set(d_dom))),
                   tuple(sorted(set(d_cidr))))  # fmt: skip

    @classmethod
    def from_request(cls, network: Any, default_allow: tuple[str, ...] = ()) -> Policy:
        """`network` as the API takes it: None (the server default), "none", "all", or {"allow": [..], "deny": [..]}."""
        if network is None:
            return cls.build("list", list(default_allow))
        if isinstance(network, str):
            if network in ("none", "all"):
                return cls.build(network)
            raise PolicyError(
                f"network must be 'none', 'all' or an object with allow/deny lists, not {network!r}"
            )
        if isinstance(network, dict):
            unknown = set(network) - {"allow", "deny", "mode"}
            if unknown:
                raise PolicyError(f"network: unknown fields {sorted(unknown)}")
            allow, deny = network.get("allow") or [], network.get("deny") or []
            if not isinstance(allow, list) or not isinstance(deny, list):
                raise PolicyError("network.allow and network.deny must be lists of strings")
            return cls.build(str(network.get("mode") or "list"), allow, deny)
        raise PolicyError("network must be 'none', 'all' or an object with allow/deny lists")

    @classmethod
    def from_daytona(
        cls,
        block_all: bool | None,
        cidrs: str | None,
        domains: str | None,
        default_allow: tuple[str, ...] = (),
    ) -> Policy | None:
        """Daytona's networkBlockAll / networkAllowList (comma-separated CIDRs) / domainAllowList; None if unset."""
        if block_all:
            return cls.build("none")
        entries = [e for s in (cidrs, domains) if s for e in s.split(",") if e.strip()]
        if not entries:
            return None
        return cls.build("list", entries + list(default_allow))

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "allow": list(self.allow_domains) + list(self.allow_cidrs),
            "deny": list(self.deny_domains) + list(self.deny_cidrs),
        }

    @classmethod
    def from_json(cls, obj: Any) -> Policy:
        if not isinstance(obj, dict):
            return cls.build("none")
        return cls.build(str(obj.get("mode", "list")), obj.get("allow") or [], obj.get("deny") or [])

    # -- matching ---------------------------------------------------------------------------------------------
    def allows_name(self, name: str) -> bool:
        """May this name be resolved? Exact names, `*.x` for strict subdomains of x; deny wins."""
        name = name.lower().rstrip(".")
        if self.mode == "none" or _matches(name, self.deny_domains):
            return False
        if self.mode == "all":
            return True
        return _matches(name, self.allow_domains)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    for pattern in patterns:
        if pattern.startswith("*."):
            if name.endswith(pattern[1:]) and len(name) > len(pattern) - 1:
                return True
        elif name == pattern:
            return True
    return False
