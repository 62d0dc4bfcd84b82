"""``sb.images``: build, pull, import, list, get, delete images, and follow their build logs (docs/images.md).

A build is a base image plus steps, each a dict ``{"kind": ..., "args": [...]}`` (or a :class:`BuildStep`):
``apt`` / ``pip`` / ``npm`` package names, ``run`` shell commands, ``files`` ``[destination, context digest]``
(upload the tarball first with :meth:`Images.upload_context`), ``env`` ``NAME=value`` pairs, ``workdir``, ``user``,
``entrypoint``, ``cmd``. Each filesystem step is a cached layer: building the same steps again is a cache hit, and
changing one step rebuilds from that step on. With ``wait=True`` (the default) the call follows the build log
(each chunk goes to ``on_log``) and returns the active image, or raises the build's typed error
(:class:`ImageBuildFailedError`, :class:`ImagePullFailedError`, :class:`UnsafeImageError`).
"""

from __future__ import annotations

import builtins
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from . import _core as core
from ._codes import STATUS, ErrorCode
from ._errors import error_class

if TYPE_CHECKING:
    from ._async_client import AsyncSandburg
    from ._client import Sandburg

__all__ = ["AsyncImages", "BuildStep", "ImageInfo", "Images"]

STEP_KINDS = ("apt", "pip", "npm", "files", "run", "env", "workdir", "user", "entrypoint", "cmd")


