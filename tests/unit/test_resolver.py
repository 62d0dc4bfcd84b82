"""The sandboxes' resolver (server/resolver.py) against a fake authoritative upstream, on loopback sockets."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from sandburg.node.netpolicy import Policy
from sandburg.server.resolver import Resolver, parse_upstreams, upstreams_from_resolv_conf

HOST = "127.0.0.1"
STRANGER = "127.0.0.2"  # a source address lookup() knows nothing about
LOCKED = "127.0.0.3"  # a sandbox with network "none"
POLICY = Policy.build("list", ["allowed.test", "*.wild.test", "alias.test", "big.test"])
BIG = [f"198.18.1.{i}" for i in range(1, 61)]
ZONE: dict[str, list[tuple[str, str, int]]] = {
    "allowed.test.": [("A", "198.18.0.10", 300)],
    "other.test.": [("A", "198.18.0.11", 300)],
    "sub.wild.test.": [("A", "198.18.0.12", 300)],
    "wild.test.": [("A", "198.18.0.14", 300)],
    "wild.test.evil.test.": [("A", "198.18.0.13", 300)],
    "alias.test.": [("CNAME", "allowed.test.", 120)],
    "big.test.": [("A", ip, 60) for ip in BIG],
}


# -- a fake authoritative upstream ---------------------------------------------------------------------------
def authoritative(wire: bytes, limit: int) -> bytes:
    query = dns.message.from_wire(wire)
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    name, rdtype = query.question[0].name, query.question[0].rdtype
    for _ in range(8):
        records = ZONE.get(name.to_text())
        if records is None:
            if not response.answer:
                response.set_rcode(dns.rcode.NXDOMAIN)
            break
        cname = [(v, ttl) for t, v, ttl in records if t == "CNAME"]
        if (
            cname and rdtype != dns.rdatatype.CNAME
        ):  # the chain and its target, in the answer as real servers do
            response.answer.append(dns.rrset.from_text(name, cname[0][1], "IN", "CNAME", cname[0][0]))
            name = dns.name.from_text(cname[0][0])
            continue
        values = [v for t, v, _ in records if dns.rdatatype.from_text(t) == rdtype]
        if values:
            ttl = min(ttl for t, _, ttl in records if dns.rdatatype.from_text(t) == rdtype)
            response.answer.append(dns.rrset.from_text_list(name, ttl, "IN", rdtype, values))
        break
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        short = dns.message.make_response(query)
        short.flags |= dns.flags.TC | dns.flags.AA
        return short.to_wire()


class _UpstreamUdp(asyncio.DatagramProtocol):
    def __init__(self, queries: list[tuple[str, str]]) -> None:
        self.queries = queries
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        query = dns.message.from_wire(data)
        self.queries.append(("udp", query.question[0].name.to_text()))
        assert self.transport is not None
        self.transport.sendto(authoritative(data, query.payload if query.edns >= 0 else 512), addr)


@dataclass
class Upstream:
    port: int = 0
    queries: list[tuple[str, str]] = field(default_factory=list)
    udp: asyncio.DatagramTransport | None = None
    tcp: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(10):
            self.udp, _p = await loop.create_datagram_endpoint(lambda: _UpstreamUdp(self.queries), (HOST, 0))
            self.port = self.udp.get_extra_info("sockname")[1]
            try:
                self.tcp = await asyncio.start_server(self._conn, HOST, self.port)
                return
            except OSError:
                self.udp.close()
        raise RuntimeError("no port free for both udp and tcp")

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                data = await reader.readexactly(size)
                self.queries.append(("tcp", dns.message.from_wire(data).question[0].name.to_text()))
                reply = authoritative(data, 65535)
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.udp is not None:
            self.udp.close()
        if self.tcp is not None:
            self.tcp.close()
            await self.tcp.wait_closed()


# -- the resolver under test ---------------------------------------------------------------------------------
@dataclass
class Env:
    upstream: Upstream
    resolver: Resolver = field(init=False)
    learned: list[tuple[str, list[str], int, float]] = field(default_factory=list)  # (+ time learn returned)
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    learn_error: Exception | None = None

    def learn(self, sid: str, ips: list[str], ttl: int) -> None:
        assert threading.current_thread() is not threading.main_thread()  # blocking: must run off the loop
        time.sleep(0.2)  # nft is slow-ish: the answer must still wait for it
        if self.learn_error is not None:
            raise self.learn_error
        self.learned.append((sid, ips, ttl, time.monotonic()))

    def emit(self, sid: str, kind: str, data: dict[str, Any]) -> None:
        self.events.append((sid, kind, data))

    async def query(
        self, name: str, rdtype: str = "A", tcp: bool = False, source: str = HOST
    ) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype)
        send = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
        response = await send(q, HOST, timeout=3, port=self.resolver.port, source=source)
        assert response.id == q.id
        return response


def lookup(ip: str) -> tuple[str, Policy] | None:
    return {HOST: ("sb-1", POLICY), LOCKED: ("sb-locked", Policy.build("none"))}.get(ip)


@asynccontextmanager
async def running(upstreams: list[tuple[str, int]] | None = None, timeout: float = 2.0) -> AsyncIterator[Env]:
    upstream = Upstream()
    await upstream.start()
    env = Env(upstream)
    env.resolver = Resolver(
        HOST, 0, upstreams or [(HOST, upstream.port)], lookup, env.learn, env.emit, timeout
    )
    try:
        await env.resolver.start()
        yield env
    finally:
        await env.resolver.close()
        await upstream.close()


def run(test: Callable[[Env], Awaitable[None]], **kwargs: Any) -> None:
    async def main() -> None:
        async with running(**kwargs) as env:
            await test(env)

    asyncio.run(main())


def addresses(response: dns.message.Message) -> list[str]:
    return [rd.address for rrset in response.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset]


# -- tests ---------------------------------------------------------------------------------------------------
def test_allowed_name_resolves_after_learning() -> None:
    async def t(env: Env) -> None:
        assert env.resolver.port > 0
        response = await env.query("allowed.test")
        received = time.monotonic()
        assert response.rcode() == dns.rcode.NOERROR and addresses(response) == ["198.18.0.10"]
        assert [(sid, ips, ttl) for sid, ips, ttl, _ in env.learned] == [("sb-1", ["198.18.0.10"], 300)]
        assert env.learned[0][3] <= received  # learned before the answer came
        record = {
            "name": "allowed.test",
            "type": "A",
            "allowed": True,
            "rcode": "NOERROR",
            "answers": ["198.18.0.10"],
        }
        assert env.events == [("sb-1", "dns", {**record, "ttl": 300})]

    run(t)


def test_denied_names_get_nxdomain_without_asking_upstream() -> None:
    async def t(env: Env) -> None:
        for name in ("other.test", "wild.test", "wild.test.evil.test"):
            response = await env.query(name)
            assert response.rcode() == dns.rcode.NXDOMAIN, name
            assert response.flags & dns.flags.RA and not response.answer
            assert response.question[0].name == dns.name.from_text(name)
        assert env.learned == [] and env.upstream.queries == []
        assert [data for _, _, data in env.events] == [
            {"name": n, "type": "A", "allowed": False, "rcode": "NXDOMAIN"}
            for n in ("other.test", "wild.test", "wild.test.evil.test")
        ]

    run(t)


def test_wildcard_cname_and_tcp() -> None:
    async def t(env: Env) -> None:
        assert addresses(await env.query("sub.wild.test")) == ["198.18.0.12"]
        response = await env.query("alias.test", tcp=True)
        assert addresses(response) == ["198.18.0.10"]
        assert [(ips, ttl) for _, ips, ttl, _ in env.learned] == [
            (["198.18.0.12"], 300),
            (["198.18.0.10"], 300),  # the A rrset's TTL, not the CNAME's
        ]
        assert env.upstream.queries[-1] == (
            "udp",
            "alias.test.",
        )  # the client's transport is not the upstream's

    run(t)


def test_several_queries_on_one_tcp_connection() -> None:
    async def t(env: Env) -> None:
        reader, writer = await asyncio.open_connection(HOST, env.resolver.port)
        try:
            for name, rcode in (("allowed.test", dns.rcode.NOERROR), ("other.test", dns.rcode.NXDOMAIN)):
                wire = dns.message.make_query(name, "A").to_wire()
                writer.write(struct.pack("!H", len(wire)) + wire)
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                assert dns.message.from_wire(await reader.readexactly(size)).rcode() == rcode
        finally:
            writer.close()
            await writer.wait_closed()

    run(t)


def test_aaaa_is_empty_and_local() -> None:
    async def t(env: Env) -> None:
        response = await env.query("allowed.test", "AAAA")
        assert response.rcode() == dns.rcode.NOERROR and not response.answer
        assert env.upstream.queries == [] and env.learned == []
        record = {"name": "allowed.test", "type": "AAAA", "allowed": True, "rcode": "NOERROR", "answers": []}
        assert env.events == [("sb-1", "dns", {**record, "ttl": None})]

    run(t)


def test_big_answer_truncated_over_udp_whole_over_tcp() -> None:
    async def t(env: Env) -> None:
        response = await env.query("big.test")
        assert response.flags & dns.flags.TC and not response.answer
        assert (
            "tcp",
            "big.test.",
        ) in env.upstream.queries  # the upstream truncated too: the resolver retried
        response = await env.query("big.test", tcp=True)
        assert not response.flags & dns.flags.TC and sorted(addresses(response)) == sorted(BIG)
        assert sorted(env.learned[-1][1]) == sorted(BIG) and env.learned[-1][2] == 60
        q = dns.message.make_query("big.test", "A", use_edns=0, payload=4096)  # the client's EDNS size counts
        response = await dns.asyncquery.udp(q, HOST, timeout=3, port=env.resolver.port)
        assert not response.flags & dns.flags.TC and len(addresses(response)) == 60

    run(t)


def test_sources_that_are_not_sandboxes_or_have_no_network() -> None:
    async def t(env: Env) -> None:
        assert (await env.query("allowed.test", source=STRANGER)).rcode() == dns.rcode.REFUSED
        assert (await env.query("allowed.test", source=LOCKED)).rcode() == dns.rcode.NXDOMAIN
        assert env.upstream.queries == [] and env.learned == []
        assert [(sid, data["allowed"]) for sid, _, data in env.events] == [("sb-locked", False)]

    run(t)


def test_upstream_down_is_servfail() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        closed = s.getsockname()[1]

    async def t(env: Env) -> None:
        started = time.monotonic()
        response = await env.query("allowed.test")
        assert response.rcode() == dns.rcode.SERVFAIL and time.monotonic() - started < 2
        assert env.learned == [] and env.events[0][2]["rcode"] == "SERVFAIL"

    run(t, upstreams=[(HOST, closed)], timeout=0.3)


def test_second_upstream_after_a_dead_one() -> None:
    async def t(env: Env) -> None:
        assert addresses(await env.query("allowed.test")) == ["198.18.0.10"]

    async def main() -> None:
        upstream = Upstream()
        await upstream.start()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((HOST, 0))
                closed = s.getsockname()[1]
            async with running(upstreams=[(HOST, closed), (HOST, upstream.port)], timeout=0.3) as env:
                await t(env)
                assert upstream.queries == [("udp", "allowed.test.")]
        finally:
            await upstream.close()

    asyncio.run(main())


def test_failing_learn_is_servfail() -> None:
    async def t(env: Env) -> None:
        env.learn_error = RuntimeError("nft: no such set")
        response = await env.query("allowed.test")
        assert response.rcode() == dns.rcode.SERVFAIL and not response.answer
        assert env.events[0][2]["rcode"] == "SERVFAIL"
        env.learn_error = None
        assert addresses(await env.query("allowed.test")) == ["198.18.0.10"]  # still serving

    run(t)


def test_malformed_packets_do_not_kill_the_server() -> None:
    async def t(env: Env) -> None:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            for junk in (b"", b"\x00", b"\x12\x34garbage", b"\xff" * 600):
                await loop.sock_sendto(s, junk, (HOST, env.resolver.port))
            response = dns.message.make_response(dns.message.make_query("allowed.test", "A"))
            await loop.sock_sendto(s, response.to_wire(), (HOST, env.resolver.port))  # QR set: ignored
        reader, writer = await asyncio.open_connection(HOST, env.resolver.port)
        try:
            writer.write(b"\x00\x05junk!")
            assert await asyncio.wait_for(reader.read(), 2) == b""  # closed, nothing answered
        finally:
            writer.close()
            await writer.wait_closed()
        assert addresses(await env.query("allowed.test")) == ["198.18.0.10"]
        assert addresses(await env.query("allowed.test", tcp=True)) == ["198.18.0.10"]
        assert len(env.events) == 2

    run(t)


def test_close_with_queries_in_flight_releases_the_port() -> None:
    async def main() -> None:
        async with running() as env:
            port = env.resolver.port
            q = dns.message.make_query("allowed.test", "A")
            pending = [
                asyncio.create_task(send(q, HOST, timeout=0.6, port=port))
                for send in (dns.asyncquery.udp, dns.asyncquery.tcp)
            ]
            await asyncio.sleep(0.1)  # both wait for learn()
            started = time.monotonic()
            await env.resolver.close()
            assert time.monotonic() - started < 0.5
            udp, tcp = await asyncio.gather(*pending, return_exceptions=True)
            assert isinstance(udp, dns.exception.Timeout) and isinstance(
                tcp, EOFError
            )  # no answer after close
        again = Resolver(HOST, port, [], lookup, lambda *a: None, lambda *a: None)
        await again.start()  # both sockets were closed: the same port binds again
        try:
            assert again.port == port
        finally:
            await again.close()

    asyncio.run(main())


def test_parse_upstreams() -> None:
    assert parse_upstreams("1.2.3.4,5.6.7.8:5353") == [("1.2.3.4", 53), ("5.6.7.8", 5353)]
    assert parse_upstreams(" 2001:db8::1 , [2001:db8::2]:5353,[::1],") == [
        ("2001:db8::1", 53), ("2001:db8::2", 5353), ("::1", 53)]  # fmt: skip
    assert parse_upstreams("") == []
    for bad in ("dns.google", "1.2.3.4:0", "1.2.3.4:x", "[::1]x"):
        with pytest.raises(ValueError):
            parse_upstreams(bad)


def test_upstreams_from_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "# generated\nsearch example.com\nnameserver 10.0.0.2\nnameserver  2001:db8::53 # v6\n"
        "nameserver fe80::1%eth0\nnameserver not-an-ip\n;nameserver 9.9.9.9\noptions edns0\n"
    )
    assert upstreams_from_resolv_conf(str(conf)) == [("10.0.0.2", 53), ("2001:db8::53", 53), ("fe80::1", 53)]
    assert upstreams_from_resolv_conf(str(tmp_path / "missing")) == []
