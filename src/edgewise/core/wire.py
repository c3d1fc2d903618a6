"""Wire schemas of the fleet protocol (server <-> agent), versioned under `/api/v1`.

The server (`fleet`) and the agent (`agent`) import these and nothing of each other.

Device authentication: every request after enrollment carries

    X-Edgewise-Device:    the device id
    X-Edgewise-Timestamp: unix seconds (the server refuses more than MAX_CLOCK_SKEW_S off)
    X-Edgewise-Nonce:     random hex, never reused within the skew window (replay protection)
    X-Edgewise-Signature: base64 ed25519 signature, by the device key, of `request_signing_bytes`

so no shared secret ever travels, and the server can refuse a revoked device at once.
Operators send `Authorization: Bearer <token>`.

Endpoints (all JSON unless noted):

    POST /api/v1/enroll                         EnrollRequest -> EnrollResponse (no auth; one-time token)
    GET  /api/v1/device/desired?wait=SECONDS    -> DesiredState; ETag = revision; If-None-Match -> 304;
                                                   `wait` long-polls until the revision changes
    PUT  /api/v1/device/state                   ReportedState -> 204 (also the heartbeat)
    POST /api/v1/device/ingest                  IngestBatch -> IngestAck (after commit only)
    GET  /api/v1/device/bundles/{digest}/archive  the packed bundle (core.archive tar), Range supported
    operator API under /api/v1/{devices,deployments,bundles,events,telemetry,enrollment-tokens,...}

Every error response has one JSON shape: `{"error": {"code": ..., "message": ..., "fix": ...}}`.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

API_PREFIX = "/api/v1"
MAX_CLOCK_SKEW_S = 300

HEADER_DEVICE = "X-Edgewise-Device"
HEADER_TIMESTAMP = "X-Edgewise-Timestamp"
HEADER_NONCE = "X-Edgewise-Nonce"
HEADER_SIGNATURE = "X-Edgewise-Signature"

UpdateState = Literal[
    "idle", "download", "verify", "install", "activate", "health-check", "commit", "rollback", "failed"
]
EventPriority = Literal["alarm", "event", "telemetry", "snapshot"]


def request_signing_bytes(method: str, path_with_query: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The exact bytes a device signs; both sides build them with this one function."""
    body_hash = hashlib.sha256(body).hexdigest()
    return "\n".join(["edgewise-v1", method.upper(), path_with_query, timestamp, nonce, body_hash]).encode()


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(Wire):
    code: str
    message: str
    fix: str = ""


class ErrorResponse(Wire):
    error: ErrorBody


# --- enrollment -------------------------------------------------------------------------------


class EnrollRequest(Wire):
    token: str
    public_key: str = Field(description="base64 of the device's raw ed25519 public key")
    name: str = Field(min_length=1, max_length=128)
    hardware: str = Field("x86-host", description="target catalog name, e.g. rpi4, jetson-orin-nano")
    agent_version: str = ""
    tags: dict[str, str] = Field(default_factory=dict)


class PublisherKey(Wire):
    key_id: str
    public_key: str


class AgentConfig(Wire):
    """Settings the server hands a device at enrollment; the device may override locally."""

    sync_interval_s: float = 5.0
    heartbeat_interval_s: float = 10.0
    ingest_batch_size: int = 200
    health_window_s: float = 5.0


class EnrollResponse(Wire):
    device_id: str
    trusted_publisher_keys: list[PublisherKey]
    config: AgentConfig


# --- desired and reported state ------------------------------------------------------------------


class BundleRef(Wire):
    name: str
    version: str
    digest: str = Field(description="sha256:<hex> of the canonical manifest")
    url: str = Field(description="download path on this server (/api/v1/device/bundles/...) or an OCI reference")
    size_bytes: int = 0


class DesiredState(Wire):
    device_id: str
    revision: str = Field(description="changes whenever anything below changes; sent as the ETag")
    deployment_id: str | None = None
    bundle: BundleRef | None = None
    shadow: BundleRef | None = None
    shadow_share: float = 0.0


class InstalledBundle(Wire):
    name: str
    version: str
    digest: str


class UpdateProgress(Wire):
    state: UpdateState = "idle"
    deployment_id: str | None = None
    target_digest: str | None = None
    error: str | None = None
    detail: str = ""


class Health(Wire):
    status: Literal["ok", "degraded", "failed", "unknown"] = "unknown"
    detail: str = ""


class ReportedState(Wire):
    agent_version: str = ""
    hardware: str = ""
    current_bundle: InstalledBundle | None = None
    previous_bundle: InstalledBundle | None = None
    update: UpdateProgress = Field(default_factory=UpdateProgress)
    health: Health = Field(default_factory=Health)
    extra: dict[str, Any] = Field(default_factory=dict)


