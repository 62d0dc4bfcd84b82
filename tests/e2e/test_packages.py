"""Package steps (apt, pip, npm) from the local mirror that the fake internet serves (tests/_support/mirror.py),
and a browser sandbox: Chromium from Debian plus Playwright from PyPI, driven to click and take a screenshot.

The server under test is configured with the mirror's URLs (SANDBURG_APT_MIRROR, SANDBURG_PIP_INDEX,
SANDBURG_NPM_REGISTRY); its build sandboxes may reach mirror.test and nothing else of the fake internet.
"""

from __future__ import annotations

import re
import struct
import uuid
import zlib

from sandburg import ImageBuildFailedError, Sandburg

PLAYWRIGHT_SCRIPT = """
import sys
from playwright.sync_api import sync_playwright
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium")
    page = browser.new_page(viewport={"width": 640, "height": 360})
    page.goto(sys.argv[1])
    page.click("#go")
    page.wait_for_selector("#result:has-text('clicked')")
    page.screenshot(path="/workspace/shot.png")
    print(page.title(), "|", page.inner_text("#result"))
    browser.close()
"""


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


def test_playwright_screenshot_in_a_browser_sandbox(sb: Sandburg, make_box, fake_internet):
    """The issue's browser spec (chromium from Debian, playwright from PyPI) on the container tier."""
    name = uniq("browser")
    try:
        sb.images.build(
            name,
            [
                {"kind": "apt", "args": ["chromium", "fonts-liberation", "libatomic1"]},
                {"kind": "pip", "args": ["playwright"]},
            ],
        )
        box = make_box(image=name, isolation="container", memory=2, network={"allow": ["allowed.test"]})
        box.fs.upload_file(PLAYWRIGHT_SCRIPT.encode(), "/workspace/shot.py")
        r = box.process.exec("python3 /workspace/shot.py http://allowed.test/page.html", timeout=120)
        assert r.exit_code == 0, r.stderr[-3000:]
        assert r.stdout.strip() == "allowed.test test page | clicked on allowed.test", r
        shot = box.fs.download_file("/workspace/shot.png")
        assert png_size(shot) == (640, 360) and len(shot) > 2000
    finally:
        sb.images.delete(name)
