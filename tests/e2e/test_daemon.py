"""`sandburg server start|status|stop`, what `make up` / `make down` run: idempotent, pid file and log in the
data dir, credentials stored 0600 where the SDK finds them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

from sandburg import Sandburg
from tests._support.host import CACHE_DIR, destroy, net_env, new_data_dir, require_root
from tests._support.server import free_port


def test_daemon_start_twice_status_stop():
    require_root()
    data_dir, cgroup_parent = new_data_dir("daemon")
    port = free_port()
    env = dict(
        os.environ, SANDBURG_DATA_DIR=data_dir, SANDBURG_PORT=str(port), SANDBURG_CGROUP_PARENT=cgroup_parent,
        SANDBURG_IMAGES="busybox", SANDBURG_CACHE_DIR=CACHE_DIR, SANDBURG_DEFAULT_IMAGE="busybox",
        **net_env(data_dir),  # its own bridge and tables, which destroy() removes (never the host's sandburg0)
    )  # fmt: skip
    env.pop("SANDBURG_API_URL", None)
    env.pop("SANDBURG_API_KEY", None)

    def server(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sandburg.cli.main", "server", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    try:
        first = server("start")
        assert first.returncode == 0, first.stdout + first.stderr
        assert "API key: sb_" in first.stdout
        creds = os.path.join(data_dir, "credentials.json")
        assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600
        with open(os.path.join(data_dir, "server.pid")) as fh:
            pid = int(fh.read())
        assert os.path.exists(os.path.join(data_dir, "server.log"))
        second = server("start")  # harmless
        assert second.returncode == 0 and "already running" in second.stdout
        with open(os.path.join(data_dir, "server.pid")) as fh:
            assert int(fh.read()) == pid
        assert server("status").returncode == 0
        # the SDK finds the server and key on its own: SANDBURG_DATA_DIR points at the credentials
        os.environ["SANDBURG_DATA_DIR"] = data_dir
        try:
            with Sandburg() as sb:
                assert sb.health().status == "ok"
                with open(creds) as fh:
                    assert json.load(fh)["api_url"] == f"http://127.0.0.1:{port}/api"
        finally:
            del os.environ["SANDBURG_DATA_DIR"]
        assert server("stop").returncode == 0
        assert server("status").returncode == 3
        assert server("stop").returncode == 0  # harmless too
    finally:
        server("stop")
        problems = destroy(data_dir, cgroup_parent)
        assert not problems, problems
