"""Runs inside a sandbox (uploaded by the attack suite, started with the image's python3): one attempt per call.

    python3 probe.py <attempt> [args...]   prints {"ok": true, "value": ...} or {"ok": false, "errno": "EPERM"}

Stdlib only. Each attempt calls the kernel (or gVisor's Sentry) directly through libc, so the answer is the errno
of that one syscall, not a tool's interpretation of it. x86_64 syscall numbers.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import sys
import time
from typing import Any

libc = ctypes.CDLL(None, use_errno=True)
SYS = {"getpid": 39, "ptrace": 101, "init_module": 175, "finit_module": 313, "open_by_handle_at": 304}
PTRACE_ATTACH, PTRACE_DETACH = 16, 17


def syscall(name: str, *args: Any) -> Any:
    ctypes.set_errno(0)
    r = libc.syscall(SYS[name], *args)
    if r == -1:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return r


def mount(fstype: str, target: str) -> Any:
    r = libc.mount(b"none", target.encode(), fstype.encode(), ctypes.c_ulong(0), None)
    if r == -1:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return r


def write(path: str, data: str) -> Any:
    with open(path, "w") as fh:
        return fh.write(data)


def read(path: str) -> Any:
    with open(path, "rb") as fh:
        return fh.read(4096).decode(errors="replace")


def sock(family: str, kind: str, proto: str) -> Any:
    s = socket.socket(getattr(socket, family), getattr(socket, kind), int(proto))
    s.close()
    return True


def spoof(src: str, dst: str, port: str) -> Any:
    """A UDP datagram from `src` (another sandbox's address) to dst:port over a raw IP socket."""
    import struct

    payload = b"spoofed"
    udp = struct.pack("!HHHH", 40000, int(port), 8 + len(payload), 0) + payload
    total = 20 + len(udp)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst)
    )
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        return s.sendto(ip + udp, (dst, 0))
    finally:
        s.close()


def udp_echo(dst: str, port: str) -> Any:
    """Positive control for spoofing: an ordinary datagram from our own address gets its echo back."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    try:
        s.sendto(b"plain", (dst, int(port)))
        return s.recv(100).decode()
    finally:
        s.close()


def ptrace_child() -> Any:
    """Positive control for ptrace: attach to a child of our own, then let it go."""
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    try:
        syscall("ptrace", PTRACE_ATTACH, pid, 0, 0)
        os.waitpid(pid, 0)
        syscall("ptrace", PTRACE_DETACH, pid, 0, 0)
        return True
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def main() -> None:
    attempt, args = sys.argv[1], sys.argv[2:]
    calls = {
        "getpid": lambda: syscall("getpid") == os.getpid(),
        "mount": lambda: mount(args[0], args[1]),
        "write": lambda: write(args[0], args[1]),
        "read": lambda: read(args[0]),
        "init_module": lambda: syscall("init_module", None, 0, b""),
        "finit_module": lambda: syscall("finit_module", os.open("/dev/null", os.O_RDONLY), b"", 0),
        "open_by_handle_at": lambda: syscall("open_by_handle_at", -100, ctypes.create_string_buffer(16), 0),
        "socket": lambda: sock(args[0], args[1], args[2]),
        "spoof": lambda: spoof(args[0], args[1], args[2]),
        "udp_echo": lambda: udp_echo(args[0], args[1]),
        "kill0": lambda: os.kill(int(args[0]), 0) or True,
        "ptrace_attach": lambda: syscall("ptrace", PTRACE_ATTACH, int(args[0]), 0, 0),
        "ptrace_child": ptrace_child,
    }
    try:
        print(json.dumps({"ok": True, "value": calls[attempt]()}))
    except OSError as exc:
        print(json.dumps({"ok": False, "errno": errno.errorcode.get(exc.errno or 0, str(exc))}))


if __name__ == "__main__":
    main()
