"""studio.bundling: bundles from a compress run's step (report.json) or from ONNX files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgewise.core.bundle import check_unsigned_bundle
from edgewise.core.errors import ConfigError, InvalidBundle
from edgewise.studio.bundling import BundleOptions, VariantSource, bundle_from_onnx, bundle_from_steps, dataset_digest
from tests.registry.bundles import tiny_onnx


def _fake_run(tmp: Path) -> Path:
    """A compress run laid out like studio/compress/pipeline.py writes it, with a small report.json."""
    run = tmp / "run"
    (tmp / "data" / "test" / "cat").mkdir(parents=True)
    (tmp / "data" / "test" / "cat" / "0.png").write_bytes(b"png")
    steps = []
    for index, (name, precision, accuracy) in enumerate([("baseline", "fp32", 90.0), ("quantize", "int8", 89.5)]):
        step_dir = run / "steps" / f"{index:02d}-{name}"
        tiny_onnx(step_dir / "model.onnx", seed=index)
        steps.append({
            "index": index, "name": name, "params": {"calibration_batches": 4} if index else {},
            "dir": str(step_dir), "model_path": str(step_dir / "model.onnx"), "checkpoint_path": None,
            "precision": precision, "flags": [], "notes": [], "details": {}, "seconds": 1.0,
            "metrics": {"accuracy": accuracy, "delta_accuracy": accuracy - 90.0, "params": 8, "macs": 200,
                        "file_size_bytes": 285, "host_latency_ms": 0.05, "host_latency_p95_ms": 0.07,
                        "host_speedup": 1.0, "size_ratio": 1.0, "est_target_latency_ms": 0.4, "est_energy_mj": None},
        })
    report = {
        "schema": "edgewise.compress.report/v1", "created_at": "2026-01-01T00:00:00+00:00",
        "input": {"path": "/models/tiny.pt", "sha256": "ab" * 32, "arch": "tiny", "classes": ["cat", "dog"],
                  "image_size": 8},
        "target": {"name": "rpi5", "family": "rpi"}, "recipe": {},
        "data": {"classes": ["cat", "dog"], "dir": str(tmp / "data")},
        "host": {}, "steps": steps, "final_step": 1, "best_step": 1, "notes": [],
    }
    (run / "report.json").write_text(json.dumps(report))
    return run


def test_a_step_fills_labels_input_target_metrics_and_lineage(tmp_path: Path) -> None:
    run = _fake_run(tmp_path)
    manifest = bundle_from_steps(tmp_path / "b", [run / "steps" / "01-quantize"], BundleOptions("tiny", "1.0.0"))
    assert manifest.labels == ["cat", "dog"] and manifest.input.resize == [8, 8]
    assert manifest.input.mean == [0.5, 0.5, 0.5] and manifest.target == "rpi5" and manifest.precision == "int8"
    assert manifest.metrics.accuracy == pytest.approx(0.895) and manifest.metrics.host_latency_ms == 0.05
    assert manifest.metrics.estimated_target_latency_ms == 0.4 and manifest.metrics.extra["macs"] == 200
    assert manifest.lineage.recipe == ["baseline()", "quantize(calibration_batches=4)"]
    assert manifest.lineage.parent == f"/models/tiny.pt (sha256:{'ab' * 32})"
    assert manifest.variants[0].target_families == ["rpi", "cpu"]
    assert manifest.lineage.dataset_digest == dataset_digest(tmp_path / "data")
    assert check_unsigned_bundle(tmp_path / "b").digest == manifest.digest


def test_several_steps_become_several_variants(tmp_path: Path) -> None:
    run = _fake_run(tmp_path)
    steps = [run / "steps" / "01-quantize", run / "steps" / "00-baseline"]
    manifest = bundle_from_steps(tmp_path / "b", steps, BundleOptions("tiny", "1.0.0"))
    assert [(v.name, v.file, v.precision) for v in manifest.variants] == [
        ("rpi-int8", "rpi-int8.onnx", "int8"), ("rpi-fp32", "rpi-fp32.onnx", "fp32")]


def test_explicit_options_win_over_the_run(tmp_path: Path) -> None:
    run = _fake_run(tmp_path)
    options = BundleOptions("tiny", "2.0.0", labels=["a", "b"], target="x86-host", parent="tiny:1.0.0",
                            dataset_digest="sha256:feed", mean=[0.4, 0.4, 0.4])
    manifest = bundle_from_steps(tmp_path / "b", [run / "steps" / "00-baseline"], options)
    assert (manifest.labels, manifest.target, manifest.lineage.parent) == (["a", "b"], "x86-host", "tiny:1.0.0")
    assert manifest.lineage.dataset_digest == "sha256:feed" and manifest.input.mean == [0.4, 0.4, 0.4]


def test_a_folder_that_is_not_a_step_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidBundle, match="has no model.onnx"):
        bundle_from_steps(tmp_path / "b", [tmp_path], BundleOptions("tiny", "1.0.0"))
    tiny_onnx(tmp_path / "lonely" / "model.onnx")
    with pytest.raises(InvalidBundle, match="no report.json"):
        bundle_from_steps(tmp_path / "b", [tmp_path / "lonely"], BundleOptions("tiny", "1.0.0"))


def test_an_onnx_file_needs_labels_and_reads_its_input_size(tmp_path: Path) -> None:
    model = tiny_onnx(tmp_path / "m.onnx", image_size=16)
    with pytest.raises(ConfigError, match="no labels"):
        bundle_from_onnx(tmp_path / "b", [VariantSource("cpu-fp32", model)], BundleOptions("tiny", "1.0.0"))
    manifest = bundle_from_onnx(tmp_path / "b2", [VariantSource("cpu-fp32", model)],
                                BundleOptions("tiny", "1.0.0", labels=["cat", "dog"]))
    assert manifest.input.shape == [1, 3, 16, 16] and manifest.variants[0].file == "model.onnx"


def test_bad_names_and_precisions_are_config_errors(tmp_path: Path) -> None:
    model = tiny_onnx(tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match="name"):
        bundle_from_onnx(tmp_path / "b", [VariantSource("cpu", model)], BundleOptions("Bad Name", "1", labels=["a"]))
    with pytest.raises(ConfigError, match="unknown precision"):
        bundle_from_onnx(tmp_path / "c", [VariantSource("cpu", model, "int3")], BundleOptions("ok", "1", labels=["a"]))


def test_dataset_digest_changes_with_any_image(tmp_path: Path) -> None:
    (tmp_path / "data" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "data" / "train" / "cat" / "1.png").write_bytes(b"png1")
    before = dataset_digest(tmp_path / "data")
    assert before == dataset_digest(tmp_path / "data") and before.startswith("sha256:")
    (tmp_path / "data" / "train" / "cat" / "1.png").write_bytes(b"png2")
    assert dataset_digest(tmp_path / "data") != before
