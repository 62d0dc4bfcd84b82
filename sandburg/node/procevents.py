"""Container tier: execs from the kernel's process events, file writes from fanotify, read on the host.

Execs: the netlink proc connector (NETLINK_CONNECTOR, CN_IDX_PROC) reports every fork, exec and exit on the
host. A process belongs to a sandbox when its cgroup is the sandbox's (`<parent>/<id>`, node.cgroup_path); the
map pid → sandbox is seeded from the cgroup's member list when watching starts and then follows forks, so an exec
whose process is already gone is still attributed (recorded with `argv: null`). For a live process the host reads
/proc/<pid>/cmdline, cwd (as the sandbox sees it: its mount namespace's root), status (uid as the host sees it,
i.e. in the sandbox's user-namespace range) and comm.

Writes: one fanotify group per sandbox with a *mount* mark on the sandbox's root mount, reached as
/proc/<init pid>/root (runc's pivot_root makes it a mount of the container's own namespace, so a mark on the
host's bundle mount would never fire; a filesystem mark would see every sandbox: they are subvolumes of one btrfs).
FAN_CLOSE_WRITE gives an fd per event, whose link is the path inside the sandbox. Other mounts (volumes, the run
dir, /dev/shm) are not marked.

One thread for everything: a selector over the netlink socket, every sandbox's fanotify fd and a wake-up pipe.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import selectors
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import cgroups
from .activity import SelectorLoop

if TYPE_CHECKING:
    from .activity import Recorder

log = logging.getLogger("sandburg.node.activity")

NETLINK_CONNECTOR = 11
CN_IDX_PROC = CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN, PROC_CN_MCAST_IGNORE = 1, 2
PROC_EVENT_FORK, PROC_EVENT_EXEC, PROC_EVENT_EXIT = 0x1, 0x2, 0x80000000
NLMSG_DONE = 3
_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
_EVENT_HEAD = struct.Struct("=IIQ")  # what, cpu, timestamp_ns
_EVENT_AT = _NLMSG.size + _CN_MSG.size

FAN_CLOEXEC, FAN_NONBLOCK, FAN_CLASS_NOTIF = 0x1, 0x2, 0x0
FAN_MARK_ADD, FAN_MARK_MOUNT = 0x1, 0x10
FAN_CLOSE_WRITE, FAN_Q_OVERFLOW = 0x8, 0x4000
_FAN_META = struct.Struct("=IBBHQii")  # event_len, vers, reserved, metadata_len, mask, fd, pid
MAX_PIDS = 200_000  # the pid map's bound (exits lost to a full socket would otherwise leave entries behind)


class ProcWatcherError(Exception):
    """The host cannot provide process events (not root in the initial namespaces, or no proc connector)."""


_libc = ctypes.CDLL(None, use_errno=True)
_libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]


def _proc_subscribe(op: int) -> bytes:
    payload = struct.pack("=I", op)
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
    return _NLMSG.pack(_NLMSG.size + len(cn), NLMSG_DONE, 0, 0, os.getpid()) + cn


def parse_proc_events(buf: bytes) -> list[tuple[int, tuple[int, ...]]]:
    """(what, data) of each proc connector event in one datagram: fork → (parent_pid, parent_tgid, child_pid,
    child_tgid); exec → (pid, tgid); exit → (pid, tgid). Other kinds are left out."""
    out: list[tuple[int, tuple[int, ...]]] = []
    off = 0
    while off + _NLMSG.size <= len(buf):
        length = _NLMSG.unpack_from(buf, off)[0]
        if length < _NLMSG.size or off + length > len(buf):
            break
        at = off + _EVENT_AT
        if at + _EVENT_HEAD.size <= off + length:
            what = _EVENT_HEAD.unpack_from(buf, at)[0]
            data = at + _EVENT_HEAD.size
            if what == PROC_EVENT_FORK and data + 16 <= off + length:
                out.append((what, struct.unpack_from("=IIII", buf, data)))
            elif what in (PROC_EVENT_EXEC, PROC_EVENT_EXIT) and data + 8 <= off + length:
                out.append((what, struct.unpack_from("=II", buf, data)))
        off += (length + 3) & ~3
    return out


def _read(path: str, limit: int = 8192) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit)
    except OSError:
        return None


class ProcWatcher(SelectorLoop):
    """Execs and file writes of the `container` tier's sandboxes (see the module docstring)."""

    def __init__(self, recorder: Recorder, cgroup_path: Callable[[str], str]) -> None:
        self._prefix = cgroup_path("x")[:-1]  # "/<parent>/"
        try:
            nl = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_CONNECTOR)
        except OSError as exc:
            raise ProcWatcherError(f"netlink connector socket: {exc}") from exc
        try:
            try:  # a burst of host-wide forks must not overflow it (ENOBUFS is counted, not fatal)
                nl.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE
            except OSError:
                nl.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            nl.bind((0, CN_IDX_PROC))
            nl.send(_proc_subscribe(PROC_CN_MCAST_LISTEN))
            nl.setblocking(False)
        except OSError as exc:
            nl.close()
            raise ProcWatcherError(f"subscribing to process events: {exc}") from exc
        super().__init__(recorder, "sandburg-procevents")
        self._nl = nl
        self._watched: set[str] = set()
        self._fan: dict[str, int] = {}  # sid -> fanotify fd
        self._pids: dict[int, str] = {}  # tgid -> sid (loop thread only, apart from seeding under the lock)
        self.overflows = 0
        self._fan_warned = False
        self._sel.register(self._nl, selectors.EVENT_READ, "nl")
        self._thread.start()

    # -- called by the node ----------------------------------------------------------------------------------
    def watch(self, sid: str, pid: int) -> None:
        with self._lock:
            self._watched.add(sid)
            self._pending.append(("watch", sid, pid))
        self._wake()

    def unwatch(self, sid: str) -> None:
        with self._lock:
            if sid not in self._watched and sid not in self._fan:
                return
            self._watched.discard(sid)
            self._pending.append(("unwatch", sid, 0))
        self._wake()

    def close(self) -> None:
        self._end_thread()  # a last watch() not applied yet has no fd; a last unwatch()'s fd is in _fan
        try:
            self._nl.send(_proc_subscribe(PROC_CN_MCAST_IGNORE))
        except OSError:
            pass
        for fd in self._fan.values():
            os.close(fd)
        self._fan.clear()
        self._close_selector()
        self._nl.close()

    # -- the loop (one thread; activity.SelectorLoop) --------------------------------------------------------
    def _apply(self, op: tuple[str, str, int]) -> None:
        what, sid, pid = op
        if what == "watch":
            self._start(sid, pid)
        else:
            self._stop(sid)

    def _ready(self, key: selectors.SelectorKey) -> None:
        if key.data == "nl":
            self._read_netlink()
        else:
            self._read_fanotify(key.data, key.fd)

    def _start(self, sid: str, pid: int) -> None:
        self._stop(sid)
        with self._lock:
            if sid not in self._watched:
                return
        for d in cgroups.controller_dirs(self._prefix + sid):
            procs = _read(os.path.join(d, "cgroup.procs"), 1 << 20)
            if procs is not None:
                for p in procs.split():
                    self._pids[int(p)] = sid
                break
        self._pids[pid] = sid
        fd = _libc.fanotify_init(
            FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK, os.O_RDONLY | os.O_LARGEFILE | os.O_CLOEXEC
        )
        if fd < 0:
            self._warn_fan(sid, ctypes.get_errno())
            return
        # the container's root mount, in its own mount namespace (see the module docstring)
        root = f"/proc/{pid}/root".encode()
        if _libc.fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_CLOSE_WRITE, -100, root) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            self._warn_fan(sid, err)
            return
        self._fan[sid] = fd
        self._sel.register(fd, selectors.EVENT_READ, sid)

    def _warn_fan(self, sid: str, err: int) -> None:
        if not self._fan_warned:
            self._fan_warned = True
            log.warning(
                "activity: fanotify unavailable (%s): file writes of %s not recorded", os.strerror(err), sid
            )

    def _stop(self, sid: str) -> None:
        fd = self._fan.pop(sid, None)
        if fd is not None:
            self._read_fanotify(sid, fd)  # what it closed before it stopped
            self._sel.unregister(fd)
            os.close(fd)
        for p in [p for p, s in self._pids.items() if s == sid]:
            del self._pids[p]

    def _sid_of(self, pid: int) -> str | None:
        raw = _read(f"/proc/{pid}/cgroup")
        if raw is None:
            return None
        for line in raw.decode(errors="replace").splitlines():
            path = line.split(":", 2)[-1]
            if path.startswith(self._prefix):
                sid = path[len(self._prefix) :].split("/", 1)[0]
                if sid in self._watched:
                    return sid
        return None

    def _read_netlink(self) -> None:
        for _ in range(512):
            try:
                buf = self._nl.recv(65536)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the kernel dropped events: no way to know whose
                    self.overflows += 1
                    if self.overflows == 1:
                        log.warning(
                            "activity: process events lost (socket buffer full); counted in overflows"
                        )
                    continue
                raise
            for what, data in parse_proc_events(buf):
                if what == PROC_EVENT_FORK:
                    _, ptgid, cpid, ctgid = data
                    if cpid == ctgid and ptgid in self._pids:
                        if len(self._pids) < MAX_PIDS:
                            self._pids[ctgid] = self._pids[ptgid]
                elif what == PROC_EVENT_EXIT:
                    pid, tgid = data
                    if pid == tgid:
                        self._pids.pop(tgid, None)
                elif what == PROC_EVENT_EXEC:
                    self._exec(data[1])

    def _exec(self, tgid: int) -> None:
        with self._lock:
            if not self._watched:
                return
        sid = self._pids.get(tgid)
        if sid is None:
            sid = self._sid_of(tgid)
            if sid is None:
                return
            if len(self._pids) < MAX_PIDS:
                self._pids[tgid] = sid
        raw = _read(f"/proc/{tgid}/cmdline", 8192)
        if not raw:
            self.recorder.exec(sid, tgid, None, None, None, None)
            return
        argv = [a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0")]
        try:
            cwd: str | None = os.readlink(f"/proc/{tgid}/cwd")
        except OSError:
            cwd = None
        uid, comm = None, None
        status = _read(f"/proc/{tgid}/status", 4096) or b""  # Name: (comm) and Uid: in one read
        for line in status.splitlines():
            if line.startswith(b"Name:"):
                comm = line[5:].strip().decode(errors="replace") or None
            elif line.startswith(b"Uid:"):
                uid = int(line.split()[1])
                break
        self.recorder.exec(sid, tgid, argv, cwd, uid, comm)

    def _read_fanotify(self, sid: str, fd: int) -> None:
        for _ in range(64):
            try:
                buf = os.read(fd, 16384)
            except BlockingIOError:
                return
            except OSError:
                return
            off = 0
            while off + _FAN_META.size <= len(buf):
                length, _, _, _, mask, efd, pid = _FAN_META.unpack_from(buf, off)
                if length < _FAN_META.size:
                    return
                off += length
                if mask & FAN_Q_OVERFLOW:
                    self.recorder.lost(sid, 1, source="fanotify-overflow")
                if efd < 0:
                    continue
                try:
                    path = os.readlink(f"/proc/self/fd/{efd}")
                except OSError:
                    path = ""
                finally:
                    os.close(efd)
                deleted = path.endswith(" (deleted)")
                if deleted:  # removed before we read it: still recorded, marked
                    path = path[: -len(" (deleted)")]
                if path:
                    self.recorder.write(sid, path, pid, deleted=deleted)
