"""``sandburg up [-f FILE]`` and ``sandburg down [-f FILE]``: make the sandbox a ``sandburg.yaml`` describes.

Design: the sandbox is found by the spec's ``name``; its ``sandburg.io/spec`` label holds the
:meth:`Spec.digest <sandburg.specfile.Spec.digest>` it was built from. ``up`` on a started sandbox with the same
digest does nothing (one GET, plus one per preview URL); any difference (spec, a copied file, or the sandbox
not running) deletes it and builds it again: create, copy ``files``, run ``setup``. There is no in-place
update: a sandbox built from a spec is always one that a fresh build would give.

Safety: the digest label is set only once every step succeeded, so a build interrupted half-way never looks
up to date; a failed step deletes the sandbox. A sandbox of that name not made by ``up`` (no
``sandburg.io/up`` label) is never deleted or replaced. Spec fields not supported yet (``packages``,
``volumes``, ``secrets``) are refused before anything is created or deleted.

Exit codes: 0 done, 1 a server error or a failed setup step, 2 a bad spec (:class:`SpecError`, reported by
``main``).
"""

from __future__ import annotations

import argparse
import os
import posixpath
import sys
from typing import Any, Final

from .._client import Sandbox, Sandburg
from .._errors import SandboxNotFoundError, SandburgError
from ..specfile import PENDING_FIELDS, Spec, SpecError, load_spec
from .cp import upload

__all__ = ["SPEC_LABEL", "UP_LABEL", "add_parsers", "run"]

SPEC_LABEL: Final = "sandburg.io/spec"
UP_LABEL: Final = "sandburg.io/up"
_PENDING_LABEL: Final = "building"


def add_parsers(sub: Any) -> None:
    """Add ``up`` and ``down`` to the ``sandburg`` parser's subcommands."""
    p = sub.add_parser(
        "up",
        help="create or update the sandbox described by a sandburg.yaml",
        description="Make the sandbox that FILE describes: do nothing if it is running and up to date, "
        "else (re)create it, copy its files and run its setup commands.",
    )
    p.add_argument("-f", "--file", default="sandburg.yaml", metavar="FILE", help="default: ./sandburg.yaml")
    p = sub.add_parser("down", help="delete the sandbox described by a sandburg.yaml")
    p.add_argument("-f", "--file", default="sandburg.yaml", metavar="FILE", help="default: ./sandburg.yaml")


def run(args: argparse.Namespace, sb: Sandburg) -> int:
    """Run ``up`` or ``down`` (``args.command_name``)."""
    spec = load_spec(args.file)
    if args.command_name == "down":
        return _down(sb, spec)
    return _up(sb, spec, args.file)


def _say(text: str) -> None:
    print(text, flush=True)


def _find(sb: Sandburg, name: str) -> Sandbox | None:
    try:
        box = sb.get(name)
    except SandboxNotFoundError:
        return None
    if box.name != name:  # the name happened to be another sandbox's id
        return None
    if box.labels.get(UP_LABEL) != "1":
        raise ValueError(  # main prints it and exits 1
            f"a sandbox named {name!r} ({box.id}) exists but was not made by 'sandburg up'; "
            f"remove it with 'sandburg rm {name}' or change the spec's name"
        )
    return box


def _down(sb: Sandburg, spec: Spec) -> int:
    box = _find(sb, spec.name)
    if box is None:
        _say(f"nothing to remove: no sandbox named {spec.name}")
        return 0
    box.delete()
    _say(f"removed {spec.name} ({box.id})")
    return 0


def _refuse_pending(spec: Spec, path: str) -> None:
    for key, issue in PENDING_FIELDS.items():
        if key in spec.pending:
            line = spec.lines.get(key, 1)
            raise SpecError(f"{path}:{line}: {key}: not supported yet by 'sandburg up' (see {issue})")


def _up(sb: Sandburg, spec: Spec, path: str) -> int:
    _refuse_pending(spec, path)
    base_dir = os.path.dirname(os.path.abspath(path))
    digest = spec.digest(base_dir)
    box = _find(sb, spec.name)
    if box is not None:
        if box.state == "started" and box.labels.get(SPEC_LABEL) == digest:
            _say(f"{spec.name} is up to date")
            _access(box, spec)
            return 0
        why = "spec changed" if box.labels.get(SPEC_LABEL) != digest else f"sandbox is {box.state}"
        _say(f"==> {why}: recreating {spec.name} (deleting {box.id})")
        box.delete()
    _say(f"==> create {spec.name}")
    box = sb.create(
        name=spec.name,
        image=spec.image,
        isolation=spec.isolation,
        cpu=spec.cpu,
        memory=None if spec.memory_mib is None else f"{spec.memory_mib}MiB",
        disk=None if spec.disk_mib is None else f"{spec.disk_mib}MiB",
        env=spec.env or None,
        labels={UP_LABEL: "1", SPEC_LABEL: _PENDING_LABEL},
        network=spec.network,
    )
    try:
        _copy_files(sb, box, spec, base_dir)
        failed = _setup(box, spec)
        if failed is None:
            box.set_labels({UP_LABEL: "1", SPEC_LABEL: digest})
    except BaseException:
        _discard(box)
        raise
    if failed is not None:
        _discard(box)
        print(f"error: setup step {failed} failed; the sandbox was deleted", file=sys.stderr)
        return 1
    _say(f"==> ready: {spec.name}")
    _access(box, spec)
    return 0


def _discard(box: Sandbox) -> None:
    try:
        box.delete()
    except SandburgError as exc:  # report, but keep the original failure as the one that counts
        print(f"error: could not delete the half-made sandbox {box.id}: {exc}", file=sys.stderr)


def _copy_files(sb: Sandburg, box: Sandbox, spec: Spec, base_dir: str) -> None:
    for copy in spec.files:
        _say(f"==> files: {copy.source} -> {copy.target}")
        local = os.path.join(base_dir, copy.source)
        if os.path.isdir(local):
            target = copy.target.rstrip("/") or "/"
            box.fs.mkdir(target)
            stats = upload(sb, os.path.join(local, "."), box.id, target)  # SRC/. copies the contents
        else:
            parent = copy.target if copy.target.endswith("/") else posixpath.dirname(copy.target)
            box.fs.mkdir(parent.rstrip("/") or "/")
            stats = upload(sb, local, box.id, copy.target)
        _say(f"    {stats.files} files, {stats.bytes} bytes")


def _setup(box: Sandbox, spec: Spec) -> str | None:
    """Run the setup commands in order; the failing one as ``[i/n] cmd (exit N)``, or None if all passed."""
    n = len(spec.setup)
    for i, cmd in enumerate(spec.setup, 1):
        _say(f"==> setup [{i}/{n}]: {cmd}")
        result = box.process.exec(cmd)  # no timeout: the server's own limit applies
        sys.stdout.write(result.stdout)
        sys.stdout.flush()
        sys.stderr.write(result.stderr)
        sys.stderr.flush()
        if result.exit_code != 0:
            return f"[{i}/{n}] {cmd!r} (exit {result.exit_code})"
    return None


def _access(box: Sandbox, spec: Spec) -> None:
    _say(f"id:    {box.id}")
    _say(f"name:  {spec.name}")
    _say(f"shell: sandburg shell {spec.name}")
    for port in spec.ports:
        preview = box.preview_url(port)
        _say(f"port {port}: {preview.url}")
        header = next(iter(preview.headers.items()))
        _say(f"    curl -H '{header[0]}: {header[1]}' {preview.url}")
