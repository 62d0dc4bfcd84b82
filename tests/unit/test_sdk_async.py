"""Unit tests of the async client's I/O shell, run with ``asyncio.run`` (no async test plugin).

Like the sync client tests in test_sdk_core.py, they run against ``FakeAPI``, the in-memory *fake* of the REST
API (docs/api.md) served through ``httpx.MockTransport``; it checks the wire format the SDK sends, not the
server's behaviour. The async client against the real server is tests/e2e/test_async_sdk.py; that both clients
offer the same methods is test_sdk_parity.py.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import sandburg
from sandburg import _core as core
from tests.unit.test_sdk_core import KEY, FakeAPI


def _client(handler: Any) -> sandburg.AsyncSandburg:
    return sandburg.AsyncSandburg("http://fake/api", KEY, transport=httpx.MockTransport(handler))


def test_target_usage() -> None:
    api = FakeAPI()

    async def scenario() -> None:
        async with _client(api) as sb:
            box = await sb.create(
                isolation="gvisor", cpu=2, memory="4GiB", env={"A": "1"}, labels={"team": "x"}
            )
            assert isinstance(box, sandburg.AsyncSandbox) and isinstance(box, sandburg.SandboxInfo)
            assert (box.state, box.isolation, box.memory_mib) == ("started", "gvisor", 4096)
            assert box.labels == {"team": "x"}
            assert json.loads(api.requests[-1].content)["memoryMiB"] == 4096
            assert api.requests[-1].extensions["timeout"]["read"] == sandburg.DEFAULT_CREATE_TIMEOUT
            r = await box.process.exec("echo $A && id -u", cwd="/workspace", timeout=10)
            assert (r.exit_code, r.stdout, r.stderr, r.duration_ms) == (0, "1\n0\n", "", 3.0)
            assert api.requests[-1].extensions["timeout"]["read"] == 20
            assert await box.fs.upload_file(b"hello", "/workspace/a.txt") == sandburg.UploadResult(
                "/workspace/a.txt", 5
            )
            assert await box.fs.download_file("/workspace/a.txt") == b"hello"
            await box.stop()
            assert box.state == "stopped" and not box.is_running
            with pytest.raises(sandburg.SandboxNotRunningError):
                await box.process.exec("true")
            await box.start()
            assert box.state == sandburg.SandboxState.STARTED and box.is_running
            await box.delete()
            assert box.state == "destroyed"
            with pytest.raises(sandburg.SandboxNotFoundError, match="not found"):
                await box.refresh()
        assert sb._http.is_closed
        assert repr(sb) == "AsyncSandburg(api_url='http://fake/api')"

    asyncio.run(scenario())


def test_get_list_labels_and_health() -> None:
    api = FakeAPI()

    async def scenario() -> None:
        async with _client(api) as sb:
            a = await sb.create(name="a", labels={"team": "x"})
            await sb.create(name="b", labels={"team": "x"})
            await sb.create(name="c", labels={"team": "y"})
            await (await sb.get("b")).stop()
            assert await sb.get("a") == a and (await sb.get(a.id)).name == "a"
            assert [b.name for b in await sb.list()] == ["a", "b", "c"]  # three pages of two
            assert [b.name for b in await sb.list(labels={"team": "x"}, state="started")] == ["a"]
            assert [b.name for b in await sb.list(state=["started", "stopped"], limit=2)] == ["a", "b"]
            assert all(isinstance(b, sandburg.AsyncSandbox) for b in await sb.list())
            assert await a.set_labels({"team": "z"}) == {"team": "z"} == a.labels
            assert (await sb.get("a")).labels == {"team": "z"}
            with pytest.raises(sandburg.SandboxNameConflictError):
                await sb.create(name="a")
            with pytest.raises(ValueError, match="invalid size"):
                await sb.create(memory="lots")
            assert await sb.health() == sandburg.HealthInfo("ok", "0.1.0")
        assert api.requests[0].headers["user-agent"].startswith("sandburg-python/")

    asyncio.run(scenario())


def test_exec_timeout_and_auth_errors() -> None:
    api = FakeAPI()

    async def scenario() -> None:
        async with _client(api) as sb:
            box = await sb.create()
            with pytest.raises(sandburg.ExecTimeoutError, match="timed out after 1s") as info:
                await box.process.exec("sleep 100", timeout=1)
            assert (info.value.status_code, info.value.stdout, info.value.stderr) == (408, "zz", "")
        async with sandburg.AsyncSandburg(
            "http://fake/api", "wrong", transport=httpx.MockTransport(api)
        ) as bad:
            with pytest.raises(sandburg.AuthenticationError):
                await bad.get(box.id)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (httpx.ConnectError("refused"), sandburg.SandburgConnectionError),
        (httpx.ReadTimeout("slow"), sandburg.SandburgTimeoutError),
        (httpx.RemoteProtocolError("bye"), sandburg.SandburgConnectionError),
        (httpx.UnsupportedProtocol("ftp"), sandburg.ConfigurationError),
    ],
)
def test_transport_errors_are_translated(exc: Exception, cls: type[Exception]) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    async def scenario() -> None:
        async with _client(fail) as sb:
            with pytest.raises(cls) as info:
                await sb.get("box")
            assert type(info.value) is cls and info.value.__cause__ is exc
            box = sandburg.AsyncSandbox(sb, sandburg.SandboxInfo(id="x"))
            with pytest.raises(cls):  # the streaming path too
                await box.fs.download_file("/f")

    asyncio.run(scenario())


def test_files(tmp_path: Path) -> None:
    api = FakeAPI()
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 1000)

    async def scenario() -> None:
        async with _client(api) as sb:
            box = await sb.create()
            assert (await box.fs.upload_local(src, "/w/src.bin")).size == 256000
            with src.open("rb") as f:
                await box.fs.upload_file(f, "/w/copy.bin")
            await box.fs.upload_file(bytearray(b"\r\n--x\r\n"), "/w/tricky")
            assert await box.fs.download_file("/w/tricky") == b"\r\n--x\r\n"
            dest = tmp_path / "out.bin"
            assert await box.fs.download_to("/w/copy.bin", dest) == 256000
            assert dest.read_bytes() == src.read_bytes()
            with pytest.raises(sandburg.FileNotFoundInSandboxError):
                await box.fs.download_to("/w/missing", tmp_path / "missing")
            assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin", "src.bin"]  # nothing partial
            info = await box.fs.info("/w/src.bin")
            assert info == sandburg.FileInfo(name="src.bin", path="/w/src.bin", size=256000)
            assert [f.name for f in await box.fs.list("/w/src.bin")] == ["src.bin"]
            with pytest.raises(TypeError, match="upload_local"):
                await box.fs.upload_file(str(src), "/w/x")  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="binary mode"):
                await box.fs.upload_file(io.StringIO("text"), "/w/x")  # type: ignore[arg-type]

    asyncio.run(scenario())


class _ChunkRecorder(io.BytesIO):
    """A file object that remembers how much each ``read`` asked for."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[int | None] = []

    def read(self, size: int | None = -1, /) -> bytes:
        self.reads.append(size)
        return super().read(size)


