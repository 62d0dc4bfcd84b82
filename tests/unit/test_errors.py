"""The JSON error shape and the code → status table are part of the API: locked here."""

from __future__ import annotations

import asyncio

import httpx

from sandburg._codes import STATUS, TOOLBOX_CODES, ErrorCode
from sandburg.server.app import create_app
from sandburg.server.config import Settings
from sandburg.server.errors import error_body


def test_every_code_has_a_status() -> None:
    assert set(STATUS) == set(ErrorCode)
    assert all(400 <= s < 600 for s in STATUS.values())


def test_error_shape() -> None:
    body = error_body(ErrorCode.SANDBOX_NOT_FOUND, "sandbox 'x' not found")
    assert body == {
        "statusCode": 404, "error": "Not Found", "message": "sandbox 'x' not found", "code": "SANDBOX_NOT_FOUND",
        "source": "sandburg",
    }  # fmt: skip
    # toolbox codes carry Daytona's daemon source so its SDKs raise their matching exception classes
    assert error_body(ErrorCode.FILE_NOT_FOUND, "m")["source"] == "DAYTONA_DAEMON"
    assert ErrorCode.PROCESS_EXECUTION_TIMEOUT in TOOLBOX_CODES


def test_unknown_route_and_bad_method_without_a_runtime() -> None:
    app = create_app(Settings(), start_runtime=False)

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            r = await client.get("/api/nope")
            assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
            r = await client.put("/api/health")
            assert r.status_code == 405 and r.json()["code"] == "BAD_REQUEST"
            assert (await client.get("/api/health")).json()["status"] == "ok"

    asyncio.run(go())
