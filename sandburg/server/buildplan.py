"""What a build is made of: a base image and steps, each with a content key; pure functions, no I/O.

Steps come from `sandburg.yaml` (`apt`, `pip`, `npm`, `files`, `run` for `setup`, `env`) or from a Dockerfile
(`RUN`, `ENV`, `WORKDIR`, `USER`, `COPY`/`ADD`, `ENTRYPOINT`, `CMD`). Filesystem steps make a layer; the others
only change the image's config, which the following steps see (a RUN after ENV has the variable), so the config
in force is part of every layer's key:

    key(step) = sha256(parent layer key, config in force, step kind and inputs)

An unchanged prefix of steps keeps its keys, so changing the pip list rebuilds from the pip step on and reuses the
apt layer below it (docs/images.md).
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass, field, replace
from typing import Any

FS_KINDS = ("apt", "pip", "npm", "files", "run")
CONFIG_KINDS = ("env", "workdir", "user", "entrypoint", "cmd")
KINDS = FS_KINDS + CONFIG_KINDS


@dataclass(frozen=True)
class ImageConfig:
    """How sandboxes made from an image run: the subset of an OCI config sandburg applies."""

    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/workspace"
    user: str = "root"
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "env": dict(self.env), "workdir": self.workdir, "user": self.user, "entrypoint": list(self.entrypoint),
            "cmd": list(self.cmd),
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> ImageConfig:
        d = d or {}
        return cls(
            env={str(k): str(v) for k, v in (d.get("env") or {}).items()},
            workdir=str(d.get("workdir") or "/workspace"), user=str(d.get("user") or "root"),
            entrypoint=tuple(d.get("entrypoint") or ()), cmd=tuple(d.get("cmd") or ()),
        )  # fmt: skip


@dataclass(frozen=True)
class Step:
    """One build step. `args`: package names (apt/pip/npm), shell commands (run), `(dest, digest)` (files:
    `digest` names an uploaded context tarball), `K=V` pairs (env), one value (workdir/user), argv
    (entrypoint/cmd). `label` is how the log and errors name it (a YAML field or a Dockerfile line)."""

    kind: str
    args: tuple[str, ...]
    label: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown build step {self.kind!r}")

    @property
    def makes_layer(self) -> bool:
        return self.kind in FS_KINDS

    def describe(self) -> str:
        if self.label:
            return self.label
        if self.kind == "files":
            return f"files → {self.args[0]}"
        return f"{self.kind} {' '.join(self.args)}"[:200]

    def apply_config(self, cfg: ImageConfig) -> ImageConfig:
        if self.kind == "env":
            env = dict(cfg.env)
            for pair in self.args:
                k, _, v = pair.partition("=")
                env[k] = v
            return replace(cfg, env=env)
        if self.kind == "workdir":
            return replace(cfg, workdir=self.args[0])
        if self.kind == "user":
            return replace(cfg, user=self.args[0])
        if self.kind == "entrypoint":
            return replace(cfg, entrypoint=self.args)
        if self.kind == "cmd":
            return replace(cfg, cmd=self.args)
        return cfg


@dataclass(frozen=True)
class Plan:
    base: str  # an image name: built-in, built here, pulled, or a template/snapshot
    steps: tuple[Step, ...]

    def to_json(self) -> dict[str, Any]:
        return {"base": self.base, "steps": [{"kind": s.kind, "args": list(s.args)} for s in self.steps]}


def layer_key(parent: str, cfg: ImageConfig, step: Step) -> str:
    """The content key of the layer `step` makes on top of `parent` with `cfg` in force."""
    blob = json.dumps(
        {"parent": parent, "config": cfg.to_json(), "kind": step.kind, "args": list(step.args)},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def base_key(name: str, recipe_key: str) -> str:
    """Key of a built-in image as a parent (built-ins live outside the layer store, under images/)."""
    return hashlib.sha256(f"builtin {name} {recipe_key}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Resolved:
    """A plan with every layer step's key: `keys[i]` is the key of step i ("" for config-only steps)."""

    keys: tuple[str, ...]
    configs: tuple[ImageConfig, ...]  # the config in force when step i runs
    final: ImageConfig
    final_layer: str  # the key of the last layer ("" when no step makes one: the base's)


