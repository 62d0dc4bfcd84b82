"""Read-only memory readings on the host: MemAvailable, the PSS of a sandbox's processes, its memory cgroup.

PSS (proportional set size, ``/proc/<pid>/smaps_rollup``) charges each resident page to the processes that map
it in equal shares, so shared pages (runsc's text, the runtime layer's python, libc) are split across every
sandbox mapping them and summing PSS over all processes never counts a page twice. One exception: processes that
share an address space (gVisor's systrap stubs are several host processes on one ``mm``) each report that whole
``mm``; they are counted once, detected with ``kcmp(KCMP_VM)``.
"""

from __future__ import annotations

import ctypes
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from bench.hostcheck import CGROUP_ROOT

PSS_KEYS = ("Pss", "Pss_Anon", "Pss_File", "Pss_Shmem")
KIB = 1024
MIB = 1024 * 1024
_KCMP_VM = 1
_SYS_KCMP = {"x86_64": 312, "aarch64": 272}.get(platform.machine())
_libc = ctypes.CDLL(None, use_errno=True)


def meminfo() -> dict[str, int]:
    """/proc/meminfo in KiB."""
    out: dict[str, int] = {}
    with open("/proc/meminfo") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            value = rest.split()
            if value and value[0].isdigit():
                out[key] = int(value[0])
    return out


def mem_available(samples: int = 10, interval: float = 0.3) -> tuple[dict[str, int], int]:
    """/proc/meminfo with MemAvailable replaced by the median of ``samples`` readings; and their spread (KiB)."""
    readings: list[int] = []
    info: dict[str, int] = {}
    for i in range(samples):
        if i:
            time.sleep(interval)
        info = meminfo()
        readings.append(info["MemAvailable"])
    info["MemAvailable"] = int(statistics.median(readings))
    return info, max(readings) - min(readings)


def smaps_rollup(pid: int) -> dict[str, int]:
    """Rss / Pss / Pss_Anon / Pss_File / Pss_Shmem of a process in KiB ({} once it is gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss", "Pss_Anon", "Pss_File", "Pss_Shmem"):
                    out[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return out


def same_mm(a: int, b: int) -> bool | None:
    """Whether two processes share one address space; None when kcmp is unavailable."""
    if _SYS_KCMP is None:
        return None
    r = _libc.syscall(_SYS_KCMP, a, b, _KCMP_VM, 0, 0)
    return None if r < 0 else r == 0


def process_kind(pid: int) -> str:
    """What a sandbox process is, from its command line."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return "gone"
    if not argv:
        return "gvisor stub (app address space)"
    name = os.path.basename(argv[0])
    if name in ("runsc-sandbox", "runsc-gofer", "tini"):
        return name
    if any(a.endswith("/.sandburg/bin/python3") for a in argv[:4]):
        return "python agent"
    if name == "bash":
        return "bash (warm shell)"
    return name or "?"


def cgroup_file(hierarchy: str, rel: str, name: str) -> str:
    if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):  # pure cgroup v2
        return os.path.join(CGROUP_ROOT, rel, name)
    return os.path.join(CGROUP_ROOT, hierarchy, rel, name)


def cgroup_pids(rel: str) -> list[int]:
    """The processes of cgroup ``rel`` and of its children (pids hierarchy on v1)."""
    top = os.path.dirname(cgroup_file("pids", rel, "cgroup.procs"))
    pids: list[int] = []
    for dirpath, _dirs, files in os.walk(top):
        if "cgroup.procs" in files:
            try:
                with open(os.path.join(dirpath, "cgroup.procs")) as fh:
                    pids += [int(p) for p in fh.read().split()]
            except OSError:
                continue
    return sorted(set(pids))


@dataclass
class SandboxMemory:
    """One sandbox's host-side memory, in KiB."""

    pss: int = 0
    pss_by_kind: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> Pss, Pss_Anon, ...
    processes: int = 0  # host processes in its cgroups
    shared_mm: int = 0  # processes not counted again because they share an address space counted already
    cgroup_usage: int | None = None  # memory.usage_in_bytes / memory.current, KiB
    cgroup_stat: dict[str, int] = field(default_factory=dict)  # rss, cache, shmem, mapped_file (v1), KiB
    kcmp_ok: bool = True
    pids: list[int] = field(default_factory=list)


