"""Frame -> tensor -> ONNX Runtime -> results, all driven by the bundle's manifest.

Frames are HxWx3 uint8 arrays in BGR order (OpenCV's convention; every source emits that);
`edgewise.core.preprocess` turns them into tensors, the same code the studio evaluates with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgewise.core.bundle import read_manifest
from edgewise.core.decoding import class_scores
from edgewise.core.errors import ModelError
from edgewise.core.manifest import Manifest, OutputSpec
from edgewise.core.preprocess import Preprocessor


@dataclass
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in model-input pixels


@dataclass
class Result:
    task: str
    label: str | None
    score: float
    latency_ms: float
    scores: dict[str, float] = field(default_factory=dict)
    detections: list[Detection] = field(default_factory=list)


def decode_classification(output: np.ndarray, spec: OutputSpec, labels: list[str]) -> tuple[str, float, np.ndarray]:
    values = np.asarray(output, dtype=np.float64).reshape(-1)
    if values.size != len(labels):
        raise ModelError(f"model gives {values.size} class scores for {len(labels)} labels", "rebuild the bundle")
    probs = class_scores(values, spec.decode)
    best = int(np.argmax(probs))
    return labels[best], float(probs[best]), probs


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-9))


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression; indices kept, best first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[box_iou(boxes[best], boxes[rest]) <= iou_threshold]
    return keep


def decode_detection(output: np.ndarray, spec: OutputSpec, labels: list[str]) -> list[Detection]:
    """Rows of [box(4), score, class_id] or [box(4), one score per label]; threshold, then per-class NMS."""
    rows = np.asarray(output, dtype=np.float32)
    rows = rows.reshape(-1, rows.shape[-1]) if rows.ndim >= 2 else rows.reshape(0, 6)
    width = rows.shape[1]
    if width == 4 + len(labels) and width != 6:
        class_ids = rows[:, 4:].argmax(axis=1)
        scores = rows[:, 4:].max(axis=1)
    elif width == 6:
        scores, class_ids = rows[:, 4], rows[:, 5].astype(int)
    else:
        raise ModelError(f"detection output rows have {width} values", "expected 6 or 4 + number of labels")
    boxes = rows[:, :4].astype(np.float64)
    if spec.box_format == "cxcywh":
        boxes = np.stack([boxes[:, 0] - boxes[:, 2] / 2, boxes[:, 1] - boxes[:, 3] / 2,
                          boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2], axis=1)
    chosen = (scores >= spec.score_threshold) & (class_ids >= 0) & (class_ids < len(labels))
    detections: list[Detection] = []
    for class_id in np.unique(class_ids[chosen]):
        index = np.nonzero(chosen & (class_ids == class_id))[0]
        for kept in nms(boxes[index], scores[index], spec.nms_iou):
            row = index[kept]
            detections.append(Detection(labels[int(class_id)], float(scores[row]), tuple(boxes[row].tolist())))
    detections.sort(key=lambda d: -d.score)
    return detections


def choose_providers(preferred: list[str]) -> list[str]:
    available = set(ort.get_available_providers())
    chosen = [p for p in preferred if p in available]
    return chosen or ["CPUExecutionProvider"]


class Pipeline:
    """One loaded bundle: `run(frame) -> Result`."""

    def __init__(self, bundle_dir: Path, manifest: Manifest, families: list[str], providers: list[str],
                 threads: int = 0) -> None:
        self.bundle_dir, self.manifest = bundle_dir, manifest
        variant = manifest.variant_for(families)
        options = ort.SessionOptions()
        options.log_severity_level = 4  # failures surface as ModelError; ORT's own log would only repeat them
        # Spinning intra-op threads steal the cores that decode and preprocess the next frame; on a
        # 2-core device that halves throughput (benchmarks/agent.py measures it).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(bundle_dir / variant.file), options, providers=choose_providers(providers)
            )
        except Exception as error:  # ORT raises its own untyped errors
            raise ModelError(f"cannot load {variant.file} of {manifest.ref}: {error}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.preprocess = Preprocessor(manifest.input)

    @classmethod
    def from_dir(cls, bundle_dir: Path, families: list[str], providers: list[str], threads: int = 0) -> Pipeline:
        return cls(bundle_dir, read_manifest(bundle_dir), families, providers, threads)

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: tensor})[0])

    def run(self, frame: np.ndarray) -> Result:
        started = time.perf_counter()
        tensor = self.preprocess(frame)
        try:
            output = self.infer(tensor)
        except Exception as error:
            raise ModelError(f"inference failed: {error}") from None
        labels, spec = self.manifest.labels, self.manifest.output
        if self.manifest.task == "detect" or spec.decode == "detection":
            detections = decode_detection(output, spec, labels)
            best = detections[0] if detections else None
            return Result("detect", best.label if best else None, best.score if best else 0.0,
                          (time.perf_counter() - started) * 1000, detections=detections)
        label, score, probs = decode_classification(output, spec, labels)
        return Result("classify", label, score, (time.perf_counter() - started) * 1000,
                      scores=dict(zip(labels, probs.tolist(), strict=True)))
