"""Helpers shared by the bundle and registry tests: a tiny ONNX classifier and ready-made bundles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgewise.core.bundle import create_bundle, sign_bundle
from edgewise.core.manifest import InputSpec, Manifest, Variant
from edgewise.core.signing import PrivateKey


def tiny_onnx(path: Path, classes: int = 2, image_size: int = 8, seed: int = 0, card: bool = True) -> Path:
    """A real ONNX classifier (global average pool + linear layer): a few hundred bytes, valid for onnxruntime.

    With `card`, its model card (RGB, stretched, /255, no mean/std) is written beside it."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((3, classes)).astype(np.float32), "weight")
    bias = numpy_helper.from_array(rng.standard_normal(classes).astype(np.float32), "bias")
    shape_const = numpy_helper.from_array(np.array([1, 3], dtype=np.int64), "flat_shape")
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Reshape", ["pooled", "flat_shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "weight", "bias"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, image_size, image_size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])],
        initializer=[weight, bias, shape_const],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    if card:
        from edgewise.core.manifest import InputSpec, OutputSpec
        from edgewise.core.model_card import ModelCard, card_beside

        spec = InputSpec(shape=[1, 3, image_size, image_size], resize=[image_size, image_size], resize_mode="stretch")
        card_beside(path).write_text(ModelCard(input=spec, output=OutputSpec(decode="logits")).to_yaml())
    return path


def manifest_for(name: str = "tiny", version: str = "1.0.0", variants: list[Variant] | None = None) -> Manifest:
    return Manifest(
        name=name, version=version, labels=["cat", "dog"],
        input=InputSpec(shape=[1, 3, 8, 8], resize=[8, 8]),
        variants=variants or [Variant(name="cpu-fp32", file="model.onnx")],
    )


def make_bundle(tmp: Path, name: str = "tiny", version: str = "1.0.0", key: PrivateKey | None = None,
                seed: int = 0) -> Path:
    """A bundle directory at tmp/NAME-VERSION-SEED with one tiny model; signed when `key` is given."""
    model = tiny_onnx(tmp / "src" / f"{name}-{version}-{seed}.onnx", seed=seed)
    bundle_dir = tmp / f"{name}-{version}-{seed}"
    create_bundle(bundle_dir, manifest_for(name, version), {"model.onnx": model})
    if key is not None:
        sign_bundle(bundle_dir, key)
    return bundle_dir


def tree_bytes(root: Path) -> dict[str, bytes]:
    """relative path -> content of every file under `root`, to compare bundles byte for byte."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
