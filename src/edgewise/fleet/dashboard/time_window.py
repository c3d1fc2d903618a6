"""The time ranges the dashboard offers (last 15 min, 1 h, 24 h, 7 d), cut into the buckets a
counts chart draws and marked with the ticks its time axis labels, in the server's local time
(as the pages' other times are)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

RangeKey = Literal["15m", "1h", "24h", "7d"]
DEFAULT_RANGE: RangeKey = "24h"


@dataclass(frozen=True)
class RangeChoice:
    key: RangeKey
    title: str  # "last 1 h"
    seconds: int
    bucket_s: int  # one bar of the counts chart
    bucket_title: str  # "5 min": the chart's unit is "events / 5 min"
    tick_s: int  # a labelled tick on the time axis
    tick_format: str  # strftime format of a tick's label


RANGES: dict[RangeKey, RangeChoice] = {
    choice.key: choice
    for choice in (
        RangeChoice("15m", "last 15 min", 15 * 60, 60, "1 min", 5 * 60, "%H:%M"),
        RangeChoice("1h", "last 1 h", 3600, 5 * 60, "5 min", 15 * 60, "%H:%M"),
        RangeChoice("24h", "last 24 h", 86400, 3600, "1 h", 4 * 3600, "%H:%M"),
        RangeChoice("7d", "last 7 d", 7 * 86400, 6 * 3600, "6 h", 86400, "%a %d %b"),
    )
}


@dataclass(frozen=True)
class Window:
    """[start, end) cut into `bucket_count` buckets of `choice.bucket_s`. The end is the current
    bucket's end, so the buckets (and the ticks) fall on round local times, not on "now"."""

    choice: RangeChoice
    start: float
    end: float
    utc_offset_s: int

    @property
    def bucket_count(self) -> int:
        return self.choice.seconds // self.choice.bucket_s

    def bucket_start(self, index: int) -> float:
        return self.start + index * self.choice.bucket_s

    def ticks(self) -> list[tuple[float, str]]:
        """(time, label) of each tick inside the window, on round local times."""
        step = self.choice.tick_s
        first = math.ceil((self.start + self.utc_offset_s) / step) * step - self.utc_offset_s
        times = [first + k * step for k in range(int((self.end - first) // step) + 1)]
        return [(t, time.strftime(self.choice.tick_format, time.localtime(t))) for t in times if t <= self.end]

    @property
    def zone_title(self) -> str:
        """The local time zone as an offset, for the axis title: "UTC+02:00"."""
        sign = "+" if self.utc_offset_s >= 0 else "-"
        hours, minutes = divmod(abs(self.utc_offset_s) // 60, 60)
        return f"UTC{sign}{hours:02d}:{minutes:02d}"


def window_for(key: RangeKey, now: float | None = None) -> Window:
    choice = RANGES[key]
    now = time.time() if now is None else now
    offset = time.localtime(now).tm_gmtoff
    bucket = choice.bucket_s
    end = math.floor((now + offset) / bucket) * bucket + bucket - offset
    return Window(choice, end - choice.seconds, end, offset)
