"""Accuracy, per-class precision/recall and a confusion matrix on one split of an image folder,
for a torch checkpoint or an ONNX file (run in ONNX Runtime, as a device would).

An ONNX file is fed through its model card (`studio/cards.py`): the same decoding, fitting and
normalisation the agent runs, so the accuracy printed here is the accuracy on a device."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgewise.core.errors import ConfigError, DatasetError, ModelError
from edgewise.core.model_card import ModelCard

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
             arch: str | None = None, card_path: Path | None = None) -> EvalResult:
    """Evaluate `model_path` (.onnx, or any checkpoint `load_checkpoint` reads) on `data_dir/split`.

    `arch` is needed only for a plain state dict; `card_path` only for an ONNX file whose card is
    neither beside it nor recorded in it."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelError(f"model file {model_path} does not exist", "check the path (e.g. OUT/best.pt or model.onnx)")
    if model_path.suffix.lower() == ".onnx":
        from edgewise.studio.cards import resolve_card

        if image_size is not None:
            raise ConfigError("--image-size is for checkpoints; an ONNX model's input size is on its card",
                              "drop --image-size (or change the card's input.resize)")
        return evaluate_onnx(model_path, data_dir, split, resolve_card(model_path, card_path))
    predict, model_classes, model_size = _torch_predictor(model_path, arch)
    if model_size is None and image_size is None:
        raise ConfigError(f"{model_path} does not record its input size", "pass --image-size N")
    size = image_size or model_size or 0
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


def evaluate_onnx(model_path: Path, data_dir: Path, split: str, card: ModelCard) -> EvalResult:
    """The ONNX model on one split, fed as its card says; `extra["scores"]` holds each image's class scores."""
    from edgewise.studio.card_data import check_card_matches, load_card_split

    data = load_card_split(Path(data_dir), split, card)
    check_card_matches(card, data.classes, Path(data_dir) / split)
    scores = onnx_class_scores(model_path, data.tensors, card)
    if scores.shape[-1] != len(data.classes):
        raise DatasetError(f"{Path(model_path).name} gives {scores.shape[-1]} class scores but "
                           f"{Path(data_dir) / split} has {len(data.classes)} classes",
                           "evaluate on the dataset the model was trained on")
    result = summarize(data.labels, scores.argmax(axis=1), data.classes)
    result.extra["scores"] = scores
    result.extra["files"] = data.files
    return result


def onnx_class_scores(model_path: Path, tensors: np.ndarray, card: ModelCard) -> np.ndarray:
    """Decoded class scores (N, C) of the ONNX model on input tensors, in batches its input allows."""
    import onnxruntime as ort

    from edgewise.core.decoding import class_scores

    try:
        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    except Exception as error:
        raise ModelError(f"ONNX Runtime cannot load {model_path}: {error}", "re-export the model") from None
    model_input = session.get_inputs()[0]
    step = model_input.shape[0] if isinstance(model_input.shape[0], int) and model_input.shape[0] > 0 else EVAL_BATCH
    outputs = []
    for start in range(0, len(tensors), step):
        try:
            (output,) = session.run([session.get_outputs()[0].name], {model_input.name: tensors[start : start + step]})
        except Exception as error:  # ORT's own error types: a shape or type the card got wrong
            raise ModelError(f"ONNX Runtime cannot run {Path(model_path).name} on the card's input "
                             f"{list(tensors.shape[1:])}: {str(error).splitlines()[0]}",
                             "check the card's input shape, layout and dtype against `edgewise inspect`") from None
        outputs.append(np.asarray(output).reshape(len(tensors[start : start + step]), -1))
    return class_scores(np.concatenate(outputs), card.output.decode)


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
