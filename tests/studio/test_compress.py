"""Recipes, the measured pipeline, the report, target checks and the CLI, on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from edgewise.cli.main import main
from edgewise.core.errors import DatasetError, RecipeError, TargetIncompatible
from edgewise.core.hashing import sha256_file
from edgewise.core.targets import get_target
from edgewise.studio.compress import (
    SCHEMA,
    DataBundle,
    RunOptions,
    builtin_recipes,
    check_model,
    load_input_model,
    load_recipe,
    load_report,
    parse_recipe,
    run_compression,
)
from edgewise.studio.compress.inputs import save_step_checkpoint
from edgewise.studio.compress.measure import count_graph, export_model
from edgewise.studio.compress.pipeline import _flags
from edgewise.studio.compress.report import StepMetrics
from edgewise.studio.compress.training import fine_tune

IMAGE = 32


def _loader(count: int, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (count,), generator=generator)
    images = torch.randn(count, 3, IMAGE, IMAGE, generator=generator) * 0.5
    for label in range(3):
        images[labels == label, label] += 1.0
    return DataLoader(TensorDataset(images, labels), batch_size=32)


@pytest.fixture(scope="module")
def data() -> DataBundle:
    return DataBundle(_loader(96, 1), _loader(32, 2), _loader(64, 3), ["a", "b", "c"])


@pytest.fixture(scope="module")
def checkpoint(data: DataBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))
    fine_tune(model, data.train, epochs=2, lr=5e-3)
    return save_step_checkpoint(tmp_path_factory.mktemp("model") / "model.pt", model, "tiny", data.classes, IMAGE)


QUICK = RunOptions(latency_runs=10)


def _recipe(*steps: dict, name: str = "test") -> dict:
    return {"name": name, "steps": list(steps)}


# --- recipes ---------------------------------------------------------------------------------------------

def test_builtin_recipes_exist_and_validate() -> None:
    recipes = builtin_recipes()
    assert {"edge-tpu-int8", "jetson-fp16", "rpi-int8", "balanced"} <= set(recipes)
    for recipe in recipes.values():
        assert recipe.build()


def test_balanced_ends_in_int8_and_jetson_fp16_in_fp16() -> None:
    assert load_recipe("balanced").final_precision() == "int8"
    assert load_recipe("jetson-fp16").final_precision() == "fp16"


def test_unknown_step_is_named_with_its_position() -> None:
    with pytest.raises(RecipeError) as caught:
        parse_recipe(_recipe({"prune": {}}, {"sharpen": {}}), "r.yaml").build()
    assert "step 2" in caught.value.message and "'sharpen'" in caught.value.message
    assert "quantize" in caught.value.fix


def test_bad_parameter_names_the_step_and_the_field() -> None:
    with pytest.raises(RecipeError) as caught:
        parse_recipe(_recipe({"quantize": {"mode": "int3"}}), "r.yaml").build()
    assert "step 1 (quantize)" in caught.value.message and "'mode'" in caught.value.message
    with pytest.raises(RecipeError, match="'sparsity'"):
        parse_recipe(_recipe({"prune": {"sparsity": 1.5}}), "r.yaml").build()
    with pytest.raises(RecipeError, match="'calibraton'"):
        parse_recipe(_recipe({"quantize": {"calibraton": "minmax"}}), "r.yaml").build()


def test_torch_step_after_ptq_is_refused() -> None:
    with pytest.raises(RecipeError, match="comes after step 1 \\(quantize\\)"):
        parse_recipe(_recipe({"quantize": {}}, {"prune": {}}), "r.yaml").build()


def test_recipe_from_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nsteps:\n  - slim\n  - step: quantize\n    mode: fp16\n")
    recipe = load_recipe(path)
    assert [s.step for s in recipe.steps] == ["slim", "quantize"] and recipe.final_precision() == "fp16"
    path.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(path)
    with pytest.raises(RecipeError, match="unknown recipe"):
        load_recipe("no-such-recipe")


# --- target checks -----------------------------------------------------------------------------------------

def test_fp32_model_fails_the_edge_tpu_check_and_passes_the_host(checkpoint: Path, tmp_path: Path) -> None:
    path = export_model(load_input_model(checkpoint).model, tmp_path / "m.onnx", IMAGE)
    counts = count_graph(path)
    coral = check_model(path, "fp32", get_target("coral-usb"), counts)
    assert not coral.ok and coral.est_latency_ms is None
    assert any("does not run fp32" in issue for issue in coral.issues)
    assert any("full int8" in issue for issue in coral.issues)
    host = check_model(path, "fp32", get_target("x86-host"), counts)
    assert host.ok and host.est_latency_ms and host.est_latency_ms > 0


def test_a_model_over_the_memory_budget_is_flagged(checkpoint: Path, tmp_path: Path) -> None:
    path = export_model(load_input_model(checkpoint).model, tmp_path / "m.onnx", IMAGE)
    small = get_target("rpi4").model_copy(update={"memory_budget_mb": 0.001})
    check = check_model(path, "fp32", small, count_graph(path))
    assert not check.ok and any("over the" in issue for issue in check.issues)


def test_flags_name_a_slower_and_no_smaller_step() -> None:
    def metrics(latency: float, size: int) -> StepMetrics:
        return StepMetrics(accuracy=90, delta_accuracy=0, params=1, macs=1, file_size_bytes=size,
                           host_latency_ms=latency, host_latency_p95_ms=latency, host_speedup=1, size_ratio=1,
                           est_target_latency_ms=None, est_energy_mj=None)

    class Previous:
        def __init__(self, m: StepMetrics) -> None:
            self.metrics = m

    flags = _flags(metrics(2.0, 1000), "int8", [Previous(metrics(1.0, 1000))])  # type: ignore[list-item]
    assert any("SLOWER" in f for f in flags) and any("NO SMALLER" in f for f in flags)
    assert any("int8 is NO FASTER" in f for f in flags)
    assert _flags(metrics(0.5, 400), "fp32", [Previous(metrics(1.0, 1000))]) == []  # type: ignore[list-item]


# --- the pipeline ------------------------------------------------------------------------------------------

def test_pipeline_measures_every_step_keeps_each_model_and_writes_the_report(
    checkpoint: Path, data: DataBundle, tmp_path: Path
) -> None:
    before = sha256_file(checkpoint)
    recipe = parse_recipe(_recipe({"prune": {"target_macs_ratio": 0.5, "fine_tune_epochs": 1}},
                                  {"slim": {}}, {"quantize": {"calibration_samples": 32}}), "t")
    report = run_compression(checkpoint, data, "x86-host", recipe, tmp_path / "out", QUICK)
    assert sha256_file(checkpoint) == before, "the input model must never be modified"
    assert [s.name for s in report.steps] == ["baseline", "prune", "slim", "quantize"]
    for record in report.steps:
        assert Path(record.model_path).is_file()
        assert Path(record.model_path).parent.name == f"{record.index:02d}-{record.name}"
        assert record.metrics.host_latency_ms > 0 and record.metrics.est_target_latency_ms
    assert report.steps[1].checkpoint_path and Path(report.steps[1].checkpoint_path).is_file()
    assert report.steps[3].checkpoint_path is None  # int8 exists only as ONNX
    assert report.steps[1].metrics.macs < 0.6 * report.steps[0].metrics.macs
    assert report.steps[3].precision.startswith("int8")
    out = tmp_path / "out"
    for name in ("report.json", "report.md", "report.html", "pareto.png"):
        assert (out / name).stat().st_size > 0
    raw = json.loads((out / "report.json").read_text())
    assert raw["schema"] == SCHEMA and raw["input"]["sha256"] == before
    assert {"accuracy", "delta_accuracy", "params", "macs", "file_size_bytes", "host_latency_ms",
            "est_target_latency_ms"} <= set(raw["steps"][0]["metrics"])
    assert load_report(out / "report.json").final_step == 3
    assert "| 3 | quantize |" in (out / "report.md").read_text()
    # a kept step model can start a new run (e.g. to bundle or compress further)
    assert load_input_model(Path(report.steps[1].checkpoint_path)).model is not None


def test_fp32_recipe_for_the_edge_tpu_is_refused_before_running(checkpoint: Path, data: DataBundle,
                                                                tmp_path: Path) -> None:
    before = sha256_file(checkpoint)
    recipe = parse_recipe(_recipe({"slim": {}}), "fp32-only")
    with pytest.raises(TargetIncompatible, match="coral-dev-board runs only int8"):
        run_compression(checkpoint, data, "coral-dev-board", recipe, tmp_path / "out", QUICK)
    assert not (tmp_path / "out").exists()
    assert sha256_file(checkpoint) == before


def test_mixed_precision_on_the_edge_tpu_writes_the_report_then_fails(checkpoint: Path, data: DataBundle,
                                                                      tmp_path: Path) -> None:
    recipe = parse_recipe(_recipe({"quantize": {"exclude_layers": ["/0/Conv"], "calibration_samples": 32}}), "mixed")
    with pytest.raises(TargetIncompatible, match="full int8"):
        run_compression(checkpoint, data, "coral-usb", recipe, tmp_path / "out", QUICK)
    report = load_report(tmp_path / "out" / "report.json")
    assert not report.steps[-1].target_check.ok and report.steps[-1].precision == "int8-mixed"
    assert report.steps[-1].target_check.float_compute_layers == ["/0/Conv"]
    with pytest.raises(RecipeError, match="unknown layer"):
        run_compression(checkpoint, data, "x86-host", parse_recipe(_recipe({"quantize": {"exclude_layers": ["nope"]}}),
                                                                    "x"), tmp_path / "out2", QUICK)


def _with_card(onnx_path: Path) -> Path:
    """Its model card beside it: the studio's own preprocessing (RGB, stretched, /255, mean/std 0.5)."""
    from edgewise.core.manifest import InputSpec, OutputSpec
    from edgewise.core.model_card import ModelCard, card_beside

    spec = InputSpec(shape=[-1, 3, IMAGE, IMAGE], resize=[IMAGE, IMAGE], resize_mode="stretch", mean=[0.5] * 3,
                     std=[0.5] * 3)
    card_beside(onnx_path).write_text(ModelCard(input=spec, output=OutputSpec(decode="logits")).to_yaml())
    return onnx_path


