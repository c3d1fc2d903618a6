"""The FastAPI application factory: `create_app(settings)` builds the whole control plane."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

from anyio import to_thread
from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

import edgewise
from edgewise.core.signing import load_public_key
from edgewise.core.wire import API_PREFIX
from edgewise.fleet.api import admin, data, deployments, device, devices, quality
from edgewise.fleet.auth import DeviceAuthenticator
from edgewise.fleet.bundles import BundleCatalog, BundleStore, add_trusted_key
from edgewise.fleet.context import ServerContext
from edgewise.fleet.db import Database, open_database
from edgewise.fleet.device_requests import DeviceRequests, InProcessDeviceRequests, build_group_commit
from edgewise.fleet.errors import error_response, install_error_handlers
from edgewise.fleet.forwarding import Forwarder
from edgewise.fleet.gc_tuning import tune_gc
from edgewise.fleet.housekeeping import Housekeeper
from edgewise.fleet.notify import Notifier
from edgewise.fleet.settings import ServerSettings

log = logging.getLogger("edgewise.fleet")


def build_context(settings: ServerSettings, store: BundleStore | None = None, db: Database | None = None
                  ) -> ServerContext:
    db = db or open_database(settings.db_url)
    for key in settings.trusted_keys:
        add_trusted_key(db, load_public_key(key))
    devices = DeviceAuthenticator(db)
    requests = _device_requests(settings, db, devices)
    ctx = ServerContext(
        settings=settings, db=db, catalog=BundleCatalog(db, settings.store_url, store, settings.cache_dir),
        devices=devices, notifier=Notifier(settings.wake_rate_per_s, requests.latency),
        forwarder=Forwarder(settings.forwarding),
        device_requests=requests,
    )
    requests.after = ctx.announce  # rollout changes from the batch's deferred evaluations
    return ctx


def _device_requests(settings: ServerSettings, db: Database, devices: DeviceAuthenticator) -> DeviceRequests:
    """Device requests in a process of their own (the default), or in this one: with
    `device_process=False`, for an in-memory SQLite database, which no other process can open, and
    off POSIX (the process is handed its socket by file descriptor)."""
    if settings.device_process and not db.in_memory and os.name == "posix":
        from edgewise.fleet.device_process import DeviceProcess

        return DeviceProcess(settings)
    return InProcessDeviceRequests(build_group_commit(db, devices, settings))


async def _housekeeping_loop(housekeeper: Housekeeper, period_s: float) -> None:
    while True:
        try:
            await to_thread.run_sync(housekeeper.tick)
        except Exception:  # one failed round (e.g. the database restarting) must not end housekeeping
            log.exception("housekeeping round failed")
        await asyncio.sleep(period_s)


def create_app(settings: ServerSettings, store: BundleStore | None = None) -> FastAPI:
    ctx = build_context(settings, store)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        tune_gc()
        ctx.notifier.bind(asyncio.get_running_loop())
        await ctx.device_requests.start(asyncio.get_running_loop())
        ctx.forwarder.start()
        task = asyncio.create_task(_housekeeping_loop(Housekeeper(ctx), settings.tick_s))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await ctx.device_requests.stop()
            ctx.forwarder.stop()
            ctx.db.dispose()

    app = FastAPI(
        title="edgewise fleet server",
        version=edgewise.__version__,
        description="Control plane for edgewise devices: enrollment, desired/reported state, rollouts, ingest.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    for router in (device.router, devices.router, deployments.router, data.router, admin.router, quality.router):
        app.include_router(router, prefix=API_PREFIX)
    _add_optional_parts(app, ctx)
    app.add_middleware(LimitBodySize, max_bytes=settings.max_body_bytes)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        # Not ready while device requests cannot be served (the device process restarting): a load
        # balancer's readiness probe then sends devices elsewhere.
        if not ctx.device_requests.running:
            return JSONResponse({"status": "unavailable", "reason": "device request work is starting",
                                 "version": edgewise.__version__}, status_code=503)
        return JSONResponse({"status": "ok", "version": edgewise.__version__})

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    return app


class LimitBodySize:
    """Pure ASGI middleware: refuse a declared body over `max_bytes` before reading it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = dict(scope["headers"]).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.max_bytes:
                response = error_response(413, "too_large", f"request body of {int(declared)} bytes is over "
                                          f"{self.max_bytes}", "send smaller ingest batches")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _add_optional_parts(app: FastAPI, ctx: ServerContext) -> None:
    """The dashboard and /metrics, each in its own module."""
    from edgewise.fleet.dashboard import mount_dashboard
    from edgewise.fleet.metrics import install_metrics

    mount_dashboard(app)
    install_metrics(app, ctx)
