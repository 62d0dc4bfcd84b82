"""``sandburg`` — manage sandboxes and the local server from the shell.

Every sandbox command goes through the public SDK (:class:`sandburg.Sandburg`); ``sandburg server ...``
imports the server lazily, so the client-only install works without it. Errors print as
``error: <message> (<code>)`` on stderr and exit 1; usage errors exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from .._client import Sandburg
from .._core import parse_size_mib
from .._errors import ExecTimeoutError, SandburgError
from .._models import SandboxInfo
from .._version import __version__
from ..specfile import SpecError
from . import audit as audit_cli
from . import git as git_cli
from . import image as image_cli
from . import net as net_cli
from . import secret as secret_cli
from . import snapshot as snapshot_cli
from . import tenant as tenant_cli
from . import up as up_cli
from . import volume as volume_cli
from .common import delete_each, print_error, print_json
from .cp import copy, split_location

__all__ = ["ClientFactory", "build_parser", "format_age", "format_mib", "format_table", "main"]

ClientFactory = Callable[[str | None], Sandburg]
"""Makes the SDK client from the ``--api-url`` option (None: the SDK's own discovery)."""

_TABLE_HEADERS = ("ID", "NAME", "STATE", "ISOLATION", "IMAGE", "CPU", "MEM", "AGE")


# ------------------------------------------------------------------------------------------ formatting


def format_mib(mib: int) -> str:
    """``4096`` → ``4GiB``, ``1536`` → ``1.5GiB``, ``512`` → ``512MiB``; 0 (unknown) → ``-``."""
    if mib <= 0:
        return "-"
    if mib < 1024:
        return f"{mib}MiB"
    return f"{mib // 1024}GiB" if mib % 1024 == 0 else f"{mib / 1024:.1f}GiB"


def format_age(created_at: datetime | None, now: datetime | None = None) -> str:
    """How long ago ``created_at`` was, docker-style: ``42s``, ``5m``, ``3h``, ``12d``; unknown → ``-``."""
    if created_at is None:
        return "-"
    if created_at.tzinfo is None:  # the API speaks UTC; don't let a naive stamp crash the subtraction
        created_at = created_at.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - created_at).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, without trailing blanks."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
    return "\n".join(lines)


def _state(box: SandboxInfo) -> str:
    return f"{box.state} ({box.error_reason})" if box.error_reason else box.state


def _row(box: SandboxInfo, now: datetime | None) -> list[str]:
    cpu = str(box.cpu) if box.cpu else "-"
    mem = format_mib(box.memory_mib)
    return [
        box.id,
        box.name,
        _state(box),
        box.isolation,
        box.image,
        cpu,
        mem,
        format_age(box.created_at, now),
    ]


def _pairs(values: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items())) or "-"


def _network(box: SandboxInfo) -> str:
    policy = box.network_policy
    if policy is None:
        return "-"
    lists = "; ".join(
        f"{name} {', '.join(entries)}"
        for name, entries in (("allow", policy.allow), ("deny", policy.deny))
        if entries
    )
    return f"{policy.mode} ({lists})" if lists else policy.mode


def _details(box: SandboxInfo, now: datetime | None) -> str:
    created = box.created_at.isoformat() if box.created_at else "-"
    fields = [
        ("id", box.id),
        ("name", box.name),
        ("state", _state(box)),
        ("isolation", box.isolation),
        ("image", box.image),
        ("cpu", str(box.cpu)),
        ("memory", format_mib(box.memory_mib)),
        ("disk", format_mib(box.disk_mib)),
        ("labels", _pairs(box.labels)),
        ("env", _pairs(box.env)),
        ("network", _network(box)),
        ("created", f"{created} ({format_age(box.created_at, now)} ago)"),
    ]
    return "\n".join(f"{key + ':':<11}{value or '-'}" for key, value in fields)


# ---------------------------------------------------------------------------------------------- parser


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _secret_ref(text: str) -> tuple[str, str]:
    env, sep, name = text.partition("=")
    if sep and not (env and name):
        raise argparse.ArgumentTypeError(f"expected NAME or ENV=NAME, got {text!r}")
    return (env, name) if sep else (text, text)


