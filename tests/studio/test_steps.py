"""Every compression step on a tiny model and tiny data: one shared suite plus per-step behaviour."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from edgewise.core.errors import DatasetError, RecipeError
from edgewise.studio.compress import STEPS, CompressState, DataBundle
from edgewise.studio.compress.measure import count_graph, export_model, onnx_accuracy, session
from edgewise.studio.compress.steps import quantize as quantize_module
from edgewise.studio.compress.training import fine_tune

IMAGE = 32


def _loader(count: int, seed: int, shuffle: bool = False) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (count,), generator=generator)
    images = torch.randn(count, 3, IMAGE, IMAGE, generator=generator) * 0.5
    for label in range(4):  # a learnable pattern: a bright band whose channel/position is the class
        images[labels == label, label % 3, (label // 3) * 16:(label // 3) * 16 + 16, :] += 1.5
    return DataLoader(TensorDataset(images, labels), batch_size=32, shuffle=shuffle)


def tiny_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4),
    )


@pytest.fixture(scope="module")
def data() -> DataBundle:
    return DataBundle(_loader(128, 1, shuffle=True), _loader(64, 2), _loader(64, 3), ["a", "b", "c", "d"])


@pytest.fixture(scope="module")
def trained(data: DataBundle) -> nn.Module:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    return fine_tune(tiny_model(), data.train, epochs=2, lr=5e-3)


@pytest.fixture
def state(trained: nn.Module, data: DataBundle, tmp_path: Path) -> CompressState:
    model = copy.deepcopy(trained)
    onnx_path = export_model(model, tmp_path / "in.onnx", IMAGE)
    work = tmp_path / "step"
    work.mkdir()
    return CompressState(model=model, onnx_path=onnx_path, image_size=IMAGE, data=data,
                         teacher=copy.deepcopy(trained).eval(), work_dir=work)


def run_step(name: str, state: CompressState, **params) -> CompressState:
    step_class = STEPS.get(name)
    result = step_class(step_class.Params(**params)).apply(state)
    if result.onnx_path is None:  # torch steps leave the export to the pipeline
        result.onnx_path = export_model(result.model, state.work_dir / "model.onnx", IMAGE)
    return result


QUICK_PARAMS = {
    "quantize": {"calibration_samples": 32},
    "prune": {"fine_tune_epochs": 0},
    "decompose": {"params_ratio": 0.5, "fine_tune_epochs": 0},
    "distill": {"epochs": 1},
    "separable": {"epochs": 0},
    "slim": {},
}


@pytest.mark.parametrize("name", sorted(QUICK_PARAMS))
def test_every_step_gives_a_model_onnx_runtime_runs(name: str, state: CompressState) -> None:
    result = run_step(name, state, **QUICK_PARAMS[name])
    outputs = session(result.onnx_path).run(None, {"input": np.zeros((2, 3, IMAGE, IMAGE), np.float32)})[0]
    assert outputs.shape == (2, 4)
    assert result.notes, "a step must say what it did"


def test_every_registered_step_is_covered_and_rejects_unknown_params() -> None:
    assert set(STEPS.names()) == set(QUICK_PARAMS)
    for entry in STEPS:
        with pytest.raises(ValueError):
            entry.obj.Params(no_such_field=1)


def test_ptq_static_int8_is_qdq_and_about_a_quarter_of_the_size(state: CompressState) -> None:
    before = state.onnx_path.stat().st_size
    result = run_step("quantize", state, mode="ptq-static", calibration_samples=64)
    ops = {node.op_type for node in onnx.load(str(result.onnx_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert result.precision == "int8"
    assert result.onnx_path.stat().st_size < 0.5 * before  # tiny model: Q/DQ scales weigh a little more
    assert result.torch_current is False


@pytest.mark.parametrize("calibration", ["minmax", "entropy", "percentile"])
@pytest.mark.parametrize("per_channel", [True, False])
def test_calibration_methods_and_granularity_all_keep_accuracy(
    state: CompressState, calibration: str, per_channel: bool
) -> None:
    float_accuracy = onnx_accuracy(state.onnx_path, state.data.test)
    result = run_step("quantize", state, calibration=calibration, per_channel=per_channel, calibration_samples=32)
    assert onnx_accuracy(result.onnx_path, state.data.test) >= float_accuracy - 10
    assert f"{'per-channel' if per_channel else 'per-tensor'}" in " ".join(result.notes)


def test_calibration_data_of_the_wrong_shape_is_a_clear_error(state: CompressState) -> None:
    wrong = DataLoader(TensorDataset(torch.zeros(8, 3, 28, 28), torch.zeros(8, dtype=torch.long)), batch_size=4)
    state.data = DataBundle(wrong, state.data.val, state.data.test, state.data.classes)
    with pytest.raises(DatasetError, match=r"shape \[4, 3, 28, 28\].*expects"):
        run_step("quantize", state)


def test_max_drop_keeps_the_most_sensitive_layer_in_float(state: CompressState, monkeypatch) -> None:
    def fake_accuracy(path: Path, loader) -> float:
        graph = onnx.load(str(path)).graph
        dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
        convs = [n for n in graph.node if n.op_type == "Conv"]
        if not dequantized:
            return 90.0
        # only the first conv matters: quantizing it costs 5 points
        return 90.0 if convs[0].input[1] not in dequantized else 85.0

    monkeypatch.setattr(quantize_module, "onnx_accuracy", fake_accuracy)
    result = run_step("quantize", state, max_drop=0.5, calibration_samples=32)
    kept = result.details["kept_float_layers"]
    assert len(kept) == 1 and "Conv" in kept[0]
    assert result.precision == "int8-mixed"
    assert any("kept 1 sensitive layer" in note and "within" in note for note in result.notes)


def test_fp16_halves_the_file(state: CompressState) -> None:
    before = state.onnx_path.stat().st_size
    result = run_step("quantize", state, mode="fp16")
    assert result.precision == "fp16"
    assert result.onnx_path.stat().st_size < 0.6 * before


def test_dynamic_int8_runs(state: CompressState) -> None:
    result = run_step("quantize", state, mode="dynamic")
    ops = {node.op_type for node in onnx.load(str(result.onnx_path)).graph.node}
    assert "DynamicQuantizeLinear" in ops and result.precision == "int8"


def test_int4_on_a_conv_model_says_why_it_cannot(state: CompressState) -> None:
    with pytest.raises(RecipeError, match="MatMulNBits"):
        run_step("quantize", state, mode="int4")


def test_qat_ends_in_int8_qdq(state: CompressState) -> None:
    result = run_step("quantize", state, mode="qat", qat_epochs=1, calibration_samples=32)
    assert result.precision == "int8" and any("QAT" in note for note in result.notes)


@pytest.mark.parametrize("mode", ["binary", "ternary"])
def test_binary_and_ternary_are_packed_and_labelled_not_native(state: CompressState, mode: str) -> None:
    result = run_step("quantize", state, mode=mode, qat_epochs=1)
    packed = np.load(result.details["packed_weights"])
    assert any(key.endswith(".bits") for key in packed.files)
    assert result.precision == mode
    assert any("NOT RUN NATIVELY" in note for note in result.notes)
    middle = result.model[3].weight.detach()  # a middle conv: at most 3 distinct values per out channel
    assert all(len(torch.unique(row)) <= 3 for row in middle.flatten(1))


def test_channel_pruning_reaches_the_mac_target(state: CompressState) -> None:
    before = count_graph(state.onnx_path)
    result = run_step("prune", state, target_macs_ratio=0.5, fine_tune_epochs=0)
    after = count_graph(result.onnx_path)
    assert after.macs <= 0.55 * before.macs
    assert after.params < before.params
    assert result.details["macs_ratio"] <= 0.55


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_pruning_reports_the_sparsity_reached(state: CompressState, scope: str) -> None:
    result = run_step("prune", state, method="magnitude", sparsity=0.6, scope=scope, fine_tune_epochs=1)
    reached = result.details["sparsity_reached"]
    assert reached == pytest.approx(0.6, abs=0.02)
    weights = [m.weight for m in result.model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    zero = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zero >= 0.58  # fine-tuning did not regrow pruned weights


def test_decompose_reduces_targeted_params_by_the_stated_ratio(state: CompressState) -> None:
    result = run_step("decompose", state, params_ratio=0.5, fine_tune_epochs=0)
    assert result.details["targeted_params_ratio"] <= 0.5
    assert result.details["decomposed_layers"]


def test_decompose_by_energy_finds_the_true_rank_and_keeps_outputs() -> None:
    from edgewise.studio.compress.steps.decompose import DecomposeParams, _decompose_linear

    torch.manual_seed(0)
    layer = nn.Linear(64, 64)
    layer.weight.data = torch.randn(64, 4) @ torch.randn(4, 64)  # rank 4
    factored = _decompose_linear(layer, DecomposeParams(energy=0.999))
    assert factored is not None and factored[0].out_features == 4
    inputs = torch.randn(8, 64)
    assert torch.allclose(layer(inputs), factored(inputs), atol=1e-3)


def test_decompose_by_energy_runs_on_the_model(state: CompressState) -> None:
    result = run_step("decompose", state, energy=0.6, fine_tune_epochs=0)
    assert result.details["targeted_params_ratio"] < 1


def test_decompose_needs_exactly_one_rank_rule() -> None:
    params = STEPS.get("decompose").Params
    with pytest.raises(ValueError, match="exactly one"):
        params()
    with pytest.raises(ValueError, match="exactly one"):
        params(params_ratio=0.5, energy=0.9)


def test_separable_swaps_convolutions_for_depthwise_blocks(state: CompressState) -> None:
    result = run_step("separable", state, epochs=0, min_channels=16)
    assert len(result.details["separable_layers"]) == 2
    assert any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in result.model.modules())


def test_distill_trains_a_zoo_student(state: CompressState) -> None:
    result = run_step("distill", state, student="cnn-small", epochs=1)
    assert result.model is not state.teacher
    assert any("student" in note for note in result.notes)


@pytest.mark.parametrize("backend", ["onnxslim", "ort"])
def test_slim_keeps_outputs_unchanged(state: CompressState, backend: str) -> None:
    result = run_step("slim", state, backend=backend)
    assert result.details["slim_max_abs_diff"] <= 1e-4


def test_torch_steps_refuse_an_onnx_only_model(state: CompressState) -> None:
    state.torch_current = False
    for name, params in (("prune", {}), ("decompose", {"params_ratio": 0.5}), ("separable", {})):
        with pytest.raises(RecipeError, match="needs the torch model"):
            run_step(name, state, **params)
