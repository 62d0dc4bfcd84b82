"""The foundation issue's example, verbatim, on both tiers and on both built-in images."""

from __future__ import annotations

import pytest

from sandburg import Sandburg
from tests.e2e.conftest import TIERS


@pytest.mark.parametrize("image", ["debian-12", "busybox"])
@pytest.mark.parametrize("tier", TIERS)
def test_issue_example(server, monkeypatch, tier, image):
    monkeypatch.setenv("SANDBURG_API_URL", server.api_url)
    monkeypatch.setenv("SANDBURG_API_KEY", server.api_key)
    sb = Sandburg()  # SANDBURG_API_URL / SANDBURG_API_KEY, else the local default
    box = sb.create(isolation=tier, image=image, cpu=2, memory="4GiB", env={"A": "1"}, labels={"team": "x"})
    try:
        assert box.state == "started"
        r = box.process.exec("echo $A && id -u", cwd="/workspace", timeout=10)
        assert (r.exit_code, r.stdout, r.stderr) == (0, "1\n0\n", "")
        box.fs.upload_file(b"hello", "/workspace/a.txt")
        assert box.fs.download_file("/workspace/a.txt") == b"hello"
        box.stop()
        assert box.state == "stopped"
        box.start()
        assert box.state == "started"
        assert box.fs.download_file("/workspace/a.txt") == b"hello"  # stop kept the filesystem
        assert box.id in [b.id for b in sb.list(labels={"team": "x"})]
    finally:
        box.delete()
    assert box.id not in [b.id for b in sb.list()]
    sb.close()


def test_sandbox_fields_are_daytona_shaped(http):
    r = http.post("sandbox", json={"image": "busybox", "isolation": "container", "labels": {"a": "b"}})
    assert r.status_code == 200  # Daytona's SDK needs 200, not 201
    body = r.json()
    try:
        for field, kind in {
            "id": str, "organizationId": str, "name": str, "user": str, "env": dict, "labels": dict, "public": bool,
            "networkBlockAll": bool, "kvm": bool, "target": str, "cpu": int, "gpu": int, "memory": int, "disk": int,
            "toolboxProxyUrl": str, "state": str, "createdAt": str, "updatedAt": str,
        }.items():  # fmt: skip
            assert isinstance(body[field], kind), field
        assert body["state"] == "started"
        assert body["toolboxProxyUrl"].endswith("/api/toolbox")
        assert (body["memory"], body["disk"], body["cpu"]) == (4, 10, 2)  # the defaults, in GiB
        listed = http.get("sandbox", params={"labels": '{"a": "b"}'}).json()
        assert set(listed) == {"items", "nextCursor"}
        assert [i["id"] for i in listed["items"]] == [body["id"]]
        assert http.get(f"sandbox/{body['name']}").json()["id"] == body["id"]  # by name too
    finally:
        assert http.delete(f"sandbox/{body['id']}").json()["state"] == "destroyed"
