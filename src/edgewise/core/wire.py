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
import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from edgewise.core.errors import ProtocolError
from edgewise.core.strict_json import INT64_MAX, StrictJSONError, text_problem
from edgewise.core.strict_json import loads as strict_loads
from edgewise.core.validation import describe_validation

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


# --- bounds of every wire field (docs/fleet.md, "Limits") -----------------------------------------
# The server parses every body with `edgewise.core.strict_json` (no duplicate keys, depth <= 64,
# 64-bit integers, finite numbers, valid UTF-8, no NUL); the types below bound each field besides.

MAX_BATCH_EVENTS = 1000
MAX_BATCH_TELEMETRY = 1000
MAX_BATCH_CAPTURES = 64
MAX_CAPTURE_DETECTIONS = 256  # boxes kept with a captured frame (the best ones)
MAX_IMAGE_B64 = 2 << 20  # a snapshot or captured frame, base64: 2 MiB of text, about 1.5 MB of JPEG
MAX_EVENT_DATA_BYTES = 3 << 20  # an event's `data` as JSON (a shadow report carries up to a few frames)
MAX_EXTRA_BYTES = 16 << 10  # a reported state's `extra`


def _text(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _json_within(limit: int) -> AfterValidator:
    def check(value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False))
        if size > limit:
            raise ValueError(f"is {size} bytes as JSON, over the {limit}-byte limit")
        return value

    return AfterValidator(check)


Name = Annotated[str, Field(max_length=128), AfterValidator(_text)]  # names, versions, types, labels
Text = Annotated[str, Field(max_length=4096), AfterValidator(_text)]  # details and messages
Digest = Annotated[str, Field(max_length=80, pattern=r"^sha256:[0-9a-f]{1,64}$")]
ImageB64 = Annotated[str, Field(max_length=MAX_IMAGE_B64), AfterValidator(_text)]
Seq = Annotated[int, Field(ge=0, le=INT64_MAX)]
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
Timestamp = Annotated[float, Field(ge=0, le=1e11, description="unix seconds")]
Measure = Annotated[float, Field(ge=-1e12, le=1e12)]  # any finite reading (NaN and inf refused by the model)


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


W = TypeVar("W", bound=Wire)


def parse_wire(model: type[W], data: bytes, what: str) -> W:
    """`data` (a body received) as `model`, parsed strictly; ProtocolError names `what` and the problem."""
    try:
        return model.model_validate(strict_loads(data))
    except StrictJSONError as error:
        raise ProtocolError(f"{what} is not valid JSON: {error.message}") from None
    except ValidationError as error:
        raise ProtocolError(f"{what} is malformed at {describe_validation(error, first_only=True)}") from None


class ErrorBody(Wire):
    code: str
    message: str
    fix: str = ""


class ErrorResponse(Wire):
    error: ErrorBody


# --- enrollment -------------------------------------------------------------------------------


class EnrollRequest(Wire):
    token: Name
    public_key: str = Field(max_length=64, description="base64 of the device's raw ed25519 public key")
    name: Name = Field(min_length=1)
    hardware: Name = Field("x86-host", description="target catalog name, e.g. rpi4, jetson-orin-nano")
    agent_version: Name = ""
    tags: dict[Name, Name] = Field(default_factory=dict, max_length=32,
                                   description="only tags the enrollment token grants (the token's tags win)")


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
    name: Name
    version: Name
    digest: Digest = Field(description="sha256:<hex> of the canonical manifest")
    url: Text = Field(description="download path on this server (/api/v1/device/bundles/...) or an OCI reference")
    size_bytes: Count = 0


class DesiredState(Wire):
    device_id: Name
    revision: Name = Field(description="changes whenever anything below changes; sent as the ETag")
    deployment_id: Name | None = None
    bundle: BundleRef | None = None
    allow_downgrade: bool = Field(False, description="an operator rolled back to this bundle: the device may "
                                  "install it although it is an older version of the bundle it runs")
    shadow: BundleRef | None = None
    shadow_share: float = Field(0.0, ge=0, le=1)


class InstalledBundle(Wire):
    name: Name
    version: Name
    digest: Digest


class UpdateProgress(Wire):
    state: UpdateState = "idle"
    deployment_id: Name | None = None
    target_digest: Digest | None = None
    error: Text | None = None
    detail: Text = ""


class Health(Wire):
    status: Literal["ok", "degraded", "failed", "unknown"] = "unknown"
    detail: Text = ""


class ReportedState(Wire):
    agent_version: Name = ""
    hardware: Name = ""
    current_bundle: InstalledBundle | None = None
    previous_bundle: InstalledBundle | None = None
    update: UpdateProgress = Field(default_factory=UpdateProgress)
    health: Health = Field(default_factory=Health)
    extra: Annotated[dict[Name, Any], _json_within(MAX_EXTRA_BYTES)] = Field(default_factory=dict)


# --- ingest ----------------------------------------------------------------------------------


class EventIn(Wire):
    seq: Seq = Field(description="the device's outbox sequence number; unique per device")
    ts: Timestamp
    priority: EventPriority = "event"
    type: Name = Field(description="e.g. 'alarm', 'detection', 'classification'")
    label: Name | None = None
    score: Measure | None = None
    bundle_name: Name | None = None
    bundle_version: Name | None = None
    data: Annotated[dict[Name, Any], _json_within(MAX_EVENT_DATA_BYTES)] = Field(default_factory=dict)
    snapshot_jpeg_b64: ImageB64 | None = None


