"""`agent.toml` parsed into typed settings; unknown keys are rejected with the key named.

Every setting the agent uses lives here and is passed in; nothing deeper reads the environment.
(The reliability tests' crash hook is not a setting: see `edgewise.agent.fault_injection`.)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from edgewise.core.errors import ConfigError
from edgewise.core.settings import StrictSettings
from edgewise.core.validation import validate_as

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 devices
    import tomli as tomllib


class SourceSettings(StrictSettings):
    kind: str = Field(default="synthetic", description="synthetic, video-file, camera, stream, image-folder")
    path: str | None = Field(default=None, description="file/folder path, stream URL, or camera index")
    fps: float | None = Field(default=None, description="frames per second to emit (None: as fast as the source gives)")
    loop: bool = True
    frames: int | None = Field(default=None, description="stop after this many frames (None: endless)")
    width: int = 320
    height: int = 240
    seed: int = 0
    defect_rate: float = 0.3


Anchor = Literal["center", "center_left", "center_right", "top_center", "top_left", "top_right",
                 "bottom_left", "bottom_center", "bottom_right"]
Coordinate = Annotated[float, Field(strict=True)]  # a number: "12" in a TOML file is a mistake
Point = tuple[float, float]
RuleKind = Literal["label", "zone_count", "line_cross", "dwell"]

# Rule settings that only some kinds take (the others apply to every kind). Setting one on a rule
# of another kind is an error: silently ignored, it would let a user believe it works.
RULE_KIND_SETTINGS: dict[str, tuple[str, ...]] = {
    "label": ("min_score", "consecutive", "cooldown_s"),
    "zone_count": ("zone", "more_than", "duration_s", "cooldown_s"),
    "line_cross": ("zone", "direction"),
    "dwell": ("zone", "duration_s"),
}
ZONE_KIND_OF_RULE = {"zone_count": "polygon", "dwell": "polygon", "line_cross": "line"}


class ZoneSettings(StrictSettings):
    """A polygon or a line in the source frame's pixels that rules watch (agent/zones.py)."""

    name: str = Field(min_length=1)
    kind: Literal["polygon", "line"]
    points: list[tuple[Coordinate, Coordinate]] = Field(description="[x, y] pairs in source frame pixels")
    anchor: Anchor = Field(default="bottom_center", description="the point of a box that places it")
    hysteresis_px: float = Field(default=4.0, ge=0, description="jitter band around the border or line")

    @model_validator(mode="after")
    def _check_points(self) -> ZoneSettings:
        if self.kind == "polygon" and len(self.points) < 3:
            raise ValueError(f"polygon zone {self.name!r} needs at least 3 points, got {len(self.points)}")
        if self.kind == "line" and len(self.points) != 2:
            raise ValueError(f"line zone {self.name!r} needs exactly 2 points (A, B), got {len(self.points)}")
        if self.kind == "line" and self.points[0] == self.points[1]:
            raise ValueError(f"line zone {self.name!r} has A == B: a line needs two distinct points")
        return self


class TrackingSettings(StrictSettings):
    """The ByteTrack-style tracker (agent/tracking.py); it runs on detection results when a rule
    watches a zone or `enabled` is set."""

    enabled: bool = Field(default=False, description="track even when no rule needs it (ids on snapshots)")
    high_score: float = Field(default=0.5, ge=0, le=1, description="detections matched first")
    low_score: float = Field(default=0.1, ge=0, le=1, description="weaker detections that may extend a track")
    new_track_score: float = Field(default=0.6, ge=0, le=1, description="a detection that starts a track")
    match_iou: float = Field(default=0.2, gt=0, le=1, description="least IoU with a track's predicted box")
    min_hits: int = Field(default=2, ge=1, description="consecutive frames before a track is confirmed")
    track_buffer: int = Field(default=30, ge=0, description="frames a lost track is kept")

    @model_validator(mode="after")
    def _check_order(self) -> TrackingSettings:
        if not self.low_score <= self.high_score <= self.new_track_score:
            raise ValueError("scores must keep low_score <= high_score <= new_track_score")
        return self


