"""The counts chart's layout, the time windows it is drawn over, and the events table's text of a
device's `data` (which may be any shape)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edgewise.fleet.dashboard.event_details import boxes_text, describe
from edgewise.fleet.dashboard.stacked_chart import MAX_SERIES, OTHER, nice_step, stacked_counts_chart
from edgewise.fleet.dashboard.time_window import RANGES, window_for

NOW = 1_750_000_000.0


def test_windows_end_on_a_bucket_and_hold_whole_buckets() -> None:
    for key, choice in RANGES.items():
        window = window_for(key, NOW)
        assert window.start < NOW <= window.end and window.end - window.start == choice.seconds
        assert (window.end + window.utc_offset_s) % choice.bucket_s == 0
        ticks = window.ticks()
        assert len(ticks) >= 3 and all(window.start <= t <= window.end for t, _ in ticks)


def test_bars_stack_to_each_buckets_total_and_rare_classes_share_other() -> None:
    window = window_for("1h", NOW)
    per_label: dict[str | None, list[int]] = {f"class{i}": [0] * 12 for i in range(MAX_SERIES + 2)}
    for i, counts in enumerate(per_label.values()):
        counts[3] = 20 - i  # class0 most frequent
    per_label[None] = [1] + [0] * 11
    chart = stacked_counts_chart(per_label, window)
    names = [s.label for s in chart.series]
    assert len(names) == MAX_SERIES and names[0] == "class0" and names[-1] == OTHER
    assert not chart.series[-1].filterable and chart.series[0].filterable
    column = [bar for s in chart.series for bar in s.bars if bar.x == chart.series[0].bars[0].x]
    assert sum(bar.count for bar in column) == chart.total - 1  # the unlabelled one is in bucket 0
    highest = min(bar.y for bar in column)
    assert abs(sum(bar.height for bar in column) - (chart.bottom - highest)) < 0.5  # stacked, no gaps
    assert chart.y_title == "events / 5 min" and [t.text for t in chart.y_ticks][0] == "0"
    assert chart.y_ticks[-1].at >= chart.top - 0.5  # the top tick is inside the plot


def test_an_empty_window_has_axes_and_no_series() -> None:
    chart = stacked_counts_chart({}, window_for("15m", NOW))
    assert chart.series == [] and chart.total == 0 and chart.x_ticks and chart.y_ticks


@given(st.integers(min_value=0, max_value=10**9))
def test_nice_step_labels_any_count_in_five_ticks(highest: int) -> None:
    step = nice_step(highest)
    assert highest <= 5 * step and str(step).strip("0") in ("1", "2", "5")


def test_boxes_and_details_as_text() -> None:
    zone = {"rule": "crowded", "zone": "bay", "boxes": [[1, 2.5, 3, 4], [5, 6, 7, 8]], "track_ids": [3, 4],
            "inside": 2, "held_s": 10.04}
    assert boxes_text(zone) == ["#3 [1, 2.5, 3, 4]", "#4 [5, 6, 7, 8]"]
    assert describe(zone) == ["rule crowded", "zone bay", "inside 2", "held 10.0 s"]
    assert boxes_text({"box": [1, 2, 3, 4]}) == ["[1, 2, 3, 4]"]
    assert describe({"line": "door", "direction": "in", "in": 2, "out": 1}) == [
        "line door", "direction in", "in 2 · out 1"]
    many = {"boxes": [[0, 0, 1, 1]] * 30}
    assert len(boxes_text(many)) == 11 and boxes_text(many)[-1] == "… 20 more"


@given(st.dictionaries(st.sampled_from(["box", "boxes", "track_id", "track_ids", "rule", "in", "inside", "dwell_s"]),
                       st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                                    lambda inner: st.lists(inner, max_size=5), max_leaves=20)))
def test_any_shape_of_data_gives_text_not_an_error(details: dict[str, object]) -> None:
    assert all(isinstance(part, str) for part in describe(details) + boxes_text(details))
