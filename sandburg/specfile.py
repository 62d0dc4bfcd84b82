"""``sandburg.yaml``: the declarative description of one sandbox, read by ``sandburg up`` / ``sandburg down``.

Design: the YAML is *composed* (``yaml.compose`` with the safe loader), not loaded, so every node keeps its
start mark and each error can say ``path:line: field: what is wrong``. The node tree is then validated field
by field into a frozen :class:`Spec` of plain values; scalars are built by the safe constructor, so YAML's
own typing (``8000`` is an int, ``true`` a bool) applies and is then checked. Nothing here talks to a server.

``files`` sources are relative to the directory holding the YAML and must stay inside it (no absolute paths,
no ``..`` or symlink escapes): a spec checked into a repository cannot copy the rest of the machine.
``packages`` (apt / pip / npm names, each checked against its ecosystem's name syntax, no options) become build
steps; ``secrets`` names secrets of the organization (docs/secrets.md); ``volumes`` names persistent volumes to
mount (docs/volumes.md), made by ``up`` when missing and never deleted by it.

:meth:`Spec.digest` is what ``up`` compares with the ``sandburg.io/spec`` label to decide whether the running
sandbox is up to date: a sha256 over the normalized spec (canonical JSON, so key order and formatting do not
matter) and over the path, permission bits and bytes of every local file that ``files`` copies.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import stat
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import yaml

from ._sizes import parse_size_mib

__all__ = ["PENDING_FIELDS", "FileCopy", "Packages", "Spec", "SpecError", "VolumeUse", "load_spec"]

NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_ENV_KEY_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PENDING_FIELDS: Final[dict[str, str]] = {}
"""Fields the parser accepts but ``sandburg up`` refuses for now, with the work item that will add them."""
_FIELDS: Final = (
    *"name image isolation resources packages env secrets files setup ports network volumes".split(),
    *PENDING_FIELDS,
)
# what each package manager accepts as one package (a name, optionally a version constraint), and nothing else:
# an entry can never smuggle an option (`--index-url=...`) or a second command into the build
PACKAGE_RES: Final = {
    "apt": re.compile(r"^[a-z0-9][a-z0-9+.-]*(:[a-z0-9]+)?(=[A-Za-z0-9.+:~-]+)?$"),
    "pip": re.compile(
        r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?(\[[A-Za-z0-9._, -]+\])?"
        r"\s*((===|==|!=|<=|>=|~=|<|>)\s*[A-Za-z0-9.*+!_-]+\s*,?\s*)*$"
    ),
    "npm": re.compile(r"^(@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*(@[A-Za-z0-9.^~<>=*| -]+)?$"),
}


class SpecError(ValueError):
    """A ``sandburg.yaml`` that cannot be used; the message is ``path:line: field: what is wrong``."""


@dataclass(frozen=True)
class FileCopy:
    """One ``files`` entry: copy ``source`` (relative to the YAML's directory) to ``target`` in the sandbox."""

    target: str
    source: str


@dataclass(frozen=True)
class VolumeUse:
    """One ``volumes`` entry: mount the organization's volume ``name`` at ``mount``; ``size_mib`` is its size if
    ``up`` has to create it (None: the server's default)."""

    name: str
    mount: str
    read_only: bool = False
    subpath: str | None = None
    size_mib: int | None = None


@dataclass(frozen=True)
class Packages:
    """``packages``: installed in this order, each list one cached build layer (docs/images.md)."""

    apt: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()
    npm: tuple[str, ...] = ()


@dataclass(frozen=True)
class Spec:
    """A validated ``sandburg.yaml``. Sizes are whole MiB; None means "the server's default"."""

    name: str
    image: str | None = None
    isolation: str | None = None
    cpu: int | None = None
    memory_mib: int | None = None
    disk_mib: int | None = None
    packages: Packages = field(default_factory=Packages)
    env: dict[str, str] = field(default_factory=dict)
    files: tuple[FileCopy, ...] = ()
    setup: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    network: str | dict[str, list[str]] | None = None
    secrets: dict[str, str] = field(default_factory=dict)
    """env name -> secret name (docs/secrets.md): ``[NAME]`` means ``{NAME: NAME}``."""
    volumes: tuple[VolumeUse, ...] = ()
    pending: dict[str, Any] = field(default_factory=dict)
    """Fields of PENDING_FIELDS as written (raw YAML values), when present."""
    lines: dict[str, int] = field(default_factory=dict, compare=False)
    """The line of each top-level key, for error messages."""

    def normalized(self) -> dict[str, Any]:
        """The spec as canonical JSON-able data (what :meth:`digest` hashes, besides the files)."""
        return {k: v for k, v in asdict(self).items() if k != "lines"}

    def digest(self, base_dir: str | os.PathLike[str]) -> str:
        """sha256 (hex) of the normalized spec plus the paths, modes and bytes of the local ``files``."""
        h = hashlib.sha256(json.dumps(self.normalized(), sort_keys=True, default=str).encode())
        for copy in self.files:
            root = os.path.join(base_dir, copy.source)
            for rel, path in regular_files(root):
                mode = stat.S_IMODE(os.lstat(path).st_mode)
                h.update(f"\0{copy.source}\0{rel}\0{mode:o}\0".encode())
                with open(path, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
        return h.hexdigest()


def regular_files(root: str) -> list[tuple[str, str]]:
    """``(relative path, path)`` of the regular files under ``root`` (or ``root`` itself), sorted; symlinks are
    skipped, as upload does. What the digest hashes, and what ``up`` packs into a build context."""
    if not os.path.isdir(root):
        return [(".", root)]
    found = []
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for n in sorted(files):
            p = os.path.join(d, n)
            if stat.S_ISREG(os.lstat(p).st_mode):
                found.append((os.path.relpath(p, root).replace(os.sep, "/"), p))
    return found


class _Reader:
    """Turns composed nodes into checked values, raising :class:`SpecError` with the node's line."""

    def __init__(self, path: str, loader: yaml.SafeLoader) -> None:
        self.path, self.loader = path, loader

    def error(self, node: yaml.Node | int, where: str, what: str) -> SpecError:
        line = node if isinstance(node, int) else node.start_mark.line + 1
        return SpecError(f"{self.path}:{line}: {where}: {what}")

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            return node  # the caller's type check reports it
        return self.loader.construct_object(node, deep=True)

    def mapping(self, node: yaml.Node, where: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, where, f"expected a mapping, got {_kind(node)}")
        items, seen = [], set()
        for k, v in node.value:
            key = self.scalar(k)
            if not isinstance(key, str):
                raise self.error(k, where, f"keys must be strings, got {key!r}")
            if key in seen:
                raise self.error(k, where, f"duplicate key {key!r}")
            seen.add(key)
            items.append((key, k, v))
        return items

    def sequence(self, node: yaml.Node, where: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, where, f"expected a list, got {_kind(node)}")
        return list(node.value)

    def string(self, node: yaml.Node, where: str) -> str:
        value = self.scalar(node)
        if not isinstance(value, str) or not value:
            raise self.error(node, where, f"expected a non-empty string, got {_show(value)}")
        return value


def _kind(node: yaml.Node) -> str:
    kinds = {yaml.MappingNode: "a mapping", yaml.SequenceNode: "a list"}
    return kinds.get(type(node), f"{node.value!r}")


def _show(value: Any) -> str:
    return _kind(value) if isinstance(value, yaml.Node) else repr(value)


def load_spec(path: str | os.PathLike[str]) -> Spec:
    """Read and validate a ``sandburg.yaml``; raises :class:`SpecError` naming the line and field."""
    where = os.fspath(path)
    try:
        with open(where, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{where}: cannot read: {exc}") from exc
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 1
            raise SpecError(f"{where}:{line}: YAML syntax: {exc.problem or exc}") from None
        except yaml.YAMLError as exc:
            raise SpecError(f"{where}:1: YAML syntax: {exc}") from None
        return _parse(_Reader(where, loader), root, os.path.dirname(os.path.abspath(where)))
    finally:
        loader.dispose()


def _parse(r: _Reader, root: yaml.Node | None, base_dir: str) -> Spec:
    if root is None:
        raise r.error(1, "name", "required (the file is empty)")
    items = r.mapping(root, "top level")
    unknown = [(key, k) for key, k, _ in items if key not in _FIELDS]
    if unknown:
        names = ", ".join(repr(key) for key, _ in unknown)
        raise r.error(unknown[0][1], "top level", f"unknown keys {names} (known: {', '.join(_FIELDS)})")
    nodes = {key: v for key, _, v in items}
    lines = {key: k.start_mark.line + 1 for key, k, _ in items}
    if "name" not in nodes:
        raise r.error(root, "name", "required")
    name = r.string(nodes["name"], "name")
    if not NAME_RE.match(name):
        raise r.error(nodes["name"], "name", f"{name!r} must match {NAME_RE.pattern}")
    kw: dict[str, Any] = {"name": name, "lines": lines}
    if "image" in nodes:
        kw["image"] = r.string(nodes["image"], "image")
    if "isolation" in nodes:
        kw["isolation"] = iso = r.scalar(nodes["isolation"])
        if iso not in ("gvisor", "container"):
            raise r.error(nodes["isolation"], "isolation", f"expected gvisor or container, got {_show(iso)}")
    if "resources" in nodes:
        kw.update(_resources(r, nodes["resources"]))
    if "packages" in nodes:
        kw["packages"] = _packages(r, nodes["packages"])
    if "env" in nodes:
        kw["env"] = _env(r, nodes["env"])
    if "secrets" in nodes:
        kw["secrets"] = _secrets(r, nodes["secrets"])
    if "files" in nodes:
        kw["files"] = tuple(_files(r, nodes["files"], base_dir))
    if "setup" in nodes:
        kw["setup"] = tuple(r.string(n, "setup") for n in r.sequence(nodes["setup"], "setup"))
    if "ports" in nodes:
        kw["ports"] = tuple(_port(r, n) for n in r.sequence(nodes["ports"], "ports"))
    if "network" in nodes:
        kw["network"] = _network(r, nodes["network"])
    if "volumes" in nodes:
        kw["volumes"] = _volumes(r, nodes["volumes"])
    kw["pending"] = {k: r.loader.construct_object(nodes[k], deep=True) for k in PENDING_FIELDS if k in nodes}
    return Spec(**kw)


def _resources(r: _Reader, node: yaml.Node) -> dict[str, int]:
    out = {}
    for key, k, v in r.mapping(node, "resources"):
        where, value = f"resources.{key}", r.scalar(v)
        if key == "cpu":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise r.error(v, where, f"expected a positive whole number of vCPUs, got {_show(value)}")
            out["cpu"] = value
        elif key in ("memory", "disk"):
            try:
                out[f"{key}_mib"] = parse_size_mib(value)
            except ValueError as exc:
                raise r.error(v, where, str(exc)) from None
        else:
            raise r.error(k, "resources", f"unknown key {key!r} (known: cpu, memory, disk)")
    return out


def _packages(r: _Reader, node: yaml.Node) -> Packages:
    out: dict[str, tuple[str, ...]] = {}
    for key, k, v in r.mapping(node, "packages"):
        if key not in PACKAGE_RES:
            raise r.error(k, "packages", f"unknown package manager {key!r} (known: apt, pip, npm)")
        names = []
        for i, n in enumerate(r.sequence(v, f"packages.{key}")):
            name = r.string(n, f"packages.{key}[{i}]")
            if not PACKAGE_RES[key].match(name):
                raise r.error(n, f"packages.{key}[{i}]", f"{name!r} is not a {key} package name")
            names.append(name)
        out[key] = tuple(names)
    return Packages(**out)


def _env(r: _Reader, node: yaml.Node) -> dict[str, str]:
    env = {}
    for key, k, v in r.mapping(node, "env"):
        if not _ENV_KEY_RE.match(key):
            raise r.error(k, "env", f"{key!r} is not a valid variable name")
        value = r.scalar(v)
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int | float):
            value = str(value)
        if not isinstance(value, str):
            raise r.error(v, f"env.{key}", f"expected a string, number or boolean, got {_show(value)}")
        env[key] = value
    return env


def _secrets(r: _Reader, node: yaml.Node) -> dict[str, str]:
    """``[NAME, ...]`` (each injected under its own name) or ``{ENV_NAME: secret-name}``."""
    out: dict[str, str] = {}
    if isinstance(node, yaml.SequenceNode):
        pairs = [(r.string(n, f"secrets[{i}]"), n, n) for i, n in enumerate(node.value)]
    else:
        pairs = [(key, k, v) for key, k, v in r.mapping(node, "secrets")]
    for env_name, k, v in pairs:
        secret = env_name if v is k else r.string(v, f"secrets.{env_name}")
        for what, value, where in (("variable", env_name, k), ("secret", secret, v)):
            if not _ENV_KEY_RE.match(value):
                raise r.error(where, "secrets", f"{value!r} is not a valid {what} name")
        out[env_name] = secret
    return out


def _files(r: _Reader, node: yaml.Node, base_dir: str) -> list[FileCopy]:
    copies = []
    real_base = os.path.realpath(base_dir)
    for target, k, v in r.mapping(node, "files"):
        where = f"files[{target!r}]"
        if not target.startswith("/") or ".." in target.split("/"):
            raise r.error(k, where, "the sandbox path must be absolute, without '..'")
        source = r.string(v, where)
        if os.path.isabs(source) or source.startswith("~"):
            raise r.error(v, where, f"{source!r}: local paths are relative to the YAML's directory")
        norm = posixpath.normpath(source.replace(os.sep, "/"))
        if norm == ".." or norm.startswith("../"):
            raise r.error(v, where, f"{source!r} escapes the YAML's directory")
        real = os.path.realpath(os.path.join(base_dir, norm))
        if os.path.commonpath([real, real_base]) != real_base:
            raise r.error(v, where, f"{source!r} escapes the YAML's directory (through a symlink)")
        if not (os.path.isfile(real) or os.path.isdir(real)):
            raise r.error(v, where, f"{source!r}: no such file or directory next to the YAML")
        copies.append(FileCopy(target=target, source=norm))
    return copies


def _port(r: _Reader, node: yaml.Node) -> int:
    value = r.scalar(node)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise r.error(node, "ports", f"expected a port from 1 to 65535, got {_show(value)}")
    return value


def _network(r: _Reader, node: yaml.Node) -> str | dict[str, list[str]]:
    expected = "expected 'none', 'all' or a mapping {allow: [...], deny: [...]}"
    if isinstance(node, yaml.ScalarNode):
        value = r.scalar(node)
        if value in ("none", "all"):
            return str(value)
        raise r.error(node, "network", f"{expected}, got {value!r}")
    if not isinstance(node, yaml.MappingNode):
        raise r.error(node, "network", f"{expected}, got {_kind(node)}")
    policy: dict[str, list[str]] = {"allow": [], "deny": []}
    for key, k, v in r.mapping(node, "network"):  # entries are checked by the server
        if key not in policy:
            raise r.error(k, "network", f"unknown key {key!r} (known: allow, deny)")
        policy[key] = [r.string(n, f"network.{key}") for n in r.sequence(v, f"network.{key}")]
    return policy


_VOLUME_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_VOLUME_KEYS: Final = ("name", "mount", "read_only", "subpath", "size")


def _volumes(r: _Reader, node: yaml.Node) -> tuple[VolumeUse, ...]:
    """A list of ``NAME:/path[:ro]`` strings or mappings ``{name, mount, read_only?, subpath?, size?}``."""
    out: list[VolumeUse] = []
    for i, n in enumerate(r.sequence(node, "volumes")):
        where = f"volumes[{i}]"
        if isinstance(n, yaml.ScalarNode):
            text = r.string(n, where)
            name, _, rest = text.partition(":")
            path, _, mode = rest.partition(":")
            if mode not in ("", "ro", "rw"):
                raise r.error(n, where, f"expected NAME:/path or NAME:/path:ro, got {text!r}")
            use = VolumeUse(name=name, mount=path, read_only=mode == "ro")
        else:
            kw: dict[str, Any] = {}
            for key, k, v in r.mapping(n, where):
                if key not in _VOLUME_KEYS:
                    raise r.error(k, where, f"unknown key {key!r} (known: {', '.join(_VOLUME_KEYS)})")
                if key == "read_only":
                    value = r.scalar(v)
                    if not isinstance(value, bool):
                        raise r.error(v, f"{where}.read_only", f"expected true or false, got {_show(value)}")
                    kw["read_only"] = value
                elif key == "size":
                    try:
                        kw["size_mib"] = parse_size_mib(r.scalar(v))
                    except ValueError as exc:
                        raise r.error(v, f"{where}.size", str(exc)) from None
                else:
                    kw[key] = r.string(v, f"{where}.{key}")
            for key in ("name", "mount"):
                if key not in kw:
                    raise r.error(n, where, f"{key!r} is required")
            use = VolumeUse(**kw)
        if not _VOLUME_NAME_RE.match(use.name):
            raise r.error(n, where, f"volume name {use.name!r} must match {_VOLUME_NAME_RE.pattern}")
        if not use.mount.startswith("/") or ".." in use.mount.split("/") or use.mount == "/":
            raise r.error(n, where, f"mount path {use.mount!r} must be absolute, not '/', without '..'")
        if any(u.mount == use.mount for u in out):
            raise r.error(n, where, f"two volumes mounted at {use.mount}")
        out.append(use)
    return tuple(out)
