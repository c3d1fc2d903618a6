"""Dashboard pages: overview, devices, one device (state, telemetry charts, events per class, line
crossings, events with snapshots), deployments (live progress), one deployment, bundles. Operators
sign in with their token, which is kept in an HttpOnly, SameSite=Strict cookie; every page needs
the `read` scope. The events page is in `event_views.py`, shadow and captures in `quality_views.py`."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from edgewise.core.errors import AuthError
from edgewise.fleet.api.deployments import deployment_detail, list_bundles
from edgewise.fleet.api.devices import device_out
from edgewise.fleet.auth import DASHBOARD_COOKIE, bearer_token, operator_from_token
from edgewise.fleet.context import ServerContext, context_of
from edgewise.fleet.dashboard.charts import line_chart
from edgewise.fleet.dashboard.counts_section import counts_section
from edgewise.fleet.dashboard.time_window import DEFAULT_RANGE, RangeKey, window_for
from edgewise.fleet.db.models import Bundle, Deployment, Device, Event, Telemetry
from edgewise.fleet.errors import NotFound
from edgewise.fleet.rollouts.operator_actions import progress

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["ago"] = lambda ts: "never" if not ts else (
    f"{time.time() - ts:.0f}s ago" if time.time() - ts < 120 else f"{(time.time() - ts) / 60:.0f}m ago")
templates.env.filters["when"] = lambda ts: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"
router = APIRouter(prefix="/ui", include_in_schema=False)


def _signed_in(request: Request) -> ServerContext | None:
    ctx = context_of(request)
    try:
        operator_from_token(ctx.db, bearer_token(request), "read")
    except AuthError:
        return None
    return ctx


def signed_in_page(page: Callable[..., Response]) -> Callable[..., Response]:
    """A dashboard page: the operator signs in first (else: the sign-in form), then
    `page(..., ctx=...)` renders. FastAPI sees the page's parameters without `ctx`."""
    signature = inspect.signature(page)

    @functools.wraps(page)
    def signed_in(**params: Any) -> Response:
        ctx = _signed_in(params["request"])
        if ctx is None:
            return _login_redirect()
        return page(**params, ctx=ctx)

    signed_in.__signature__ = signature.replace(  # type: ignore[attr-defined]  # read by FastAPI
        parameters=[p for name, p in signature.parameters.items() if name != "ctx"])
    return signed_in


def _page(request: Request, name: str, **values: Any) -> Response:
    return templates.TemplateResponse(request, name, values)


def _login_redirect() -> RedirectResponse:
    return RedirectResponse("/ui/login", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    return _page(request, "login.html", error="")


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    try:
        operator_from_token(context_of(request).db, token, "read")
    except AuthError as error:
        return templates.TemplateResponse(request, "login.html", {"error": error.message}, status_code=401)
    response = RedirectResponse("/ui/", status_code=303)
    response.set_cookie(DASHBOARD_COOKIE, token, httponly=True, samesite="strict", max_age=12 * 3600)
    return response


@router.get("/logout")
def logout() -> Response:
    response = _login_redirect()
    response.delete_cookie(DASHBOARD_COOKIE)
    return response


@router.get("/", response_class=HTMLResponse)
@signed_in_page
def overview(request: Request, ctx: ServerContext) -> Response:
    from edgewise.fleet.api.data import fleet_summary

    summary = fleet_summary(request, None)  # type: ignore[arg-type]  # the API route as a function: the page signed in
    with ctx.db.session(write=False) as session:
        alarms = session.scalars(select(Event).where(Event.priority == "alarm").order_by(Event.id.desc())
                                 .limit(10)).all()
        deployments = session.scalars(select(Deployment).order_by(Deployment.created_at.desc()).limit(5)).all()
        counts = progress(session, [d.id for d in deployments])
    return _page(request, "overview.html", summary=summary, alarms=alarms, deployments=deployments, counts=counts)


@router.get("/devices", response_class=HTMLResponse)
@signed_in_page
def devices_page(request: Request, ctx: ServerContext) -> Response:
    with ctx.db.session(write=False) as session:
        rows = session.scalars(select(Device).order_by(Device.name).limit(1000)).all()
        devices = [device_out(d, ctx.settings.offline_after_s) for d in rows]
    return _page(request, "devices.html", devices=devices)


@router.get("/devices/{device_id}", response_class=HTMLResponse)
@signed_in_page
def device_page(device_id: str, request: Request, ctx: ServerContext,
                range_key: RangeKey = Query(DEFAULT_RANGE, alias="range")) -> Response:
    with ctx.db.session(write=False) as session:
        device = session.get(Device, device_id)
        if device is None:
            return _page(request, "missing.html", what=f"device {device_id}")
        shown = device_out(device, ctx.settings.offline_after_s, detail=True)
        telemetry = list(reversed(session.scalars(select(Telemetry).where(Telemetry.device_id == device_id)
                                                  .order_by(Telemetry.ts.desc()).limit(300)).all()))
        events = session.scalars(select(Event).where(Event.device_id == device_id).order_by(Event.id.desc())
                                 .limit(30)).all()
        counts = counts_section(session, window_for(range_key), device_id, f"/ui/devices/{device_id}", {})
    times = [t.ts for t in telemetry]
    charts = [line_chart(title, unit, times, [getattr(t, column) for t in telemetry])
              for title, unit, column in (("fps", "", "fps"), ("latency p50", "ms", "latency_p50_ms"),
                                          ("latency p95", "ms", "latency_p95_ms"), ("CPU", "%", "cpu_percent"),
                                          ("memory", "MB", "memory_mb"), ("temperature", "°C", "temperature_c"))]
    return _page(request, "device.html", device=shown, charts=charts, events=events, section=counts)


@router.get("/deployments", response_class=HTMLResponse)
@signed_in_page
def deployments_page(request: Request, ctx: ServerContext) -> Response:
    with ctx.db.session(write=False) as session:
        deployments = session.scalars(select(Deployment).order_by(Deployment.created_at.desc()).limit(100)).all()
        counts = progress(session, [d.id for d in deployments])
        refs = {b.digest: b.ref for b in session.scalars(select(Bundle))}
    return _page(request, "deployments.html", deployments=deployments, counts=counts, refs=refs)


@router.get("/deployments/{deployment_id}", response_class=HTMLResponse)
@signed_in_page
def deployment_page(deployment_id: str, request: Request, ctx: ServerContext) -> Response:
    try:
        detail = deployment_detail(ctx, deployment_id)
    except NotFound:
        return _page(request, "missing.html", what=f"deployment {deployment_id}")
    return _page(request, "deployment.html", d=detail)


@router.get("/bundles", response_class=HTMLResponse)
@signed_in_page
def bundles_page(request: Request, ctx: ServerContext) -> Response:
    return _page(request, "bundles.html", bundles=list_bundles(request, None))  # type: ignore[arg-type]  # as above


def mount_dashboard(app: FastAPI) -> None:
    # Imported here: these modules build on this one's sign-in and page helpers.
    from edgewise.fleet.dashboard.event_views import router as event_router
    from edgewise.fleet.dashboard.quality_views import router as quality_router

    app.include_router(router)
    app.include_router(quality_router)
    app.include_router(event_router)
    app.mount("/ui/static", StaticFiles(directory=str(HERE / "static")), name="dashboard-static")

