"""The host cgroups of sandboxes: where they are, why a sandbox died (OOM, pids), and removing leftovers.

runc and runsc create and remove a sandbox's cgroup (`<parent>/<id>` in every controller) themselves; this module
reads its counters — before the runtime's delete removes them — and removes what a crash left behind.
Works on cgroup v1 (this host: hybrid) and on a pure cgroup v2 host.
"""

from __future__ import annotations

import os
import signal

ROOT = "/sys/fs/cgroup"


def is_v2() -> bool:
    return os.path.exists(os.path.join(ROOT, "cgroup.controllers"))


def controller_dirs(parent: str) -> list[str]:
    """The directories of cgroup `parent` in every hierarchy that exists."""
    parent = parent.strip("/")
    if is_v2():
        return [os.path.join(ROOT, parent)]
    dirs = []
    for name in sorted(os.listdir(ROOT)):
        base = os.path.join(ROOT, name)
        if os.path.islink(base) or not os.path.isdir(base):
            continue
        dirs.append(os.path.join(base, parent))
    return dirs


def _read_kv(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(path) as fh:
            for line in fh:
                k, _, v = line.strip().partition(" ")
                if v.isdigit():
                    out[k] = int(v)
    except OSError:
        pass
    return out


def death_reason(cgroup_path: str) -> str | None:
    """'oom' or 'pids' when the sandbox's cgroup recorded hitting that limit, else None."""
    rel = cgroup_path.strip("/")
    if is_v2():
        mem = _read_kv(os.path.join(ROOT, rel, "memory.events"))
        pids = _read_kv(os.path.join(ROOT, rel, "pids.events"))
    else:
        mem = _read_kv(os.path.join(ROOT, "memory", rel, "memory.oom_control"))
        pids = _read_kv(os.path.join(ROOT, "pids", rel, "pids.events"))
    if mem.get("oom_kill", 0) > 0:
        return "oom"
    if pids.get("max", 0) > 0:
        return "pids"
    return None


def kill_all(path: str) -> int:
    """SIGKILL every process in cgroup `path` (the runtime's own kill can fail once its control server is gone).

    Returns how many processes were signalled."""
    rel = path.strip("/")
    procs_file = (
        os.path.join(ROOT, rel, "cgroup.procs")
        if is_v2()
        else os.path.join(ROOT, "pids", rel, "cgroup.procs")
    )
    try:
        with open(procs_file) as fh:
            pids = [int(p) for p in fh.read().split()]
    except OSError:
        return 0
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(pids)


def children(parent: str) -> set[str]:
    """Names of the cgroups directly under `parent` in any hierarchy."""
    names: set[str] = set()
    for d in controller_dirs(parent):
        try:
            names.update(n for n in os.listdir(d) if os.path.isdir(os.path.join(d, n)))
        except FileNotFoundError:
            continue
    return names


def remove(path: str) -> list[str]:
    """Remove cgroup `path` (and empty children) in every hierarchy; return the dirs that could not be removed."""
    left = []
    for d in controller_dirs(path):
        for sub, _dirs, _files in sorted(os.walk(d, topdown=False), key=lambda t: -t[0].count("/")):
            try:
                os.rmdir(sub)
            except FileNotFoundError:
                pass
            except OSError:
                left.append(sub)
    return left
