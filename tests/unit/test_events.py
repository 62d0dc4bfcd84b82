"""The event pipeline (server/events.py) against a real SQLite store, the real kernel log and real conntrack.

The kernel tests need root; each uses names of its own (a random log tag, a network namespace, a veth pair, an nft
table, a /30 of 198.19.0.0/16) so parallel runs don't see each other's records, and removes all of them even when
it fails."""

from __future__ import annotations

import ipaddress
import os
import queue
import random
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from sandburg.server import db
from sandburg.server.events import (
    ConnRecord,
    ConntrackReader,
    EventLog,
    KmsgReader,
    NftRecord,
    parse_conntrack,
    parse_nft_log,
)
from sandburg.server.migrate import upgrade

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft", "conntrack")),
    reason="needs root, ip, nft and conntrack",
)


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "data" / "sandburg.db")


@pytest.fixture
def events(db_path: str) -> Iterator[EventLog]:
    engine = db.make_engine(db_path)
    upgrade(engine)
    log = EventLog(db.make_sessionmaker(engine), flush_interval=0.05)
    try:
        yield log
    finally:
        log.close()
        engine.dispose()


# --- EventLog -------------------------------------------------------------------------------------------------------


def test_emits_from_many_threads_are_all_committed_in_each_threads_order(events: EventLog) -> None:
    def producer(n: int) -> None:
        for i in range(200):
            events.emit("org", "sb1", "conn", {"thread": n, "i": i})

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert events.flush()
    rows = events.query("sb1", limit=10_000)
    assert len(rows) == 1600 and events.dropped == 0
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    for n in range(8):
        assert [r["i"] for r in rows if r["thread"] == n] == list(range(200))
    assert rows[0]["kind"] == "conn" and rows[0]["ts"].endswith("Z")
    assert abs(datetime.fromisoformat(rows[0]["ts"].replace("Z", "+00:00")).timestamp() - time.time()) < 60


def test_query_returns_the_newest_matching_oldest_first(events: EventLog) -> None:
    for i in range(10):
        events.emit("org", "a", "dns" if i % 2 else "conn", {"i": i})
    events.emit("org", "b", "dns", {"i": 100})
    events.emit("org", "a", "deny", {"i": 10, "id": "spoofed", "kind": "spoofed"})
    assert events.flush()
    assert [r["i"] for r in events.query("a", limit=3)] == [8, 9, 10]
    everything = events.query("a")
    assert [r["i"] for r in everything] == list(range(11))
    assert everything[-1]["kind"] == "deny" and isinstance(
        everything[-1]["id"], int
    )  # the payload can't override
    since = everything[6]["id"]
    assert [r["i"] for r in events.query("a", since_id=since)] == [7, 8, 9, 10]
    assert [r["i"] for r in events.query("a", since_id=since, limit=2)] == [9, 10]
    assert [r["i"] for r in events.query("a", kinds=["dns"])] == [1, 3, 5, 7, 9]
    assert [r["i"] for r in events.query("a", kinds=["dns", "deny"], limit=2)] == [9, 10]
    assert len(events.query("a", kinds=[])) == 11  # no filter
    assert [r["i"] for r in events.query("b")] == [100]
    assert events.query("nobody") == []


def test_prune_keeps_the_newest(events: EventLog) -> None:
    for i in range(10):
        events.emit("org", "a", "conn", {"i": i})
        events.emit("org", "b", "conn", {"i": i})
    assert events.flush()
    assert events.prune("a", 4) == 6
    assert [r["i"] for r in events.query("a")] == [6, 7, 8, 9]
    assert events.prune("a", 4) == 0 and events.prune("a", 100) == 0
    assert events.prune("a", 0) == 4 and events.query("a") == []
    assert len(events.query("b")) == 10


