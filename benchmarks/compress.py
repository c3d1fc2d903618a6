"""edgewise int8 PTQ and its best recipe vs ONNX Runtime `quantize_static` defaults vs NNCF PTQ.

Same trained model, same data, same calibration images (256 from train), one run:

    .venv/bin/python benchmarks/compress.py --sample parts --out /tmp/bench-parts
    .venv/bin/python benchmarks/compress.py --model best.pt --data data/parts --out /tmp/bench

Prints accuracy (test split, ONNX Runtime), Δaccuracy, size ratio and measured host latency
ratio against the fp32 export. NNCF is optional: without it the row says 'not installed'.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from edgewise.studio.compress import RunOptions, load_input_model, load_recipe, parse_recipe, run_compression
from edgewise.studio.compress.inputs import load_data
from edgewise.studio.compress.measure import export_model, host_latency, onnx_accuracy
from edgewise.studio.compress.steps._ort_quant import ArrayCalibrationReader, calibration_batches

CALIBRATION_IMAGES = 256


def _prepare(args: argparse.Namespace) -> tuple[Path, Path]:
    if args.model:
        return Path(args.model), Path(args.data)
    from edgewise.studio.samples import write_sample
    from edgewise.studio.train import TrainConfig, train

    data = args.out / "data"
    if not data.exists():
        write_sample(args.sample, data)
    checkpoint = args.out / "train" / "best.pt"
    if not checkpoint.exists():
        train(TrainConfig(arch=args.arch, epochs=args.epochs, device="cpu", num_threads=args.threads),
              data, args.out / "train", progress=False)
    return checkpoint, data


def _ort_defaults(fp32: Path, out: Path, batches: list[np.ndarray]) -> Path:
    from onnxruntime.quantization import quantize_static

    quantize_static(str(fp32), str(out), ArrayCalibrationReader("input", batches))  # every option at its default
    return out


def _nncf(fp32: Path, out: Path, batches: list[np.ndarray]) -> Path:
    import nncf
    import onnx

    quantized = nncf.quantize(onnx.load(str(fp32)), nncf.Dataset(batches, lambda batch: {"input": batch}),
                              subset_size=CALIBRATION_IMAGES)
    onnx.save(quantized, str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", default="parts", choices=["parts", "digits"])
    parser.add_argument("--model", help="trained checkpoint; default: train --arch on --sample")
    parser.add_argument("--data", help="image folder (with --model)")
    parser.add_argument("--arch", default="cnn-small")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--recipe", default="balanced", help="edgewise's best recipe to compare")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("bench-compress"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint, data_dir = _prepare(args)
    source = load_input_model(checkpoint)
    data = load_data(data_dir, source.image_size, 64)
    fp32 = export_model(source.model, args.out / "fp32.onnx", source.image_size)
    batches = calibration_batches(data.train, CALIBRATION_IMAGES, fp32)

    def measure(path: Path) -> tuple[float, int, float]:
        latency = host_latency(path, source.image_size, runs=args.latency_runs)
        return onnx_accuracy(path, data.test), path.stat().st_size, latency.p50_ms

    rows: list[tuple[str, tuple[float, int, float] | str]] = [("fp32 (export)", measure(fp32))]
    options = RunOptions(latency_runs=args.latency_runs)
    ptq = parse_recipe({"name": "int8-ptq", "steps": [{"quantize": {"mode": "ptq-static"}}]}, "int8-ptq")
    report = run_compression(source, data, "x86-host", ptq, args.out / "edgewise-ptq", options)
    rows.append(("edgewise int8 PTQ", measure(Path(report.steps[-1].model_path))))
    report = run_compression(source, data, "x86-host", load_recipe(args.recipe), args.out / "edgewise-best", options)
    best = report.steps[report.best_step]
    rows.append((f"edgewise {args.recipe} (step {best.index} {best.name})", measure(Path(best.model_path))))
    alternatives: list[tuple[str, Callable[[Path, Path, list[np.ndarray]], Path], str]] = [
        ("ORT quantize_static defaults", _ort_defaults, "ort-defaults.onnx"),
        ("NNCF PTQ (ONNX)", _nncf, "nncf.onnx"),
    ]
    for label, quantize, filename in alternatives:
        try:
            rows.append((label, measure(quantize(fp32, args.out / filename, batches))))
        except ImportError:
            rows.append((label, "not installed"))
        except Exception as error:  # an alternative failing is a result to print, not a crash
            rows.append((label, f"failed: {error.__class__.__name__}: {str(error)[:80]}"))
    _print_table(rows, args.sample if not args.model else str(data_dir))
    return 0


def _print_table(rows: list[tuple[str, tuple[float, int, float] | str]], dataset: str) -> None:
    base_accuracy, base_size, base_latency = rows[0][1]  # type: ignore[misc]
    print(f"\ncompression benchmark on {dataset} (accuracy: test split via ONNX Runtime; latency: measured on this "
          "host, batch 1, 1 thread)\n")
    print("| method | accuracy % | Δacc pt | size ratio | host p50 ms | speed-up |\n|---|---|---|---|---|---|")
    for label, result in rows:
        if isinstance(result, str):
            print(f"| {label} | {result} | | | | |")
            continue
        accuracy, size, latency = result
        print(f"| {label} | {accuracy:.2f} | {accuracy - base_accuracy:+.2f} | {size / base_size:.3f} | "
              f"{latency:.3f} | {base_latency / latency:.2f}x |")


if __name__ == "__main__":
    sys.exit(main())
