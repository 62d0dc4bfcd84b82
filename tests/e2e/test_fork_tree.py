"""Daytona's fork tree (GET /sandbox/{id}/parent, /ancestors, /forks) over sandburg's forks, and Daytona's fork
within an organization's snapshot quota (its snapshot lives for the request only)."""

from __future__ import annotations

import httpx
import pytest

from sandburg import QuotaExceededError, Sandburg
from tests._support.server import ServerProcess
from tests._support.tenants import new_tenant

BOX = {"image": "busybox", "isolation": "container", "cpu": 1, "memory": "256MiB", "disk": "1GiB"}


def test_parent_ancestors_and_forks(server: ServerProcess) -> None:
    key, _org, _ = new_tenant(server, quota={"snapshots": 0})  # Daytona's fork needs no snapshot slot
    with (
        Sandburg(api_url=server.api_url, api_key=key) as sb,
        httpx.Client(
            base_url=server.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=120
        ) as http,
    ):
        root = sb.create(**BOX)
        try:
            root.process.exec("echo gen0 > /root/mark")
            with pytest.raises(QuotaExceededError):  # the positive control of the quota
                root.snapshot("not-within-quota")
            r = http.post(f"/sandbox/{root.id}/fork", json={"name": f"child-{root.id[:8]}"})
            assert r.status_code == 200, r.text
            child = r.json()
            r = http.post(f"/sandbox/{child['id']}/fork", json={})
            assert r.status_code == 200, r.text
            grandchild = r.json()
            assert sb.snapshots.list() == []  # the forks' snapshots were dropped
            assert sb.get(grandchild["id"]).process.exec("cat /root/mark").stdout == "gen0\n"

            assert http.get(f"/sandbox/{child['id']}/parent").json()["id"] == root.id
            assert http.get(f"/sandbox/{grandchild['id']}/parent").json()["id"] == child["id"]
            ancestors = http.get(f"/sandbox/{grandchild['name']}/ancestors").json()
            assert [a["id"] for a in ancestors] == [child["id"], root.id]
            assert [f["id"] for f in http.get(f"/sandbox/{root.id}/forks").json()] == [child["id"]]
            assert http.get(f"/sandbox/{grandchild['id']}/forks").json() == []
            r = http.get(f"/sandbox/{root.id}/parent")
            assert r.status_code == 404 and r.json()["code"] == "SANDBOX_NOT_FOUND"
            assert http.get(f"/sandbox/{root.id}/ancestors").json() == []
            # a deleted middle ends the chain; the tree never names another organization's sandboxes
            sb.get(child["id"]).delete()
            assert http.get(f"/sandbox/{grandchild['id']}/ancestors").json() == []
            assert http.get(f"/sandbox/{grandchild['id']}/parent").status_code == 404
            with httpx.Client(
                base_url=server.api_url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=60
            ) as other:
                assert other.get(f"/sandbox/{root.id}/forks").status_code == 404
        finally:
            for box in sb.list():
                box.delete()
