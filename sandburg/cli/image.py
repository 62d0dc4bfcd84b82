"""``sandburg image ACTION ...``: build, pull, import, list, inspect, delete images and read their build logs,
through the SDK's ``sb.images`` (docs/images.md).

``build`` turns its options into build steps in a fixed order: ``apt``, ``pip``, ``npm`` (one cached layer per
package manager), one ``files`` layer per ``--copy`` (a reproducible tarball uploaded as build context, so the
same files give a cache hit), every ``--run`` in one ``run`` layer, then the ``env`` and ``workdir`` settings.
``build -f sandburg.yaml`` builds the image ``sandburg up`` would, with ``up``'s own helpers, so both share
their cache. The build log is streamed to stdout while the server builds; a failed build raises the SDK's
:class:`~sandburg.ImageBuildFailedError`, which ``main`` prints as ``error: ... (IMAGE_BUILD_FAILED)`` (exit 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import posixpath
import sys
from typing import Any

from .._client import Sandburg
from .._images import ImageInfo
from ..specfile import load_spec
from . import up
from .common import delete_each, print_json
from .net import UsageError

__all__ = ["add_parsers", "format_bytes", "format_images", "format_source", "run"]

_HEADERS = ("NAME", "KIND", "STATE", "SIZE", "SOURCE")
_KINDS = ("image", "template", "state")


def _key_value(text: str) -> str:
    key, sep, _value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected K=V, got {text!r}")
    return text


def _copy(text: str) -> tuple[str, str]:
    # the last ":/" splits: a destination is absolute, and a local name with ":/" in it is rarer than one with ":"
    local, sep, dest = text.rpartition(":/")
    if not sep or not local:
        raise argparse.ArgumentTypeError(f"expected LOCAL:/ABSOLUTE/DEST, got {text!r}")
    return local, "/" + dest


def add_parsers(sub: Any) -> None:
    """Add ``image`` with its actions to the ``sandburg`` parser's subcommands."""
    p = sub.add_parser(
        "image",
        help="build, pull, import, list and delete images",
        description="Images the organization's sandboxes start from: built from steps (each a cached layer), "
        "pulled from an OCI registry, or imported from a tarball; plus the server's built-in images.",
    )
    acts = p.add_subparsers(dest="image_action", required=True, metavar="ACTION")

    a = acts.add_parser("ls", help="list images (built-in ones too)")
    a.add_argument("--kind", choices=_KINDS)
    a.add_argument("--json", action="store_true")

    a = acts.add_parser(
        "build",
        help="build an image from steps, or the image of a sandburg.yaml",
        description="Build NAME on --base. Steps run in this order whatever the order of the options: --apt, "
        "--pip, --npm, --copy, --run, then --env and --workdir; each filesystem step is a cached layer, so "
        "building the same steps again is quick. With -f, build the image 'sandburg up' makes of the file "
        "(NAME defaults to up/<spec name>).",
    )
    a.add_argument("name", nargs="?", metavar="NAME")
    a.add_argument("-f", "--file", metavar="FILE", help="a sandburg.yaml; no step options with it")
    a.add_argument("--base", metavar="IMAGE", help="default: debian-12; a registry reference is pulled")
    for kind in ("apt", "pip", "npm"):
        a.add_argument(f"--{kind}", action="append", default=[], metavar="PKG", help="repeatable")
    a.add_argument(
        "--copy",
        type=_copy,
        action="append",
        default=[],
        metavar="LOCAL:DEST",
        help="repeatable: a file or directory tree into the image (DEST/ keeps a file's name)",
    )
    a.add_argument(
        "--run", action="append", default=[], metavar="CMD", help="repeatable: a shell command line"
    )
    a.add_argument("--env", type=_key_value, action="append", default=[], metavar="K=V", help="repeatable")
    a.add_argument("--workdir", metavar="DIR")
    a.add_argument("--isolation", choices=["container", "gvisor"], default="container")
    a.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="DOMAIN",
        help="repeatable: extra egress for the build",
    )

    a = acts.add_parser("pull", help="pull an image from an OCI registry")
    a.add_argument("reference", metavar="REFERENCE", help="registry/repository:tag")
    a.add_argument("--name", help="default: the reference without its registry host")
    a.add_argument("--insecure", action="store_true", help="plain HTTP or unverified TLS registry")

    a = acts.add_parser("import", help="import an OCI-layout or docker-archive tarball")
    a.add_argument("file", metavar="FILE")
    a.add_argument("--name", required=True)

    a = acts.add_parser("rm", help="delete images (sandboxes made from them keep running)")
    a.add_argument("names", nargs="+", metavar="NAME")

    a = acts.add_parser("logs", help="print an image's build or pull log")
    a.add_argument("name", metavar="NAME")
    a.add_argument("-f", "--follow", action="store_true", help="until the build ends")

    a = acts.add_parser("inspect", help="print an image as JSON")
    a.add_argument("name", metavar="NAME")


# ------------------------------------------------------------------------------------------ formatting


