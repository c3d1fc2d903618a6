"""The detection path in the studio: the traffic sample, training, export in both forms, bundling,
and the agent serving the bundle with the studio's boxes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgewise.core.errors import ConfigError


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgewise.studio.samples import write_sample

    return write_sample("traffic", tmp_path_factory.mktemp("data") / "traffic", size=60, seed=5)


def test_the_traffic_sample_is_deterministic_annotated_and_split_by_clip(traffic: Path, tmp_path: Path) -> None:
    from edgewise.studio.datasets import dataset_digest
    from edgewise.studio.detect.formats.coco import read_native
    from edgewise.studio.samples import write_sample

    again = write_sample("traffic", tmp_path / "again", size=60, seed=5)
    other = write_sample("traffic", tmp_path / "other", size=60, seed=6)
    assert dataset_digest(again) == dataset_digest(traffic) != dataset_digest(other)
    splits = read_native(traffic)
    assert sum(len(s.images) for s in splits.values()) == 60
    clips = {split: {image.sequence for image in data.images} for split, data in splits.items()}
    assert not (clips["train"] & clips["val"]) and not (clips["train"] & clips["test"])
    counts = [len(image.classes) for data in splits.values() for image in data.images]
    assert max(counts) >= 10 and max(counts) <= 30
    classes = {int(c) for data in splits.values() for image in data.images for c in image.classes}
    assert classes == {0, 1, 2, 3}
    for data in splits.values():
        for image in data.images:
            boxes = image.boxes
            assert np.all(boxes[:, :2] >= 0)
            assert np.all(boxes[:, 2] <= image.width) and np.all(boxes[:, 3] <= image.height)
            assert np.all(boxes[:, 2:] - boxes[:, :2] >= 4)
    sides = np.concatenate([d.images[i].boxes for d in splits.values() for i in range(len(d.images))])
    widths = sides[:, 2] - sides[:, 0]
    assert widths.min() <= 16 and widths.max() >= 90  # far motorbikes to near trucks


def test_the_traffic_sample_refuses_an_image_size(tmp_path: Path) -> None:
    from edgewise.studio.samples import write_sample

    with pytest.raises(ConfigError, match="image-size does not apply"):
        write_sample("traffic", tmp_path / "t", size=20, image_size=64)


def _distinct_scores(model: torch.nn.Module) -> None:
    """Random class biases: an untrained model then scores boxes unevenly (no ties), so the
    exported NMS has real decisions to make."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for head in model.heads:
            head.classes.bias.copy_(torch.randn(head.classes.bias.shape, generator=generator) * 1.5 - 1.0)


