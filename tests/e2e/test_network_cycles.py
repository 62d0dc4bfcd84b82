"""Network objects do not accumulate: 500 create/delete cycles leave exactly what was there before.

Counted on the host, not asked of the server: network namespaces, bridge ports, nftables chains, sets, map and
anti-spoofing elements, mounts, and the sandboxes the API lists. Four clients at a time, container tier (the
network code is the same for both tiers; gVisor's cycles cost ~4x the time).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests._support.host import net_for
from tests._support.server import ServerProcess

CYCLES = 500
WORKERS = 4


def _elements(table: str, name: str) -> list[Any]:
    out = subprocess.run(
        ["nft", "-j", "list", "set", "bridge", table, name], capture_output=True, check=True
    ).stdout
    return [e for i in json.loads(out)["nftables"] if "set" in i for e in i["set"].get("elem", [])]


def count(server: ServerProcess) -> dict[str, Any]:
    cfg = net_for(server.data_dir)
    table = json.loads(subprocess.run(["nft", "-j", "list", "table", "inet", cfg.table], capture_output=True,
                                      check=True).stdout)["nftables"]  # fmt: skip
    ports = json.loads(subprocess.run(["nft", "-j", "list", "set", "bridge", cfg.table, "ports"], capture_output=True,
                                      check=True).stdout)["nftables"]  # fmt: skip
    sandbox_map = next(i["map"] for i in table if "map" in i and i["map"]["name"] == "sandboxes")
    with open("/proc/self/mountinfo") as fh:
        mounts = sum(1 for line in fh if server.data_dir in line)
    return {
        "netns": sorted(n for n in os.listdir("/run/netns") if n.startswith(cfg.tag + "-")),
        "bridge ports": sorted(os.listdir(f"/sys/class/net/{cfg.bridge}/brif")),
        "chains": sum(1 for i in table if "chain" in i),
        "sets": sum(1 for i in table if "set" in i),
        "map elements": len(sandbox_map.get("elem", [])),
        "anti-spoofing elements": sum(len(i["set"].get("elem", [])) for i in ports if "set" in i),
        "anti-spoofing ports": len(_elements(cfg.table, "ifaces")),
        "mounts": mounts,
    }


def test_500_create_delete_cycles_leave_nothing_behind(server: ServerProcess) -> None:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    label = {"test": "network-cycles"}
    before = count(server)
    errors: list[str] = []
    deadline = time.monotonic() + 900  # bounded in time as well as in count

    def worker(n: int) -> int:
        done = 0
        with httpx.Client(base_url=server.api_url, headers=headers, timeout=120) as http:
            for _ in range(n):
                if time.monotonic() > deadline:
                    break
                r = http.post("/sandbox", json={"image": "busybox", "isolation": "container", "labels": label,
                                                "network": {"allow": ["allowed.test", "10.99.0.0/16"]}})  # fmt: skip
                if r.status_code != 200:
                    errors.append(r.text)
                    continue
                d = http.delete(f"/sandbox/{r.json()['id']}")
                if d.status_code != 200:
                    errors.append(d.text)
                done += 1
        return done

    with ThreadPoolExecutor(WORKERS) as pool:
        done = sum(pool.map(worker, [CYCLES // WORKERS] * WORKERS))
    assert not errors, errors[:3]
    assert done == CYCLES
    with httpx.Client(base_url=server.api_url, headers=headers, timeout=60) as http:
        listed = http.get("/sandbox", params={"labels": json.dumps(label)}).json()
    assert (listed if isinstance(listed, list) else listed["items"]) == []
    # the kernel destroys a deleted sandbox's namespace and veth pair in the background: give it a moment
    settle = time.monotonic() + 10
    while count(server) != before and time.monotonic() < settle:
        time.sleep(0.2)
    assert count(server) == before
