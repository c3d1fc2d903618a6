"""ONNX Runtime quantization helpers: calibration data, static/dynamic int8, fp16, int4."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from edgewise.core.errors import DatasetError, ModelError, RecipeError
from edgewise.studio.compress.measure import input_shape

QUANTIZABLE_OPS = ("Conv", "Gemm", "MatMul")
CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


class ArrayCalibrationReader(CalibrationDataReader):
    """Feeds calibration batches (already checked for shape) to ORT's calibrator."""

    def __init__(self, input_name: str, batches: list[np.ndarray]) -> None:
        self.input_name = input_name
        self._batches = batches
        self._position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._position >= len(self._batches):
            return None
        batch = self._batches[self._position]
        self._position += 1
        return {self.input_name: batch}

    def rewind(self) -> None:
        self._position = 0


def calibration_batches(loader: Iterable, samples: int, model_path: Path) -> list[np.ndarray]:
    """Up to `samples` images from `loader`, as float32 batches of the model's input shape."""
    expected = input_shape(model_path)
    batches: list[np.ndarray] = []
    taken = 0
    for item in loader:
        images = item[0] if isinstance(item, (tuple, list)) else item
        array = np.asarray(images, dtype=np.float32)
        _check_shape(array.shape, expected)
        batches.append(array[: samples - taken])
        taken += len(batches[-1])
        if taken >= samples:
            break
    if taken == 0:
        raise DatasetError("no calibration images", "give a train/ split with images for calibration")
    return batches


def _check_shape(actual: tuple[int, ...], expected: list[int | str]) -> None:
    fixed = [(i, d) for i, d in enumerate(expected) if isinstance(d, int) and d > 0 and i > 0]
    if len(actual) != len(expected) or any(actual[i] != d for i, d in fixed):
        raise DatasetError(
            f"calibration data has shape {list(actual)} but the model expects {expected}",
            "calibrate with images of the model's input size and channels (same preprocessing as training)",
        )


def name_nodes(path: Path) -> list[str]:
    """Give every node a unique name (exclusion lists need them) and list the quantizable ones."""
    model = onnx.load(str(path))
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{index}"
        seen.add(node.name)
    onnx.save(model, str(path))
    return [node.name for node in model.graph.node if node.op_type in QUANTIZABLE_OPS]


def preprocess(source: Path, destination: Path) -> Path:
    """ORT's recommended pre-processing (shape inference, graph optimisation) before quantizing."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(source), str(destination), skip_symbolic_shape=True)
    except Exception as error:  # pre-processing is an optimisation: fall back to the raw file
        logging.getLogger(__name__).info("quant_pre_process skipped: %s", error)
        destination.write_bytes(source.read_bytes())
    return destination


def static_int8(
    source: Path, destination: Path, batches: list[np.ndarray], *, calibration: str, per_channel: bool,
    percentile: float, exclude: list[str], op_types: list[str] | None = None,
) -> Path:
    """QDQ int8: uint8 activations, int8 weights; `op_types` limits what is quantized (None: all
    ORT supports)."""
    input_name = onnx.load(str(source), load_external_data=False).graph.input[0].name
    extra = {"CalibPercentile": percentile} if calibration == "percentile" else {}
    try:
        quantize_static(
            str(source), str(destination), ArrayCalibrationReader(input_name, batches),
            quant_format=QuantFormat.QDQ, per_channel=per_channel,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CALIBRATION_METHODS[calibration], nodes_to_exclude=exclude, extra_options=extra,
            op_types_to_quantize=op_types,
        )
    except (ValueError, RuntimeError) as error:
        raise ModelError(f"static int8 quantization failed: {error}") from error
    return destination


def dynamic_int8(source: Path, destination: Path, *, per_channel: bool) -> Path:
    quantize_dynamic(str(source), str(destination), weight_type=QuantType.QInt8, per_channel=per_channel)
    return destination


def fp16(source: Path, destination: Path) -> Path:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(converted, str(destination))
    return destination


def int4_weight_only(source: Path, destination: Path, block_size: int) -> Path:
    """Weight-only int4 through ORT's MatMulNBits; only MatMul weights qualify."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(source))
    initializers = {init.name for init in model.graph.initializer}
    eligible = [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in initializers]
    if not eligible:
        raise RecipeError(
            "quantize mode 'int4': ONNX Runtime's int4 weight-only kernel (MatMulNBits) covers MatMul "
            "layers only, and this model has none (convolutions and Gemm are not covered)",
            "use mode 'ptq-static' (int8) for convolutional models",
        )
    quantizer = MatMulNBitsQuantizer(model, block_size=block_size, is_symmetric=True)
    quantizer.process()
    quantizer.model.save_model_to_file(str(destination), use_external_data_format=False)
    return destination
