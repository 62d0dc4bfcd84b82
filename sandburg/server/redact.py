"""Masking secret values in command output the API returns: every occurrence becomes `***` (docs/secrets.md).

One `Redactor` per request, built from the current values of the sandbox's secrets. Whole outputs (exec results,
session logs) go through `Redactor.mask`; streams through a `StreamRedactor`, which holds back the end of a chunk
while it could be the beginning of a value, so a value split across chunks is still masked. Values shorter than
`MIN_LENGTH` bytes are not masked: masking every `a` or `1` would mangle output and hide nothing.

Only literal occurrences are masked: a value that a process transforms (base64, reversed, sliced, one character
per line) comes out as the process wrote it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable
from typing import Any, TypeVar

MASK = b"***"
MIN_LENGTH = 4
T = TypeVar("T")


class Redactor:
    def __init__(self, values: Iterable[bytes] = ()) -> None:
        # longest first: where two values start at the same byte, the longer one is masked whole
        self.values = sorted({v for v in values if len(v) >= MIN_LENGTH}, key=lambda v: (-len(v), v))
        self._pattern = re.compile(b"|".join(re.escape(v) for v in self.values)) if self.values else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def mask(self, data: bytes) -> bytes:
        return self._pattern.sub(MASK, data) if self._pattern is not None and data else data

    def text(self, data: bytes) -> str:
        """`data` masked, then decoded as the API answers output (invalid UTF-8 replaced)."""
        return self.mask(data).decode(errors="replace")

    def stream(self) -> StreamRedactor:
        return StreamRedactor(self)

    def _partial(self, tail: bytes) -> int:
        """The length of the longest end of `tail` that is the beginning (not the whole) of some value."""
        best = 0
        for value in self.values:
            start = max(0, len(tail) - len(value) + 1)  # a whole value is matched, not held
            first = value[0]
            i = tail.find(first, start)
            while i != -1 and len(tail) - i > best:
                if value.startswith(tail[i:]):
                    best = len(tail) - i
                    break
                i = tail.find(first, i + 1)
        return best


class StreamRedactor:
    """Masks a stream fed in chunks: what `feed` returns is final; `flush` gives the held-back end."""

    def __init__(self, redactor: Redactor) -> None:
        self._r = redactor
        self._carry = b""

    @property
    def holding(self) -> bool:
        return bool(self._carry)

    def feed(self, chunk: bytes) -> bytes:
        pattern = self._r._pattern
        if pattern is None:
            return chunk
        buf = self._carry + chunk
        out = bytearray()
        last = 0
        for m in pattern.finditer(buf):
            out += buf[last : m.start()]
            out += MASK
            last = m.end()
        tail = buf[last:]
        hold = self._r._partial(tail)
        out += tail[: len(tail) - hold]
        self._carry = tail[len(tail) - hold :]
        return bytes(out)

    def flush(self) -> bytes:
        """The bytes held back (the stream ended, or waited too long): a prefix of a value, never a whole one."""
        carry, self._carry = self._carry, b""
        return carry


async def redact_stream(
    source: AsyncIterator[tuple[T, bytes]], redactor: Redactor, flush_after: float | None = None
) -> AsyncIterator[tuple[T, bytes]]:
    """`(stream, chunk)` items of `source`, masked per stream. With `flush_after` (seconds), bytes held back as a
    possible beginning of a value are let out when nothing more arrives in that time (a terminal must echo what
    is typed); without, they wait for the next chunk or the end."""
    streams: dict[Any, StreamRedactor] = {}
    it = source.__aiter__()
    pending: asyncio.Future[tuple[T, bytes]] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(it.__anext__())
            holding = any(s.holding for s in streams.values())
            done, _ = await asyncio.wait({pending}, timeout=flush_after if holding else None)
            if not done:  # quiet for flush_after with bytes held back: let them out (never a whole value)
                for name, s in streams.items():
                    if s.holding:
                        yield name, s.flush()
                continue
            task, pending = pending, None
            try:
                name, chunk = task.result()
            except StopAsyncIteration:
                break
            data = streams.setdefault(name, redactor.stream()).feed(chunk)
            if data:
                yield name, data
        for name, s in streams.items():
            if s.holding:
                yield name, s.flush()
    finally:
        if pending is not None:
            pending.cancel()
