"""The agent's inference pipeline beside a bare ONNX Runtime loop, on the same frames, in one run.

    .venv/bin/python benchmarks/agent.py [--frames 300] [--threads 2] [--side 224] [--bundle DIR]

Rows (same session options, same frames, sequential, after a warm-up):
  bare ORT (inference only)      session.run on tensors prepared beforehand
  bare ORT + inline preprocess   cv2.resize / cvtColor / scale / transpose, then session.run
  agent pipeline                 Pipeline.run: preprocess from the manifest, run, decode (softmax)
  agent loop                     AgentRunner.process: pipeline + rules + outbox append (SQLite WAL)
  bare ORT + pre, default opts   as the second row, but ORT's default session options (spinning threads)
The bare rows use the agent's session options (threads, no spin-wait) unless said otherwise.
The goal is agent pipeline >= 0.9x the bare loop's throughput.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgewise.agent.config import AgentSettings, RuleSettings, SourceSettings
from edgewise.agent.pipeline import Pipeline
from edgewise.agent.sources import create_source
from edgewise.core.bundle import create_bundle, read_manifest
from edgewise.core.manifest import InputSpec, Manifest, Variant
from edgewise.core.preprocess import preprocess

LABELS = ["ok", "scratch", "hole", "crack"]


def small_cnn(path: Path, side: int) -> Path:
    """Three stride-2 convolutions, global pooling, a linear head: a MobileNet-ish cost profile."""
    rng = np.random.default_rng(0)
    inits, nodes, channels, name = [], [], 3, "input"
    for i, width in enumerate((16, 32, 64)):
        inits.append(numpy_helper.from_array((rng.normal(size=(width, channels, 3, 3)) * 0.1).astype(np.float32),
                                             f"w{i}"))
        nodes.append(helper.make_node("Conv", [name, f"w{i}"], [f"c{i}"], strides=[2, 2], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        name, channels = f"r{i}", width
    inits += [numpy_helper.from_array(rng.normal(size=(channels, len(LABELS))).astype(np.float32), "head"),
              numpy_helper.from_array(np.zeros(len(LABELS), dtype=np.float32), "bias")]
    nodes += [helper.make_node("GlobalAveragePool", [name], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["f"]),
              helper.make_node("Gemm", ["f", "head", "bias"], ["logits"])]
    graph = helper.make_graph(nodes, "bench", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                             [1, 3, side, side])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, len(LABELS)])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def make_bundle(root: Path, side: int) -> Path:
    manifest = Manifest(name="bench", version="1", labels=LABELS,
                        input=InputSpec(shape=[1, 3, side, side], resize=[side, side],
                                        mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
                        variants=[Variant(name="cpu", file="model.onnx")])
    create_bundle(root / "bundle", manifest, {"model.onnx": small_cnn(root / "model.onnx", side)})
    return root / "bundle"


def timed(step: Callable[[np.ndarray], object], frames: list[np.ndarray]) -> tuple[float, list[float]]:
    latencies = []
    started = time.perf_counter()
    for frame in frames:
        begin = time.perf_counter()
        step(frame)
        latencies.append((time.perf_counter() - begin) * 1000)
    return len(frames) / (time.perf_counter() - started), latencies


def compare(loops: dict[str, Callable[[np.ndarray], object]], frames: list[np.ndarray], rounds: int
            ) -> dict[str, tuple[float, float, float]]:
    """Interleave the loops round by round (a noisy neighbour hurts all alike); median fps over rounds."""
    for step in loops.values():
        for frame in frames[:10]:
            step(frame)
    fps: dict[str, list[float]] = {name: [] for name in loops}
    latencies: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(rounds):
        for name, step in loops.items():
            round_fps, round_latencies = timed(step, frames)
            fps[name].append(round_fps)
            latencies[name] += round_latencies
    return {name: (float(np.median(fps[name])), float(np.percentile(latencies[name], 50)),
                   float(np.percentile(latencies[name], 95))) for name in loops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100, help="frames per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--side", type=int, default=224, help="model input side for the built-in model")
    parser.add_argument("--bundle", type=Path, help="benchmark this bundle directory instead")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        bundle_dir = args.bundle or make_bundle(Path(tmp), args.side)
        manifest = read_manifest(bundle_dir)
        frames = list(create_source(SourceSettings(kind="synthetic", frames=args.frames, width=640,
                                                   height=480)).frames())
        variant = manifest.variant_for(["cpu"])

        def bare_session(spinning: bool) -> ort.InferenceSession:
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
            if not spinning:  # the same options the agent uses
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            return ort.InferenceSession(str(bundle_dir / variant.file), options, providers=["CPUExecutionProvider"])

        session, default_session = bare_session(False), bare_session(True)
        input_name = session.get_inputs()[0].name
        spec = manifest.input
        mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
        tensors = {id(f): preprocess(f, spec) for f in frames}

        def bare_inference(frame: np.ndarray) -> object:
            return session.run(None, {input_name: tensors[id(frame)]})

        def bare_with_preprocess(frame: np.ndarray) -> object:
            image = cv2.cvtColor(cv2.resize(frame, (spec.resize[1], spec.resize[0])), cv2.COLOR_BGR2RGB)
            tensor = ((image.astype(np.float32) * spec.scale - mean) / std).transpose(2, 0, 1)[None]
            return session.run(None, {input_name: np.ascontiguousarray(tensor)})

        def bare_default_options(frame: np.ndarray) -> object:
            image = cv2.cvtColor(cv2.resize(frame, (spec.resize[1], spec.resize[0])), cv2.COLOR_BGR2RGB)
            tensor = ((image.astype(np.float32) * spec.scale - mean) / std).transpose(2, 0, 1)[None]
            return default_session.run(None, {input_name: np.ascontiguousarray(tensor)})

        pipeline = Pipeline(bundle_dir, manifest, ["cpu"], ["CPUExecutionProvider"], args.threads)

        from edgewise.agent.runner import AgentRunner
        from edgewise.agent.update import Slots

        data_dir = Path(tmp) / "agent"
        slots = Slots(data_dir)
        (slots.root / ("0" * 64)).symlink_to(bundle_dir.resolve(), target_is_directory=True)
        slots.set_pointer("current", "sha256:" + "0" * 64)
        runner = AgentRunner(AgentSettings(data_dir=data_dir, threads=args.threads,
                                           providers=["CPUExecutionProvider"],
                                           rules=[RuleSettings(labels=["scratch"], min_score=0.0, consecutive=1,
                                                               cooldown_s=1.0)]))

        rows = list(compare({
            "bare ORT (inference only)": bare_inference,
            "bare ORT + inline preprocess": bare_with_preprocess,
            "agent pipeline": pipeline.run,
            "agent loop (+rules, outbox)": runner.process,
            "bare ORT + pre, default options": bare_default_options,
        }, frames, args.rounds).items())
    reference, reference_p50 = rows[1][1][0], rows[1][1][1]
    print(f"model {manifest.ref}  input {spec.shape}  {args.rounds} rounds x {len(frames)} frames of 640x480  "
          f"threads {args.threads}  "
          f"ORT {ort.__version__}")
    # 1000/p50 is the steady-state rate, robust to a noisy neighbour; fps is wall clock (median round).
    print(f"{'loop':32s} {'fps':>8s} {'p50 ms':>8s} {'p95 ms':>8s} {'1000/p50':>9s} {'vs bare+pre':>12s} "
          f"{'(by p50)':>9s}")
    for name, (fps, p50, p95) in rows:
        print(f"{name:32s} {fps:8.1f} {p50:8.2f} {p95:8.2f} {1000 / p50:9.1f} {fps / reference:11.2f}x "
              f"{reference_p50 / p50:8.2f}x")

if __name__ == "__main__":
    main()
