"""Measure a trained trial model for the edge objectives: ONNX size, host latency, MACs.

Uses the studio's `export_onnx` / `benchmark_onnx` when present, else the compression
pipeline's measuring helpers (both export the same graph and time it with onnxruntime).
Host latency is MEASURED; latency on a target is an ESTIMATE from the roofline in core.targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from edgewise.core.targets import estimate_latency_ms, get_target


@dataclass(frozen=True)
class ModelMeasure:
    onnx_path: Path
    host_latency_ms: float
    size_bytes: int
    macs: float
    bytes_moved: float

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1e6

    def target_latency_ms(self, target_name: str) -> float:
        """ESTIMATED latency on a catalog target at fp32 (or its best precision if fp32 is absent)."""
        target = get_target(target_name)
        precision = "fp32" if target.supports("fp32") else target.best_precision()
        return estimate_latency_ms(target, self.macs, self.bytes_moved, precision)


def measure_model(model: torch.nn.Module, onnx_path: Path, image_size: int, threads: int = 1) -> ModelMeasure:
    """Export `model` to `onnx_path` and measure it on this host."""
    try:
        from edgewise.studio.bench import benchmark_onnx  # type: ignore[import-not-found]
        from edgewise.studio.export import export_onnx  # type: ignore[import-not-found]
    except ImportError:
        return _measure_with_compress_helpers(model, onnx_path, image_size, threads)
    export_onnx(model, onnx_path, image_size=image_size)
    result = benchmark_onnx(onnx_path, threads=threads, batch=1)
    macs = float(getattr(result, "macs", 0) or 0)
    size = int(getattr(result, "file_size_bytes", onnx_path.stat().st_size))
    return ModelMeasure(onnx_path, float(result.p50_ms), size, macs, float(size))


def _measure_with_compress_helpers(
    model: torch.nn.Module, onnx_path: Path, image_size: int, threads: int
) -> ModelMeasure:
    from edgewise.studio.compress.measure import count_graph, export_model, host_latency

    export_model(model, onnx_path, image_size)
    latency = host_latency(onnx_path, image_size, runs=30, warmup=5, threads=threads)
    counts = count_graph(onnx_path)
    bytes_moved = float(counts.weight_bytes + counts.activation_bytes)
    return ModelMeasure(onnx_path, latency.p50_ms, onnx_path.stat().st_size, float(counts.macs), bytes_moved)