def resolve(plan: Plan, parent: str, cfg: ImageConfig) -> Resolved:
    keys: list[str] = []
    configs: list[ImageConfig] = []
    last = ""
    for step in plan.steps:
        configs.append(cfg)
        if step.makes_layer:
            parent = last = layer_key(parent, cfg, step)
            keys.append(parent)
        else:
            keys.append("")
            cfg = step.apply_config(cfg)
    return Resolved(tuple(keys), tuple(configs), cfg, last)


# -- what each step runs in the build sandbox -----------------------------------------------------------------
@dataclass(frozen=True)
class Mirrors:
    """Where package managers fetch from: the public registries, or mirrors (tests, air-gapped sites)."""

    apt: str = ""  # a flat repository URL (`deb [trusted=yes] URL ./`); "" = the image's own sources
    pip: str = ""  # a PEP 503 index URL; "" = PyPI
    npm: str = ""  # a registry URL; "" = registry.npmjs.org

    def hosts(self) -> list[str]:
        """Names the build sandbox must reach for these sources."""
        from urllib.parse import urlsplit

        out = []
        out += [urlsplit(self.apt).hostname or ""] if self.apt else ["deb.debian.org"]
        out += [urlsplit(self.pip).hostname or ""] if self.pip else ["pypi.org", "files.pythonhosted.org"]
        out += [urlsplit(self.npm).hostname or ""] if self.npm else ["registry.npmjs.org"]
        return sorted({h for h in out if h})


def _apt_opts(m: Mirrors) -> str:
    if not m.apt:
        return ""
    return "-o Dir::Etc::SourceList=/tmp/.sandburg-apt/sources.list -o Dir::Etc::SourceParts=/tmp/.sandburg-apt/parts "


def _apt_prelude(m: Mirrors) -> str:
    if not m.apt:
        return ""
    return (
        "mkdir -p /tmp/.sandburg-apt/parts && "
        f"echo 'deb [trusted=yes] {m.apt} ./' > /tmp/.sandburg-apt/sources.list && "
    )


def _apt_install(pkgs: list[str], m: Mirrors) -> str:
    o = _apt_opts(m)
    return (
        _apt_prelude(m) + f"apt-get {o}update -q && "
        f"DEBIAN_FRONTEND=noninteractive apt-get {o}install -y -q --no-install-recommends "
        + " ".join(shlex.quote(p) for p in pkgs)
        + " && apt-get clean && rm -rf /var/lib/apt/lists/* /tmp/.sandburg-apt"
    )


def commands(step: Step, m: Mirrors) -> list[str]:
    """The shell commands a filesystem step runs (files steps are fed their tarball on stdin)."""
    if step.kind == "apt":
        return ["command -v apt-get >/dev/null || { echo 'this image has no apt-get' >&2; exit 127; }",
                _apt_install(list(step.args), m)]  # fmt: skip
    if step.kind == "pip":
        index = f"--index-url {shlex.quote(m.pip)} " if m.pip else ""
        if m.pip.startswith("http://"):
            from urllib.parse import urlsplit

            index += f"--trusted-host {shlex.quote(urlsplit(m.pip).hostname or '')} "
        return [
            "command -v python3 >/dev/null || { echo 'this image has no python3' >&2; exit 127; }",
            "python3 -m pip --version >/dev/null 2>&1 || { echo 'this image has no pip (python3-pip)' >&2; "
            "exit 127; }",
            "python3 -m pip install --no-cache-dir --disable-pip-version-check --progress-bar off "
            "--break-system-packages --root-user-action=ignore "
            + index
            + " ".join(shlex.quote(p) for p in step.args),
        ]
    if step.kind == "npm":
        registry = f"--registry {shlex.quote(m.npm)} " if m.npm else ""
        return [
            # npm needs Node.js: installed from the image's apt sources when the image lacks it
            "command -v npm >/dev/null || { " + _apt_install(["nodejs", "npm"], m) + "; }",
            "npm install -g --no-audit --no-fund --loglevel=warn "
            + registry
            + " ".join(shlex.quote(p) for p in step.args),
        ]
    if step.kind == "run":
        return list(step.args)
    if step.kind == "files":
        dest = step.args[0]
        return [f"mkdir -p {shlex.quote(dest)} && tar -x --no-same-owner -C {shlex.quote(dest)} -f -"]
    raise ValueError(f"{step.kind} makes no layer")
