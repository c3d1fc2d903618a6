"""Operator API schemas (the device protocol's schemas live in `edgewise.core.wire`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from edgewise.core.wire import Name, Text
from edgewise.fleet.rollouts.selectors import Selector
from edgewise.fleet.rollouts.strategies import StrategySpec


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class In(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DeviceOut(Out):
    id: str
    name: str
    group: str
    tags: dict[str, Any]
    hardware: str
    agent_version: str
    enrolled_at: float
    last_seen: float | None
    online: bool = False
    revoked: bool
    current_digest: str | None
    current_version: str | None
    health: str
    update_state: str
    update_error: str = Field("", description="why the last update failed, as the device reported it: the check, "
                                              "the measured value and the limit")
    desired_digest: str | None
    desired_deployment_id: str | None
    desired_revision: int


class DeviceDetail(DeviceOut):
    reported: dict[str, Any]
    dropped: dict[str, Any]


class Page(BaseModel):
    total: int
    limit: int
    offset: int


class DevicePage(Page):
    items: list[DeviceOut]


class DevicePatch(In):
    group: Name | None = Field(default=None, min_length=1, max_length=64)
    set_tags: dict[Name, Name] = Field(default_factory=dict, max_length=32)
    remove_tags: list[Name] = Field(default_factory=list, max_length=32)


class DeployRequest(In):
    bundle: str = Field(min_length=1, max_length=300, description="registry reference: name:version or name@digest")
    selector: Selector = Field(default_factory=Selector)
    strategy: StrategySpec = Field(default_factory=lambda: StrategySpec())


class DeploymentOut(Out):
    id: str
    bundle_digest: str
    bundle_ref: str = ""
    selector: dict[str, Any]
    strategy: dict[str, Any]
    status: str
    current_batch: int
    batch_count: int
    created_at: float
    updated_at: float
    created_by: str
    reason: str
    progress: dict[str, int] = Field(default_factory=dict)


class TargetOut(Out):
    device_id: str
    batch: int
    status: str
    previous_digest: str | None
    assigned_at: float | None
    finished_at: float | None
    detail: str


class HistoryOut(Out):
    ts: float
    device_id: str | None
    from_state: str
    to_state: str
    detail: str


class DeploymentDetail(DeploymentOut):
    targets: list[TargetOut]
    history: list[HistoryOut]


class BundleOut(Out):
    digest: str
    name: str
    version: str
    ref: str
    size_bytes: int
    signer_key_id: str
    registered_at: float
    metrics: dict[str, Any] = Field(default_factory=dict)
    devices_running: int = 0


class BundleRegister(In):
    ref: str = Field(min_length=1, max_length=300)


class EventOut(Out):
    id: int
    device_id: str
    seq: int
    ts: float
    received_at: float
    priority: str
    type: str
    label: str | None
    score: float | None
    bundle_name: str | None = None
    bundle_version: str | None
    data: dict[str, Any]
    has_snapshot: bool = False


class EventPage(BaseModel):
    items: list[EventOut]
    next_before_id: int | None = Field(default=None, description="pass as before_id for the next (older) page")


class TelemetryOut(Out):
    device_id: str
    seq: int
    ts: float
    fps: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    cpu_percent: float | None
    memory_mb: float | None
    temperature_c: float | None
    queue_depth: int | None
    errors: int
    bundle_name: str | None = None
    model_version: str | None


class EnrollmentTokenIn(In):
    ttl_s: float | None = Field(default=3600.0, gt=0, le=365 * 86400)
    uses: int = Field(default=1, ge=1, le=100_000)
    group: Name = Field(default="default", min_length=1, max_length=64)
    tags: dict[Name, Name] = Field(default_factory=dict, max_length=32,
                                   description="tags every device enrolled with this token gets (and may claim)")
    note: Text = Field(default="", max_length=200)


class EnrollmentTokenOut(BaseModel):
    token: str
    id: str
    expires_at: float | None
    uses: int
    group: str


class OperatorTokenIn(In):
    scope: str = Field(pattern="^(read|deploy|admin)$")
    name: Name = Field(default="", max_length=128)


class OperatorTokenOut(BaseModel):
    token: str
    scope: str


class TrustedKeyIn(In):
    public_key: str = Field(min_length=1, max_length=200)


class TrustedKeyOut(BaseModel):
    key_id: str
    public_key: str