# --- ingest ----------------------------------------------------------------------------------


class EventIn(Wire):
    seq: int = Field(ge=0, description="the device's outbox sequence number; unique per device")
    ts: float
    priority: EventPriority = "event"
    type: str = Field(description="e.g. 'alarm', 'detection', 'classification'")
    label: str | None = None
    score: float | None = None
    bundle_version: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    snapshot_jpeg_b64: str | None = None


class TelemetryIn(Wire):
    seq: int = Field(ge=0)
    ts: float
    fps: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    cpu_percent: float | None = None
    memory_mb: float | None = None
    temperature_c: float | None = None
    queue_depth: int | None = None
    errors: int = 0
    model_version: str | None = None
    agent_version: str | None = None
    extra: dict[str, float] = Field(default_factory=dict)


# --- shadow evaluation and data capture (docs/quality-gates.md) ---------------------------------

SHADOW_EVENT_TYPE = "shadow-report"  # a ShadowReport travels as an EventIn of this type, `data` = the report
CaptureReason = Literal["low-confidence", "disagreement", "novelty"]


class DisagreementSample(Wire):
    ts: float
    serving_label: str | None = None
    serving_score: float = 0.0
    candidate_label: str | None = None
    candidate_score: float = 0.0
    jpeg_b64: str | None = None


class ShadowReport(Wire):
    """Agreement of a candidate bundle with the serving one on one camera, over one report window."""

    camera: str = "default"
    serving_version: str
    candidate_version: str
    candidate_digest: str | None = None
    window_s: float = Field(ge=0)
    frames_seen: int = Field(ge=0, description="frames the serving model ran on in the window")
    frames_shadowed: int = Field(ge=0, description="frames both models ran on")
    skipped_for_budget: int = Field(0, ge=0, description="sampled frames skipped to stay within the CPU budget")
    top1_agreement: float | None = Field(None, ge=0, le=1)
    serving_confidence: float | None = None
    candidate_confidence: float | None = None
    confidence_shift: float | None = Field(None, description="mean candidate top score minus mean serving top score")
    serving_detections: float | None = None
    candidate_detections: float | None = None
    detection_count_shift: float | None = None
    serving_latency_p50_ms: float | None = None
    serving_latency_p95_ms: float | None = None
    candidate_latency_p50_ms: float | None = None
    candidate_latency_p95_ms: float | None = None
    serving_alarm_rate: float | None = Field(None, ge=0, le=1)
    candidate_alarm_rate: float | None = Field(None, ge=0, le=1)
    cpu_share: float = Field(0.0, ge=0, description="candidate inference seconds per wall-clock second")
    disagreements: list[DisagreementSample] = Field(default_factory=list)


class CapturedFrame(Wire):
    """A frame the agent selected for labelling, tagged with where and by what it was seen."""

    capture_id: str = Field(min_length=1, max_length=128, description="unique per device")
    ts: float
    camera: str = "default"
    device_id: str | None = None
    bundle_name: str | None = None
    bundle_version: str | None = None
    reasons: list[CaptureReason] = Field(default_factory=list)
    label: str | None = Field(None, description="the serving model's top label")
    score: float | None = None
    candidate_label: str | None = None
    candidate_score: float | None = None
    novelty: float | None = None
    blurred: list[str] = Field(default_factory=list, description="classes whose regions were blurred")
    jpeg_b64: str


class QualityCriteria(Wire):
    """Model signals a canary must meet before promotion; any unmet bound rolls the deployment back."""

    min_agreement: float | None = Field(None, ge=0, le=1, description="top-1 agreement with the old model")
    max_latency_p95_ms: float | None = Field(None, gt=0, description="candidate p95 latency on the device")
    max_latency_ratio: float | None = Field(None, gt=0, description="candidate p95 / serving p95 on the same frames")
    min_fps: float | None = Field(None, gt=0, description="1000 / candidate p50 latency: what it alone could serve")
    max_alarm_rate_shift: float | None = Field(None, ge=0, le=1, description="|candidate - serving| alarm rate")
    min_shadow_frames: int = Field(20, ge=1, description="shadowed frames per device needed before deciding")


class IngestBatch(Wire):
    events: list[EventIn] = Field(default_factory=list)
    telemetry: list[TelemetryIn] = Field(default_factory=list)
    dropped: dict[str, int] = Field(
        default_factory=dict, description="per priority class, how many items the full outbox dropped so far"
    )
    captures: list[CapturedFrame] = Field(default_factory=list, description="frames for labelling (own spool)")


class IngestAck(Wire):
    acked: list[int] = Field(description="every seq of the batch now durably stored (new or seen before)")
    duplicates: int = 0
    captured: list[str] = Field(default_factory=list, description="capture_ids now durably stored")
