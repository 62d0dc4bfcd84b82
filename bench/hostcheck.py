"""Read-only looks at the host: other sandburg activity that skews timings, and traces a data dir left."""

from __future__ import annotations

import os
import subprocess

CGROUP_ROOT = "/sys/fs/cgroup"


def _cmdlines() -> dict[int, str]:
    out: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                out[int(entry)] = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
    return out


def bridge_tables() -> list[str]:
    """The host's nftables tables of the bridge family (every sandburg node has one, for anti-spoofing)."""
    r = subprocess.run(["nft", "list", "tables", "bridge"], capture_output=True, text=True, check=False)
    return sorted(line.split()[-1] for line in r.stdout.splitlines() if line.startswith("table bridge "))


def other_servers(exclude: set[int]) -> list[str]:
    """Other sandburg servers and test runs on this host (their load skews the timings): "pid cmdline"."""
    return sorted(
        f"{pid} {cmd[:160]}"
        for pid, cmd in _cmdlines().items()
        if pid not in exclude and ("sandburg.server" in cmd or ("pytest" in cmd and "tests" in cmd))
    )


def processes_using(data_dir: str) -> list[str]:
    """Processes whose command line names ``data_dir`` (runc/runsc and their sandboxes carry it)."""
    me = os.getpid()
    needle = data_dir.rstrip("/") + "/"
    return sorted(f"{pid} {cmd[:160]}" for pid, cmd in _cmdlines().items() if pid != me and needle in cmd)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_under(path: str) -> list[str]:
    root = path.rstrip("/")
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            mp = _unescape(line.split()[4])
            if mp == root or mp.startswith(root + "/"):
                found.append(mp)
    return found


def cgroup_dirs(parent: str) -> list[str]:
    """The directories of cgroup ``parent`` that exist, in the v2 root and in every v1 / hybrid hierarchy
    (``unified``, ``systemd``, ``memory``, ...)."""
    rel = parent.strip("/")
    candidates = [os.path.join(CGROUP_ROOT, rel)]
    try:
        candidates += [os.path.join(CGROUP_ROOT, h, rel) for h in sorted(os.listdir(CGROUP_ROOT))]
    except OSError:
        pass
    return [d for d in candidates if os.path.isdir(d) and not os.path.islink(d)]


def remove_empty_cgroups(parent: str) -> list[str]:
    """rmdir the cgroup ``parent`` and its children wherever they are empty (no processes); the ones removed."""
    removed = []
    for top in cgroup_dirs(parent):
        for dirpath, _dirs, _files in os.walk(top, topdown=False):
            try:
                os.rmdir(dirpath)  # the kernel refuses a cgroup that still has processes or children
                removed.append(dirpath)
            except OSError:
                pass
    return removed


def leftovers(data_dir: str, cgroup_parent: str) -> list[str]:
    """Everything of a destroyed data dir still on the host: processes, mounts, cgroups, files."""
    problems = [f"process {p}" for p in processes_using(data_dir)]
    problems += [f"mount {m}" for m in mounts_under(data_dir)]
    problems += [f"cgroup {d}" for d in cgroup_dirs(cgroup_parent)]
    if os.path.exists(data_dir):
        problems.append(f"dir {data_dir}")
    return problems