@pytest.fixture(scope="module")
def trained(traffic: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from edgewise.studio.detect.train import DetectTrainConfig, train_detector

    config = DetectTrainConfig(epochs=1, batch_size=8, num_threads=2, warmup_steps=2)
    return train_detector(config, traffic, tmp_path_factory.mktemp("det"), progress=False)


def test_training_writes_a_checkpoint_and_coco_metrics(trained, traffic: Path) -> None:  # type: ignore[no-untyped-def]
    from edgewise.studio.detect.train import load_detector

    metrics = json.loads((trained.checkpoint_path.parent / "metrics.json").read_text())
    assert set(metrics["val"]) >= {"map", "map50", "map75", "ar100", "per_class_ap"}
    assert set(metrics["val"]["per_class_ap"]) == {"car", "van", "truck", "motorbike"}
    model, arch, labels, spec, meta = load_detector(trained.checkpoint_path)
    assert arch == "detector-nano" and labels == ["car", "van", "truck", "motorbike"]
    assert spec.resize == [192, 256] and spec.resize_mode == "letterbox" and meta["task"] == "detect"


def test_an_input_size_that_is_not_a_multiple_of_32_is_refused(traffic: Path, tmp_path: Path) -> None:
    from edgewise.studio.detect.train import DetectTrainConfig, train_detector

    with pytest.raises(ConfigError, match="multiple of 32"):
        train_detector(DetectTrainConfig(input_size=(190, 256), epochs=1), traffic, tmp_path, progress=False)


def test_both_export_forms_give_the_agent_the_same_boxes_in_frame_pixels(trained, traffic: Path,  # type: ignore[no-untyped-def]
                                                                        tmp_path: Path) -> None:
    import cv2

    from edgewise.agent.pipeline import Pipeline
    from edgewise.core.preprocess import read_frame
    from edgewise.studio.bundling import BundleOptions, VariantSource, bundle_from_onnx
    from edgewise.studio.detect.export import export_detector

    model = trained.model
    _distinct_scores(model)
    frames = sorted((traffic / "val" / "images").glob("*.png"))[:4]
    served = {}
    for form in ("nms", "raw"):
        export = export_detector(model, trained.spec, trained.labels, tmp_path / f"{form}.onnx", form=form,
                                 check_frames=np.stack([read_frame(f) for f in frames]))
        bundle = tmp_path / f"bundle-{form}"
        manifest = bundle_from_onnx(bundle, [VariantSource("cpu-fp32", export.path)], BundleOptions("det", "1.0.0"))
        assert manifest.task == "detect"
        assert manifest.output.detection_layout == ("nms-rows" if form == "nms" else "rows")
        pipeline = Pipeline.from_dir(bundle, ["cpu"], ["CPUExecutionProvider"], threads=1)
        # A frame twice the size, with a different aspect: the letterbox must be undone.
        served[form] = [pipeline.run(cv2.resize(read_frame(f), (640, 400))).detections for f in frames]
    total = 0
    for nms_found, raw_found in zip(served["nms"], served["raw"], strict=True):
        assert len(nms_found) == len(raw_found)
        for a, b in zip(nms_found, raw_found, strict=True):
            assert a.label == b.label and np.allclose(a.box, b.box, atol=1.0) and abs(a.score - b.score) < 1e-3
            assert 0 <= a.box[0] <= 640 and 0 <= a.box[1] <= 400
        total += len(nms_found)
    assert total > 0


def test_training_refuses_broken_annotations_unless_told(traffic: Path, tmp_path: Path) -> None:
    import shutil

    from edgewise.core.errors import DatasetError
    from edgewise.studio.detect.train import DetectTrainConfig, train_detector

    broken = tmp_path / "broken"
    shutil.copytree(traffic, broken)
    annotations = broken / "train" / "annotations.json"
    document = json.loads(annotations.read_text())
    document["annotations"][0]["bbox"] = [250.0, 10.0, 40.0, 20.0]  # runs 34 px off a 256 px frame
    annotations.write_text(json.dumps(document))
    with pytest.raises(DatasetError, match="box_outside_image 1") as refused:
        train_detector(DetectTrainConfig(epochs=1), broken, tmp_path / "out", progress=False)
    assert "--allow-bad-annotations" in (refused.value.fix or "")
    config = DetectTrainConfig(epochs=1, batch_size=8, num_threads=2, allow_bad_annotations=True)
    assert train_detector(config, broken, tmp_path / "out", progress=False).checkpoint_path.is_file()


def test_compress_writes_a_measured_int8_variant_with_nms_and_a_raw_one_for_coral(trained, traffic: Path,  # type: ignore[no-untyped-def]
                                                                                tmp_path: Path) -> None:
    from edgewise.core.model_card import card_beside, load_card
    from edgewise.studio.detect.compress_run import compress_detector

    reports = compress_detector(trained.checkpoint_path, traffic, "x86-host", "balanced", tmp_path / "cpu",
                                latency_runs=5, progress=False)
    assert [r.name for r in reports] == ["fp32", "balanced-int8"]
    fp32, int8 = reports
    assert int8.size_bytes * 2 < fp32.size_bytes  # int8 weights, compacted names
    assert fp32.form == int8.form == "nms" and int8.val_map >= 0 and int8.host_latency_ms > 0
    assert load_card(card_beside(Path(int8.path))).output.detection_layout == "nms-rows"
    report = json.loads((tmp_path / "cpu" / "report.json").read_text())
    assert [v["name"] for v in report["variants"]] == ["fp32", "balanced-int8"]
    coral = compress_detector(trained.checkpoint_path, traffic, "coral-usb", "fp32", tmp_path / "coral",
                              latency_runs=5, progress=False)
    assert coral[0].form == "raw"  # the Edge TPU has no NMS: the host runs it


def test_tune_on_detection_data_optimises_val_map(traffic: Path, tmp_path: Path) -> None:
    import optuna

    from edgewise.studio.tune.objective import TrainingObjective
    from edgewise.studio.tune.space import parse_space

    space = parse_space({"params": {"lr": {"type": "float", "low": 1e-3, "high": 5e-3, "log": True}},
                         "fixed": {"arch": "detector-nano", "epochs": 1, "batch_size": 8, "warmup_steps": 2}})
    objective = TrainingObjective(space, traffic, tmp_path / "runs", objectives=["acc"], num_threads=2)
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=2)
    for trial in study.trials:
        metrics = json.loads((Path(trial.user_attrs["checkpoint_path"]).parent / "metrics.json").read_text())
        assert trial.value == pytest.approx(metrics["val"]["map"])  # the trial's value is its val mAP
        assert trial.intermediate_values == {1: trial.value}
    with pytest.raises(ConfigError, match="not measured for detectors"):
        TrainingObjective(space, traffic, tmp_path / "r2", objectives=["acc", "latency"])


