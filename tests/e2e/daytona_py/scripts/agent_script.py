"""An agent's script as Daytona's documentation writes it. It knows nothing of sandburg: only DAYTONA_API_URL and
DAYTONA_API_KEY in its environment point it there. It prints what it did, and a JSON summary as its last line."""

import json
import time

from daytona import Daytona, SessionExecuteRequest

daytona = Daytona()  # reads DAYTONA_API_KEY and DAYTONA_API_URL

started = time.monotonic()
sandbox = daytona.create()
create_seconds = time.monotonic() - started
print(f"Sandbox {sandbox.id} is {sandbox.state}")
summary = {"sandbox_id": sandbox.id, "create_seconds": create_seconds}

try:
    # Run a shell command
    response = sandbox.process.exec("python3 -c 'print(6*7)'")
    print(response.result)
    summary["exec"] = response.result

    # Run code in the sandbox's language
    response = sandbox.process.code_run('print("Hello World from code!")')
    if response.exit_code != 0:
        print(f"Error: {response.exit_code} {response.result}")
    summary["code_run"] = response.result

    # Upload a file
    sandbox.fs.upload_file(b"Hello, World!\n", "hello.txt")
    summary["uploaded"] = sandbox.process.exec("cat hello.txt").result

    # Git: clone a repository, change it, commit (the origin lives in the sandbox: it has no network yet)
    sandbox.process.exec(
        "git init -q -b main /tmp/origin && cd /tmp/origin && echo v1 > README.md && git add README.md && "
        "git -c user.name=Origin -c user.email=origin@example.com commit -q -m 'first commit'"
    )
    sandbox.git.clone("file:///tmp/origin", "workspace/repo")
    sandbox.fs.upload_file(b"v2\n", "workspace/repo/README.md")
    sandbox.git.add("workspace/repo", ["README.md"])
    commit = sandbox.git.commit("workspace/repo", "Update README", "Agent", "agent@example.com")
    status = sandbox.git.status("workspace/repo")
    summary["git"] = {
        "sha": commit.sha,
        "branch": status.current_branch,
        "ahead": status.ahead,
        "log": sandbox.process.exec("git log --format=%s%x20%an", cwd="workspace/repo").result,
    }

    # A long-running server in a session, reached from another command
    sandbox.process.create_session("web")
    server = sandbox.process.execute_session_command(
        "web", SessionExecuteRequest(command="python3 -m http.server 8000", run_async=True)
    )
    body = ""
    for _ in range(100):
        response = sandbox.process.exec("curl -sf http://127.0.0.1:8000/hello.txt")
        if response.exit_code == 0:
            body = response.result
            break
        time.sleep(0.1)
    print(f"server said: {body}")
    summary["served"] = body
    logs = sandbox.process.get_session_command_logs("web", server.cmd_id)
    summary["server_log"] = logs.stderr
    summary["server_running"] = sandbox.process.get_session_command("web", server.cmd_id).exit_code is None
    sandbox.process.delete_session("web")
finally:
    daytona.delete(sandbox)
    print("Sandbox deleted")

print(json.dumps(summary))
