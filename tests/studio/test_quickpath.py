"""The one-call studio path the demo uses: sample -> train -> export -> bench -> evaluate."""

from __future__ import annotations

from pathlib import Path

from edgewise.studio.quickpath import format_summary, run_studio_path
from edgewise.studio.train import TrainConfig


def test_run_studio_path_measures_every_step(tmp_path: Path) -> None:
    config = TrainConfig(arch="cnn-small", epochs=1, width=0.5, num_threads=2, device="cpu")
    summary = run_studio_path(tmp_path, progress=False, config=config, sample_size=40)
    assert Path(summary["onnx"]).is_file() and Path(summary["checkpoint"]).is_file()
    assert summary["classes"] == ["crack", "hole", "ok", "scratch"]
    assert summary["export_max_abs_diff"] <= 1e-4
    assert abs(summary["test_accuracy_onnx"] - summary["test_accuracy_torch"]) <= 0.125  # 8 test images
    assert 0 < summary["latency_p50_ms"] <= summary["latency_p99_ms"] and summary["macs"] > 0
    assert set(summary["timings"]) == {"sample_s", "train_s", "export_s", "bench_s", "evaluate_s"}
    text = format_summary(summary)
    assert "test accuracy" in text and "latency p50" in text
