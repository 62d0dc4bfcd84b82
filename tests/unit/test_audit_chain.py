"""The audit log's hash chain and HMAC anchor (auditchain.py), and its writer over a real SQLite file (audit.py):
an intact chain verifies; an edited, removed, reordered or cut-off record, a forged anchor, a wrong key do not."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import stat
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from sandburg.server import audit as audit_mod
from sandburg.server.audit import AuditLog
from sandburg.server.auditchain import (
    GENESIS,
    Anchor,
    AuditKeyError,
    Record,
    load_or_create_key,
    verify,
)
from sandburg.server.auditquery import Filters, check, page
from sandburg.server.db import make_engine, make_sessionmaker
from sandburg.server.migrate import upgrade

KEY = b"k" * 32
T0 = datetime(2026, 1, 1, 12, 0, 0, 123456)


def chain(n: int, tenant: str = "org", start_prev: str = GENESIS) -> tuple[list[Record], Anchor]:
    recs: list[Record] = []
    prev = start_prev
    for i in range(1, n + 1):
        payload = {"i": i, "ü": "✓", "path": "/tmp/\udcff-not-utf8"}  # a surrogate-escaped path hashes too
        r = Record(i, T0 + timedelta(seconds=i), tenant, "key", "api", None, payload, prev)
        r = dataclasses.replace(r, hash=r.computed_hash())
        recs.append(r)
        prev = r.hash
    return recs, Anchor(tenant, n, prev, n, start_prev).signed(KEY)


def seqs(v: object) -> list[int | None]:
    return [p.seq for p in v.problems]  # type: ignore[attr-defined]


def test_intact_chain_verifies() -> None:
    recs, anchor = chain(5)
    v = verify(recs, anchor, KEY)
    assert v.ok and v.records == 5 and v.head_seq == 5 and not v.problems


def test_empty_log_verifies_and_missing_anchor_is_reported() -> None:
    assert verify([], None, KEY).ok
    recs, _ = chain(2)
    v = verify(recs, None, KEY)
    assert not v.ok and "anchor is missing" in v.problems[0].problem


def test_edited_payload_is_reported_at_its_seq() -> None:
    recs, anchor = chain(5)
    recs[2] = dataclasses.replace(recs[2], payload={"i": 99})
    v = verify(recs, anchor, KEY)
    assert not v.ok and seqs(v) == [3]
    assert "does not match its hash" in v.problems[0].problem


def test_removed_middle_record_breaks_the_chain_where_it_was() -> None:
    recs, anchor = chain(5)
    del recs[2]
    v = verify(recs, anchor, KEY)
    assert not v.ok and seqs(v)[0] == 4 and "missing or reordered after record 2" in v.problems[0].problem


def test_reordered_records_are_reported() -> None:
    recs, anchor = chain(5)
    recs[1], recs[2] = recs[2], recs[1]
    v = verify(recs, anchor, KEY)
    assert not v.ok and 3 in seqs(v)


def test_swapped_contents_keeping_seq_are_reported() -> None:
    recs, anchor = chain(5)
    a, b = recs[1], recs[2]
    recs[1] = dataclasses.replace(b, seq=a.seq)
    recs[2] = dataclasses.replace(a, seq=b.seq)
    v = verify(recs, anchor, KEY)
    assert not v.ok and seqs(v)[0] == 2


def test_truncated_tail_is_reported() -> None:
    recs, anchor = chain(5)
    v = verify(recs[:3], anchor, KEY)
    assert not v.ok and seqs(v) == [3] and "head is record 5" in v.problems[0].problem
    v = verify([], anchor, KEY)
    assert not v.ok and "is empty" in v.problems[0].problem


def test_rewritten_chain_without_the_key_fails_the_anchor() -> None:
    """Re-hashing every record after an edit makes the chain consistent, but not its HMAC'd head."""
    recs, anchor = chain(3)
    forged, _ = chain(3)
    forged = [dataclasses.replace(r, payload={"forged": True}) for r in forged]
    prev, out = GENESIS, []
    for r in forged:
        r = dataclasses.replace(r, prev_hash=prev)
        r = dataclasses.replace(r, hash=r.computed_hash())
        out.append(r)
        prev = r.hash
    assert not verify(out, anchor, KEY).ok
    forged_anchor = dataclasses.replace(anchor, head_hash=prev)  # MAC no longer matches
    v = verify(out, forged_anchor, KEY)
    assert not v.ok and v.problems[0].seq is None and "HMAC" in v.problems[0].problem
    assert not verify(recs, anchor, b"x" * 32).ok  # another key


