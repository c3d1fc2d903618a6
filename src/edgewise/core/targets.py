"""The hardware target catalog: what each edge device can run, and roofline estimates for it.

Compression checks a model against a `Target` (precisions, operators, memory) and estimates
latency and energy on it from MACs and bytes moved. Estimates are labelled as such everywhere:
only host latency is measured. Peak figures are public vendor numbers (dense, no sparsity),
rounded; they set an upper bound on speed, so real devices are slower.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edgewise.core.errors import ConfigError
from edgewise.core.plugins import Registry

Precision = Literal["fp32", "fp16", "int8", "int4"]
Family = Literal["jetson", "coral", "rpi", "phone", "cpu"]

# Fraction of peak a real runtime reaches on small vision models; keeps estimates honest-ish.
ACHIEVABLE_FRACTION = 0.4


class Target(BaseModel):
    """One edge device: what it runs and how fast it could run it at best."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    display_name: str
    family: Family
    runtime: str
    formats: list[str]
    precisions: list[Precision]
    full_int8_required: bool = False
    supported_ops: list[str] | None = Field(
        default=None, description="ONNX op types the accelerator executes; None means any standard op"
    )
    unsupported_ops: list[str] = Field(default_factory=list)
    op_notes: str = ""
    memory_budget_mb: float
    peak_gops: dict[Precision, float] = Field(description="peak giga-ops per second per precision")
    memory_bandwidth_gbs: float
    typical_power_w: float

    def supports(self, precision: str) -> bool:
        return precision in self.precisions

    def best_precision(self) -> Precision:
        """The fastest precision the device supports, e.g. int8 on the Edge TPU."""
        return max(self.precisions, key=lambda p: self.peak_gops.get(p, 0.0))


_EDGE_TPU_OPS = [
    "Conv", "Gemm", "MatMul", "Add", "Mul", "Concat", "Relu", "Clip", "AveragePool", "MaxPool",
    "GlobalAveragePool", "Reshape", "Flatten", "Softmax", "Pad", "Resize", "Transpose", "Squeeze",
    "Unsqueeze", "ReduceMean", "Sigmoid", "Tanh", "Sub", "QuantizeLinear", "DequantizeLinear",
]