def test_upload_of_a_file_object_streams() -> None:
    api = FakeAPI()
    data = bytes(range(256)) * 4096  # 1 MiB
    src = _ChunkRecorder(data)
    src.seek(100)  # streamed from its beginning, as the sync client does

    async def scenario() -> None:
        async with _client(api) as sb:
            box = await sb.create()
            assert (await box.fs.upload_file(src, "/w/big")).size == len(data)
            assert await box.fs.download_file("/w/big") == data

    asyncio.run(scenario())
    # read piecewise while sending, never all at once
    assert len(src.reads) > 8 and all(n is not None and 0 < n <= 1 << 16 for n in src.reads), src.reads


def test_download_to_streams_into_the_file(tmp_path: Path) -> None:
    api = FakeAPI()
    dest = tmp_path / "out.bin"
    on_disk: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for i in range(4):
            # how much had reached the local file before this part of the answer was even produced
            on_disk.append(sum(p.stat().st_size for p in tmp_path.glob(".out.bin.*.part")))
            yield bytes([i]) * core.CHUNK_SIZE

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/files/download"):
            return httpx.Response(200, content=body())
        return api(request)

    async def scenario() -> None:
        async with _client(handler) as sb:
            box = await sb.create()
            assert await box.fs.download_to("/w/big", dest) == 4 * core.CHUNK_SIZE

    asyncio.run(scenario())
    assert on_disk == [i * core.CHUNK_SIZE for i in range(4)]
    assert dest.read_bytes() == b"".join(bytes([i]) * core.CHUNK_SIZE for i in range(4))
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_failed_download_leaves_nothing(tmp_path: Path) -> None:
    api = FakeAPI()

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * core.CHUNK_SIZE
        raise httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/files/download"):
            return httpx.Response(200, content=body())
        return api(request)

    async def scenario() -> None:
        async with _client(handler) as sb:
            box = await sb.create()
            with pytest.raises(sandburg.SandburgConnectionError, match="connection reset"):
                await box.fs.download_to("/w/big", tmp_path / "out.bin")

    asyncio.run(scenario())
    assert list(tmp_path.iterdir()) == []


def test_calls_run_concurrently() -> None:
    """Three execs are in flight at once: the fake answers none of them until all three have arrived."""
    api = FakeAPI()
    arrived: list[str] = []
    all_in = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/process/execute"):
            arrived.append(json.loads(request.content)["command"])
            if len(arrived) == 3:
                all_in.set()
            await asyncio.wait_for(all_in.wait(), timeout=5)
        return api(request)

    async def scenario() -> None:
        async with _client(handler) as sb:
            box = await sb.create(env={"A": "1"})
            results = await asyncio.gather(*(box.process.exec("echo $A && id -u") for _ in range(3)))
            assert [r.stdout for r in results] == ["1\n0\n"] * 3

    asyncio.run(scenario())
    assert len(arrived) == 3
