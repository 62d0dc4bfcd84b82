"""``sandburg net ACTION ID_OR_NAME ...`` and ``sandburg preview ID_OR_NAME PORT``: a sandbox's egress policy,
its network log, and the preview URL of a port, through ``sandbox.network`` and ``sandbox.preview_url``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Iterable
from typing import Any

from .._client import Network, Sandburg
from .._core import NETWORK_LOG_KINDS, NETWORK_MODES
from .._models import NetworkEvent, NetworkLog, NetworkPolicy, PreviewUrl
from .common import print_json

__all__ = [
    "FOLLOW_INTERVAL",
    "UsageError",
    "add_parsers",
    "format_event",
    "format_policy",
    "format_preview",
    "run",
]

FOLLOW_INTERVAL = 1.0
"""Seconds between two polls of ``sandburg net log --follow``."""

_sleep = time.sleep  # replaced in tests


class UsageError(Exception):
    """A usage problem found after parsing; ``main`` reports it and exits 2 like argparse's own."""


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}")
    return int(text)


def add_entry_options(p: argparse.ArgumentParser) -> None:
    """``--allow ENTRY`` / ``--deny ENTRY``, repeatable (``create`` and ``net set``)."""
    entries = "a domain, *.domain wildcard, IPv4 address or CIDR"
    p.add_argument("--allow", action="append", default=[], metavar="ENTRY", help=f"repeatable: {entries}")
    p.add_argument(
        "--deny", action="append", default=[], metavar="ENTRY", help="repeatable: wins over --allow"
    )


def add_parsers(sub: Any) -> None:
    """Add ``net`` with its actions, and ``preview``, to the ``sandburg`` parser's subcommands."""
    p = sub.add_parser(
        "net",
        help="a sandbox's egress policy and network log",
        description="Show or replace a sandbox's egress policy (mode none, all, or list: only the --allow "
        "entries, minus the --deny ones), or read its network log. A new policy takes effect at once, "
        "without a restart.",
    )
    acts = p.add_subparsers(dest="net_action", required=True, metavar="ACTION")

    a = acts.add_parser("show", help="print the policy")
    a.add_argument("sandbox", metavar="ID_OR_NAME")
    a.add_argument("--json", action="store_true")

    a = acts.add_parser(
        "set",
        help="replace the policy",
        description="Replace the whole policy (entries not given are dropped). --mode defaults to list.",
    )
    a.add_argument("sandbox", metavar="ID_OR_NAME")
    a.add_argument("--mode", choices=NETWORK_MODES, help="default: list")
    add_entry_options(a)
    a.add_argument("--json", action="store_true")

    a = acts.add_parser("log", help="DNS answers, allowed and denied connections, ended connections")
    a.add_argument("sandbox", metavar="ID_OR_NAME")
    a.add_argument("--limit", type=_positive_int, default=100, metavar="N", help="the newest N (default 100)")
    a.add_argument(
        "--kind", action="append", choices=NETWORK_LOG_KINDS, help="repeatable: only these (default: all)"
    )
    a.add_argument(
        "-f", "--follow", action="store_true", help=f"keep printing new records (every {FOLLOW_INTERVAL:g} s)"
    )
    a.add_argument("--json", action="store_true", help="one JSON object per record and line")

    p = sub.add_parser(
        "preview",
        help="the URL and token to reach a port of a sandbox",
        description="Print the preview URL of PORT in the sandbox, its token, a URL for a browser (it sets a "
        "cookie) and a curl command line. Anyone with the token reaches the port.",
    )
    p.add_argument("sandbox", metavar="ID_OR_NAME")
    p.add_argument("port", type=_port, metavar="PORT")
    p.add_argument("--json", action="store_true")


# ------------------------------------------------------------------------------------------ formatting


def format_policy(policy: NetworkPolicy) -> str:
    """``mode:``, ``allow:`` and ``deny:`` lines (``-`` for an empty list)."""
    rows = [("mode", policy.mode), ("allow", ", ".join(policy.allow)), ("deny", ", ".join(policy.deny))]
    return "\n".join(f"{key + ':':<7}{value or '-'}" for key, value in rows)


