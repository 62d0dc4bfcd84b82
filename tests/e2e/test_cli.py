"""The `sandburg` CLI against the real server: create | ls | exec | stop | start | rm."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.fixture
def cli(server):
    env = dict(os.environ, SANDBURG_API_URL=server.api_url, SANDBURG_API_KEY=server.api_key)

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [sys.executable, "-m", "sandburg.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r

    return run


def test_cli_lifecycle(cli):
    sid = cli(
        "create", "--isolation", "container", "--image", "busybox", "--label", "cli=yes", "--env", "X=42"
    ).stdout.strip()
    try:
        assert sid in cli("ls", "--label", "cli=yes").stdout
        r = cli("exec", sid, "--", "echo $X; echo oops >&2; exit 3", check=False)
        assert (r.returncode, r.stdout, r.stderr) == (3, "42\n", "oops\n")
        cli("stop", sid)
        assert json.loads(cli("info", sid, "--json").stdout)["state"] == "stopped"
        cli("start", sid)
        assert cli("exec", sid, "--", "echo", "back").stdout == "back\n"
    finally:
        cli("rm", sid)
    r = cli("info", sid, check=False)
    assert r.returncode == 1 and "SANDBOX_NOT_FOUND" in r.stderr and "Traceback" not in r.stderr


def test_cli_bad_input(cli):
    r = cli("create", "--isolation", "vm", check=False)
    assert r.returncode == 2  # argparse usage error
    r = cli("create", "--image", "busybox", "--cpu", "999", check=False)
    assert r.returncode == 1 and "INVALID_RESOURCES" in r.stderr and "Traceback" not in r.stderr