def test_distillation_pulls_a_student_towards_its_teacher(trained, traffic: Path) -> None:  # type: ignore[no-untyped-def]
    from edgewise.studio.detect.data import FittedFrames
    from edgewise.studio.detect.distill import distillation_loss
    from edgewise.studio.detect.formats.coco import read_native
    from edgewise.studio.detect.model import create_detector
    from edgewise.studio.detect.train import DetectTrainConfig, fit_detector

    splits = read_native(traffic)
    frames = FittedFrames(splits["train"], trained.spec)
    teacher = trained.model
    _distinct_scores(teacher)  # a teacher with opinions of its own, not the labels'
    inputs = torch.from_numpy(frames.preprocess.to_tensor(np.stack(frames.images[:8])))
    with torch.no_grad():
        wanted = torch.sigmoid(teacher(inputs)[..., 4:])
    config = DetectTrainConfig(epochs=8, batch_size=8, lr=1e-2, warmup_steps=1, augment=False, ema_decay=0.0,
                               eval_every=100)
    gaps = {}
    for name, loss_fn in (("labels", None), ("distilled", distillation_loss(teacher, weight=50.0))):
        torch.manual_seed(0)
        student = create_detector("detector-nano", len(trained.labels))
        fitted, _ = fit_detector(student, frames, frames, config, progress=False, loss_fn=loss_fn)
        with torch.no_grad():
            gaps[name] = float((torch.sigmoid(fitted.eval()(inputs)[..., 4:]) - wanted).abs().mean())
    assert gaps["distilled"] < 0.8 * gaps["labels"], gaps


def test_bad_detector_inputs_are_one_line_errors(trained, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from edgewise.cli.main import main

    assert main(["export", str(trained.checkpoint_path), "--out", str(tmp_path / "d.onnx"), "--form", "tflite"]) == 1
    error = capsys.readouterr().err
    assert "unknown --form 'tflite'" in error and "Traceback" not in error
    assert not (tmp_path / "d.onnx").exists()
    not_a_checkpoint = tmp_path / "junk.pt"
    not_a_checkpoint.write_bytes(b"not a checkpoint")
    from edgewise.core.errors import ModelError
    from edgewise.studio.detect.train import load_detector

    with pytest.raises(ModelError, match="cannot read detector checkpoint"):
        load_detector(not_a_checkpoint)
