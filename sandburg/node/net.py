"""Sandbox networking: a network namespace per sandbox, a veth into the node's bridge, nftables egress policy.

    sandbox netns (eth0 = <ip>/<prefix>, default via gateway)
        │ veth (host side: a bridge port, isolated, anti-spoofed)
    bridge <gateway> ── routed (ip_forward) ── masquerade ── the host's uplink

One nftables table per node (`inet <table>` for filtering and NAT, `bridge <table>` for anti-spoofing). The
`forward` chain sends a sandbox's new connections, by source address, to its own chain (`s_<id>`): deny CIDRs
(wins) → allowed CIDRs and addresses learned from DNS answers (`c_<id>`, `l_<id>` with timeouts) → mode → log and
reject. Always rejected before that: link-local (metadata), loopback, the sandbox subnet (other sandboxes), IPv6.
The `input` chain lets sandboxes reach only the node's resolver (gateway:53). docs/network.md has the full order.
Sandbox connections get short closing timeouts in conntrack (`ct timeout`): a closed connection's record, with its
byte counts, reaches the network log within seconds instead of after TIME_WAIT's two minutes.

Per tier: runc makes a new network namespace for the container (owned by its user namespace: sysfs cannot be
mounted in a user namespace that does not own the network namespace) and `plug(pid=...)` names and wires it right
after start; for gVisor `plug()` makes the namespace first and runsc runs in it with `--network=host`, so the
Sentry uses this namespace's kernel stack (its own netstack refuses to run here) and the same rules apply to it.
"""

from __future__ import annotations

import ctypes
import hashlib
import ipaddress
import json
import os
import subprocess
import threading
from dataclasses import dataclass

from . import priv
from .errors import NetworkError
from .netpolicy import Policy

# A refused TCP connection gets a reset (fails at once with "connection refused"); anything else an ICMP
# administratively-prohibited (EHOSTUNREACH): the host rate-limits those ICMP errors, a TCP SYN would wait ~1 s.
ALWAYS_DENIED = ("169.254.0.0/16", "127.0.0.0/8", "0.0.0.0/8", "224.0.0.0/4", "255.255.255.255/32")
LEARNED_TIMEOUT = 600  # seconds an address learned from a DNS answer stays reachable (refreshed by lookups)
LEARNED_MIN = 300
LOG_RATE = "20/second"


@dataclass(frozen=True)
class NetConfig:
    bridge: str = "sandburg0"
    subnet: str = "10.213.0.0/16"
    table: str = "sandburg"
    tag: str = "sb"  # prefix of netns names and log prefixes: tells this node's objects from another's

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def gateway(self) -> str:
        return str(self.network.network_address + 1)


def _nft(script: str, error: str, path: str | None = None) -> None:
    # One atomic transaction: either every rule of the script is in place, or none.
    priv.run(["nft", "-f", "-"], NetworkError, path=path, input=script.encode())


SANDBOX_SYSCTLS = (
    ("net/ipv4/ip_unprivileged_port_start", "0"),
    ("net/ipv4/ping_group_range", "0 2147483647"),
    ("net/ipv6/conf/all/disable_ipv6", "1"),
    ("net/ipv6/conf/default/disable_ipv6", "1"),
)
_CLONE_NEWNET = 0x40000000


def _sysctls_in(netns_path: str, settings: tuple[tuple[str, str], ...], name: str) -> None:
    """Write network sysctls of another namespace: a short-lived thread joins it (setns affects only the calling
    thread) and writes /proc/sys/net, which shows the namespace of the thread that opens it. No subprocess."""
    errors: list[str] = []

    def run() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                errors.append(f"setns: {os.strerror(ctypes.get_errno())}")
                return
        finally:
            os.close(fd)
        for key, value in settings:
            try:
                with open(f"/proc/sys/{key}", "w") as fh:
                    fh.write(value)
            except OSError as exc:
                errors.append(f"{key}: {exc.strerror}")

    t = threading.Thread(target=run, name="sandburg-netns-sysctl")
    t.start()
    t.join()  # the thread ends in the sandbox's namespace: it is never reused
    if errors:
        raise NetworkError(
            "setting the sandbox's network sysctls failed", path=name, detail="; ".join(errors)
        )


