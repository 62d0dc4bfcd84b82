"""What the benchmark ran on: CPU, memory, kernel, runtimes, python, date and the repo's commit."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


def _run(argv: list[str], cwd: Path | None = None) -> str | None:
    """The stripped stdout of a short command, or None if it is missing or fails."""
    try:
        out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=15, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _first_line(text: str | None) -> str | None:
    return text.splitlines()[0].strip() if text else None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_mib() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return None


def _git_commit(repo: Path) -> str | None:
    head = _run(["git", "rev-parse", "HEAD"], cwd=repo)
    if head is None:
        return None
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo)
    return head + (" (uncommitted changes)" if dirty else "")


def machine_info(repo: Path) -> dict[str, Any]:
    uname = platform.uname()
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_mib": _memory_mib(),
        "kernel": f"{uname.system} {uname.release} {uname.version}",
        "arch": uname.machine,
        "runc": _first_line(_run(["runc", "--version"])),
        "runsc": _first_line(_run(["runsc", "--version"])),
        "python": sys.version.split()[0],
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": _git_commit(repo),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def format_machine(info: dict[str, Any]) -> str:
    mem = info.get("memory_mib")
    rows = [
        ("CPU", info.get("cpu_model")),
        ("cores", info.get("cores")),
        ("memory", f"{mem / 1024:.1f} GiB" if isinstance(mem, int) else None),
        ("kernel", info.get("kernel")),
        ("runc", info.get("runc")),
        ("runsc", info.get("runsc")),
        ("python", info.get("python")),
        ("date (UTC)", info.get("date_utc")),
        ("git commit", info.get("git_commit")),
        ("load avg", " ".join(str(x) for x in info.get("loadavg_at_start", []))),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {'?' if v is None else v}" for k, v in rows)
