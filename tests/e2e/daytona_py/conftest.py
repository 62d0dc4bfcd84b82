"""Daytona's official Python SDK against a real sandburg server.

The SDK lives in its own venv (`.venv-daytona`, made by `make test` from `requirements.txt` and
`constraints.txt`): its dependencies must not mix with sandburg's. Each test runs a script of `scripts/` there, in a
subprocess whose environment holds only
`DAYTONA_API_URL` and `DAYTONA_API_KEY` (plus PATH, HOME, LANG), in an empty working directory (the SDK would read
a `.env` there). A script prints one JSON object as its last line of output: what it observed, which the test
checks. Scripts delete what they create; the e2e session's leak check catches what one did not.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._support.server import ServerProcess

ROOT = Path(__file__).resolve().parents[3]
DAYTONA_PYTHON = ROOT / ".venv-daytona" / "bin" / "python"
SCRIPTS = Path(__file__).resolve().parent / "scripts"

RunScript = Callable[..., dict[str, Any]]


@pytest.fixture(scope="session")
def daytona_python() -> Path:
    if not DAYTONA_PYTHON.exists():
        pytest.fail(
            f"{DAYTONA_PYTHON} is missing: `make daytona-venv` (part of `make test`) installs Daytona's SDK there"
        )
    return DAYTONA_PYTHON


def script_env(server: ServerProcess, **extra: str) -> dict[str, str]:
    """What a Daytona user's shell would have: the two variables, and nothing of sandburg's."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env.update(DAYTONA_API_URL=server.api_url, DAYTONA_API_KEY=server.api_key)
    env.update(extra)
    return env


@pytest.fixture
def run_script(
    server: ServerProcess, daytona_python: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> RunScript:
    """`run_script("files.py", *args, timeout=90, env={...})` → the JSON object the script printed last."""

    def run(
        name: str, *args: str, timeout: float = 120, env: dict[str, str] | None = None, bare: bool = False
    ) -> dict[str, Any]:
        """`bare`: the two Daytona variables only (no test name for the script to label its sandboxes with)."""
        extra = {} if bare else {"SANDBURG_TEST_NAME": request.node.name[:60]}
        env = script_env(server, **{**extra, **(env or {})})
        started = time.monotonic()
        try:
            proc = subprocess.run(
                [str(daytona_python), str(SCRIPTS / name), *args], cwd=tmp_path, env=env, capture_output=True,
                text=True, timeout=timeout, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"{name} ran longer than {timeout}s\nstdout:\n{exc.stdout}\nstderr:\n{exc.stderr}")
        took = time.monotonic() - started
        if proc.returncode != 0:
            pytest.fail(
                f"{name} exited {proc.returncode} after {took:.1f}s\nstdout:\n{proc.stdout[-4000:]}\n"
                f"stderr:\n{proc.stderr[-6000:]}\nserver log:\n{server.tail()}"
            )
        lines = proc.stdout.strip().splitlines()
        try:
            out = json.loads(lines[-1])
        except (IndexError, ValueError):
            pytest.fail(f"{name} printed no JSON last line:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        assert isinstance(out, dict)
        out["_seconds"] = took
        return out

    return run


class RequestLog:
    """The server's record of requests (test mode only): what a script sent, as the server saw it."""

    def __init__(self, server: ServerProcess) -> None:
        self._url = server.api_url + "/_test/requests"
        self.mark = self._fetch(0)["next"]

    def _fetch(self, after: int) -> dict[str, Any]:
        r = httpx.get(self._url, params={"after": after}, timeout=10)
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def since_mark(self) -> list[dict[str, Any]]:
        requests: list[dict[str, Any]] = self._fetch(self.mark)["requests"]
        return requests


@pytest.fixture
def request_log(server: ServerProcess) -> Iterator[RequestLog]:
    yield RequestLog(server)