def _size(text: str) -> str:
    try:
        return f"{parse_size_mib(text)}MiB"
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sandburg`` command (also the source of ``--help``)."""
    parser = argparse.ArgumentParser(prog="sandburg", description="Self-hosted sandboxes for AI agents.")
    parser.add_argument(
        "--api-url", help="API base URL (default: $SANDBURG_API_URL, credentials.json, local)"
    )
    parser.add_argument("--version", action="version", version=f"sandburg {__version__}")
    sub = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")

    p = sub.add_parser("create", help="create a sandbox and print its id")
    p.add_argument("--name")
    p.add_argument("--image", help="e.g. debian-12 (default), busybox")
    p.add_argument("--isolation", choices=["gvisor", "container"])
    p.add_argument("--cpu", type=_positive_int, help="vCPUs")
    p.add_argument("--memory", type=_size, help="e.g. 512MiB, 4GiB (a bare number is GiB)")
    p.add_argument("--disk", type=_size, help="e.g. 10GiB")
    p.add_argument("--env", type=_key_value, action="append", default=[], metavar="K=V")
    p.add_argument("--label", type=_key_value, action="append", default=[], metavar="K=V")
    p.add_argument(
        "--secret",
        type=_secret_ref,
        action="append",
        default=[],
        metavar="NAME|ENV=NAME",
        help="repeatable: a secret whose value every command gets as env var NAME (or ENV)",
    )
    p.add_argument(
        "--volume",
        type=volume_cli.mount_arg,
        action="append",
        default=[],
        metavar="NAME:/PATH[:ro]",
        help="repeatable: mount a volume (sandburg volume create) at /PATH, read-only with :ro",
    )
    p.add_argument(
        "--network", choices=["none", "all"], help="no egress, or any (default: the server's policy)"
    )
    net_cli.add_entry_options(p)
    p.add_argument("--json", action="store_true", help="print the sandbox as JSON")

    p = sub.add_parser("ls", help="list sandboxes")
    p.add_argument("--label", type=_key_value, action="append", default=[], metavar="K=V")
    p.add_argument("--state", action="append", default=[], help="repeatable: any of them matches")
    p.add_argument("--limit", type=_positive_int)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "exec",
        help="run a command in a sandbox",
        usage="sandburg exec [-h] [--cwd D] [--env K=V] [--timeout S] ID_OR_NAME -- COMMAND...",
        description="Run COMMAND in the sandbox and exit with its exit code. A single COMMAND word is a shell "
        "command line (sandburg exec box -- 'echo $HOME | wc -c'); several words are quoted and joined.",
    )
    p.add_argument("sandbox", metavar="ID_OR_NAME")
    p.add_argument("--cwd", metavar="D")
    p.add_argument("--env", type=_key_value, action="append", default=[], metavar="K=V")
    p.add_argument(
        "--timeout", type=_positive_float, metavar="S", help="seconds before the command is killed"
    )
    p.add_argument("words", nargs="*", metavar="COMMAND", help=argparse.SUPPRESS)

    p = sub.add_parser(
        "cp",
        help="copy files or directories between this machine and a sandbox",
        usage="sandburg cp [-h] SRC DST",
        description="Copy a file or a directory tree: sandburg cp LOCAL ID_OR_NAME:PATH uploads, sandburg cp "
        "ID_OR_NAME:PATH LOCAL downloads. A directory copied onto an existing directory goes inside it (SRC/. "
        "copies its contents); permission bits are kept, symlinks are skipped.",
    )
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DST")

    p = sub.add_parser("rm", help="delete sandboxes")
    p.add_argument("sandboxes", nargs="+", metavar="ID_OR_NAME")
    for name, text in (
        ("stop", "stop a sandbox (files are kept)"),
        ("start", "start a stopped sandbox, or resume a paused one"),
        ("pause", "keep a sandbox's processes without running them (gvisor: on disk); start resumes"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("sandbox", metavar="ID_OR_NAME")
    p = sub.add_parser("shell", help="open an interactive terminal in a sandbox")
    p.add_argument("sandbox", help="id or name")
    p.add_argument("--cwd", help="working directory (default /workspace)")

    git_cli.add_parser(sub)
    audit_cli.add_parsers(sub)
    net_cli.add_parsers(sub)
    up_cli.add_parsers(sub)
    image_cli.add_parsers(sub)
    snapshot_cli.add_parsers(sub)
    secret_cli.add_parsers(sub)
    volume_cli.add_parsers(sub)
    tenant_cli.add_parsers(sub)

    p = sub.add_parser("info", help="show a sandbox")
    p.add_argument("sandbox", metavar="ID_OR_NAME")
    p.add_argument("--json", action="store_true")

    server = sub.add_parser("server", help="run the sandburg server on this host")
    actions = server.add_subparsers(dest="server_action", required=True, metavar="ACTION")
    for name, text in (
        ("start", "start the server"),
        ("stop", "stop it"),
        ("status", "show whether it runs"),
    ):
        p = actions.add_parser(name, help=text)
        p.add_argument("--data-dir", help="default: $SANDBURG_DATA_DIR or /var/lib/sandburg")
        if name == "start":
            p.add_argument("--host")
            p.add_argument("--port", type=_positive_int)
            p.add_argument("--foreground", action="store_true", help="don't daemonize")
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    # Everything after the first "--" of `exec` is the command, options included, which argparse
    # alone can't express while still allowing options after the sandbox name.
    if "exec" in argv and "--" in argv[argv.index("exec") :]:
        cut = argv.index("--", argv.index("exec"))
        args = parser.parse_args(argv[:cut])
        if args.command_name == "exec":
            if args.words:
                parser.error("exec: give the command after '--' only")
            args.words = argv[cut + 1 :]
            return args
    return parser.parse_args(argv)


# -------------------------------------------------------------------------------------------- commands


def _run(args: argparse.Namespace, sb: Sandburg, now: datetime | None) -> int:
    cmd = args.command_name
    if cmd == "create":
        box = sb.create(
            name=args.name,
            image=args.image,
            isolation=args.isolation,
            cpu=args.cpu,
            memory=args.memory,
            disk=args.disk,
            env=dict(args.env) or None,
            labels=dict(args.label) or None,
            network=_create_network(args),
            secrets=dict(args.secret) or None,
            volumes=args.volume or None,
        )
        if args.json:
            print_json(box.raw)
        else:
            print(box.id)
    elif cmd == "ls":
        boxes = sb.list(labels=dict(args.label) or None, state=args.state or None, limit=args.limit)
        if args.json:
            print_json([b.raw for b in boxes])
        else:
            print(format_table(_TABLE_HEADERS, [_row(b, now) for b in boxes]))
    elif cmd == "exec":
        return _exec(args, sb)
    elif cmd == "cp":
        if (split_location(args.src)[0] is None) == (split_location(args.dst)[0] is None):
            raise _Usage(
                "cp: exactly one of SRC and DST must be ID_OR_NAME:PATH (a local path with ':' needs './')"
            )
        stats = copy(sb, args.src, args.dst)
        skipped = f", {stats.skipped} skipped" if stats.skipped else ""
        print(
            f"copied {stats.files} files and {stats.directories} directories ({stats.bytes} bytes){skipped}"
        )
    elif cmd == "git":
        return git_cli.run(args, sb)
    elif cmd == "audit":
        return audit_cli.run(args, sb)
    elif cmd in ("net", "preview"):
        return net_cli.run(args, sb)
    elif cmd in ("up", "down"):
        return up_cli.run(args, sb)
    elif cmd == "image":
        return image_cli.run(args, sb)
    elif cmd == "snapshot":
        return snapshot_cli.run(args, sb, now)
    elif cmd == "secret":
        return secret_cli.run(args, sb, now)
    elif cmd == "volume":
        return volume_cli.run(args, sb, now)
    elif cmd in ("key", "org"):
        return tenant_cli.run(args, sb, now)
    elif cmd == "shell":
        from . import shell

        return shell.run(sb, args.sandbox, args.cwd)
    elif cmd == "rm":

        def rm(ref: str) -> str:
            box = sb.get(ref)
            box.delete()
            return box.id

        return delete_each(args.sandboxes, rm)
    elif cmd in ("start", "stop", "pause"):
        box = sb.get(args.sandbox)
        if cmd == "start":
            box.start()
        elif cmd == "pause":
            box.pause()
        else:
            box.stop()
        print(box.id)
    elif cmd == "info":
        box = sb.get(args.sandbox)
        if args.json:
            print_json(box.raw)
        else:
            print(_details(box, now))
    return 0


def _create_network(args: argparse.Namespace) -> str | dict[str, list[str]] | None:
    if args.allow or args.deny:
        if args.network:
            raise _Usage(
                f"create: --allow and --deny make a list policy; they cannot go with --network {args.network}"
            )
        return {"allow": args.allow, "deny": args.deny}
    return str(args.network) if args.network else None


def _exec(args: argparse.Namespace, sb: Sandburg) -> int:
    words: list[str] = args.words
    if not words:
        raise _Usage("exec: missing the command (sandburg exec ID_OR_NAME -- COMMAND...)")
    command = words[0] if len(words) == 1 else shlex.join(words)
    box = sb.get(args.sandbox)
    try:
        result = box.process.exec(command, cwd=args.cwd, env=dict(args.env) or None, timeout=args.timeout)
    except ExecTimeoutError as exc:  # show what the command got done before it was killed
        _write(exc.stdout, exc.stderr)
        raise
    _write(result.stdout, result.stderr)
    if result.truncated:
        print("sandburg: warning: the output was truncated by the server", file=sys.stderr, flush=True)
    # a negative code means "killed by signal N": report it the way a shell would
    return 128 - result.exit_code if result.exit_code < 0 else result.exit_code


def _write(stdout: str, stderr: str) -> None:
    sys.stdout.write(stdout)
    sys.stdout.flush()
    sys.stderr.write(stderr)
    sys.stderr.flush()


def _server(args: argparse.Namespace) -> int:
    try:
        daemon = importlib.import_module("sandburg.server.daemon")
    except ImportError as exc:
        print(
            f"error: the sandburg server is not available ({exc}); install it with: "
            "pip install 'sandburg[server]' (SERVER_NOT_INSTALLED)",
            file=sys.stderr,
        )
        return 1
    if args.server_action == "start":
        return int(daemon.start(args.data_dir, args.host, args.port, args.foreground))
    if args.server_action == "stop":
        return int(daemon.stop(args.data_dir))
    return int(daemon.status(args.data_dir))


class _Usage(Exception):
    """A usage problem found after parsing; exits 2 like argparse's own."""


def _default_factory(api_url: str | None) -> Sandburg:
    return Sandburg(api_url=api_url)


def main(
    argv: Sequence[str] | None = None,
    *,
    client_factory: ClientFactory | None = None,
    now: datetime | None = None,
) -> int:
    """Run the ``sandburg`` command and return its exit status.

    ``client_factory`` builds the SDK client (tests pass one over ``httpx.MockTransport``); ``now`` fixes
    the clock used for the AGE column.
    """
    parser = build_parser()
    try:
        args = _parse(parser, list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    try:
        if args.command_name == "server":
            return _server(args)
        if args.command_name == "audit" and getattr(args, "data_dir", None):  # offline: no server, no key
            return audit_cli.verify_data_dir(args.data_dir)
        with (client_factory or _default_factory)(args.api_url) as sb:
            return _run(args, sb, now)
    except (_Usage, net_cli.UsageError) as exc:
        parser.print_usage(sys.stderr)
        print(f"sandburg: error: {exc}", file=sys.stderr)
        return 2
    except SpecError as exc:  # a bad sandburg.yaml (sandburg up / down)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SandburgError as exc:
        print_error(exc)
        return 1
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
