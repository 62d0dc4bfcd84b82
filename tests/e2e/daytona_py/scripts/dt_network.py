"""Network policy and preview links through Daytona's SDK: networkBlockAll, networkAllowList (CIDRs),
domainAllowList on create and through update_network_settings; get_preview_link with its token.

    dt_network.py ALLOWED_IP OTHER_IP SUBNET    (addresses of the test's fake internet)
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request

from _common import TEST_LABEL, cleanup, emit
from daytona import CreateSandboxFromSnapshotParams, Daytona

allowed_ip, other_ip, subnet = sys.argv[1:4]
out: dict = {}
daytona = Daytona()


def curl(box, target: str) -> int:  # type: ignore[no-untyped-def]
    return int(box.process.exec(f"curl -s -o /dev/null -m 5 http://{target}/", timeout=30).exit_code)


with cleanup(daytona) as made:
    box = daytona.create(
        CreateSandboxFromSnapshotParams(snapshot="debian-12", labels=TEST_LABEL, network_block_all=True)
    )
    made.append(box)
    out["created_block_all"] = {"flag": box.network_block_all, "curl": curl(box, allowed_ip)}
    box.update_network_settings(network_allow_list=subnet)
    out["cidr_allow"] = {"flag": box.network_block_all, "curl": curl(box, other_ip)}
    box.update_network_settings(domain_allow_list="allowed.test")
    out["domain_allow"] = {"allowed": curl(box, "allowed.test"), "other": curl(box, other_ip)}
    box.update_network_settings(network_block_all=True)
    out["block_again"] = {"curl": curl(box, "allowed.test")}

    box.process.exec("mkdir -p /srv && echo daytona-preview > /srv/index.html", timeout=10)
    box.process.exec("cd /srv && nohup python3 -m http.server 8000 >/dev/null 2>&1 &", timeout=10)
    link = box.get_preview_link(8000)
    body, status = "", 0
    for _ in range(50):
        req = urllib.request.Request(
            link.url + "/index.html", headers={"X-Daytona-Preview-Token": link.token}
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                body, status = r.read().decode(), r.status
                break
        except urllib.error.HTTPError as e:
            status = e.code
        except OSError:
            pass
        time.sleep(0.2)
    try:
        urllib.request.urlopen(link.url + "/index.html", timeout=5)
        without = 200
    except urllib.error.HTTPError as e:
        without = e.code
    out["preview"] = {"status": status, "body": body, "without_token": without, "has_token": bool(link.token)}
emit(out)
