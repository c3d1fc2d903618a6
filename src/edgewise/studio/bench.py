"""Measured latency and throughput of an ONNX model on this host, plus params, MACs and size.

MACs are counted from the graph (Conv, Gemm, MatMul and their quantized forms), at batch 1, so
they are comparable across fp32 and QDQ int8 exports of the same network. They are reported
next to measured time, never instead of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgewise.core.errors import ConfigError, ModelError

# Operators whose inputs at these positions are (activation, weight) for MAC counting.
_CONV_OPS = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}
_MATMUL_OPS = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3)}
# Inputs that are quantization parameters, not weights.
_QUANT_PARAM_INPUTS = {"QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2)}


@dataclass
class BenchResult:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    throughput_fps: float
    params: int
    macs: int
    file_size_bytes: int
    threads: int = 1
    batch: int = 1


def benchmark_onnx(path: Path, *, threads: int = 1, batch: int = 1, warmup: int = 10, runs: int = 50,
                   input_shape: list[int] | None = None, input_size: tuple[int, int] | None = None) -> BenchResult:
    """Time `runs` inferences (after `warmup`) with ONNX Runtime on the CPU.

    `input_shape` (batch first; its batch is replaced by `batch`) fills the model's dynamic
    dimensions (or `input_size`, (height, width), fills exactly two dynamic spatial ones); a
    dynamic dimension neither fills is an error, never a guess."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist", "export one first: `edgewise export CKPT --out m.onnx`")
    if threads < 1 or batch < 1 or runs < 1 or warmup < 0:
        raise ConfigError("threads, batch and runs must be at least 1", "use --threads 1 --batch 1 or more")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:
        raise ModelError(f"ONNX Runtime cannot load {path}: {error}", "re-export the model") from error
    if input_size is not None:
        input_shape = _shape_for_size(session.get_inputs()[0], input_size)
    feed = {model_input.name: _random_input(model_input, batch, path, input_shape if index == 0 else None)
            for index, model_input in enumerate(session.get_inputs())}
    for _ in range(warmup):
        session.run(None, feed)
    timings = np.empty(runs)
    for index in range(runs):
        started = time.perf_counter()
        session.run(None, feed)
        timings[index] = (time.perf_counter() - started) * 1000.0
    params, macs = count_params_and_macs(path)
    mean = float(timings.mean())
    p50, p95, p99 = (float(v) for v in np.percentile(timings, [50, 95, 99]))
    return BenchResult(p50, p95, p99, mean, batch * 1000.0 / mean, params, macs, path.stat().st_size, threads, batch)


def _shape_for_size(model_input: object, size: tuple[int, int]) -> list[int]:
    shape = list(model_input.shape)  # type: ignore[attr-defined]
    dynamic = [i for i, d in enumerate(shape) if i > 0 and not (isinstance(d, int) and d > 0)]
    if len(dynamic) != 2:
        raise ConfigError(f"--input-size fills two dynamic dimensions (height, width), but the input has shape {shape}",
                          "pass --card with the full input shape instead")
    filled = [d if isinstance(d, int) and d > 0 else -1 for d in shape]
    filled[dynamic[0]], filled[dynamic[1]] = size
    return filled


def _random_input(model_input: object, batch: int, path: Path, given: list[int] | None) -> np.ndarray:
    shape = list(model_input.shape)  # type: ignore[attr-defined]
    type_name = model_input.type  # type: ignore[attr-defined]
    name = model_input.name  # type: ignore[attr-defined]
    if isinstance(shape[0], int) and shape[0] != batch:
        raise ConfigError(f"{path} has a fixed batch of {shape[0]}, not {batch}",
                          "export with --dynamic-batch, or bench with --batch " + str(shape[0]))
    if given is not None and len(given) != len(shape):
        raise ConfigError(f"input shape {given} has {len(given)} dimensions but {name} has {len(shape)}",
                          "give the model's full input shape")
    dims = [batch]
    for index, dim in enumerate(shape[1:], start=1):
        if isinstance(dim, int) and dim > 0:
            if given is not None and given[index] > 0 and given[index] != dim:
                raise ConfigError(f"{name} has a fixed dimension {index} of {dim}, not {given[index]}",
                                  "bench at the model's own size")
            dims.append(dim)
        elif given is not None and given[index] > 0:
            dims.append(given[index])
        else:
            raise ConfigError(f"{path.name} input {name} has a dynamic dimension {index} ({dim}) and no size is given "
                              f"(shape {shape})", "pass --input-size HxW, or --card with the size it runs at")
    rng = np.random.default_rng(0)
    if "uint8" in type_name:
        return rng.integers(0, 256, dims, dtype=np.uint8)
    if "int8" in type_name:
        return rng.integers(-128, 128, dims, dtype=np.int8)
    dtype = np.float16 if "float16" in type_name else np.float32
    return rng.standard_normal(dims).astype(dtype)


def count_params_and_macs(onnx_path: Path) -> tuple[int, int]:
    """(parameters, multiply-accumulates per image) read from the ONNX graph."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(onnx_path))
    try:
        model = shape_inference.infer_shapes(model)
    except Exception:  # an op shape inference does not know: count what has shapes
        pass
    graph = model.graph
    initializers = {init.name: tuple(init.dims) for init in graph.initializer}
    shapes = dict(initializers)
    for value in [*graph.value_info, *graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(d.dim_value if d.dim_value > 0 else 1 for d in dims)
    quant_params = {node.input[i] for node in graph.node for i in _QUANT_PARAM_INPUTS.get(node.op_type, ())
                    if i < len(node.input)}
    shape_inputs = {node.input[1] for node in graph.node if node.op_type in {"Reshape", "Expand"}
                    and len(node.input) > 1}
    params = sum(int(np.prod(dims)) for name, dims in initializers.items()
                 if name not in quant_params and name not in shape_inputs and len(dims) > 0)
    macs = sum(_node_macs(node, shapes) for node in graph.node)
    return params, macs


def _node_macs(node: object, shapes: dict[str, tuple[int, ...]]) -> int:
    op = node.op_type  # type: ignore[attr-defined]
    inputs, outputs = list(node.input), list(node.output)  # type: ignore[attr-defined]
    if op in _CONV_OPS:
        weight = shapes.get(inputs[_CONV_OPS[op]])
        output = shapes.get(outputs[0])
        if not weight or not output:
            return 0
        # Each output element costs (in_channels / groups) * kernel area MACs; weight is (O, I/g, kH, kW).
        per_output = int(np.prod(weight[1:]))
        return int(np.prod(output[1:])) * per_output
    if op == "Gemm":
        a, b = shapes.get(inputs[0]), shapes.get(inputs[1])
        if not a or not b:
            return 0
        trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)  # type: ignore[attr-defined]
        trans_b = any(attr.name == "transB" and attr.i for attr in node.attribute)  # type: ignore[attr-defined]
        k = a[0] if trans_a else a[-1]
        n = b[0] if trans_b else b[-1]
        return int(k * n)
    if op in _MATMUL_OPS:
        a_index, b_index = _MATMUL_OPS[op]
        a, output = shapes.get(inputs[a_index]), shapes.get(outputs[0])
        if not a or not output:
            return 0
        # Per image: drop the leading batch dimension of the output when the product has one.
        per_image = output[1:] if len(output) > 2 else output[-1:]
        return int(np.prod(per_image)) * int(a[-1])
    return 0
