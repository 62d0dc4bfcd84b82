"""OCI images from registries and archives, unpacked into a plain directory (`sandburg image pull|import`).

Two steps, so that the caller can cache between them (a layout dir may be reused as a blob cache):

1. `pull` / `import_archive`: skopeo copies the image into an OCI layout (`oci-layout`, `index.json`, `blobs/`).
   It speaks the registry protocol, reads auth files and registries.conf, picks the host's platform from a
   multi-arch index and checks every digest; it reads the network or one archive and writes only `layout_dir`
   (root only because that lives in the node's data dir). An OCI-layout tarball is first unpacked into a temp
   dir next to `layout_dir` (only regular files named `oci-layout`, `index.json` or `blobs/<alg>/<hex>`), then
   copied the same way.
2. `unpack`: the layers are applied in order into `rootfs` with Python's tarfile, streaming: uncompressed, gzip,
   bzip2 or xz (zstd layers raise ImageError). Not umoci: layers are untrusted, and here every write is ours.

Privileged steps of `unpack`, and why root:
- chown to the tar's numeric uid/gid (names are ignored): the sandbox sees its root through an idmapped mount,
  so uid 0 on disk must be root inside; only root may give files away.
- chmod with the tar's mode, setuid/setgid/sticky included, after chown (which clears setuid).
- xattrs `user.*` and `security.capability` (file capabilities, e.g. ping), last because chown drops
  capabilities. Others are dropped (`trusted.*` could steer overlayfs); a filesystem refusing one is no error.

Whiteouts: `.wh.<name>` and a 0/0 character device (overlayfs style) delete `<name>` of the lower layers,
`.wh..wh..opq` empties its dir of what lower layers put there; neither touches what the same layer wrote.
Device nodes and fifos are never created (the runtime provides /dev), and skipped without a warning. Mtimes
are the tar's; a dir a layer only writes into keeps its own, so the tree depends on the layers alone.

Path safety: an entry with an absolute path or a `..` component, a hard link to something outside the rootfs or
not yet extracted, and any entry whose parent path goes through a symlink raise UnsafeImageError. Parents are
opened one component at a time from a dir fd of `rootfs` with O_NOFOLLOW, and every create/unlink/chown is made
relative to such a fd, so no write follows a symlink whatever the layer holds: nothing outside `rootfs` is ever
touched. Symlink targets are stored verbatim (absolute ones resolve inside the sandbox at runtime). On error
the rootfs is left partly written; the caller deletes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from typing import Any

from .errors import ImageError, ImagePullError, UnsafeImageError

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # the usual Debian PATH
IMPORT_TIMEOUT = 900.0
REF_NAME = "org.opencontainers.image.ref.name"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAX_JSON = 4 << 20  # manifests and configs are a few kB; a huge one is a broken or hostile layout
CHUNK = 1 << 20
_DIGEST = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
_LAYOUT_MEMBER = re.compile(
    r"^(oci-layout|index\.json|blobs/sha256/[0-9a-f]{64}|blobs/sha512/[0-9a-f]{128})$"
)
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SKOPEO_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class OciConfig:
    """How an image says to run it: the subset of the OCI image config sandburg uses."""

    env: dict[str, str]
    workdir: str
    user: str
    entrypoint: list[str]
    cmd: list[str]
    digest: str  # the manifest digest ("sha256:..."): identifies the content for caching


def pull(reference: str, layout_dir: str, *, tls_verify: bool = True, timeout: float = 900) -> str:
    """Copy `reference` (e.g. "127.0.0.1:5000/team/app:1", "docker://..." or "debian:12") with skopeo into an
    OCI layout at `layout_dir`; return the tag name used inside the layout. ImagePullError when skopeo fails."""
    name = reference.removeprefix("docker://")
    # Only the registry transport: "oci:/path" or "dir:/path" would make skopeo read host files.
    if not name or "://" in name or any(c.isspace() for c in name):
        raise ImagePullError(f"invalid image reference {reference!r}: expected [registry/]name[:tag]")
    tag = _layout_tag(name)
    tls = [] if tls_verify else ["--src-tls-verify=false"]
    _skopeo(
        ["copy", *tls, f"docker://{name}", _oci_ref(layout_dir, tag)], f"cannot pull {reference}", timeout
    )
    return tag


def import_archive(path: str, layout_dir: str) -> str:
    """An OCI-layout tarball (a tar of a dir with oci-layout, index.json, blobs/) or a docker-archive (`docker
    save` output, optionally compressed) holding one image -> OCI layout at `layout_dir`; return the tag."""
    if ":" in path:
        raise ImageError("skopeo cannot read an archive whose path contains ':'", path=path)
    tag = _layout_tag(os.path.basename(path))
    parent = os.path.dirname(os.path.abspath(layout_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".oci-import-", dir=parent)
    try:
        has_manifest_json = _extract_layout(path, tmp)
        if os.path.exists(os.path.join(tmp, "oci-layout")):
            src = f"oci:{tmp}"  # copied, not used in place: skopeo checks every blob against its digest
        elif has_manifest_json:
            src = f"docker-archive:{path}"
        else:
            raise ImageError(
                "neither an OCI layout nor a docker-archive (no oci-layout, no manifest.json)", path=path
            )
        _skopeo(["copy", src, _oci_ref(layout_dir, tag)], f"cannot import {path}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tag


def unpack(layout_dir: str, tag: str, rootfs: str) -> OciConfig:
    """Apply the layers of image `tag` of the layout, in order, into the existing empty directory `rootfs` (see
    the module docstring for whiteouts, ownership and path safety); return its config."""
    index = _read_json(os.path.join(layout_dir, "index.json"))
    try:
        found = [d for d in index["manifests"] if (d.get("annotations") or {}).get(REF_NAME) == tag]
        if not found:
            raise ImageError(f"no image tagged {tag!r} in the OCI layout", path=layout_dir)
        digest = found[-1]["digest"]
        manifest = _read_json(_blob_path(layout_dir, digest), blob=True)
        config = _read_json(_blob_path(layout_dir, manifest["config"]["digest"]), blob=True)
        cfg = _config(config["config"] or {}, digest)
        layers = [_blob_path(layout_dir, layer["digest"]) for layer in manifest["layers"]]
    except (KeyError, TypeError, AttributeError) as exc:
        raise ImageError(
            "malformed OCI layout", path=layout_dir, detail=f"{type(exc).__name__}: {exc}"
        ) from exc
    try:
        root_fd = os.open(rootfs, _DIR)
    except OSError as exc:
        raise ImageError("cannot open the rootfs", path=rootfs, detail=exc.strerror) from exc
    try:
        for path in layers:
            _apply_layer(path, root_fd)
    finally:
        os.close(root_fd)
    return cfg


def _config(c: dict[str, Any], digest: str) -> OciConfig:
    env: dict[str, str] = {}
    for item in c.get("Env") or []:
        key, sep, value = str(item).partition("=")
        if key and sep:
            env[key] = value
    env.setdefault("PATH", DEFAULT_PATH)
    return OciConfig(
        env=env,
        workdir=str(c.get("WorkingDir") or "/"),
        user=str(c.get("User") or "root"),
        entrypoint=[str(x) for x in c.get("Entrypoint") or []],
        cmd=[str(x) for x in c.get("Cmd") or []],
        digest=digest,
    )


def _apply_layer(path: str, root_fd: int) -> None:
    try:
        fh = os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")
    except OSError as exc:
        raise ImageError("missing layer blob", path=path, detail=exc.strerror) from exc
    with fh:
        if fh.read(4) == ZSTD_MAGIC:
            raise ImageError("zstd-compressed layers are not supported", path=path)
        fh.seek(0)
        layer = _Layer(root_fd)
        try:
            with tarfile.open(fileobj=fh, mode="r|*") as tar:  # skopeo checked the blob's digest
                for member in tar:
                    layer.apply(tar, member)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ImageError("cannot read layer", path=path, detail=str(exc)) from exc
        layer.finish()


class _Layer:
    """Applies one layer's entries; every write is relative to a dir fd opened with O_NOFOLLOW from the root."""

    def __init__(self, root_fd: int) -> None:
        self.root = root_fd
        self.made: set[str] = set()  # written by this layer: its own whiteouts and opaque markers spare them
        # dir mtimes are set last, once the children are written: the layer's dirs get theirs, the dirs it
        # only writes into get back their previous one
        self.dirs: list[tuple[list[str], int]] = []
        self.before: dict[str, int] = {}

    def apply(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = _parts(m.name)
        if not parts:
            return  # the root itself: the caller made it
        *parents, name = parts
        rel = "/".join(parts)
        try:
            if name.startswith(".wh."):
                self._whiteout(parents, name[4:], m.name)
            elif m.ischr() and m.devmajor == 0 and m.devminor == 0:
                self._whiteout(parents, name, m.name)  # overlayfs-style whiteout
            elif m.isdev():
                return  # device nodes and fifos are never created: the runtime provides /dev
            else:
                link = self._link_source(m) if m.islnk() else None
                try:
                    dfd = self._walk(parents, create=True)
                    assert dfd is not None  # create=True: made when missing
                    try:
                        self.before.setdefault("/".join(parents), os.fstat(dfd).st_mtime_ns)
                        self.made.add(rel)
                        self._write(tar, m, dfd, name, link)
                    finally:
                        os.close(dfd)
                finally:
                    if link:
                        os.close(link[0])
                if m.isdir():
                    self.dirs.append((parts, _ns(m.mtime)))
        except OSError as exc:
            raise ImageError("cannot write layer entry", path=rel, detail=exc.strerror or str(exc)) from exc
        except (ValueError, OverflowError) as exc:  # a NUL byte in a name, an id or time out of range
            raise ImageError("invalid layer entry", path=repr(m.name), detail=str(exc)) from exc

    def finish(self) -> None:
        before = [([p for p in path.split("/") if p], ns) for path, ns in self.before.items()]
        for parts, mtime in [*before, *self.dirs]:
            try:
                dfd = self._walk(parts, create=False)
            except (UnsafeImageError, OSError):
                continue  # replaced later in the layer by a link or a file: nothing to date
            if dfd is not None:
                try:
                    os.utime(dfd, ns=(mtime, mtime))
                finally:
                    os.close(dfd)

    def _write(
        self, tar: tarfile.TarFile, m: tarfile.TarInfo, dfd: int, name: str, link: tuple[int, str] | None
    ) -> None:
        t = _ns(m.mtime)
        if m.isdir():
            st = _lstat(dfd, name)
            if st is None or not stat.S_ISDIR(st.st_mode):
                _remove(dfd, name)
                os.mkdir(name, 0o700, dir_fd=dfd)
            fd = os.open(name, _DIR, dir_fd=dfd)
            try:
                _own(fd, m)
            finally:
                os.close(fd)
            return
        _remove(dfd, name)  # a file or link replaces whatever a lower layer had there
        if m.isreg():
            fd = os.open(
                name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd
            )
            try:
                src = tar.extractfile(m)
                if src is not None:
                    with os.fdopen(os.dup(fd), "wb") as out:
                        shutil.copyfileobj(src, out, CHUNK)
                _own(fd, m)
                os.utime(fd, ns=(t, t))
            finally:
                os.close(fd)
        elif m.issym():
            os.symlink(m.linkname, name, dir_fd=dfd)
            os.chown(name, m.uid, m.gid, dir_fd=dfd, follow_symlinks=False)
            os.utime(name, ns=(t, t), dir_fd=dfd, follow_symlinks=False)
        elif link is not None:
            os.link(link[1], name, src_dir_fd=link[0], dst_dir_fd=dfd, follow_symlinks=False)

    def _link_source(self, m: tarfile.TarInfo) -> tuple[int, str]:
        """The dir fd and name of a hard link's target, which must already be in the rootfs (and not a dir)."""
        parts = _parts(m.linkname)
        sfd = self._walk(parts[:-1], create=False) if parts else None
        st = _lstat(sfd, parts[-1]) if sfd is not None else None
        if sfd is None or st is None or stat.S_ISDIR(st.st_mode):
            if sfd is not None:
                os.close(sfd)
            raise UnsafeImageError(f"hard link {m.name} to {m.linkname}, which is not an extracted file")
        return sfd, parts[-1]

    def _whiteout(self, parents: list[str], name: str, entry: str) -> None:
        if name in ("", ".", "..") or "/" in name:
            raise UnsafeImageError("invalid whiteout", path=entry)
        dfd = self._walk(parents, create=False)
        if dfd is None:
            return  # nothing below to hide
        prefix = "/".join([*parents, ""])
        try:
            self.before.setdefault(prefix.rstrip("/"), os.fstat(dfd).st_mtime_ns)
            if name == ".wh..opq":  # opaque dir: hide everything the lower layers put there
                for child in os.listdir(dfd):
                    if prefix + child not in self.made:
                        _remove(dfd, child)
            elif prefix + name not in self.made:
                _remove(dfd, name)
        finally:
            os.close(dfd)

    def _walk(self, parents: list[str], *, create: bool) -> int | None:
        """A dir fd of root/parents, never following a symlink; None when missing and not `create`."""
        fd = os.dup(self.root)
        try:
            for i, p in enumerate(parents):
                try:
                    nfd = os.open(p, _DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    os.mkdir(p, 0o755, dir_fd=fd)
                    self.made.add("/".join(parents[: i + 1]))
                    nfd = os.open(p, _DIR, dir_fd=fd)
                except OSError as exc:
                    st = _lstat(fd, p)
                    where = "/".join(parents[: i + 1])
                    if st is not None and stat.S_ISLNK(st.st_mode):
                        raise UnsafeImageError(f"layer entry below the symlink {where}", path=where) from exc
                    raise ImageError(
                        f"layer entry below {where}, which is not a directory", path=where
                    ) from exc
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise


def _parts(name: str) -> list[str]:
    if name.startswith("/"):
        raise UnsafeImageError("absolute path in a layer", path=name)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeImageError("'..' in a layer path", path=name)
    return parts


def _own(fd: int, m: tarfile.TarInfo) -> None:
    os.chown(fd, m.uid, m.gid)
    os.chmod(fd, m.mode & 0o7777)
    for key, value in m.pax_headers.items():
        attr = key.removeprefix("SCHILY.xattr.")
        if attr != key and (attr.startswith("user.") or attr == "security.capability"):
            try:
                os.setxattr(fd, attr, value.encode("utf-8", "surrogateescape"))
            except OSError:
                pass  # best effort: the filesystem may not take it


def _lstat(dfd: int, name: str) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=dfd)
    except FileNotFoundError:
        return None


def _remove(dfd: int, name: str) -> None:
    st = _lstat(dfd, name)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dfd)  # fd-based: never follows a symlink inside
    else:
        os.unlink(name, dir_fd=dfd)


