"""``sandburg up [-f FILE]`` and ``sandburg down [-f FILE]``: make the sandbox a ``sandburg.yaml`` describes.

Design: the sandbox is found by the spec's ``name``; its ``sandburg.io/spec`` label holds the
:meth:`Spec.digest <sandburg.specfile.Spec.digest>` it was made from. ``up`` on a started sandbox with the same
digest does nothing (one GET, plus one per preview URL). Otherwise it builds the image ``up/<name>`` from the
spec (docs/images.md: ``packages`` apt/pip/npm, ``files``, ``setup``, ``env``, each a cached layer, so only what
changed is built again), then replaces the sandbox by a new one from that image. There is no in-place update: a
sandbox made from a spec is always one that a fresh build would give.

Safety: the old sandbox is deleted only after the build succeeded; a failed step leaves it as it was (and the
build sandbox is removed by the server). A sandbox of that name not made by ``up`` (no ``sandburg.io/up``
label) is never deleted or replaced. ``volumes`` that do not exist yet are created before the sandbox (with
``size``); existing ones are mounted as they are, and neither ``up`` nor ``down`` ever deletes one: their data
outlives every sandbox made from the spec.

Exit codes: 0 done, 1 a server error or a failed build step, 2 a bad spec (:class:`SpecError`, reported by
``main``).
"""

from __future__ import annotations

import argparse
import io
import os
import posixpath
import stat
import sys
import tarfile
from typing import Any, Final

from .._client import Sandbox, Sandburg
from .._errors import ImageBuildFailedError, ImageNotFoundError, SandboxNotFoundError, VolumeNotFoundError
from .._images import default_name, is_local
from ..specfile import PENDING_FIELDS, Spec, SpecError, load_spec, regular_files

__all__ = ["SPEC_LABEL", "UP_LABEL", "add_parsers", "run"]

SPEC_LABEL: Final = "sandburg.io/spec"
UP_LABEL: Final = "sandburg.io/up"


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


def _ensure_volumes(sb: Sandburg, spec: Spec) -> None:
    """Create the spec's volumes that do not exist yet; existing ones are used as they are (their data is what
    a volume is for: `up` never resizes, empties or deletes one, and `down` leaves them)."""
    for v in spec.volumes:
        try:
            sb.volumes.get(v.name)
        except VolumeNotFoundError:
            size = f" ({v.size_mib} MiB)" if v.size_mib else ""
            _say(f"==> create volume {v.name}{size}")
            sb.volumes.create(v.name, size=f"{v.size_mib}MiB" if v.size_mib else None)


def _up(sb: Sandburg, spec: Spec, path: str) -> int:
    _refuse_pending(spec, path)
    base_dir = os.path.dirname(os.path.abspath(path))
    digest = spec.digest(base_dir)
    box = _find(sb, spec.name)
    if box is not None and box.state == "started" and box.labels.get(SPEC_LABEL) == digest:
        _say(f"{spec.name} is up to date")
        _access(box, spec)
        return 0
    base = _base_image(sb, spec.image or "debian-12")
    steps = _steps(sb, spec, base_dir)
    image = f"up/{spec.name}"
    _say(f"==> build {image} from {base} ({len(steps)} steps; unchanged steps are cached)")
    try:
        sb.images.build(image, steps, base=base, allow=_allow(spec), on_log=_show_log)
    except ImageBuildFailedError as exc:
        kept = f"; {spec.name} ({box.id}) is left as it was" if box is not None else ""
        print(f"error: {exc.message}{kept}", file=sys.stderr)
        return 1
    if box is not None:
        why = "spec changed" if box.labels.get(SPEC_LABEL) != digest else f"sandbox is {box.state}"
        _say(f"==> {why}: replacing {spec.name} (deleting {box.id})")
        box.delete()
    _ensure_volumes(sb, spec)
    _say(f"==> create {spec.name}")
    box = sb.create(
        name=spec.name,
        image=image,
        isolation=spec.isolation,
        cpu=spec.cpu,
        memory=None if spec.memory_mib is None else f"{spec.memory_mib}MiB",
        disk=None if spec.disk_mib is None else f"{spec.disk_mib}MiB",
        env=spec.env or None,
        secrets=spec.secrets or None,
        labels={UP_LABEL: "1", SPEC_LABEL: digest},
        network=spec.network,
        volumes=[
            {
                "name": v.name,
                "mount": v.mount,
                "read_only": v.read_only,
                **({"subpath": v.subpath} if v.subpath else {}),
            }
            for v in spec.volumes
        ]
        or None,
    )
    _say(f"==> ready: {spec.name}")
    _access(box, spec)
    return 0


