"""Operator endpoints for bundles (register = verify signature) and deployments (create, halt, rollback)."""

from __future__ import annotations

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from edgewise.fleet.api.deps import ERRORS, require
from edgewise.fleet.api.schemas import (
    BundleOut,
    BundleRegister,
    DeploymentDetail,
    DeploymentOut,
    DeployRequest,
    HistoryOut,
    TargetOut,
)
from edgewise.fleet.api.strict_route import StrictJSONRoute
from edgewise.fleet.auth import Operator
from edgewise.fleet.context import ServerContext, context_of
from edgewise.fleet.db.models import Bundle, Deployment, DeploymentHistory, DeploymentTarget, Device
from edgewise.fleet.errors import NotFound
from edgewise.fleet.rollouts.changes import Changes
from edgewise.fleet.rollouts.engine import create_deployment
from edgewise.fleet.rollouts.operator_actions import halt, progress, rollback

router = APIRouter(tags=["deployments"], responses=ERRORS, route_class=StrictJSONRoute)


def bundle_out(bundle: Bundle, running: int = 0) -> BundleOut:
    metrics = (bundle.manifest or {}).get("metrics") or {}
    return BundleOut.model_validate(bundle).model_copy(update={"metrics": metrics, "devices_running": running})


@router.get("/bundles", response_model=list[BundleOut])
def list_bundles(request: Request, _operator: Operator = Depends(require("read"))) -> list[BundleOut]:
    ctx = context_of(request)
    with ctx.db.session(write=False) as session:
        running = dict(session.execute(select(Device.current_digest, func.count()).where(Device.revoked.is_(False))
                                       .group_by(Device.current_digest)).all())
        bundles = session.scalars(select(Bundle).order_by(Bundle.name, Bundle.registered_at.desc())).all()
        return [bundle_out(b, running.get(b.digest, 0)) for b in bundles]


@router.post("/bundles", response_model=BundleOut)
async def register_bundle(body: BundleRegister, request: Request,
                          _operator: Operator = Depends(require("deploy"))) -> BundleOut:
    """Resolve the reference in the store and verify its signature; only then can it be deployed."""
    bundle = await to_thread.run_sync(context_of(request).catalog.register, body.ref)
    return bundle_out(bundle)


def _deployment_out(ctx: ServerContext, deployment: Deployment, counts: dict[str, int]) -> DeploymentOut:
    with ctx.db.session(write=False) as session:
        bundle = session.get(Bundle, deployment.bundle_digest)
    out = DeploymentOut.model_validate(deployment)
    return out.model_copy(update={"progress": counts, "bundle_ref": bundle.ref if bundle else ""})


@router.get("/deployments", response_model=list[DeploymentOut])
def list_deployments(request: Request, status: str | None = Query(None, max_length=16),
                     limit: int = Query(50, ge=1, le=500), _operator: Operator = Depends(require("read"))
                     ) -> list[DeploymentOut]:
    ctx = context_of(request)
    with ctx.db.session(write=False) as session:
        query = select(Deployment).order_by(Deployment.created_at.desc()).limit(limit)
        if status is not None:
            query = query.where(Deployment.status == status)
        deployments = session.scalars(query).all()
        counts = progress(session, [d.id for d in deployments])
    return [_deployment_out(ctx, d, counts.get(d.id, {})) for d in deployments]


def deployment_detail(ctx: ServerContext, deployment_id: str) -> DeploymentDetail:
    with ctx.db.session(write=False) as session:
        deployment = session.get(Deployment, deployment_id)
        if deployment is None:
            raise NotFound(f"deployment {deployment_id} not found", "list them with `edgewise deployments list`")
        targets = session.scalars(select(DeploymentTarget).where(DeploymentTarget.deployment_id == deployment_id)
                                  .order_by(DeploymentTarget.batch, DeploymentTarget.device_id)).all()
        history = session.scalars(select(DeploymentHistory).where(DeploymentHistory.deployment_id == deployment_id)
                                  .order_by(DeploymentHistory.id)).all()
        counts = progress(session, [deployment_id]).get(deployment_id, {})
        base = _deployment_out(ctx, deployment, counts)
        return DeploymentDetail(**base.model_dump(), targets=[TargetOut.model_validate(t) for t in targets],
                                history=[HistoryOut.model_validate(h) for h in history])


@router.post("/deployments", response_model=DeploymentDetail, status_code=201)
async def deploy(body: DeployRequest, request: Request,
                 operator: Operator = Depends(require("deploy"))) -> Response:
    ctx = context_of(request)
    bundle = await to_thread.run_sync(ctx.catalog.register, body.bundle)

    def create() -> str:
        def work(session: Session) -> tuple[str, Changes]:
            deployment, changes = create_deployment(session, bundle, body.selector, body.strategy,
                                                    operator.name or operator.token_id, ctx.settings.offline_after_s)
            return deployment.id, changes

        deployment_id, changes = ctx.db.transact(work)
        ctx.announce(changes)
        return deployment_id

    deployment_id = await to_thread.run_sync(create)
    return await to_thread.run_sync(detail_response, ctx, deployment_id, 201)


def detail_response(ctx: ServerContext, deployment_id: str, status_code: int = 200) -> Response:
    """The deployment, as JSON made here (a worker thread): with a target and history entries per
    device it is large, and FastAPI would validate and encode it again on the event loop, which
    every device request waits on."""
    detail = deployment_detail(ctx, deployment_id)
    return Response(detail.model_dump_json(), status_code=status_code, media_type="application/json")


@router.get("/deployments/{deployment_id}", response_model=DeploymentDetail)
def show_deployment(deployment_id: str, request: Request,
                    _operator: Operator = Depends(require("read"))) -> Response:
    return detail_response(context_of(request), deployment_id)


@router.post("/deployments/{deployment_id}/halt", response_model=DeploymentDetail)
def halt_deployment(deployment_id: str, request: Request,
                    _operator: Operator = Depends(require("deploy"))) -> Response:
    ctx = context_of(request)
    changes = ctx.db.transact(lambda session: halt(session, deployment_id))
    ctx.announce(changes)
    return detail_response(ctx, deployment_id)


@router.post("/deployments/{deployment_id}/rollback", response_model=DeploymentDetail)
def rollback_deployment(deployment_id: str, request: Request,
                        _operator: Operator = Depends(require("deploy"))) -> Response:
    ctx = context_of(request)
    changes = ctx.db.transact(lambda session: rollback(session, deployment_id))
    ctx.announce(changes)
    return detail_response(ctx, deployment_id)
