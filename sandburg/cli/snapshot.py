"""``sandburg snapshot ACTION ...``: state snapshots of sandboxes through the SDK's ``box.snapshot``,
``box.restore`` and ``sb.snapshots`` (docs/snapshots.md): create, list, restore in place, fork, diff, delete,
inspect.

A snapshot is named once per organization (names share the namespace of images, so an unknown one is the
server's ``IMAGE_NOT_FOUND``); sandboxes are given by id or name. ``diff`` prints git's ``--name-status`` shape:
one ``A``/``M``/``D`` line per path, sorted by path, so its output can be compared with git's or fed to ``cut``.
"""

from __future__ import annotations

import argparse
import dataclasses
from datetime import datetime
from typing import Any

from .._client import Sandburg
from .._snapshots import Snapshot, SnapshotDiff
from .common import delete_each, print_json
from .net import UsageError

__all__ = ["add_parsers", "diff_lines", "format_snapshots", "run", "snapshot_json"]

_HEADERS = ("NAME", "SANDBOX", "PARENT", "AGE", "ISOLATION")


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def add_parsers(sub: Any) -> None:
    """Add ``snapshot`` with its actions to the ``sandburg`` parser's subcommands."""
    p = sub.add_parser(
        "snapshot",
        help="snapshot, restore, fork and diff the state of sandboxes",
        description="A state snapshot holds every file of a sandbox (not only /workspace), its env and "
        "settings. Restore rolls a sandbox back in place (same id and name); fork makes new sandboxes from one.",
    )
    acts = p.add_subparsers(dest="snapshot_action", required=True, metavar="ACTION")

    a = acts.add_parser("create", help="snapshot a sandbox (frozen for the capture, then running on)")
    a.add_argument("sandbox", metavar="SANDBOX", help="id or name")
    a.add_argument("name", metavar="NAME")
    a.add_argument("--memory", action="store_true", help="gvisor: running processes and their memory too")
    a.add_argument("--json", action="store_true", help="print the snapshot as JSON")

    a = acts.add_parser("ls", help="list snapshots, oldest first")
    a.add_argument("--sandbox", metavar="S", help="only this sandbox's (id or name)")
    a.add_argument("--json", action="store_true")

    a = acts.add_parser("restore", help="roll a sandbox back to a snapshot, in place")
    a.add_argument("sandbox", metavar="SANDBOX", help="id or name")
    a.add_argument("name", metavar="NAME")

    a = acts.add_parser(
        "fork",
        help="new sandboxes from a snapshot",
        description="Make --count new sandboxes from snapshot NAME, each with its own files, name and address "
        "(all or none). --name, repeatable, names them (one per fork; --count defaults to their number).",
    )
    a.add_argument("name", metavar="NAME")
    a.add_argument("--count", type=_count, metavar="N", help="default 1")
    a.add_argument("--name", dest="names", action="append", default=[], metavar="X", help="repeatable")
    a.add_argument("--isolation", choices=["container", "gvisor"], help="default: the snapshot's")
    a.add_argument("--json", action="store_true", help="print the new sandboxes as JSON")

    a = acts.add_parser(
        "diff",
        help="paths added, modified and deleted since a snapshot",
        description="What changed from snapshot NAME to snapshot OTHER, or to the files of --sandbox now: "
        "'A path', 'M path', 'D path' lines sorted by path, like git diff --name-status.",
    )
    a.add_argument("name", metavar="NAME")
    a.add_argument("other", nargs="?", metavar="OTHER")
    a.add_argument("--sandbox", metavar="S", help="id or name: compare with its files now")
    a.add_argument("--json", action="store_true", help="{added, modified, deleted}")

    a = acts.add_parser("rm", help="delete snapshots (sandboxes made from them keep their files)")
    a.add_argument("names", nargs="+", metavar="NAME")

    a = acts.add_parser("inspect", help="print a snapshot as JSON")
    a.add_argument("name", metavar="NAME")


# ------------------------------------------------------------------------------------------ formatting


