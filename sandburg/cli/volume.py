"""``sandburg volume ACTION ...``: the organization's persistent volumes through ``sb.volumes`` (docs/volumes.md):
create, ls, inspect, rm; and ``--volume NAME:/path[:ro]`` of ``sandburg create``.
"""

from __future__ import annotations

import argparse
import dataclasses
from datetime import datetime
from typing import Any

from .._client import Sandburg
from .._sizes import parse_size_mib
from .._volumes import VolumeInfo
from .common import delete_each, print_json

__all__ = ["add_parsers", "format_volumes", "mount_arg", "run", "volume_json"]

_HEADERS = ("NAME", "ID", "STATE", "SIZE", "USED", "SANDBOXES", "CREATED")


def mount_arg(text: str) -> dict[str, Any]:
    """``NAME:/path`` or ``NAME:/path:ro`` (or ``:rw``), the value of ``create --volume``."""
    name, sep, rest = text.partition(":")
    path, _, mode = rest.partition(":")
    if not sep or not name or not path.startswith("/") or mode not in ("", "ro", "rw"):
        raise argparse.ArgumentTypeError(f"expected NAME:/path or NAME:/path:ro, got {text!r}")
    return {"name": name, "mount": path, "read_only": mode == "ro"}


def _size(text: str) -> int:
    try:
        return parse_size_mib(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_parsers(sub: Any) -> None:
    """Add ``volume`` with its actions to the ``sandburg`` parser's subcommands."""
    p = sub.add_parser(
        "volume",
        help="persistent encrypted volumes that sandboxes mount",
        description="A volume outlives sandboxes: mount it with `sandburg create --volume NAME:/path[:ro]`. "
        "It is encrypted at rest, never part of a snapshot, and deleted only when no sandbox mounts it.",
    )
    acts = p.add_subparsers(dest="volume_action", required=True, metavar="ACTION")
    a = acts.add_parser("create", help="create a volume")
    a.add_argument("name", metavar="NAME")
    a.add_argument("--size", type=_size, help="e.g. 512MiB, 5GiB (default: the server's, 10GiB)")
    a.add_argument("--json", action="store_true", help="print the volume as JSON")
    a = acts.add_parser("ls", help="list volumes")
    a.add_argument("--json", action="store_true")
    a = acts.add_parser("inspect", help="print a volume as JSON")
    a.add_argument("name", metavar="NAME")
    a = acts.add_parser("rm", help="delete volumes and their data (refused while a sandbox mounts one)")
    a.add_argument("names", nargs="+", metavar="NAME")


def volume_json(info: VolumeInfo) -> dict[str, Any]:
    data = dataclasses.asdict(info)
    data["sandboxes"] = list(info.sandboxes)
    for key in ("created_at", "last_used_at"):
        data[key] = data[key].isoformat() if data[key] else None
    return data


def _mib(n: int) -> str:
    return f"{n // 1024}GiB" if n % 1024 == 0 else f"{n}MiB"


def format_volumes(items: list[VolumeInfo], now: datetime | None = None) -> str:
    """The ``volume ls`` table."""
    from .main import format_age, format_table  # main imports this module

    rows = [
        [v.name, v.id[:8], v.state, _mib(v.size_mib), f"{v.used_bytes >> 20}MiB", str(len(v.sandboxes)),
         format_age(v.created_at, now)]
        for v in items
    ]  # fmt: skip
    return format_table(_HEADERS, rows)


def run(args: argparse.Namespace, sb: Sandburg, now: datetime | None = None) -> int:
    """Run ``sandburg volume ACTION``; SDK errors propagate (main prints them)."""
    act = args.volume_action
    if act == "create":
        info = sb.volumes.create(args.name, None if args.size is None else f"{args.size}MiB")
        if args.json:
            print_json(volume_json(info))
        else:
            print(info.id)
    elif act == "ls":
        items = sb.volumes.list()
        if args.json:
            print_json([volume_json(v) for v in items])
        else:
            print(format_volumes(items, now))
    elif act == "inspect":
        print_json(volume_json(sb.volumes.get(args.name)))
    else:
        return delete_each(args.names, sb.volumes.delete)
    return 0
