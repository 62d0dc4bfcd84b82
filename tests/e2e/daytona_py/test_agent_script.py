"""The acceptance test: an agent script written for Daytona's docs (scripts/agent_script.py) runs against sandburg
unchanged, pointed there by DAYTONA_API_URL and DAYTONA_API_KEY alone, and `create()` costs one request: the
server sees no `GET /sandbox/{id}` poll at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.daytona_py.conftest import ROOT, RequestLog, RunScript

GIT_ROUTER = ROOT / "sandburg" / "server" / "routers" / "git.py"
SCRIPT = Path(__file__).resolve().parent / "scripts" / "agent_script.py"


def test_daytona_docs_agent_script(run_script: RunScript, request_log: RequestLog) -> None:
    if not GIT_ROUTER.exists():
        pytest.skip("the git endpoints (sandburg/server/routers/git.py) are not in the tree yet")
    code = SCRIPT.read_text().split('"""', 2)[2]  # past the docstring: nothing sandburg-specific in the code
    assert "sandburg" not in code.lower() and "import daytona" not in code
    out = run_script("agent_script.py", bare=True)
    sid = out["sandbox_id"]
    assert out["exec"] == "42\n"
    assert out["code_run"] == "Hello World from code!\n"
    assert out["uploaded"] == "Hello, World!\n"
    git = out["git"]
    assert len(git["sha"]) == 40 and git["branch"] == "main" and git["ahead"] == 1
    assert git["log"] == "Update README Agent\nfirst commit Origin\n"
    assert out["served"] == "Hello, World!\n" and '"GET /hello.txt HTTP/1.1" 200' in out["server_log"]
    assert out["server_running"] is True
    assert out["create_seconds"] < 30

    seen = request_log.since_mark()
    mine = [r for r in seen if sid in r["path"] or r["path"] in ("/api/sandbox", "/api/socket.io/")]
    creates = [r for r in mine if r["method"] == "POST" and r["path"] == "/api/sandbox"]
    assert [r["status"] for r in creates] == [200]
    polls = [r for r in mine if r["method"] == "GET" and r["path"] == f"/api/sandbox/{sid}"]
    assert polls == [], f"the SDK polled the sandbox: {polls}"
    deletes = [r for r in mine if r["method"] == "DELETE" and r["path"] == f"/api/sandbox/{sid}"]
    assert [r["status"] for r in deletes] == [200]
    # the SDK's background socket.io connection gets a quick, typed refusal (one attempt per Sandbox object)
    socketio = [r for r in mine if r["path"] == "/api/socket.io/"]
    assert 1 <= len(socketio) <= 3 and all(r["status"] == 501 for r in socketio), socketio
    assert all(r["status"] != 404 for r in mine), [r for r in mine if r["status"] == 404]
