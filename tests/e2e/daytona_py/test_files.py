"""sandbox.fs through Daytona's Python SDK (scripts/dt_files.py)."""

from __future__ import annotations

from tests.e2e.daytona_py.conftest import RunScript


def test_file_system(run_script: RunScript) -> None:
    out = run_script("dt_files.py")
    assert out["dirs"] == ["/root", "/workspace"]
    assert out["download_bytes"] == "hello world\n" and out["download_local_same"]
    ok1, ok2, missing = out["bulk_download"]
    assert (ok1["result"], ok2["result"]) == ("one\n", "two needle\n") and not ok1["error"]
    assert missing["result"] is None and missing["error_code"] == "FILE_NOT_FOUND"
    assert out["list"] == [["a.txt", False], ["bulk", True], ["sub", True]]
    assert out["info"] == {
        "name": "a.txt", "size": 12, "is_dir": False, "mode": "-rw-r--r--", "permissions": "0644", "owner": "root",
    }  # fmt: skip
    assert out["folder_perm"] == "0750"
    assert out["find"] == [["/workspace/bulk/2.txt", 1, "two needle"]]
    assert out["search"] == ["/workspace/a.txt", "/workspace/bulk/1.txt", "/workspace/bulk/2.txt"]
    assert out["replace"] == [["/workspace/bulk/1.txt", True], ["/workspace/bulk/2.txt", True]]
    assert out["replaced"] == "ONE\n" and out["moved"] == "hello world\n"
    assert out["perms"] == {"permissions": "0600", "owner": "nobody"}
    assert out["delete_nonempty"]["type"] == "DaytonaConflictError"
    assert out["after_delete"] == ["bulk", "sub"]
    for key in ("info_missing", "download_missing", "move_missing"):
        assert out[key]["type"] == "DaytonaFileNotFoundError" and out[key]["status"] == 404, out[key]
