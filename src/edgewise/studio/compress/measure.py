"""Measuring a model the way a device would see it: exported to ONNX, run by ONNX Runtime.

Accuracy, file size, params and MACs come from the exported file; host latency is measured at
batch 1. The studio's own export/bench helpers are used when they exist.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper, shape_inference

from edgewise.core.errors import DatasetError, ModelError

_PARAM_FREE_INPUTS = {"QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2)}


def export_model(model: torch.nn.Module, path: Path, image_size: int, channels: int = 3) -> Path:
    """Export to ONNX with a dynamic batch axis (input `input`, output `logits`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    dummy = torch.randn(1, channels, image_size, image_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model, (dummy,), str(path), dynamo=False, opset_version=17,
                input_names=["input"], output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
        except Exception as error:  # the exporter raises many unrelated types
            raise ModelError(f"ONNX export failed: {error}", "check that the model uses exportable layers") from error
    return path


def session(path: Path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def input_shape(path: Path) -> list[int | str]:
    model = onnx.load(str(path), load_external_data=False)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def output_shape(path: Path) -> list[int | str]:
    model = onnx.load(str(path), load_external_data=False)
    dims = model.graph.output[0].type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def onnx_accuracy(path: Path, loader: Iterable, max_batches: int | None = None) -> float:
    """Top-1 accuracy in percent of the ONNX model on `loader`, run by ONNX Runtime."""
    sess = session(path, threads=int(os.environ.get("OMP_NUM_THREADS", "2")))
    name = sess.get_inputs()[0].name
    correct = total = 0
    for index, (images, labels) in enumerate(loader):
        if max_batches is not None and index >= max_batches:
            break
        logits = sess.run(None, {name: np.asarray(images)})[0]
        correct += int((logits.argmax(axis=1) == np.asarray(labels)).sum())
        total += len(labels)
    if total == 0:
        raise DatasetError("the evaluation split is empty", "add images to the test/ split")
    return 100.0 * correct / total


@torch.no_grad()
def torch_accuracy(model: torch.nn.Module, loader: Iterable, max_batches: int | None = None) -> float:
    model.eval()
    correct = total = 0
    for index, (images, labels) in enumerate(loader):
        if max_batches is not None and index >= max_batches:
            break
        correct += int((model(images).argmax(dim=1) == labels).sum())
        total += len(labels)
    if total == 0:
        raise DatasetError("the evaluation split is empty", "add images to the split")
    return 100.0 * correct / total


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float


InputSize = int | Sequence[int]  # a square side, or the whole batch-1 input shape


def _sample(sess: ort.InferenceSession, size: InputSize) -> np.ndarray:
    shape = [1, 3, size, size] if isinstance(size, int) else list(size)
    kind = sess.get_inputs()[0].type
    rng = np.random.default_rng(0)
    if kind == "tensor(uint8)":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return rng.random(shape, dtype=np.float32).astype(np.float16 if kind == "tensor(float16)" else np.float32)


def host_latency(path: Path, image_size: InputSize, runs: int = 60, warmup: int = 10, threads: int = 1) -> Latency:
    """MEASURED latency on this host at batch 1 (median and p95 of `runs`)."""
    sess = session(path, threads=threads)
    name = sess.get_inputs()[0].name
    sample = _sample(sess, image_size)
    for _ in range(warmup):
        sess.run(None, {name: sample})
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(None, {name: sample})
        timings.append((time.perf_counter() - start) * 1e3)
    timings.sort()
    return Latency(p50_ms=statistics.median(timings), p95_ms=timings[int(0.95 * (len(timings) - 1))])


def paired_latency(paths: list[Path], image_size: InputSize, runs: int = 60, warmup: int = 10,
                   threads: int = 1) -> list[Latency]:
    """MEASURED batch-1 latency of several models, interleaved run by run so that a busy host
    slows them all alike: their ratios stay fair even when absolute numbers drift."""
    sessions = [session(path, threads=threads) for path in paths]
    names = [sess.get_inputs()[0].name for sess in sessions]
    sample = _sample(sessions[0], image_size)
    timings: list[list[float]] = [[] for _ in paths]
    for _ in range(warmup):
        for sess, name in zip(sessions, names, strict=True):
            sess.run(None, {name: sample})
    for _ in range(runs):
        for index, (sess, name) in enumerate(zip(sessions, names, strict=True)):
            start = time.perf_counter()
            sess.run(None, {name: sample})
            timings[index].append((time.perf_counter() - start) * 1e3)
    results = []
    for series in timings:
        series.sort()
        results.append(Latency(p50_ms=statistics.median(series), p95_ms=series[int(0.95 * (len(series) - 1))]))
    return results


@dataclass(frozen=True)
class GraphCounts:
    params: int
    macs: int
    weight_bytes: int
    activation_bytes: int
    peak_activation_bytes: int


def count_graph(path: Path) -> GraphCounts:
    """Params, MACs (Conv/Gemm/MatMul at batch 1) and bytes from the ONNX graph itself."""
    model = onnx.load(str(path))
    for graph_input in model.graph.input:  # fix the batch to 1 so shape inference gives numbers
        dims = graph_input.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    try:
        model = shape_inference.infer_shapes(model)
    except Exception as error:  # onnx raises its own InferenceError and others
        raise ModelError(f"cannot infer shapes of {path.name}: {error}") from error
    shapes = _value_shapes(model)
    initializers = {init.name: init for init in model.graph.initializer}
    param_free = _quant_param_names(model)
    params = weight_bytes = 0
    for name, init in initializers.items():
        array = numpy_helper.to_array(init)
        weight_bytes += array.nbytes
        if name not in param_free:
            params += int(array.size)
    macs = sum(_node_macs(node, shapes, initializers) for node in model.graph.node)
    # Q/DQ outputs are how ONNX spells int8, not extra tensors a fused int8 kernel would move.
    qdq_outputs = {out for node in model.graph.node if node.op_type in _PARAM_FREE_INPUTS for out in node.output}
    activation_sizes = [_nbytes(shape, dtype) for name, (shape, dtype) in shapes.items()
                        if name not in initializers and name not in qdq_outputs]
    return GraphCounts(
        params=params, macs=int(macs), weight_bytes=weight_bytes,
        activation_bytes=int(sum(activation_sizes)), peak_activation_bytes=int(max(activation_sizes, default=0)),
    )


def _value_shapes(model: onnx.ModelProto) -> dict[str, tuple[list[int], int]]:
    shapes: dict[str, tuple[list[int], int]] = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in tensor.shape.dim]
        shapes[value.name] = (dims, tensor.elem_type)
    for init in model.graph.initializer:
        shapes[init.name] = (list(init.dims), init.data_type)
    return shapes


def _nbytes(shape: list[int], elem_type: int) -> int:
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(elem_type).itemsize
    except (KeyError, TypeError, ValueError):
        itemsize = 4
    return int(np.prod(shape or [1])) * itemsize


def _quant_param_names(model: onnx.ModelProto) -> set[str]:
    names: set[str] = set()
    for node in model.graph.node:
        for position in _PARAM_FREE_INPUTS.get(node.op_type, ()):
            if position < len(node.input):
                names.add(node.input[position])
    return names


def _weight_shape(name: str, shapes: dict, initializers: dict) -> list[int] | None:
    if name in shapes:
        return shapes[name][0]
    return list(initializers[name].dims) if name in initializers else None


def _node_macs(node: onnx.NodeProto, shapes: dict, initializers: dict) -> float:
    if node.op_type not in {"Conv", "ConvInteger", "QLinearConv", "Gemm", "MatMul", "MatMulInteger"}:
        return 0.0
    out = shapes.get(node.output[0], ([], 0))[0]
    if not out:
        return 0.0
    weight_index = 3 if node.op_type == "QLinearConv" else 1
    weight = _weight_shape(node.input[weight_index], shapes, initializers)
    if not weight:
        return 0.0
    if node.op_type in {"Conv", "ConvInteger", "QLinearConv"}:
        return float(np.prod(out)) * float(np.prod(weight[1:]))
    trans_b = any(a.name == "transB" and a.i == 1 for a in node.attribute)
    inner = weight[-1] if trans_b else weight[-2] if len(weight) >= 2 else weight[0]
    return float(np.prod(out)) * float(inner)


def max_output_diff(path_a: Path, path_b: Path, images: np.ndarray) -> float:
    """Largest absolute difference of the two models' outputs on `images`."""
    outputs = []
    for path in (path_a, path_b):
        sess = session(path)
        outputs.append(sess.run(None, {sess.get_inputs()[0].name: images})[0].astype(np.float32))
    return float(np.max(np.abs(outputs[0] - outputs[1])))
