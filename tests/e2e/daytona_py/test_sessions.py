"""Sessions through Daytona's Python SDK (scripts/dt_sessions.py)."""

from __future__ import annotations

from tests.e2e.daytona_py.conftest import RunScript


def test_sessions(run_script: RunScript) -> None:
    out = run_script("dt_sessions.py")
    assert out["create_again"]["type"] == "DaytonaConflictError" and out["create_again"]["status"] == 409
    assert out["sync_export"] == {"exit_code": 0, "cmd_id": True}
    assert out["sync"] == {
        "exit_code": 0,
        "stdout": "7 /tmp\n",
        "stderr": "oops\n",
        "output": "7 /tmp\noops\n",
    }
    assert out["async_immediate"] == {"exit_code": None, "has_id": True}
    assert out["async_status_running"] is None
    assert out["follow"]["stdout"] == "line1\nline2\nline3\n" and out["follow"]["stderr"] == "warn\n"
    assert out["follow"]["seconds"] < 20
    assert out["async_done"]["exit_code"] == 0 and out["async_done"]["command"].startswith("for i in")
    assert out["logs"] == {
        "stdout": "line1\nline2\nline3\n",
        "stderr": "warn\n",
        "output": "line1\nline2\nline3\nwarn\n",
    }
    assert out["input"] == "got hello\n"
    assert out["session"] == {"id": "dev", "commands": 4} and out["list"] == ["dev"]
    assert out["entrypoint"] == {"id": "entrypoint", "logs": ""}
    assert out["get_deleted"]["type"] == "DaytonaNotFoundError" and out["list_after"] == []
