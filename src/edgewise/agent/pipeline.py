"""Frame -> tensor -> ONNX Runtime -> results, all driven by the bundle's manifest.

Frames are HxWx3 uint8 arrays in BGR order (OpenCV's convention; every source emits that);
`edgewise.core.preprocess` turns them into tensors, the same code the studio evaluates with.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgewise.core.bundle import read_manifest
from edgewise.core.decoding import class_scores
from edgewise.core.detection_layouts import decode_boxes
from edgewise.core.errors import ModelError
from edgewise.core.manifest import Manifest, OutputSpec
from edgewise.core.preprocess import Placement, Preprocessor


@dataclass
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the source frame's pixels
    track_id: int | None = None  # set by the tracker (agent/scene.py) when a confirmed track matched it


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


def decode_detection(outputs: np.ndarray | Sequence[np.ndarray], spec: OutputSpec, labels: list[str],
                     input_size: tuple[int, int] = (1, 1), placement: Placement | None = None,
                     frame_size: tuple[int, int] | None = None) -> list[Detection]:
    """The detector's outputs (one array, or all of them for multi-output layouts) as detections,
    best first; with `placement`, boxes in the source frame's pixels (letterbox or crop undone),
    clipped to `frame_size` (height, width) when given."""
    arrays = [outputs] if isinstance(outputs, np.ndarray) else list(outputs)
    found = decode_boxes(arrays, spec, labels, input_size)
    boxes = found.xyxy
    if placement is not None:
        boxes = np.array([placement.to_frame(box) for box in boxes]).reshape(-1, 4)
    if frame_size is not None:
        height, width = frame_size
        boxes = np.clip(boxes, 0, [width, height, width, height])
    return [Detection(labels[int(c)], float(s), (float(b[0]), float(b[1]), float(b[2]), float(b[3])))
            for b, s, c in zip(boxes, found.scores, found.classes, strict=True)]


def choose_providers(preferred: list[str]) -> list[str]:
    available = set(ort.get_available_providers())
    chosen = [p for p in preferred if p in available]
    return chosen or ["CPUExecutionProvider"]


class Pipeline:
    """One loaded bundle: `run(frame) -> Result`."""

    def __init__(self, bundle_dir: Path, manifest: Manifest, families: list[str], providers: list[str],
                 threads: int = 0, spin: bool = False) -> None:
        self.bundle_dir, self.manifest = bundle_dir, manifest
        variant = manifest.variant_for(families)
        options = ort.SessionOptions()
        options.log_severity_level = 4  # failures surface as ModelError; ORT's own log would only repeat them
        # Spinning intra-op threads steal the cores that decode and preprocess the next frame while
        # a live source's reader thread runs beside inference; on a 2-core device that halves
        # throughput (benchmarks/agent.py). A file or folder is read in the inference thread, in
        # turn with it, so there `spin` is on: 0.70x -> ~1x of a bare ORT loop at 2 threads
        # (benchmarks/detect.py).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
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
    def from_dir(cls, bundle_dir: Path, families: list[str], providers: list[str], threads: int = 0,
                 spin: bool = False) -> Pipeline:
        return cls(bundle_dir, read_manifest(bundle_dir), families, providers, threads, spin)

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(output) for output in self.session.run(None, {self.input_name: tensor})]

    def run(self, frame: np.ndarray) -> Result:
        started = time.perf_counter()
        fitted, placement = self.preprocess.fit(frame)
        tensor = self.preprocess.to_tensor(fitted[None])
        try:
            outputs = self.infer(tensor)
        except Exception as error:
            raise ModelError(f"inference failed: {error}") from None
        labels, spec = self.manifest.labels, self.manifest.output
        output = outputs[0]
        if self.manifest.task == "detect" or spec.decode == "detection":
            size = (self.preprocess.height, self.preprocess.width)
            detections = decode_detection(outputs, spec, labels, size, placement, frame.shape[:2])
            best = detections[0] if detections else None
            return Result("detect", best.label if best else None, best.score if best else 0.0,
                          (time.perf_counter() - started) * 1000, detections=detections)
        label, score, probs = decode_classification(output, spec, labels)
        return Result("classify", label, score, (time.perf_counter() - started) * 1000,
                      scores=dict(zip(labels, probs.tolist(), strict=True)))
