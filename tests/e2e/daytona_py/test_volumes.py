"""Volumes through Daytona's official Python SDK (scripts/dt_volumes.py): its volume service and VolumeMount."""

from __future__ import annotations

from tests.e2e.daytona_py.conftest import RunScript


def test_volume_service_and_mounts(run_script: RunScript) -> None:
    out = run_script("dt_volumes.py", timeout=300)
    assert out["created"]["state"] == "ready" and out["listed"] and out["get_by_name"], out
    assert out["get_or_create"].startswith("dt-vol2-")
    assert [(v["volumeId"], v["mountPath"], v.get("subpath")) for v in out["echo"]] == [
        (out["created"]["id"], "/sub", "p")
    ]  # the name resolved to the id
    assert out["read_subpath"] == "shared" and out["after_delete"] == "shared", out
    e = out["delete_in_use"]
    assert (e["type"], e["status"]) == ("DaytonaConflictError", 409), e
    assert out["gone"]["status"] == 404, out["gone"]
