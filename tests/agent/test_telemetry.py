from __future__ import annotations

from edgewise.agent.telemetry import TelemetryCollector, read_temperature_c


def test_temperature_is_the_hottest_zone_or_none(tmp_path) -> None:
    assert read_temperature_c(tmp_path) is None
    for index, milli in enumerate(["41000", "57500", "garbage"]):
        (tmp_path / f"thermal_zone{index}").mkdir()
        (tmp_path / f"thermal_zone{index}" / "temp").write_text(milli)
    assert read_temperature_c(tmp_path) == 57.5


def test_snapshot_has_percentiles_versions_and_resets_errors() -> None:
    collector = TelemetryCollector()
    for latency in range(1, 101):
        collector.record(float(latency))
    collector.record_error()
    sample = collector.snapshot(queue_depth=7, model_version="v3")
    assert sample["latency_p50_ms"] == 50.5 and 95 <= sample["latency_p95_ms"] <= 96
    assert sample["queue_depth"] == 7 and sample["model_version"] == "v3" and sample["agent_version"]
    assert sample["errors"] == 1 and sample["memory_mb"] > 0
    assert collector.snapshot(0, None)["errors"] == 0