def _ns(mtime: float) -> int:
    return int(mtime * 1_000_000_000)


def _extract_layout(path: str, dest: str) -> bool:
    """The OCI layout files of the archive into `dest`, as regular files at names checked by _LAYOUT_MEMBER;
    whether the archive has a manifest.json (a docker-archive)."""
    manifest_json = False
    try:
        with tarfile.open(path, "r|*") as tar:
            for m in tar:
                name = "/".join(p for p in m.name.split("/") if p not in ("", "."))
                manifest_json = manifest_json or name == "manifest.json"
                src = tar.extractfile(m) if m.isreg() and _LAYOUT_MEMBER.match(name) else None
                if src is None:
                    continue
                os.makedirs(os.path.join(dest, os.path.dirname(name)), exist_ok=True)
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
                with os.fdopen(os.open(os.path.join(dest, name), flags, 0o644), "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise ImageError("cannot read the archive", path=path, detail=str(exc)) from exc
    return manifest_json


def _skopeo(args: list[str], what: str, timeout: float = IMPORT_TIMEOUT) -> None:
    try:
        proc = subprocess.run(
            ["skopeo", *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise ImagePullError(f"{what}: skopeo is not installed (run `make setup`)") from exc
    except subprocess.TimeoutExpired as exc:
        raise ImagePullError(f"{what}: skopeo timed out after {timeout:g}s") from exc
    if proc.returncode != 0:
        raise ImagePullError(what, detail=_short(proc.stderr.decode(errors="replace")))


def _short(stderr: str, limit: int = 500) -> str:
    """skopeo's own words ("manifest unknown", "connection refused"), without its log-line decoration."""
    msgs = _SKOPEO_MSG.findall(stderr)
    text = msgs[-1].replace('\\"', '"') if msgs else (stderr.strip().splitlines() or ["(no output)"])[-1]
    return text if len(text) <= limit else "..." + text[-limit:]


def _layout_tag(text: str) -> str:
    """A tag valid inside an OCI layout, readable, and distinct for distinct references."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:64] or "image"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _oci_ref(layout_dir: str, tag: str) -> str:
    if ":" in layout_dir:
        raise ImageError("skopeo cannot write a layout whose path contains ':'", path=layout_dir)
    return f"oci:{layout_dir}:{tag}"


def _blob_path(layout_dir: str, digest: str) -> str:
    if not _DIGEST.match(digest):
        raise ImageError(f"invalid digest {digest!r} in the OCI layout", path=layout_dir)
    alg, hexd = digest.split(":", 1)
    return os.path.join(layout_dir, "blobs", alg, hexd)


def _read_json(path: str, *, blob: bool = False) -> dict[str, Any]:
    """A JSON object from the layout; a blob must hash to its name."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_JSON + 1)
    except OSError as exc:
        raise ImageError("cannot read the OCI layout", path=path, detail=exc.strerror) from exc
    if len(data) > MAX_JSON:
        raise ImageError("OCI metadata larger than 4 MiB", path=path)
    alg, want = os.path.basename(os.path.dirname(path)), os.path.basename(path)
    if blob and hashlib.new(alg, data).hexdigest() != want:
        raise ImageError("blob does not match its digest", path=path)
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise ImageError("invalid JSON in the OCI layout", path=path, detail=str(exc)) from exc
    if not isinstance(value, dict):
        raise ImageError("OCI metadata is not a JSON object", path=path)
    return value
