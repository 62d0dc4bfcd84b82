#!/usr/bin/env python3
"""Fill the local package mirror that the tests serve from the fake internet (tests/_support/fakenet.py).

    .venv/bin/python scripts/fill-mirror.py     # what `make mirror` runs; stdlib only

Tests never reach a public registry: this script fetches from them once, into $SANDBURG_MIRROR_DIR (default
/var/cache/sandburg/mirror), and the fake internet's `mirror.test` serves that directory over HTTP:

    apt/                       flat unsigned repository: *.deb, Packages, Packages.gz, Release
                               -> deb [trusted=yes] http://mirror.test/apt ./
    pypi/simple/<name>/        PEP 503 index pages, linking to pypi/files/*.whl
                               -> pip install --index-url http://mirror.test/pypi/simple
    npm/<name>/index.json      registry document (packument); tarballs in npm/<name>/-/<file>.tgz
                               -> npm install --registry http://mirror.test/npm/
    stamp.json                 one key per section: a section is fetched again only when its inputs change

The apt section is the dependency closure of APT_PACKAGES relative to the packages already installed in the
sandbox's Debian 12 image (its mmdebstrap tarball), with --no-install-recommends: exactly what an image build in
a sandbox downloads. The host's apt computes it with a configuration of its own, so neither the host's sources
and pins (it pins trixie) nor its installed packages leak in.
"""

from __future__ import annotations

import base64
import email.parser
import email.utils
import fcntl
import glob
import gzip
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from typing import Any, cast

VERSION = 1  # bump when the layout changes: every section is fetched again
MIRROR_DIR = os.environ.get("SANDBURG_MIRROR_DIR") or "/var/cache/sandburg/mirror"
CACHE_DIR = os.environ.get("SANDBURG_CACHE_DIR") or "/var/cache/sandburg"
MIRROR_URL = "http://mirror.test"

# chromium renders screenshots with whatever fonts are installed: the base image has none
APT_PACKAGES = ["postgresql-client", "chromium", "fonts-liberation", "libatomic1", "nodejs", "npm"]
# libatomic1: the Node.js that the playwright wheel bundles needs it (Debian's chromium does not pull it in)
APT_SOURCES = [
    "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main",
    "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main",
    "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main",
]  # fmt: skip
PIP_PACKAGES = ["requests", "playwright", "six", "attrs"]
# the sandbox's python: CPython 3.11 on glibc 2.36 (bookworm), x86_64
PIP_TARGET = ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--abi", "abi3",
              "--abi", "none", "--platform", "manylinux2014_x86_64",
              *(a for v in range(36, 16, -1) for a in ("--platform", f"manylinux_2_{v}_x86_64"))]  # fmt: skip
NPM_PACKAGES = ["typescript", "is-number"]
NPM_REGISTRY = "https://registry.npmjs.org"
NPM_PLATFORM = {"os": "linux", "cpu": "x64", "libc": "glibc"}


class FillError(Exception):
    """A fetch failed; the message says which and why."""


def main() -> int:
    t0 = time.monotonic()
    try:
        os.makedirs(MIRROR_DIR, exist_ok=True)
        with open(os.path.join(MIRROR_DIR, ".lock"), "w") as lock:
            # two `make` runs at once would otherwise build the same section side by side
            fcntl.flock(lock, fcntl.LOCK_EX)
            fill()
    except FillError as exc:
        print(f"fill-mirror: {exc}", file=sys.stderr)
        return 1
    print(f"fill-mirror: {MIRROR_DIR} ready in {time.monotonic() - t0:.1f}s")
    return 0