class RuleSettings(StrictSettings):
    name: str = "defect"
    kind: RuleKind = Field(default="label", description="label, zone_count, line_cross, dwell")
    labels: list[str] = Field(default_factory=lambda: ["scratch", "crack"])
    min_score: float = 0.8
    consecutive: int = Field(default=3, ge=1)
    cooldown_s: float = Field(default=10.0, ge=0)
    zone: str | None = Field(default=None, description="the zone or line the rule watches")
    more_than: int = Field(default=0, ge=0, description="zone_count: fires with more tracks than this inside")
    duration_s: float = Field(default=0.0, ge=0, description="zone_count: held this long; dwell: inside longer")
    direction: Literal["in", "out", "both"] = "both"
    event_type: str = "alarm"
    priority: Literal["alarm", "event"] = "alarm"
    snapshot: bool = False
    command: list[str] | None = None
    webhook: str | None = None

    @model_validator(mode="after")
    def _check_kind(self) -> RuleSettings:
        takes = RULE_KIND_SETTINGS[self.kind]
        kind_specific = {name for names in RULE_KIND_SETTINGS.values() for name in names}
        misplaced = sorted((self.model_fields_set & kind_specific) - set(takes))
        if misplaced:
            raise ValueError(f"rule {self.name!r}: {', '.join(misplaced)} does not apply to kind {self.kind!r} "
                             f"(it takes {', '.join(takes)})")
        if self.kind != "label" and self.zone is None:
            raise ValueError(f"rule {self.name!r} of kind {self.kind!r} needs a zone")
        if self.kind == "dwell" and "duration_s" not in self.model_fields_set:
            raise ValueError(f"rule {self.name!r} of kind 'dwell' needs duration_s")
        if self.kind != "label" and "event_type" not in self.model_fields_set:
            self.event_type = self.kind  # a counting line's events say what they are, not "alarm"
        if self.kind == "line_cross" and "priority" not in self.model_fields_set:
            self.priority = "event"
        return self


class HealthSettings(StrictSettings):
    window_s: float = Field(default=3.0, ge=0)
    min_frames: int = Field(default=5, ge=1)
    max_latency_ms: float = Field(default=500.0, gt=0, description="p95 inference latency limit on probe frames")
    max_error_rate: float = Field(default=0.0, ge=0, le=1)
    boot_loop_limit: int = Field(default=3, ge=1, description="restarts inside activate/health-check before rollback")


class OutboxSettings(StrictSettings):
    max_items: int = Field(default=100_000, ge=1)
    max_bytes: int = Field(default=256 << 20, ge=1024)
    batch_size: int = Field(default=200, ge=1, le=1000, description="items per ingest request (the server's cap)")


class ShadowSettings(StrictSettings):
    """Run a candidate bundle beside the serving one (agent/shadow.py); its output is never acted on."""

    share: float = Field(default=0.2, ge=0, le=1, description="share of frames the candidate also runs on")
    cpu_budget: float = Field(default=0.25, gt=0, le=1, description="candidate inference seconds per wall second")
    burst_s: float = Field(default=0.5, gt=0, description="CPU seconds the budget may save up")
    report_interval_s: float = Field(default=30.0, gt=0)
    max_disagreement_samples: int = Field(default=4, ge=0, le=64, description="frames per report where they disagree")
    sample_max_side: int = Field(default=160, ge=16, description="longest side of a disagreement sample")
    alarm_labels: list[str] = Field(default_factory=lambda: ["scratch", "crack"])
    alarm_min_score: float = Field(default=0.5, ge=0, le=1)


