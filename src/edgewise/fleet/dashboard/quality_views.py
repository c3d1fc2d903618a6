"""Dashboard pages for quality gates: shadow results (per candidate and device) and captured frames."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from edgewise.core.wire import ShadowReport
from edgewise.fleet.context import ServerContext
from edgewise.fleet.dashboard.views import _page, signed_in_page
from edgewise.fleet.db.models import Bundle, CapturedFrameRow, Deployment, ShadowReportRow

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/shadow", response_class=HTMLResponse)
@signed_in_page
def shadow_page(request: Request, ctx: ServerContext) -> Response:
    with ctx.db.session(write=False) as session:
        rows = session.scalars(select(ShadowReportRow).order_by(ShadowReportRow.id.desc()).limit(200)).all()
        reports = [(row.device_id, row.ts, ShadowReport.model_validate(row.report)) for row in rows]
        gated = session.scalars(select(Deployment).order_by(Deployment.created_at.desc()).limit(50)).all()
        gated = [d for d in gated if (d.strategy or {}).get("quality")]
        refs = {b.digest: b.ref for b in session.scalars(select(Bundle))}
    return _page(request, "shadow.html", reports=reports, deployments=gated, refs=refs)


@router.get("/captures", response_class=HTMLResponse)
@signed_in_page
def captures_page(request: Request, ctx: ServerContext) -> Response:
    with ctx.db.session(write=False) as session:
        rows = session.scalars(select(CapturedFrameRow).order_by(CapturedFrameRow.id.desc()).limit(120)).all()
        frames = [{"device_id": r.device_id, "capture_id": r.capture_id, "ts": r.ts, "camera": r.camera,
                   "bundle_version": r.bundle_version, "label": r.label, "meta": r.meta} for r in rows]
    return _page(request, "captures.html", frames=frames)
