"""The FastAPI application: wiring of settings, store, node runtime, services and routers."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from .._version import __version__
from ..node import crash
from ..node.activity import ActivityMonitor
from ..node.net import NetConfig
from ..node.node import Node, NodeConfig
from . import errors, lifecycle, preview, testhooks, unsupported
from .activitysink import ActivitySink
from .audit import AuditLog, NoAudit
from .auditchain import AuditKeyError, load_or_create_key
from .auditmw import AuditMiddleware
from .auth import KeyCache, bootstrap
from .bodylimit import JsonBodyLimit
from .builder import BUILD_LABEL, Builder
from .buildplan import Mirrors
from .config import Settings
from .db import Sandbox, make_engine, make_sessionmaker
from .errors import ApiError
from .events import EventLog
from .imageservice import ImageService
from .migrate import upgrade
from .netservice import NetService
from .routers import (
    audit,
    coderun,
    files,
    git,
    health,
    images,
    network,
    process,
    pty,
    sandbox,
    sandbox_settings,
    secrets,
    sessions,
    snapshots,
    state_snapshots,
    tenants,
    toolbox_info,
    volumes,
)
from .sandboxes import SandboxService
from .schemas import CreateSandbox
from .secretcrypto import MasterKeyError, load_master_key
from .secretservice import SecretService
from .secretstore import SqlSecretBackend
from .state_snapshots import StateSnapshots
from .tenants import TenantService
from .volumes import VolumeService

log = logging.getLogger("sandburg.server")


def api_url(settings: Settings) -> str:
    return (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/") + "/api"


def make_images(
    settings: Settings, sessions: sessionmaker[Session], node: Node, svc: SandboxService
) -> ImageService:
    """The image service and its builder; builds that a restart interrupted are failed and their sandboxes
    removed."""

    def create(org: str, req: CreateSandbox, ref: str) -> str:
        return svc.create(org, req, image_ref=ref).id

    def delete(org: str, sid: str) -> None:
        svc.delete(org, sid)

    mirrors = Mirrors(apt=settings.apt_mirror, pip=settings.pip_index, npm=settings.npm_registry)
    builder = Builder(
        node, create, delete, mirrors, os.path.join(settings.data_dir, "context"), settings.build_step_timeout
    )
    images = ImageService(sessions, node, builder, settings.data_dir, settings.build_isolation)
    with sessions() as s:
        leftovers = [
            (r.organization_id, r.id) for r in s.scalars(select(Sandbox)) if BUILD_LABEL in (r.labels or {})
        ]
    for org, sid in leftovers:
        try:
            svc.delete(org, sid)
        except ApiError as exc:
            log.error("removing build sandbox %s failed: %s", sid, exc)
    images.recover()
    return images


def create_app(settings: Settings | None = None, *, start_runtime: bool = True) -> FastAPI:
    """The app. With `start_runtime=False` nothing on the host is touched (OpenAPI export, docs)."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not start_runtime:
            yield
            return
        try:  # first: a server that cannot read its secrets must not start anything
            master_key, key_source = load_master_key(settings.master_key_path)
        except MasterKeyError as exc:
            log.error("cannot start: secrets master key: %s", exc)
            raise
        try:  # its key is a file outside the store: whoever can edit the database cannot re-sign the log
            audit_key = load_or_create_key(settings.audit_key_path)
        except AuditKeyError as exc:
            log.error("cannot start: audit key: %s", exc)
            raise
        engine = make_engine(settings.db_path)
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        audit_log: AuditLog | NoAudit = (
            AuditLog(sessions, audit_key, settings.audit_retention_days) if settings.audit else NoAudit()
        )
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
        svc.secrets = secret_svc = SecretService(sessions, SqlSecretBackend(sessions, master_key))
        secret_svc.audit = audit_log
        log.info("secrets: local encrypted store, master key %s from %s", master_key.key_id, key_source)
        svc.volumes = volume_svc = VolumeService(sessions, settings.data_dir, master_key)
        volume_svc.reconcile()  # before the sandboxes': a sandbox restarted there finds its volumes mounted
        if settings.activity and audit_log.enabled:  # before reconcile: the sandboxes it restarts are watched
            node.activity = ActivityMonitor(ActivitySink(sessions, audit_log, secret_svc), node.cgroup_path)
        svc.reconcile()
        if node.activity:  # the sandboxes it re-adopted were started by an earlier server: attach to them
            for sid, live in list(svc.live.items()):
                node.adopt_activity(sid, live.isolation)
        volume_svc.collect()  # after: the sandboxes' reconcile released what orphaned volumes were held by
        image_svc = make_images(settings, sessions, node, svc)
        svc.images = image_svc
        states = StateSnapshots(svc, image_svc)
        states.recover()
        app.state.keys = KeyCache(sessions)
        app.state.tenants = TenantService(sessions, app.state.keys)
        app.state.sandboxes = svc
        app.state.secrets = secret_svc
        app.state.volumes = volume_svc
        app.state.images = image_svc
        app.state.states = states
        app.state.events = events
        app.state.audit = audit_log
        app.state.audit_key = audit_key
        app.state.preview_secret = preview.load_or_create_secret(settings.preview_key_path)
        reaper = lifecycle.Reaper(svc, activity, settings.reaper_interval)  # docs/lifecycle.md
        reaper.start()
        log.info("sandburg %s ready on %s (data dir %s)", __version__, api_url(settings), settings.data_dir)
        try:
            yield
        finally:
            reaper.close()
            image_svc.close()
            svc.close()
            await net.close()
            await preview.close_clients()
            events.close()
            if node.activity:  # after the sandboxes' service, before the log its records go to
                node.activity.close()
            audit_log.close()  # after the event log: its last network records are copied in
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
    # the lifecycle's clock and activity record: in the app (not the lifespan) since a middleware feeds them
    clock = lifecycle.Clock(os.path.join(settings.data_dir, "test-clock") if settings.test_clock else None)
    activity = lifecycle.Activity(clock)
    app.state.clock = clock
    errors.install(app)
    # sandbox_settings and toolbox_info before sandbox and sessions: each declares a literal path that a
    # parametrised route there would take (`/sandbox/for-runner`, `/process/session/entrypoint`)
    for r in (
        health.router, sandbox_settings.router, sandbox.router, process.router, coderun.router, toolbox_info.router,
        sessions.router, pty.router, files.router, git.router, network.router, preview.router, images.router,
        snapshots.router, state_snapshots.router, secrets.router, volumes.router, audit.router, tenants.router,
    ):  # fmt: skip
        app.include_router(r, prefix="/api")
    app.include_router(preview.proxy_router)  # /preview/<id>/<port>/...: token-authenticated, no API key
    unsupported.install(app)  # Daytona endpoints not served yet answer 501 (see errors.py), socket.io too
    app.add_middleware(lifecycle.ActivityMiddleware, activity=activity)
    app.add_middleware(JsonBodyLimit)  # no 100 MiB labels (docs/security.md)
    if settings.test_mode:
        testhooks.install(app)
    if settings.test_clock:
        testhooks.install_clock(app, clock)
    if settings.audit:
        app.add_middleware(AuditMiddleware)
    return app
