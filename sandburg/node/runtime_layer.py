"""The read-only runtime layer mounted at `/.sandburg` in every sandbox.

It holds a relocatable CPython (the host's Debian interpreter, its shared libraries, and the stdlib as
precompiled, hash-checked-free .pyc in one zip), `tini` as PID 1, and the toolbox agent. Started through its own
dynamic loader (`/.sandburg/lib/ld-linux-x86-64.so.2 --library-path /.sandburg/lib`), it runs in any image,
including ones without libc (busybox). One zip instead of a stdlib tree keeps start-up cheap under gVisor, where
every stat and open of a file is a round trip to the gofer.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import zipfile

from . import priv
from .errors import RuntimeLayerError

MOUNT_POINT = "/.sandburg"
HOST_PYTHON = "/usr/bin/python3.11"
HOST_TINI = "/usr/bin/tini-static"
LAYER_VERSION = "3"
# extension modules the agent (and its future session/PTY code) may import; the rest of the stdlib is pure Python
DYNLOAD = ["termios", "_json", "_queue", "_contextvars", "resource", "mmap", "_typing", "_posixshmem", "_bz2",
           "_lzma", "_hashlib", "_ssl", "_uuid", "_zoneinfo", "_decimal", "_asyncio"]  # fmt: skip
STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data", "distutils",
               "site-packages", "dist-packages", "__pycache__", "lib-dynload", "venv"}  # fmt: skip

AGENT_SRC = os.path.join(os.path.dirname(os.path.dirname(__file__)), "agent")


_AS_USER = (
    "import grp,os,pwd,sys\n"
    "u,_,g=sys.argv[1].partition(':')\n"
    "e=None if u.isdigit() else pwd.getpwnam(u)\n"
    "uid=int(u) if e is None else e.pw_uid\n"
    "gid=(int(g) if g.isdigit() else grp.getgrnam(g).gr_gid) if g else (e.pw_gid if e else uid)\n"
    "os.setgroups([]);os.setgid(gid);os.setuid(uid)\n"
    "os.execv(sys.argv[2],sys.argv[2:])\n"
)


def as_user_argv(user: str, argv: list[str]) -> list[str]:
    """`argv` run as `user` (`name`, `uid`, `name:group` or `uid:gid`, as Docker's USER), through the layer's own
    Python: the image may have no su, runuser or setpriv (a build step's USER must not depend on them)."""
    return [
        f"{MOUNT_POINT}/lib/ld-linux-x86-64.so.2", "--library-path", f"{MOUNT_POINT}/lib",
        f"{MOUNT_POINT}/bin/python3", "-E", "-s", "-S", "-c", _AS_USER, user, *argv,
    ]  # fmt: skip


def agent_argv() -> list[str]:
    """The sandbox's process: tini as PID 1 (reaps orphans, forwards signals) running the agent."""
    return [
        f"{MOUNT_POINT}/bin/tini", "--",
        f"{MOUNT_POINT}/lib/ld-linux-x86-64.so.2", "--library-path", f"{MOUNT_POINT}/lib",
        f"{MOUNT_POINT}/bin/python3", "-E", "-s", "-S", "-c", "from sandburg.agent.agent import main; main()",
    ]  # fmt: skip


def _inputs() -> list[str]:
    files = [HOST_PYTHON, HOST_TINI]
    files += sorted(os.path.join(AGENT_SRC, f) for f in os.listdir(AGENT_SRC) if f.endswith(".py"))
    return files


def layer_key() -> str:
    h = hashlib.sha256(LAYER_VERSION.encode())
    for f in _inputs():
        h.update(f.encode())
        with open(f, "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()[:16]


def ensure(base_dir: str) -> str:
    """Build the layer under `base_dir/<key>` unless it exists; return its path."""
    for f in (HOST_PYTHON, HOST_TINI):
        if not os.path.exists(f):
            raise RuntimeLayerError("missing on the host (run `make setup`)", path=f)
    key = layer_key()
    final = os.path.join(base_dir, key)
    if os.path.isdir(final):
        return final
    os.makedirs(base_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=base_dir, prefix=".build-")
    try:
        _build(tmp)
        os.chmod(tmp, 0o755)
        os.rename(tmp, final)
    except FileExistsError:
        shutil.rmtree(tmp, ignore_errors=True)  # a concurrent build won
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in os.listdir(base_dir):
        if old != key and not old.startswith("."):
            shutil.rmtree(os.path.join(base_dir, old), ignore_errors=True)
    return final


def _build(root: str) -> None:
    for d in ("bin", "lib/python3.11/lib-dynload", "run"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy2(HOST_PYTHON, os.path.join(root, "bin", "python3"))
    shutil.copy2(HOST_TINI, os.path.join(root, "bin", "tini"))
    stdlib = "/usr/lib/python3.11"
    dynload_src = os.path.join(stdlib, "lib-dynload")
    sos = [HOST_PYTHON]
    for mod in DYNLOAD:
        for f in os.listdir(dynload_src):
            if f.startswith(mod + ".cpython-"):
                shutil.copy2(
                    os.path.join(dynload_src, f), os.path.join(root, "lib/python3.11/lib-dynload", f)
                )
                sos.append(os.path.join(dynload_src, f))
    for lib in sorted(_shared_libs(sos)):
        shutil.copy2(lib, os.path.join(root, "lib", os.path.basename(lib)), follow_symlinks=True)
    # the landmark by which the interpreter finds its prefix (/.sandburg) relative to bin/python3
    shutil.copy2(os.path.join(stdlib, "os.py"), os.path.join(root, "lib/python3.11/os.py"))
    staging = os.path.join(root, ".stage")
    _copy_tree(stdlib, staging)
    agent_dst = os.path.join(staging, "sandburg", "agent")
    os.makedirs(agent_dst)
    open(os.path.join(staging, "sandburg", "__init__.py"), "w").close()
    for f in os.listdir(AGENT_SRC):
        if f.endswith(".py"):
            shutil.copy2(os.path.join(AGENT_SRC, f), os.path.join(agent_dst, f))
    _zip_compiled(staging, os.path.join(root, "lib", "python311.zip"))
    shutil.rmtree(staging)


def _copy_tree(src: str, dst: str) -> None:
    def ignore(d: str, names: list[str]) -> set[str]:
        return {n for n in names if n in STDLIB_SKIP or n.startswith("config-3")}

    shutil.copytree(src, dst, ignore=ignore, symlinks=False)


def _zip_compiled(staging: str, zip_path: str) -> None:
    # Unchecked-hash .pyc: valid whatever the source mtimes, never revalidated against a source file.
    priv.run(
        [
            HOST_PYTHON,
            "-m",
            "compileall",
            "-q",
            "-j0",
            "--invalidation-mode",
            "unchecked-hash",
            "-o",
            "0",
            staging,
        ],
        RuntimeLayerError,
        path=staging,
        timeout=600,
    )
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as zf:
        for d, _dirs, files in os.walk(staging):
            if os.path.basename(d) != "__pycache__":
                continue
            pkg_dir = os.path.relpath(os.path.dirname(d), staging)
            for f in sorted(files):
                m = re.match(r"^(.+)\.cpython-311\.pyc$", f)
                if m:
                    arc = os.path.normpath(os.path.join(pkg_dir, m.group(1) + ".pyc"))
                    zf.write(os.path.join(d, f), arc)


def _shared_libs(binaries: list[str]) -> set[str]:
    found: set[str] = set()
    for b in binaries:
        out = subprocess.run(["ldd", b], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            line = line.strip()
            if "=>" in line:
                path = line.split("=>", 1)[1].strip().split(" ")[0]
                if path.startswith("/"):
                    found.add(path)
            elif line.startswith("/"):
                found.add(line.split(" ")[0])  # the dynamic loader itself
    return found
