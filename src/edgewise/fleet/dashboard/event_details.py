"""An event's `data` as the table's short text: what the rule watched (rule, zone or line, direction,
counts) and, for an event without a frame, its boxes. `data` comes from devices: anything not of the
expected shape is left out, and long values are cut."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

BOXES_SHOWN = 10
TEXT_MAX = 80


def _text(value: Any) -> str:
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    return shown if len(shown) <= TEXT_MAX else shown[:TEXT_MAX - 1] + "…"


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def describe(details: Mapping[str, Any]) -> list[str]:
    """ "rule door-count", "line door", "direction in", "in 3 · out 1", "inside 4", "dwell 312 s"... """
    parts = [f"{key} {_text(details[key])}" for key in ("rule", "zone", "line", "direction") if key in details]
    if _is_number(details.get("in")) or _is_number(details.get("out")):
        parts.append(f"in {_text(details.get('in', 0))} · out {_text(details.get('out', 0))}")
    if _is_number(details.get("inside")):
        parts.append(f"inside {_text(details['inside'])}")
    for key, title in (("dwell_s", "dwell"), ("held_s", "held")):
        if _is_number(details.get(key)):
            parts.append(f"{title} {details[key]:.1f} s")
    return parts


def _box_text(box: Any) -> str | None:
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
        return None
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def boxes_text(details: Mapping[str, Any]) -> list[str]:
    """Each box as "#7 [12, 30, 88, 140]" (x1, y1, x2, y2 in source-frame pixels), with its track id."""
    boxes: list[Any] = [details.get("box")]
    ids: list[Any] = [details.get("track_id")]
    if "boxes" in details:  # zone_count: every track inside, and their ids in the same order
        boxes = details["boxes"] if isinstance(details["boxes"], list) else []
        ids = details["track_ids"] if isinstance(details.get("track_ids"), list) else []
    shown = []
    for index, box in enumerate(boxes[:BOXES_SHOWN]):
        text = _box_text(box)
        if text is not None:
            track = ids[index] if index < len(ids) and isinstance(ids[index], int) else None
            shown.append(f"#{track} {text}" if track is not None else text)
    if len(boxes) > BOXES_SHOWN:
        shown.append(f"… {len(boxes) - BOXES_SHOWN} more")
    return shown
