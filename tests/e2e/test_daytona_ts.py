"""The official Daytona TypeScript SDK against a real server.

`tests/e2e/daytona_ts/` holds `node --test` files that drive `@daytonaio/sdk` (pinned exactly in its package.json and
package-lock.json; `make test` runs `npm ci` there first), configured only through DAYTONA_API_URL and DAYTONA_API_KEY.
This test runs them against the session's server and fails with node's output.

The Daytona SDK cannot choose sandburg's isolation tier, so for this module the session's server is restarted with
`SANDBURG_DEFAULT_ISOLATION=container` (sandboxes survive a restart), and restarted with its own settings after.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests._support.server import ServerProcess

TS_DIR = Path(__file__).parent / "daytona_ts"
NODE_TIMEOUT = 150  # seconds for the whole node run; it takes ~10-15 s
SDK_VERSION = json.loads((TS_DIR / "package.json").read_text())["dependencies"]["@daytonaio/sdk"]

pytestmark = pytest.mark.timeout(NODE_TIMEOUT + 60)


@pytest.fixture(scope="module")
def container_server(server: ServerProcess) -> Iterator[ServerProcess]:
    """The session's server, with `container` as the default isolation while this module runs."""
    server.stop()
    server.start(SANDBURG_DEFAULT_ISOLATION="container")
    try:
        yield server
    finally:
        server.stop()
        server.start()


def _check_node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the Daytona TypeScript SDK tests need Node.js >= 20")
    installed = TS_DIR / "node_modules" / "@daytonaio" / "sdk" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != SDK_VERSION:
        pytest.fail(
            f"@daytonaio/sdk@{SDK_VERSION} is not installed: run `make test`, or `npm ci` in {TS_DIR}"
        )
    return node


def _leftovers(srv: ServerProcess, run: str) -> list[str]:
    """Deletes the sandboxes this run left behind; returns their ids."""
    headers = {"Authorization": f"Bearer {srv.api_key}"}
    with httpx.Client(base_url=srv.api_url + "/", headers=headers, timeout=60) as http:
        r = http.get("sandbox", params={"labels": json.dumps({"sandburg-run": run}), "limit": 1000})
        r.raise_for_status()
        ids = [item["id"] for item in r.json()["items"]]
        for sid in ids:
            http.delete(f"sandbox/{sid}")
    return ids


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[str, bool]:
    """Runs node in its own process group, killed whole at the deadline; returns (output, failed)."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=NODE_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return out.decode(errors="replace") + f"\n[node killed after {NODE_TIMEOUT}s]", True
    return out.decode(errors="replace"), proc.returncode != 0


def test_daytona_typescript_sdk(container_server: ServerProcess, tmp_path: Path) -> None:
    node = _check_node()
    run = f"ts-{uuid.uuid4().hex[:8]}"
    # what a Daytona user's shell would have: the two variables and nothing of sandburg's; an empty working
    # directory, since the SDK reads a .env there
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env.update(
        DAYTONA_API_URL=container_server.api_url,
        DAYTONA_API_KEY=container_server.api_key,
        SANDBURG_TS_RUN=run,  # a label on every sandbox, for the cleanup below
        SANDBURG_TS_ISOLATION="container",  # what the lifecycle test expects the server's default gave
        NO_COLOR="1",
    )
    files = sorted(str(p) for p in TS_DIR.glob("*.test.mjs"))
    assert files, f"no *.test.mjs in {TS_DIR}"
    # one process per test file, three files at a time; the spec reporter names every test and prints failures
    cmd = [node, "--test", "--test-concurrency=3", "--test-reporter=spec", "--test-timeout=60000", *files]
    output, failed = _run(cmd, tmp_path, env)
    left = _leftovers(container_server, run)
    if failed:
        pytest.fail(
            f"node --test failed in {TS_DIR}:\n{output}\n--- server log ---\n{container_server.tail()}"
        )
    assert not left, f"the TypeScript tests left sandboxes behind: {left}\n{output}"
    print(output)
