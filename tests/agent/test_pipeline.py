from __future__ import annotations

import numpy as np
import pytest

from edgewise.agent.pipeline import Pipeline, choose_providers, decode_classification, decode_detection
from edgewise.core.detection_layouts import nms
from edgewise.core.errors import ModelError
from edgewise.core.manifest import InputSpec, OutputSpec
from edgewise.core.preprocess import preprocess
from tests.agent import models


def test_preprocess_follows_the_input_spec() -> None:
    frame = np.zeros((10, 20, 3), dtype=np.uint8)
    frame[..., 0] = 255  # blue in BGR
    spec = InputSpec(shape=[1, 3, 4, 8], resize=[4, 8], mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
    tensor = preprocess(frame, spec)
    assert tensor.shape == (1, 3, 4, 8) and tensor.dtype == np.float32
    assert np.allclose(tensor[0, 2], 1.0) and np.allclose(tensor[0, 0], -1.0)  # RGB: blue is channel 2
    nhwc = preprocess(frame, spec.model_copy(update={"layout": "NHWC", "color_order": "BGR", "dtype": "uint8"}))
    assert nhwc.shape == (1, 4, 8, 3) and nhwc.dtype == np.uint8 and nhwc[0, 0, 0, 0] == 255
    with pytest.raises(ModelError, match="HxWx3"):
        preprocess(np.zeros((4, 4), dtype=np.uint8), spec)


def test_classification_decoding() -> None:
    label, score, probs = decode_classification(np.array([[0.0, 3.0, 0.0]]), OutputSpec(), ["a", "b", "c"])
    assert label == "b" and score == pytest.approx(probs.max()) and probs.sum() == pytest.approx(1.0)
    with pytest.raises(ModelError, match="2 class scores for 3 labels"):
        decode_classification(np.array([1.0, 2.0]), OutputSpec(), ["a", "b", "c"])
    with pytest.raises(ModelError, match="NaN"):
        decode_classification(np.array([np.nan, 1.0, 0.0]), OutputSpec(), ["a", "b", "c"])


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=float)
    assert nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5) == [0, 2]
    assert nms(boxes, np.array([0.7, 0.8, 0.9]), 0.5) == [2, 1]
    assert nms(boxes, np.array([0.9, 0.8, 0.7]), 0.95) == [0, 1, 2]


def test_detection_decoding_thresholds_and_nms_per_class() -> None:
    rows = np.array([[[0, 0, 10, 10, 0.9, 0], [1, 1, 10, 10, 0.8, 0], [1, 1, 10, 10, 0.85, 1],
                      [50, 50, 60, 60, 0.2, 1]]], dtype=np.float32)
    found = decode_detection(rows, OutputSpec(decode="detection", score_threshold=0.5), ["scratch", "hole"])
    assert [(d.label, round(d.score, 2)) for d in found] == [("scratch", 0.9), ("hole", 0.85)]
    per_class = np.array([[5, 5, 4, 4, 0.1, 0.95, 0.3]], dtype=np.float32)  # cxcywh + one score per label
    found = decode_detection(per_class, OutputSpec(decode="detection", box_format="cxcywh"), ["a", "hole", "c"])
    assert found[0].label == "hole" and found[0].box == (3.0, 3.0, 7.0, 7.0)
    with pytest.raises(ModelError, match="do not fit layout 'rows'"):
        decode_detection(np.zeros((1, 5)), OutputSpec(decode="detection"), ["a", "b"])


def test_pipeline_runs_a_bundle_and_reports_latency(tmp_path, publisher) -> None:
    bundle_dir, manifest = models.make_bundle(tmp_path, "1.0", models.always(tmp_path / "m.onnx", "crack"), publisher)
    pipeline = Pipeline.from_dir(bundle_dir, ["cpu"], ["NoSuchExecutionProvider", "CPUExecutionProvider"], threads=1)
    result = pipeline.run(np.zeros((48, 64, 3), dtype=np.uint8))
    assert result.label == "crack" and result.score > 0.99 and result.latency_ms > 0
    assert set(result.scores) == set(models.LABELS)
    assert choose_providers(["NoSuch"]) == ["CPUExecutionProvider"]


def test_pipeline_turns_runtime_failures_into_model_errors(tmp_path, publisher) -> None:
    bundle_dir, _ = models.make_bundle(tmp_path, "1.0", models.broken(tmp_path / "m.onnx"), publisher)
    with pytest.raises(ModelError, match="inference failed"):
        Pipeline.from_dir(bundle_dir, ["cpu"], ["CPUExecutionProvider"]).run(np.zeros((8, 8, 3), dtype=np.uint8))
