"""The one place that runs privileged host commands.

Every call names the error class of its step so that a failure says which step broke, on what path, and what the
tool printed. Callers write, before each call, a comment saying why the step is needed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from .errors import NodeError


def run(
    argv: Sequence[str],
    error: type[NodeError],
    *,
    path: str | None = None,
    timeout: float = 120,
    input: bytes | None = None,
    ok_codes: Sequence[int] = (0,),
) -> str:
    """Run `argv`, return its stdout; raise `error` with stderr when it exits with a code not in `ok_codes`."""
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise error(f"{argv[0]} is not installed (run `make setup`)", path=path) from exc
    except subprocess.TimeoutExpired as exc:
        raise error(f"{' '.join(argv[:3])} timed out after {timeout}s", path=path) from exc
    if proc.returncode not in ok_codes:
        detail = (proc.stderr or proc.stdout).decode(errors="replace")
        raise error(f"{' '.join(argv[:4])} failed with exit {proc.returncode}", path=path, detail=detail)
    return proc.stdout.decode(errors="replace")


def is_mountpoint(path: str) -> bool:
    """True when `path` is a mount point (compares with /proc/self/mountinfo, robust for bind mounts)."""
    want = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                fields = line.split(" ")
                if len(fields) > 4 and _unescape(fields[4]) == want:
                    return True
    except OSError:
        return False
    return False


def mounts_under(prefix: str) -> list[str]:
    """Mount points at or below `prefix`, deepest first (the order to unmount them in)."""
    prefix = os.path.realpath(prefix).rstrip("/")
    found: list[str] = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            fields = line.split(" ")
            if len(fields) > 4:
                mp = _unescape(fields[4])
                if mp == prefix or mp.startswith(prefix + "/"):
                    found.append(mp)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
