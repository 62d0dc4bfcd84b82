"""A throwaway OCI registry on loopback, and OCI images assembled here from the host's busybox (no downloads).

`registry()` runs Debian's docker-registry (its packaged service is disabled by scripts/setup-host.sh) on a free
port of 127.0.0.1 with storage in a temp dir, and kills it and removes the dir on exit, even on failure.
`build_busybox_image` writes an OCI layout by hand with tarfile: three layers exercising whiteouts, an opaque
dir, links, ownership and modes; `build_malicious_image` writes one-layer layouts that try to escape the rootfs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

REGISTRY_BIN = "/usr/bin/docker-registry"
MTIME = 1_700_000_000
REF_NAME = "org.opencontainers.image.ref.name"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG = {
    "Env": ["PATH=/bin:/usr/bin", "GREETING=hi=there"],
    "WorkingDir": "/home/user",
    "User": "1000:1000",
    "Cmd": ["/bin/sh", "-c", "echo hi"],
}
MALICIOUS = (
    "dotdot",
    "symlink-parent",
    "absolute",
    "hardlink-outside",
    "hardlink-missing",
    "whiteout-dotdot",
)


@dataclass(frozen=True)
class Registry:
    host: str  # "127.0.0.1:PORT"
    log: str

    def read_log(self) -> str:
        with open(self.log, errors="replace") as fh:
            return fh.read()[-4000:]


@dataclass(frozen=True)
class BuiltImage:
    layout: str
    tag: str
    digest: str  # of the manifest


@contextmanager
def registry(start_timeout: float = 20) -> Iterator[Registry]:
    """A docker-registry on 127.0.0.1:<free port> (plain http, no auth), killed with its storage on exit."""
    tmp = tempfile.mkdtemp(prefix="sandburg-registry-")
    proc: subprocess.Popen[bytes] | None = None
    try:
        for _attempt in range(3):  # another process may take the free port before the registry binds it
            host = f"127.0.0.1:{_free_port()}"
            reg = Registry(host, os.path.join(tmp, "registry.log"))
            config = os.path.join(tmp, "config.yml")
            with open(config, "w") as fh:
                fh.write(
                    "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
                    f"storage:\n  filesystem:\n    rootdirectory: {tmp}/storage\n  delete:\n    enabled: true\n"
                    f"http:\n  addr: {host}\n"
                )
            with open(reg.log, "wb") as log:
                proc = subprocess.Popen(
                    [REGISTRY_BIN, "serve", config], stdin=subprocess.DEVNULL, stdout=log, stderr=log
                )
            if _wait_ready(proc, host, start_timeout):
                break
            proc.kill()
            proc.wait(10)
        else:
            raise RuntimeError(f"docker-registry did not start:\n{reg.read_log()}")
        yield reg
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], host: str, timeout: float) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with opener.open(f"http://{host}/v2/", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            time.sleep(0.05)
    return False


def skopeo(*args: str, timeout: float = 120) -> None:
    proc = subprocess.run(["skopeo", *args], capture_output=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"skopeo {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")


def push(image: BuiltImage, host: str, repo: str = "test/busy:1") -> str:
    """Push `image` to the registry at `host`; returns the reference to pull."""
    ref = f"{host}/{repo}"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{image.layout}:{image.tag}", f"docker://{ref}")
    return ref


def registry_digest(ref: str) -> str:
    """The digest of the manifest the registry serves for `ref` (skopeo compresses plain layers on push, so it
    is not the digest of the layout's manifest)."""
    proc = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", f"docker://{ref}"],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    return proc.stdout.decode().strip()


def write_docker_archive(image: BuiltImage, path: str, name: str = "test/busy:1") -> None:
    """`docker save`-style tarball of `image`."""
    skopeo("copy", f"oci:{image.layout}:{image.tag}", f"docker-archive:{path}:{name}")


def write_oci_tarball(layout: str, path: str) -> None:
    """A tar of the layout dir, as `tar -C layout -cf path .` makes it."""
    with tarfile.open(path, "w") as tar:
        tar.add(layout, arcname=".")


# -- layers -------------------------------------------------------------------------------------------------


Entry = tuple[tarfile.TarInfo, bytes | None]


def _info(name: str, type_: bytes, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = type_, mode, uid, gid, MTIME
    return ti


def d(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return _info(name, tarfile.DIRTYPE, mode, uid, gid), None


def f(name: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0, xattrs: dict[str, str] | None = None) -> Entry:  # fmt: skip
    ti = _info(name, tarfile.REGTYPE, mode, uid, gid)
    ti.size = len(data)
    ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in (xattrs or {}).items()}
    return ti, data


def sym(name: str, target: str) -> Entry:
    ti = _info(name, tarfile.SYMTYPE, 0o777)
    ti.linkname = target
    return ti, None


def hard(name: str, target: str) -> Entry:
    ti = _info(name, tarfile.LNKTYPE, 0o644)
    ti.linkname = target
    return ti, None


def chr_dev(name: str, major: int, minor: int) -> Entry:
    ti = _info(name, tarfile.CHRTYPE, 0o666)
    ti.devmajor, ti.devminor = major, minor
    return ti, None


def _tar(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for ti, data in entries:
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def busybox_layers() -> list[list[Entry]]:
    with open("/bin/busybox", "rb") as fh:
        busybox = fh.read()
    base = [
        d("bin"), f("bin/busybox", busybox, 0o755), sym("bin/sh", "busybox"), sym("bin/ls", "/bin/busybox"),
        sym("bin/cat", "/bin/busybox"), hard("bin/true", "bin/busybox"), d("dev"), chr_dev("dev/null", 1, 3),
        d("etc"), f("etc/motd", b"hello\n"), f("etc/gone", b"bye\n"),
        d("opt"), d("opt/data"), f("opt/data/old1", b"old\n"), d("opt/data/sub"), f("opt/data/sub/old2", b"old\n"),
        d("home"), d("home/user", 0o750, 1000, 1000),
        f("home/user/note", b"mine\n", 0o640, 1000, 1000, xattrs={"user.sandburg": "yes", "trusted.evil": "no"}),
        d("usr"), d("usr/local"), d("usr/local/bin"), f("usr/local/bin/suid", b"#!/bin/sh\n", 0o4755),
    ]  # fmt: skip
    # layer 2: a whiteout removes etc/gone, a file is replaced
    second = [d("etc"), f("etc/.wh.gone", b""), f("etc/motd", b"hello again\n"), d("tmp", 0o1777)]
    # layer 3: opt/data becomes opaque (new1 comes before the marker and must survive it); an overlayfs-style
    # 0/0 char device deletes bin/cat
    third = [
        d("opt/data"),
        f("opt/data/new1", b"new\n"),
        f("opt/data/.wh..wh..opq", b""),
        chr_dev("bin/cat", 0, 0),
    ]
    return [base, second, third]


def malicious_layers(kind: str, target: str) -> list[list[Entry]]:
    """One layer trying to write into the host dir `target` (or to misuse links), by `kind` (see MALICIOUS)."""
    up = "../" * 16
    layer = {
        "dotdot": [d("a"), f(f"{up}{target.lstrip('/')}/evil", b"x")],
        "symlink-parent": [sym("link", target), f("link/pwned", b"x")],
        "absolute": [d("a"), f(f"{target}/abs", b"x")],
        "hardlink-outside": [hard("stolen", f"{up}etc/passwd")],
        "hardlink-missing": [hard("early", "later"), f("later", b"x")],
        "whiteout-dotdot": [d("a"), f("a/.wh...", b"")],
    }[kind]
    return [layer]


def write_layout(layout: str, layers: list[list[Entry]], tag: str, config: dict[str, object]) -> BuiltImage:
    """An OCI image layout at `layout`: the first layer gzip-compressed, the others plain tar."""
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)

    def blob(data: bytes, media_type: str) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as fh:
            fh.write(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    descs, diff_ids = [], []
    for i, entries in enumerate(layers):
        raw = _tar(entries)
        diff_ids.append(f"sha256:{hashlib.sha256(raw).hexdigest()}")
        if i == 0:
            descs.append(blob(gzip.compress(raw, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip"))
        else:
            descs.append(blob(raw, "application/vnd.oci.image.layer.v1.tar"))
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    image_config = {
        "architecture": arch, "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }  # fmt: skip
    cfg = blob(json.dumps(image_config).encode(), "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": cfg, "layers": descs}
    man = blob(json.dumps(manifest).encode(), MANIFEST_TYPE)
    index = {"schemaVersion": 2, "manifests": [{**man, "annotations": {REF_NAME: tag}}]}
    with open(os.path.join(layout, "index.json"), "w") as fh:
        json.dump(index, fh)
    with open(os.path.join(layout, "oci-layout"), "w") as fh:
        json.dump({"imageLayoutVersion": "1.0.0"}, fh)
    return BuiltImage(layout, tag, str(man["digest"]))


def build_busybox_image(layout: str, tag: str = "busy") -> BuiltImage:
    return write_layout(layout, busybox_layers(), tag, dict(CONFIG))


def build_malicious_image(layout: str, kind: str, target: str) -> BuiltImage:
    return write_layout(layout, malicious_layers(kind, target), "evil", {"Cmd": ["/bin/sh"]})