def _cgroup_memory(rel: str, mem: SandboxMemory) -> None:
    v2 = os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))
    usage_file = cgroup_file("memory", rel, "memory.current" if v2 else "memory.usage_in_bytes")
    try:
        with open(usage_file) as fh:
            mem.cgroup_usage = int(fh.read()) // KIB
        with open(cgroup_file("memory", rel, "memory.stat")) as fh:
            stat = dict(line.split() for line in fh if len(line.split()) == 2)
    except (OSError, ValueError):
        return
    keys = ("anon", "file", "shmem", "file_mapped") if v2 else ("rss", "cache", "shmem", "mapped_file")
    mem.cgroup_stat = {k: int(stat[k]) // KIB for k in keys if k in stat}


def sandbox_memory(cgroup_parent: str, sandbox_id: str) -> SandboxMemory:
    """PSS of every process in the sandbox's cgroups (address spaces counted once), and its memory cgroup."""
    rel = f"{cgroup_parent.strip('/')}/{sandbox_id}"
    mem = SandboxMemory()
    counted: list[int] = []
    mem.pids = cgroup_pids(rel)
    for pid in mem.pids:
        roll = smaps_rollup(pid)
        if not roll:
            continue
        mem.processes += 1
        dup = False
        for other in counted:
            same = same_mm(pid, other)
            if same is None:
                mem.kcmp_ok = False
            elif same:
                dup = True
                break
        if dup:
            mem.shared_mm += 1
            continue
        counted.append(pid)
        kind = process_kind(pid)
        mem.pss += roll.get("Pss", 0)
        parts = mem.pss_by_kind.setdefault(kind, {})
        for key in PSS_KEYS:
            parts[key] = parts.get(key, 0) + roll.get(key, 0)
    _cgroup_memory(rel, mem)
    return mem


def mib(kib: float) -> float:
    return round(kib / KIB, 2)


def summarize(per_box: list[SandboxMemory]) -> dict[str, Any]:
    """The per-sandbox readings for the results: PSS and cgroup usage lists, means by process kind, MiB."""
    n = len(per_box)
    kinds = sorted({k for m in per_box for k in m.pss_by_kind})
    return {
        "pss_mib": [mib(m.pss) for m in per_box],
        "pss_by_kind_mean_mib": {
            k: {
                p.lower(): mib(sum(m.pss_by_kind.get(k, {}).get(p, 0) for m in per_box) / n) for p in PSS_KEYS
            }
            for k in kinds
        },
        "host_processes": [m.processes for m in per_box],
        "shared_address_space_processes": [m.shared_mm for m in per_box],
        "cgroup_usage_mib": [mib(m.cgroup_usage) for m in per_box if m.cgroup_usage is not None],
        "cgroup_stat_mean_mib": {
            k: mib(sum(m.cgroup_stat.get(k, 0) for m in per_box) / n)
            for k in sorted({k for m in per_box for k in m.cgroup_stat})
        },
    }


def process_pss(pid: int) -> int | None:
    """The PSS of one process (KiB), None once it is gone."""
    return smaps_rollup(pid).get("Pss")


def others_anon(exclude: set[int]) -> int:
    """Σ (Pss_Anon + Pss_Shmem) of every process not in ``exclude``, KiB: what the rest of the host holds."""
    total = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in exclude:
            roll = smaps_rollup(int(entry))
            total += roll.get("Pss_Anon", 0) + roll.get("Pss_Shmem", 0)
    return total


def settle(max_s: float = 15.0, tolerance_kib: int = 4096) -> tuple[float, bool]:
    """Wait (up to ``max_s``) until MemAvailable stops moving: the last 3 readings, 1 s apart, within
    ``tolerance_kib``. Returns the seconds waited and whether it settled."""
    t0 = time.monotonic()
    readings = [meminfo()["MemAvailable"]]
    while time.monotonic() - t0 < max_s:
        time.sleep(1.0)
        readings.append(meminfo()["MemAvailable"])
        if len(readings) >= 3 and max(readings[-3:]) - min(readings[-3:]) <= tolerance_kib:
            return round(time.monotonic() - t0, 1), True
    return round(time.monotonic() - t0, 1), False