def snapshot_json(snap: Snapshot) -> dict[str, Any]:
    """The snapshot's fields (as ``image inspect`` shows an image's), ``created_at`` in ISO 8601."""
    data = {f.name: getattr(snap, f.name) for f in dataclasses.fields(snap)}
    data["created_at"] = snap.created_at.isoformat() if snap.created_at else None
    return data


def format_snapshots(snaps: list[Snapshot], now: datetime | None = None) -> str:
    """The ``snapshot ls`` table."""
    # main imports this module: a module-level import would be circular
    from .main import format_age, format_table

    rows = [
        [
            s.name,
            s.sandbox_name or s.sandbox_id or "-",
            s.parent or "-",
            format_age(s.created_at, now),
            str(s.settings.get("isolation") or "-"),
        ]
        for s in snaps
    ]
    return format_table(_HEADERS, rows)


def diff_lines(diff: SnapshotDiff) -> list[str]:
    """``A path`` / ``M path`` / ``D path``, sorted by path as git does (code point order is UTF-8's byte
    order)."""
    tagged = [(p, "A") for p in diff.added] + [(p, "M") for p in diff.modified]
    tagged += [(p, "D") for p in diff.deleted]
    return [f"{status} {path}" for path, status in sorted(tagged)]


# -------------------------------------------------------------------------------------------- commands


def _create(args: argparse.Namespace, sb: Sandburg) -> int:
    snap = sb.get(args.sandbox).snapshot(args.name, memory=args.memory)
    if args.json:
        print_json(snapshot_json(snap))
    else:
        took = f" (capture {round(snap.capture_ms)} ms)" if snap.capture_ms is not None else ""
        print(f"snapshot {snap.name} of {args.sandbox}{took}")
    return 0


def _fork(args: argparse.Namespace, sb: Sandburg) -> int:
    names: list[str] = args.names
    if names and args.count is not None and args.count != len(names):
        raise UsageError(f"snapshot fork: {len(names)} --name for --count {args.count} (one name per fork)")
    count = args.count or len(names) or 1
    boxes = sb.snapshots.fork(args.name, count, names=names or None, isolation=args.isolation)
    if args.json:
        print_json([b.raw for b in boxes])
    else:
        from .main import format_table

        print(format_table(("NAME", "ID"), [[b.name, b.id] for b in boxes]))
    return 0


def _diff(args: argparse.Namespace, sb: Sandburg) -> int:
    if (args.other is None) == (args.sandbox is None):
        raise UsageError("snapshot diff: give OTHER (a snapshot) or --sandbox S, one of them")
    snap = sb.snapshots.get(args.name)
    diff = snap.diff(args.other, sandbox=args.sandbox)
    if args.json:
        print_json(dataclasses.asdict(diff))
    else:
        for line in diff_lines(diff):
            print(line)
    return 0


def _rm(sb: Sandburg, names: list[str]) -> int:
    return delete_each(names, sb.snapshots.delete)


def run(args: argparse.Namespace, sb: Sandburg, now: datetime | None = None) -> int:
    """Run ``sandburg snapshot ACTION``; errors propagate as the SDK's exceptions (main prints them), usage
    problems as :class:`~sandburg.cli.net.UsageError`. ``now`` fixes the clock of the AGE column."""
    act = args.snapshot_action
    if act == "create":
        return _create(args, sb)
    if act == "ls":
        snaps = sb.snapshots.list(sandbox=args.sandbox)
        if args.json:
            print_json([snapshot_json(s) for s in snaps])
        else:
            print(format_snapshots(snaps, now))
        return 0
    if act == "restore":
        box = sb.get(args.sandbox)
        box.restore(args.name)
        print(f"restored {box.name} ({box.id}) to {args.name}")
        return 0
    if act == "fork":
        return _fork(args, sb)
    if act == "diff":
        return _diff(args, sb)
    if act == "rm":
        return _rm(sb, args.names)
    print_json(snapshot_json(sb.snapshots.get(args.name)))
    return 0
