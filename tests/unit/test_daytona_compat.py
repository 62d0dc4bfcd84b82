"""Daytona compatibility helpers without a runtime: create options, list filters, the typed 501 for Daytona
endpoints sandburg lacks, socket.io's refusal, the test-mode request log."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from sandburg.server import compat, listing, unsupported
from sandburg.server.app import create_app
from sandburg.server.config import Settings
from sandburg.server.errors import ApiError
from sandburg.server.sandbox_build import build_plan_of
from sandburg.server.schemas import CreateSandbox


def test_image_from_the_sdks_one_line_dockerfile() -> None:
    assert compat.image_for(CreateSandbox(), "debian-12") == "debian-12"
    assert compat.image_for(CreateSandbox(snapshot="busybox"), "debian-12") == "busybox"
    assert (
        compat.image_for(
            CreateSandbox.model_validate({"buildInfo": {"dockerfileContent": "FROM busybox\n"}}), "d"
        )
        == "busybox"
    )
    assert compat.image_for(CreateSandbox(snapshot="debian:12"), "x") == "debian-12"
    # a longer Dockerfile is built first (sandbox_build.py); build context (COPY/ADD) is refused, typed
    assert build_plan_of(CreateSandbox(image="x")) is None
    assert (
        build_plan_of(CreateSandbox.model_validate({"buildInfo": {"dockerfileContent": "FROM a\n"}})) is None
    )
    plan = build_plan_of(
        CreateSandbox.model_validate({"buildInfo": {"dockerfileContent": "FROM a\nRUN b\n"}})
    )
    assert plan is not None and plan.base == "a" and [s.kind for s in plan.steps] == ["run"]
    for build in (
        {"dockerfileContent": "FROM a", "contextHashes": ["h"]},
        {"dockerfileContent": 'FROM a\nCOPY ["x", "/x"]\n'},
    ):
        with pytest.raises(ApiError) as err:
            build_plan_of(CreateSandbox.model_validate({"buildInfo": build}))
        assert err.value.status == 501 and "not supported yet" in err.value.message
    with pytest.raises(ApiError) as err:
        build_plan_of(
            CreateSandbox.model_validate({"buildInfo": {"dockerfileContent": "FROM a\nVOLUME /x\n"}})
        )
    assert err.value.status == 400 and "line 2" in err.value.message


def test_options_stored_or_refused() -> None:
    req = CreateSandbox.model_validate(
        {
            "autoStopInterval": 0,
            "ttlMinutes": 5,
            "volumes": [{"volumeId": "v", "mountPath": "/d"}],
            "target": "eu",
        }
    )
    assert compat.stored_extra(req) == {
        "autoStopInterval": 0, "ttlMinutes": 5, "target": "eu", "volumes": [{"volumeId": "v", "mountPath": "/d"}],
    }  # fmt: skip
    for body in ({"kvm": True}, {"linkedSandbox": "x"}):
        with pytest.raises(ApiError) as err:
            compat.check_supported(CreateSandbox.model_validate(body))
        assert err.value.status == 501
    compat.check_supported(CreateSandbox(secrets=[{"A": "s"}], kvm=False))  # secrets: secretservice.py


def _row(**kw: Any) -> Any:
    now = datetime(2026, 1, 1)
    base = dict(
        id="abc-1", name="Box", image="busybox", cpu=2, memory_mib=1536, disk_mib=2048, public=False, state="started",
        created_at=now, updated_at=now, extra={}, labels={},
    )  # fmt: skip
    return SimpleNamespace(**{**base, **kw})


def test_list_filters_compare_with_what_the_dto_reports() -> None:
    row = _row()
    assert listing.memory_gib(row) == 2 and listing.disk_gib(row) == 2 and listing.target(row) == "local"
    match = lambda **kw: listing.Filters(**kw).predicate()(row)  # noqa: E731
    assert match() and match(id="ABC") and not match(id="x")
    assert match(snapshots=("busybox",)) and not match(snapshots=("debian-12",))
    assert match(min_memory_gib=2, max_memory_gib=2) and not match(min_memory_gib=3)
    assert match(min_cpu=2, max_cpu=2, min_gpu=0, max_gpu=0) and not match(min_gpu=1)
    assert match(region_ids=("local",), sandbox_classes=("container",)) and not match(
        sandbox_classes=("linux-vm",)
    )
    assert match(is_public=False, is_recoverable=False) and not match(is_recoverable=True)
    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert match(created_at_after=t - timedelta(seconds=1)) and not match(
        created_at_after=t + timedelta(seconds=1)
    )
    assert not match(auto_destroy_at_after=t)  # no sandbox has an autoDestroyAt yet
    later = _row(extra={"lastActivityAt": "2026-01-02T00:00:00.000Z"})
    assert listing.last_activity(later) == datetime(2026, 1, 2)
    assert listing.sort_key("memoryGib") is listing.memory_gib and listing.sort_key(None) is None
    with pytest.raises(ApiError):
        listing.sort_key("nope")
    with pytest.raises(ApiError):
        listing.parse_labels('["x"]')
    assert listing.decode_cursor(listing.encode_cursor(42)) == 42


def test_not_yet_endpoints_are_looked_up_exactly() -> None:
    ep = unsupported.lookup("POST", "/sandbox/abc/resize")
    assert ep is not None and ep.area == "lifecycle" and ep.path == "/sandbox/{sandboxIdOrName}/resize"
    assert unsupported.lookup("GET", "/sandbox/abc/resize") is None  # method matters
    assert unsupported.lookup("POST", "/sandbox/abc/resize/more") is None  # the whole path matters
    tb = unsupported.lookup("POST", "/toolbox/sid/computeruse/start")
    assert tb is not None and tb.area == "desktop"
    assert unsupported.lookup("POST", "/computeruse/start") is None  # toolbox paths only under /toolbox/{id}
    assert unsupported.not_implemented("GET", "/elsewhere/snapshots") is None
    assert unsupported.not_implemented("GET", "/api/snapshots") is None  # served now (routers/snapshots.py)
    err = unsupported.not_implemented("GET", "/api/object-storage/push-access")
    assert err is not None and err.status == 501 and "COPY/ADD" in err.message


def test_answers_without_a_runtime() -> None:
    app = create_app(Settings(test_mode=True), start_runtime=False)

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            r = await client.post("/api/sandbox/x/backup")
            assert r.status_code == 501 and r.json()["code"] == "NOT_IMPLEMENTED"
            assert "later issue" in r.json()["message"]
            r = await client.post(
                "/api/toolbox/x/process/pty"
            )  # a route of that path exists for GET: still 501
            assert r.status_code == 501
            assert (await client.get("/api/sandbox/for-runner")).status_code == 501
            assert (await client.get("/api/socket.io/", params={"EIO": "4"})).status_code == 501
            r = await client.get("/api/nope/snapshots")
            assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
            assert (await client.put("/api/health")).status_code == 405
            config = (await client.get("/api/config")).json()
            assert (
                config["defaultSnapshot"] == "debian-12"
                and config["proxyToolboxUrl"] == "http://t/api/toolbox"
            )
            log = (await client.get("/api/_test/requests")).json()
            seen = [(x["method"], x["path"], x["status"]) for x in log["requests"]]
            assert ("POST", "/api/sandbox/x/backup", 501) in seen and ("PUT", "/api/health", 405) in seen
            assert not any(p.startswith("/api/_test") for _, p, _ in seen)

    asyncio.run(go())
    plain = create_app(Settings(), start_runtime=False)
    assert "/api/_test/requests" not in [getattr(r, "path", "") for r in plain.routes]
