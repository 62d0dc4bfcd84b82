"""runc and runsc: the two OCI runtimes behind the `container` and `gvisor` tiers.

Both are driven through their CLIs with a per-data-dir `--root`, so several sandburg data dirs (tests, a daemon)
on one host never see each other's containers. `run` hands the container's stdio to a log file: a pipe would never
reach EOF because the detached container keeps it.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from typing import Any

from .errors import RuntimeError_

RUNSC_FLAGS = [
    "--overlay2=none",  # writes go to the sandbox's btrfs root (the default keeps them in a memory overlay)
    "--host-uds=create",  # lets the agent create its socket in the bind-mounted run dir
]


class OciRuntime:
    """One runtime binary with its state root."""

    def __init__(self, binary: str, state_root: str, global_flags: list[str] | None = None) -> None:
        self.binary = binary
        self.state_root = state_root
        self.global_flags = global_flags or []

    def _argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", self.state_root, *self.global_flags, *args]

    def _run(self, *args: str, timeout: float = 30, ok_missing: bool = False) -> str:
        try:
            proc = subprocess.run(
                self._argv(*args), capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
            )
        except FileNotFoundError as exc:
            raise RuntimeError_(f"{self.binary} is not installed (run `make setup`)") from exc
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError_(f"{self.binary} {args[0]} timed out", path=args[-1]) from exc
        if proc.returncode != 0:
            err = (proc.stderr or proc.stdout).decode(errors="replace")
            if ok_missing and ("does not exist" in err or "not exist" in err or "not found" in err):
                return ""
            raise RuntimeError_(f"{self.binary} {args[0]} failed", path=args[-1], detail=err)
        return proc.stdout.decode(errors="replace")

    def run(self, cid: str, bundle: str, log_path: str) -> int:
        """Create and start container `cid` from `bundle`, detached; return its host pid."""
        pid_file = os.path.join(bundle, "pid")
        if os.path.exists(pid_file):
            os.unlink(pid_file)
        os.makedirs(self.state_root, exist_ok=True)
        detach = "--detach" if self.binary.endswith("runsc") else "-d"
        with open(log_path, "ab") as log:
            proc = subprocess.run(
                self._argv("run", detach, "--bundle", bundle, "--pid-file", pid_file, cid),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                timeout=60,
                check=False,
            )
        if proc.returncode != 0:
            raise RuntimeError_(f"{self.binary} run failed", path=bundle, detail=_tail(log_path))
        with open(pid_file) as fh:
            return int(fh.read().strip())

    def kill(self, cid: str, signal: str = "KILL") -> None:
        try:
            self._run("kill", cid, signal, ok_missing=True)
        except RuntimeError_ as exc:
            # killing a container that already stopped is what we wanted anyway
            if "not running" not in str(exc) and "stopped" not in str(exc):
                raise

    def pause(self, cid: str) -> None:
        """Freeze every process of the container (runc: the freezer cgroup; runsc: the Sentry stops its tasks)."""
        self._run("pause", cid)

    def resume(self, cid: str) -> None:
        self._run("resume", cid)

    def delete(self, cid: str, force: bool = False) -> None:
        args = ["delete", "--force", cid] if force else ["delete", cid]
        self._run(*args, timeout=60, ok_missing=True)

    def state(self, cid: str) -> dict[str, Any] | None:
        """The runtime's view of `cid` ({status, pid, ...}), or None when it does not know it."""
        out = self._run("state", cid, ok_missing=True)
        if not out.strip():
            return None
        state: dict[str, Any] = json.loads(out)
        return state

    def list(self) -> list[dict[str, Any]]:
        if not os.path.isdir(self.state_root):
            return []
        fmt = ["--format", "json"] if self.binary.endswith("runsc") else ["-f", "json"]
        out = self._run("list", *fmt)
        items = json.loads(out) if out.strip() else None
        return list(items or [])


def runc(state_root: str) -> OciRuntime:
    return OciRuntime("runc", state_root)


def runsc(state_root: str, network: str = "none") -> OciRuntime:
    """`network="host"`: the Sentry uses the kernel stack of the namespace the OCI config names (net.py made it);
    runsc's own netstack refuses to run here ("cannot run with network enabled in root network namespace").
    `none`: gVisor's netstack with loopback only. docs/network.md says what `host` means for isolation."""
    if network not in ("none", "host"):
        raise ValueError(network)
    return OciRuntime("runsc", state_root, [f"--network={network}", *RUNSC_FLAGS])


def wait_pid_exit(pid: int, timeout: float) -> bool:
    """Wait until `pid` has exited (it need not be our child). True if it is gone."""
    if pid <= 0:  # runsc reports -1 for a sandbox that has stopped
        return True
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(max(0, int(timeout * 1000))))
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: str, n: int = 2000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - n))
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def wait_until(pred: Any, timeout: float, interval: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return bool(pred())