def format_bytes(size: int | None) -> str:
    """``512`` → ``512B``, ``1536`` → ``1.5KiB``, ``4 << 30`` → ``4GiB``; None or 0 (unknown) → ``-``."""
    if not size or size <= 0:
        return "-"
    value, unit = float(size), "B"
    for next_unit in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, next_unit
    if unit == "B" or value == int(value):
        return f"{int(value)}{unit}"
    return f"{value:.1f}{unit}"


def format_source(info: ImageInfo) -> str:
    """Where the image comes from: ``built-in``, the pulled reference, the base it was built on, ..."""
    src = info.source
    if info.builtin:
        return "built-in"
    if src.get("pull"):
        return str(src["pull"])
    plan = src.get("plan")
    if isinstance(plan, dict) and plan.get("base"):
        return str(plan["base"])
    if src.get("imageName"):  # a template (Daytona snapshot) of an existing image
        return str(src["imageName"])
    if "import" in src:
        return "import"
    return "-"


def format_images(images: list[ImageInfo]) -> str:
    """The ``image ls`` table."""
    from .main import format_table  # main imports this module: a module-level import would be circular

    rows = [
        [
            i.name,
            i.kind,
            f"{i.state} ({i.error_code})" if i.state == "error" and i.error_code else i.state,
            format_bytes(i.size_bytes),
            format_source(i),
        ]
        for i in images
    ]
    return format_table(_HEADERS, rows)


def _show_log(chunk: str) -> None:
    sys.stdout.write(chunk)
    sys.stdout.flush()


# -------------------------------------------------------------------------------------------- commands


def _copy_steps(sb: Sandburg, copies: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """One ``files`` step per copy, with ``sandburg up``'s semantics and its reproducible tarballs."""
    steps: list[dict[str, Any]] = []
    for local, dest in copies:
        path = os.path.realpath(local)
        if os.path.isdir(path):
            target, data = dest, up._tar_dir(path)
        elif os.path.isfile(path):
            into = dest.endswith("/")
            target = dest if into else posixpath.dirname(dest) or "/"
            data = up._tar_files([(os.path.basename(path) if into else posixpath.basename(dest), path)])
        else:
            raise ValueError(f"--copy {local}: no such file or directory")
        digest = sb.images.upload_context(data)
        print(f"==> files: {local} -> {dest} ({len(data)} bytes of context)", flush=True)
        steps.append({"kind": "files", "args": [target, digest]})
    return steps


def _build(args: argparse.Namespace, sb: Sandburg) -> int:
    allow: list[str] = list(args.allow)
    if args.file:
        given = [
            f"--{o}"
            for o in ("base", "apt", "pip", "npm", "copy", "run", "env", "workdir")
            if getattr(args, o)
        ]
        if given:
            raise UsageError(f"image build: -f builds the file's steps; it cannot go with {', '.join(given)}")
        spec = load_spec(args.file)
        name = args.name or f"up/{spec.name}"
        base = up._base_image(sb, spec.image or "debian-12")
        steps = up._steps(sb, spec, os.path.dirname(os.path.abspath(args.file)))
        allow = [*up._allow(spec), *allow]
    else:
        if not args.name:
            raise UsageError("image build: give NAME (or -f sandburg.yaml)")
        name, base = args.name, args.base or "debian-12"
        steps = [
            {"kind": kind, "args": getattr(args, kind)}
            for kind in ("apt", "pip", "npm")
            if getattr(args, kind)
        ]
        steps += _copy_steps(sb, args.copy)
        if args.run:
            steps.append({"kind": "run", "args": args.run})
        if args.env:
            steps.append({"kind": "env", "args": args.env})
        if args.workdir:
            steps.append({"kind": "workdir", "args": [args.workdir]})
    info = sb.images.build(name, steps, base=base, isolation=args.isolation, allow=allow, on_log=_show_log)
    print(f"built {info.name}")
    return 0


def _follow_log(sb: Sandburg, name: str, follow: bool) -> int:
    try:
        for chunk in sb.images.logs(name, follow=follow):
            _show_log(chunk)
    except KeyboardInterrupt:
        if not follow:
            raise
    return 0  # Ctrl-C is how one stops following: not an error


def _rm(sb: Sandburg, names: list[str]) -> int:
    return delete_each(names, sb.images.delete)


def run(args: argparse.Namespace, sb: Sandburg) -> int:
    """Run ``sandburg image ACTION``; errors propagate as the SDK's exceptions (main prints them), usage
    problems as :class:`~sandburg.cli.net.UsageError`."""
    act = args.image_action
    if act == "ls":
        images = sb.images.list(kind=args.kind)
        if args.json:
            print_json([dataclasses.asdict(i) for i in images])
        else:
            print(format_images(images))
        return 0
    if act == "build":
        return _build(args, sb)
    if act == "pull":
        info = sb.images.pull(args.reference, name=args.name, insecure=args.insecure, on_log=_show_log)
        print(f"pulled {info.name}")
        return 0
    if act == "import":
        info = sb.images.import_archive(args.file, name=args.name, on_log=_show_log)
        print(f"imported {info.name}")
        return 0
    if act == "rm":
        return _rm(sb, args.names)
    if act == "logs":
        return _follow_log(sb, args.name, args.follow)
    print_json(dataclasses.asdict(sb.images.get(args.name)))
    return 0
