"""Network isolation end to end, on both tiers, against the fake internet (tests/_support/fakenet.py).

Every check that something is blocked aims at an address inside the fake internet's namespace (or the node's own
gateway), is paired with the same tool against an allowed target in the same test, and asserts the error it
expects: NXDOMAIN (getent exit 2), "connection refused" (TCP, the node answers a reset), EHOSTUNREACH or silence
(UDP and ICMP: the node answers ICMP admin-prohibited, which gVisor's host network mode does not pass up).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from sandburg import Sandbox
from sandburg.node.agent_client import AgentClient, Endpoint
from tests._support.fakenet import FakeNet
from tests._support.host import net_for
from tests._support.server import ServerProcess

TIERS = ["container", "gvisor"]

# A probe run inside the sandbox with its python3: tcp/udp/icmp to one address, prints one JSON line.
PROBE = r"""
import json, socket, sys, time, errno
kind, addr = sys.argv[1], sys.argv[2]
def out(**kw): print(json.dumps(kw)); sys.exit(0)
try:
    if kind == "tcp":
        s = socket.create_connection((addr, 80), timeout=3)
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n"); data = s.recv(200)
        out(ok=True, data=data.decode(errors="replace"))
    if kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); s.connect((addr, 7))
        s.send(b"ping"); s.send(b"ping"); out(ok=s.recv(100) == b"ping")
    if kind == "icmp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP); s.settimeout(3)
        s.connect((addr, 0)); s.send(b"\x08\x00\x00\x00\x00\x01\x00\x01" + b"x" * 16)
        s.send(b"\x08\x00\x00\x00\x00\x01\x00\x02" + b"x" * 16)
        out(ok=s.recv(100)[0] == 0)
except socket.timeout:
    out(ok=False, error="timeout")
except OSError as e:
    out(ok=False, error=errno.errorcode.get(e.errno, str(e)))
"""


def sh(box: Sandbox, command: str, timeout: float = 30) -> tuple[int, str]:
    r = box.process.exec(command, timeout=timeout)
    return r.exit_code, r.result


def probe(box: Sandbox, kind: str, addr: str) -> dict[str, Any]:
    code, out = sh(box, f"python3 -c '{PROBE}' {kind} {addr}")
    assert code == 0, out
    return dict(json.loads(out.strip().splitlines()[-1]))


def resolve(box: Sandbox, name: str) -> tuple[int, str]:
    """getent: exit 0 and the address, or exit 2 for a name that does not exist (NXDOMAIN)."""
    code, out = sh(box, f"getent ahostsv4 {name} | head -1")
    code2, _ = sh(box, f"getent hosts {name} >/dev/null")
    return code2, (out.split()[0] if code == 0 and out.strip() else "")


def curl(box: Sandbox, target: str) -> tuple[int, str]:
    """curl's exit code (0 ok, 6 could not resolve, 7 refused, 28 timeout) and the body."""
    return sh(box, f"curl -sS -m 5 http://{target}/ 2>&1")


def blocked(result: dict[str, Any]) -> bool:
    return not result["ok"] and result.get("error") in ("ECONNREFUSED", "EHOSTUNREACH", "timeout")


