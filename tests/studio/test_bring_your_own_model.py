"""A third-party classifier taken from an ONNX file on disk to the agent, through its model card.

The model is built here the way other toolkits ship them: a non-square input (48x96) read in BGR
with ImageNet-style mean/std, dynamic batch, height and width, and its softmax inside the graph.
Its network was trained by us on a colour-tinted `parts` sample (so colour order matters), and
nothing about it is recorded for edgewise: it reaches the studio only with the card a user wrote.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from edgewise.core.errors import ConfigError, ModelError
from edgewise.core.manifest import InputSpec, OutputSpec
from edgewise.core.model_card import ModelCard, card_beside, load_card

MEAN_BGR = [0.406, 0.456, 0.485]
STD_BGR = [0.225, 0.224, 0.229]
SIZE = (48, 96)  # height, width
TINT_RGB = np.array([1.0, 0.75, 0.45])  # warm light: red strong, blue weak


@dataclass
class ThirdParty:
    data_dir: Path
    onnx_path: Path
    card: ModelCard
    net: object  # the torch network inside, to export the same model again


def _tint(root: Path) -> None:
    for path in root.rglob("*.png"):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR).astype(np.float64)
        cv2.imwrite(str(path), np.clip(bgr * TINT_RGB[::-1], 0, 255).astype(np.uint8))


def _export_third_party(net, path: Path, opset: int = 17, softmax: bool = True) -> Path:
    import torch
    from torch.nn import functional

    mean = torch.tensor(MEAN_BGR).view(1, 3, 1, 1)
    std = torch.tensor(STD_BGR).view(1, 3, 1, 1)

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            rgb = (x * std + mean).flip(1)  # back to [0, 1], BGR -> RGB
            small = functional.interpolate(rgb, size=(32, 32), mode="bilinear", align_corners=False)
            logits = self.net((small - 0.5) / 0.5)
            return torch.softmax(logits, dim=1) if softmax else logits

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Wrapped().eval(), (torch.randn(1, 3, *SIZE),), str(path), input_names=["image"],
                          output_names=["probs"], opset_version=opset, dynamo=False,
                          dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "probs": {0: "n"}})
    return path


def _card(labels: list[str] | None = None) -> ModelCard:
    return ModelCard(labels=labels or [], input=InputSpec(
        shape=[-1, 3, -1, -1], layout="NCHW", dtype="float32", color_order="BGR", resize=list(SIZE),
        resize_mode="stretch", scale=1 / 255, mean=MEAN_BGR, std=STD_BGR), output=OutputSpec(decode="probabilities"))


@pytest.fixture(scope="module")
def third_party(tmp_path_factory: pytest.TempPathFactory) -> ThirdParty:
    import torch

    from edgewise.studio.checkpoints import load_checkpoint
    from edgewise.studio.samples import write_sample
    from edgewise.studio.train import TrainConfig, train

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("byom")
    data_dir = write_sample("parts", root / "parts", size=1500, seed=11)
    _tint(data_dir)
    config = TrainConfig(arch="cnn-small", epochs=10, batch_size=32, num_threads=2, device="cpu", seed=1)
    result = train(config, data_dir, root / "train", progress=False)
    net = load_checkpoint(result.checkpoint_path).model.eval()
    (root / "vendor").mkdir()
    onnx_path = _export_third_party(net, root / "vendor" / "classifier.onnx")
    return ThirdParty(data_dir, onnx_path, _card(), net)


def _reference_predictions(onnx_path: Path, data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The vendor's own pipeline, written without edgewise: OpenCV decode, resize, (x/255 - mean) / std."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    classes = sorted(p.name for p in (data_dir / split).iterdir())
    labels, predictions = [], []
    for index, name in enumerate(classes):
        for file in sorted((data_dir / split / name).glob("*.png")):
            bgr = cv2.resize(cv2.imread(str(file)), (SIZE[1], SIZE[0]), interpolation=cv2.INTER_LINEAR)
            tensor = ((bgr / 255.0 - MEAN_BGR) / STD_BGR).astype(np.float32).transpose(2, 0, 1)[None]
            predictions.append(int(session.run(None, {"image": tensor})[0].argmax()))
            labels.append(index)
    return np.array(labels), np.array(predictions)


def test_inspect_reports_what_the_file_says_and_leaves_the_rest_undecided(third_party: ThirdParty,
                                                                          tmp_path: Path) -> None:
    from edgewise.studio.cards import inspect_onnx

    found = inspect_onnx(third_party.onnx_path)
    assert found.inputs[0].shape[1] == 3 and found.inputs[0].dynamic == [0, 2, 3]
    assert found.last_op == "Softmax" and found.proposal["output"]["decode"] == "probabilities"
    assert found.proposal["input"]["layout"] == "NCHW" and found.opset == 17
    assert {"input.color_order", "input.resize", "input.mean", "input.std", "input.scale",
            "input.resize_mode"} == set(found.undecided)
    card_path = tmp_path / "vendor.card.yaml"
    command = [sys.executable, "-m", "edgewise", "inspect", str(third_party.onnx_path), "--out", str(card_path)]
    shown = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert "dynamic: n, h, w" in shown and "Softmax" in shown and "could not decide" in shown
    with pytest.raises(ConfigError, match="undecided"):
        load_card(card_path)  # nulls are refused until someone fills them in
    complete = [*command, "--color-order", "BGR", "--size", "48x96", "--resize-mode", "stretch", "--scale",
                str(1 / 255), "--mean", ",".join(map(str, MEAN_BGR)), "--std", ",".join(map(str, STD_BGR))]
    assert "complete" in subprocess.run(complete, capture_output=True, text=True, check=True).stdout
    assert load_card(card_path) == third_party.card


def test_evaluate_through_the_card_equals_the_vendors_pipeline(third_party: ThirdParty) -> None:
    from edgewise.studio.evaluate import evaluate_onnx

    labels, reference = _reference_predictions(third_party.onnx_path, third_party.data_dir, "test")
    result = evaluate_onnx(third_party.onnx_path, third_party.data_dir, "test", third_party.card)
    expected = float(np.mean(labels == reference))
    assert result.num_samples == len(labels) >= 100
    assert abs(result.accuracy - expected) <= 0.001 and expected > 0.8
    wrong_colours = third_party.card.model_copy(
        update={"input": third_party.card.input.model_copy(update={"color_order": "RGB"})})
    assert evaluate_onnx(third_party.onnx_path, third_party.data_dir, "test", wrong_colours).accuracy < expected


def test_a_dynamic_size_is_never_guessed(third_party: ThirdParty, tmp_path: Path) -> None:
    from edgewise.studio.bench import benchmark_onnx
    from edgewise.studio.cards import fixed_input_shape, resolve_card

    with pytest.raises(ConfigError, match="dynamic dimension 2"):
        benchmark_onnx(third_party.onnx_path, runs=2, warmup=0)
    with pytest.raises(ConfigError, match="no model card"):
        resolve_card(third_party.onnx_path)
    result = benchmark_onnx(third_party.onnx_path, runs=3, warmup=1, input_shape=fixed_input_shape(third_party.card))
    assert result.p50_ms > 0 and result.macs > 0


def test_int8_through_the_card_to_the_agent(third_party: ThirdParty, tmp_path: Path) -> None:
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgewise.agent.config import SourceSettings
    from edgewise.agent.pipeline import Pipeline
    from edgewise.agent.sources import create_source
    from edgewise.core.bundle import read_manifest
    from edgewise.studio.bundling import BundleOptions, bundle_from_steps
    from edgewise.studio.card_data import load_card_split
    from edgewise.studio.compress import RunOptions, load_recipe, run_compression
    from edgewise.studio.compress.steps._ort_quant import ArrayCalibrationReader
    from edgewise.studio.evaluate import evaluate_onnx

    card_path = card_beside(third_party.onnx_path)
    card_path.write_text(third_party.card.to_yaml())
    try:
        report = run_compression(third_party.onnx_path, third_party.data_dir, "x86-host", load_recipe("rpi-int8"),
                                 tmp_path / "run", RunOptions(latency_runs=5))
    finally:
        card_path.unlink()
    base, final = report.steps[0], report.steps[-1]
    assert final.precision.startswith("int8") and final.details["agreement_with_input_model"]["relative_error"] < 0.5
    fp32 = evaluate_onnx(third_party.onnx_path, third_party.data_dir, "test", third_party.card).accuracy
    assert abs(base.metrics.accuracy - 100 * fp32) < 0.001  # fixing the size changed nothing (3 decimals kept)
    int8 = final.metrics.accuracy
    assert int8 >= 100 * fp32 - 1.0, (int8, fp32)

    # ONNX Runtime's default static quantization, after its recommended pre-processing, same calibration images
    prepared, ort_int8 = tmp_path / "prepared.onnx", tmp_path / "ort-int8.onnx"
    quant_pre_process(str(third_party.onnx_path), str(prepared))
    train = load_card_split(third_party.data_dir, "train", third_party.card)
    spread = np.random.default_rng(1).permutation(len(train))[:256]  # every class, as our calibration takes
    quantize_static(str(prepared), str(ort_int8), ArrayCalibrationReader("image", [train.tensors[spread]]))
    # 224 test images resolve 0.45 pt; to tell two int8 models apart, every image of the sample is used
    def everywhere(path: Path) -> float:
        return float(np.mean([evaluate_onnx(path, third_party.data_dir, split, third_party.card).accuracy
                              for split in ("train", "val", "test")]))
    ours, theirs = everywhere(Path(final.model_path)), everywhere(ort_int8)
    reference = everywhere(third_party.onnx_path)
    print(f"accuracy on all 1500 images: fp32 {reference:.4f}, ours int8 {ours:.4f}, ORT default int8 {theirs:.4f}")
    assert ours >= theirs, (ours, theirs, reference)

    manifest = bundle_from_steps(tmp_path / "bundle", [Path(final.dir)], BundleOptions("vendor", "1.0.0"))
    assert manifest.input.color_order == "BGR" and manifest.input.shape == [-1, 3, 48, 96]
    assert manifest.output.decode == "probabilities" and manifest.labels == ["crack", "hole", "ok", "scratch"]
    assert read_manifest(tmp_path / "bundle") == manifest

    studio = evaluate_onnx(Path(final.model_path), third_party.data_dir, "test", ModelCard.of_manifest(manifest))
    pipeline = Pipeline.from_dir(tmp_path / "bundle", ["cpu"], ["CPUExecutionProvider"], threads=1)
    studio_tensors = load_card_split(third_party.data_dir, "test", ModelCard.of_manifest(manifest)).tensors
    settings = SourceSettings(kind="image-folder", path=str(third_party.data_dir / "test"), loop=False)
    frames = list(create_source(settings).frames())  # the agent's own reading of the files
    assert len(frames) == studio.num_samples
    for index, frame in enumerate(frames):
        assert np.array_equal(pipeline.preprocess(frame), studio_tensors[index : index + 1])  # bit for bit
        result = pipeline.run(frame)
        agent_scores = np.array([result.scores[label] for label in manifest.labels])
        np.testing.assert_allclose(agent_scores, studio.extra["scores"][index], rtol=0, atol=1e-6)


def test_an_opset_11_model_quantizes_per_channel_to_a_valid_model(third_party: ThirdParty, tmp_path: Path) -> None:
    from edgewise.studio.compress import RunOptions, run_compression
    from edgewise.studio.compress.recipe import Recipe

    old = tmp_path / "old.onnx"
    _export_third_party(third_party.net, old, opset=11)
    assert onnx.load(str(old)).opset_import[0].version == 11
    recipe = Recipe(name="int8-per-channel", steps=[{"step": "quantize", "params": {"per_channel": True}}])
    report = run_compression(old, third_party.data_dir, "x86-host", recipe, tmp_path / "run",
                             RunOptions(latency_runs=5), card=_write(third_party.card, tmp_path / "old.card.yaml"))
    quantized = onnx.load(report.steps[-1].model_path)
    onnx.checker.check_model(quantized)
    assert max(o.version for o in quantized.opset_import if o.domain in ("", "ai.onnx")) >= 13
    assert any("opset 11 upgraded" in note for note in report.steps[-1].notes)
    assert report.steps[-1].metrics.accuracy >= report.steps[0].metrics.accuracy - 1.0


def test_a_broken_quantization_is_caught_before_it_is_kept(third_party: ThirdParty, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from onnx import numpy_helper

    from edgewise.studio.compress import RunOptions, run_compression
    from edgewise.studio.compress.recipe import Recipe
    from edgewise.studio.compress.steps import _ort_quant

    real = _ort_quant.static_int8

    def broken(source: Path, destination: Path, *args, **kwargs) -> Path:
        real(source, destination, *args, **kwargs)
        model = onnx.load(str(destination))
        for init in model.graph.initializer:  # every int8 weight's sign flipped: a classic packing bug
            if init.data_type == onnx.TensorProto.INT8:
                flipped = -numpy_helper.to_array(init).astype(np.int16)
                init.CopyFrom(numpy_helper.from_array(np.clip(flipped, -127, 127).astype(np.int8), init.name))
        onnx.save(model, str(destination))
        return destination

    monkeypatch.setattr(_ort_quant, "static_int8", broken)
    recipe = Recipe(name="int8", steps=[{"step": "quantize", "params": {}}])
    with pytest.raises(ModelError) as caught:
        run_compression(third_party.onnx_path, third_party.data_dir, "x86-host", recipe, tmp_path / "run",
                        RunOptions(latency_runs=5), card=_write(third_party.card, tmp_path / "c.card.yaml"))
    message = str(caught.value)
    assert "differ from its input model" in message and "\n" not in message


def _write(card: ModelCard, path: Path) -> Path:
    path.write_text(card.to_yaml())
    return path




def test_the_agent_installs_the_signed_bundle_and_scores_as_the_studio_does(third_party: ThirdParty,
                                                                             tmp_path: Path) -> None:
    """The device side end to end: verified download, install, health check, then `run --once`
    over the test images; every frame's event carries the studio's top label and score."""
    import shutil

    from edgewise.agent.config import AgentSettings, HealthSettings, RuleSettings, SourceSettings
    from edgewise.agent.health import check_model_health
    from edgewise.agent.outbox import Outbox
    from edgewise.agent.runner import AgentRunner
    from edgewise.agent.sources import create_source
    from edgewise.agent.update import UpdateMachine
    from edgewise.core.archive import pack_bundle
    from edgewise.core.bundle import sign_bundle
    from edgewise.core.signing import PrivateKey
    from edgewise.core.wire import BundleRef
    from edgewise.studio.bundling import BundleOptions, VariantSource, bundle_from_onnx
    from edgewise.studio.evaluate import evaluate_onnx

    key = PrivateKey.generate()
    options = BundleOptions("vendor", "2.0.0", card=third_party.card.with_labels(["crack", "hole", "ok", "scratch"]))
    manifest = bundle_from_onnx(tmp_path / "bundle", [VariantSource("cpu-fp32", third_party.onnx_path)], options)
    sign_bundle(tmp_path / "bundle", key)
    archive = pack_bundle(tmp_path / "bundle", tmp_path / "bundle.tar")
    test_dir = third_party.data_dir / "test"

    def download(target: BundleRef, dest: Path) -> Path:
        shutil.copyfile(archive, dest)
        return dest

    def probe() -> list[np.ndarray]:
        return list(create_source(SourceSettings(frames=4, width=96, height=48)).frames())

    def health(bundle_dir: Path, installed) -> object:
        return check_model_health(bundle_dir, installed, probe, HealthSettings(window_s=0.2, min_frames=3),
                                  ["cpu"], ["CPUExecutionProvider"], 1)

    data_dir = tmp_path / "device"
    machine = UpdateMachine(data_dir, [key.public], download=download, health_check=health)
    machine.offer(BundleRef(name=manifest.name, version=manifest.version, digest=manifest.digest,
                            url=f"/api/v1/device/bundles/{manifest.digest}/archive", size_bytes=archive.stat().st_size))
    machine.run_until_rest()
    assert machine.record.state == "idle"
    every_frame = RuleSettings(name="all", labels=list(manifest.labels), min_score=0.0, consecutive=1, cooldown_s=0,
                               priority="event", event_type="classification")
    settings = AgentSettings(data_dir=data_dir, threads=1, drop_policy="none", rules=[every_frame],
                             source=SourceSettings(kind="image-folder", path=str(test_dir)))
    AgentRunner(settings).run(once=True)
    events = [e for e in Outbox(data_dir / "outbox.sqlite3").batch(10_000).events if e.type == "classification"]
    studio = evaluate_onnx(third_party.onnx_path, third_party.data_dir, "test", third_party.card)
    assert len(events) == studio.num_samples
    best = studio.extra["scores"].argmax(axis=1)
    for index, event in enumerate(sorted(events, key=lambda e: e.seq)):
        assert event.label == manifest.labels[best[index]] and event.bundle_name == "vendor"
        assert abs(event.score - studio.extra["scores"][index, best[index]]) <= 1e-6
