"""What the zone rule kinds watch for, read off a `Scene` the runner has just updated.

- `zone_count`: more than `more_than` tracks of `labels` inside polygon `zone`, without a break for
  `duration_s`: one event; the hold then starts over, as a label rule's streak does, so while it
  lasts there is one event every `duration_s`, or every `cooldown_s` if that is longer.
- `line_cross`: a track of `labels` crossed line `zone` (in `direction`): one event per crossing,
  with the line's running in/out counts of those labels.
- `dwell`: a track of `labels` has been inside polygon `zone` longer than `duration_s`: one event
  per visit.

Each returns `Finding`s; `agent/rules.py` turns them into events, snapshots and local actions.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from edgewise.agent.config import RuleSettings
from edgewise.agent.scene import Scene
from edgewise.agent.tracking import Box, Track


@dataclass(frozen=True)
class Finding:
    """One event's worth of what a rule saw: the event's label and score, and its `data`."""

    label: str | None
    score: float | None
    data: dict[str, Any]


def rounded_box(box: Box) -> list[float]:
    return [round(v, 1) for v in box]


class ZoneCountRule:
    def __init__(self, settings: RuleSettings, scene: Scene) -> None:
        self.settings, self.zone = settings, scene.polygon(settings.zone or "")
        self.held_since: float | None = None
        self.last_fired: float | None = None

    def check(self, now: float) -> list[Finding]:
        s = self.settings
        inside = [t for t in self.zone.inside if t.label in s.labels]
        if len(inside) <= s.more_than:
            self.held_since = None
            return []
        self.held_since = now if self.held_since is None else self.held_since
        if now - self.held_since < s.duration_s:
            return []
        if self.last_fired is not None and now - self.last_fired < s.cooldown_s:
            return []
        held_s, self.held_since, self.last_fired = now - self.held_since, now, now  # the hold starts over
        label = Counter(t.label for t in inside).most_common(1)[0][0]
        return [
            Finding(
                label,
                None,
                {
                    "rule": s.name,
                    "zone": self.zone.name,
                    "track_ids": [t.track_id for t in inside],
                    "boxes": [rounded_box(t.box) for t in inside],
                    "inside": len(inside),
                    "held_s": round(held_s, 3),
                },
            )
        ]


class LineCrossRule:
    def __init__(self, settings: RuleSettings, scene: Scene) -> None:
        self.settings, self.scene = settings, scene
        self.line = scene.line(settings.zone or "")

    def check(self, now: float) -> list[Finding]:
        s, found = self.settings, []
        for crossing in self.scene.crossings.get(self.line.name, []):
            track = crossing.track
            if track.label not in s.labels or s.direction not in ("both", crossing.direction):
                continue
            found.append(
                Finding(
                    track.label,
                    track.score,
                    {
                        "rule": s.name,
                        "line": self.line.name,
                        "track_id": track.track_id,
                        "box": rounded_box(track.box),
                        "direction": crossing.direction,
                        # the line's running counts of this rule's labels, both directions
                        "in": sum(self.line.in_by_label[label] for label in s.labels),
                        "out": sum(self.line.out_by_label[label] for label in s.labels),
                    },
                )
            )
        return found


class DwellRule:
    def __init__(self, settings: RuleSettings, scene: Scene) -> None:
        self.settings, self.zone = settings, scene.polygon(settings.zone or "")
        self.reported: set[int] = set()  # tracks whose current visit already fired

    def check(self, now: float) -> list[Finding]:
        s, found = self.settings, []
        inside: dict[int, Track] = {t.track_id: t for t in self.zone.inside}
        self.reported &= set(inside)  # a track that left may fire again on its next visit
        for track_id, track in inside.items():
            dwell = self.zone.dwell_s(track_id)
            if track.label not in s.labels or track_id in self.reported or dwell <= s.duration_s:
                continue
            self.reported.add(track_id)
            found.append(
                Finding(
                    track.label,
                    track.score,
                    {
                        "rule": s.name,
                        "zone": self.zone.name,
                        "track_id": track_id,
                        "box": rounded_box(track.box),
                        "dwell_s": round(dwell, 3),
                    },
                )
            )
        return found


ZoneCondition = ZoneCountRule | LineCrossRule | DwellRule
ZONE_RULE_KINDS: dict[str, type[ZoneCondition]] = {
    "zone_count": ZoneCountRule,
    "line_cross": LineCrossRule,
    "dwell": DwellRule,
}
