"""COCO metrics of an ONNX detector on a split, through the agent's own path.

Each frame is read as a camera gives it (BGR), fitted and normalised by `core.preprocess` from
the model's card, run in ONNX Runtime, decoded by `core.detection_layouts` in the card's layout,
and its boxes mapped back to the frame's pixels (letterbox undone): exactly what a device does,
so the figure is the one the fleet will see. Only the score threshold is lowered to COCO's
(a served threshold would cut the recall end of every precision curve).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgewise.core.detection_layouts import decode_boxes
from edgewise.core.errors import ModelError
from edgewise.core.model_card import ModelCard
from edgewise.core.preprocess import Preprocessor, read_frame
from edgewise.studio.detect.annotations import DetectionSet
from edgewise.studio.detect.metrics import DetectionMetrics, ImageDetections, coco_metrics
from edgewise.studio.detect.predict import EVAL_SCORE_THRESHOLD

ProgressHook = Callable[[int, int], None]


def check_labels(card: ModelCard, dataset: DetectionSet) -> None:
    if card.labels and list(card.labels) != list(dataset.labels):
        raise ModelError(f"the model's labels {card.labels} are not the dataset's {dataset.labels}",
                         "evaluate on the dataset the model was trained for, or fix the card's labels")


def detect_onnx(model_path: Path, card: ModelCard, dataset: DetectionSet, *, threads: int = 1,
                score_threshold: float = EVAL_SCORE_THRESHOLD, on_image: ProgressHook | None = None
                ) -> list[ImageDetections]:
    """Detections in every frame's own pixels."""
    import onnxruntime as ort

    check_labels(card, dataset)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ORT raises its own untyped errors
        raise ModelError(f"cannot load {model_path}: {error}", "check the file (it may be truncated)") from None
    preprocess = Preprocessor(card.input)
    spec = card.output.model_copy(update={"score_threshold": score_threshold, "class_thresholds": None})
    labels = dataset.labels
    input_name = session.get_inputs()[0].name
    results = []
    for done, image in enumerate(dataset.images, start=1):
        frame = read_frame(dataset.path_of(image))
        fitted, placement = preprocess.fit(frame)
        outputs = [np.asarray(o) for o in session.run(None, {input_name: preprocess.to_tensor(fitted[None])})]
        found = decode_boxes(outputs, spec, labels, (preprocess.height, preprocess.width))
        boxes = np.array([placement.to_frame(box) for box in found.xyxy]).reshape(-1, 4)
        height, width = frame.shape[:2]
        boxes = np.clip(boxes, 0, [width, height, width, height])  # as the agent serves them
        results.append(ImageDetections(boxes, found.scores, found.classes))
        if on_image is not None:
            on_image(done, len(dataset.images))
    return results


def evaluate_detector_onnx(model_path: Path, card: ModelCard, dataset: DetectionSet, *, threads: int = 1,
                           on_image: ProgressHook | None = None) -> DetectionMetrics:
    return coco_metrics(dataset, detect_onnx(model_path, card, dataset, threads=threads, on_image=on_image))