def test_full_queue_drops_and_counts_and_a_bad_event_costs_only_itself(db_path: str) -> None:
    engine = db.make_engine(db_path)
    upgrade(engine)
    log = EventLog(db.make_sessionmaker(engine), flush_interval=0.01, max_queue=5)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock: the writer blocks on its first batch
        log.emit("org", "a", "conn", {"i": -1})
        deadline = time.monotonic() + 5
        while log._queue.qsize() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # the writer is now waiting for the lock, holding that one event
        for i in range(10):
            log.emit("org", "a", "conn", {"i": i})  # never blocks: 5 queue up, 5 are dropped
        assert log.dropped == 5
        blocker.execute("ROLLBACK")
        assert log.flush()
        assert [r["i"] for r in log.query("a")] == [-1, 0, 1, 2, 3, 4]

        log.emit("org", "a", "conn", {"i": 20})
        log.emit("org", "a", "conn", {"bad": object()})  # not JSON: its batch fails, retried row by row
        log.emit("org", "a", "conn", {"i": 21})
        assert log.flush()
        assert [r["i"] for r in log.query("a", limit=2)] == [20, 21] and log.dropped == 6
    finally:
        blocker.close()
        log.close()
        engine.dispose()


def test_close_commits_what_was_emitted_and_stops(db_path: str) -> None:
    engine = db.make_engine(db_path)
    upgrade(engine)
    log = EventLog(db.make_sessionmaker(engine), flush_interval=10)  # only close() will make it write
    try:
        for i in range(3):
            log.emit("org", "a", "dns", {"i": i})
        started = time.monotonic()
        log.close()
        assert time.monotonic() - started < 2 and not log._thread.is_alive()
        assert [r["i"] for r in log.query("a")] == [0, 1, 2]
        log.emit("org", "a", "dns", {"i": 3})  # after close: dropped, not raised
        assert log.dropped == 1 and log.flush(timeout=0.1)
    finally:
        engine.dispose()


# --- the kernel log -------------------------------------------------------------------------------------------------

TCP = (
    "sb allow 1a2b3c4d IN=sandburg0 OUT=eth0 MAC=02:00:00:00:00:01:02:00:0a:d5:00:05:08:00 SRC=10.213.0.5 "
    "DST=198.18.0.10 LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=123 DF PROTO=TCP SPT=40000 DPT=80 WINDOW=64240 "
    "RES=0x00 SYN URGP=0 "
)
UDP = "sb deny 1a2b3c4d IN=sandburg0 OUT=eth0 SRC=10.213.0.5 DST=8.8.8.8 LEN=60 TTL=63 ID=9 PROTO=UDP SPT=5353 DPT=53 LEN=40"
ICMP = (
    "sb always-deny IN=sandburg0 OUT= SRC=10.213.0.7 DST=169.254.169.254 LEN=84 TOS=0x00 PREC=0x00 TTL=64 "
    "ID=7 DF PROTO=ICMP TYPE=8 CODE=0 ID=12 SEQ=1 "
)


def test_parse_nft_log_reads_each_protocol() -> None:
    assert parse_nft_log(TCP, "sb") == NftRecord(
        "allow", "1a2b3c4d", "10.213.0.5", "198.18.0.10", "tcp", 40000, 80, None
    )
    assert parse_nft_log(UDP, "sb") == NftRecord(
        "deny", "1a2b3c4d", "10.213.0.5", "8.8.8.8", "udp", 5353, 53, None
    )
    assert parse_nft_log(ICMP, "sb") == NftRecord(
        "always-deny", "", "10.213.0.7", "169.254.169.254", "icmp", None, None, 8
    )
    host = "sb host-deny IN=sandburg0 OUT= SRC=10.213.0.5 DST=10.213.0.1 LEN=60 PROTO=TCP SPT=1 DPT=22 SYN"
    assert parse_nft_log(host, "sb") == NftRecord(
        "host-deny", "", "10.213.0.5", "10.213.0.1", "tcp", 1, 22, None
    )
    # a raw /dev/kmsg record: header, message, continuation lines
    record = parse_nft_log("6,5009,12988663084,-;" + UDP + "\n SUBSYSTEM=net\n", "sb")
    assert record is not None and record.dport == 53


def test_parse_nft_log_ignores_what_is_not_ours() -> None:
    assert parse_nft_log(TCP, "sbx") is None  # another node's tag
    assert parse_nft_log(TCP.replace("sb ", "sbx ", 1), "sb") is None  # a tag that merely starts with ours
    assert parse_nft_log(TCP.replace("allow", "maybe"), "sb") is None
    assert parse_nft_log("sb deny 1a2b3c4d", "sb") is None  # no packet fields
    assert parse_nft_log("6,1,2,-;usb 1-1: new high-speed USB device", "sb") is None