def test_onnx_input_with_a_torch_step_is_refused(checkpoint: Path, data: DataBundle, tmp_path: Path) -> None:
    onnx_path = _with_card(export_model(load_input_model(checkpoint).model, tmp_path / "m.onnx", IMAGE))
    recipe = parse_recipe(_recipe({"prune": {}}), "p")
    with pytest.raises(RecipeError, match="ONNX file"):
        run_compression(onnx_path, data, "x86-host", recipe, tmp_path / "out", QUICK)


def test_onnx_input_can_be_quantized(checkpoint: Path, data: DataBundle, tmp_path: Path) -> None:
    onnx_path = _with_card(export_model(load_input_model(checkpoint).model, tmp_path / "m.onnx", IMAGE))
    before = sha256_file(onnx_path)
    recipe = parse_recipe(_recipe({"quantize": {"mode": "fp16"}}), "h")
    report = run_compression(onnx_path, data, "jetson-nano", recipe, tmp_path / "out", QUICK)
    assert report.steps[-1].precision == "fp16" and report.steps[-1].target_check.ok
    assert sha256_file(onnx_path) == before


# --- the CLI -----------------------------------------------------------------------------------------------

def test_cli_lists_recipes_and_targets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compress", "--list-recipes"]) == 0
    listed = capsys.readouterr().out
    assert "edge-tpu-int8" in listed and "balanced" in listed and "prune -> distill -> quantize" in listed
    assert main(["targets"]) == 0
    assert "coral-usb" in capsys.readouterr().out
    assert main(["targets", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 10


def test_cli_bad_recipe_is_one_clear_error(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("name: bad\nsteps:\n  - quantize: {mode: int3}\n")
    code = main(["compress", str(checkpoint), "--data", str(tmp_path), "--recipe", str(recipe)])
    err = capsys.readouterr().err
    assert code == 1 and "error:" in err and "step 1 (quantize)" in err and "fix:" in err


def test_cli_fp32_for_edge_tpu_is_refused(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["compress", str(checkpoint), "--data", str(tmp_path), "--target", "coral-usb",
                 "--recipe", "jetson-fp16"])
    assert code == 1 and "runs only int8" in capsys.readouterr().err


def test_pareto_front_keeps_only_undominated_points() -> None:
    from edgewise.studio.compress.report import pareto_front

    points = [(1.0, 80.0), (2.0, 90.0), (3.0, 85.0), (0.5, 70.0), (2.5, 95.0)]
    assert pareto_front(points) == [(0.5, 70.0), (1.0, 80.0), (2.0, 90.0), (2.5, 95.0)]


def test_cli_max_drop_overrides_every_int8_quantize_step() -> None:
    from edgewise.cli.compress import _with_max_drop

    recipe = _with_max_drop(load_recipe("balanced"), 0.25)
    assert recipe.steps[-1].params["max_drop"] == 0.25
    assert load_recipe("balanced").steps[-1].params["max_drop"] == 1.0  # the built-in is not changed
    fp16 = _with_max_drop(load_recipe("jetson-fp16"), 0.25)
    assert "max_drop" not in fp16.steps[-1].params


# --- model and data must belong together -------------------------------------------------------------------

def test_a_model_trained_on_other_classes_is_refused_by_name(checkpoint: Path, tmp_path: Path) -> None:
    # the new user's case: a model trained on one dataset, compressed against another, ran with rc 0
    other = DataBundle(_loader(32, 4), _loader(32, 5), _loader(32, 6), ["bolt", "nut", "washer"])
    with pytest.raises(DatasetError, match=r"trained on classes \[a, b, c\].*\[bolt, nut, washer\]"):
        run_compression(checkpoint, other, "jetson-nano", "jetson-fp16", tmp_path / "out", QUICK)
    assert not (tmp_path / "out" / "report.json").exists()


def test_the_same_classes_in_another_order_are_refused(checkpoint: Path, tmp_path: Path) -> None:
    reordered = DataBundle(_loader(32, 4), _loader(32, 5), _loader(32, 6), ["c", "b", "a"])
    with pytest.raises(DatasetError, match="another order"):
        run_compression(checkpoint, reordered, "jetson-nano", "jetson-fp16", tmp_path / "out", QUICK)


def test_an_onnx_model_with_another_number_of_outputs_is_refused(
    checkpoint: Path, tmp_path: Path
) -> None:
    onnx_path = _with_card(export_model(load_input_model(checkpoint).model, tmp_path / "m.onnx", IMAGE))
    four = DataBundle(_loader(32, 4), _loader(32, 5), _loader(32, 6), ["a", "b", "c", "d"])
    recipe = parse_recipe(_recipe({"quantize": {"mode": "fp16"}}), "h")
    with pytest.raises(DatasetError, match="has 3 outputs but the data has 4 classes"):
        run_compression(onnx_path, four, "jetson-nano", recipe, tmp_path / "out", QUICK)


def test_cli_compress_against_another_dataset_is_one_clear_error(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgewise.studio.samples import write_sample

    digits = write_sample("digits", tmp_path / "digits", size=60, seed=1)
    code = main(["compress", str(checkpoint), "--data", str(digits), "--target", "jetson-nano",
                 "--recipe", "jetson-fp16", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "trained on classes [a, b, c]" in err and "fix:" in err
    assert "Traceback" not in err