@dataclass(frozen=True)
class BuildStep:
    kind: str
    args: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The step as the API takes it: ``{"kind": ..., "args": [...]}``."""
        return {"kind": self.kind, "args": list(self.args)}


@dataclass(frozen=True)
class ImageInfo:
    id: str
    name: str
    kind: str
    state: str  # building | active | error
    builtin: bool = False
    error_reason: str | None = None
    error_code: str | None = None
    size_bytes: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ImageInfo:
        return cls(
            id=str(d.get("id", "")), name=str(d.get("name", "")), kind=str(d.get("kind", "image")),
            state=str(d.get("state", "")), builtin=bool(d.get("builtin")), error_reason=d.get("errorReason"),
            error_code=d.get("errorCode"), size_bytes=d.get("sizeBytes"), config=dict(d.get("config") or {}),
            source=dict(d.get("source") or {}),
        )  # fmt: skip

    def raise_if_failed(self) -> ImageInfo:
        """Raise the typed error of a failed build/pull (as the server would have answered it); else self."""
        if self.state == "error":
            code = self.error_code or "IMAGE_BUILD_FAILED"
            status = STATUS.get(ErrorCode(code), 422) if code in set(ErrorCode) else 422
            message = f"image {self.name!r}: {self.error_reason or 'failed'}"
            raise error_class(status, code)(status, code, message, {"code": code, "message": message})
        return self


def _steps(steps: Iterable[BuildStep | Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in steps:
        d = (
            s.to_json()
            if isinstance(s, BuildStep)
            else {"kind": s.get("kind"), "args": list(s.get("args") or [])}
        )
        if d["kind"] not in STEP_KINDS:
            raise ValueError(f"unknown build step kind {d['kind']!r}; one of {', '.join(STEP_KINDS)}")
        out.append(d)
    return out


def build_request(
    name: str,
    base: str,
    steps: Iterable[BuildStep | Mapping[str, Any]],
    isolation: str | None,
    allow: Iterable[str],
) -> core.Request:
    body: dict[str, Any] = {"name": name, "base": base, "steps": _steps(steps), "allow": list(allow)}
    if isolation is not None:
        body["isolation"] = isolation
    return core.Request("POST", "/images", json=body)


def pull_request(reference: str, name: str, insecure: bool) -> core.Request:
    return core.Request(
        "POST", "/images/pull", json={"name": name, "reference": reference, "insecure": insecure}
    )


def logs_request(name: str, follow: bool) -> core.Request:
    return core.Request(
        "GET", f"/images/{_name(name)}/logs", params=(("follow", "true" if follow else "false"),), timeout=None,
        stream=True,
    )  # fmt: skip


def _name(name: str) -> str:
    # image names may hold `/` and `:` (registry-style); the server routes `{name:path}`
    return "/".join(core.path_segment(p, "image name") for p in name.split("/"))


def is_reference(name: str) -> bool:
    """`host[:port]/repo[:tag]` (or `docker://...`): a registry reference rather than a name of the server."""
    ref = name.removeprefix("docker://")
    host, slash, _rest = ref.partition("/")
    return bool(slash) and ("." in host or ":" in host or host == "localhost")


def is_local(reference: str) -> bool:
    """A registry on this host: plain HTTP is allowed for it (tests, a local cache)."""
    host = reference.removeprefix("docker://").split("/", 1)[0].rsplit(":", 1)[0]
    return host in ("localhost", "127.0.0.1", "[::1]")


def default_name(reference: str) -> str:
    """`registry:5000/team/app:1` → `team/app:1`: how a pulled image is named (the registry host dropped)."""
    ref = reference.removeprefix("docker://")
    return ref.partition("/")[2] if is_reference(ref) else ref


class Images:
    """Images of the organization (``sb.images``)."""

    def __init__(self, client: Sandburg) -> None:
        self._client = client

    def list(self, kind: str | None = None) -> builtins.list[ImageInfo]:
        """Built-in images and the organization's images (``kind``: image, template or state)."""
        params = (("kind", kind),) if kind else ()
        data = self._client._send(core.Request("GET", "/images", params=params))
        return [ImageInfo.from_json(d) for d in data["items"]]

    def get(self, name: str) -> ImageInfo:
        """The image ``name`` (or id): its state, config and, after a failure, ``error_code``."""
        return ImageInfo.from_json(self._client._send(core.Request("GET", f"/images/{_name(name)}")))

    def delete(self, name: str) -> None:
        """Delete an image; sandboxes made from it are not affected."""
        self._client._send(core.Request("DELETE", f"/images/{_name(name)}"))

    def upload_context(self, data: bytes | IO[bytes]) -> str:
        """Upload a build context tarball; returns its digest for a ``files`` step."""
        return str(self._raw("/images/context", data)["digest"])

    def build(
        self, name: str, steps: Iterable[BuildStep | Mapping[str, Any]] = (), *, base: str = "debian-12",
        isolation: str | None = None, allow: Iterable[str] = (), wait: bool = True,
        on_log: Callable[[str], None] | None = None,
    ) -> ImageInfo:  # fmt: skip
        """Build ``steps`` on ``base`` as ``name``; see the module docs."""
        info = ImageInfo.from_json(self._client._send(build_request(name, base, steps, isolation, allow)))
        return self._wait(info, wait, on_log)

    def pull(
        self, reference: str, *, name: str | None = None, insecure: bool = False, wait: bool = True,
        on_log: Callable[[str], None] | None = None,
    ) -> ImageInfo:  # fmt: skip
        """Pull an OCI image (``registry/repo:tag``) as ``name`` (default: the reference without its host)."""
        req = pull_request(reference, name or default_name(reference), insecure)
        return self._wait(ImageInfo.from_json(self._client._send(req)), wait, on_log)

    def import_archive(
        self, path: str | os.PathLike[str], *, name: str, wait: bool = True,
        on_log: Callable[[str], None] | None = None,
    ) -> ImageInfo:  # fmt: skip
        """Import an OCI-layout or docker-archive tarball from a local file as ``name``."""
        with open(path, "rb") as fh:
            data = self._raw("/images/import?" + core.encode_query([("name", name)]), fh)
        return self._wait(ImageInfo.from_json(data), wait, on_log)

    def logs(self, name: str, *, follow: bool = False) -> Iterator[str]:
        """The build log as text chunks; with ``follow`` until the build ends."""
        with self._client._stream(logs_request(name, follow)) as response:
            yield from response.iter_text()

    def _wait(self, info: ImageInfo, wait: bool, on_log: Callable[[str], None] | None) -> ImageInfo:
        if not wait:
            return info
        for chunk in self.logs(info.id, follow=info.state == "building"):  # a cached build has its log too
            if on_log is not None:
                on_log(chunk)
        return self.get(info.id).raise_if_failed()

    def _raw(self, path: str, data: bytes | IO[bytes]) -> Any:
        http = self._client._http
        try:
            response = http.post(path, content=data, headers={"Content-Type": "application/octet-stream"})
        except core.TRANSPORT_ERRORS as exc:
            raise core.error_from_transport(exc) from exc
        return core.json_answer(response.status_code, response.content)


