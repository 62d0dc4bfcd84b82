"""process.exec and process.code_run through Daytona's SDK. Argument: a node binary to upload (or "")."""

from __future__ import annotations

import sys
import time

from _common import TEST_LABEL, catch, cleanup, emit
from daytona import CodeRunParams, CreateSandboxFromSnapshotParams, Daytona, DaytonaTimeoutError
from daytona_toolbox_api_client import CodeRunRequest, ProcessApi

node_binary = sys.argv[1] if len(sys.argv) > 1 else ""
out: dict = {}
daytona = Daytona()
with cleanup(daytona) as made:
    box = daytona.create(CreateSandboxFromSnapshotParams(labels=TEST_LABEL))  # debian-12: python3, bash
    made.append(box)
    p = box.process

    r = p.exec("python3 -c 'print(6*7)'")
    out["exec"] = {"result": r.result, "exit_code": r.exit_code, "stdout": r.artifacts.stdout}
    r = p.exec('echo "$FOO"; pwd', cwd="/tmp", env={"FOO": "bar baz"})
    out["exec_cwd_env"] = r.result
    out["exec_exit"] = p.exec("echo out; echo err >&2; exit 3").exit_code
    out["exec_stderr"] = p.exec("echo err >&2").result
    started = time.monotonic()
    out["exec_timeout"] = catch(lambda: p.exec("sleep 30", timeout=1))
    out["exec_timeout"]["seconds"] = time.monotonic() - started
    out["exec_timeout"]["is_timeout"] = (
        out["exec_timeout"]["type"] is not None
        and DaytonaTimeoutError.__name__ in (out["exec_timeout"]["mro"])
    )

    # code_run: the sandbox's language (python, from the SDK's label)
    r = p.code_run(
        "import os, sys\nprint(sys.argv[1:], os.environ['X'], 6 * 7)",
        params=CodeRunParams(argv=["a", "b c"], env={"X": "x"}),
    )
    out["code_python"] = {"result": r.result, "exit_code": r.exit_code, "charts": r.artifacts.charts}
    r = p.code_run("raise ValueError('boom')")
    out["code_python_error"] = {"result": r.result, "exit_code": r.exit_code}
    out["code_python_cwd"] = p.code_run("import os; print(os.getcwd())").result
    started = time.monotonic()
    out["code_timeout"] = catch(lambda: p.code_run("import time; time.sleep(30)", timeout=1))
    out["code_timeout"]["seconds"] = time.monotonic() - started

    # other languages through the generated client (the SDK sends the sandbox's label; the API takes any)
    api = ProcessApi(box._toolbox_api)
    res = api.code_run(
        CodeRunRequest(code='echo "$((6 * 7)) $1 $BASH_VERSION" | cut -c1-5', language="bash", argv=["z"])
    )
    out["code_bash"] = {"result": res.result, "exit_code": res.exit_code}
    out["code_unknown"] = catch(lambda: api.code_run(CodeRunRequest(code="x", language="cobol")))

    # javascript: the SDK's language label; debian-12 has no node, so a clear error, until one is uploaded
    js = daytona.create(CreateSandboxFromSnapshotParams(labels=TEST_LABEL, language="javascript"))
    made.append(js)
    out["js_language"] = js.labels.get("code-toolbox-language")
    out["code_js_missing"] = catch(lambda: js.process.code_run("console.log(6 * 7)"))
    out["code_ts_missing"] = catch(
        lambda: ProcessApi(js._toolbox_api).code_run(
            CodeRunRequest(code="const x: number = 42", language="typescript")
        )
    )
    if node_binary:
        js.fs.upload_file(node_binary, "/usr/local/bin/node")
        js.fs.set_file_permissions("/usr/local/bin/node", mode="755")
        r = js.process.code_run(
            "console.log(process.argv.slice(2), process.env.Y, 6 * 7)",
            params=CodeRunParams(argv=["q"], env={"Y": "y"}),
        )
        out["code_js"] = {"result": r.result, "exit_code": r.exit_code}
emit(out)