class TelemetryIn(Wire):
    seq: Seq
    ts: Timestamp
    fps: Measure | None = None
    latency_p50_ms: Measure | None = None
    latency_p95_ms: Measure | None = None
    cpu_percent: Measure | None = None
    memory_mb: Measure | None = None
    temperature_c: Measure | None = None
    queue_depth: Count | None = None
    errors: Count = 0
    bundle_name: Name | None = None
    model_version: Name | None = Field(None, description="the version of the bundle it runs")
    agent_version: Name | None = None
    extra: dict[Name, Measure] = Field(default_factory=dict, max_length=64)


# --- shadow evaluation and data capture (docs/quality-gates.md) ---------------------------------

SHADOW_EVENT_TYPE = "shadow-report"  # a ShadowReport travels as an EventIn of this type, `data` = the report
CaptureReason = Literal["low-confidence", "disagreement", "novelty"]


class DisagreementSample(Wire):
    ts: Timestamp
    serving_label: Name | None = None
    serving_score: Measure = 0.0
    candidate_label: Name | None = None
    candidate_score: Measure = 0.0
    jpeg_b64: ImageB64 | None = None


class ShadowReport(Wire):
    """Agreement of a candidate bundle with the serving one on one camera, over one report window."""

    camera: Name = "default"
    serving_version: Name
    candidate_version: Name
    candidate_digest: Digest | None = None
    window_s: float = Field(ge=0)
    frames_seen: int = Field(ge=0, description="frames the serving model ran on in the window")
    frames_shadowed: int = Field(ge=0, description="frames both models ran on")
    skipped_for_budget: int = Field(0, ge=0, description="sampled frames skipped to stay within the CPU budget")
    top1_agreement: float | None = Field(None, ge=0, le=1, description="mean per-frame agreement: top-1 label "
                                         "(classifiers) or matched boxes / max(boxes of either) (detectors)")
    serving_confidence: float | None = None
    candidate_confidence: float | None = None
    confidence_shift: float | None = Field(None, description="mean candidate top score minus mean serving top score")
    serving_detections: float | None = None
    candidate_detections: float | None = None
    detection_count_shift: float | None = None
    # Detectors only (None for classifiers; added after the first schema, so optional): over the window,
    # boxes matched (same label, IoU >= 0.5), and boxes only one model found.
    boxes_matched: Count | None = None
    boxes_candidate_only: Count | None = None
    boxes_serving_only: Count | None = None
    serving_latency_p50_ms: float | None = None
    serving_latency_p95_ms: float | None = None
    candidate_latency_p50_ms: float | None = None
    candidate_latency_p95_ms: float | None = None
    serving_alarm_rate: float | None = Field(None, ge=0, le=1)
    candidate_alarm_rate: float | None = Field(None, ge=0, le=1)
    cpu_share: float = Field(0.0, ge=0, description="candidate inference seconds per wall-clock second")
    disagreements: list[DisagreementSample] = Field(default_factory=list, max_length=64)


class CapturedDetection(Wire):
    """A box the serving detector found on a captured frame: a pseudo-label for a human to review."""

    label: Name
    score: Measure
    box: tuple[Measure, Measure, Measure, Measure] = Field(description="x1, y1, x2, y2 in the source frame's pixels")
    track_id: Count | None = None


class CapturedFrame(Wire):
    """A frame the agent selected for labelling, tagged with where and by what it was seen."""

    capture_id: Name = Field(min_length=1, description="unique per device")
    ts: Timestamp
    camera: Name = "default"
    device_id: Name | None = None
    bundle_name: Name | None = None
    bundle_version: Name | None = None
    reasons: list[CaptureReason] = Field(default_factory=list, max_length=8)
    label: Name | None = Field(None, description="the serving model's top label")
    score: Measure | None = None
    candidate_label: Name | None = None
    candidate_score: Measure | None = None
    novelty: Measure | None = None
    blurred: list[Name] = Field(default_factory=list, max_length=256, description="classes whose regions were blurred")
    # Detectors only (None for classifiers; added after the first schema, so optional).
    detections: list[CapturedDetection] | None = Field(
        None, max_length=MAX_CAPTURE_DETECTIONS, description="the serving detector's boxes, best first")
    frame_size: tuple[Count, Count] | None = Field(
        None, description="width, height of the source frame the boxes are in (the JPEG may be downscaled)")
    jpeg_b64: ImageB64


class QualityCriteria(Wire):
    """Model signals a canary must meet before promotion; any unmet bound rolls the deployment back."""

    min_agreement: float | None = Field(None, ge=0, le=1, description="agreement with the old model (top-1 "
                                        "label, or for detectors matched boxes; ShadowReport.top1_agreement)")
    max_latency_p95_ms: float | None = Field(None, gt=0, description="candidate p95 latency on the device")
    max_latency_ratio: float | None = Field(None, gt=0, description="candidate p95 / serving p95 on the same frames")
    min_fps: float | None = Field(None, gt=0, description="1000 / candidate p50 latency: what it alone could serve")
    max_alarm_rate_shift: float | None = Field(None, ge=0, le=1, description="|candidate - serving| alarm rate")
    min_shadow_frames: int = Field(20, ge=1, description="shadowed frames per device needed before deciding")


class IngestBatch(Wire):
    events: list[EventIn] = Field(default_factory=list, max_length=MAX_BATCH_EVENTS)
    telemetry: list[TelemetryIn] = Field(default_factory=list, max_length=MAX_BATCH_TELEMETRY)
    dropped: dict[Name, Count] = Field(
        default_factory=dict, max_length=16, description="per priority class, how many items the full outbox "
        "dropped so far"
    )
    captures: list[CapturedFrame] = Field(default_factory=list, max_length=MAX_BATCH_CAPTURES,
                                          description="frames for labelling (own spool)")


class IngestAck(Wire):
    acked: list[Seq] = Field(description="every seq of the batch now durably stored (new or seen before)")
    duplicates: Count = 0
    captured: list[Name] = Field(default_factory=list, description="capture_ids now durably stored")
