"""Detectors in the layouts other toolkits export, decoded by the agent to the same boxes.

Each test model is a real ONNX graph whose outputs are the encoded boxes (plus zero times the
input, so ONNX Runtime really runs it); the frame is letterboxed, so every layout's boxes must
come back in the source frame's pixels, not the model's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgewise.agent.pipeline import Pipeline
from edgewise.core.bundle import create_bundle
from edgewise.core.errors import ModelError
from edgewise.core.manifest import InputSpec, Manifest, OutputSpec, Variant

LABELS = ["beetle", "aphid"]
FRAME_H, FRAME_W, SIDE = 120, 200, 64
# Letterbox by hand: scale 64/200 = 0.32; the frame becomes 64 x 38 (120 * 0.32 = 38.4), padded 13 on top.
SCALE_X, SCALE_Y, PAD_Y = SIDE / FRAME_W, 38 / FRAME_H, 13
TRUTH = [("aphid", 0.9, (20.0, 30.0, 80.0, 90.0)), ("beetle", 0.8, (100.0, 10.0, 180.0, 60.0))]


def _to_input(box: tuple[float, ...]) -> list[float]:
    x1, y1, x2, y2 = box
    return [x1 * SCALE_X, y1 * SCALE_Y + PAD_Y, x2 * SCALE_X, y2 * SCALE_Y + PAD_Y]


def _cxcywh(xyxy: list[float]) -> list[float]:
    return [(xyxy[0] + xyxy[2]) / 2, (xyxy[1] + xyxy[3]) / 2, xyxy[2] - xyxy[0], xyxy[3] - xyxy[1]]


def _graph_returning(path: Path, outputs: list[np.ndarray]) -> Path:
    """input (1, 3, 64, 64) -> each output = constant + 0 * mean(input)."""
    nodes = [helper.make_node("ReduceMean", ["input"], ["mean"], keepdims=0),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"])]
    inits = [numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")]
    infos = []
    for index, array in enumerate(outputs):
        inits.append(numpy_helper.from_array(array.astype(np.float32), f"const{index}"))
        nodes.append(helper.make_node("Add", [f"const{index}", "nothing"], [f"out{index}"]))
        infos.append(helper.make_tensor_value_info(f"out{index}", TensorProto.FLOAT, list(array.shape)))
    graph = helper.make_graph(nodes, "detector", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, [1, 3, SIDE, SIDE])], infos, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _encoded(layout: str) -> list[np.ndarray]:
    boxes = [_to_input(box) for _, _, box in TRUTH]
    ids = [LABELS.index(label) for label, _, _ in TRUTH]
    scores = [score for _, score, _ in TRUTH]
    # a near-copy of the first box, weaker (NMS must drop it) and a box under the threshold
    extra_box, weak_box = [b + 1.0 for b in boxes[0]], [2.0, 2.0, 10.0, 10.0]
    if layout in ("yolov8", "yolov5"):
        rows = []
        for box, cls, score in [*zip(boxes, ids, scores, strict=True), (extra_box, ids[0], 0.6), (weak_box, 0, 0.1)]:
            per_class = [0.0] * len(LABELS)
            per_class[cls] = score
            rows.append(_cxcywh(box) + ([1.0] if layout == "yolov5" else []) + per_class)
        array = np.array(rows)[None]
        return [array.transpose(0, 2, 1) if layout == "yolov8" else array]
    if layout == "nms-rows":
        return [np.array([[*box, score, cls] for box, cls, score in zip(boxes, ids, scores, strict=True)]
                         + [[0, 0, 0, 0, 0.0, 0]])[None]]
    # ssd: [ymin, xmin, ymax, xmax] normalised, classes, scores, count (one padding row past count)
    yx = [[b[1] / SIDE, b[0] / SIDE, b[3] / SIDE, b[2] / SIDE] for b in boxes] + [[0, 0, 1, 1]]
    return [np.array(yx)[None], np.array(ids + [0])[None], np.array(scores + [0.99])[None],
            np.array([len(boxes)])]


def _pipeline(tmp_path: Path, layout: str) -> Pipeline:
    model = _graph_returning(tmp_path / f"{layout}.onnx", _encoded(layout))
    manifest = Manifest(
        name="pests", version="1.0.0", task="detect", labels=LABELS,
        input=InputSpec(shape=[1, 3, SIDE, SIDE], resize=[SIDE, SIDE], resize_mode="letterbox", pad_value=114),
        output=OutputSpec(decode="detection", detection_layout=layout, score_threshold=0.3, nms_iou=0.5),
        variants=[Variant(name="cpu", file="model.onnx")])
    create_bundle(tmp_path / layout, manifest, {"model.onnx": model})
    return Pipeline.from_dir(tmp_path / layout, ["cpu"], ["CPUExecutionProvider"], threads=1)


@pytest.mark.parametrize("layout", ["yolov8", "yolov5", "nms-rows", "ssd"])
def test_each_layout_decodes_to_the_same_boxes_in_frame_pixels(layout: str, tmp_path: Path) -> None:
    result = _pipeline(tmp_path, layout).run(np.zeros((FRAME_H, FRAME_W, 3), dtype=np.uint8))
    assert [(d.label, round(d.score, 4)) for d in result.detections] == [(label, s) for label, s, _ in TRUTH]
    for found, (_, _, expected) in zip(result.detections, TRUTH, strict=True):
        assert np.abs(np.array(found.box) - np.array(expected)).max() <= 1.0, (layout, found.box, expected)


def test_a_wrong_layout_and_per_class_thresholds(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, "yolov8")
    pipeline.manifest.output.detection_layout = "yolov5"
    with pytest.raises(ModelError, match="do not fit layout 'yolov5'"):
        pipeline.run(np.zeros((FRAME_H, FRAME_W, 3), dtype=np.uint8))
    pipeline.manifest.output.detection_layout = "yolov8"
    pipeline.manifest.output.class_thresholds = {"aphid": 0.95}
    found = pipeline.run(np.zeros((FRAME_H, FRAME_W, 3), dtype=np.uint8)).detections
    assert [d.label for d in found] == ["beetle"]  # the aphid at 0.9 is under its own threshold