@pytest.fixture(params=TIERS)
def tier(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def netbox(make_box: Callable[..., Sandbox], tier: str, fake_internet: FakeNet) -> Callable[..., Sandbox]:
    fake_internet.check()

    def make(network: Any) -> Sandbox:
        return make_box(image="debian-12", isolation=tier, network=network)

    return make


def test_allowed_names_resolve_and_connect_other_names_do_not(
    netbox: Callable[..., Sandbox], fake_internet: FakeNet
) -> None:
    box = netbox({"allow": ["allowed.test", "*.wild.test"]})
    assert box.network_policy is not None and box.network_policy.mode == "list"
    code, addr = resolve(box, "allowed.test")
    assert (code, addr) == (0, fake_internet.addr("allowed.test"))
    assert curl(box, "allowed.test") == (0, "hello from allowed.test\n")
    # wildcard: strict subdomains only
    assert curl(box, "sub.wild.test") == (0, "hello from sub.wild.test\n")
    for name in ("other.test", "wild.test", "wild.test.evil.test"):
        assert resolve(box, name)[0] == 2, f"{name} must not resolve (NXDOMAIN)"
        assert curl(box, name)[0] == 6, f"curl {name}: could not resolve"


def test_direct_ips_of_denied_hosts_are_unreachable(
    netbox: Callable[..., Sandbox], fake_internet: FakeNet
) -> None:
    box = netbox({"allow": ["allowed.test"]})
    ok, other = fake_internet.addr("allowed.test"), fake_internet.addr("other.test")
    assert resolve(box, "allowed.test") == (0, ok)  # learns the allowed address
    for kind in ("tcp", "udp", "icmp"):
        good = probe(box, kind, ok)
        assert good["ok"], (kind, good)  # positive control: the tool works and the path is open
        bad = probe(box, kind, other)
        assert blocked(bad), (kind, bad)
    assert probe(box, "tcp", other)["error"] == "ECONNREFUSED"


def test_cidr_allow_and_deny_deny_wins(netbox: Callable[..., Sandbox], fake_internet: FakeNet) -> None:
    denied = fake_internet.addr("denied.test")
    box = netbox({"allow": [fake_internet.subnet], "deny": [f"{denied}/32"]})
    assert curl(box, fake_internet.addr("other.test")) == (0, "hello from other.test\n")
    assert probe(box, "tcp", denied)["error"] == "ECONNREFUSED"
    # names are not allowed by a CIDR: the resolver answers NXDOMAIN
    assert resolve(box, "other.test")[0] == 2


def test_policy_update_takes_effect_on_a_running_sandbox(
    netbox: Callable[..., Sandbox], fake_internet: FakeNet
) -> None:
    box = netbox("none")
    target = fake_internet.addr("other.test")
    assert curl(box, target)[0] == 7
    assert resolve(box, "allowed.test")[0] == 2
    policy = box.network.update(allow=[fake_internet.subnet, "allowed.test"])
    assert policy.mode == "list" and fake_internet.subnet in policy.allow
    assert curl(box, target) == (0, "hello from other.test\n")
    assert curl(box, "allowed.test") == (0, "hello from allowed.test\n")
    box.network.block_all()
    assert curl(box, target)[0] == 7
    assert curl(box, "allowed.test")[0] == 6


def test_sandboxes_cannot_reach_each_other(netbox: Callable[..., Sandbox], fake_internet: FakeNet) -> None:
    a, b = netbox("all"), netbox("all")
    b.process.exec("nohup python3 -m http.server 8080 >/dev/null 2>&1 &", timeout=10)
    b_ip = sh(b, "hostname -I")[1].split()[0]
    deadline = time.monotonic() + 10
    while sh(b, "curl -s -o /dev/null -m 2 http://127.0.0.1:8080/")[0] != 0:  # B's server is up (control)
        assert time.monotonic() < deadline, "the server in B did not come up"
        time.sleep(0.2)
    assert curl(a, fake_internet.addr("other.test"))[0] == 0  # A reaches the internet (control)
    assert curl(a, f"{b_ip}:8080")[0] == 7  # but not B


def test_sandbox_cannot_reach_the_host(
    netbox: Callable[..., Sandbox], fake_internet: FakeNet, server: ServerProcess
) -> None:
    box = netbox("all")
    gateway = sh(box, "ip route show default")[1].split()[2]
    assert curl(box, fake_internet.addr("allowed.test"))[0] == 0  # control: mode all reaches the internet
    assert curl(box, f"{gateway}:{server.port}")[0] == 7  # the API port, on the node's bridge address
    host_side = fake_internet.subnet.replace(
        ".0/24", ".1"
    )  # the host's own address towards the fake internet
    assert curl(box, host_side)[0] == 7
    assert blocked(probe(box, "tcp", "169.254.169.254"))  # metadata address: always denied, never leaves


def test_network_log_records_dns_denials_and_bytes(
    netbox: Callable[..., Sandbox], fake_internet: FakeNet
) -> None:
    box = netbox({"allow": ["allowed.test"]})
    assert sh(box, "curl -sS -m 5 -o /dev/null http://allowed.test/bytes/50000")[0] == 0
    assert resolve(box, "other.test")[0] == 2
    assert probe(box, "tcp", fake_internet.addr("other.test"))["error"] == "ECONNREFUSED"
    events: list[Any] = []
    deadline = time.monotonic() + 20  # the connection's record comes once conntrack forgets it (seconds)
    while time.monotonic() < deadline:
        events = list(box.network.log(limit=200))
        if any(e.kind == "conn" and e.data.get("bytesIn", 0) > 50000 for e in events):
            break
        time.sleep(0.5)
    dns = [e for e in events if e.kind == "dns"]
    assert any(e.data["name"] == "allowed.test" and e.data["allowed"] for e in dns), dns
    assert any(e.data["name"] == "other.test" and e.data["rcode"] == "NXDOMAIN" for e in dns), dns
    assert any(e.kind == "allow" and e.data["dst"] == fake_internet.addr("allowed.test") for e in events), (
        events
    )
    assert any(e.kind == "deny" and e.data["dst"] == fake_internet.addr("other.test") for e in events), events
    conns = [e for e in events if e.kind == "conn" and e.data["dst"] == fake_internet.addr("allowed.test")]
    assert any(c.data["bytesIn"] > 50000 and c.data["dport"] == 80 for c in conns), [
        e for e in events if e.kind != "dns"
    ]


def test_preview_url_needs_its_token(netbox: Callable[..., Sandbox], server: ServerProcess) -> None:
    box = netbox("none")
    box.process.exec("mkdir -p /srv && echo preview-ok > /srv/index.html", timeout=10)
    box.process.exec("cd /srv && nohup python3 -m http.server 8000 >/dev/null 2>&1 &", timeout=10)
    preview = box.preview_url(8000)
    deadline = time.monotonic() + 10
    while True:
        r = httpx.get(preview.url + "/index.html", headers=preview.headers, timeout=5)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (r.status_code, r.text) == (200, "preview-ok\n")
    denied = httpx.get(preview.url + "/index.html", timeout=5)
    assert denied.status_code == 401 and denied.json()["code"] == "UNAUTHORIZED"
    wrong = httpx.get(preview.url + "/index.html", headers={"x-daytona-preview-token": "x" * 32}, timeout=5)
    assert wrong.status_code == 401


def test_rules_survive_a_server_restart(
    netbox: Callable[..., Sandbox], fake_internet: FakeNet, server: ServerProcess
) -> None:
    box = netbox({"allow": ["allowed.test"]})
    ok, other = fake_internet.addr("allowed.test"), fake_internet.addr("other.test")
    assert resolve(box, "allowed.test") == (0, ok)
    netns = f"{net_for(server.data_dir).tag}-{box.id}"
    server.stop()
    try:
        # while the server is down the kernel still enforces the policy: curl from the sandbox's namespace
        # (container) or, gVisor's netstack holding the address, from the sandbox through its agent directly
        def host_curl(addr: str) -> int:
            argv = ["curl", "-s", "-o", "/dev/null", "-m", "5", f"http://{addr}/"]
            if box.isolation == "gvisor":
                bundle = os.path.join(server.data_dir, "sandboxes", box.id)
                with open(os.path.join(bundle, "agent.json")) as fh:
                    endpoint = Endpoint(**json.load(fh))

                async def run() -> int:
                    async with AgentClient(endpoint) as agent:
                        return (await agent.exec(argv=argv, timeout=10)).exit_code

                return asyncio.run(run())
            argv = ["ip", "netns", "exec", netns, *argv]
            return subprocess.run(argv, capture_output=True, check=False).returncode

        assert host_curl(ok) == 0
        assert host_curl(other) == 7
    finally:
        server.start()
    assert curl(box, ok) == (0, "hello from allowed.test\n")  # the learned address is still allowed
    assert probe(box, "tcp", other)["error"] == "ECONNREFUSED"
    assert curl(box, "allowed.test") == (0, "hello from allowed.test\n")
    assert resolve(box, "other.test")[0] == 2
