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
]
# --network=sandbox: gVisor's own netstack on the veth of the namespace the node made (net.py). The agent
# listens on TCP inside it (agent_endpoint.py), and established connections are reset by a checkpoint instead of
# making it fail.
RUNSC_SANDBOX_NET = ["--network=sandbox", "--net-disconnect-ok", *RUNSC_FLAGS]
# --network=none (a node without networking): the agent's socket is created in the bind-mounted run dir.
RUNSC_NO_NET = ["--network=none", *RUNSC_FLAGS, "--host-uds=create"]
# runsc refuses netstack "in the root network namespace", and decides it is there when
# /proc/sys/net/core/rmem_default is accessible, which on this kernel it is in every namespace. The commands that
# set up a sandbox's network run in a private mount namespace where /proc/sys/net is an empty tmpfs; the sandbox's
# processes keep that view, which they never use (netstack has its own settings). docs/gvisor-checkpoint.md (G1).
NETNS_MASK = [
    "unshare", "-m", "--propagation", "private", "sh", "-c",
    'mount -t tmpfs -o size=4k,mode=555 sbnetmask /proc/sys/net && exec "$@"', "sh",
]  # fmt: skip


class OciRuntime:
    """One runtime binary with its state root."""

    def __init__(
        self,
        binary: str,
        state_root: str,
        global_flags: list[str] | None = None,
        wrap: list[str] | None = None,
    ) -> None:
        self.binary = binary
        self.state_root = state_root
        self.global_flags = global_flags or []
        self.wrap = wrap or []  # prefix of the commands that set up the network (run, restore)

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

    def run(self, cid: str, bundle: str, log_path: str, extra: tuple[str, ...] = ()) -> int:
        """Create and start container `cid` from `bundle`, detached; return its host pid. `extra`: global flags
        for this container only (runsc's --pod-init-config, activity.py)."""
        detach = "--detach" if self.binary.endswith("runsc") else "-d"
        return self._detached("run", cid, bundle, log_path, [detach], extra)

    def restore(
        self, cid: str, bundle: str, image_path: str, log_path: str, extra: tuple[str, ...] = ()
    ) -> int:
        """runsc only: start container `cid` from `bundle` with the processes and memory of a checkpoint image;
        return its host pid. The id must not exist (delete it first): runsc refuses a known id."""
        flags = ["--detach", "--image-path", image_path]
        return self._detached("restore", cid, bundle, log_path, flags, extra)

    def _detached(
        self, cmd: str, cid: str, bundle: str, log_path: str, flags: list[str], extra: tuple[str, ...] = ()
    ) -> int:
        pid_file = os.path.join(bundle, "pid")
        if os.path.exists(pid_file):
            os.unlink(pid_file)
        os.makedirs(self.state_root, exist_ok=True)
        argv = [*self.wrap, *self._argv(*extra, cmd, *flags, "--bundle", bundle, "--pid-file", pid_file, cid)]
        with open(log_path, "ab") as log:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                timeout=60,
                check=False,
            )
        if proc.returncode != 0:
            raise RuntimeError_(f"{self.binary} {cmd} failed", path=bundle, detail=_tail(log_path))
        with open(pid_file) as fh:
            return int(fh.read().strip())

    def checkpoint(self, cid: str, image_path: str, leave_running: bool) -> None:
        """runsc only: save the container's processes and memory into `image_path`. Without `leave_running` the
        container has stopped afterwards. A failed checkpoint leaves the sandbox broken (docs/snapshots.md)."""
        flags = ["--leave-running"] if leave_running else []
        self._run("checkpoint", *flags, "--image-path", image_path, cid, timeout=120)

    def trace_create(self, cid: str, config_path: str) -> None:
        """runsc only: attach a trace session (runtime monitoring) to a running sandbox (node/activity.py)."""
        self._run("trace", "create", "--force", "--config", config_path, cid)

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
    """`network="sandbox"`: gVisor's netstack on the veth of the namespace the OCI config names (net.py made it).
    `none`: gVisor's netstack with loopback only. docs/network.md says what this means for isolation."""
    if network == "sandbox":
        return OciRuntime("runsc", state_root, RUNSC_SANDBOX_NET, wrap=NETNS_MASK)
    if network == "none":
        return OciRuntime("runsc", state_root, RUNSC_NO_NET)
    raise ValueError(network)


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
