"""Schemathesis against the exported spec (docs/openapi.json): generated requests find no 5xx.

Bounded: a few examples per operation, deterministic generation, no example database. Only operations that cannot
make anything outside the server are generated: every GET, and every method on routes under a sandbox path
parameter (a generated id names no sandbox, so nothing runs). Creating sandboxes, images, volumes, secrets and
pulling images are left out: generated values would make real objects or reach registries outside this machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests._support.server import ServerProcess

SPEC = Path(__file__).parents[2] / "docs" / "openapi.json"
ST = os.path.join(os.path.dirname(sys.executable), "st")
RUNS = {
    "get": ["--include-method", "GET"],
    "sandbox-routes": ["--include-path-regex", r"\{sandbox_id(_or_name)?\}", "--exclude-method", "GET"],
}


@pytest.mark.skipif(not os.path.exists(ST), reason="schemathesis is not installed (make setup)")
@pytest.mark.parametrize("run", sorted(RUNS))
def test_generated_requests_find_no_server_error(server: ServerProcess, tmp_path: Path, run: str) -> None:
    argv = [
        ST, "run", str(SPEC), "--url", f"http://127.0.0.1:{server.port}",
        "-H", f"Authorization: Bearer {server.api_key}",
        "--checks", "not_a_server_error", "--max-examples", "5", "--phases", "examples,fuzzing",
        "--generation-deterministic", "--request-timeout", "30",
        "--workers", "1", "--no-color", *RUNS[run],
    ]  # fmt: skip
    env = dict(os.environ, SCHEMATHESIS_HOOKS="", HOME=str(tmp_path))
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env, check=False)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    tested = re.search(r"Tested: (\d+)", out)
    cases = re.search(r"(\d+) generated, (\d+) passed", out)
    assert tested and int(tested.group(1)) >= 10, out[-2000:]  # it did run operations (53 GETs, 47 others)
    assert cases and cases.group(1) == cases.group(2), out[-2000:]
    shutil.rmtree(tmp_path / ".hypothesis", ignore_errors=True)
