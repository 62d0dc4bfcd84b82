"""A real sandburg server subprocess for end-to-end tests, on its own data dir, port and cgroup parent."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping

import httpx

from tests._support.host import CACHE_DIR, net_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(self, data_dir: str, cgroup_parent: str, extra_env: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.cgroup_parent = cgroup_parent
        self.port = free_port()
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        # kept outside the data dir, which is destroyed at the end: the log explains failures afterwards
        logs = os.path.join(os.path.dirname(data_dir), "logs")
        os.makedirs(logs, exist_ok=True)
        self.log_path = os.path.join(logs, os.path.basename(data_dir) + ".log")

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def api_key(self) -> str:
        with open(os.path.join(self.data_dir, "credentials.json")) as fh:
            return str(json.load(fh)["api_key"])

    def env(self, **overrides: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SANDBURG_DATA_DIR=self.data_dir,
            SANDBURG_CACHE_DIR=CACHE_DIR,
            SANDBURG_PORT=str(self.port),
            SANDBURG_HOST="127.0.0.1",
            SANDBURG_CGROUP_PARENT=self.cgroup_parent,
            SANDBURG_TEST_MODE="1",
            # sandboxes of long test files must not stop while they wait: the lifecycle tests set their own
            SANDBURG_AUTO_STOP_MINUTES="0",
            **net_env(self.data_dir),
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def start(self, wait: bool = True, **env_overrides: str) -> ServerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandburg.server"],
            env=self.env(**env_overrides),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.tail()}")

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """kill -9: what a crash looks like to the rest of the host."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail(self, n: int = 40) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return "".join(fh.readlines()[-n:])
        except OSError:
            return ""