def _dest(d: dict[str, Any]) -> str:
    dst, port = d.get("dst", "?"), d.get("dport")
    return f"{dst}:{port}" if port not in (None, "", 0) else str(dst)


def format_event(event: NetworkEvent) -> str:
    """One line: the time, the kind, and the fields that matter for that kind."""
    d = event.data
    if event.kind == "dns":
        text = f"{d.get('name', '?')} {d.get('type', '')}".rstrip()
        answers = d.get("answers")
        if isinstance(answers, list) and answers:
            text += " -> " + ", ".join(map(str, answers))
        if d.get("rcode") not in (None, "", 0, "NOERROR"):
            text += f" ({d['rcode']})"
        if d.get("ttl") is not None:
            text += f" ttl={d['ttl']}"
        if d.get("allowed") is False:
            text += " [blocked]"
    elif event.kind in ("allow", "deny"):
        text = f"{d.get('proto', '?')} {_dest(d)}"
        if d.get("icmpType") is not None:
            text += f" icmp-type={d['icmpType']}"
        if d.get("reason"):
            text += f" ({d['reason']})"
    elif event.kind == "conn":
        text = f"{d.get('proto', '?')} {_dest(d)}"
        text += f" out={d.get('bytesOut', 0)}B/{d.get('packetsOut', 0)}p"
        text += f" in={d.get('bytesIn', 0)}B/{d.get('packetsIn', 0)}p"
    else:
        text = " ".join(f"{k}={v}" for k, v in sorted(d.items()))
    return f"{event.ts}  {event.kind:<5}  {text}".rstrip()


def format_preview(preview: PreviewUrl) -> str:
    """The URL, the token, the browser URL and a curl command line."""
    header = f"{next(iter(preview.headers))}: {preview.token}"
    return "\n".join(
        [
            f"url:     {preview.url}",
            f"token:   {preview.token}",
            f"browser: {preview.authenticated_url}",
            f"curl -H {shlex.quote(header)} {shlex.quote(preview.url + '/')}",
        ]
    )


# -------------------------------------------------------------------------------------------- commands


def _print_events(log: NetworkLog, as_json: bool) -> None:
    for event in log:
        if as_json:
            print(
                json.dumps({"id": event.id, "ts": event.ts, "kind": event.kind, **event.data}, sort_keys=True)
            )
        else:
            print(format_event(event))
    sys.stdout.flush()


def _log(net: Network, limit: int, kinds: Iterable[str] | None, follow: bool, as_json: bool) -> int:
    log = net.log(limit=limit, kinds=kinds)
    _print_events(log, as_json)
    if not follow:
        return 0
    try:
        while True:
            _sleep(FOLLOW_INTERVAL)
            log = net.log(limit=limit, since=log.next_since, kinds=kinds)
            _print_events(log, as_json)
    except KeyboardInterrupt:  # the way to stop following: not an error
        return 0


def run(args: argparse.Namespace, sb: Sandburg) -> int:
    """Run ``sandburg net`` or ``sandburg preview``; errors propagate as the SDK's exceptions (main prints
    them), usage problems as :class:`UsageError`."""
    box = sb.get(args.sandbox)
    if args.command_name == "preview":
        preview = box.preview_url(args.port)
        if args.json:
            print_json(
                {
                    "sandboxId": preview.sandbox_id,
                    "port": preview.port,
                    "url": preview.url,
                    "token": preview.token,
                    "authenticatedUrl": preview.authenticated_url,
                }
            )
        else:
            print(format_preview(preview))
        return 0
    act = args.net_action
    if act == "log":
        return _log(box.network, args.limit, args.kind, args.follow, args.json)
    if act == "set":
        if args.mode is None and not args.allow and not args.deny:
            raise UsageError("net set: give --allow, --deny or --mode (--mode list alone allows nothing)")
        policy = box.network.update(allow=args.allow, deny=args.deny, mode=args.mode or "list")
    else:
        policy = box.network.get()
    if args.json:
        print_json(policy.to_json())
    else:
        print(format_policy(policy))
    return 0
