"""The studio's first path in one call: sample `parts` -> train -> export -> bench -> evaluate.

`make demo` (through the lead's demo) calls `run_studio_path`; each step is the same function
the CLI command of that name uses.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgewise.studio.bench import benchmark_onnx
from edgewise.studio.evaluate import evaluate
from edgewise.studio.export import export_onnx
from edgewise.studio.samples import write_sample
from edgewise.studio.train import TrainConfig, train

QUICK_CONFIG = TrainConfig(arch="cnn-small", epochs=12, num_threads=2, device="auto")


def run_studio_path(work_dir: Path, progress: bool = True, *, config: TrainConfig | None = None,
                    sample_size: int | None = None) -> dict[str, Any]:
    """Run the whole path under `work_dir` and return what each step measured."""
    work_dir = Path(work_dir)
    config = config or QUICK_CONFIG
    timings: dict[str, float] = {}

    started = time.perf_counter()
    data_dir = work_dir / "data" / "parts"
    if not (data_dir / "test").is_dir():
        write_sample("parts", data_dir, size=sample_size, image_size=config.image_size)
    timings["sample_s"] = time.perf_counter() - started

    started = time.perf_counter()
    result = train(config, data_dir, work_dir / "train", progress=progress)
    timings["train_s"] = time.perf_counter() - started

    started = time.perf_counter()
    onnx_path = work_dir / "model.onnx"
    exported = export_onnx(result.model, onnx_path, image_size=config.image_size, classes=result.classes)
    timings["export_s"] = time.perf_counter() - started

    started = time.perf_counter()
    bench = benchmark_onnx(onnx_path, threads=1, batch=1)
    timings["bench_s"] = time.perf_counter() - started

    started = time.perf_counter()
    evaluation = evaluate(onnx_path, data_dir, split="test")
    timings["evaluate_s"] = time.perf_counter() - started

    return {
        "data_dir": str(data_dir), "checkpoint": str(result.checkpoint_path), "onnx": str(onnx_path),
        "arch": config.arch, "classes": result.classes, "epochs_run": len(result.history),
        "best_val_accuracy": result.best_val_accuracy, "test_accuracy_torch": result.test_accuracy,
        "test_accuracy_onnx": evaluation.accuracy, "export_max_abs_diff": exported.max_abs_diff,
        "latency_p50_ms": bench.p50_ms, "latency_p95_ms": bench.p95_ms, "latency_p99_ms": bench.p99_ms,
        "throughput_fps": bench.throughput_fps, "params": bench.params, "macs": bench.macs,
        "file_size_bytes": bench.file_size_bytes, "timings": {k: round(v, 2) for k, v in timings.items()},
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A few lines for a terminal."""
    return "\n".join([
        f"studio path on parts ({', '.join(summary['classes'])}), {summary['arch']}, "
        f"{summary['epochs_run']} epochs",
        f"  test accuracy: torch {summary['test_accuracy_torch']:.3f}, ONNX Runtime {summary['test_accuracy_onnx']:.3f}"
        f" (export max abs diff {summary['export_max_abs_diff']:.1e})",
        f"  latency p50 {summary['latency_p50_ms']:.2f} ms, p95 {summary['latency_p95_ms']:.2f} ms, "
        f"{summary['throughput_fps']:.0f} images/s (1 thread, batch 1)",
        f"  {summary['params']:,} params, {summary['macs']:,} MACs, {summary['file_size_bytes']:,} bytes",
        f"  model: {summary['onnx']}",
    ])
