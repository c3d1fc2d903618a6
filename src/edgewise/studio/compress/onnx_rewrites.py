"""Small rewrites an ONNX file from elsewhere needs before compression steps can work on it."""

from __future__ import annotations

from pathlib import Path

import onnx

from edgewise.core.errors import ModelError

# Per-channel QDQ needs DequantizeLinear's `axis`, which arrived in opset 13.
QUANTIZATION_OPSET = 13


def model_opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def fix_input_size(source: Path, destination: Path, shape: list[int]) -> Path:
    """Copy of `source` whose first input has `shape`'s height, width and channels fixed; a dynamic
    batch stays dynamic (calibration and evaluation feed batches). Static sizes are what edge
    runtimes and ORT's quantizer want."""
    model = onnx.load(str(source))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != len(shape):
        raise ModelError(f"{source.name} input has {len(dims)} dimensions, its card's shape {shape}",
                         "fix the card's input.shape")
    for dim, size in list(zip(dims, shape, strict=True))[1:]:
        if not (dim.HasField("dim_value") and dim.dim_value > 0):
            dim.Clear()
            dim.dim_value = size
    del model.graph.value_info[:]  # inferred again from the fixed input by whoever needs it
    onnx.save(model, str(destination), save_as_external_data=False)
    return destination


def upgrade_opset(source: Path, destination: Path, opset: int = QUANTIZATION_OPSET) -> int | None:
    """Write `source` at `opset` or later to `destination`; returns the old opset when it converted."""
    from onnx import version_converter

    model = onnx.load(str(source))
    old = model_opset(model)
    if old >= opset:
        return None
    try:
        converted = version_converter.convert_version(model, opset)
        onnx.checker.check_model(converted)
    except Exception as error:  # the converter raises its own types for ops it cannot move
        raise ModelError(f"cannot upgrade {source.name} from opset {old} to {opset} for quantization: "
                         f"{str(error).splitlines()[0]}", "export the model at opset 13 or later") from None
    onnx.save(converted, str(destination), save_as_external_data=False)
    return old


def compact_names(path: Path) -> Path:
    """Rename every node and intermediate tensor to a short id and drop initializers no node reads,
    in place. The exporter's names
    (`/detector/backbone/stages.0/.../Conv_output_0_DequantizeLinear_Output`) are a third of a
    small quantized model's file and nothing reads them at run time; the graph's inputs and
    outputs keep their names, which the card and the agent use."""
    model = onnx.load(str(path))
    graph = model.graph
    kept = {value.name for value in [*graph.input, *graph.output]}
    renamed: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in kept:
            return name
        return renamed.setdefault(name, f"t{len(renamed)}")

    for initializer in graph.initializer:
        initializer.name = short(initializer.name)
    for index, node in enumerate(graph.node):
        node.name = f"n{index}"
        node.input[:] = [short(name) for name in node.input]
        node.output[:] = [short(name) for name in node.output]
    for value in graph.value_info:
        value.name = short(value.name)
    del graph.value_info[:]  # shapes are re-inferred by every runtime; they only cost bytes here
    used = {name for node in graph.node for name in node.input} | {value.name for value in graph.output}
    unused = [initializer for initializer in graph.initializer if initializer.name not in used]
    for initializer in unused:  # left behind by quantization (the float weights its Q/DQ replaced)
        graph.initializer.remove(initializer)
    onnx.checker.check_model(model)
    onnx.save(model, str(path), save_as_external_data=False)
    return path
