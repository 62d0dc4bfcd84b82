"""The lifecycle's pure parts: the per-sandbox decision, the effective intervals, the clock, the settings check,
the activity record (sandburg/server/lifecycle.py, docs/lifecycle.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from sandburg.server.config import Settings
from sandburg.server.lifecycle import (
    Activity,
    ActivityMiddleware,
    Clock,
    Defaults,
    RowView,
    decide,
    effective,
    iso,
    parse,
)

MIN = 60.0
NOW = 1_800_000_000.0


def view(
    state: str = "started", *, idle: float = 0, stopped: float | None = None, age: float = 0, **iv: int
) -> RowView:
    return RowView(
        state=state, created=NOW - age, last_activity=NOW - idle,
        stopped_at=None if stopped is None else NOW - stopped, intervals=effective(iv, Defaults()),
    )  # fmt: skip


def test_defaults_and_overrides() -> None:
    assert effective(None, Defaults()) == {
        "autoStopInterval": 15, "autoPauseInterval": 0, "autoArchiveInterval": 10080, "autoDeleteInterval": -1,
        "ttlMinutes": 0,
    }  # fmt: skip
    got = effective(
        {"autoStopInterval": 0, "ttlMinutes": 5, "autoDeleteInterval": True}, Defaults(auto_stop=3)
    )
    assert got["autoStopInterval"] == 0 and got["ttlMinutes"] == 5
    assert got["autoDeleteInterval"] == -1  # not an int: ignored


def test_auto_stop_only_when_idle_and_not_busy() -> None:
    assert decide(view(idle=14 * MIN), NOW, busy=False) is None
    assert decide(view(idle=15 * MIN), NOW, busy=False) == "stop"
    assert decide(view(idle=15 * MIN), NOW, busy=True) is None  # never stop a sandbox in use
    assert decide(view(idle=10_000 * MIN, autoStopInterval=0), NOW, busy=False) is None  # 0 = never


def test_auto_pause_first() -> None:
    assert decide(view(idle=5 * MIN, autoPauseInterval=5), NOW, busy=False) == "pause"
    assert decide(view(idle=20 * MIN, autoPauseInterval=5), NOW, busy=False) == "pause"
    assert decide(view(idle=5 * MIN, autoPauseInterval=5), NOW, busy=True) is None


def test_stopped_archive_and_delete() -> None:
    assert decide(view("stopped", stopped=10079 * MIN), NOW, busy=False) is None
    assert decide(view("stopped", stopped=10080 * MIN), NOW, busy=False) == "archive"
    assert decide(view("stopped", stopped=0, autoDeleteInterval=0), NOW, busy=False) == "delete"
    assert decide(view("stopped", stopped=9 * MIN, autoDeleteInterval=10), NOW, busy=False) is None
    assert decide(view("stopped", stopped=10 * MIN, autoDeleteInterval=10), NOW, busy=False) == "delete"
    assert decide(view("stopped", stopped=10**6 * MIN, autoArchiveInterval=0), NOW, busy=False) is None
    assert decide(view("stopped", stopped=None), NOW, busy=False) is None  # not seen stopped yet


def test_ttl_deletes_even_in_use() -> None:
    assert decide(view(age=59 * MIN, ttlMinutes=60), NOW, busy=True) is None
    assert decide(view(age=60 * MIN, ttlMinutes=60), NOW, busy=True) == "delete"
    assert decide(view("stopped", age=60 * MIN, stopped=0, ttlMinutes=60), NOW, busy=False) == "delete"


def test_iso_round_trip() -> None:
    assert parse(iso(NOW)) == NOW
    assert parse("2026-01-01T00:00:00") == parse("2026-01-01T00:00:00.000Z")
    assert parse("nonsense") is None and parse(3) is None


def test_test_clock_persists(tmp_path: Path) -> None:
    path = str(tmp_path / "test-clock")
    clock = Clock(path)
    before = clock.now()
    clock.advance(3600)
    assert clock.now() - before >= 3600
    assert Clock(path).offset == 3600  # a restart keeps it
    with pytest.raises(RuntimeError):
        Clock().advance(1)


def test_production_server_refuses_the_test_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBURG_TEST_CLOCK", "1")
    monkeypatch.delenv("SANDBURG_TEST_MODE", raising=False)
    with pytest.raises(SystemExit, match="refuses the test clock"):
        Settings.from_env()
    monkeypatch.setenv("SANDBURG_TEST_MODE", "1")
    assert Settings.from_env().test_clock
    monkeypatch.setenv("SANDBURG_REAPER_INTERVAL", "0")
    with pytest.raises(SystemExit):
        Settings.from_env()


def test_activity_middleware_counts_requests_while_they_last() -> None:
    activity = Activity(Clock())
    seen: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(activity.busy(["box"]))

    mw = ActivityMiddleware(app, activity)
    for path in ("/api/sandbox/box/stop", "/api/toolbox/box/process/execute", "/preview/box/8080/x"):
        scope = {"type": "http", "path": path, "app": None}
        asyncio.run(mw(scope, None, None))  # type: ignore[arg-type]
    assert seen == [True, True, True] and not activity.busy(["box"])
    assert set(activity.drain()) == {"box"} and activity.drain() == {}
    asyncio.run(mw({"type": "http", "path": "/api/sandbox/paginated"}, None, None))  # type: ignore[arg-type]
    asyncio.run(mw({"type": "http", "path": "/api/health"}, None, None))  # type: ignore[arg-type]
    assert activity.drain() == {}