class AsyncImages:
    """Images of the organization (``sb.images``)."""

    def __init__(self, client: AsyncSandburg) -> None:
        self._client = client

    async def list(self, kind: str | None = None) -> builtins.list[ImageInfo]:
        """Built-in images and the organization's images (``kind``: image, template or state)."""
        params = (("kind", kind),) if kind else ()
        data = await self._client._send(core.Request("GET", "/images", params=params))
        return [ImageInfo.from_json(d) for d in data["items"]]

    async def get(self, name: str) -> ImageInfo:
        """The image ``name`` (or id): its state, config and, after a failure, ``error_code``."""
        return ImageInfo.from_json(await self._client._send(core.Request("GET", f"/images/{_name(name)}")))

    async def delete(self, name: str) -> None:
        """Delete an image; sandboxes made from it are not affected."""
        await self._client._send(core.Request("DELETE", f"/images/{_name(name)}"))

    async def upload_context(self, data: bytes | IO[bytes]) -> str:
        """Upload a build context tarball; returns its digest for a ``files`` step."""
        return str((await self._raw("/images/context", data))["digest"])

    async def build(
        self, name: str, steps: Iterable[BuildStep | Mapping[str, Any]] = (), *, base: str = "debian-12",
        isolation: str | None = None, allow: Iterable[str] = (), wait: bool = True,
        on_log: Callable[[str], None] | None = None,
    ) -> ImageInfo:  # fmt: skip
        """Build ``steps`` on ``base`` as ``name``; see the module docs."""
        info = ImageInfo.from_json(
            await self._client._send(build_request(name, base, steps, isolation, allow))
        )
        return await self._wait(info, wait, on_log)

    async def pull(
        self, reference: str, *, name: str | None = None, insecure: bool = False, wait: bool = True,
        on_log: Callable[[str], None] | None = None,
    ) -> ImageInfo:  # fmt: skip
        """Pull an OCI image (``registry/repo:tag``) as ``name`` (default: the reference without its host)."""
        req = pull_request(reference, name or default_name(reference), insecure)
        return await self._wait(ImageInfo.from_json(await self._client._send(req)), wait, on_log)

    async def import_archive(
        self, path: str | os.PathLike[str], *, name: str, wait: bool = True,
        on_log: Callable[[str], None] | None = None,
    ) -> ImageInfo:  # fmt: skip
        """Import an OCI-layout or docker-archive tarball from a local file as ``name``."""
        with open(path, "rb") as fh:
            data = await self._raw("/images/import?" + core.encode_query([("name", name)]), fh.read())
        return await self._wait(ImageInfo.from_json(data), wait, on_log)

    async def logs(self, name: str, *, follow: bool = False) -> AsyncIterator[str]:
        """The build log as text chunks; with ``follow`` until the build ends."""
        async with self._client._stream(logs_request(name, follow)) as response:
            async for chunk in response.aiter_text():
                yield chunk

    async def _wait(self, info: ImageInfo, wait: bool, on_log: Callable[[str], None] | None) -> ImageInfo:
        if not wait:
            return info
        async for chunk in self.logs(
            info.id, follow=info.state == "building"
        ):  # a cached build has its log too
            if on_log is not None:
                on_log(chunk)
        return (await self.get(info.id)).raise_if_failed()

    async def _raw(self, path: str, data: bytes | IO[bytes]) -> Any:
        http = self._client._http
        try:
            response = await http.post(
                path, content=data, headers={"Content-Type": "application/octet-stream"}
            )
        except core.TRANSPORT_ERRORS as exc:
            raise core.error_from_transport(exc) from exc
        return core.json_answer(response.status_code, response.content)