class CaptureSettings(StrictSettings):
    """Select frames worth labelling (agent/capture.py) within exact storage and bandwidth budgets."""

    enabled: bool = False
    low_confidence: float = Field(default=0.6, ge=0, le=1, description="capture when the top score is below")
    disagreement: bool = Field(default=True, description="capture when the shadow candidate disagrees")
    novelty: float = Field(default=0.5, ge=0, le=2, description="colour-histogram distance to count as novel")
    novelty_memory: int = Field(default=64, ge=1, description="recent histograms novelty is measured against")
    storage_bytes: int = Field(default=64 << 20, ge=1024, description="encoded image bytes the spool may hold")
    upload_bytes: int = Field(default=16 << 20, ge=1024, description="encoded image bytes uploaded per window")
    upload_window_s: float = Field(default=86400.0, gt=0)
    blur_labels: list[str] = Field(default_factory=list, description="classes whose regions are blurred")
    jpeg_quality: int = Field(default=85, ge=10, le=100)
    max_side: int = Field(default=640, ge=16, description="frames are downscaled to this longest side")
    batch_size: int = Field(default=16, ge=1, le=64, description="frames per upload (the server's cap)")


class AgentSettings(StrictSettings):
    data_dir: Path = Path("/var/lib/edgewise-agent")
    server: str | None = Field(default=None, description="server URL; taken from enrollment when omitted")
    hardware: str = "x86-host"
    trusted_keys: list[str] | None = Field(
        default=None, description="publisher keys (base64 or .pub paths) to trust; None: those from enrollment"
    )
    target_families: list[str] = Field(default_factory=lambda: ["cpu"])
    providers: list[str] = Field(default_factory=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    threads: int = Field(default=0, ge=0, description="ONNX Runtime intra-op threads (0: runtime default)")
    drop_policy: Literal["latest", "none"] = "latest"
    sync_interval_s: float = Field(default=5.0, gt=0)
    long_poll_s: float = Field(default=20.0, ge=0)
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    telemetry_interval_s: float = Field(default=10.0, gt=0)
    request_timeout_s: float = Field(default=10.0, gt=0)
    source: SourceSettings = Field(default_factory=lambda: SourceSettings())
    rules: list[RuleSettings] = Field(default_factory=list)
    zones: list[ZoneSettings] = Field(default_factory=list)
    tracking: TrackingSettings = Field(default_factory=lambda: TrackingSettings())
    health: HealthSettings = Field(default_factory=lambda: HealthSettings())
    outbox: OutboxSettings = Field(default_factory=lambda: OutboxSettings())
    shadow: ShadowSettings = Field(default_factory=lambda: ShadowSettings())
    capture: CaptureSettings = Field(default_factory=lambda: CaptureSettings())
    camera: str = Field(default="default", description="camera name in shadow reports and captured frames")


def parse_settings(data: dict[str, Any], origin: str = "agent settings") -> AgentSettings:
    settings = validate_as(AgentSettings, data, origin, fix="fix the key named above (see docs/agent.md)")
    check_zone_references(settings.rules, settings.zones, origin)
    return settings


def check_zone_references(rules: list[RuleSettings], zones: list[ZoneSettings],
                          origin: str = "agent settings") -> None:
    """Zone names are unique and each zone rule names a declared zone of the kind it watches."""
    kinds: dict[str, str] = {}
    for index, zone in enumerate(zones):
        if zone.name in kinds:
            raise ConfigError(f"{origin}: zones.{index}.name: zone {zone.name!r} is declared twice")
        kinds[zone.name] = zone.kind
    for index, rule in enumerate(rules):
        if rule.zone is None:
            continue
        declared = ", ".join(kinds) or "none"
        if rule.zone not in kinds:
            raise ConfigError(f"{origin}: rules.{index}.zone: rule {rule.name!r} names zone {rule.zone!r}, "
                              f"which is not declared (zones: {declared})", "declare it under [[zones]]")
        wanted = ZONE_KIND_OF_RULE[rule.kind]
        if kinds[rule.zone] != wanted:
            raise ConfigError(f"{origin}: rules.{index}.zone: a {rule.kind} rule watches a {wanted} zone, "
                              f"and {rule.zone!r} is a {kinds[rule.zone]}")


def load_settings(path: Path | None, overrides: dict[str, Any] | None = None) -> AgentSettings:
    """Read `agent.toml` (optional) and apply overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} not found", "pass --config with an existing agent.toml")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path} is not valid TOML: {error}") from None
    data.update(overrides or {})
    return parse_settings(data, str(path) if path else "agent settings")
