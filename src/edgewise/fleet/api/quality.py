"""Operator endpoints for quality data: captured frames (paged, with or without images) and shadow reports."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import func, select

from edgewise.core.wire import CapturedFrame, ShadowReport
from edgewise.fleet.api.deps import ERRORS, require
from edgewise.fleet.api.strict_route import StrictJSONRoute
from edgewise.fleet.auth import Operator
from edgewise.fleet.context import context_of
from edgewise.fleet.db.models import CapturedFrameRow, ShadowReportRow
from edgewise.fleet.errors import NotFound
from edgewise.fleet.rollouts.shadow_results import captured_frame

router = APIRouter(tags=["quality"], responses=ERRORS, route_class=StrictJSONRoute)


class CapturePage(BaseModel):
    captures: list[CapturedFrame]
    total: int


class ShadowReportOut(BaseModel):
    id: int
    device_id: str
    ts: float
    report: ShadowReport


@router.get("/captures", response_model=CapturePage)
def list_captures(
    request: Request,
    device_id: str | None = Query(None, max_length=40),
    offset: int = Query(0, ge=0, le=10_000_000),
    limit: int = Query(100, ge=1, le=1000),
    images: bool = Query(False, description="include each frame's JPEG (base64)"),
    _operator: Operator = Depends(require("read")),
) -> CapturePage:
    """Captured frames, oldest first (stable paging for `edgewise capture export`)."""
    query = select(CapturedFrameRow)
    if device_id is not None:
        query = query.where(CapturedFrameRow.device_id == device_id)
    with context_of(request).db.session(write=False) as session:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.scalars(query.order_by(CapturedFrameRow.id).offset(offset).limit(limit)).all()
        return CapturePage(captures=[captured_frame(row, images) for row in rows], total=total)


@router.get("/captures/{device_id}/{capture_id}/image", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}})
def capture_image(device_id: str, capture_id: str, request: Request,
                  _operator: Operator = Depends(require("read"))) -> Response:
    with context_of(request).db.session(write=False) as session:
        data = session.scalar(select(CapturedFrameRow.jpeg).where(CapturedFrameRow.device_id == device_id,
                                                                  CapturedFrameRow.capture_id == capture_id))
    if data is None:
        raise NotFound(f"captured frame {capture_id} of device {device_id} not found")
    return Response(data, media_type="image/jpeg")


@router.get("/shadow-reports", response_model=list[ShadowReportOut])
def list_shadow_reports(
    request: Request,
    candidate_digest: str | None = Query(None, max_length=80),
    device_id: str | None = Query(None, max_length=40),
    limit: int = Query(200, ge=1, le=2000),
    _operator: Operator = Depends(require("read")),
) -> list[ShadowReportOut]:
    query = select(ShadowReportRow)
    if candidate_digest is not None:
        query = query.where(ShadowReportRow.candidate_digest == candidate_digest)
    if device_id is not None:
        query = query.where(ShadowReportRow.device_id == device_id)
    with context_of(request).db.session(write=False) as session:
        rows = session.scalars(query.order_by(ShadowReportRow.id.desc()).limit(limit)).all()
        return [ShadowReportOut(id=r.id, device_id=r.device_id, ts=r.ts, report=ShadowReport.model_validate(r.report))
                for r in rows]
