"""End-to-end tests: a real `python -m sandburg.server` subprocess, driven through the SDK, CLI and raw HTTP.

One server per test session on its own data dir, port and cgroup parent; every sandbox a test makes is deleted in
a finalizer, and the session ends by checking that nothing of it is left on the host.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sandburg import Sandbox, Sandburg
from tests._support import fakenet, mirror
from tests._support.host import destroy, new_data_dir, node_for, require_root
from tests._support.registry import BuiltImage, Registry, build_busybox_image, push, registry
from tests._support.server import ServerProcess

TIERS = ["container", "gvisor"]


@pytest.fixture(scope="session")
def fake_internet() -> Iterator[fakenet.FakeNet]:
    require_root()
    net = fakenet.start()
    try:
        yield net
    finally:
        fakenet.stop(net)


@dataclass(frozen=True)
class OciFixture:
    registry: Registry
    ref: str  # the test image on the registry
    image: BuiltImage  # its OCI layout on disk
    work: str  # a dir for archives


@pytest.fixture(scope="session")
def oci(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OciFixture]:
    """A docker-registry on loopback holding a busybox image the test assembled itself (no downloads)."""
    work = str(tmp_path_factory.mktemp("oci"))
    with registry() as reg:
        img = build_busybox_image(os.path.join(work, "layout"))
        yield OciFixture(reg, push(img, reg.host), img, work)


@pytest.fixture(scope="session")
def server(fake_internet: fakenet.FakeNet) -> Iterator[ServerProcess]:
    require_root()
    data_dir, cgroup_parent = new_data_dir("e2e")
    # a low pids limit makes the fork-bomb tests quick; the resolver's upstream is the fake internet's DNS
    # builds install packages from the local mirror that the fake internet serves (tests never use the registries)
    mirror.ensure_filled()
    urls = mirror.urls(fake_internet)
    env = {
        "SANDBURG_PIDS_LIMIT": "256", "SANDBURG_DNS_UPSTREAM": fake_internet.dns,
        "SANDBURG_APT_MIRROR": urls["apt"], "SANDBURG_PIP_INDEX": urls["pip"], "SANDBURG_NPM_REGISTRY": urls["npm"],
    }  # fmt: skip
    srv = ServerProcess(data_dir, cgroup_parent, env)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        leftover = node_for(data_dir, cgroup_parent).inventory().ids()
        problems = destroy(data_dir, cgroup_parent)
        assert not problems, problems
        assert not leftover, f"sandboxes left on the host after the e2e session: {leftover}\n{srv.tail()}"


@pytest.fixture(scope="session")
def sb(server: ServerProcess) -> Iterator[Sandburg]:
    with Sandburg(api_url=server.api_url, api_key=server.api_key) as client:
        yield client


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.api_url + "/", headers={"Authorization": f"Bearer {server.api_key}"}, timeout=120
    ) as client:
        yield client


@pytest.fixture
def cli(server: ServerProcess) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`cli("up", "-f", path)`: the `sandburg` CLI as a subprocess against the session's server."""
    env = dict(os.environ, SANDBURG_API_URL=server.api_url, SANDBURG_API_KEY=server.api_key)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sandburg.cli.main", *args], env=env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip

    return run


@pytest.fixture
def make_box(sb: Sandburg, request: pytest.FixtureRequest) -> Iterator[Callable[..., Sandbox]]:
    made: list[Sandbox] = []

    def make(**kw: Any) -> Sandbox:
        kw.setdefault("image", "busybox")
        kw.setdefault("labels", {})
        kw["labels"] = {**kw["labels"], "test": request.node.name[:60]}
        box = sb.create(**kw)
        made.append(box)
        return box

    yield make
    for box in made:
        try:
            box.delete()
        except (
            Exception
        ) as exc:  # already deleted by the test is fine; anything else is reported by the leak check
            if "not found" not in str(exc).lower():
                print(f"cleanup of {box.id} failed: {exc}")


@pytest.fixture(autouse=True)
def _leak_trace(request: pytest.FixtureRequest) -> Iterator[None]:
    """With SANDBURG_LEAK_TRACE=<file>: after each test, host state of sandboxes the API no longer lists is
    written to that file with the test's name (finds which test leaked what the session check reports)."""
    yield
    path = os.environ.get("SANDBURG_LEAK_TRACE")
    if not path or "server" not in request.fixturenames:
        return
    srv: ServerProcess = request.getfixturevalue("server")
    with Sandburg(api_url=srv.api_url, api_key=srv.api_key) as client:
        known = {b.id for b in client.list()}
    extra = node_for(srv.data_dir, srv.cgroup_parent).inventory().ids() - known
    if extra:
        with open(path, "a") as fh:
            fh.write(f"{request.node.nodeid}: {sorted(extra)}\n")
