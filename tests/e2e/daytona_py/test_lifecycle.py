"""Sandbox lifecycle through Daytona's Python SDK (scripts/dt_lifecycle.py)."""

from __future__ import annotations

from tests.e2e.daytona_py.conftest import RequestLog, RunScript


def test_create_get_list_settings_stop_start_delete(run_script: RunScript, request_log: RequestLog) -> None:
    out = run_script("dt_lifecycle.py")
    d = out["default"]
    assert d["state"] == "started" and d["snapshot"] == "debian-12"
    assert (d["cpu"], d["memory"], d["disk"]) == (2, 4, 10)
    assert d["labels"]["code-toolbox-language"] == "python"
    assert d["toolbox_proxy_url"].endswith("/api/toolbox") and d["target"] == "local"

    f = out["full"]
    assert f["snapshot"] == "busybox" and f["public"] is True
    assert (f["auto_stop"], f["auto_archive"], f["auto_delete"]) == (30, 60, 120)
    assert f["network_allow_list"] == "10.1.0.0/16,192.168.0.0/24"
    assert f["env"] == {"GREETING": "hello", "EMPTY": ""} and f["exec_env"] == "hello|"
    assert f["labels"]["code-toolbox-language"] == "javascript" and f["labels"]["role"] == "full"
    assert [(v["volumeId"], v["mountPath"]) for v in f["volumes"]] == [(out["volume_id"], "/data")]
    assert out["sized"] == {"snapshot": "busybox", "cpu": 1, "memory": 1, "disk": 1}
    assert out["build_image"] == {
        "state": "started",
        "hi": "hi",
    }  # an Image is built, then run (docs/images.md)

    assert out["get"]["by_id"] and out["get"]["by_name"]
    assert out["get_missing"]["type"] == "DaytonaNotFoundError" and out["get_missing"]["status"] == 404

    ids = out["ids"]
    everyone = sorted(ids.values())
    assert out["list_group"] == everyone
    assert out["list_paged"] == everyone  # limit=1: three pages through nextCursor
    assert out["list_role"] == [ids["full"]]
    assert out["list_name"] == [ids["full"]]  # case-insensitive name prefix
    assert out["list_snapshot"] == sorted([ids["full"], ids["sized"]])
    assert out["list_min_cpu"] == sorted([ids["full"], ids["plain"]])
    assert out["list_sorted"] == sorted(out["list_sorted"], reverse=True)

    assert out["set_labels"]["role"] == "relabelled"
    s = out["settings"]
    assert (s["auto_stop"], s["auto_archive"], s["auto_delete"]) == (5, 7, -1)
    assert s["public"] is False and s["block_all"] is True and s["labels"]["role"] == "relabelled"

    assert out["stopped"] == "stopped" and out["stopped_list"] == [ids["full"]]
    assert out["restarted"] == "started" and out["after_restart"] == "back\n"
    assert out["deleted_state"] == "destroyed" and out["deleted_wait_state"] == "destroyed"
    assert out["get_deleted"]["type"] == "DaytonaNotFoundError"

    seen = request_log.since_mark()
    pages = [r for r in seen if r["method"] == "GET" and r["path"] == "/api/sandbox"]
    assert len(pages) >= 3 + 3  # the paged listing alone fetched three pages
    assert all(r["status"] == 200 for r in pages)
