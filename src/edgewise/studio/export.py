"""ONNX export, verified: the exported file is run in ONNX Runtime and compared with torch.

The file is self-contained (weights inside, no external data), opset 17 by default, input
`input` (N, 3, H, W) float32 normalised as `datasets.MEAN/STD`, output `logits`.
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgewise.core.errors import ModelError

DEFAULT_OPSET = 17
# Float32 kernels in ORT and torch sum in different orders; 1e-4 absolute on logits of order 10
# is far below anything that changes a prediction, yet catches a wrong graph at once.
DEFAULT_TOLERANCE = 1e-4
INPUT_NAME, OUTPUT_NAME = "input", "logits"


@dataclass
class ExportResult:
    path: Path
    max_abs_diff: float
    tolerance: float


def export_onnx(model: nn.Module, path: Path, *, image_size: int, dynamic_batch: bool = False,
                opset: int | None = None, check: bool = True, tolerance: float = DEFAULT_TOLERANCE,
                classes: list[str] | None = None) -> ExportResult:
    """Export `model` to a single ONNX file and check ORT against torch (ModelError beyond tolerance)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).cpu().eval()
    example = torch.randn(1, 3, image_size, image_size)
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter warns it is deprecated
            torch.onnx.export(model, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              opset_version=opset or DEFAULT_OPSET, dynamic_axes=dynamic_axes, dynamo=False,
                              do_constant_folding=True)
    except Exception as error:
        raise ModelError(f"ONNX export failed: {error}", "use a zoo architecture or an opset the model supports") \
            from error
    _add_metadata(path, image_size, classes)
    if not check:
        return ExportResult(path, float("nan"), tolerance)
    max_diff = compare_with_torch(model, path, image_size, batch=3 if dynamic_batch else 1)
    if not max_diff <= tolerance:
        raise ModelError(f"ONNX Runtime output differs from torch by {max_diff:.3g} (tolerance {tolerance:g})",
                         "try another --opset, or report the architecture as an export bug")
    return ExportResult(path, max_diff, tolerance)


def compare_with_torch(model: nn.Module, path: Path, image_size: int, batch: int = 1, seed: int = 0) -> float:
    """Largest absolute difference between torch and ONNX Runtime logits on random input."""
    import onnxruntime as ort

    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, 3, image_size, image_size, generator=generator)
    with torch.no_grad():
        expected = model(sample).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: sample.numpy()})
    return float(np.max(np.abs(actual - expected)))


def _add_metadata(path: Path, image_size: int, classes: list[str] | None) -> None:
    """Record what a consumer needs to feed the model (input size, normalisation, class names)."""
    import onnx

    from edgewise.studio.datasets import MEAN, STD

    model_proto = onnx.load(str(path))
    values = {"edgewise.image_size": str(image_size), "edgewise.mean": json.dumps(MEAN),
              "edgewise.std": json.dumps(STD), "edgewise.layout": "NCHW", "edgewise.color": "RGB"}
    if classes is not None:
        values["edgewise.classes"] = json.dumps(list(classes))
    del model_proto.metadata_props[:]
    for key, value in values.items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model_proto, str(path), save_as_external_data=False)


def read_metadata(path: Path) -> dict[str, str]:
    import onnx

    return {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}
