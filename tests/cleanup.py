"""Remove test data dirs left by test runs that died (their pid is gone): `python -m tests.cleanup`."""

from __future__ import annotations

import os
import subprocess

from tests._support.host import TEST_ROOT, destroy


def stale_dirs() -> list[str]:
    out = []
    try:
        names = os.listdir(TEST_ROOT)
    except FileNotFoundError:
        return []
    for name in names:
        parts = name.split("-")
        if len(parts) >= 3 and parts[-2].isdigit():
            pid = int(parts[-2])
            if pid != os.getpid() and not os.path.exists(f"/proc/{pid}"):
                out.append(name)
    return out


def stale_fake_internets() -> list[str]:
    """Namespaces of tests/_support/fakenet.py (sbfake-<pid>-<n>) whose test run died."""
    try:
        names = os.listdir("/run/netns")
    except FileNotFoundError:
        return []
    out = []
    for n in names:
        pid, _, k = n.removeprefix("sbfake-").partition("-")
        if n.startswith("sbfake-") and pid.isdigit() and k.isdigit() and not os.path.exists(f"/proc/{pid}"):
            out.append(n)
    return out


def main() -> None:
    for ns in stale_fake_internets():
        subprocess.run(["ip", "netns", "del", ns], check=False)
        pid, _, k = ns.removeprefix("sbfake-").partition("-")
        subprocess.run(["ip", "link", "del", f"sbf{pid}x{k}"[:15]], capture_output=True, check=False)
        print(f"removed stale fake internet {ns}")
    for name in stale_dirs():
        problems = destroy(os.path.join(TEST_ROOT, name), f"sandburg-test/{name}")
        print(f"removed stale test data dir {name}" + (f" (left: {problems})" if problems else ""))


if __name__ == "__main__":
    main()
