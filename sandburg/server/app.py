"""The FastAPI application: wiring of settings, store, node runtime, services and routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .._version import __version__
from ..node import crash
from ..node.net import NetConfig
from ..node.node import Node, NodeConfig
from . import errors, preview, testhooks, unsupported
from .auth import KeyCache, bootstrap
from .config import Settings
from .db import make_engine, make_sessionmaker
from .events import EventLog
from .migrate import upgrade
from .netservice import NetService
from .routers import (
    coderun,
    files,
    git,
    health,
    network,
    process,
    pty,
    sandbox,
    sandbox_settings,
    sessions,
    toolbox_info,
)
from .sandboxes import SandboxService

log = logging.getLogger("sandburg.server")


def api_url(settings: Settings) -> str:
    return (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/") + "/api"


def create_app(settings: Settings | None = None, *, start_runtime: bool = True) -> FastAPI:
    """The app. With `start_runtime=False` nothing on the host is touched (OpenAPI export, docs)."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not start_runtime:
            yield
            return
        engine = make_engine(settings.db_path)
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        new_key = bootstrap(sessions, settings.credentials_path, api_url(settings))
        if new_key:
            log.warning(
                "created the local admin API key (stored in %s): %s", settings.credentials_path, new_key
            )
        node = Node(
            NodeConfig(
                data_dir=settings.data_dir, cache_dir=settings.cache_dir, cgroup_parent=settings.cgroup_parent,
                agent_start_timeout=settings.agent_start_timeout, run_limit_bytes=settings.run_limit_mib << 20,
                net=NetConfig(
                    bridge=settings.net_bridge, subnet=settings.net_subnet, table=settings.net_table,
                    tag=settings.net_tag,
                ),
            )
        )  # fmt: skip
        node.prepare(settings.images)
        crash.arm(settings.crash_at if settings.test_mode else None)
        events = EventLog(sessions)
        assert node.net is not None
        net = NetService(settings, node.net, events)
        await net.start()  # the resolver is up before any sandbox (re)starts
        svc = SandboxService(settings, sessions, node, net)
        svc.reconcile()
        app.state.keys = KeyCache(sessions)
        app.state.sandboxes = svc
        app.state.events = events
        app.state.preview_secret = preview.load_or_create_secret(settings.preview_key_path)
        log.info("sandburg %s ready on %s (data dir %s)", __version__, api_url(settings), settings.data_dir)
        try:
            yield
        finally:
            svc.close()
            await net.close()
            await preview.close_clients()
            events.close()
            engine.dispose()

    app = FastAPI(
        title="sandburg",
        version=__version__,
        description="Self-hostable sandboxes for AI agents. Daytona-compatible REST API.",
        lifespan=lifespan,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    errors.install(app)
    # sandbox_settings and toolbox_info before sandbox and sessions: each declares a literal path that a
    # parametrised route there would take (`/sandbox/for-runner`, `/process/session/entrypoint`)
    for r in (
        health.router, sandbox_settings.router, sandbox.router, process.router, coderun.router, toolbox_info.router,
        sessions.router, pty.router, files.router, git.router, network.router, preview.router,
    ):  # fmt: skip
        app.include_router(r, prefix="/api")
    app.include_router(preview.proxy_router)  # /preview/<id>/<port>/...: token-authenticated, no API key
    unsupported.install(app)  # Daytona endpoints not served yet answer 501 (see errors.py), socket.io too
    if settings.test_mode:
        testhooks.install(app)
    return app
