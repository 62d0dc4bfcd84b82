"""Test-only: a record of the requests the server saw, so end-to-end tests can check what a client sent
(e.g. that Daytona's SDK polls nothing during `create()`). Installed only with SANDBURG_TEST_MODE=1.

`GET /api/_test/requests?after=N` → `{"next": M, "requests": [{"seq", "method", "path", "status"}]}`; a
WebSocket handshake is recorded with method `WS`. With SANDBURG_TEST_CLOCK=1 too: `POST /api/_test/clock`.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .lifecycle import Clock

MAX_RECORDS = 20_000


class RequestLog:
    def __init__(self) -> None:
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self.records: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDS)
        self.last = 0

    def add(self, method: str, path: str) -> dict[str, Any]:
        with self._lock:
            self.last = next(self._seq)
            rec = {"seq": self.last, "method": method, "path": path, "status": None}
            self.records.append(rec)
            return rec

    def since(self, after: int) -> dict[str, Any]:
        with self._lock:
            return {"next": self.last, "requests": [dict(r) for r in self.records if r["seq"] > after]}


class _Recorder:
    def __init__(self, app: ASGIApp, log: RequestLog) -> None:
        self.app, self.log = app, log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"].startswith("/api/_test/"):
            await self.app(scope, receive, send)
            return
        rec = self.log.add("WS" if scope["type"] == "websocket" else scope["method"], scope["path"])

        async def send_and_note(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                rec["status"] = message["status"]
            elif message["type"] == "websocket.accept":
                rec["status"] = 101
            await send(message)

        await self.app(scope, receive, send_and_note)


def install(app: FastAPI) -> None:
    log = RequestLog()
    app.add_middleware(_Recorder, log=log)

    @app.get("/api/_test/requests", include_in_schema=False)
    def requests(after: int = 0) -> dict[str, Any]:
        return log.since(after)


class Advance(BaseModel):
    advance: float


def install_clock(app: FastAPI, clock: Clock) -> None:
    """`POST /api/_test/clock {"advance": seconds}` moves the lifecycle's test clock (SANDBURG_TEST_CLOCK=1)."""

    @app.post("/api/_test/clock", include_in_schema=False)
    def advance(body: Advance) -> dict[str, float]:
        return {"now": clock.advance(body.advance), "offset": clock.offset}
