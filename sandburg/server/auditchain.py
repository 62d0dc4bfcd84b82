"""The audit log's tamper evidence, without I/O: record hashes, the HMAC anchor, and the check of a chain.

    hash(record) = SHA-256("sandburg-audit-v1\\0" + canonical [seq, time, tenant, actor, type, sandbox, payload,
                                                           prev_hash])
    mac(anchor)  = HMAC-SHA256(audit key, canonical ["anchor", tenant, head_seq, head_hash, count, start_prev])

Canonical = JSON with sorted keys, no whitespace, ASCII (\\uXXXX escapes). Each organization has one chain: a
record's `prev_hash` is the hash of the organization's previous record (GENESIS for the first). The anchor names
the chain's last record, its length and the `prev_hash` its first kept record carries (GENESIS, or the hash of the
last record retention pruned), and is MAC'd with a key that is not in the database: whoever can write the database
but not read the key file can edit, drop, reorder or cut off records, but cannot produce a chain that `verify`
accepts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

GENESIS = "0" * 64
KEY_BYTES = 32
_DOMAIN = b"sandburg-audit-v1\0"
MAX_PROBLEMS = 100


class AuditKeyError(Exception):
    """The audit key file cannot be used: the server refuses to start (the message says what to fix)."""


def canonical(value: Any) -> bytes:
    # ASCII with \u escapes: a path that is not UTF-8 (surrogate escapes, docs/api.md) encodes too
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def iso(ts: datetime) -> str:
    return ts.isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Record:
    seq: int
    ts: datetime
    tenant: str
    actor: str | None
    type: str
    sandbox_id: str | None
    payload: Mapping[str, Any]
    prev_hash: str
    hash: str = ""

    def body(self) -> list[Any]:
        return [
            self.seq, iso(self.ts), self.tenant, self.actor, self.type, self.sandbox_id, dict(self.payload),
            self.prev_hash,
        ]  # fmt: skip

    def computed_hash(self) -> str:
        return hashlib.sha256(_DOMAIN + canonical(self.body())).hexdigest()


@dataclass(frozen=True)
class Anchor:
    tenant: str
    head_seq: int
    head_hash: str
    count: int
    start_prev: str = GENESIS
    mac: str = ""

    def message(self) -> bytes:
        return canonical(["anchor", self.tenant, self.head_seq, self.head_hash, self.count, self.start_prev])

    def signed(self, key: bytes) -> Anchor:
        return Anchor(
            self.tenant, self.head_seq, self.head_hash, self.count, self.start_prev, sign(key, self)
        )


def sign(key: bytes, anchor: Anchor) -> str:
    return hmac.new(key, anchor.message(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Problem:
    seq: int | None  # the record where the chain breaks (None: the anchor itself)
    problem: str


@dataclass
class Verification:
    ok: bool
    records: int = 0
    head_seq: int | None = None
    problems: list[Problem] = field(default_factory=list)


def verify(records: Iterable[Record], anchor: Anchor | None, key: bytes) -> Verification:
    """Check one organization's chain (records in `seq` order) against its anchor; every break is reported with
    the seq where it shows, the first ones first."""
    out = Verification(ok=True)

    def bad(seq: int | None, problem: str) -> None:
        out.ok = False
        if len(out.problems) < MAX_PROBLEMS:
            out.problems.append(Problem(seq, problem))

    if anchor is not None and not hmac.compare_digest(anchor.mac, sign(key, anchor)):
        bad(
            None,
            "the chain's anchor fails its HMAC: it was altered, or the audit key is not the one that made it",
        )
    expected = anchor.start_prev if anchor is not None else GENESIS
    last: Record | None = None
    count = 0
    for rec in records:
        count += 1
        if rec.computed_hash() != rec.hash:
            bad(rec.seq, f"record {rec.seq} does not match its hash: edited, or moved from another position")
        if rec.prev_hash != expected:
            where = f"after record {last.seq}" if last is not None else "at the start of the chain"
            bad(rec.seq, f"the chain breaks before record {rec.seq}: records missing or reordered {where}")
        expected = rec.hash
        last = rec
    out.records = count
    out.head_seq = last.seq if last is not None else None
    if anchor is None:
        if last is not None:
            bad(None, "records exist but the chain's anchor is missing")
        return out
    if last is None or last.seq != anchor.head_seq or last.hash != anchor.head_hash:
        if anchor.count > 0 or last is not None:
            ends = f"ends at record {last.seq}" if last is not None else "is empty"
            bad(
                last.seq if last is not None else None,
                f"truncated or rewritten: the chain {ends} but its anchor's head is record {anchor.head_seq}",
            )
    elif count != anchor.count:
        bad(None, f"the chain holds {count} records, its anchor {anchor.count}")
    return out


def load_or_create_key(path: str) -> bytes:
    """The audit HMAC key: 32 random bytes in a 0600 file, created atomically (O_EXCL + link) when missing. A file
    that group or others may read or write, or of the wrong length, is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return _create_key(path)
    except OSError as exc:
        raise AuditKeyError(f"{path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fh.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise AuditKeyError(f"{path}: mode {stat.S_IMODE(mode):o}; make it 0600 (chmod 600 {path})")
        key = fh.read()
    if len(key) != KEY_BYTES:
        raise AuditKeyError(f"{path}: {len(key)} bytes, expected {KEY_BYTES}")
    return key


def _create_key(path: str) -> bytes:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    tmp = f"{path}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
            fh.flush()
            os.fsync(fh.fileno())
        try:  # a link never replaces: if another process won the race, its key is the one
            os.link(tmp, path)
        except FileExistsError:
            return load_or_create_key(path)
    finally:
        os.unlink(tmp)
    return key
