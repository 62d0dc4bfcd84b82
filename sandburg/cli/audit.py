"""``sandburg audit ACTION``: the organization's audit log through ``sb.audit`` (docs/audit.md): ls, export,
verify.

``ls`` prints a table (``--json``: the records), ``export`` writes JSON lines to stdout or ``-o FILE``, ``verify``
prints ``ok`` and exits 0, or prints each break with its seq and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from typing import Any

from .._audit import AuditRecord, AuditVerification
from .._client import Sandburg

__all__ = ["add_parsers", "format_records", "run"]

_HEADERS = ("SEQ", "TIME", "TYPE", "SANDBOX", "WHAT")


def _time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sandbox", metavar="ID", help="only this sandbox's records")
    p.add_argument(
        "--type", action="append", metavar="T", help="api, process, file, secret, network, audit (repeatable)"
    )
    p.add_argument("--since", type=_time, metavar="TIME", help="at or after this time (ISO 8601)")
    p.add_argument("--until", type=_time, metavar="TIME", help="before this time (ISO 8601)")


def add_parsers(sub: Any) -> None:
    """Add ``audit`` with its actions to the ``sandburg`` parser's subcommands."""
    p = sub.add_parser(
        "audit",
        help="query, export and verify the audit log",
        description="The audit log records every API call, toolbox process, file operation, secret use (never "
        "values) and network decision, in a hash chain anchored with an HMAC.",
    )
    acts = p.add_subparsers(dest="audit_action", required=True, metavar="ACTION")
    a = acts.add_parser("ls", help="list records, oldest first")
    _filters(a)
    a.add_argument("--limit", type=int, default=100, metavar="N", help="at most N records (1..1000)")
    a.add_argument("--cursor", type=int, default=0, metavar="SEQ", help="records after this seq")
    a.add_argument("--json", action="store_true", help="print the records as JSON")
    a = acts.add_parser("export", help="write every matching record as JSON lines")
    _filters(a)
    a.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: stdout)")
    a = acts.add_parser("verify", help="check the hash chain and its HMAC anchor; exit 1 on any break")
    a.add_argument(
        "--data-dir", metavar="DIR",
        help="verify the database in DIR with DIR/audit.key, without a server (every organization)",
    )  # fmt: skip


def _what(r: AuditRecord) -> str:
    p = r.payload
    if r.type == "api":
        return f"{p.get('method')} {p.get('route')} {p.get('status')} {p.get('durationMs')}ms"
    if r.type == "process":
        return f"{p.get('kind')}: {p.get('command', '')} -> {p.get('exitCode')}"
    if r.type == "file":
        return f"{p.get('op')} {p.get('path', '')} {p.get('bytes', '')}".rstrip()
    if r.type == "secret":
        return ", ".join(f"{s.get('name')} v{s.get('version')}" for s in p.get("secrets", []))
    if r.type == "network":
        return f"{p.get('kind')} {p.get('name') or p.get('dst', '')}:{p.get('dport', '')}".rstrip(":")
    return json.dumps(dict(p), sort_keys=True)


def format_records(items: list[AuditRecord]) -> str:
    """The ``audit ls`` table."""
    from .main import format_table  # main imports this module

    rows = [
        [str(r.seq), r.time.isoformat(timespec="seconds"), r.type, r.sandbox_id or "-", _what(r)[:100]]
        for r in items
    ]
    return format_table(_HEADERS, rows)


def _record_json(r: AuditRecord) -> dict[str, Any]:
    return {
        "seq": r.seq, "time": r.time.isoformat(), "tenant": r.tenant, "actor": r.actor, "type": r.type,
        "sandboxId": r.sandbox_id, "payload": dict(r.payload), "prevHash": r.prev_hash, "hash": r.hash,
    }  # fmt: skip


def _report(v: AuditVerification, prefix: str = "") -> int:
    if not v.enabled:
        print("the audit log is off on this server (SANDBURG_AUDIT=off)")
        return 0
    if v.ok:
        print(f"{prefix}ok: {v.records} records, head seq {v.head_seq}")
        return 0
    for p in v.problems:
        print(f"{prefix}seq {p.seq if p.seq is not None else '-'}: {p.problem}")
    return 1


def verify_data_dir(data_dir: str) -> int:
    """``audit verify --data-dir``: the server's code checks the files directly (a stopped server, a copy)."""
    import importlib

    try:
        query = importlib.import_module(
            "sandburg.server.auditquery"
        )  # a client-only install lacks the server
        db, key = os.path.join(data_dir, "sandburg.db"), os.path.join(data_dir, "audit.key")
        if not os.path.exists(db):
            raise FileNotFoundError(f"{db}: no database there")
        found = query.check_offline(db, key)
    except Exception as exc:  # missing files, a key with a loose mode, not a sandburg database
        print(f"error: {exc}", file=sys.stderr)
        return 1
    status = 0
    for tenant, v in found.items():
        status |= _report(AuditVerification.from_json({**query.verification_json(v)}), f"{tenant}: ")
    if not found:
        print("ok: no audit records")
    return status


def run(args: argparse.Namespace, sb: Sandburg) -> int:
    """Run ``sandburg audit ACTION``; SDK errors propagate (main prints them)."""
    act = args.audit_action
    if act == "verify":
        v = sb.audit.verify()
        return _report(v)

    filters = dict(sandbox=args.sandbox, type=args.type, since=args.since, until=args.until)
    if act == "ls":
        items = sb.audit.list(limit=args.limit, cursor=args.cursor, **filters)
        if args.json:
            print(json.dumps([_record_json(r) for r in items], indent=2, sort_keys=True))
        else:
            print(format_records(items))
        return 0
    out = open(args.output, "w") if args.output else sys.stdout  # noqa: SIM115 - closed below
    try:
        for line in sb.audit.export(**filters):
            out.write(line + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0
