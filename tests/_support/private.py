"""A server of a test module's own, for tests that kill, restart or tamper with it (or move its clock)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests._support.host import destroy, new_data_dir, require_root
from tests._support.server import ServerProcess


@contextmanager
def private_server(tag: str, **env: str) -> Iterator[ServerProcess]:
    """Start it with `env` added; afterwards stop it, remove its data dir and cgroups, and fail the module if
    anything of it was left on the host."""
    require_root()
    data_dir, cgroup_parent = new_data_dir(tag)
    srv = ServerProcess(data_dir, cgroup_parent, extra_env=env or None)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        problems = destroy(data_dir, cgroup_parent)
        assert not problems, problems