def _kmsg(message: str) -> None:
    with open("/dev/kmsg", "w") as f:
        f.write(f"<6>{message}\n")


@needs_root
def test_kmsg_reader_reports_new_records_with_its_tag() -> None:
    tag = "t" + secrets.token_hex(4)
    got: queue.Queue[NftRecord] = queue.Queue()
    _kmsg(
        f"{tag} deny 00000000 IN=x OUT=y SRC=10.9.9.9 DST=198.18.0.1 PROTO=UDP SPT=1 DPT=2 LEN=8"
    )  # before start
    reader = KmsgReader(tag, got.put)
    reader.start()
    try:
        _kmsg(f"{tag}x deny 1a2b3c4d IN=x OUT=y SRC=10.9.9.9 DST=198.18.0.1 PROTO=UDP SPT=1 DPT=2 LEN=8")
        _kmsg(f"{tag} deny 1a2b3c4d IN=x OUT=y SRC=10.9.9.9 DST=198.18.0.1 PROTO=UDP SPT=1 DPT=2 LEN=8")
        assert got.get(timeout=5) == NftRecord(
            "deny", "1a2b3c4d", "10.9.9.9", "198.18.0.1", "udp", 1, 2, None
        )
        _kmsg(
            f"{tag} always-deny IN=x OUT=y SRC=10.9.9.9 DST=169.254.169.254 PROTO=ICMP TYPE=8 CODE=0 ID=1 SEQ=1"
        )
        assert got.get(timeout=5).icmp_type == 8
        assert got.empty()
    finally:
        started = time.monotonic()
        reader.close()
    assert time.monotonic() - started < 1


# --- conntrack --------------------------------------------------------------------------------------------------------

DESTROYED = (
    "[DESTROY] ipv4     2 tcp      6 119 TIME_WAIT src=198.18.200.1 dst=198.18.200.2 sport=58778 dport=8765 "
    "packets=6 bytes=401 src=198.18.200.2 dst=198.18.200.1 sport=8765 dport=58778 packets=6 bytes=4247 [ASSURED] "
    "[USERSPACE] portid=4225767382"
)


def test_parse_conntrack() -> None:
    tcp = ConnRecord("tcp", "198.18.200.1", "198.18.200.2", 58778, 8765, 401, 4247, 6, 6)
    assert parse_conntrack(DESTROYED) == tcp
    expired = (
        "[DESTROY] ipv4     2 udp      17 src=10.213.0.5 dst=1.1.1.1 sport=5000 dport=53 packets=1 bytes=70 "
    )
    expired += "src=1.1.1.1 dst=192.168.1.2 sport=53 dport=5000 packets=1 bytes=120"
    assert parse_conntrack(expired) == ConnRecord("udp", "10.213.0.5", "1.1.1.1", 5000, 53, 70, 120, 1, 1)
    icmp = "[DESTROY] ipv4 2 icmp 1 src=10.213.0.5 dst=1.1.1.1 type=8 code=0 id=3 src=1.1.1.1 dst=10.213.0.5 type=0 code=0 id=3"
    assert parse_conntrack(icmp) == ConnRecord(
        "icmp", "10.213.0.5", "1.1.1.1", None, None, 0, 0, 0, 0
    )  # no acct
    for junk in (
        "",
        "conntrack v1.4.7 (conntrack-tools): 3 flow events have been shown.",
        "NOTICE: buffer size",
    ):
        assert parse_conntrack(junk) is None


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@dataclass
class Link:
    ns: str
    host_ip: str
    ns_ip: str
    subnet: str


