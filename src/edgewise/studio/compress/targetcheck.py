"""Checking a model against a hardware target: precision, operators, memory; plus estimates."""

from __future__ import annotations

from pathlib import Path

import onnx
from pydantic import BaseModel

from edgewise.core.targets import Target, energy_mj, estimate_latency_ms
from edgewise.studio.compress.measure import GraphCounts

COMPUTE_OPS = {"Conv", "Gemm", "MatMul"}
_RUNS_AS = {"int8": "int8", "int8-mixed": "int8", "fp16": "fp16", "fp32": "fp32", "int4": "int4",
            "binary": "fp32", "ternary": "fp32"}


class TargetCheck(BaseModel):
    target: str
    ok: bool
    issues: list[str]
    float_compute_layers: list[str]
    memory_mb: float
    est_latency_ms: float | None
    est_energy_mj: float | None
    estimate_precision: str | None


def check_model(path: Path, precision: str, target: Target, counts: GraphCounts) -> TargetCheck:
    graph = onnx.load(str(path), load_external_data=False).graph
    issues: list[str] = []
    runs_as = _RUNS_AS.get(precision, precision)
    needed = {"int8", "fp32"} if precision == "int8-mixed" else {runs_as}
    missing = sorted(p for p in needed if not target.supports(p))
    if missing:
        issues.append(f"{target.name} does not run {'/'.join(missing)} (supports {', '.join(target.precisions)})")
    float_layers = float_compute_layers(graph)
    if target.full_int8_required and float_layers:
        issues.append(f"{target.name} needs every layer in full int8; {len(float_layers)} compute layer(s) are "
                      f"float: {', '.join(float_layers[:5])}{' ...' if len(float_layers) > 5 else ''}")
    op_types = {node.op_type for node in graph.node}
    if target.full_int8_required and "DynamicQuantizeLinear" in op_types:
        issues.append(f"{target.name} needs static int8; dynamic quantization computes activation scales at run time")
    if target.supported_ops is not None:
        unsupported = sorted(op_types - set(target.supported_ops))
        if unsupported:
            issues.append(f"ops not supported on {target.name}: {', '.join(unsupported)}")
    banned = sorted(op_types & set(target.unsupported_ops))
    if banned:
        issues.append(f"ops known not to run on {target.name}: {', '.join(banned)}")
    memory_mb = (counts.weight_bytes + 2 * counts.peak_activation_bytes) / 1e6
    if memory_mb > target.memory_budget_mb:
        issues.append(f"needs ~{memory_mb:.1f} MB, over the {target.memory_budget_mb:.0f} MB budget of {target.name}")
    latency = energy = None
    estimate_precision = runs_as if target.supports(runs_as) else None
    if estimate_precision is not None:
        # activations were counted as float32; the runtime moves them at the compute precision
        activation_scale = {"int8": 0.25, "int4": 0.25, "fp16": 0.5}.get(estimate_precision, 1.0)
        bytes_moved = counts.weight_bytes + 2 * counts.activation_bytes * activation_scale
        latency = estimate_latency_ms(target, counts.macs, bytes_moved, estimate_precision)
        energy = energy_mj(target, latency)
    return TargetCheck(target=target.name, ok=not issues, issues=issues, float_compute_layers=float_layers,
                       memory_mb=round(memory_mb, 3), est_latency_ms=latency, est_energy_mj=energy,
                       estimate_precision=estimate_precision)


def float_compute_layers(graph: onnx.GraphProto) -> list[str]:
    """Conv/Gemm/MatMul whose activation or weight input does not come from a DequantizeLinear."""
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    return [node.name or node.op_type for node in graph.node
            if node.op_type in COMPUTE_OPS and not all(name in dequantized for name in node.input[:2])]
