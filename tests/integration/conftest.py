"""Integration tests: the node runtime on this host, with real runc/runsc, btrfs and cgroups (root only).

One node (data dir + cgroup parent) per test session; every sandbox a test makes is deleted in a finalizer, and the
session ends by checking that nothing of it is left on the host.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from sandburg.node.agent_client import ExecResult
from sandburg.node.node import Node
from sandburg.node.spec import SandboxSpec
from tests._support.host import IMAGES, destroy, new_data_dir, node_for, require_root

TIERS = ["container", "gvisor"]


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    require_root()
    data_dir, cgroup_parent = new_data_dir("integration")
    n = node_for(data_dir, cgroup_parent, net=False)
    try:
        n.prepare(IMAGES)
        yield n
        leftover = n.inventory().ids()
        assert not leftover, f"sandboxes left on the host: {leftover}"
    finally:
        problems = destroy(data_dir, cgroup_parent)
        assert not problems, problems


class Box:
    """A running sandbox made by a test, driven through its agent."""

    def __init__(self, node: Node, spec: SandboxSpec, pid: int) -> None:
        self.node, self.spec, self.pid = node, spec, pid

    @property
    def id(self) -> str:
        return self.spec.id

    def sh(self, command: str, timeout: float = 60, **kw: Any) -> ExecResult:
        async def go() -> ExecResult:
            client = self.node.agent(self.id)
            try:
                return await client.exec(command, timeout=timeout, **kw)
            finally:
                await client.close()
                self.node._drop_agent(self.id)

        return asyncio.run(go())

    def out(self, command: str) -> str:
        r = self.sh(command)
        assert r.exit_code == 0, (command, r)
        return r.stdout.decode()


@pytest.fixture
def make_box(node: Node) -> Iterator[Callable[..., Box]]:
    made: list[SandboxSpec] = []

    @contextmanager
    def _noop() -> Iterator[None]:
        yield

    def make(isolation: str, image: str = "busybox", **kw: Any) -> Box:
        sid = str(uuid.uuid4())
        spec = SandboxSpec(
            id=sid,
            hostname=kw.pop("hostname", f"t-{sid[:8]}"),
            isolation=isolation,
            image=image,
            cpu=kw.pop("cpu", 1),
            memory_mib=kw.pop("memory_mib", 512),
            disk_mib=kw.pop("disk_mib", 1024),
            uid_base=100_000 + random.randint(30_001, 32_000) * 65536,
            **kw,
        )
        made.append(spec)
        pid = node.create(spec)
        return Box(node, spec, pid)

    yield make
    for spec in made:
        node.delete(spec.id, spec.isolation)


def host_marker(tmp_path: Any) -> str:
    path = os.path.join("/tmp", f"sandburg-host-marker-{uuid.uuid4().hex}")
    with open(path, "w") as fh:
        fh.write("host secret")
    return path
