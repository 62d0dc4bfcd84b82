"""The sandboxes' DNS resolver: a policy-enforcing forwarder on the node's bridge gateway (UDP and TCP, 53).

Every sandbox's /etc/resolv.conf names the gateway; nftables lets a sandbox reach nothing else on the host.
Per query: the source address says which sandbox asks (`lookup`; unknown -> REFUSED). A name its policy does
not allow gets NXDOMAIN without leaving the node. An allowed name is forwarded to the upstreams in order (UDP,
TCP when truncated, the next upstream on timeout or error, SERVFAIL when all failed) -- except AAAA, answered
empty at once (sandboxes have no IPv6, so clients fall back to A without waiting). The A addresses of the
answer (following its CNAME chain) are handed to `learn` (nft: they become reachable for the sandbox for the
TTL) and the client gets its answer only once `learn` returned, so the address is open before the client
connects; a failing `learn` turns the answer into SERVFAIL. Every decision is reported with `emit`.

Robustness: malformed packets are dropped (UDP) or end the connection (TCP), so are messages with QR set (no
reflection loops); no exception leaves a handler; at most MAX_INFLIGHT queries run at once (UDP above that is
dropped, TCP waits); TCP connections are capped and time out when idle. Answers too large for the client's UDP
payload size (512, or its EDNS size) become an empty answer with TC set, so the client retries over TCP.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.entropy
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype

from sandburg.node.netpolicy import Policy

Lookup = Callable[[str], tuple[str, Policy] | None]
Learn = Callable[[str, list[str], int], None]
Emit = Callable[[str, str, dict[str, Any]], None]

log = logging.getLogger("sandburg.resolver")
MAX_INFLIGHT = 256
MAX_TCP_CONNECTIONS = 128
TCP_IDLE_TIMEOUT = 10.0
MAX_CNAME_CHAIN = 16


def parse_upstreams(spec: str) -> list[tuple[str, int]]:
    """Parse "1.2.3.4,5.6.7.8:5353,[2001:db8::1]:53,2001:db8::2" into [(address, port), ...] (53: default)."""
    out: list[tuple[str, int]] = []
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            continue
        host, port = entry, 53
        if entry.startswith("["):
            host, _, rest = entry[1:].partition("]")
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"upstream {entry!r}: expected [address]:port")
                port = int(rest[1:])
        elif entry.count(":") == 1:
            host, _, p = entry.partition(":")
            port = int(p)
        ipaddress.ip_address(host)  # ValueError for names: the resolver cannot resolve its own upstreams
        if not 0 < port < 65536:
            raise ValueError(f"upstream {entry!r}: port out of range")
        out.append((host, port))
    return out


def upstreams_from_resolv_conf(path: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    """The `nameserver` lines of a resolv.conf (IPv4 and IPv6, zone ids dropped), port 53; [] if unreadable"""
    out: list[tuple[str, int]] = []
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            host = fields[1].split("%", 1)[0]
            try:
                ipaddress.ip_address(host)
            except ValueError:
                continue
            out.append((host, 53))
    return out


def _addresses(query: dns.message.Message, response: dns.message.Message) -> tuple[list[str], int | None]:
    """The A addresses answering the question (following CNAMEs) and the minimum TTL of their rrsets."""
    name: dns.name.Name = query.question[0].name
    ips: list[str] = []
    ttl: int | None = None
    for _ in range(MAX_CNAME_CHAIN):
        target = None
        for rrset in response.answer:
            if rrset.name != name:
                continue
            if rrset.rdtype == dns.rdatatype.A:
                ips.extend(rd.address for rd in rrset if rd.address not in ips)
                ttl = rrset.ttl if ttl is None else min(ttl, rrset.ttl)
            elif rrset.rdtype == dns.rdatatype.CNAME and len(rrset):
                target = rrset[0].target
        if target is None:
            break
        name = target
    return ips, ttl


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.resolver._on_datagram(data, addr)


class Resolver:
    def __init__(self, listen: str, port: int, upstreams: list[tuple[str, int]], lookup: Lookup, learn: Learn,
                 emit: Emit, timeout: float = 3.0) -> None:  # fmt: skip
        self.listen, self.port, self.upstreams, self.timeout = listen, port, list(upstreams), timeout
        self.lookup, self.learn, self.emit = lookup, learn, emit
        self._sem = asyncio.Semaphore(MAX_INFLIGHT)
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_closed: asyncio.Future[None] | None = None
        self._tcp: asyncio.Server | None = None
        self._udp_tasks: set[asyncio.Task[None]] = set()  # one per UDP query, bounded by MAX_INFLIGHT
        self._tcp_tasks: set[asyncio.Task[Any]] = set()  # one per connection, bounded by MAX_TCP_CONNECTIONS

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind UDP then TCP on the same port (for port 0: UDP's, retried a few times if TCP's is taken)."""
        loop = asyncio.get_running_loop()
        for attempt in range(10):
            udp, proto = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(self.listen, self.port)
            )
            port = udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._on_connection, self.listen, port)
            except OSError as e:
                udp.close()
                await proto.closed
                if self.port or e.errno != errno.EADDRINUSE or attempt == 9:
                    raise
                continue
            self._udp, self._udp_closed, self.port = udp, proto.closed, port
            log.info("resolving on %s:%d (udp, tcp) via %s", self.listen, port, self.upstreams)
            return

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if (
            self._udp_closed is not None
        ):  # the socket closes on the loop's next turn: the port is free after this
            await self._udp_closed
            self._udp_closed = None
        if self._tcp is not None:
            self._tcp.close()
        tasks = [*self._udp_tasks, *self._tcp_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()
            self._tcp = None

    # -- transports ------------------------------------------------------------------------------------------
    def _on_datagram(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        # counting tasks too: the ones created this turn have not taken the semaphore yet
        if self._sem.locked() or len(self._udp_tasks) >= MAX_INFLIGHT:
            log.warning("more than %d queries in flight: dropping one from %s", MAX_INFLIGHT, addr[0])
            return
        task = asyncio.get_running_loop().create_task(self._udp_query(data, addr))
        self._udp_tasks.add(task)
        task.add_done_callback(self._udp_tasks.discard)

    async def _udp_query(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        async with self._sem:
            try:
                reply = await self._handle(data, str(addr[0]), tcp=False)
                if reply is not None and self._udp is not None and not self._udp.is_closing():
                    self._udp.sendto(reply, addr)
            except Exception:
                log.exception("udp query from %s failed", addr[0])

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        peer = writer.get_extra_info("peername")
        try:
            if task is None or len(self._tcp_tasks) >= MAX_TCP_CONNECTIONS:
                log.warning("more than %d tcp connections: closing one from %s", MAX_TCP_CONNECTIONS, peer)
                return
            self._tcp_tasks.add(task)
            while True:
                (size,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT))
                data = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE_TIMEOUT)
                async with self._sem:
                    reply = await self._handle(data, str(peer[0]), tcp=True)
                if reply is None:
                    return
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            log.exception("tcp connection from %s failed", peer)
        finally:
            self._tcp_tasks.discard(task)
            writer.close()

    # -- one query -------------------------------------------------------------------------------------------
    async def _handle(self, data: bytes, source: str, tcp: bool) -> bytes | None:
        """The wire reply to one query from `source`, or None to send nothing (malformed, or a response)."""
        try:
            query = dns.message.from_wire(data)
        except Exception as e:
            log.debug("malformed query from %s: %s", source, e)
            return None
        if query.flags & dns.flags.QR:
            return None
        limit = 65535 if tcp else max(512, query.payload if query.edns >= 0 else 512)
        found = self.lookup(source)
        if found is None:
            log.debug("query from %s, not a sandbox of this node: refused", source)
            return self._empty(query, dns.rcode.REFUSED, limit)
        sid, policy = found
        if query.opcode() != dns.opcode.QUERY:
            return self._empty(query, dns.rcode.NOTIMP, limit)
        if len(query.question) != 1:
            return self._empty(query, dns.rcode.FORMERR, limit)
        question = query.question[0]
        record: dict[str, Any] = {
            "name": question.name.to_text(omit_final_dot=True),
            "type": dns.rdatatype.to_text(question.rdtype),
        }
        if not policy.allows_name(record["name"]):
            self._emit(sid, {**record, "allowed": False, "rcode": "NXDOMAIN"})
            return self._empty(query, dns.rcode.NXDOMAIN, limit)
        record.update(allowed=True, answers=[], ttl=None)
        if question.rdtype == dns.rdatatype.AAAA:
            self._emit(sid, {**record, "rcode": "NOERROR"})
            return self._empty(query, dns.rcode.NOERROR, limit)
        response = await self._forward(data)
        if response is None:
            self._emit(sid, {**record, "rcode": "SERVFAIL", "error": "no upstream answered"})
            return self._empty(query, dns.rcode.SERVFAIL, limit)
        ips, ttl = _addresses(query, response)
        if ips:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.learn, sid, ips, ttl or 0)
            except Exception as e:
                log.exception("learning %s for sandbox %s failed", ips, sid)
                self._emit(sid, {**record, "rcode": "SERVFAIL", "error": f"learn: {e}"})
                return self._empty(query, dns.rcode.SERVFAIL, limit)
        self._emit(sid, {**record, "rcode": dns.rcode.to_text(response.rcode()), "answers": ips, "ttl": ttl})
        response.id = query.id
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            short = dns.message.make_response(query)
            short.flags |= dns.flags.TC | dns.flags.RA
            short.set_rcode(response.rcode())
            return short.to_wire(max_size=limit)

    async def _forward(self, data: bytes) -> dns.message.Message | None:
        """The first usable upstream answer to (a copy of) the query, under a fresh id; None if all failed."""
        for host, port in self.upstreams:
            query = dns.message.from_wire(data)
            query.id = dns.entropy.random_16()  # the client's id is not ours to reuse upstream
            query.flags |= dns.flags.RD
            try:
                response = await dns.asyncquery.udp(query, host, timeout=self.timeout, port=port)
                if response.flags & dns.flags.TC:
                    response = await dns.asyncquery.tcp(query, host, timeout=self.timeout, port=port)
            except Exception as e:
                log.warning("upstream %s:%d: %s", host, port, e or type(e).__name__)
                continue
            if response.rcode() in (dns.rcode.SERVFAIL, dns.rcode.REFUSED, dns.rcode.NOTIMP):
                log.warning("upstream %s:%d answered %s", host, port, dns.rcode.to_text(response.rcode()))
                continue
            return response
        return None

    def _empty(self, query: dns.message.Message, rcode: dns.rcode.Rcode, limit: int) -> bytes:
        """An answerless response echoing the question, with RA set."""
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        response.set_rcode(rcode)
        return response.to_wire(
            max_size=limit
        )  # the question (<= 259 bytes) and an option-less OPT: fits 512

    def _emit(self, sid: str, data: dict[str, Any]) -> None:
        try:
            self.emit(sid, "dns", data)
        except Exception:
            log.exception("emitting a dns event for sandbox %s failed", sid)
