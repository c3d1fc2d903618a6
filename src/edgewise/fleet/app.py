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

import edgewise
from edgewise.core.signing import load_public_key
from edgewise.core.wire import API_PREFIX
from edgewise.fleet.api import admin, data, deployments, device, devices, quality
from edgewise.fleet.auth import DeviceAuthenticator
from edgewise.fleet.context import ServerContext
from edgewise.fleet.db import Database, open_database
from edgewise.fleet.devices.forwarding import Forwarder
from edgewise.fleet.gateway.device_requests import DeviceRequests, InProcessDeviceRequests, build_group_commit
from edgewise.fleet.gateway.gc_tuning import tune_gc
from edgewise.fleet.gateway.notify import Notifier
from edgewise.fleet.housekeeping import Housekeeper
from edgewise.fleet.http_errors import install_error_handlers
from edgewise.fleet.http_guard import FailedAuthGuard, LimitBodySize, TextGuard
from edgewise.fleet.rollouts.bundles import BundleCatalog, BundleStore, add_trusted_key
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
        from edgewise.fleet.gateway.device_process import DeviceProcess

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
    # Added innermost first: a request meets the failed-auth guard, then the text guard, then the size limit.
    app.add_middleware(LimitBodySize, max_bytes=settings.max_body_bytes)
    app.add_middleware(TextGuard)
    app.add_middleware(FailedAuthGuard, limiter=ctx.auth_limiter)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        # Not ready while device requests cannot be served (the device process restarting): a load
        # balancer's readiness probe then sends devices elsewhere.
        if not ctx.device_requests.running:
            return JSONResponse({"status": "unavailable", "reason": "device request work is starting",
                                 "version": edgewise.__version__}, status_code=503)
        return JSONResponse({"status": "ok", "version": edgewise.__version__,
                             "device_work_restarts": ctx.device_requests.restarts})

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    return app


def _add_optional_parts(app: FastAPI, ctx: ServerContext) -> None:
    """The dashboard and /metrics, each in its own module."""
    from edgewise.fleet.dashboard import mount_dashboard
    from edgewise.fleet.metrics import install_metrics

    mount_dashboard(app)
    install_metrics(app, ctx)