def _batch(cmds: list[str], path: str, netns: str | None = None) -> None:
    # one `ip` process for several steps (each costs ~2 ms as its own process)
    argv = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    priv.run(argv, NetworkError, path=path, input=("\n".join(cmds) + "\n").encode())


def bridge_mac(bridge: str) -> str:
    """A stable, locally administered unicast MAC for the node's bridge."""
    digest = hashlib.sha256(bridge.encode()).digest()[:5]
    return ":".join(f"{b:02x}" for b in (0x02, *digest))


def _ip(*args: str, ok_missing: bool = False) -> None:
    try:
        priv.run(["ip", *args], NetworkError, path=" ".join(args))
    except NetworkError as exc:
        if not (
            ok_missing and ("Cannot find" in str(exc) or "No such" in str(exc) or "not exist" in str(exc))
        ):
            raise


class Network:
    def __init__(self, cfg: NetConfig) -> None:
        self.cfg = cfg

    # -- names ------------------------------------------------------------------------------------------------
    def _hex(self, sid: str) -> str:
        return hashlib.sha256(f"{self.cfg.table}/{sid}".encode()).hexdigest()

    def netns_name(self, sid: str) -> str:
        return f"{self.cfg.tag}-{sid}"

    def netns_path(self, sid: str) -> str:
        return f"/run/netns/{self.netns_name(sid)}"

    def veth(self, sid: str) -> str:
        return "sv" + self._hex(sid)[:12]  # <= 15 chars, the kernel's limit

    def _ids(self, sid: str) -> tuple[str, str, str, str]:
        h = sid.replace("-", "")
        return f"s_{h}", f"c_{h}", f"d_{h}", f"l_{h}"

    # -- node-wide setup --------------------------------------------------------------------------------------
    def ensure(self) -> None:
        """Bridge, forwarding, conntrack accounting and the base tables; idempotent, keeps sandboxes' rules."""
        br, gw, net = self.cfg.bridge, self.cfg.gateway, self.cfg.network
        if not os.path.exists(f"/sys/class/net/{br}"):
            _ip("link", "add", br, "type", "bridge")
        # A bridge without an address of its own takes the lowest MAC of its ports and changes it when that port
        # goes: every other sandbox's ARP entry for the gateway then goes stale and its traffic stops for seconds
        # each time a sandbox is deleted. A fixed address (derived from the bridge's name) keeps it stable.
        _ip("link", "set", br, "address", bridge_mac(br))
        _ip("addr", "replace", f"{gw}/{net.prefixlen}", "dev", br)
        _ip("link", "set", br, "up")
        # routing for the sandboxes' allowed traffic, and byte counts per connection for the network log
        settings = (
            ("net/ipv4/ip_forward", "1"),
            ("net/netfilter/nf_conntrack_acct", "1"),
            (f"net/ipv6/conf/{br}/disable_ipv6", "1"),  # the host is not reachable over IPv6 from sandboxes
        )
        for key, value in settings:
            try:
                with open(f"/proc/sys/{key}", "w") as fh:
                    fh.write(value)
            except OSError as exc:
                raise NetworkError(f"setting {key} failed", path=key, detail=exc.strerror) from exc
        exists = subprocess.run(
            ["nft", "list", "table", "inet", self.cfg.table], capture_output=True, check=False
        )
        if exists.returncode != 0:
            _nft(self._base_script(), "base tables")

    def _base_script(self) -> str:
        t, br, gw, net, tag = self.cfg.table, self.cfg.bridge, self.cfg.gateway, self.cfg.subnet, self.cfg.tag
        denied = ", ".join(ALWAYS_DENIED + (net,))
        return f"""
table inet {t} {{
  map sandboxes {{ type ipv4_addr : verdict; }}
  ct timeout tcp_short {{
    protocol tcp; l3proto ip
    policy = {{ fin_wait: 10, close_wait: 10, last_ack: 10, time_wait: 2, close: 2 }}
  }}
  ct timeout udp_short {{
    protocol udp; l3proto ip
    policy = {{ unreplied: 10, replied: 30 }}
  }}
  chain prerouting {{
    type filter hook prerouting priority -150; policy accept;
    iifname "{br}" meta l4proto tcp ct timeout set "tcp_short"
    iifname "{br}" meta l4proto udp ct timeout set "udp_short"
  }}
  chain forward {{
    type filter hook forward priority -10; policy accept;
    iifname "{br}" oifname "{br}" reject with icmpx type admin-prohibited
    oifname "{br}" ct state established,related accept
    oifname "{br}" drop
    iifname "{br}" ct state established,related accept
    iifname "{br}" meta nfproto ipv6 reject with icmpx type admin-prohibited
    iifname "{br}" ip daddr {{ {denied} }} limit rate {LOG_RATE} log prefix "{tag} always-deny " level info
    iifname "{br}" ip daddr {{ {denied} }} meta l4proto tcp reject with tcp reset
    iifname "{br}" ip daddr {{ {denied} }} reject with icmpx type admin-prohibited
    iifname "{br}" ip saddr vmap @sandboxes
    iifname "{br}" meta l4proto tcp reject with tcp reset
    iifname "{br}" reject with icmpx type admin-prohibited
  }}
  chain input {{
    type filter hook input priority -10; policy accept;
    iifname "{br}" ct state established,related accept
    iifname "{br}" ip daddr {gw} udp dport 53 accept
    iifname "{br}" ip daddr {gw} tcp dport 53 accept
    iifname "{br}" limit rate {LOG_RATE} log prefix "{tag} host-deny " level info
    iifname "{br}" meta l4proto tcp reject with tcp reset
    iifname "{br}" reject with icmpx type admin-prohibited
  }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    ip saddr {net} oifname != "{br}" masquerade
  }}
}}
table bridge {t} {{
  # frames from this node's sandbox ports only (`ifaces`): several nodes (test servers) may share a host
  set ifaces {{ type ifname; }}
  set ports {{ type ifname . ipv4_addr; }}
  chain prerouting {{
    type filter hook prerouting priority -10; policy accept;
    iifname @ifaces ether type ip iifname . ip saddr != @ports drop
    iifname @ifaces ether type arp iifname . arp saddr ip != @ports drop
    iifname @ifaces ether type != {{ ip, arp }} drop
  }}
}}
"""

    def remove_all(self) -> None:
        """Remove the node's tables and bridge (tests and `make clean`); sandboxes must be gone first."""
        for family in ("inet", "bridge"):
            subprocess.run(
                ["nft", "delete", "table", family, self.cfg.table], capture_output=True, check=False
            )
        if os.path.exists(f"/sys/class/net/{self.cfg.bridge}"):
            _ip("link", "del", self.cfg.bridge, ok_missing=True)

    # -- per sandbox -------------------------------------------------------------------------------------------
    def plug(self, sid: str, ip: str, pid: int | None = None) -> None:
        """Wire the sandbox's network namespace to the bridge: veth, address, route. Idempotent.

        `pid` given (container tier): the namespace is the one runc made for that process, owned by the sandbox's
        user namespace; it gets a name here so that `ip -n` and the inventory find it. Without `pid` (gvisor):
        the namespace is made here, before runsc starts in it."""
        ns, veth, br, path = self.netns_name(sid), self.veth(sid), self.cfg.bridge, self.netns_path(sid)
        host = []
        if pid is not None:
            if os.path.exists(path):
                _ip("netns", "del", ns, ok_missing=True)  # a name left from an earlier run of the sandbox
            host.append(f"netns attach {ns} {pid}")
        elif not os.path.exists(path):
            host.append(f"netns add {ns}")
        if os.path.exists(f"/sys/class/net/{veth}") and (pid is not None or not os.path.exists(path)):
            # a veth of an earlier run, whose namespace the kernel is still destroying
            _ip("link", "del", veth, ok_missing=True)
        if not os.path.exists(f"/sys/class/net/{veth}"):
            host.append(f"link add {veth} type veth peer name eth0 netns {ns}")
        # isolated: the bridge forwards nothing between sandbox ports (no sandbox-to-sandbox frames at all)
        host += [f"link set {veth} master {br} up", f"link set dev {veth} type bridge_slave isolated on"]
        _batch(host, path=veth)
        # inside: loopback, the address, the default route via the node's gateway (ip -n: no shell, no mount ns)
        plen = self.cfg.network.prefixlen
        inside = [
            "link set lo up",
            f"addr replace {ip}/{plen} dev eth0",
            "link set eth0 up",
            f"route replace default via {self.cfg.gateway} dev eth0",
        ]
        _batch(inside, path=ns, netns=ns)
        # Ping sockets for every uid (root in a sandbox has no CAP_NET_RAW); no IPv6, which nothing routes out.
        # A gvisor sandbox's namespace belongs to the host's user namespace: let it bind low ports as well.
        _sysctls_in(path, SANDBOX_SYSCTLS, ns)

    def unplug(self, sid: str) -> None:
        """Remove the namespace's name (the sandbox's processes are gone); idempotent. The kernel then destroys the
        namespace, and with it both ends of the veth, in the background: `ip link del` would wait ~20 ms for it."""
        if os.path.exists(self.netns_path(sid)):
            _ip("netns", "del", self.netns_name(sid), ok_missing=True)

    def set_policy(self, sid: str, ip: str, policy: Policy, keep_learned: bool = False) -> None:
        """(Re)write the sandbox's chain and sets in one transaction; takes effect on the next new connection."""
        t, tag, veth = self.cfg.table, self.cfg.tag, self.veth(sid)
        chain, cset, dset, lset = self._ids(sid)
        # `add` of what exists is a no-op, `flush` empties it: one transaction whether the sandbox is new or not
        lines = [
            f"add chain inet {t} {chain}",
            f"add set inet {t} {cset} {{ type ipv4_addr; flags interval; auto-merge; }}",
            f"add set inet {t} {dset} {{ type ipv4_addr; flags interval; auto-merge; }}",
            f"add set inet {t} {lset} {{ type ipv4_addr; flags timeout; timeout {LEARNED_TIMEOUT}s; }}",
            f"flush chain inet {t} {chain}",
            f"flush set inet {t} {cset}",
            f"flush set inet {t} {dset}",
            *([] if keep_learned else [f"flush set inet {t} {lset}"]),
            f"add element inet {t} sandboxes {{ {ip} : jump {chain} }}",
            f"add element bridge {t} ports {{ {veth} . {ip} }}",
            f"add element bridge {t} ifaces {{ {veth} }}",
        ]
        if policy.allow_cidrs:
            lines.append(f"add element inet {t} {cset} {{ {', '.join(policy.allow_cidrs)} }}")
        if policy.deny_cidrs:
            lines.append(f"add element inet {t} {dset} {{ {', '.join(policy.deny_cidrs)} }}")
        short = sid[:8]
        log = f'limit rate {LOG_RATE} log prefix "{tag} {{what}} {short} " level info'
        lines += [
            f"add rule inet {t} {chain} ip daddr @{dset} {log.format(what='deny')}",
            f"add rule inet {t} {chain} ip daddr @{dset} meta l4proto tcp reject with tcp reset",
            f"add rule inet {t} {chain} ip daddr @{dset} reject with icmpx type admin-prohibited",
        ]
        if policy.mode == "all":
            lines += [
                f"add rule inet {t} {chain} {log.format(what='allow')}",
                f"add rule inet {t} {chain} accept",
            ]
        elif policy.mode == "list":
            for s in (cset, lset):
                lines += [
                    f"add rule inet {t} {chain} ip daddr @{s} {log.format(what='allow')}",
                    f"add rule inet {t} {chain} ip daddr @{s} accept",
                ]
        lines += [
            f"add rule inet {t} {chain} {log.format(what='deny')}",
            f"add rule inet {t} {chain} meta l4proto tcp reject with tcp reset",
            f"add rule inet {t} {chain} reject with icmpx type admin-prohibited",
        ]
        _nft("\n".join(lines) + "\n", "sandbox rules", path=chain)

    def learn(self, sid: str, ips: list[str], ttl: int = LEARNED_TIMEOUT) -> None:
        """Make addresses from an allowed DNS answer reachable for `ttl` seconds."""
        ips = [i for i in ips if _is_v4(i)]
        if not ips:
            return
        _, _, _, lset = self._ids(sid)
        ttl = max(LEARNED_MIN, min(ttl, 86400))  # programs cache answers longer than short CDN TTLs
        t, plain = self.cfg.table, ", ".join(ips)
        elems = ", ".join(f"{i} timeout {ttl}s" for i in ips)
        # add (a no-op if present), delete, add again, in one transaction: a repeated lookup restarts the timeout
        script = (
            f"add element inet {t} {lset} {{ {plain} }}\ndelete element inet {t} {lset} {{ {plain} }}\n"
            f"add element inet {t} {lset} {{ {elems} }}\n"
        )
        _nft(script, "learned addresses", path=lset)

    def detach(self, sid: str, ip: str | None) -> None:
        """Remove the sandbox's rules, sets, veth and namespace; idempotent."""
        t = self.cfg.table
        chain, cset, dset, lset = self._ids(sid)
        lines = []
        ip = ip or self._ip_of_chain(chain)
        if ip:
            lines += [
                f"delete element inet {t} sandboxes {{ {ip} }}",
                f"delete element bridge {t} ports {{ {self.veth(sid)} . {ip} }}",
            ]
        lines.append(f"delete element bridge {t} ifaces {{ {self.veth(sid)} }}")
        lines += [
            f"delete chain inet {t} {chain}",
            f"delete set inet {t} {cset}",
            f"delete set inet {t} {dset}",
            f"delete set inet {t} {lset}",
        ]
        whole = subprocess.run(
            ["nft", "-f", "-"], input="\n".join(lines).encode(), capture_output=True, check=False
        )
        if whole.returncode != 0:
            for stmt in lines:
                # each on its own: after a crash any of them may already be gone
                subprocess.run(["nft", stmt], capture_output=True, check=False)
        self.unplug(sid)

    def _ip_of_chain(self, chain: str) -> str | None:
        """The address whose map entry jumps to `chain` (a delete after a crash does not know it)."""
        out = subprocess.run(
            ["nft", "-j", "list", "map", "inet", self.cfg.table, "sandboxes"],
            capture_output=True,
            check=False,
        )
        try:
            data = json.loads(out.stdout or b"{}")
            for item in data.get("nftables", []):
                for key, verdict in item.get("map", {}).get("elem", []):
                    if verdict.get("jump", {}).get("target") == chain:
                        return str(key)
        except (ValueError, AttributeError, TypeError):
            return None
        return None

    # -- inventory ---------------------------------------------------------------------------------------------
    def sandbox_ids(self) -> set[str]:
        """Ids of sandboxes with a namespace of this node (named <tag>-<id>)."""
        prefix = self.cfg.tag + "-"
        try:
            return {n[len(prefix) :] for n in os.listdir("/run/netns") if n.startswith(prefix)}
        except FileNotFoundError:
            return set()

    def chain_ids(self) -> set[str]:
        """Ids of sandboxes with a chain in this node's table."""
        out = set()
        for name in self.chains():
            h = name[2:]
            if len(h) == 32:
                out.add(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
        return out

    def chains(self) -> set[str]:
        out = subprocess.run(
            ["nft", "list", "chains", "inet"], capture_output=True, text=True, check=False
        ).stdout
        names, in_table = set(), False
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("table inet "):
                in_table = line.split()[2] == self.cfg.table
            elif in_table and line.startswith("chain s_"):
                names.add(line.split()[1])
        return names


def _is_v4(value: str) -> bool:
    try:
        return ipaddress.ip_address(value).version == 4
    except ValueError:
        return False
