"""Tiny ONNX models and signed bundles for agent tests, built with onnx.helper (no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgewise.core.archive import pack_bundle
from edgewise.core.bundle import create_bundle, sign_bundle
from edgewise.core.manifest import InputSpec, Manifest, OutputSpec, Variant
from edgewise.core.signing import PrivateKey

LABELS = ["ok", "scratch", "hole", "crack"]
SIDE = 32


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def classifier(path: Path, bias: list[float] | None = None, seed: int = 0) -> Path:
    """GlobalAveragePool -> Flatten -> Gemm(3 -> 4): a real classifier of mean colour."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.normal(size=(3, len(LABELS))).astype(np.float32), "W")
    bias_t = numpy_helper.from_array(np.asarray(bias or [0.0] * len(LABELS), dtype=np.float32), "B")
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, len(LABELS)])], [weight, bias_t],
    )
    return _save(graph, path)


def always(path: Path, label: str) -> Path:
    """A classifier that says `label` with ~0.9999 on every frame."""
    bias = [0.0] * len(LABELS)
    bias[LABELS.index(label)] = 12.0
    return _constant(path, bias)


def _constant(path: Path, bias: list[float]) -> Path:
    weight = numpy_helper.from_array(np.zeros((3, len(LABELS)), dtype=np.float32), "W")
    bias_t = numpy_helper.from_array(np.asarray(bias, dtype=np.float32), "B")
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "constant", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, len(LABELS)])], [weight, bias_t],
    )
    return _save(graph, path)


def broken(path: Path) -> Path:
    """Loads fine, fails on every run: reshapes 3 values into 7."""
    shape = numpy_helper.from_array(np.asarray([1, 7], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Reshape", ["pooled", "shape"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "broken", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 7])], [shape],
    )
    return _save(graph, path)


def slow(path: Path, side: int = 512, depth: int = 8) -> Path:
    """Correct output, but a chain of big matmuls (that depends on the input, so no constant folding)."""
    big = numpy_helper.from_array(np.full((side, side), 1.0 / side, dtype=np.float32), "A")
    weight = numpy_helper.from_array(np.zeros((3, len(LABELS)), dtype=np.float32), "W")
    bias_t = numpy_helper.from_array(np.asarray([5.0, 0, 0, 0], dtype=np.float32), "B")
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("ReduceMean", ["flat"], ["level"], keepdims=0),
        helper.make_node("Mul", ["A", "level"], ["m0"]),
    ]
    for i in range(depth):
        nodes.append(helper.make_node("MatMul", [f"m{i}", "A"], [f"m{i + 1}"]))
    nodes += [
        helper.make_node("ReduceSum", [f"m{depth}"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Gemm", ["flat", "W", "B"], ["raw"]),
        helper.make_node("Add", ["raw", "nothing"], ["logits"]),
    ]
    zero = numpy_helper.from_array(np.asarray(0.0, dtype=np.float32), "zero")
    graph = helper.make_graph(
        nodes, "slow", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, len(LABELS)])], [big, weight, bias_t, zero],
    )
    return _save(graph, path)


def detector(path: Path, boxes: list[tuple[str, float, tuple[float, float, float, float]]]) -> Path:
    """A detector that finds `boxes` (label, score, x1 y1 x2 y2 in model-input pixels) on every frame.

    Its output is the `rows` layout (1, N, 4 + C): each box, then one score per label; the constant
    plus zero times the input's mean, so ONNX Runtime really runs the graph."""
    rows = np.zeros((1, len(boxes), 4 + len(LABELS)), dtype=np.float32)
    for i, (label, score, box) in enumerate(boxes):
        rows[0, i, :4] = box
        rows[0, i, 4 + LABELS.index(label)] = score
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["rows", "nothing"], ["boxes"]),
    ]
    graph = helper.make_graph(
        nodes, "detector", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, list(rows.shape))],
        [numpy_helper.from_array(rows, "rows"), numpy_helper.from_array(np.asarray(0.0, dtype=np.float32), "zero")],
    )
    return _save(graph, path)


def detector_manifest(version: str, name: str = "parts-detector") -> Manifest:
    """A detector's card: stretch to SIDE x SIDE, so a box in input pixels is (frame side / SIDE) times it."""
    return Manifest(
        name=name, version=version, task="detect", labels=LABELS,
        input=InputSpec(shape=[1, 3, SIDE, SIDE], resize=[SIDE, SIDE]),
        output=OutputSpec(decode="detection", score_threshold=0.25, nms_iou=0.5),
        variants=[Variant(name="cpu", file="model.onnx")],
    )


def manifest(version: str, name: str = "parts") -> Manifest:
    return Manifest(
        name=name, version=version, task="classify", labels=LABELS,
        input=InputSpec(shape=[1, 3, SIDE, SIDE], resize=[SIDE, SIDE]),
        output=OutputSpec(decode="logits-softmax"),
        variants=[Variant(name="cpu", file="model.onnx")],
    )


def make_bundle(root: Path, version: str, model: Path, key: PrivateKey | None,
                card: Manifest | None = None) -> tuple[Path, Manifest]:
    """A signed (unless key is None) bundle directory under root/version; a classifier's card by default."""
    bundle_dir = root / f"bundle-{version}"
    filled = create_bundle(bundle_dir, card or manifest(version), {"model.onnx": model})
    if key is not None:
        sign_bundle(bundle_dir, key)
    return bundle_dir, filled


def make_archive(root: Path, version: str, model: Path, key: PrivateKey | None,
                 card: Manifest | None = None) -> tuple[Path, Manifest]:
    bundle_dir, filled = make_bundle(root, version, model, key, card)
    return pack_bundle(bundle_dir, root / f"bundle-{version}.tar"), filled
