from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from edgewise.agent.config import HealthSettings, SourceSettings
from edgewise.agent.health import check_model_health
from edgewise.agent.sources import create_source
from edgewise.agent.update import UpdateMachine
from edgewise.core.manifest import Manifest
from edgewise.core.signing import PrivateKey
from edgewise.core.wire import BundleRef
from tests.agent import models


@pytest.fixture(scope="session")
def publisher() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture(scope="session")
def stranger() -> PrivateKey:
    """A publisher key the devices do not trust."""
    return PrivateKey.generate()


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory, publisher: PrivateKey,
            stranger: PrivateKey) -> dict[str, tuple[Path, Manifest]]:
    """Packed bundles: v1, v2, scratch (good), bad-sig (signed by a stranger), broken, slow.

    Each archive's bundle directory sits beside it (`archive.with_suffix("")`)."""
    root = tmp_path_factory.mktemp("bundles")
    built = {
        "v1": (models.classifier(root / "c1.onnx", seed=1), publisher),
        "v2": (models.classifier(root / "c2.onnx", seed=2), publisher),
        "scratch": (models.always(root / "scratch.onnx", "scratch"), publisher),
        "bad-sig": (models.classifier(root / "c3.onnx", seed=3), stranger),
        "broken": (models.broken(root / "broken.onnx"), publisher),
        # Far over the 25 ms limit on any CPU (about 26 GFLOP a frame), so the test cannot pass by luck.
        "slow": (models.slow(root / "slow.onnx", side=1024, depth=12), publisher),
    }
    return {name: models.make_archive(root, name, model, key) for name, (model, key) in built.items()}


def ref_for(archive: Path, manifest: Manifest) -> BundleRef:
    return BundleRef(name=manifest.name, version=manifest.version, digest=manifest.digest,
                     url=f"/api/v1/device/bundles/{manifest.digest}/archive", size_bytes=archive.stat().st_size)


def probe_frames() -> list:
    return list(create_source(SourceSettings(frames=4, width=64, height=48)).frames())


HEALTH = HealthSettings(window_s=0.2, min_frames=3, max_latency_ms=20.0)


@pytest.fixture
def make_machine(bundles, publisher) -> Callable[..., UpdateMachine]:
    by_digest = {m.digest: archive for archive, m in bundles.values()}

    def download(target: BundleRef, dest: Path) -> Path:
        shutil.copyfile(by_digest[target.digest], dest)
        return dest

    def health(bundle_dir: Path, manifest: Manifest) -> object:
        return check_model_health(bundle_dir, manifest, probe_frames, HEALTH, ["cpu"], ["CPUExecutionProvider"], 1)

    def make(data_dir: Path, **kwargs) -> UpdateMachine:
        kwargs.setdefault("download", download)
        kwargs.setdefault("health_check", health)
        return UpdateMachine(data_dir, [publisher.public], **kwargs)

    return make