@pytest.fixture
def link() -> Iterator[Link]:
    """A netns behind a veth pair on a /30 of our own, and an nft table that makes conntrack track the host."""
    suffix = secrets.token_hex(3)
    ns, host_if, ns_if, table = f"evt-{suffix}", f"evth{suffix}", f"evtn{suffix}", f"evt_{suffix}"
    taken = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    while True:
        net = ipaddress.ip_network(f"198.19.{random.randrange(256)}.{random.randrange(64) * 4}/30")
        if all(f" {ip}/" not in taken for ip in net):
            break
    host_ip, ns_ip = (str(ip) for ip in net.hosts())
    try:
        _run("ip", "netns", "add", ns)
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", ns)
        _run("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        _run("ip", "link", "set", host_if, "up")
        _run("ip", "-n", ns, "addr", "add", f"{ns_ip}/30", "dev", ns_if)
        _run("ip", "-n", ns, "link", "set", ns_if, "up")
        rules = f"table inet {table} {{\n chain out {{\n type filter hook output priority 0\n"
        rules += " ct state new,established,related accept\n }\n}\n"
        subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True, capture_output=True)
        Path("/proc/sys/net/netfilter/nf_conntrack_acct").write_text("1\n")  # the server sets it too
        yield Link(ns, host_ip, ns_ip, str(net))
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for side in ("-s", "-d"):  # entries the kernel still tracks for our addresses
            subprocess.run(["conntrack", "-D", side, str(net)], capture_output=True)


SERVER = """
import socket, sys
srv = socket.create_server((sys.argv[1], 0))
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
want = int(sys.argv[2])
while want > 0:
    want -= len(conn.recv(65536))
conn.sendall(b"y" * int(sys.argv[3]))
conn.close()
"""


@needs_root
def test_conntrack_reader_reports_bytes_of_a_destroyed_connection(link: Link) -> None:
    up, down = 30_000, 200_000
    got: queue.Queue[ConnRecord] = queue.Queue()
    elsewhere: queue.Queue[ConnRecord] = queue.Queue()
    readers = [ConntrackReader(link.subnet, got.put), ConntrackReader("198.51.100.0/24", elsewhere.put)]
    server = subprocess.Popen(
        ["ip", "netns", "exec", link.ns, sys.executable, "-c", SERVER, link.ns_ip, str(up), str(down)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for r in readers:
            r.start()  # returns once conntrack listens
        assert server.stdout is not None
        port = int(server.stdout.readline())
        with socket.create_connection((link.ns_ip, port), timeout=5) as c:
            sport = c.getsockname()[1]
            c.sendall(b"x" * up)
            received = 0
            while chunk := c.recv(65536):
                received += len(chunk)
        assert received == down
        # A closed TCP connection stays in conntrack (TIME_WAIT) for 120 s before the kernel destroys it. Deleting
        # the entry destroys it now, with the same DESTROY event and counters; wait for TIME_WAIT first so the last
        # ACKs are counted and none of them recreates an entry.
        entry = [
            "-p",
            "tcp",
            "-s",
            link.host_ip,
            "-d",
            link.ns_ip,
            "--sport",
            str(sport),
            "--dport",
            str(port),
        ]
        deadline = time.monotonic() + 5
        while (
            "TIME_WAIT"
            not in subprocess.run(["conntrack", "-L", *entry], capture_output=True, text=True).stdout
        ):
            assert time.monotonic() < deadline, "the connection never reached TIME_WAIT"
            time.sleep(0.05)
        _run("conntrack", "-D", *entry)
        record = got.get(timeout=5)
        assert (record.proto, record.src, record.dst, record.sport, record.dport) == (
            "tcp",
            link.host_ip,
            link.ns_ip,
            sport,
            port,
        )
        assert up < record.bytes_out < up + 20_000 and down < record.bytes_in < down + 20_000, record
        assert record.packets_out > 0 and record.packets_in > 0
        time.sleep(0.2)
        assert got.empty() and elsewhere.empty()  # the other reader's subnet filtered this one out
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()
        procs = [r._proc for r in readers]
        for r in readers:
            r.close()
    assert all(p is None or p.poll() is not None for p in procs)


def test_conntrack_reader_command_uses_a_cidr_source_filter() -> None:
    cmd = ConntrackReader("10.213.0.0/24", lambda r: None).command()
    assert cmd[cmd.index("conntrack") :][:8] == [
        "conntrack",
        "-E",
        "-e",
        "DESTROY",
        "-o",
        "extended",
        "-s",
        "10.213.0.0/24",
    ]
