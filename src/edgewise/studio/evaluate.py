"""Accuracy, per-class precision/recall and a confusion matrix on one split of an image folder,
for a torch checkpoint or an ONNX file (run in ONNX Runtime, as a device would)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgewise.core.errors import DatasetError, ModelError

EVAL_BATCH = 64


@dataclass
class EvalResult:
    accuracy: float
    precision: dict[str, float]
    recall: dict[str, float]
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    classes: list[str]
    num_samples: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"accuracy": self.accuracy, "precision": self.precision, "recall": self.recall,
                "confusion": self.confusion, "classes": self.classes, "num_samples": self.num_samples}


def evaluate(model_path: Path, data_dir: Path, split: str = "test", image_size: int | None = None, *,
             arch: str | None = None) -> EvalResult:
    """Evaluate `model_path` (.onnx, or any checkpoint `load_checkpoint` reads) on `data_dir/split`.

    `arch` is needed only for a plain state dict."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelError(f"model file {model_path} does not exist", "check the path (e.g. OUT/best.pt or model.onnx)")
    if model_path.suffix.lower() == ".onnx":
        predict, model_classes, model_size = _onnx_predictor(model_path)
    else:
        predict, model_classes, model_size = _torch_predictor(model_path, arch)
    size = image_size or model_size or 32
    from edgewise.studio.datasets import ImageFolder, normalize

    dataset = ImageFolder(Path(data_dir), split, size)
    if model_classes and model_classes != dataset.classes:
        raise DatasetError(f"the model predicts {model_classes}, but {Path(data_dir) / split} has {dataset.classes}",
                           "evaluate on a dataset with the classes the model was trained on")
    labels = dataset.labels.numpy()
    predictions = np.concatenate([
        predict(normalize(dataset.images[start : start + EVAL_BATCH]).numpy())
        for start in range(0, len(dataset), EVAL_BATCH)
    ])
    if predictions.max(initial=0) >= len(dataset.classes):
        raise ModelError(f"the model has more outputs than {len(dataset.classes)} classes",
                         "evaluate on the dataset the model was trained on")
    return summarize(labels, predictions, dataset.classes)


def summarize(labels: np.ndarray, predictions: np.ndarray, classes: list[str]) -> EvalResult:
    count = len(classes)
    confusion = np.zeros((count, count), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    true_positives = np.diag(confusion)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    precision = {c: float(true_positives[i] / predicted[i]) if predicted[i] else 0.0 for i, c in enumerate(classes)}
    recall = {c: float(true_positives[i] / actual[i]) if actual[i] else 0.0 for i, c in enumerate(classes)}
    accuracy = float(true_positives.sum() / max(len(labels), 1))
    return EvalResult(accuracy, precision, recall, confusion.tolist(), list(classes), int(len(labels)))


Predictor = Callable[[np.ndarray], np.ndarray]


def _onnx_predictor(path: Path) -> tuple[Predictor, list[str] | None, int | None]:
    import onnxruntime as ort

    from edgewise.studio.export import read_metadata

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:
        raise ModelError(f"ONNX Runtime cannot load {path}: {error}", "re-export the model") from error
    model_input = session.get_inputs()[0]
    fixed_batch = model_input.shape[0] if isinstance(model_input.shape[0], int) else None
    metadata = read_metadata(path)
    classes = json.loads(metadata["edgewise.classes"]) if "edgewise.classes" in metadata else None
    size = model_input.shape[-1] if isinstance(model_input.shape[-1], int) else None

    def predict(batch: np.ndarray) -> np.ndarray:
        if fixed_batch is None:
            (logits,) = session.run(None, {model_input.name: batch})
            return logits.argmax(axis=1)
        # A fixed-batch export (the default) runs one image at a time.
        return np.concatenate([session.run(None, {model_input.name: batch[i : i + fixed_batch]})[0].argmax(axis=1)
                               for i in range(0, len(batch), fixed_batch)])

    return predict, classes, size


def _torch_predictor(path: Path, arch: str | None) -> tuple[Predictor, list[str] | None, int | None]:
    import torch

    from edgewise.studio.checkpoints import load_checkpoint

    loaded = load_checkpoint(path, arch=arch)
    model = loaded.model.eval()
    anonymous = loaded.meta.get("source") in {"state_dict", "torchscript"}

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(batch)).argmax(dim=1).numpy()

    return predict, None if anonymous else loaded.classes, loaded.image_size
