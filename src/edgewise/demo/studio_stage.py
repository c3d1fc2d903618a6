"""Data -> train -> compress -> bundle -> sign -> publish, twice: a quick first model and a better one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from edgewise.core.bundle import sign_bundle
from edgewise.core.signing import PrivateKey
from edgewise.registry import open_store
from edgewise.registry.store import Published

T = TypeVar("T")
BUNDLE_NAME = "parts-inspector"
DEMO_TARGET = "rpi4"
DEMO_RECIPE = "rpi-int8"


@dataclass
class BuiltBundle:
    published: Published
    test_accuracy: float
    int8_accuracy: float | None
    size_bytes: int | None
    host_latency_ms: float | None


@dataclass
class StudioPlan:
    """How much training each bundle gets; the defaults keep the demo within minutes on 2 cores."""

    samples_per_class: int | None = None
    first_epochs: int = 5
    second_epochs: int = 8


def build_bundles(work: Path, key: PrivateKey, store_url: str, plan: StudioPlan,
                  say: Callable[[str], None]) -> list[BuiltBundle]:
    from edgewise.studio.samples import write_sample

    data_dir = work / "data" / "parts"
    if not (data_dir / "train").is_dir():
        say("writing the `parts` sample dataset (synthetic conveyor images: ok/scratch/hole/crack)")
        write_sample("parts", data_dir, size=plan.samples_per_class, seed=0)
    return two_versions(plan.first_epochs, plan.second_epochs, work,
                        lambda version, epochs, init: _build_one(work, data_dir, version, epochs, init, key,
                                                                 open_store(store_url), say))


def two_versions(first_epochs: int, second_epochs: int, work: Path, build: Callable[[str, int, Path | None], T]
                 ) -> list[T]:
    """1.0.0 trained from scratch, then 2.0.0 going on from 1.0.0's best checkpoint."""
    built = []
    for version, epochs, init in (("1.0.0", first_epochs, None), ("2.0.0", second_epochs, "1.0.0")):
        built.append(build(version, epochs, work / f"train-{init}" / "best.pt" if init else None))
    return built


def _build_one(work: Path, data_dir: Path, version: str, epochs: int, init_checkpoint: Path | None,
               key: PrivateKey, store, say: Callable[[str], None]) -> BuiltBundle:  # type: ignore[no-untyped-def]
    from edgewise.studio.bundling import BundleOptions, bundle_from_steps
    from edgewise.studio.compress import RunOptions, run_compression
    from edgewise.studio.train import TrainConfig, train

    how = f"fine-tuning {init_checkpoint.parent.name} for" if init_checkpoint else "training for"
    say(f"bundle {version}: {how} {epochs} epoch(s)")
    config = TrainConfig(arch="cnn-small", epochs=epochs, init_checkpoint=init_checkpoint, num_threads=2)
    result = train(config, data_dir, work / f"train-{version}", progress=True)
    say(f"bundle {version}: test accuracy {result.test_accuracy:.1%}; compressing for {DEMO_TARGET} ({DEMO_RECIPE})")
    run_dir = work / f"compress-{version}"
    run_compression(result.checkpoint_path, data_dir, DEMO_TARGET, DEMO_RECIPE, run_dir,
                             RunOptions(latency_runs=30))
    final_step = sorted((run_dir / "steps").iterdir())[-1]
    bundle_dir = work / "bundles" / version
    if bundle_dir.exists():
        import shutil

        shutil.rmtree(bundle_dir)
    manifest = bundle_from_steps(bundle_dir, [final_step], BundleOptions(name=BUNDLE_NAME, version=version))
    sign_bundle(bundle_dir, key)
    published = store.publish(bundle_dir)
    say(f"bundle {version}: signed and published as {published.ref} ({published.digest[:19]}...)")
    return BuiltBundle(
        published=published,
        test_accuracy=result.test_accuracy,
        int8_accuracy=manifest.metrics.accuracy,
        size_bytes=manifest.metrics.size_bytes,
        host_latency_ms=manifest.metrics.host_latency_ms,
    )