def _show_log(chunk: str) -> None:
    sys.stdout.write(chunk)
    sys.stdout.flush()


def _allow(spec: Spec) -> list[str]:
    """The build may reach what the sandbox may (the server adds the package sources)."""
    if isinstance(spec.network, dict):
        return list(spec.network.get("allow", []))
    return []


def _base_image(sb: Sandburg, image: str) -> str:
    """A name the server knows as is; an OCI reference (`host/repo:tag`) is pulled once, then reused."""
    if "/" not in image:
        return image
    name = default_name(image)
    try:
        info = sb.images.get(name)
        if info.state == "active":
            return name
    except ImageNotFoundError:
        pass
    _say(f"==> pull {image}")
    sb.images.pull(image, name=name, insecure=is_local(image), on_log=_show_log)
    return name


def _steps(sb: Sandburg, spec: Spec, base_dir: str) -> list[dict[str, Any]]:
    """The build steps, in the order of docs/images.md: apt, pip, npm, files, setup, env."""
    steps: list[dict[str, Any]] = []
    for kind in ("apt", "pip", "npm"):
        names = getattr(spec.packages, kind)
        if names:
            steps.append({"kind": kind, "args": list(names)})
    for copy in spec.files:
        local = os.path.join(base_dir, copy.source)
        if os.path.isdir(local):
            dest, data = copy.target, _tar_dir(local)
        else:
            dest = copy.target if copy.target.endswith("/") else posixpath.dirname(copy.target) or "/"
            name = os.path.basename(local) if copy.target.endswith("/") else posixpath.basename(copy.target)
            data = _tar_files([(name, local)])
        digest = sb.images.upload_context(data)
        _say(f"==> files: {copy.source} -> {copy.target} ({len(data)} bytes of context)")
        steps.append({"kind": "files", "args": [dest, digest]})
    if spec.setup:
        steps.append({"kind": "run", "args": list(spec.setup)})
    if spec.env:
        steps.append({"kind": "env", "args": [f"{k}={v}" for k, v in sorted(spec.env.items())]})
    return steps


def _tar_dir(root: str) -> bytes:
    return _tar_files(regular_files(root))  # symlinks are skipped, as `sandburg cp` does


def _tar_files(files: list[tuple[str, str]]) -> bytes:
    """A reproducible tar (sorted, fixed owner and mtime): the same files give the same digest, so a cache hit."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arc, path in files:
            info = tarfile.TarInfo(arc)
            st = os.lstat(path)
            info.size, info.mode, info.mtime = st.st_size, stat.S_IMODE(st.st_mode), 0
            with open(path, "rb") as fh:
                tar.addfile(info, fh)
    return buf.getvalue()


def _access(box: Sandbox, spec: Spec) -> None:
    _say(f"id:    {box.id}")
    _say(f"name:  {spec.name}")
    _say(f"shell: sandburg shell {spec.name}")
    for port in spec.ports:
        preview = box.preview_url(port)
        _say(f"port {port}: {preview.url}")
        header = next(iter(preview.headers.items()))
        _say(f"    curl -H '{header[0]}: {header[1]}' {preview.url}")
