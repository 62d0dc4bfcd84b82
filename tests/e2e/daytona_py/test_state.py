"""A sandbox's state snapshot and fork through Daytona's official Python SDK (scripts/dt_state.py)."""

from __future__ import annotations

from tests.e2e.daytona_py.conftest import RunScript


def test_create_snapshot_and_fork(run_script: RunScript) -> None:
    out = run_script("dt_state.py", timeout=300)
    assert out["after_snapshot"]["state"] == "started" and out["listed"], out
    # the fork copies the files as they are now (two), not as they were at the snapshot
    assert out["fork"] == {"state": "started", "new_id": True, "content": "two"}, out["fork"]
    assert out["parent_unaffected"] == "two"
    assert out["from_snapshot"] == "one" and out["deleted"], out
    pause = out["pause"]
    assert pause["state"] == "paused" and pause["exec"]["type"] is not None, pause
    # resumed where it was: not counting while paused, counting again after start (a restart would count from 1)
    assert pause["before"] >= 5 and pause["before"] - 1 <= pause["after"] <= pause["before"] + 5, pause
    assert pause["later"] >= pause["after"] + 3, pause
