"""``sandburg key ...`` and ``sandburg org ...``: API keys and organizations through ``sb.keys`` /
``sb.organizations`` (docs/tenants.md).

``key create NAME --role member --scope sandboxes --scope toolbox:read`` prints the new key once, on stdout alone
(so ``KEY=$(sandburg key create ci)`` captures it); ``key ls`` never shows one. ``org create NAME --quota
sandboxes=10 --quota cpu=8`` and ``org quota NAME ...`` are the operator's.
"""

from __future__ import annotations

import argparse
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from .._client import Sandburg
from .._tenants import ApiKeyInfo, OrganizationInfo, Quota
from .common import delete_each, print_json
from .net import UsageError

__all__ = ["add_parsers", "parse_quota", "run"]

_QUOTA_FIELDS = ("sandboxes", "cpu", "memory_mib", "disk_mib", "snapshots")


def add_parsers(sub: Any) -> None:
    """Add ``key`` and ``org`` with their actions to the ``sandburg`` parser's subcommands."""
    p = sub.add_parser("key", help="make, list and revoke API keys", description=__doc__)
    acts = p.add_subparsers(dest="key_action", required=True, metavar="ACTION")
    a = acts.add_parser("create", help="make a key (printed once)")
    a.add_argument("name", metavar="NAME")
    a.add_argument("--role", default="member", choices=("admin", "member", "read-only"))
    a.add_argument("--scope", action="append", dest="scopes", metavar="AREA[:read]",
                   help="repeatable: limit the key to these areas (default: every area of its role)")  # fmt: skip
    a.add_argument("--org", metavar="ORG", help="another organization (the operator only)")
    a.add_argument("--expires-in", type=_duration, metavar="N[smhd]", help="the key stops working after that")
    a.add_argument("--json", action="store_true", help="print the key and its metadata as JSON")
    a = acts.add_parser("ls", help="list keys (never their secrets)")
    a.add_argument("--org", metavar="ORG")
    a.add_argument("--json", action="store_true")
    acts.add_parser("whoami", help="the key in use: organization, role, scopes")
    a = acts.add_parser("revoke", help="revoke keys (they stop working at once)")
    a.add_argument("ids", nargs="+", metavar="KEY_ID")

    p = sub.add_parser("org", help="organizations, quotas and usage")
    acts = p.add_subparsers(dest="org_action", required=True, metavar="ACTION")
    a = acts.add_parser("create", help="make an organization (the operator only)")
    a.add_argument("name", metavar="NAME")
    a.add_argument("--quota", action="append", default=[], metavar="FIELD=N", help=_quota_help())
    a = acts.add_parser("ls", help="list organizations")
    a.add_argument("--json", action="store_true")
    a = acts.add_parser("quota", help="replace an organization's quotas (the operator only)")
    a.add_argument("name", metavar="ORG")
    a.add_argument("--quota", action="append", default=[], metavar="FIELD=N", help=_quota_help())
    a = acts.add_parser("usage", help="what an organization uses, next to its quotas")
    a.add_argument("name", metavar="ORG", nargs="?", default="current")


def _duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``12h``, ``30d``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit() or int(text[:-1]) < 1:
        raise argparse.ArgumentTypeError(f"expected a duration such as 90s, 30m, 12h or 30d, got {text!r}")
    return timedelta(seconds=int(text[:-1]) * units[text[-1]])


def _quota_help() -> str:
    return f"repeatable; FIELD one of {', '.join(_QUOTA_FIELDS)}; a field not given has no limit"


def parse_quota(items: list[str]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for item in items:
        field, sep, value = item.partition("=")
        if not sep or field not in _QUOTA_FIELDS or not value.isdigit():
            raise UsageError(f"--quota {item!r}: FIELD=N with FIELD one of {', '.join(_QUOTA_FIELDS)}")
        out[field] = int(value)
    return out


def _key_json(k: ApiKeyInfo) -> dict[str, Any]:
    data = dataclasses.asdict(k)
    for f in ("created_at", "revoked_at", "expires_at"):
        data[f] = data[f].isoformat() if data[f] else None
    data["scopes"] = list(k.scopes) if k.scopes is not None else None
    if data["key"] is None:
        del data["key"]
    return data


def _org_json(o: OrganizationInfo) -> dict[str, Any]:
    return {"id": o.id, "name": o.name, "quota": dataclasses.asdict(o.quota),
            "created_at": o.created_at.isoformat() if o.created_at else None}  # fmt: skip


def _limit(v: int | None) -> str:
    return "-" if v is None else str(v)


def _keys_table(items: list[ApiKeyInfo], now: datetime | None) -> str:
    from .main import format_age, format_table  # main imports this module

    rows = [[k.id, k.name, k.role, ",".join(k.scopes) if k.scopes is not None else "*", k.prefix + "…",
             "revoked" if k.revoked_at else format_age(k.created_at, now)] for k in items]  # fmt: skip
    return format_table(("ID", "NAME", "ROLE", "SCOPES", "PREFIX", "CREATED"), rows)


def _usage_table(used: Quota, quota: Quota) -> str:
    from .main import format_table

    rows = [[f, str(getattr(used, f)), _limit(getattr(quota, f))] for f in _QUOTA_FIELDS]
    return format_table(("RESOURCE", "USED", "QUOTA"), rows)


def run(args: argparse.Namespace, sb: Sandburg, now: datetime | None = None) -> int:
    """Run ``sandburg key|org ACTION``; SDK errors propagate (main prints them)."""
    from .main import format_table

    if args.command_name == "key":
        act = args.key_action
        if act == "create":
            expires = datetime.now(UTC) + args.expires_in if args.expires_in else None
            k = sb.keys.create(args.name, args.role, args.scopes, args.org, expires)
            print_json(_key_json(k)) if args.json else print(k.key)
        elif act == "ls":
            items = sb.keys.list(args.org)
            print_json([_key_json(k) for k in items]) if args.json else print(_keys_table(items, now))
        elif act == "whoami":
            print_json(_key_json(sb.keys.current()))
        else:
            return delete_each(args.ids, lambda i: f"{sb.keys.revoke(i).id} revoked")
        return 0
    act = args.org_action
    if act == "create":
        print_json(_org_json(sb.organizations.create(args.name, parse_quota(args.quota))))
    elif act == "ls":
        orgs = sb.organizations.list()
        if args.json:
            print_json([_org_json(o) for o in orgs])
        else:
            rows = [[o.id, o.name] + [_limit(getattr(o.quota, f)) for f in _QUOTA_FIELDS] for o in orgs]
            print(format_table(("ID", "NAME") + tuple(f.upper() for f in _QUOTA_FIELDS), rows))
    elif act == "quota":
        print_json(_org_json(sb.organizations.set_quota(args.name, parse_quota(args.quota))))
    else:
        u = sb.organizations.usage(args.name)
        print(_usage_table(u.used, u.quota))
    return 0