def test_pruned_start_verifies_with_the_boundary_hash() -> None:
    recs, _ = chain(6)
    kept = recs[3:]
    anchor = Anchor("org", 6, recs[-1].hash, 3, recs[2].hash).signed(KEY)
    assert verify(kept, anchor, KEY).ok
    assert not verify(recs[4:], anchor, KEY).ok  # one more removed at the start


def test_key_file_is_created_0600_and_loose_modes_are_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.key")
    key = load_or_create_key(path)
    assert len(key) == 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_key(path) == key
    os.chmod(path, 0o644)
    with pytest.raises(AuditKeyError, match="0600"):
        load_or_create_key(path)


def test_writer_chains_prunes_and_copies_network_events(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    engine = make_engine(db)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    with sqlite3.connect(db) as con:
        con.execute(
            "INSERT INTO events (ts, organization_id, sandbox_id, kind, data) VALUES (?, ?, ?, ?, ?)",
            ("2026-01-01 00:00:00.000000", "org", "box", "deny", '{"dst": "10.0.0.1", "dport": 443}'),
        )
    log = AuditLog(sessions, KEY, retention_days=0)
    try:
        token = audit_mod.principal.set(("org", "key1"))
        for i in range(5):
            log.record("process", "box", {"kind": "exec", "command": f"echo {i}", "user": "root"})
        audit_mod.principal.reset(token)
        log.record("api", None, {"route": "/x"})  # no principal, no tenant: not chained
        assert log.flush()
        for _ in range(50):
            if page(sessions, "org", Filters(types=["network"]), 10):
                break
            log.flush(0.1)
        net = page(sessions, "org", Filters(types=["network"]), 10)
        assert net and net[0]["payload"]["dst"] == "10.0.0.1" and net[0]["payload"]["kind"] == "deny"
        assert check(sessions, "org", KEY).ok
        procs = page(sessions, "org", Filters(types=["process"]), 10)
        assert [p["actor"] for p in procs] == ["key1"] * 5
        cutoff = datetime.fromisoformat(procs[2]["time"].rstrip("Z"))
        assert log.prune(cutoff) >= 2  # through the second exec (and the older network record)
        v = check(sessions, "org", KEY)
        assert v.ok, v.problems
        pruned = page(sessions, "org", Filters(types=["audit"]), 10)
        assert pruned and pruned[0]["payload"]["op"] == "pruned"
    finally:
        log.close()
    with sqlite3.connect(db) as con:  # an edit behind the server's back
        con.execute("UPDATE audit_records SET payload = '{\"kind\": \"exec\"}' WHERE type = 'process'")
    v = check(sessions, "org", KEY)
    assert not v.ok and all(p.seq is not None for p in v.problems)
    engine.dispose()


def test_offline_verify_of_a_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`sandburg audit verify --data-dir DIR`: the files alone, no server, no API key."""
    from sandburg.cli.main import main

    engine = make_engine(str(tmp_path / "sandburg.db"))
    upgrade(engine)
    key = load_or_create_key(str(tmp_path / "audit.key"))
    log = AuditLog(make_sessionmaker(engine), key, retention_days=0)
    for i in range(4):
        log.record("api", None, {"i": i}, tenant="org-a", actor="k")
    log.record("api", None, {"i": 9}, tenant="org-b", actor="k")
    assert log.flush()
    log.close()
    engine.dispose()
    assert main(["audit", "verify", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "org-a: ok: 4 records" in out and "org-b: ok: 1 records" in out
    with sqlite3.connect(tmp_path / "sandburg.db") as con:
        seq = con.execute(
            "SELECT seq FROM audit_records WHERE organization_id = 'org-a' LIMIT 1 OFFSET 2"
        ).fetchone()[0]
        con.execute("UPDATE audit_records SET actor = 'someone else' WHERE seq = ?", (seq,))
    assert main(["audit", "verify", "--data-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"org-a: seq {seq}: record {seq} does not match its hash" in out and "org-b: ok" in out
    assert main(["audit", "verify", "--data-dir", str(tmp_path / "nowhere")]) == 1
