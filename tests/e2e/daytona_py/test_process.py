"""process.exec and process.code_run through Daytona's Python SDK (scripts/dt_process.py)."""

from __future__ import annotations

import os

from tests.e2e.daytona_py.conftest import RunScript

# a node binary to upload into a sandbox for the javascript code run: the host's, when it has one that runs on
# Debian 12 (the image's libc) without libraries of its own
HOST_NODE = "/usr/bin/node" if os.path.exists("/usr/bin/node") else ""


def test_exec_and_code_run(run_script: RunScript) -> None:
    out = run_script("dt_process.py", HOST_NODE, timeout=180)
    assert out["exec"] == {"result": "42\n", "exit_code": 0, "stdout": "42\n"}
    assert out["exec_cwd_env"] == "bar baz\n/tmp\n"
    assert out["exec_exit"] == 3 and out["exec_stderr"] == "err\n"
    t = out["exec_timeout"]
    assert t["type"] == "DaytonaProcessExecutionTimeoutError" and t["is_timeout"] and t["status"] == 408
    assert t["seconds"] < 10

    assert out["code_python"] == {"result": "['a', 'b c'] x 42\n", "exit_code": 0, "charts": []}
    err = out["code_python_error"]
    assert err["exit_code"] == 1 and "ValueError: boom" in err["result"]
    assert out["code_python_cwd"] == "/workspace\n"
    # code_run has no error mapping in the SDK: the generated client's exception, with the daemon's 408
    ct = out["code_timeout"]
    assert ct["status"] == 408 and "PROCESS_EXECUTION_TIMEOUT" in ct["message"] and ct["seconds"] < 10

    assert out["code_bash"] == {"result": "42 z \n", "exit_code": 0}
    assert out["code_unknown"]["status"] == 400 and "cobol" in out["code_unknown"]["message"]
    assert out["js_language"] == "javascript"
    for key, needs in (("code_js_missing", "node"), ("code_ts_missing", "tsx")):
        e = out[key]
        assert e["status"] == 400 and "BAD_REQUEST" in e["message"] and needs in e["message"], e
    if HOST_NODE:
        assert out["code_js"] == {"result": "[ 'q' ] y 42\n", "exit_code": 0}
