"""The foundation issue's example through ``AsyncSandburg``, on both tiers, against the real server.

Each test drives its coroutine with ``asyncio.run`` (no async test plugin). Sandboxes carry a ``test`` label and
are deleted in a ``finally``; the session's leak check (tests/e2e/conftest.py) catches anything left.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sandburg import AsyncSandbox, AsyncSandburg, ExecTimeoutError, FileNotFoundInSandboxError
from tests.e2e.conftest import TIERS


@pytest.mark.parametrize("tier", TIERS)
def test_issue_example_async(server, monkeypatch, tier, request):
    monkeypatch.setenv("SANDBURG_API_URL", server.api_url)
    monkeypatch.setenv("SANDBURG_API_KEY", server.api_key)
    labels = {"team": "x", "test": request.node.name[:60]}

    async def example() -> None:
        async with AsyncSandburg() as sb:  # SANDBURG_API_URL / SANDBURG_API_KEY, else the local default
            box = await sb.create(
                isolation=tier, image="busybox", cpu=2, memory="4GiB", env={"A": "1"}, labels=labels
            )
            try:
                assert isinstance(box, AsyncSandbox) and box.state == "started" and box.isolation == tier
                r = await box.process.exec("echo $A && id -u", cwd="/workspace", timeout=10)
                assert (r.exit_code, r.stdout, r.stderr) == (0, "1\n0\n", "")
                await box.fs.upload_file(b"hello", "/workspace/a.txt")
                assert await box.fs.download_file("/workspace/a.txt") == b"hello"
                await box.stop()
                assert box.state == "stopped"
                await box.start()
                assert box.state == "started"
                assert await box.fs.download_file("/workspace/a.txt") == b"hello"  # stop kept the filesystem
                assert box.id in [b.id for b in await sb.list(labels={"team": "x"})]
                assert (await sb.get(box.name)).id == box.id
            finally:
                await box.delete()
            assert box.state == "destroyed"
            assert box.id not in [b.id for b in await sb.list()]

    asyncio.run(example())


@pytest.mark.parametrize("tier", TIERS)
def test_async_concurrency_streaming_and_errors(server, tier, request, tmp_path: Path):
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * (12 << 12))  # 12 MiB: several chunks each way

    async def scenario() -> None:
        async with AsyncSandburg(server.api_url, server.api_key) as sb:
            box = await sb.create(isolation=tier, image="busybox", labels={"test": request.node.name[:60]})
            try:
                # calls on one client overlap: three one-second sleeps take far less than three seconds
                start = asyncio.get_running_loop().time()
                results = await asyncio.gather(*(box.process.exec(f"sleep 1; echo {i}") for i in range(3)))
                assert [r.stdout for r in results] == ["0\n", "1\n", "2\n"]
                assert asyncio.get_running_loop().time() - start < 2.5

                assert (await box.fs.upload_local(src, "/workspace/big.bin")).size == src.stat().st_size
                info = await box.fs.info("/workspace/big.bin")
                assert (info.size, info.is_dir) == (src.stat().st_size, False)
                dest = tmp_path / "copy.bin"
                assert await box.fs.download_to("/workspace/big.bin", dest) == src.stat().st_size
                assert dest.read_bytes() == src.read_bytes()

                with pytest.raises(FileNotFoundInSandboxError):
                    await box.fs.download_to("/workspace/missing", tmp_path / "missing.bin")
                assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.bin", "src.bin"]
                with pytest.raises(ExecTimeoutError):
                    await box.process.exec("sleep 30", timeout=1)
                assert await box.set_labels({"test": request.node.name[:60], "k": "v"}) == box.labels
                await box.refresh()
                assert box.labels["k"] == "v" and box.is_running
            finally:
                await box.delete()

    asyncio.run(scenario())


@pytest.mark.parametrize("tier", TIERS)
def test_async_fs_list(server, tier, request):
    async def scenario() -> None:
        async with AsyncSandburg(server.api_url, server.api_key) as sb:
            box = await sb.create(isolation=tier, image="busybox", labels={"test": request.node.name[:60]})
            try:
                await box.fs.upload_file(b"abc", "/workspace/d/f.txt")
                entries = await box.fs.list("/workspace/d")
                assert [(f.name, f.size, f.is_dir) for f in entries] == [("f.txt", 3, False)]
            finally:
                await box.delete()

    asyncio.run(scenario())
