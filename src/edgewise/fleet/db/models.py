"""The fleet database schema (SQLAlchemy 2). Times are unix seconds as floats, the same on every backend.

Changing a model means adding an Alembic revision under `migrations/versions/`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
RowId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    public_key: Mapped[str] = mapped_column(String(64))
    group: Mapped[str] = mapped_column("device_group", String(64), default="default", index=True)
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    hardware: Mapped[str] = mapped_column(String(64), default="")
    agent_version: Mapped[str] = mapped_column(String(64), default="")
    enrolled_at: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float | None] = mapped_column(Float, index=True, default=None)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    reported: Mapped[dict[str, Any]] = mapped_column(default=dict)
    current_digest: Mapped[str | None] = mapped_column(String(80), default=None)
    current_version: Mapped[str | None] = mapped_column(String(64), default=None)
    health: Mapped[str] = mapped_column(String(16), default="unknown")
    update_state: Mapped[str] = mapped_column(String(16), default="idle")
    dropped: Mapped[dict[str, Any]] = mapped_column(default=dict)
    desired_digest: Mapped[str | None] = mapped_column(String(80), default=None)
    desired_deployment_id: Mapped[str | None] = mapped_column(String(40), default=None)
    desired_revision: Mapped[int] = mapped_column(Integer, default=1)
    # The desired bundle may be older than what the device runs: an operator rolled back to it, or
    # deployed it with --allow-downgrade (devices refuse an older version otherwise: anti-rollback).
    desired_downgrade: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class EnrollmentToken(Base):
    __tablename__ = "enrollment_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float, default=None)
    uses_left: Mapped[int] = mapped_column(Integer, default=1)
    group: Mapped[str] = mapped_column("device_group", String(64), default="default")
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    note: Mapped[str] = mapped_column(String(200), default="")


class OperatorToken(Base):
    __tablename__ = "operator_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Float)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class TrustedKey(Base):
    __tablename__ = "trusted_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    public_key: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[float] = mapped_column(Float)


class Bundle(Base):
    """A bundle whose signature the server verified; only these can be deployed or downloaded."""

    __tablename__ = "bundles"
    __table_args__ = (UniqueConstraint("name", "version"),)

    digest: Mapped[str] = mapped_column(String(80), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str] = mapped_column(String(300))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    archive_sha256: Mapped[str] = mapped_column(String(64), default="")
    signer_key_id: Mapped[str] = mapped_column(String(32), default="")
    manifest: Mapped[dict[str, Any]] = mapped_column(default=dict)
    registered_at: Mapped[float] = mapped_column(Float)


class Deployment(Base):
    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    bundle_digest: Mapped[str] = mapped_column(ForeignKey("bundles.digest"))
    selector: Mapped[dict[str, Any]] = mapped_column(default=dict)
    strategy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), index=True)
    current_batch: Mapped[int] = mapped_column(Integer, default=0)
    batch_count: Mapped[int] = mapped_column(Integer, default=1)
    batch_done_at: Mapped[float | None] = mapped_column(Float, default=None)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    reason: Mapped[str] = mapped_column(Text, default="")


class DeploymentTarget(Base):
    """One device of a deployment: its batch, its progress, and what it ran before (for rollback)."""

    __tablename__ = "deployment_targets"
    __table_args__ = (UniqueConstraint("deployment_id", "device_id"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id"), index=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    batch: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    previous_digest: Mapped[str | None] = mapped_column(String(80), default=None)
    previous_deployment_id: Mapped[str | None] = mapped_column(String(40), default=None)
    assigned_at: Mapped[float | None] = mapped_column(Float, default=None)
    finished_at: Mapped[float | None] = mapped_column(Float, default=None)
    detail: Mapped[str] = mapped_column(Text, default="")


class DeploymentHistory(Base):
    __tablename__ = "deployment_history"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(String(40), index=True)
    ts: Mapped[float] = mapped_column(Float)
    device_id: Mapped[str | None] = mapped_column(String(40), default=None)
    from_state: Mapped[str] = mapped_column(String(16), default="")
    to_state: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("device_id", "seq", name="uq_events_device_seq"),
        Index("ix_events_device_ts", "device_id", "ts"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(40))
    seq: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[float] = mapped_column(Float, index=True)
    received_at: Mapped[float] = mapped_column(Float)
    priority: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(64))
    label: Mapped[str | None] = mapped_column(String(128), default=None)
    score: Mapped[float | None] = mapped_column(Float, default=None)
    bundle_name: Mapped[str | None] = mapped_column(String(128), default=None)
    bundle_version: Mapped[str | None] = mapped_column(String(64), default=None)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    snapshot_jpeg: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)


class Telemetry(Base):
    __tablename__ = "telemetry"
    __table_args__ = (
        UniqueConstraint("device_id", "seq", name="uq_telemetry_device_seq"),
        Index("ix_telemetry_device_ts", "device_id", "ts"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(40))
    seq: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[float] = mapped_column(Float, index=True)
    received_at: Mapped[float] = mapped_column(Float)
    fps: Mapped[float | None] = mapped_column(Float, default=None)
    latency_p50_ms: Mapped[float | None] = mapped_column(Float, default=None)
    latency_p95_ms: Mapped[float | None] = mapped_column(Float, default=None)
    cpu_percent: Mapped[float | None] = mapped_column(Float, default=None)
    memory_mb: Mapped[float | None] = mapped_column(Float, default=None)
    temperature_c: Mapped[float | None] = mapped_column(Float, default=None)
    queue_depth: Mapped[int | None] = mapped_column(Integer, default=None)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    bundle_name: Mapped[str | None] = mapped_column(String(128), default=None)
    model_version: Mapped[str | None] = mapped_column(String(64), default=None)
    agent_version: Mapped[str | None] = mapped_column(String(64), default=None)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ShadowAssignment(Base):
    """A device asked to run a deployment's candidate in shadow (never serving it)."""

    __tablename__ = "shadow_assignments"

    device_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    deployment_id: Mapped[str] = mapped_column(String(40), index=True)
    bundle_digest: Mapped[str] = mapped_column(String(80))
    share: Mapped[float] = mapped_column(Float)
    assigned_at: Mapped[float] = mapped_column(Float)


class ShadowReportRow(Base):
    """One core.wire.ShadowReport, stored once per (device, event seq) like the event it came in."""

    __tablename__ = "shadow_reports"
    __table_args__ = (UniqueConstraint("device_id", "event_seq", name="uq_shadow_reports_device_seq"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(40))
    event_seq: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[float] = mapped_column(Float)
    camera: Mapped[str] = mapped_column(String(64))
    candidate_digest: Mapped[str | None] = mapped_column(String(80), index=True, default=None)
    candidate_version: Mapped[str] = mapped_column(String(64))
    serving_version: Mapped[str] = mapped_column(String(64))
    frames_shadowed: Mapped[int] = mapped_column(Integer)
    top1_agreement: Mapped[float | None] = mapped_column(Float, default=None)
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)


class CapturedFrameRow(Base):
    """A frame a device captured for labelling (core.wire.CapturedFrame), image included."""

    __tablename__ = "captured_frames"
    __table_args__ = (UniqueConstraint("device_id", "capture_id", name="uq_captured_frames_device_capture"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(40))
    capture_id: Mapped[str] = mapped_column(String(128))
    ts: Mapped[float] = mapped_column(Float, index=True)
    received_at: Mapped[float] = mapped_column(Float)
    camera: Mapped[str] = mapped_column(String(64))
    bundle_version: Mapped[str | None] = mapped_column(String(64), default=None)
    label: Mapped[str | None] = mapped_column(String(128), default=None)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)
