"""Before a rewritten model is kept, it must still compute what its input model computed.

An ONNX-level step (quantization, graph optimisation, fixing the input size) should change a
model's outputs only by its rounding. Both models run in ONNX Runtime on calibration images and
the relative RMS difference of their outputs is held to the tolerance of the new precision; a
step beyond it wrote a broken model (wrong scales, a mis-converted op), and the run stops with
one line instead of reporting a broken model's accuracy as a result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgewise.core.errors import ModelError

# Relative RMS output difference allowed per precision. fp32 rewrites only reorder sums; fp16
# keeps ~3 significant digits; int8 of a small CNN lands at 0.02-0.2, a broken one at 1 or more.
TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "int8": 0.5, "int8-mixed": 0.5, "int4": 0.5}
SAMPLES = 64


@dataclass(frozen=True)
class Agreement:
    relative_error: float
    top1_agreement: float
    samples: int

    def as_dict(self) -> dict[str, float]:
        return {"relative_error": round(self.relative_error, 6), "top1_agreement": round(self.top1_agreement, 4),
                "samples": float(self.samples)}


def _outputs(path: Path, images: np.ndarray) -> np.ndarray:
    from edgewise.studio.compress.measure import session

    try:
        sess = session(path)
        name = sess.get_inputs()[0].name
        fixed = sess.get_inputs()[0].shape[0]
        step = fixed if isinstance(fixed, int) and fixed > 0 else len(images)
        parts = [sess.run(None, {name: images[i : i + step]})[0] for i in range(0, len(images), step)]
    except Exception as error:  # ORT's own error types
        raise ModelError(f"ONNX Runtime cannot run {path}: {str(error).splitlines()[0]}",
                         "the step wrote a model ONNX Runtime rejects; report it with the recipe") from None
    return np.concatenate(parts).astype(np.float64).reshape(len(images), -1)


def measure_agreement(original: Path, candidate: Path, images: np.ndarray) -> Agreement:
    expected, actual = _outputs(original, images), _outputs(candidate, images)
    if expected.shape != actual.shape:
        raise ModelError(f"{candidate.name} gives outputs of shape {actual.shape[1:]}, its input model "
                         f"{expected.shape[1:]}", "the step changed what the model outputs; report it with the recipe")
    scale = float(np.sqrt(np.mean(expected**2))) or 1.0
    error = float(np.sqrt(np.mean((actual - expected) ** 2))) / scale
    agree = float(np.mean(expected.argmax(axis=1) == actual.argmax(axis=1)))
    return Agreement(error, agree, len(images))


def check_agreement(what: str, original: Path, candidate: Path, images: np.ndarray, precision: str) -> Agreement:
    """`measure_agreement`, or a ModelError when it is beyond the precision's tolerance."""
    found = measure_agreement(original, candidate, images)
    limit = TOLERANCE.get(precision, TOLERANCE["int8"])
    if not found.relative_error <= limit:
        raise ModelError(
            f"{what} wrote a {precision} model whose outputs differ from its input model's by "
            f"{found.relative_error:.3g} (relative RMS, tolerance {limit:g}; top-1 agreement "
            f"{100 * found.top1_agreement:.0f}% on {found.samples} calibration images)",
            "the rewrite is broken: try another calibration method or per_channel setting, or report it")
    return found


def calibration_sample(loader: object, count: int = SAMPLES) -> np.ndarray:
    """Up to `count` input tensors from a loader of (images, labels) batches."""
    taken: list[np.ndarray] = []
    total = 0
    for images, _labels in loader:  # type: ignore[attr-defined]
        array = np.asarray(images)
        taken.append(array[: count - total])
        total += len(taken[-1])
        if total >= count:
            break
    if not taken:
        raise ModelError("no images to check the rewritten model on", "give a val/ split with images")
    return np.concatenate(taken)
