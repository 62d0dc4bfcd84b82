"""Package steps (apt, pip, npm) from the local mirror that the fake internet serves (tests/_support/mirror.py),
and a browser sandbox: Chromium from Debian plus Playwright from PyPI, driven to click and take a screenshot.

The server under test is configured with the mirror's URLs (SANDBURG_APT_MIRROR, SANDBURG_PIP_INDEX,
SANDBURG_NPM_REGISTRY); its build sandboxes may reach mirror.test and nothing else of the fake internet.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandburg import ImageBuildFailedError, Sandburg

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def kinds_built(log: str) -> dict[str, str]:
    out = {}
    for m in re.finditer(r"^#\d+ \[(\w+)\] .*? \.\.\. (CACHED)$|^#\d+ \[(\w+)\] ", log, re.M):
        kind = m.group(1) or m.group(3)
        out[kind] = "cached" if m.group(2) else out.get(kind, "built")
    return out


def test_apt_and_pip_layers_and_a_pip_change(sb: Sandburg, make_box):
    name = uniq("pkgs")
    steps = [{"kind": "apt", "args": ["postgresql-client"]}, {"kind": "pip", "args": ["six"]}]
    logs: list[str] = []
    try:
        sb.images.build(name, steps, on_log=logs.append)
        assert kinds_built("".join(logs)) == {"apt": "built", "pip": "built"}, "".join(logs)
        box = make_box(image=name, isolation="container")
        r = box.process.exec("psql --version && python3 -c 'import six; print(six.__name__)'")
        assert r.exit_code == 0 and "psql (PostgreSQL)" in r.stdout and "six" in r.stdout, r

        # a changed pip list: the apt layer is a cache hit, pip is built again
        logs.clear()
        steps[1] = {"kind": "pip", "args": ["six", "attrs"]}
        sb.images.build(name, steps, on_log=logs.append)
        assert kinds_built("".join(logs)) == {"apt": "cached", "pip": "built"}, "".join(logs)
        box = make_box(image=name, isolation="gvisor")
        r = box.process.exec("psql --version && python3 -c 'import six, attrs; print(attrs.__name__)'")
        assert r.exit_code == 0 and "attrs" in r.stdout, r
    finally:
        sb.images.delete(name)


def test_npm_step_installs_node_when_missing(sb: Sandburg, make_box):
    name = uniq("npm")
    try:
        sb.images.build(name, [{"kind": "npm", "args": ["is-number"]}])
        box = make_box(image=name, isolation="container")
        r = box.process.exec(
            "node -e \"console.log(require('is-number')(42))\"",
            env={"NODE_PATH": "/usr/local/lib/node_modules"},
        )
        assert r.exit_code == 0 and r.stdout.strip() == "true", r
    finally:
        sb.images.delete(name)


def test_unknown_package_fails_clearly(sb: Sandburg):
    name = uniq("nopkg")
    try:
        try:
            sb.images.build(name, [{"kind": "apt", "args": ["no-such-package-xyz"]}])
            raise AssertionError("the build should have failed")
        except ImageBuildFailedError as exc:
            assert "apt" in str(exc), exc
        log = "".join(sb.images.logs(name))
        assert "Unable to locate package no-such-package-xyz" in log, log
        assert not [b for b in sb.list() if "sandburg.io/build" in b.labels]
    finally:
        sb.images.delete(name)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (
        kind == b"IHDR"
        and zlib.crc32(data[12 : 16 + length]) == struct.unpack(">I", data[16 + length : 20 + length])[0]
    )
    w, h = struct.unpack(">II", data[16:24])
    return w, h


@pytest.fixture(scope="module")
def images_to_delete(sb: Sandburg) -> Iterator[list[str]]:
    """Deleted after the module: both tiers' runs build the same layers, which stay cached in between."""
    names: list[str] = []
    yield names
    for n in names:
        sb.images.delete(n)


@pytest.mark.parametrize("tier", ["container", "gvisor"])
def test_playwright_screenshot_in_a_browser_sandbox(
    sb: Sandburg, server, fake_internet, tmp_path, tier, images_to_delete
):
    """examples/browser-agent (Chromium from Debian, Playwright from PyPI) through `sandburg up`: a script opens
    a page of the fake internet, clicks, and takes a screenshot, which is downloaded and checked."""
    example = tmp_path / "browser-agent"
    shutil.copytree(EXAMPLES / "browser-agent", example)
    name = uniq("browser")
    spec = example / "sandburg.yaml"
    text = (
        spec.read_text()
        .replace("name: browser-agent", f"name: {name}")
        .replace("example.com", "allowed.test")
    )
    spec.write_text(text.replace("isolation: container", f"isolation: {tier}"))
    env = dict(os.environ, SANDBURG_API_URL=server.api_url, SANDBURG_API_KEY=server.api_key)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "sandburg.cli.main", *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)

    try:
        r = cli("up", "-f", str(spec))
        assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
        box = sb.get(name)
        r2 = box.process.exec(
            "python3 /workspace/app/shot.py http://allowed.test/page.html /workspace/shot.png", timeout=120
        )
        assert r2.exit_code == 0, r2.stderr[-3000:]
        assert r2.stdout.strip() == "allowed.test test page | clicked on allowed.test", r2
        shot = box.fs.download_file("/workspace/shot.png")
        assert png_size(shot) == (640, 360) and len(shot) > 2000
    finally:
        cli("down", "-f", str(spec))
        images_to_delete.append(f"up/{name}")
