"""sandbox.git through Daytona's Python SDK (scripts/dt_git.py), on the endpoints of sandburg/server/routers/git.py."""

from __future__ import annotations

import pytest

from tests.e2e.daytona_py.conftest import ROOT, RunScript


def test_git(run_script: RunScript) -> None:
    if not (ROOT / "sandburg" / "server" / "routers" / "git.py").exists():
        pytest.skip("the git endpoints (sandburg/server/routers/git.py) are not in the tree yet")
    out = run_script("dt_git.py")
    assert out["status_untracked"] == [["a.txt", "Untracked"]]
    assert len(out["sha"]) == 40 and out["remotes"] == ["origin"]
    assert out["clone_file"] == "one\n"
    default = out["branches"]["default"]
    assert out["branches"] == {"list": sorted(["feature", default]), "current": "feature", "default": default}
    assert out["branches_after"] == [default]
    assert out["delete_missing_branch"]["type"] == "DaytonaGitBranchNotFoundError"
    assert out["restored"] == "one\n" and out["pulled"] == "two\n"
    assert out["status_clean"] == {"branch": default, "files": 0, "ahead": 0, "behind": 0}
    assert out["empty_commit"]["type"] is not None and out["empty_commit"]["status"] in (400, 409, 422)
    assert out["not_a_repo"]["type"] == "DaytonaGitRepoNotFoundError"
