"""ONNX export (checked against torch), measured benchmarks with graph MACs, and evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgewise.core.errors import ConfigError, ModelError
from edgewise.studio.bench import benchmark_onnx, count_params_and_macs
from edgewise.studio.checkpoints import load_checkpoint
from edgewise.studio.evaluate import evaluate, summarize
from edgewise.studio.export import export_onnx, read_metadata
from edgewise.studio.zoo import create_model
from tests.studio.conftest import TrainedRun

# The stated export tolerance: ORT logits within 1e-4 (absolute) of torch's on random input.
EXPORT_TOLERANCE = 1e-4


def _torch_macs(model: torch.nn.Module, image_size: int) -> int:
    total = 0

    def count(module: torch.nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            total += output[0].numel() * module.in_channels // module.groups * int(np.prod(module.kernel_size))
        elif isinstance(module, torch.nn.Linear):
            total += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, image_size, image_size))
    for hook in hooks:
        hook.remove()
    return total


def test_export_matches_torch_and_records_metadata(trained_small: TrainedRun, exported_small: Path) -> None:
    loaded = load_checkpoint(trained_small.checkpoint)
    result = export_onnx(loaded.model, exported_small.with_name("fixed.onnx"), image_size=32, classes=loaded.classes)
    assert result.tolerance == EXPORT_TOLERANCE and result.max_abs_diff <= EXPORT_TOLERANCE
    assert not list(exported_small.parent.glob("*.data"))  # weights live inside the file
    metadata = read_metadata(exported_small)
    assert metadata["edgewise.image_size"] == "32" and "hole" in metadata["edgewise.classes"]


def test_export_beyond_tolerance_is_an_error(tmp_path: Path) -> None:
    model = create_model("cnn-small", 4)
    with pytest.raises(ModelError, match="differs from torch"):
        export_onnx(model, tmp_path / "m.onnx", image_size=32, tolerance=-1.0)


@pytest.mark.parametrize("arch", ["cnn-small", "mobilenetv3-small", "resnet-tiny"])
def test_graph_macs_match_the_torch_count(arch: str, tmp_path: Path) -> None:
    model = create_model(arch, 4)
    path = export_onnx(model, tmp_path / "m.onnx", image_size=32, dynamic_batch=True).path
    params, macs = count_params_and_macs(path)
    assert macs == _torch_macs(model, 32)
    # BatchNorm folds into the convolutions: fewer tensors, about as many weights.
    torch_params = sum(p.numel() for p in model.parameters())
    assert 0.9 * torch_params <= params <= torch_params


def test_macs_survive_int8_qdq_quantization(exported_small: Path, tmp_path: Path) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": np.random.default_rng(i).standard_normal((1, 3, 32, 32), np.float32)}
                                 for i in range(4)])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    quantized = tmp_path / "int8.onnx"
    quantize_static(str(exported_small), str(quantized), Reader(), quant_format=QuantFormat.QDQ)
    fp32_params, fp32_macs = count_params_and_macs(exported_small)
    int8_params, int8_macs = count_params_and_macs(quantized)
    assert int8_macs == fp32_macs > 0
    assert int8_params >= 0.9 * fp32_params


def test_benchmark_reports_ordered_percentiles(exported_small: Path) -> None:
    result = benchmark_onnx(exported_small, threads=1, batch=2, warmup=2, runs=20)
    assert 0 < result.p50_ms <= result.p95_ms <= result.p99_ms
    assert result.throughput_fps == pytest.approx(2 * 1000 / result.mean_ms)
    assert result.file_size_bytes == exported_small.stat().st_size and result.macs > 0


def test_benchmark_fixed_batch_and_missing_file(trained_small: TrainedRun, tmp_path: Path) -> None:
    loaded = load_checkpoint(trained_small.checkpoint)
    fixed = export_onnx(loaded.model, tmp_path / "fixed.onnx", image_size=32).path
    with pytest.raises(ConfigError, match="fixed batch of 1") as info:
        benchmark_onnx(fixed, batch=4, runs=1)
    assert "--dynamic-batch" in info.value.fix
    with pytest.raises(ModelError, match="does not exist"):
        benchmark_onnx(tmp_path / "none.onnx")


def test_evaluate_onnx_agrees_with_the_checkpoint(trained_small: TrainedRun, exported_small: Path) -> None:
    from_torch = evaluate(trained_small.checkpoint, trained_small.data_dir)
    from_onnx = evaluate(exported_small, trained_small.data_dir)
    assert from_torch.num_samples == from_onnx.num_samples == 16
    assert abs(from_torch.accuracy - from_onnx.accuracy) <= 1 / 16
    assert from_torch.accuracy == pytest.approx(trained_small.test_accuracy)
    assert sum(map(sum, from_onnx.confusion)) == 16
    assert from_onnx.classes == ["crack", "hole", "ok", "scratch"]


def test_evaluate_refuses_other_classes(trained_small: TrainedRun, tmp_path: Path) -> None:
    from edgewise.studio.samples import write_sample

    digits = write_sample("digits", tmp_path / "digits", size=60)
    with pytest.raises(Exception, match="the model predicts"):
        evaluate(trained_small.checkpoint, digits)


def test_summarize_precision_recall_confusion() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    predictions = np.array([0, 1, 1, 1, 2, 0])
    result = summarize(labels, predictions, ["a", "b", "c"])
    assert result.accuracy == pytest.approx(4 / 6)
    assert result.confusion == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert result.precision == {"a": 0.5, "b": pytest.approx(2 / 3), "c": 1.0}
    assert result.recall == {"a": 0.5, "b": 1.0, "c": 0.5}
