"""The detector, end to end on the traffic sample: training, int8 against ORT's default, the
balanced recipe, and the agent's frame rate against a bare ONNX Runtime loop.

    .venv/bin/python benchmarks/detect.py                        # writes the sample, trains nano (~8 min)
    .venv/bin/python benchmarks/detect.py --checkpoint runs/det/best.pt --data data/traffic

1. Training (unless --checkpoint): `edgewise data sample traffic` (1500 frames, 1050 train / 225
   val / 225 test, split by clip) and `edgewise train` with the defaults (detector-nano, 16
   epochs, 192x256 letterboxed); wall time and held-out COCO metrics.
2. Quantization, on the same exported model and the same 128 calibration frames: our
   accuracy-aware int8 (QDQ, per-channel, convolutions only, head kept in float if the val drop
   exceeds 1 pt) against `onnxruntime.quantization.quantize_static` with its defaults; mAP on the
   test split (2000+ boxes: 0.05 pt per box), file size, host latency at batch 1, 1 thread.
3. The balanced recipe as `edgewise compress` runs it (NMS in the graph, names compacted).
4. Agent frame rate: `agent.pipeline.Pipeline.run` (frame -> letterbox -> ORT -> decode -> frame
   pixels) against the loop a user would write with the same model, preprocessing and decode
   and ORT's default session options, on the same test frames, alternating, at 1 and 2 threads;
   the goal is >= 0.9x. The agent lets ORT's threads spin for file and folder sources, as here;
   for live sources it turns spinning off (a spinning pool steals the core the reader thread
   decodes on: benchmarks/agent.py), which costs 0.70-0.79x in this loop at 2 threads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def train(data: Path, out: Path) -> Path:
    from edgewise.studio.detect.train import DetectTrainConfig, train_detector

    started = time.perf_counter()
    result = train_detector(DetectTrainConfig(num_threads=2), data, out, progress=True)
    minutes = (time.perf_counter() - started) / 60
    test = result.test
    print(f"\ntraining: detector-nano, {len(result.history)} epochs, {minutes:.1f} min on this machine")
    if test is not None:
        print(f"held-out test: mAP@[.5:.95] {test.map:.4f}, mAP@.5 {test.map50:.4f}, mAP@.75 {test.map75:.4f}, "
              f"AR@100 {test.ar100:.4f} ({test.images} frames, {test.boxes} boxes)")
    return result.checkpoint_path


def quantization_table(checkpoint: Path, data: Path, work: Path) -> None:
    from edgewise.core.model_card import load_card
    from edgewise.studio.bench import benchmark_onnx
    from edgewise.studio.compress.onnx_rewrites import compact_names
    from edgewise.studio.detect.compress import ort_default_int8, quantize_int8
    from edgewise.studio.detect.evaluate import evaluate_detector_onnx
    from edgewise.studio.detect.export import export_detector
    from edgewise.studio.detect.formats.coco import read_native
    from edgewise.studio.detect.train import load_detector

    model, _, labels, spec, _ = load_detector(checkpoint)
    splits = read_native(data)
    export = export_detector(model, spec, labels, work / "fp32.onnx", form="raw")
    card = load_card(export.card_path)
    ours = quantize_int8(export.path, card, splits["train"], splits["val"], work / "int8.onnx", max_drop=1.0)
    ort_default_int8(export.path, card, splits["train"], work / "ort-default.onnx")
    rows = []
    variants = (("fp32", export.path), ("edgewise int8", ours.path), ("ORT default int8", work / "ort-default.onnx"))
    for name, path in variants:
        compact = work / f"{path.stem}.compact.onnx"
        compact.write_bytes(path.read_bytes())
        compact_names(compact)  # the same packaging for every row, so sizes compare
        metrics = evaluate_detector_onnx(compact, card, splits["test"])
        latency = benchmark_onnx(compact, threads=1, runs=60, warmup=10, input_shape=list(card.input.shape))
        rows.append((name, metrics.map, metrics.map50, compact.stat().st_size, latency.p50_ms))
    base_map, base_size, base_latency = rows[0][1], rows[0][3], rows[0][4]
    print(f"\n{'model (raw form, test split)':<28} {'mAP@[.5:.95]':>12} {'vs fp32 pt':>10} {'mAP@.5':>7} "
          f"{'KiB':>7} {'x smaller':>9} {'p50 ms':>7} {'x fp32 time':>11}")
    for name, map_, map50, size, latency in rows:
        print(f"{name:<28} {map_:12.4f} {100 * (map_ - base_map):+10.2f} {map50:7.4f} {size / 1024:7.1f} "
              f"{base_size / size:9.2f} {latency:7.2f} {latency / base_latency:11.2f}")
    print(f"edgewise int8 kept in float: {', '.join(ours.kept_float) or 'nothing'}")


def balanced_table(checkpoint: Path, data: Path, work: Path) -> Path:
    from edgewise.studio.detect.compress_run import compress_detector

    reports = compress_detector(checkpoint, data, "x86-host", "balanced", work / "balanced", progress=False)
    reference = reports[0]
    print(f"\n{'balanced recipe (NMS form)':<28} {'test mAP':>9} {'vs fp32 pt':>10} {'KiB':>7} {'x smaller':>9} "
          f"{'p50 ms':>7}")
    for report in reports:
        test_map = report.test_map or 0.0
        print(f"{report.name:<28} {test_map:9.4f} {100 * (test_map - (reference.test_map or 0.0)):+10.2f} "
              f"{report.size_bytes / 1024:7.1f} {reference.size_bytes / report.size_bytes:9.2f} "
              f"{report.host_latency_ms:7.2f}")
    return Path(reports[-1].path)


def agent_fps(model_path: Path, data: Path, work: Path, threads: int, rounds: int = 3) -> None:
    import numpy as np
    import onnxruntime as ort

    from edgewise.agent.pipeline import Pipeline, decode_detection
    from edgewise.core.bundle import read_manifest
    from edgewise.core.model_card import card_beside, load_card
    from edgewise.core.preprocess import Preprocessor, read_frame
    from edgewise.studio.bundling import BundleOptions, VariantSource, bundle_from_onnx

    bundle = work / f"bundle-{threads}"
    bundle_from_onnx(bundle, [VariantSource("cpu-int8", model_path, precision="int8")],
                     BundleOptions("traffic", "1.0.0", card=load_card(card_beside(model_path))))
    manifest = read_manifest(bundle)
    frames = [read_frame(p) for p in sorted((data / "test" / "images").glob("*.png"))]
    # As the agent runs a file source (frames read in turn with inference): thread spinning on.
    pipeline = Pipeline(bundle, manifest, ["cpu"], ["CPUExecutionProvider"], threads=threads, spin=True)
    options = ort.SessionOptions()  # what a user writes: ORT's defaults, thread spinning on
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    preprocess = Preprocessor(manifest.input)
    name = session.get_inputs()[0].name

    def bare(frame: np.ndarray) -> object:
        fitted, placement = preprocess.fit(frame)
        outputs = session.run(None, {name: preprocess.to_tensor(fitted[None])})
        return decode_detection(outputs, manifest.output, manifest.labels, (preprocess.height, preprocess.width),
                                placement, frame.shape[:2])

    video = _video(work)

    def from_memory() -> Iterator[np.ndarray]:
        return iter(frames)

    def from_video() -> Iterator[np.ndarray]:
        import cv2

        capture = cv2.VideoCapture(str(video))
        while True:
            ok, frame = capture.read()
            if not ok:
                capture.release()
                return
            yield frame

    for source, name_of_source in ((from_memory, f"{len(frames)} test frames in memory"),
                                   (from_video, "the traffic video, decoded as read")):
        timings: dict[str, list[float]] = {"agent pipeline": [], "bare ONNX Runtime loop": []}
        for _ in range(rounds):
            for label, run in (("agent pipeline", pipeline.run), ("bare ONNX Runtime loop", bare)):
                started, count = time.perf_counter(), 0
                for frame in source():
                    run(frame)
                    count += 1
                timings[label].append(count / (time.perf_counter() - started))
        agent = statistics.median(timings["agent pipeline"])
        loop = statistics.median(timings["bare ONNX Runtime loop"])
        print(f"\nframes/s, {threads} thread(s), {name_of_source}, median of {rounds}")
        print(f"  {'agent pipeline':<38} {agent:8.1f}")
        print(f"  {'bare ONNX Runtime loop':<38} {loop:8.1f}")
        print(f"  {'agent / bare':<38} {agent / loop:8.2f}x (goal >= 0.9x)")


def _video(work: Path) -> Path:
    from edgewise.studio.samples.traffic_video import VIDEO_FILE, write_traffic_video

    folder = work / "video"
    if not (folder / VIDEO_FILE).is_file():
        write_traffic_video(folder, seconds=30, seed=11)
    return folder / VIDEO_FILE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a trained detector (default: train one)")
    parser.add_argument("--data", type=Path, help="the traffic sample (default: write one)")
    parser.add_argument("--keep", type=Path, help="copy the work folder (data, checkpoint, models) here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        data = args.data
        if data is None:
            from edgewise.studio.samples import write_sample

            data = write_sample("traffic", work / "traffic", seed=0)
        checkpoint = args.checkpoint or train(data, work / "train")
        quantization_table(checkpoint, data, work)
        served = balanced_table(checkpoint, data, work)
        for threads in (1, 2):
            agent_fps(served, data, work, threads)
        if args.keep is not None:
            import shutil

            shutil.copytree(work, args.keep, dirs_exist_ok=True)
            print(f"\nkept the data, checkpoint and models in {args.keep}")


if __name__ == "__main__":
    main()
