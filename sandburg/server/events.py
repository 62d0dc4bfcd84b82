"""The event pipeline: network records (DNS answers, allowed and denied connection attempts, bytes per connection)
into the `events` table, which the security issue's audit log will chain onto.

Producers run on the data path (the resolver, the kernel-log and conntrack readers below, request handlers), so
`EventLog.emit` never blocks and never raises: it stamps the time and appends to a bounded queue; when the queue is
full the event is dropped and counted (`dropped`) rather than slowing a sandbox down. One daemon writer thread owns
every insert: it takes what is queued, waits up to `flush_interval` for more and writes the batch in one
transaction (SQLite commits cost a WAL append each, so batching is what lets a busy node log every connection).
A single writer also gives the events one total order, which the audit chain will need. `flush` waits on sequence
numbers: each queued event gets the next one, the writer publishes the last one it committed.

The kernel reports what the nftables rules of node/net.py decide through `log prefix "<tag> <verdict> <id8> "`
statements; `KmsgReader` follows /dev/kmsg from its end (older records are not ours to report) and hands the
records with our tag to a callback; lines of other nodes or tests sharing the kernel log are skipped. Bytes per
connection come from conntrack's DESTROY events (`ConntrackReader`, a `conntrack -E` subprocess) carrying the
counters of nf_conntrack_acct, which the node enables. The subprocess is started from the reader's own thread under
`setpriv --pdeathsig KILL`, so it dies with that thread even when the server is killed without cleanup.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import queue
import re
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, delete, insert
from sqlalchemy import select as sql_select
from sqlalchemy.orm import Session, sessionmaker

from sandburg.server.db import Event, utcnow

log = logging.getLogger(__name__)

_BATCH = 1000  # rows per transaction at most
_Item = tuple[int, dict[str, Any]] | None  # (sequence number, row); None wakes the writer (flush, close)


class EventLog:
    def __init__(
        self, sessions: sessionmaker[Session], flush_interval: float = 0.2, max_queue: int = 100_000
    ) -> None:
        self._sessions = sessions
        self._interval = flush_interval
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()  # orders sequence numbers as the queue orders events
        self._seq = 0  # last sequence number handed out
        self._done = 0  # last sequence number committed (or given up on)
        self._cond = threading.Condition()
        self._closing = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="sandburg-events", daemon=True)
        self._thread.start()

    def emit(self, org_id: str, sandbox_id: str, kind: str, data: dict[str, Any]) -> None:
        try:
            row = dict(ts=utcnow(), organization_id=org_id, sandbox_id=sandbox_id, kind=kind, data=dict(data))
            with self._lock:
                if self._closing:
                    self.dropped += 1
                    return
                try:
                    self._queue.put_nowait((self._seq + 1, row))
                    self._seq += 1
                except queue.Full:
                    self.dropped += 1
        except Exception:  # a producer's own work must never fail because of its log
            log.exception("event dropped")

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything emitted before this call is committed; False if `timeout` ran out first."""
        with self._lock:
            target = self._seq
        self._wake()
        with self._cond:
            return self._cond.wait_for(lambda: self._done >= target or not self._thread.is_alive(), timeout)

    def close(self) -> None:
        with self._lock:
            self._closing = True
        self._wake()
        self._thread.join(timeout=10)

    def query(
        self, sandbox_id: str, *, since_id: int = 0, limit: int = 100, kinds: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """The newest `limit` events of a sandbox with id > since_id, oldest first; `kinds` empty or None: all."""
        stmt = sql_select(Event).where(Event.sandbox_id == sandbox_id, Event.id > since_id)
        if kinds:
            stmt = stmt.where(Event.kind.in_(kinds))
        with self._sessions() as s:
            rows = s.scalars(stmt.order_by(Event.id.desc()).limit(limit)).all()
        out = []
        for r in reversed(rows):
            d: dict[str, Any] = {
                "id": r.id,
                "ts": r.ts.isoformat(timespec="milliseconds") + "Z",
                "kind": r.kind,
            }
            for k, v in r.data.items():
                d.setdefault(k, v)  # the record's own fields win over a payload's namesakes
            out.append(d)
        return out

    def prune(self, sandbox_id: str, keep: int) -> int:
        """Delete all but the newest `keep` committed events of a sandbox; returns how many went."""
        with self._sessions.begin() as s:
            where = [Event.sandbox_id == sandbox_id]
            if keep > 0:
                newest = sql_select(Event.id).where(*where).order_by(Event.id.desc())
                cutoff = s.scalar(newest.offset(keep - 1).limit(1))
                if cutoff is None:
                    return 0
                where.append(Event.id < cutoff)
            return cast(CursorResult[Any], s.execute(delete(Event).where(*where))).rowcount

    def _wake(self) -> None:
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass  # the writer has work queued, so it is not waiting

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[tuple[int, dict[str, Any]]] = []
            deadline = time.monotonic() + self._interval
            while True:
                if item is None:
                    deadline = 0.0  # flush or close: write what is queued now
                else:
                    batch.append(item)
                if len(batch) >= _BATCH:
                    break
                remaining = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._write([row for _, row in batch])
                with self._cond:
                    self._done = batch[-1][0]
                    self._cond.notify_all()
            if self._closing and self._queue.empty():
                return

    def _write(self, rows: list[dict[str, Any]]) -> None:
        try:
            with self._sessions.begin() as s:
                s.execute(insert(Event), rows)
            return
        except Exception:
            log.exception("writing %d events failed; retrying one by one", len(rows))
        for row in rows:  # one bad row (data that is not JSON) must not cost the whole batch
            try:
                with self._sessions.begin() as s:
                    s.execute(insert(Event), [row])
            except Exception:
                with self._lock:
                    self.dropped += 1


# --- the kernel log: what the nftables rules decided ------------------------------------------------------------

VERDICTS = ("allow", "deny", "always-deny", "host-deny")
_KMSG_HEADER = re.compile(r"\d+,\d+,\d+,[^;]*;")  # prio,seq,ts_usec,flags[,...];


@dataclass(frozen=True)
class NftRecord:
    verdict: str  # allow | deny | always-deny | host-deny
    sandbox_prefix: str  # the first 8 characters of the sandbox id; "" for the node-wide rules
    src: str
    dst: str
    proto: str  # tcp | udp | icmp | ... (lowercased PROTO=)
    sport: int | None
    dport: int | None
    icmp_type: int | None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def parse_nft_log(line: str, tag: str) -> NftRecord | None:
    """A kernel log message (with or without its /dev/kmsg header) of a `log prefix "<tag> ..."` rule, or None."""
    msg = line.split("\n", 1)[0]  # a kmsg record's continuation lines (" KEY=value") are metadata
    if m := _KMSG_HEADER.match(msg):
        msg = msg[m.end() :]
    if not msg.startswith(tag + " "):
        return None
    words = msg[len(tag) + 1 :].split()
    if not words or words[0] not in VERDICTS:
        return None
    verdict, rest, prefix = words[0], words[1:], ""
    if verdict in ("allow", "deny") and rest and "=" not in rest[0]:
        prefix, rest = rest[0], rest[1:]
    fields: dict[str, str] = {}
    for word in rest:
        if word.startswith("["):
            break  # an ICMP error quotes the offending packet's header: those are not this packet's fields
        key, sep, value = word.partition("=")
        if sep:
            fields.setdefault(key, value)  # first wins: ICMP repeats ID=, UDP repeats LEN=
    if not fields.get("SRC") or not fields.get("DST"):
        return None
    proto = fields.get("PROTO", "").lower()
    icmp_type = _int(fields.get("TYPE")) if proto in ("icmp", "icmpv6") else None
    return NftRecord(
        verdict,
        prefix,
        fields["SRC"],
        fields["DST"],
        proto,
        _int(fields.get("SPT")),
        _int(fields.get("DPT")),
        icmp_type,
    )


class KmsgReader:
    """Follows /dev/kmsg from the end; calls `on_record` (on its own thread) for each record with our tag."""

    def __init__(self, tag: str, on_record: Callable[[NftRecord], None], path: str = "/dev/kmsg") -> None:
        self.tag = tag
        self._on_record = on_record
        self._path = path
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fds: tuple[int, int, int] | None = None  # kmsg, and a pipe whose write end wakes the thread

    def start(self) -> None:
        fd = os.open(self._path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        os.lseek(fd, 0, os.SEEK_END)  # what the kernel logged before we started is not ours to report
        self._fds = (fd, *os.pipe())
        self._thread = threading.Thread(
            target=self._run, args=self._fds[:2], name="sandburg-kmsg", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._fds is None:
            return
        os.write(self._fds[2], b"x")
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._thread is None or not self._thread.is_alive():
            for fd in self._fds:
                os.close(fd)
            self._fds = None

    def _run(self, fd: int, wake: int) -> None:
        poller = select.poll()  # not select(): a busy server's descriptors go past FD_SETSIZE
        poller.register(fd, select.POLLIN)
        poller.register(wake, select.POLLIN)
        while not self._stop.is_set():
            try:
                raw = os.read(fd, 16384)  # one record per read
            except BlockingIOError:
                poller.poll(500)
                continue
            except BrokenPipeError:
                continue  # records were overwritten before we got to them; the next read returns the oldest left
            except OSError:
                log.exception("reading %s", self._path)
                self._stop.wait(1)
                continue
            record = parse_nft_log(raw.decode("utf-8", "replace"), self.tag)
            if record is not None:
                try:
                    self._on_record(record)
                except Exception:
                    log.exception("kernel log record handler failed")


# --- conntrack: bytes per connection ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnRecord:
    proto: str
    src: str
    dst: str
    sport: int | None  # None for protocols without ports (icmp)
    dport: int | None
    bytes_out: int  # the original direction's (the sandbox's) bytes; 0 when nf_conntrack_acct is off
    bytes_in: int  # the reply direction's
    packets_out: int
    packets_in: int


def parse_conntrack(line: str) -> ConnRecord | None:
    """A line of `conntrack -E -o extended` (or `conntrack -L`), or None.

    `[DESTROY] ipv4 2 tcp 6 [timeout] [state] src= dst= sport= dport= [packets= bytes=] src= dst= ... [flags]`:
    the first src= opens the original direction, the second the reply direction."""
    words = line.split()
    while words and words[0].startswith("["):
        words.pop(0)
    if len(words) >= 2 and words[0] in ("ipv4", "ipv6"):
        words = words[2:]
    if len(words) < 2 or not words[1].isdigit():
        return None
    dirs: list[dict[str, str]] = []
    for word in words[2:]:
        key, sep, value = word.partition("=")
        if not sep:
            continue
        if key == "src":
            if len(dirs) == 2:
                break
            dirs.append({})
        if dirs:
            dirs[-1].setdefault(key, value)
    if len(dirs) < 2 or "dst" not in dirs[0]:
        return None
    orig, reply = dirs
    return ConnRecord(
        proto=words[0],
        src=orig["src"],
        dst=orig["dst"],
        sport=_int(orig.get("sport")),
        dport=_int(orig.get("dport")),
        bytes_out=_int(orig.get("bytes")) or 0,
        bytes_in=_int(reply.get("bytes")) or 0,
        packets_out=_int(orig.get("packets")) or 0,
        packets_in=_int(reply.get("packets")) or 0,
    )


def _listening(pid: int) -> bool:
    """Whether `pid` holds a netfilter netlink socket joined to a multicast group, i.e. `conntrack -E` listens."""
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        with open(f"/proc/{pid}/net/netlink") as f:
            rows = [line.split() for line in f.readlines()[1:]]
    except OSError:
        return False
    # columns: sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode; Eth 12 is NETLINK_NETFILTER
    return any(len(r) >= 10 and r[1] == "12" and int(r[3], 16) and r[9] in inodes for r in rows)


class ConntrackReader:
    """Reports the connections from `subnet` as conntrack destroys them, with their byte counts."""

    def __init__(
        self, subnet: str, on_record: Callable[[ConnRecord], None], binary: str = "conntrack"
    ) -> None:
        self.subnet = ipaddress.ip_network(subnet, strict=False)
        self._on_record = on_record
        self._binary = binary
        self._lock = threading.Lock()
        self._closing = False
        self._proc: subprocess.Popen[str] | None = None
        self._spawned = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def command(self) -> list[str]:
        cmd = [self._binary, *"-E -e DESTROY -o extended -s".split(), str(self.subnet), "-b", str(4 << 20)]
        setpriv = shutil.which("setpriv")
        return [setpriv, "--pdeathsig", "KILL", *cmd] if setpriv else cmd

    def start(self, ready_timeout: float = 3.0) -> None:
        """Start listening; returns once conntrack has joined the event group (no event after that is missed)."""
        self._thread = threading.Thread(target=self._run, name="sandburg-conntrack", daemon=True)
        self._thread.start()
        self._spawned.wait()
        if self._error is not None:
            raise self._error
        assert self._proc is not None
        deadline = time.monotonic() + ready_timeout
        while not _listening(self._proc.pid):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"{' '.join(self.command())} did not start listening")
            time.sleep(0.01)

    def sweep(self) -> None:
        """Have the kernel drop the subnet's expired connections now (and so report them). Conntrack reaps an
        expired entry only when its garbage collector gets to it, which can take a minute, or when a dump
        meets it: this dump is that."""
        try:
            subprocess.run(
                [self._binary, "-L", "-s", str(self.subnet)], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, timeout=5, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("conntrack sweep failed: %s", exc)

    def close(self) -> None:
        with self._lock:
            self._closing = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        # Spawned here, not in start(): --pdeathsig fires when the thread that forked the child ends.
        try:
            with self._lock:
                if not self._closing:
                    self._proc = subprocess.Popen(
                        self.command(),
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                        errors="replace",
                    )
        except OSError as e:
            self._error = e
        finally:
            self._spawned.set()
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        with proc.stdout:
            for line in proc.stdout:
                self._line(line)
        proc.wait()
        if not self._closing:
            log.error(
                "conntrack exited with status %s: connections' byte counts are no longer recorded",
                proc.returncode,
            )

    def _line(self, line: str) -> None:
        record = parse_conntrack(line)
        if record is None:
            if line.strip() and not self._closing:
                (log.debug if line.startswith("NOTICE") else log.warning)("conntrack: %s", line.strip())
            return
        try:
            if ipaddress.ip_address(record.src) not in self.subnet:
                return  # conntrack filters already; this keeps a wider match from leaking another node's traffic
            self._on_record(record)
        except Exception:
            log.exception("conntrack record handler failed")
