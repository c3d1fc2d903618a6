"""The tracker and the declared zones, updated together once per detection result.

The runner calls `observe` on every detection result before the rules see it: the result comes
back with a `track_id` on each detection a confirmed track matched, and every zone has placed
this frame's tracks, so the zone rules (agent/zone_rules.py) read one consistent state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from edgewise.agent.config import AgentSettings, TrackingSettings, ZoneSettings, check_zone_references
from edgewise.agent.pipeline import Result
from edgewise.agent.tracking import Track, Tracker
from edgewise.agent.zones import Crossing, LineZone, PolygonZone
from edgewise.core.errors import ConfigError


class Scene:
    """One camera's tracker and zones; `observe` each detection result, then read `polygons`, `lines`
    and `crossings` (this frame's)."""

    def __init__(self, tracking: TrackingSettings | None = None, zones: Sequence[ZoneSettings] = ()) -> None:
        self.tracker = Tracker(tracking)
        self.polygons: dict[str, PolygonZone] = {}
        self.lines: dict[str, LineZone] = {}
        check_zone_references([], list(zones))
        for zone in zones:
            if zone.kind == "polygon":
                self.polygons[zone.name] = PolygonZone(zone.name, zone.points, zone.anchor, zone.hysteresis_px)
            else:
                self.lines[zone.name] = LineZone(
                    zone.name, zone.points[0], zone.points[1], zone.anchor, zone.hysteresis_px
                )
        self.frames = 0  # detection results observed, so a rule reads each frame's crossings once
        self.tracks: list[Track] = []  # the latest frame's confirmed tracks
        self.crossings: dict[str, list[Crossing]] = {name: [] for name in self.lines}  # the latest frame's

    @classmethod
    def for_settings(cls, settings: AgentSettings) -> Scene | None:
        """A scene when a rule watches a zone or tracking is asked for; None: no tracker runs."""
        if settings.tracking.enabled or any(rule.kind != "label" for rule in settings.rules):
            return cls(settings.tracking, settings.zones)
        return None

    @property
    def zones(self) -> list[PolygonZone | LineZone]:
        return [*self.polygons.values(), *self.lines.values()]

    def polygon(self, name: str) -> PolygonZone:
        if name not in self.polygons:
            raise ConfigError(f"no polygon zone named {name!r} (polygons: {', '.join(self.polygons) or 'none'})")
        return self.polygons[name]

    def line(self, name: str) -> LineZone:
        if name not in self.lines:
            raise ConfigError(f"no line zone named {name!r} (lines: {', '.join(self.lines) or 'none'})")
        return self.lines[name]

    def observe(self, result: Result, now: float) -> Result:
        """Track a detection result and place its tracks in the zones; the result with track ids."""
        self.frames += 1
        self.tracks = self.tracker.update(result.detections, now)
        alive = self.tracker.alive_ids
        for polygon in self.polygons.values():
            polygon.update(self.tracks, alive, now)
        self.crossings = {name: line.update(self.tracks, alive) for name, line in self.lines.items()}
        track_of = {track.detection_index: track.track_id for track in self.tracks}
        detections = [replace(d, track_id=track_of.get(i)) for i, d in enumerate(result.detections)]
        return replace(result, detections=detections)
