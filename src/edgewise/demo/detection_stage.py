"""The demo's detection story: traffic sample -> a quick detector and a better one -> int8 for the
cameras -> signed bundles; and one traffic video per camera, with its ground-truth counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgewise.core.bundle import sign_bundle
from edgewise.core.signing import PrivateKey
from edgewise.demo.studio_stage import two_versions
from edgewise.registry import open_store
from edgewise.registry.store import Published

DETECTOR_BUNDLE = "traffic-counter"
DETECTION_TARGET = "x86-host"


@dataclass
class DetectionPlan:
    """Training per bundle; the defaults keep the demo within minutes on 2 cores. 2.0.0 goes on
    from 1.0.0's weights, so it is better than 1.0.0 by construction and by measure."""

    frames: int = 900
    first_epochs: int = 7
    second_epochs: int = 7
    video_seconds: float = 60.0


@dataclass
class BuiltDetector:
    published: Published
    test_map: float
    test_map50: float
    int8_test_map: float | None
    size_bytes: int
    host_latency_ms: float


def build_detectors(work: Path, key: PrivateKey, store_url: str, plan: DetectionPlan,
                    say: Callable[[str], None]) -> list[BuiltDetector]:
    from edgewise.studio.samples import write_sample

    data_dir = work / "data" / "traffic"
    if not (data_dir / "train").is_dir():
        say(f"writing the `traffic` sample ({plan.frames} frames of a 5-lane road: car/van/truck/motorbike)")
        write_sample("traffic", data_dir, size=plan.frames, seed=0)
    return two_versions(plan.first_epochs, plan.second_epochs, work,
                        lambda version, epochs, init: _build_one(work, data_dir, version, epochs, init, key,
                                                                 open_store(store_url), say))


def _build_one(work: Path, data_dir: Path, version: str, epochs: int, init_checkpoint: Path | None,
               key: PrivateKey, store, say: Callable[[str], None]) -> BuiltDetector:  # type: ignore[no-untyped-def]
    import shutil

    from edgewise.core.model_card import card_beside, load_card
    from edgewise.studio.bundling import BundleOptions, VariantSource, bundle_from_onnx
    from edgewise.studio.detect.compress_run import compress_detector
    from edgewise.studio.detect.train import DetectTrainConfig, train_detector

    how = f"going on from {init_checkpoint.parent.name} for" if init_checkpoint else "training detector-nano for"
    say(f"bundle {version}: {how} {epochs} epoch(s)")
    config = DetectTrainConfig(epochs=epochs, batch_size=16, warmup_steps=30, eval_every=2, num_threads=2,
                               init_checkpoint=init_checkpoint, plain_last_epochs=1 if init_checkpoint else 2,
                               lr=2e-3 if init_checkpoint else 3e-3)
    result = train_detector(config, data_dir, work / f"train-{version}", progress=True)
    test = result.test
    test_map, test_map50 = (test.map, test.map50) if test else (result.val.map, result.val.map50)
    say(f"bundle {version}: test mAP@[.5:.95] {test_map:.3f}, mAP@.5 {test_map50:.3f}; int8 for {DETECTION_TARGET}")
    run_dir = work / f"compress-{version}"
    reports = compress_detector(result.checkpoint_path, data_dir, DETECTION_TARGET, "balanced", run_dir,
                                latency_runs=20, progress=False)
    served = reports[-1]
    bundle_dir = work / "bundles" / version
    if bundle_dir.exists():
        shutil.rmtree(bundle_dir)
    model_path = Path(served.path)
    bundle_from_onnx(bundle_dir, [VariantSource("cpu-int8", model_path, precision="int8")],
                     BundleOptions(name=DETECTOR_BUNDLE, version=version, task="detect",
                                   card=load_card(card_beside(model_path)), target=DETECTION_TARGET))
    sign_bundle(bundle_dir, key)
    published = store.publish(bundle_dir)
    say(f"bundle {version}: signed and published as {published.ref} ({published.digest[:19]}...)")
    return BuiltDetector(published, test_map, test_map50, served.test_map, served.size_bytes, served.host_latency_ms)


def write_videos(work: Path, cameras: int, seconds: float, say: Callable[[str], None]) -> list[Path]:
    """One traffic clip per camera (its own seed: other vehicles, other light), with ground truth."""
    from edgewise.studio.samples.traffic_video import write_traffic_video

    say(f"rendering {cameras} traffic video(s) of {seconds:.0f} s, one per camera")
    return [write_traffic_video(work / "videos" / f"camera-{index + 1}", seconds=seconds, seed=100 + index)
            / "traffic.mp4" for index in range(cameras)]
