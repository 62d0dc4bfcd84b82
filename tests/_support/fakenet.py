"""A fake internet for the network tests: a network namespace of the test's own, routed from the host.

    host ── veth 198.18.N.1/24 ── [fakenet netns] 198.18.N.2 (DNS), .10 allowed.test, .11 other.test,
                                                  .12 sub.wild.test, .13 wild.test.evil.test, .14 denied.test,
                                                  .15 mirror.test

Every name serves HTTP on port 80 and a UDP echo on port 7, and answers ping. The server's resolver uses the
namespace's DNS as its upstream (SANDBURG_DNS_UPSTREAM). Tests that check that something is blocked aim only at
these addresses (never at one outside the namespace), each paired with the same tool against an allowed one.

mirror.test's HTTP server is the package mirror that `make mirror` fills (tests/_support/mirror.py): what image
builds install comes from there, never from a public registry.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from dataclasses import dataclass

from tests._support.mirror import MIRROR_DIR

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = ("allowed.test", "other.test", "sub.wild.test", "wild.test.evil.test", "denied.test", "mirror.test")


@dataclass
class FakeNet:
    netns: str
    veth: str
    prefix: str  # "198.18.N"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def dns(self) -> str:
        return f"{self.prefix}.2"

    @property
    def zone(self) -> dict[str, str]:
        return {name: f"{self.prefix}.{10 + i}" for i, name in enumerate(NAMES)}

    def addr(self, name: str) -> str:
        return self.zone[name]

    @property
    def subnet(self) -> str:
        return f"{self.prefix}.0/24"

    def check(self) -> None:
        """The fake internet is still up: its servers run and the host still routes to it."""
        assert self.proc is not None and self.proc.poll() is None, (
            f"fake internet servers exited: {self.proc}"
        )
        assert os.path.exists(f"/run/netns/{self.netns}"), f"namespace {self.netns} is gone"
        assert os.path.exists(f"/sys/class/net/{self.veth}"), f"veth {self.veth} is gone"
        r = subprocess.run(
            ["curl", "-s", "-m", "3", f"http://{self.addr('allowed.test')}/"], capture_output=True
        )
        assert r.returncode == 0, f"the host cannot reach the fake internet: curl exit {r.returncode}"


_starts = itertools.count()


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def start() -> FakeNet:
    # unique per start, not only per process: `pytest tests` runs the e2e session's and the integration tests'
    # fake internets in one process, at the same time
    pid, k = os.getpid(), next(_starts)
    n = (pid + 97 * k) % 250 + 1
    net = FakeNet(netns=f"sbfake-{pid}-{k}", veth=f"sbf{pid}x{k}"[:15], prefix=f"198.18.{n}")
    try:
        _run("ip", "netns", "add", net.netns)
        _run("ip", "link", "add", net.veth, "type", "veth", "peer", "name", "eth0", "netns", net.netns)
        _run("ip", "addr", "add", f"{net.prefix}.1/24", "dev", net.veth)
        _run("ip", "link", "set", net.veth, "up")
        inside = ["ip", "netns", "exec", net.netns]
        _run(*inside, "ip", "link", "set", "lo", "up")
        _run(*inside, "ip", "addr", "add", f"{net.dns}/24", "dev", "eth0")
        for addr in net.zone.values():
            _run(*inside, "ip", "addr", "add", f"{addr}/32", "dev", "eth0")
        _run(*inside, "ip", "link", "set", "eth0", "up")
        _run(*inside, "ip", "route", "add", "default", "via", f"{net.prefix}.1")
        net.proc = subprocess.Popen(
            [
                *inside,
                sys.executable,
                os.path.join(HERE, "fakenet_serve.py"),
                json.dumps(net.zone),
                net.dns,
                MIRROR_DIR,
            ],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert net.proc.stdout is not None
        if net.proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("the fake internet's servers did not start")
    except BaseException:
        stop(net)
        raise
    return net


def stop(net: FakeNet) -> None:
    if net.proc is not None:
        if net.proc.poll() is None:
            net.proc.kill()
            net.proc.wait()
        if net.proc.stdout is not None:
            net.proc.stdout.close()
    # deleting the namespace deletes the veth pair too
    subprocess.run(["ip", "netns", "del", net.netns], capture_output=True, check=False)
    subprocess.run(["ip", "link", "del", net.veth], capture_output=True, check=False)
