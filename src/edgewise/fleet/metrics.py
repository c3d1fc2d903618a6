"""Prometheus `/metrics`: the server itself (requests, latency, ingest) and fleet gauges.

Fleet gauges (devices online/offline/revoked, devices per bundle version and health, deployments
per status) are computed from the database at scrape time, so every replica reports the same truth.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgewise.fleet.context import ServerContext
from edgewise.fleet.db.models import Deployment, Device

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 30.0, 60.0)


class FleetCollector(Collector):
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily]:
        cutoff = time.time() - self.ctx.settings.offline_after_s
        with self.ctx.db.session(write=False) as session:
            live = Device.revoked.is_(False)
            total = session.scalar(select(func.count()).select_from(Device).where(live)) or 0
            online = session.scalar(select(func.count()).select_from(Device).where(live, Device.last_seen >= cutoff))
            revoked = session.scalar(select(func.count()).select_from(Device).where(Device.revoked.is_(True))) or 0
            versions = session.execute(select(Device.current_version, func.count()).where(live)
                                       .group_by(Device.current_version)).all()
            health = session.execute(select(Device.health, func.count()).where(live)
                                     .group_by(Device.health)).all()
            statuses = session.execute(select(Deployment.status, func.count())
                                       .group_by(Deployment.status)).all()
        devices = GaugeMetricFamily("edgewise_devices", "enrolled devices by connectivity", labels=["state"])
        devices.add_metric(["online"], float(online or 0))
        devices.add_metric(["offline"], float(total - (online or 0)))
        devices.add_metric(["revoked"], float(revoked))
        yield devices
        by_version = GaugeMetricFamily("edgewise_devices_by_bundle_version", "devices per running bundle version",
                                       labels=["version"])
        for version, count in versions:
            by_version.add_metric([version or "none"], float(count))
        yield by_version
        by_health = GaugeMetricFamily("edgewise_devices_by_health", "devices per reported health", labels=["health"])
        for status, count in health:
            by_health.add_metric([status], float(count))
        yield by_health
        deployments = GaugeMetricFamily("edgewise_deployments", "deployments per status", labels=["status"])
        for status, count in statuses:
            deployments.add_metric([status], float(count))
        yield deployments


class ServerMetrics:
    def __init__(self, ctx: ServerContext) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("edgewise_http_requests", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("edgewise_http_request_seconds", "HTTP request latency", ["method", "route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.ingested_items = Counter("edgewise_ingested", "items stored by ingest", ["kind"], registry=self.registry)
        self.registry.register(FleetCollector(ctx))

    def ingested(self, events: int, telemetry: int, duplicates: int) -> None:
        self.ingested_items.labels("event").inc(events)
        self.ingested_items.labels("telemetry").inc(telemetry)
        self.ingested_items.labels("duplicate").inc(duplicates)


class MeasureRequests:
    """Pure ASGI middleware (Starlette's decorator form costs a task and a stream per request)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # The route template (not the raw path) keeps label cardinality bounded.
            template = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], template, str(status[0])).inc()
            self.metrics.latency.labels(scope["method"], template).observe(time.perf_counter() - started)


def install_metrics(app: FastAPI, ctx: ServerContext) -> None:
    metrics = ServerMetrics(ctx)
    ctx.metrics = metrics

    app.add_middleware(MeasureRequests, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
