"""Running the server: in the foreground, or as a daemon with a pid file and a log in the data dir."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request

from .config import Settings


def _settings(data_dir: str | None, host: str | None = None, port: int | None = None) -> Settings:
    return Settings.from_env(data_dir=data_dir, host=host, port=port)


def run_foreground(settings: Settings | None = None) -> int:
    import uvicorn

    from .app import create_app

    settings = settings or Settings.from_env()
    if os.geteuid() != 0:
        print(
            "sandburg server: must run as root (it manages mounts, cgroups and OCI runtimes)", file=sys.stderr
        )
        return 1
    os.makedirs(settings.data_dir, mode=0o711, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the preview proxy: no line per proxied request
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        ws="websockets",
        timeout_graceful_shutdown=5,
    )
    return 0


def _read_pid(settings: Settings) -> int | None:
    try:
        with open(settings.pid_path) as fh:
            pid = int(fh.read().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def _healthy(settings: Settings) -> bool:
    url = f"http://{settings.host}:{settings.port}/api/health"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(json.load(resp).get("status") == "ok")
    except (OSError, ValueError):
        return False


def start(data_dir: str | None, host: str | None, port: int | None, foreground: bool) -> int:
    """Start the daemon (or run in the foreground); harmless when it already runs."""
    settings = _settings(data_dir, host, port)
    if foreground:
        return run_foreground(settings)
    pid = _read_pid(settings)
    if pid is not None:
        print(f"sandburg server already running (pid {pid}) on http://{settings.host}:{settings.port}/api")
        return 0
    os.makedirs(settings.data_dir, mode=0o711, exist_ok=True)
    env = dict(
        os.environ,
        SANDBURG_DATA_DIR=settings.data_dir,
        SANDBURG_HOST=settings.host,
        SANDBURG_PORT=str(settings.port),
    )
    with open(settings.log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sandburg.server"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,  # survives the shell that started it
            cwd="/",
        )
    with open(settings.pid_path, "w") as fh:
        fh.write(str(proc.pid))
    print(f"sandburg server starting (pid {proc.pid}); log: {settings.log_path}", flush=True)
    deadline = time.monotonic() + 1800  # the first start builds the Debian image
    last_note = time.monotonic()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(f"sandburg server exited with {proc.returncode}; last log lines:", file=sys.stderr)
            print(_tail(settings.log_path), file=sys.stderr)
            os.unlink(settings.pid_path)
            return 1
        if _healthy(settings):
            print(f"sandburg server ready on http://{settings.host}:{settings.port}/api")
            try:
                with open(settings.credentials_path) as fh:
                    print(
                        f"API key: {json.load(fh)['api_key']}  (stored in {settings.credentials_path}, mode 0600)"
                    )
            except (OSError, ValueError, KeyError):
                pass
            return 0
        if time.monotonic() - last_note > 15:
            print("  still starting (first start builds the images) ...", flush=True)
            last_note = time.monotonic()
        time.sleep(0.2)
    print("sandburg server did not become ready in time; see the log", file=sys.stderr)
    return 1


def stop(data_dir: str | None) -> int:
    """Stop the daemon; sandboxes keep running and are re-adopted at the next start."""
    settings = _settings(data_dir)
    pid = _read_pid(settings)
    if pid is None:
        print("sandburg server is not running")
        if os.path.exists(settings.pid_path):
            os.unlink(settings.pid_path)
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    if os.path.exists(settings.pid_path):
        os.unlink(settings.pid_path)
    print(f"sandburg server stopped (pid {pid})")
    return 0


def status(data_dir: str | None) -> int:
    settings = _settings(data_dir)
    pid = _read_pid(settings)
    if pid is None:
        print("sandburg server is not running")
        return 3
    state = "ready" if _healthy(settings) else "not answering"
    print(f"sandburg server running (pid {pid}), {state} on http://{settings.host}:{settings.port}/api")
    return 0 if state == "ready" else 1


def _tail(path: str, n: int = 30) -> str:
    try:
        with open(path, errors="replace") as fh:
            return "".join(fh.readlines()[-n:])
    except OSError:
        return ""