def _catalog() -> list[Target]:
    jetson_formats = ["onnx", "tensorrt-engine"]
    return [
        Target(name="jetson-nano", display_name="NVIDIA Jetson Nano (4 GB)", family="jetson",
               runtime="tensorrt", formats=jetson_formats, precisions=["fp32", "fp16"],
               op_notes="Maxwell GPU: no int8 tensor cores, so TensorRT int8 is not offered",
               memory_budget_mb=2000, peak_gops={"fp32": 236, "fp16": 472},
               memory_bandwidth_gbs=25.6, typical_power_w=10),
        Target(name="jetson-xavier-nx", display_name="NVIDIA Jetson Xavier NX", family="jetson",
               runtime="tensorrt", formats=jetson_formats, precisions=["fp32", "fp16", "int8"],
               op_notes="int8 peak counts GPU + 2 DLAs; DLA runs a subset of layers",
               memory_budget_mb=4000, peak_gops={"fp32": 845, "fp16": 6000, "int8": 21000},
               memory_bandwidth_gbs=59.7, typical_power_w=15),
        Target(name="jetson-agx-xavier", display_name="NVIDIA Jetson AGX Xavier", family="jetson",
               runtime="tensorrt", formats=jetson_formats, precisions=["fp32", "fp16", "int8"],
               memory_budget_mb=16000, peak_gops={"fp32": 1410, "fp16": 11000, "int8": 32000},
               memory_bandwidth_gbs=136.5, typical_power_w=30),
        Target(name="jetson-orin-nano", display_name="NVIDIA Jetson Orin Nano (8 GB)", family="jetson",
               runtime="tensorrt", formats=jetson_formats, precisions=["fp32", "fp16", "int8"],
               memory_budget_mb=4000, peak_gops={"fp32": 1280, "fp16": 10000, "int8": 20000},
               memory_bandwidth_gbs=68, typical_power_w=15),
        Target(name="coral-dev-board", display_name="Coral Dev Board (Edge TPU)", family="coral",
               runtime="tflite-edgetpu", formats=["tflite"], precisions=["int8"], full_int8_required=True,
               supported_ops=_EDGE_TPU_OPS,
               op_notes="every op must be full int8; float ops fall back to the CPU and split the graph; "
                        "8 MB on-chip SRAM caches weights, larger models stream from DRAM",
               memory_budget_mb=1024, peak_gops={"int8": 4000}, memory_bandwidth_gbs=12.8, typical_power_w=2),
        Target(name="coral-usb", display_name="Coral USB Accelerator (Edge TPU)", family="coral",
               runtime="tflite-edgetpu", formats=["tflite"], precisions=["int8"], full_int8_required=True,
               supported_ops=_EDGE_TPU_OPS,
               op_notes="every op must be full int8; weights beyond 8 MB SRAM stream over USB",
               memory_budget_mb=1024, peak_gops={"int8": 4000}, memory_bandwidth_gbs=0.4, typical_power_w=2),
        Target(name="rpi4", display_name="Raspberry Pi 4 (4 GB, Cortex-A72)", family="rpi",
               runtime="onnxruntime", formats=["onnx", "tflite"], precisions=["fp32", "int8"],
               op_notes="ARMv8.0: no fp16 arithmetic, no int8 dot-product instructions",
               memory_budget_mb=1000, peak_gops={"fp32": 24, "int8": 48},
               memory_bandwidth_gbs=4.0, typical_power_w=6.4),
        Target(name="rpi5", display_name="Raspberry Pi 5 (8 GB, Cortex-A76)", family="rpi",
               runtime="onnxruntime", formats=["onnx", "tflite"], precisions=["fp32", "fp16", "int8"],
               op_notes="ARMv8.2: fp16 arithmetic and sdot int8 dot products",
               memory_budget_mb=2000, peak_gops={"fp32": 77, "fp16": 154, "int8": 307},
               memory_bandwidth_gbs=17, typical_power_w=8),
        Target(name="phone-6gb", display_name="Smartphone, 6 GB (mid/high-end SoC with NPU)", family="phone",
               runtime="onnxruntime-mobile/nnapi", formats=["onnx", "tflite"],
               precisions=["fp32", "fp16", "int8"],
               op_notes="int8 on the NPU, fp16 on the GPU, fp32 on the CPU; the OS limits app memory",
               memory_budget_mb=1500, peak_gops={"fp32": 200, "fp16": 2000, "int8": 15000},
               memory_bandwidth_gbs=51, typical_power_w=5),
        Target(name="x86-host", display_name="x86-64 host CPU (AVX2)", family="cpu",
               runtime="onnxruntime", formats=["onnx"], precisions=["fp32", "fp16", "int8", "int4"],
               op_notes="without AVX-512 VNNI, int8 is often no faster than fp32; fp16 is emulated",
               memory_budget_mb=8000, peak_gops={"fp32": 500, "fp16": 250, "int8": 1000, "int4": 500},
               memory_bandwidth_gbs=40, typical_power_w=65),
    ]


def _build_registry() -> Registry[Target]:
    registry: Registry[Target] = Registry("hardware target")
    for target in _catalog():
        registry.add(target.name, target, target.display_name)
    return registry


TARGETS: Registry[Target] = _build_registry()


def get_target(name: str) -> Target:
    """The catalog entry for `name`; an unknown name raises ConfigError listing the known ones."""
    return TARGETS.get(name)


def list_targets() -> list[Target]:
    return [entry.obj for entry in TARGETS]


def estimate_latency_ms(target: Target, macs: float, bytes_moved: float, precision: str) -> float:
    """Roofline ESTIMATE: max(compute time, memory time) at a realistic fraction of peak.

    One MAC is two ops. A precision the target lacks raises ConfigError rather than guessing.
    """
    if macs < 0 or bytes_moved < 0:
        raise ConfigError("MACs and bytes moved must be >= 0", "pass counts measured from the model")
    peak = {str(name): value for name, value in target.peak_gops.items()}.get(precision)
    if peak is None or not target.supports(precision):
        raise ConfigError(
            f"{target.name} has no {precision} throughput",
            f"estimate with one of: {', '.join(target.precisions)}",
        )
    compute_s = 2.0 * macs / (peak * 1e9 * ACHIEVABLE_FRACTION)
    memory_s = bytes_moved / (target.memory_bandwidth_gbs * 1e9 * ACHIEVABLE_FRACTION)
    return float(max(compute_s, memory_s) * 1e3)


def energy_mj(target: Target, latency_ms: float) -> float:
    """ESTIMATED energy per inference in millijoules: typical power x latency."""
    return target.typical_power_w * latency_ms
