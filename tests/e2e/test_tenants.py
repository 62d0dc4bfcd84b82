"""Tenants (docs/tenants.md): organizations made by the operator, API keys with roles and scopes shown once and
stored hashed, revocation at once, per-organization quotas that refuse before anything is made.

Every organization here is new (made through the API with the session server's operator key), so quotas and
usage are this test's own; sandboxes are deleted in `finally` blocks.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from sandburg import PermissionDeniedError, QuotaExceededError, Sandbox, Sandburg
from tests._support.server import ServerProcess
from tests._support.tenants import new_tenant, revoke

BOX = {"image": "busybox", "isolation": "container", "cpu": 1, "memory": "256MiB", "disk": "1GiB"}


@contextmanager
def client(server: ServerProcess, key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as c:
        yield c


def code(r: httpx.Response) -> tuple[int, Any]:
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    return r.status_code, body.get("code") if isinstance(body, dict) else None


def state(box: Sandbox) -> str:
    box.refresh()
    return str(box.state)


def delete_all(sb: Sandburg) -> None:
    for box in sb.list():
        box.delete()


def test_a_key_is_shown_once_stored_hashed_and_revoked_at_once(server: ServerProcess) -> None:
    admin_key, org, _ = new_tenant(server)
    with client(server, admin_key) as admin:
        made = admin.post("/keys", json={"name": "agent", "role": "member"})
        assert made.status_code == 201, made.text
        key, key_id = made.json()["key"], made.json()["id"]
        assert key.startswith("sb_") and made.json()["prefix"] == key[:10]
        with client(server, key) as agent:
            assert agent.get("/sandbox").status_code == 200
            assert agent.get("/keys/current").json()["role"] == "member"
            listed = admin.get("/keys").json()["items"]
            assert {k["id"] for k in listed} >= {key_id} and all("key" not in k for k in listed)
            assert all(k["organizationId"] == org for k in listed)
            # stored hashed: the key is nowhere in the database files, its SHA-256 is
            db = b"".join(p.read_bytes() for p in Path(server.data_dir).glob("sandburg.db*") if p.is_file())
            assert key.encode() not in db
            assert key.encode() not in Path(server.log_path).read_bytes()  # nor in the server's log
            assert hashlib.sha256(key.encode()).hexdigest().encode() in db
            assert admin.delete(f"/keys/{key_id}").json()["revokedAt"]
            assert code(agent.get("/sandbox")) == (401, "UNAUTHORIZED")  # at once: no cache ttl to wait out
            assert admin.get(f"/keys/{key_id}").json()["revokedAt"]
        # the organization's last unscoped admin key cannot revoke itself; the operator can cut it off
        me = admin.get("/keys/current").json()["id"]
        assert code(admin.delete(f"/keys/{me}")) == (409, "LAST_ADMIN_KEY")
        assert admin.get("/sandbox").status_code == 200
    revoke(server, me)
    with client(server, admin_key) as admin:
        assert code(admin.get("/sandbox")) == (401, "UNAUTHORIZED")


def test_roles_read_only_member_admin(server: ServerProcess) -> None:
    admin_key, _org, _ = new_tenant(server)
    with client(server, admin_key) as admin, Sandburg(api_url=server.api_url, api_key=admin_key) as sb:
        ro_key = admin.post("/keys", json={"name": "ro", "role": "read-only"}).json()["key"]
        member_key = admin.post("/keys", json={"name": "m", "role": "member"}).json()["key"]
        box = sb.create(**BOX)
        try:
            box.fs.upload_file(b"hello", "/workspace/f.txt")
            with client(server, ro_key) as ro, client(server, member_key) as member:
                # read-only: reads work (the positive control), every write is 403 with nothing done
                assert ro.get("/sandbox").status_code == 200
                assert ro.get(f"/sandbox/{box.id}").json()["id"] == box.id
                got = ro.get(f"/toolbox/{box.id}/files/download", params={"path": "/workspace/f.txt"})
                assert got.content == b"hello"
                assert code(ro.post(f"/toolbox/{box.id}/process/execute", json={"command": "touch /x"})) == (
                    403, "FORBIDDEN",
                )  # fmt: skip
                assert code(ro.post(f"/sandbox/{box.id}/stop")) == (403, "FORBIDDEN")
                assert code(ro.delete(f"/sandbox/{box.id}")) == (403, "FORBIDDEN")
                assert code(ro.post("/sandbox", json={})) == (403, "FORBIDDEN")
                assert code(ro.put("/secrets/X", json={"value": "v"})) == (403, "FORBIDDEN")
                assert code(ro.get("/keys")) == (403, "FORBIDDEN")
                url = server.api_url.replace("http", "ws", 1) + f"/toolbox/{box.id}/process/execute/stream"
                with pytest.raises(InvalidStatus) as info:
                    with connect(url, additional_headers={"Authorization": f"Bearer {ro_key}"}):
                        pass
                assert info.value.response.status_code == 403
                assert state(box) == "started"
                assert box.process.exec("ls /x 2>&1 || echo none").stdout.strip().endswith("none")
                # member: runs things, but makes no keys
                r = member.post(f"/toolbox/{box.id}/process/execute", json={"command": "echo hi"})
                assert r.status_code == 200 and r.json()["result"].strip() == "hi"
                assert code(member.post("/keys", json={"name": "x", "role": "read-only"})) == (
                    403,
                    "FORBIDDEN",
                )
                assert code(member.get("/keys")) == (403, "FORBIDDEN")
                assert member.get("/keys/current").json()["role"] == "member"
                # admin: makes keys, but none above its own scopes
                scoped = admin.post(
                    "/keys", json={"name": "s", "role": "admin", "scopes": ["keys", "sandboxes"]}
                )
                assert scoped.status_code == 201
                with client(server, scoped.json()["key"]) as sa:
                    assert code(sa.post("/keys", json={"name": "wider", "role": "admin"})) == (
                        403,
                        "FORBIDDEN",
                    )
                    assert (
                        sa.post(
                            "/keys", json={"name": "narrower", "role": "member", "scopes": ["sandboxes"]}
                        ).status_code
                        == 201
                    )
        finally:
            box.delete()


def test_scopes_narrow_a_key_to_areas(server: ServerProcess) -> None:
    admin_key, _org, _ = new_tenant(server)
    with client(server, admin_key) as admin, Sandburg(api_url=server.api_url, api_key=admin_key) as sb:
        assert code(admin.post("/keys", json={"name": "bad", "scopes": ["everything"]})) == (
            400,
            "VALIDATION_ERROR",
        )
        assert code(admin.post("/keys", json={"name": "bad", "role": "root"})) == (400, "VALIDATION_ERROR")
        made = admin.post("/keys", json={"name": "runner", "scopes": ["sandboxes:read", "toolbox"]}).json()
        assert made["scopes"] == ["sandboxes:read", "toolbox"]
        box = sb.create(**BOX)
        try:
            with Sandburg(api_url=server.api_url, api_key=made["key"]) as agent:
                assert [b.id for b in agent.list()] == [box.id]
                assert agent.get(box.id).process.exec("echo scoped").stdout.strip() == "scoped"
                with pytest.raises(PermissionDeniedError) as info:
                    agent.create(**BOX)
                assert info.value.code == "FORBIDDEN" and "sandboxes" in info.value.message
                with pytest.raises(PermissionDeniedError):
                    agent.secrets.list()
                with pytest.raises(PermissionDeniedError):
                    agent.audit.list(limit=1)
                with pytest.raises(PermissionDeniedError):
                    agent.get(box.id).snapshot("not-allowed")
            assert len(sb.list()) == 1 and sb.snapshots.list() == []
        finally:
            box.delete()


def test_quotas_refuse_before_anything_is_made(server: ServerProcess) -> None:
    quota = {"sandboxes": 2, "cpu": 2, "memory_mib": 1024, "disk_mib": 4096, "snapshots": 1}
    admin_key, org, _ = new_tenant(server, quota=quota)
    with Sandburg(api_url=server.api_url, api_key=admin_key) as sb, client(server, server.api_key) as op:
        try:
            a = sb.create(**BOX)
            with pytest.raises(QuotaExceededError) as info:  # 2 vCPU more than the 1 left
                sb.create(**{**BOX, "cpu": 2})
            assert info.value.status_code == 403 and "cpu" in info.value.message
            with pytest.raises(QuotaExceededError) as info:
                sb.create(**{**BOX, "memory": "1GiB"})
            assert "memory_mib" in info.value.message
            assert [b.id for b in sb.list()] == [a.id]  # nothing half-made
            b = sb.create(**BOX)
            with pytest.raises(QuotaExceededError) as info:
                sb.create(**BOX)
            assert "sandboxes" in info.value.message
            used = sb.organizations.usage()
            assert (used.used.sandboxes, used.used.cpu, used.used.memory_mib) == (2, 2, 512)
            # a stopped sandbox holds no vCPU: another can start in its place, then the first cannot
            b.stop()
            assert sb.organizations.usage().used.cpu == 1
            snap = a.snapshot("only-one")
            with pytest.raises(QuotaExceededError):
                a.snapshot("one-too-many")
            assert [s.name for s in sb.snapshots.list()] == ["only-one"]
            with pytest.raises(QuotaExceededError):  # a fork of 1 would be a third sandbox
                sb.fork(snap.name)
            assert len(sb.list()) == 2
            # the operator raises the quota: the same requests go through
            r = op.put(f"/organizations/{org}/quota", json={**quota, "sandboxes": 3, "cpu": 3})
            assert r.status_code == 200 and r.json()["quota"]["sandboxes"] == 3
            b.start()
            (child,) = sb.fork(snap.name)
            assert state(child) == "started"
            b.stop()
            with pytest.raises(QuotaExceededError):
                sb.create(**BOX)  # 3 sandboxes: the count holds, whatever runs
            # a quota below what is in use refuses new things and stops nothing
            assert op.put(f"/organizations/{org}/quota", json={"cpu": 1}).status_code == 200
            with pytest.raises(QuotaExceededError):
                b.start()
            assert state(a) == "started" and state(child) == "started"
        finally:
            delete_all(sb)
            for s in sb.snapshots.list():
                s.delete()


def test_only_the_operator_manages_organizations(server: ServerProcess) -> None:
    a_key, a_org, _ = new_tenant(server)
    _b_key, b_org, _ = new_tenant(server)
    with client(server, a_key) as a, client(server, server.api_key) as op:
        assert [o["id"] for o in a.get("/organizations").json()["items"]] == [a_org]
        assert a.get("/organizations/current").json()["id"] == a_org
        assert code(a.get(f"/organizations/{b_org}")) == (404, "ORGANIZATION_NOT_FOUND")  # not 403: no leak
        assert code(a.get(f"/organizations/{b_org}/usage")) == (404, "ORGANIZATION_NOT_FOUND")
        assert code(a.post("/organizations", json={"name": "mine"})) == (403, "FORBIDDEN")
        assert code(a.put(f"/organizations/{a_org}/quota", json={"cpu": 1000})) == (403, "FORBIDDEN")
        assert code(a.post("/keys", json={"name": "x", "organization": b_org})) == (
            404,
            "ORGANIZATION_NOT_FOUND",
        )
        assert code(a.get("/keys", params={"organization": b_org})) == (404, "ORGANIZATION_NOT_FOUND")
        ids = {o["id"] for o in op.get("/organizations").json()["items"]}
        assert {a_org, b_org} <= ids
        name = op.get(f"/organizations/{a_org}").json()["name"]
        assert code(op.post("/organizations", json={"name": name})) == (409, "ORGANIZATION_EXISTS")
        assert code(op.post("/organizations", json={"name": "Bad Name!"})) == (400, "VALIDATION_ERROR")
        assert code(op.put(f"/organizations/{a_org}/quota", json={"cpu": -1})) == (400, "VALIDATION_ERROR")
        assert code(op.put(f"/organizations/{a_org}/quota", json={"gpus": 1})) == (400, "VALIDATION_ERROR")


def test_cli_keys_and_organizations(server: ServerProcess) -> None:
    def cli(key: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, SANDBURG_API_URL=server.api_url, SANDBURG_API_KEY=key)
        return subprocess.run(
            [sys.executable, "-m", "sandburg.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    org = f"cli-{uuid.uuid4().hex[:8]}"
    r = cli(server.api_key, "org", "create", org, "--quota", "sandboxes=5", "--quota", "cpu=4")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["quota"]["sandboxes"] == 5
    r = cli(server.api_key, "key", "create", "cli-admin", "--role", "admin", "--org", org)
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()  # the key alone on stdout, for KEY=$(sandburg key create ...)
    assert key.startswith("sb_")
    r = cli(key, "key", "create", "reader", "--role", "read-only", "--scope", "sandboxes:read", "--json")
    reader = json.loads(r.stdout)
    assert reader["role"] == "read-only" and reader["scopes"] == ["sandboxes:read"]
    listed = cli(key, "key", "ls")
    assert "reader" in listed.stdout and "cli-admin" in listed.stdout and key not in listed.stdout
    assert reader["key"] not in listed.stdout
    usage = cli(key, "org", "usage")
    assert usage.returncode == 0 and "sandboxes" in usage.stdout and "5" in usage.stdout
    assert json.loads(cli(reader["key"], "key", "whoami").stdout)["role"] == "read-only"
    temp = json.loads(cli(key, "key", "create", "temp", "--expires-in", "1d", "--json").stdout)
    assert temp["expires_at"] and temp["role"] == "member"
    r = cli(key, "key", "create", "temp", "--expires-in", "soon")
    assert r.returncode == 2 and "duration" in r.stderr
    r = cli(key, "key", "revoke", reader["id"])
    assert r.returncode == 0 and "revoked" in r.stdout
    r = cli(reader["key"], "ls")
    assert r.returncode != 0 and "UNAUTHORIZED" in r.stderr
    r = cli(key, "org", "create", "nope")
    assert r.returncode != 0 and "FORBIDDEN" in r.stderr
    r = cli(key, "org", "quota", org, "--quota", "cpu=x")
    assert r.returncode != 0


def test_concurrent_creates_cannot_both_take_the_last_slot(server: ServerProcess) -> None:
    key, _org, _ = new_tenant(server, quota={"sandboxes": 1})
    with Sandburg(api_url=server.api_url, api_key=key) as sb:

        def create(_: int) -> str:
            try:
                return sb.create(**BOX).id
            except QuotaExceededError:
                return "refused"

        try:
            with ThreadPoolExecutor(max_workers=4) as pool:
                results = list(pool.map(create, range(4)))
            assert results.count("refused") == 3, results
            assert [b.id for b in sb.list()] == [r for r in results if r != "refused"]
        finally:
            delete_all(sb)


def test_a_key_expires(server: ServerProcess) -> None:
    admin_key, _org, _ = new_tenant(server)
    with Sandburg(api_url=server.api_url, api_key=admin_key) as sb, client(server, admin_key) as admin:
        past = admin.post("/keys", json={"name": "old", "expiresAt": "2020-01-01T00:00:00Z"})
        assert code(past) == (400, "VALIDATION_ERROR")
        made = sb.keys.create("short-lived", expires_at=datetime.now(UTC) + timedelta(seconds=3))
        assert made.expires_at is not None and made.key
        with client(server, made.key) as short:
            assert short.get("/sandbox").status_code == 200  # the positive control, and a cached answer
            deadline = time.monotonic() + 15
            while short.get("/sandbox").status_code == 200:
                assert time.monotonic() < deadline, "the key outlived its expiry"
                time.sleep(0.5)
            assert code(short.get("/sandbox")) == (401, "UNAUTHORIZED")
        assert admin.get(f"/keys/{made.id}").json()["expiresAt"]
        assert admin.get("/sandbox").status_code == 200  # other keys are unaffected
