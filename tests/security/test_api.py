"""Attacks from outside, through the API: every route without a key and with a wrong one, path traversal in every
path parameter, oversized bodies, and another tenant's key. Routes come from the exported spec (docs/openapi.json)
so that a new route is covered the day it is exported."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from sandburg import Sandbox, Sandburg
from tests._support.server import ServerProcess
from tests._support.tenants import new_tenant, revoke
from tests.e2e.test_bad_input import assert_error

SPEC = json.loads((Path(__file__).parents[2] / "docs" / "openapi.json").read_text())
PUBLIC = {"/api/health", "/api/health/ready", "/api/config"}  # no key needed, as in Daytona
ROUTES = sorted(
    (method.upper(), path)
    for path, ops in SPEC["paths"].items()
    for method in ops
    if method in ("get", "post", "put", "delete", "patch") and path not in PUBLIC
)
WEBSOCKETS = [
    "toolbox/{id}/process/execute/stream",
    "toolbox/{id}/process/pty/create-connect",
    "toolbox/{id}/process/session/s/command/c/logs",
    "toolbox/{id}/process/session/entrypoint/logs",
]
TRAVERSALS = [
    "..%2f..%2f..%2fetc%2fpasswd",
    "../../../etc/passwd",
    "..%252f..%252fetc%252fpasswd",
    "%2e%2e%2f",
]
HOST_CONTENT = re.compile(r"root:x:0:0|daemon:x:1:1")


def fill(path: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, path)


def test_spec_lists_the_routes() -> None:
    assert len(ROUTES) > 80  # positive control for the loops below: they iterate the real API
    assert ("POST", "/api/sandbox") in ROUTES and (
        "GET",
        "/api/toolbox/{sandbox_id}/files/download",
    ) in ROUTES


@pytest.mark.parametrize("auth", [None, "Bearer sb_wrong", "Bearer sb_" + "0" * 32, "Basic {key}", "{key}"])
def test_every_route_needs_a_valid_key(server: ServerProcess, http: httpx.Client, auth: str | None) -> None:
    # a wrong key, and the right key under the wrong scheme or none
    headers = {} if auth is None else {"Authorization": auth.format(key=server.api_key)}
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", headers=headers, timeout=30) as anon:
        for method, path in ROUTES:
            r = anon.request(method, fill(path, "x"), json={})
            assert_error(r, 401, "UNAUTHORIZED")
        for path in PUBLIC:  # positive control: the public routes answer the same client
            assert anon.get(path).status_code == 200
    assert http.get("sandbox").status_code == 200  # and the real key works


@pytest.mark.parametrize("key", [None, "sb_wrong"])
def test_websockets_need_a_valid_key(
    server: ServerProcess, make_box: Callable[..., Sandbox], key: str | None
) -> None:
    box = make_box(isolation="container")
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    for path in WEBSOCKETS:
        url = f"ws://127.0.0.1:{server.port}/api/{path.format(id=box.id)}"
        with pytest.raises(InvalidStatus) as caught:
            connect(url, additional_headers=headers, open_timeout=20).close()
        assert caught.value.response.status_code == 401, path
        assert json.loads(caught.value.response.body or b"{}")["code"] == "UNAUTHORIZED"
    # positive control: the same client with the key gets in
    url = f"ws://127.0.0.1:{server.port}/api/toolbox/{box.id}/process/execute/stream"
    with connect(
        url, additional_headers={"Authorization": f"Bearer {server.api_key}"}, open_timeout=20
    ) as conn:
        conn.send(json.dumps({"command": "echo in"}))
        frames = [conn.recv(timeout=20) for _ in range(2)]
    assert any(isinstance(f, bytes) and b"in" in f for f in frames), frames


def test_path_traversal_in_every_path_parameter(
    server: ServerProcess, http: httpx.Client, make_box: Callable[..., Sandbox]
) -> None:
    box = make_box(isolation="container")
    seen: dict[int, int] = {}
    for method, path in ROUTES:
        if method == "DELETE" or "{" not in path:
            continue  # deleting is covered by the GET of the same path; no parameter, nothing to traverse
        names = re.findall(r"\{([^}]+)\}", path)
        for name in names:
            for evil in TRAVERSALS:
                # the other parameters get real values so that the evil one is the one the server judges
                url = path
                for other in names:
                    url = url.replace("{" + other + "}", evil if other == name else _good(other, box))
                r = http.request(method, url.removeprefix("/api/"), json={})
                seen[r.status_code] = seen.get(r.status_code, 0) + 1
                assert r.status_code < 500, (method, url, r.status_code, r.text[:300])
                if r.status_code == 307:  # the framework's trailing-slash redirect: to this server only
                    assert r.headers["location"].startswith(f"http://127.0.0.1:{server.port}/api/"), r.headers
                assert not HOST_CONTENT.search(r.text), (method, url, r.text[:300])
    assert set(seen) <= {307, 400, 404, 405, 409, 422}, seen
    # positive control: a read of the sandbox's own /etc/passwd through a parameter-free query does show it
    own = http.get(f"toolbox/{box.id}/files/download", params={"path": "/etc/passwd"})
    assert own.status_code == 200 and HOST_CONTENT.search(own.text)


def _good(param: str, box: Sandbox) -> str:
    return {"sandbox_id_or_name": box.id, "sandbox_id": box.id, "port": "8080", "interval": "10"}.get(
        param, "x"
    )


def test_oversized_bodies_get_a_typed_error(http: httpx.Client, server: ServerProcess) -> None:
    # An upload past the disk quota is tests/e2e/test_limits.py::test_disk_limit (507 DISK_QUOTA_EXCEEDED).
    # A JSON body over 16 MiB, declared or streamed without a length: 413 before it is stored, no sandbox made
    before = {b["id"] for b in http.get("sandbox").json()["items"]}
    huge = json.dumps({"image": "busybox", "labels": {"pad": "x" * (20 << 20)}}).encode()
    assert_error(http.post("sandbox", content=huge, headers={"content-type": "application/json"}), 413,
                 "PAYLOAD_TOO_LARGE")  # fmt: skip
    parts = (huge[i : i + (1 << 20)] for i in range(0, len(huge), 1 << 20))
    assert_error(http.post("sandbox", content=parts, headers={"content-type": "application/json"}), 413,
                 "PAYLOAD_TOO_LARGE")  # fmt: skip
    assert {b["id"] for b in http.get("sandbox").json()["items"]} == before
    r = http.put("secrets/HUGE_SECRET", json={"value": "x" * (8 << 20)})
    assert r.status_code in (413, 422), r.text[:300]
    assert_error(r, r.status_code, "SECRET_TOO_LARGE")
    assert_error(http.get("secrets/HUGE_SECRET"), 404, "SECRET_NOT_FOUND")
    chunk = b"\0" * (1 << 20)  # a build context past its 256 MiB limit, streamed
    r = http.post(
        "images/context", content=(chunk for _ in range(300)), headers={"content-type": "application/x-tar"}
    )
    assert_error(r, 413, "PAYLOAD_TOO_LARGE")
    assert httpx.get(f"{server.api_url}/health", timeout=5).status_code == 200
    # positive control: a secret of ordinary size is taken
    assert http.put("secrets/SMALL_SECRET", json={"value": "x" * 100}).status_code in (200, 201)
    assert http.delete("secrets/SMALL_SECRET").status_code in (200, 204)


def _db(server: ServerProcess) -> sqlite3.Connection:
    return sqlite3.connect(os.path.join(server.data_dir, "sandburg.db"), timeout=30, isolation_level=None)


@pytest.fixture(scope="module")
def other_key(server: ServerProcess) -> Iterator[tuple[str, str]]:
    """A second organization and its key, made by the operator through the API; revoked afterwards."""
    key, org, key_id = new_tenant(server)
    yield key, org
    revoke(server, key_id)


def test_another_tenant_gets_404_for_everything(
    server: ServerProcess, sb: Sandburg, make_box: Callable[..., Sandbox], other_key: tuple[str, str]
) -> None:
    key, org = other_key
    box = make_box(isolation="container")
    name = f"SEC_{uuid.uuid4().hex[:8].upper()}"
    sb.secrets.set(name, "tenant-a-value")
    snap = f"sec-{uuid.uuid4().hex[:8]}"
    mine = httpx.Client(
        base_url=server.api_url + "/", headers={"Authorization": f"Bearer {server.api_key}"}, timeout=120
    )
    theirs = httpx.Client(
        base_url=server.api_url + "/", headers={"Authorization": f"Bearer {key}"}, timeout=60
    )
    volume_id = ""
    try:
        assert mine.post(f"sandbox/{box.id}/snapshot", json={"name": snap}).status_code in (200, 201)
        vol = mine.post("volumes", json={"name": f"sec-vol-{uuid.uuid4().hex[:6]}"})
        assert vol.status_code in (200, 201), vol.text
        volume_id = vol.json()["id"]
        me = mine.get("keys/current").json()
        targets: list[tuple[str, str, dict[str, Any] | None]] = [
            ("GET", f"sandbox/{box.id}", None),
            ("GET", f"sandbox/{box.name}", None),
            ("POST", f"sandbox/{box.id}/stop", None),
            ("DELETE", f"sandbox/{box.id}", None),
            ("GET", f"sandbox/{box.id}/ports/8080/preview-url", None),
            ("GET", f"sandbox/{box.id}/network", None),
            ("GET", f"sandbox/{box.id}/snapshots", None),
            ("POST", f"toolbox/{box.id}/process/execute", {"command": "echo pwned"}),
            ("GET", f"toolbox/{box.id}/files/download?path=/etc/hostname", None),
            ("GET", f"state-snapshots/{snap}", None),
            ("POST", f"state-snapshots/{snap}/fork", {}),
            ("GET", f"secrets/{name}", None),
            ("DELETE", f"secrets/{name}", None),
            ("GET", f"volumes/{volume_id}", None),
            ("DELETE", f"volumes/{volume_id}", None),
            ("GET", f"images/{snap}", None),  # an organization's images, whatever made them
            ("GET", f"snapshots/{snap}", None),  # Daytona's name for them
            ("DELETE", f"images/{snap}", None),
            ("GET", f"keys/{me['id']}", None),
            ("DELETE", f"keys/{me['id']}", None),
            ("GET", f"organizations/{me['organizationId']}", None),
            ("GET", f"organizations/{me['organizationId']}/usage", None),
        ]
        for method, url, body in targets:
            # positive control: the owner reaches each (reads only, so the object stays for the other tenant)
            if method == "GET":
                assert mine.get(url).status_code == 200, (url, mine.get(url).text[:200])
            r = theirs.request(method, url, json=body)
            assert r.status_code == 404, (method, url, r.status_code, r.text[:200])
            assert "NOT_FOUND" in r.json()["code"], r.json()
        # lists and the audit log hold nothing of tenant A
        assert box.id not in theirs.get("sandbox", params={"limit": 1000}).text
        assert name not in theirs.get("secrets").text
        assert snap not in theirs.get("state-snapshots").text
        assert volume_id not in theirs.get("volumes").text
        # the audit log: B's own calls only (they name A's id in their routes, but no record of A's is shown)
        my_records = mine.get("audit", params={"limit": 1000, "sandbox": box.id}).json()["items"]
        assert my_records  # positive control: A's key sees A's records of that sandbox
        for params in ({"limit": 1000}, {"limit": 1000, "sandbox": box.id}):
            their_records = theirs.get("audit", params=params).json()["items"]
            assert all(rec["tenant"] == org for rec in their_records), their_records[:3]
            assert not {rec["hash"] for rec in their_records} & {rec["hash"] for rec in my_records}
        # the sandbox is untouched
        assert box.process.exec("echo still-mine").stdout == "still-mine\n"
    finally:
        mine.delete(f"state-snapshots/{snap}")
        if volume_id:
            mine.delete(f"volumes/{volume_id}")
        sb.secrets.delete(name)
        mine.close()
        theirs.close()
