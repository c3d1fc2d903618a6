"""Admin endpoints: enrollment tokens, operator tokens and trusted publisher keys."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select

from edgewise.core.signing import PublicKey
from edgewise.fleet.api.deps import ERRORS, require
from edgewise.fleet.api.schemas import (
    EnrollmentTokenIn,
    EnrollmentTokenOut,
    OperatorTokenIn,
    OperatorTokenOut,
    TrustedKeyIn,
    TrustedKeyOut,
)
from edgewise.fleet.api.strict_route import StrictJSONRoute
from edgewise.fleet.auth import Operator, create_operator_token
from edgewise.fleet.context import context_of
from edgewise.fleet.db.models import TrustedKey
from edgewise.fleet.devices.enrollment import create_enrollment_token
from edgewise.fleet.rollouts.bundles import add_trusted_key

router = APIRouter(tags=["admin"], responses=ERRORS, route_class=StrictJSONRoute)


@router.post("/enrollment-tokens", response_model=EnrollmentTokenOut, status_code=201)
def new_enrollment_token(body: EnrollmentTokenIn, request: Request,
                         _operator: Operator = Depends(require("admin"))) -> EnrollmentTokenOut:
    token, row = create_enrollment_token(context_of(request).db, body.ttl_s, body.uses, body.group, body.tags,
                                         body.note)
    return EnrollmentTokenOut(token=token, id=row.id, expires_at=row.expires_at, uses=body.uses, group=body.group)


@router.post("/operator-tokens", response_model=OperatorTokenOut, status_code=201)
def new_operator_token(body: OperatorTokenIn, request: Request,
                       _operator: Operator = Depends(require("admin"))) -> OperatorTokenOut:
    return OperatorTokenOut(token=create_operator_token(context_of(request).db, body.scope, body.name),
                            scope=body.scope)


@router.get("/trusted-keys", response_model=list[TrustedKeyOut])
def list_trusted_keys(request: Request, _operator: Operator = Depends(require("read"))) -> list[TrustedKeyOut]:
    with context_of(request).db.session(write=False) as session:
        return [TrustedKeyOut(key_id=k.key_id, public_key=k.public_key) for k in session.scalars(select(TrustedKey))]


@router.post("/trusted-keys", response_model=TrustedKeyOut, status_code=201)
def trust_key(body: TrustedKeyIn, request: Request, _operator: Operator = Depends(require("admin"))) -> TrustedKeyOut:
    key = PublicKey.from_b64(body.public_key)
    add_trusted_key(context_of(request).db, key)
    return TrustedKeyOut(key_id=key.key_id, public_key=key.b64)
