"""Model output -> class scores: the one reading of a classifier's output, studio and agent alike."""

from __future__ import annotations

import numpy as np

from edgewise.core.errors import ModelError


def class_scores(output: np.ndarray, decode: str) -> np.ndarray:
    """(N, C) or (C,) raw output -> scores in [0, 1] of the same shape, as the card's `decode` says.

    `logits` (schema-1 name `logits-softmax`) get a softmax; `probabilities` (`softmax`) are the
    model's own and kept as they are; `sigmoid` scores each class on its own (multi-label)."""
    values = np.asarray(output, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ModelError("model output contains NaN or infinity", "the model is broken; roll back")
    if decode in ("logits", "logits-softmax"):
        shifted = np.exp(values - values.max(axis=-1, keepdims=True))
        return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True))
    if decode == "sigmoid":
        return np.asarray(1.0 / (1.0 + np.exp(-values)))
    if decode in ("probabilities", "softmax"):
        return values
    raise ModelError(f"output decode {decode!r} does not give class scores", "use a classification card")