def fill() -> None:
    for stale in glob.glob(os.path.join(MIRROR_DIR, ".tmp-*")):
        shutil.rmtree(stale, ignore_errors=True)
    stamp = read_stamp()
    base = base_tarball()
    sections: list[tuple[str, object, Callable[[str], None]]] = [
        ("apt", [os.path.basename(base), APT_PACKAGES, APT_SOURCES], lambda out: fill_apt(out, base)),
        ("pypi", [PIP_PACKAGES, PIP_TARGET], fill_pypi),
        ("npm", [NPM_PACKAGES, NPM_PLATFORM], fill_npm),
    ]
    for name, inputs, build in sections:
        key = hashlib.sha256(json.dumps([VERSION, inputs]).encode()).hexdigest()[:16]
        final = os.path.join(MIRROR_DIR, name)
        if stamp.get(name) == key and os.path.isdir(final):
            print(f"{name}: up to date ({human(du(final))})")
            continue
        t0 = time.monotonic()
        tmp = os.path.join(MIRROR_DIR, f".tmp-{name}-{os.getpid()}")
        os.makedirs(tmp)
        try:
            build(tmp)
            replace_dir(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        stamp[name] = key
        write_stamp(stamp)
        print(f"{name}: {human(du(final))} fetched in {time.monotonic() - t0:.1f}s")


# --- apt ---------------------------------------------------------------------------------------------------


def base_tarball() -> str:
    """The mmdebstrap tarball of the sandbox's debian-12 image, built (once, like `make up` does) if missing."""
    try:
        from sandburg.node.errors import NodeError
        from sandburg.node.images import RECIPES, ImageStore
    except ImportError:
        # run by a python without sandburg: any tarball of the image will do, but none can be built
        found = sorted(glob.glob(os.path.join(CACHE_DIR, "debian-12@*.tar")), key=os.path.getmtime)
        if not found:
            raise FillError(f"no debian-12 image tarball in {CACHE_DIR}: run `make mirror`") from None
        return found[-1]
    recipe = RECIPES["debian-12"]()
    tarball = os.path.join(CACHE_DIR, f"{recipe.name}@{recipe.key}.tar")
    if os.path.exists(tarball):
        return tarball
    try:
        # only the build cache of ImageStore is used, never its btrfs store
        return ImageStore(cast(Any, None), CACHE_DIR)._debian_tarball(recipe, log=True)
    except NodeError as exc:
        raise FillError(f"building the debian-12 image tarball failed: {exc}") from exc


def fill_apt(out: str, base: str) -> None:
    with tempfile.TemporaryDirectory(prefix="sandburg-apt-") as work:
        run(
            ["tar", "-x", "-C", work, "-f", base, "./var/lib/dpkg/status"],
            f"reading the dpkg status of {base}",
        )
        for d in ("etc", "empty", "state/lists/partial", "cache", "log", "archives/partial"):
            os.makedirs(os.path.join(work, d))
        with open(os.path.join(work, "etc/sources.list"), "w") as fh:
            fh.write("\n".join(APT_SOURCES) + "\n")
        conf = {
            # set before apt reads /etc/apt/apt.conf.d (only APT_CONFIG is read that early): nothing of the host's
            # apt configuration, sources or pins applies
            "Dir::Etc::Parts": f"{work}/empty",
            "Dir::Etc::Main": "/dev/null",
            "Dir::Etc::SourceList": f"{work}/etc/sources.list",
            "Dir::Etc::SourceParts": f"{work}/empty",
            "Dir::Etc::Preferences": "/dev/null",
            "Dir::Etc::PreferencesParts": f"{work}/empty",
            "Dir::State": f"{work}/state",
            "Dir::State::Lists": f"{work}/state/lists",
            # the image's installed packages, not the host's
            "Dir::State::status": f"{work}/var/lib/dpkg/status",
            "Dir::Cache": f"{work}/cache",
            "Dir::Cache::archives": f"{work}/archives",
            "Dir::Log": f"{work}/log",
            "Debug::NoLocking": "1",
            "APT::Architecture": "amd64",
            "APT::Install-Recommends": "0",
            "APT::Install-Suggests": "0",
            "Acquire::Languages": "none",
            "Acquire::Retries": "3",
        }
        with open(os.path.join(work, "etc/apt.conf"), "w") as fh:
            fh.writelines(f'{k} "{v}";\n' for k, v in conf.items())
            fh.write('APT::Architectures { "amd64"; };\n')
        env = {**os.environ, "APT_CONFIG": f"{work}/etc/apt.conf", "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "-q", "update"], "apt-get update (deb.debian.org)", env=env)
        run(
            ["apt-get", "-q", "-y", "--download-only", "--no-install-recommends", "install", *APT_PACKAGES],
            f"downloading the closure of {' '.join(APT_PACKAGES)}",
            env=env,
        )
        debs = sorted(glob.glob(os.path.join(work, "archives", "*.deb")))
        if not debs:
            raise FillError("apt-get downloaded no .deb: are the packages already in the base image?")
        for deb in debs:
            shutil.move(deb, out)
    packages = run(["dpkg-scanpackages", "--multiversion", ".", "/dev/null"], "dpkg-scanpackages", cwd=out)
    with open(os.path.join(out, "Packages"), "w") as fh:
        fh.write(packages)
    with gzip.GzipFile(os.path.join(out, "Packages.gz"), "wb", mtime=0) as gz:
        gz.write(packages.encode())
    write_release(out)
    size = sum(os.path.getsize(d) for d in glob.glob(os.path.join(out, "*.deb")))
    print(f"apt: {len(debs)} packages, {human(size)}: the closure of {' '.join(APT_PACKAGES)}")


def write_release(out: str) -> None:
    # apt reads Release first; with [trusted=yes] it needs no signature, but checks the indexes' hashes against it
    lines = [
        "Origin: sandburg-test-mirror",
        "Label: sandburg-test-mirror",
        "Architectures: amd64 all",
        f"Date: {email.utils.formatdate(usegmt=True)}",
    ]
    for field, algo in (("MD5Sum", "md5"), ("SHA256", "sha256")):
        lines.append(f"{field}:")
        for name in ("Packages", "Packages.gz"):
            path = os.path.join(out, name)
            lines.append(f" {file_hash(path, algo)} {os.path.getsize(path)} {name}")
    with open(os.path.join(out, "Release"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


# --- pypi --------------------------------------------------------------------------------------------------


def fill_pypi(out: str) -> None:
    files = os.path.join(out, "files")
    run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-cache-dir", "--only-binary=:all:",
         *PIP_TARGET, "--dest", files, *PIP_PACKAGES],
        f"pip download {' '.join(PIP_PACKAGES)}",
    )  # fmt: skip
    projects: dict[str, list[str]] = {}
    for fn in sorted(os.listdir(files)):
        projects.setdefault(project_name(fn), []).append(fn)
    simple = os.path.join(out, "simple")
    os.makedirs(simple)
    links = [f'<a href="{p}/">{p}</a>' for p in sorted(projects)]
    write_html(os.path.join(simple, "index.html"), "Simple index", links)
    for project, names in projects.items():
        links = []
        for fn in names:
            path = os.path.join(files, fn)
            attrs = f' data-requires-python="{html.escape(rp)}"' if (rp := requires_python(path)) else ""
            href = f"../../files/{urllib.parse.quote(fn)}#sha256={file_hash(path, 'sha256')}"
            links.append(f'<a href="{href}"{attrs}>{html.escape(fn)}</a>')
            print(f"pypi: {fn} ({human(os.path.getsize(path))})")
        os.makedirs(os.path.join(simple, project))
        write_html(os.path.join(simple, project, "index.html"), f"Links for {project}", links)


def project_name(filename: str) -> str:
    # PEP 503 normalisation of the name part of a wheel (name-version-...) or sdist (name-version.tar.gz)
    name = filename.split("-")[0] if filename.endswith(".whl") else filename.rsplit("-", 1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def requires_python(path: str) -> str:
    if not path.endswith(".whl"):
        return ""
    with zipfile.ZipFile(path) as whl:
        meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        return email.parser.HeaderParser().parsestr(whl.read(meta).decode()).get("Requires-Python", "")


def write_html(path: str, title: str, links: list[str]) -> None:
    body = "<br>\n".join(links)
    with open(path, "w") as fh:
        fh.write(
            f"<!DOCTYPE html>\n<html><head><title>{title}</title></head><body>\n{body}\n</body></html>\n"
        )


# --- npm ---------------------------------------------------------------------------------------------------


def fill_npm(out: str) -> None:
    packuments: dict[str, dict[str, Any]] = {}
    chosen: dict[str, set[str]] = {}
    todo: list[tuple[str, str]] = [(name, "latest") for name in NPM_PACKAGES]
    while todo:
        name, spec = todo.pop()
        if name not in packuments:
            packuments[name] = fetch_json(f"{NPM_REGISTRY}/{urllib.parse.quote(name, safe='@')}")
        doc = packuments[name]
        version = pick_version(doc, spec)
        if version in chosen.setdefault(name, set()):
            continue
        chosen[name].add(version)
        manifest = doc["versions"][version]
        # npm installs dependencies and peers, and optional dependencies built for this platform
        deps = {**manifest.get("peerDependencies", {}), **manifest.get("dependencies", {})}
        optional_peers = {p for p, m in manifest.get("peerDependenciesMeta", {}).items() if m.get("optional")}
        deps = {d: r for d, r in deps.items() if d not in optional_peers}
        for dep, rng in manifest.get("optionalDependencies", {}).items():
            try:
                if dep not in packuments:
                    packuments[dep] = fetch_json(f"{NPM_REGISTRY}/{urllib.parse.quote(dep, safe='@')}")
                if fits_platform(packuments[dep]["versions"][pick_version(packuments[dep], rng)]):
                    deps[dep] = rng
            except FillError as exc:
                print(f"npm: skipping the optional {dep}@{rng} of {name}, as npm would: {exc}")
        todo.extend(deps.items())
    for name, versions in sorted(chosen.items()):
        write_packument(out, packuments[name], versions)


def write_packument(out: str, doc: dict[str, Any], versions: set[str]) -> None:
    name = doc["name"]
    os.makedirs(os.path.join(out, name, "-"))
    kept: dict[str, Any] = {}
    for version in sorted(versions):
        manifest = dict(doc["versions"][version])
        dist = dict(manifest["dist"])
        filename = os.path.basename(urllib.parse.urlparse(dist["tarball"]).path)
        path = os.path.join(out, name, "-", filename)
        download(dist["tarball"], path)
        check_dist(path, dist)
        dist["tarball"] = f"{MIRROR_URL}/npm/{name}/-/{filename}"
        dist.pop("signatures", None)  # signed for registry.npmjs.org, meaningless for the mirror
        kept[version] = {**manifest, "dist": dist}
        print(f"npm: {name}@{version} ({human(os.path.getsize(path))})")
    latest = doc["dist-tags"]["latest"]
    times = doc.get("time", {})
    packument = {
        "_id": name,
        "name": name,
        "dist-tags": {"latest": latest if latest in kept else max(kept, key=lambda v: _order(semver(v)))},
        "versions": kept,
        "time": {v: times[v] for v in kept if v in times},
    }
    with open(os.path.join(out, name, "index.json"), "w") as fh:
        json.dump(packument, fh, indent=1)


def check_dist(path: str, dist: dict[str, Any]) -> None:
    # the mirror serves what the registry published: the same sha512 integrity and sha1 shasum
    with open(path, "rb") as fh:
        data = fh.read()
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    shasum = hashlib.sha1(data).hexdigest()
    if dist.get("integrity", integrity) != integrity or dist.get("shasum", shasum) != shasum:
        raise FillError(f"{dist['tarball']}: the download does not match the registry's integrity")


def fits_platform(manifest: dict[str, Any]) -> bool:
    # npm's own check: "!value" excludes, and a list of positive values must name ours
    for field, value in NPM_PLATFORM.items():
        allowed = manifest.get(field) or []
        allowed = [allowed] if isinstance(allowed, str) else allowed
        positive = [a for a in allowed if not a.startswith("!")]
        if f"!{value}" in allowed or (positive and value not in positive):
            return False
    return True


Semver = tuple[int, int, int, tuple[str, ...]]


def semver(version: str) -> Semver:
    m = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+.*)?", version.strip())
    if not m:
        raise FillError(f"not a semver version: {version!r}")
    pre = tuple(m.group(4).split(".")) if m.group(4) else ()
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), pre


def _order(v: Semver) -> tuple[int, int, int, int, tuple[str, ...]]:
    return (v[0], v[1], v[2], 0 if v[3] else 1, v[3])  # a prerelease sorts before its release


def satisfies(version: str, rng: str) -> bool:
    """The npm ranges that dependency lists use: exact, x-ranges, ^, ~, comparators, ||; anything else fails."""
    v = semver(version)
    for alternative in rng.split("||"):
        comparators = re.sub(r"(>=|<=|>|<|=|\^|~)\s+", r"\1", alternative).split() or ["*"]
        named = [s for c in comparators if (s := semver_or_none(c.lstrip("<>=^~")))]
        if v[3] and not any(s[3] and s[:3] == v[:3] for s in named):
            continue  # a prerelease matches only a range that names a prerelease of the same version
        if all(_matches(v, c) for c in comparators):
            return True
    return False


def semver_or_none(text: str) -> Semver | None:
    try:
        return semver(text)
    except FillError:
        return None


def _matches(v: Semver, comparator: str) -> bool:
    m = re.fullmatch(
        r"(\^|~|>=|<=|>|<|=)?v?(\*|x|X|\d+)(?:\.(\*|x|X|\d+))?(?:\.(\*|x|X|\d+))?(?:-([0-9A-Za-z.-]+))?",
        comparator,
    )
    if not m:
        raise FillError(f"unsupported npm version range: {comparator!r}")
    op = m.group(1) or "="
    nums = [int(p) for p in m.group(2, 3, 4) if p is not None and p.isdigit()]
    padded = [*nums, 0, 0, 0]
    low = _order((padded[0], padded[1], padded[2], tuple(m.group(5).split(".")) if m.group(5) else ()))
    if op in (">", ">=", "<", "<="):
        at = _order(v)
        return {">": at > low, ">=": at >= low, "<": at < low, "<=": at <= low}[op]
    if op == "^":  # the leftmost non-zero part is fixed
        fixed = next((i for i, n in enumerate(nums) if n != 0), len(nums) - 1) + 1 if nums else 0
    elif op == "~":  # the minor is fixed when given, else the major
        fixed = min(len(nums), 2)
    else:  # x-range or exact
        fixed = len(nums)
        if fixed == 3:
            return _order(v) == low
    return _order(v) >= low and list(v[:fixed]) == nums[:fixed]


def pick_version(doc: dict[str, Any], spec: str) -> str:
    tags: dict[str, str] = doc.get("dist-tags", {})
    if spec in tags:
        return tags[spec]
    latest = tags.get("latest")
    if latest and satisfies(latest, spec):
        return latest  # what npm picks too
    matching: list[str] = [v for v in doc["versions"] if satisfies(v, spec)]
    if not matching:
        raise FillError(f"npm: no version of {doc['name']} satisfies {spec!r}")
    return max(matching, key=lambda v: _order(semver(v)))


# --- helpers -----------------------------------------------------------------------------------------------


def run(argv: list[str], what: str, cwd: str | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-20:])
        raise FillError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def fetch_json(url: str) -> dict[str, Any]:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return cast(dict[str, Any], json.load(resp))
    except (OSError, ValueError) as exc:
        raise FillError(f"fetching {url} failed: {exc}") from exc


def download(url: str, path: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(path, "wb") as fh:
            shutil.copyfileobj(resp, fh, 1 << 20)
    except OSError as exc:
        raise FillError(f"downloading {url} failed: {exc}") from exc


def file_hash(path: str, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_stamp() -> dict[str, Any]:
    try:
        with open(os.path.join(MIRROR_DIR, "stamp.json")) as fh:
            stamp = json.load(fh)
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def write_stamp(stamp: dict[str, Any]) -> None:
    path = os.path.join(MIRROR_DIR, "stamp.json")
    with open(path + ".tmp", "w") as fh:
        json.dump({**stamp, "filled": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, fh)
    os.replace(path + ".tmp", path)


def replace_dir(new: str, final: str) -> None:
    old = os.path.join(os.path.dirname(final), f".tmp-old-{os.path.basename(final)}-{os.getpid()}")
    if os.path.exists(final):
        os.rename(final, old)
    os.rename(new, final)
    shutil.rmtree(old, ignore_errors=True)


def du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def human(n: int) -> str:
    return f"{n / 1048576:.1f} MiB" if n >= 1048576 else f"{n / 1024:.0f} KiB"


if __name__ == "__main__":
    raise SystemExit(main())
