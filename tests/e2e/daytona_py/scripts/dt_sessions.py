"""Sessions through Daytona's SDK: create, exec (sync and async), command status, logs, follow logs, input,
list, delete; and the entrypoint session."""

from __future__ import annotations

import asyncio
import time

from _common import TEST_LABEL, catch, cleanup, emit
from daytona import CreateSandboxFromSnapshotParams, Daytona, SessionExecuteRequest

out: dict = {}
daytona = Daytona()
with cleanup(daytona) as made:
    box = daytona.create(CreateSandboxFromSnapshotParams(snapshot="busybox", labels=TEST_LABEL))
    made.append(box)
    p = box.process
    p.create_session("dev")
    out["create_again"] = catch(lambda: p.create_session("dev"))

    r = p.execute_session_command("dev", SessionExecuteRequest(command="export X=7; cd /tmp"))
    out["sync_export"] = {"exit_code": r.exit_code, "cmd_id": bool(r.cmd_id)}
    r = p.execute_session_command("dev", SessionExecuteRequest(command='echo "$X $(pwd)"; echo oops >&2'))
    out["sync"] = {"exit_code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr, "output": r.output}

    bg = p.execute_session_command(
        "dev",
        SessionExecuteRequest(
            command="for i in 1 2 3; do echo line$i; sleep 0.3; done; echo warn >&2", run_async=True
        ),
    )
    out["async_immediate"] = {"exit_code": bg.exit_code, "has_id": bool(bg.cmd_id)}
    out["async_status_running"] = p.get_session_command("dev", bg.cmd_id).exit_code

    chunks: dict[str, list[str]] = {"stdout": [], "stderr": []}
    started = time.monotonic()
    asyncio.run(
        asyncio.wait_for(
            p.get_session_command_logs_async(
                "dev", bg.cmd_id, lambda s: chunks["stdout"].append(s), lambda s: chunks["stderr"].append(s)
            ),
            timeout=30,
        )
    )
    out["follow"] = {"stdout": "".join(chunks["stdout"]), "stderr": "".join(chunks["stderr"]),
                     "seconds": time.monotonic() - started}  # fmt: skip
    cmd = p.get_session_command("dev", bg.cmd_id)
    out["async_done"] = {"exit_code": cmd.exit_code, "command": cmd.command}
    logs = p.get_session_command_logs("dev", bg.cmd_id)
    out["logs"] = {"stdout": logs.stdout, "stderr": logs.stderr, "output": logs.output}

    # input to a background command
    reader = p.execute_session_command(
        "dev", SessionExecuteRequest(command='read v; echo "got $v"', run_async=True)
    )
    p.send_session_command_input("dev", reader.cmd_id, "hello\n")
    deadline = time.monotonic() + 20
    while p.get_session_command("dev", reader.cmd_id).exit_code is None and time.monotonic() < deadline:
        time.sleep(0.1)
    out["input"] = p.get_session_command_logs("dev", reader.cmd_id).stdout

    session = p.get_session("dev")
    out["session"] = {"id": session.session_id, "commands": len(session.commands)}
    out["list"] = [s.session_id for s in p.list_sessions()]
    out["entrypoint"] = {"id": p.get_entrypoint_session().session_id, "logs": p.get_entrypoint_logs().output}
    p.delete_session("dev")
    out["get_deleted"] = catch(lambda: p.get_session("dev"))
    out["list_after"] = [s.session_id for s in p.list_sessions()]
emit(out)
