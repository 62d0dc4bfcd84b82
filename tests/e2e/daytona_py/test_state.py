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
    assert out["pause"]["status"] == 501 or "501" in out["pause"]["message"], out["pause"]
