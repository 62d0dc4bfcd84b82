"""``sandburg secret ACTION ...``: the organization's secrets through ``sb.secrets`` (docs/secrets.md): set, ls,
inspect, rm.

``set NAME`` reads the value from ``--value`` or, without it, from stdin (one trailing newline removed, so
``echo "$TOKEN" | sandburg secret set NAME`` stores the token itself); reading from stdin keeps the value out of
the shell history and the process list. No action ever prints a value: the server never answers one.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from datetime import datetime
from typing import Any

from .._client import Sandburg
from .._secrets import SecretInfo
from .common import delete_each, print_json
from .net import UsageError

__all__ = ["add_parsers", "format_secrets", "read_value", "run", "secret_json"]

_HEADERS = ("NAME", "VERSION", "UPDATED")


def add_parsers(sub: Any) -> None:
    """Add ``secret`` with its actions to the ``sandburg`` parser's subcommands."""
    p = sub.add_parser(
        "secret",
        help="store secrets that sandboxes get as env vars",
        description="Secrets are stored encrypted; sandboxes created with --secret get their current values in "
        "the env of every command, masked as *** in the output. Values are never printed.",
    )
    acts = p.add_subparsers(dest="secret_action", required=True, metavar="ACTION")
    a = acts.add_parser("set", help="store a value (a new version if the secret exists)")
    a.add_argument("name", metavar="NAME")
    a.add_argument("--value", metavar="V", help="the value (default: read stdin; safer, not in the history)")
    a.add_argument("--json", action="store_true", help="print the metadata as JSON")
    a = acts.add_parser("ls", help="list secrets (names and versions, never values)")
    a.add_argument("--json", action="store_true")
    a = acts.add_parser("inspect", help="print a secret's metadata as JSON")
    a.add_argument("name", metavar="NAME")
    a = acts.add_parser("rm", help="delete secrets (refused while a sandbox uses one)")
    a.add_argument("names", nargs="+", metavar="NAME")


def secret_json(info: SecretInfo) -> dict[str, Any]:
    data = dataclasses.asdict(info)
    for key in ("created_at", "updated_at"):
        data[key] = data[key].isoformat() if data[key] else None
    return data


def format_secrets(items: list[SecretInfo], now: datetime | None = None) -> str:
    """The ``secret ls`` table."""
    from .main import format_age, format_table  # main imports this module

    return format_table(_HEADERS, [[s.name, str(s.version), format_age(s.updated_at, now)] for s in items])


def read_value(given: str | None) -> str:
    """``--value``, else stdin without one trailing newline (a terminal is refused: nothing would be read)."""
    if given is not None:
        return given
    if sys.stdin.isatty():
        raise UsageError("secret set: give --value V, or pipe the value on stdin")
    data = sys.stdin.read()
    return data[:-1] if data.endswith("\n") else data


def run(args: argparse.Namespace, sb: Sandburg, now: datetime | None = None) -> int:
    """Run ``sandburg secret ACTION``; SDK errors propagate (main prints them)."""
    act = args.secret_action
    if act == "set":
        info = sb.secrets.set(args.name, read_value(args.value))
        if args.json:
            print_json(secret_json(info))
        else:
            print(f"{info.name} version {info.version}")
    elif act == "ls":
        items = sb.secrets.list()
        if args.json:
            print_json([secret_json(s) for s in items])
        else:
            print(format_secrets(items, now))
    elif act == "inspect":
        print_json(secret_json(sb.secrets.get(args.name)))
    else:
        return delete_each(args.names, sb.secrets.delete)
    return 0
