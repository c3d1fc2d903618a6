"""Reading an ONNX file for what it says about itself, and finding the card that says the rest.

`inspect_onnx` reports inputs, outputs, opset, dynamic dimensions and whether the graph already
ends in a softmax, and proposes a card in which everything the file cannot tell is `null`.
`resolve_card` finds the card a command works from: the one given, else `MODEL.card.yaml`
beside the model, else the one an edgewise export recorded in the file's metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgewise.core.errors import ConfigError, ModelError
from edgewise.core.model_card import REQUIRED, ModelCard, card_beside, card_from_dict, load_card

_ELEM_TYPES = {1: "float32", 10: "float16", 2: "uint8", 3: "int8"}
# Ops that only reshape: the op before them still decides what the output means.
_PASS_THROUGH = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast"}
_DECODE_OF_LAST_OP = {"Softmax": "probabilities", "LogSoftmax": "logits", "Sigmoid": "sigmoid"}


@dataclass
class TensorInfo:
    name: str
    shape: list[int | str]  # an int for a fixed dimension, its symbolic name (or "?") for a dynamic one
    dtype: str

    @property
    def dynamic(self) -> list[int]:
        return [i for i, d in enumerate(self.shape) if not isinstance(d, int)]


@dataclass
class Inspection:
    path: Path
    opset: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    last_op: str
    metadata: dict[str, str]
    proposal: dict[str, Any]
    undecided: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _load(path: Path) -> Any:
    import onnx

    if not Path(path).is_file():
        raise ModelError(f"model file {path} does not exist", "check the path")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError and others for a file that is not ONNX
        raise ModelError(f"{path} is not a readable ONNX model: {error.__class__.__name__}",
                         "give an .onnx file (export it again if it was truncated)") from None


def _tensor(value: Any) -> TensorInfo:
    tensor = value.type.tensor_type
    shape: list[int | str] = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
                              for d in tensor.shape.dim]
    return TensorInfo(value.name, shape, _ELEM_TYPES.get(tensor.elem_type, f"onnx type {tensor.elem_type}"))


def _last_op(graph: Any) -> str:
    producers = {out: node for node in graph.node for out in node.output}
    name = graph.output[0].name if graph.output else ""
    node = producers.get(name)
    while node is not None and node.op_type in _PASS_THROUGH and node.input:
        node = producers.get(node.input[0])
    return str(node.op_type) if node is not None else ""


def inspect_onnx(path: Path, given: dict[str, Any] | None = None) -> Inspection:
    """What the file says, and a proposed card (`given` fills in what the file cannot say)."""
    model = _load(path)
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [_tensor(v) for v in graph.input if v.name not in initializers]
    outputs = [_tensor(v) for v in graph.output]
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    if not inputs or not outputs:
        raise ModelError(f"{path} has no image input or no output", "give an image model")
    inspection = Inspection(Path(path), int(opset), inputs, outputs, _last_op(graph), metadata, {})
    if len(inputs) > 1:
        inspection.notes.append(f"the model has {len(inputs)} inputs; edgewise feeds the first ({inputs[0].name})")
    inspection.proposal = _propose(inspection, given or {})
    inspection.undecided = [f"{section}.{name}" for section, names in REQUIRED.items() for name in names
                            if inspection.proposal[section].get(name) is None]
    return inspection


def _propose(found: Inspection, given: dict[str, Any]) -> dict[str, Any]:
    first = found.inputs[0]
    shape = [d if isinstance(d, int) else -1 for d in first.shape]
    proposal_input: dict[str, Any] = {"shape": shape, "layout": None, "dtype": first.dtype if first.dtype in
                                      _ELEM_TYPES.values() else None, "color_order": None, "resize": None,
                                      "resize_mode": None, "scale": None, "mean": None, "std": None}
    channels: int | None = None
    if len(shape) == 4:
        if shape[1] in (1, 3) and shape[3] not in (1, 3):
            proposal_input["layout"], channels = "NCHW", shape[1]
        elif shape[3] in (1, 3) and shape[1] not in (1, 3):
            proposal_input["layout"], channels = "NHWC", shape[3]
        height, width = (shape[2], shape[3]) if proposal_input["layout"] == "NCHW" else (shape[1], shape[2])
        if proposal_input["layout"] and height > 0 and width > 0:
            proposal_input["resize"] = [height, width]
    else:
        found.notes.append(f"input {first.name} has rank {len(shape)}; an image model takes 4 dimensions")
    if channels == 1:
        proposal_input["color_order"] = "GRAY"
    if proposal_input["dtype"] in ("uint8", "int8"):  # integer inputs take pixels as they are
        proposal_input.update(scale=1.0, mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])
    decode = _DECODE_OF_LAST_OP.get(found.last_op, "logits")
    proposal: dict[str, Any] = {"card_version": 1, "task": "classify", "labels": [], "input": proposal_input,
                                "output": {"decode": decode}}
    recorded = _recorded_card(found.metadata, shape)
    if recorded is not None:
        proposal = recorded
        found.notes.append("an edgewise export: the card comes from the file's metadata")
    for key in ("task", "labels"):
        if given.get(key) is not None:
            proposal[key] = given[key]
    for section in ("input", "output"):
        proposal[section].update({k: v for k, v in (given.get(section) or {}).items() if v is not None})
    return proposal


def _recorded_card(metadata: dict[str, str], shape: list[int]) -> dict[str, Any] | None:
    """The card of a model `edgewise export` wrote: RGB, stretched, /255, then the recorded mean/std."""
    if "edgewise.image_size" not in metadata:
        return None
    size = int(metadata["edgewise.image_size"])
    return {"card_version": 1, "task": "classify", "labels": json.loads(metadata.get("edgewise.classes", "[]")),
            "input": {"shape": shape, "layout": metadata.get("edgewise.layout", "NCHW"), "dtype": "float32",
                      "color_order": metadata.get("edgewise.color", "RGB"), "resize": [size, size],
                      "resize_mode": "stretch", "scale": 1.0 / 255.0, "mean": json.loads(metadata["edgewise.mean"]),
                      "std": json.loads(metadata["edgewise.std"])},
            "output": {"decode": "logits"}}


def resolve_card(model_path: Path, card_path: Path | None = None) -> ModelCard:
    """The card for `model_path`: given, beside it, or recorded by an edgewise export; else a clear error."""
    if card_path is not None:
        return load_card(card_path)
    beside = card_beside(model_path)
    if beside.is_file():
        return load_card(beside)
    found = inspect_onnx(model_path)
    if "edgewise.image_size" in found.metadata:
        return card_from_dict(found.proposal, f"the card recorded in {Path(model_path).name}")
    raise ConfigError(
        f"{model_path} has no model card (no --card, no {beside.name} beside it, and it is not an edgewise export)",
        f"run `edgewise inspect {model_path} --out {beside}`, fill in what it leaves null, and run again")


def fixed_input_shape(card: ModelCard, batch: int = 1) -> list[int]:
    """The input shape with the card's size in every dynamic spatial dimension and `batch` in a dynamic batch."""
    spec = card.input
    shape = list(spec.shape)
    if len(shape) != 4:
        raise ConfigError(f"the card's input shape {shape} is not 4-dimensional", "give [batch, C, H, W] or NHWC")
    height_at, width_at = (2, 3) if spec.layout == "NCHW" else (1, 2)
    shape[height_at], shape[width_at] = spec.resize
    shape[0] = batch if shape[0] <= 0 else shape[0]
    channels_at = 1 if spec.layout == "NCHW" else 3
    if shape[channels_at] <= 0:
        shape[channels_at] = 1 if spec.color_order == "GRAY" else 3
    return shape
