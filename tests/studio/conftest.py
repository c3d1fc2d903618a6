"""Studio fixtures: one small `parts` dataset and one quickly trained model, shared per session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class TrainedRun:
    data_dir: Path
    out_dir: Path
    checkpoint: Path
    classes: list[str]
    test_accuracy: float
    history: list[dict]


@pytest.fixture(scope="session")
def small_parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 `parts` images, 32x32: 88 train, 16 val, 16 test (4 per class in each)."""
    from edgewise.studio.samples import write_sample

    return write_sample("parts", tmp_path_factory.mktemp("data") / "parts", size=120, seed=3)


@pytest.fixture(scope="session")
def trained_small(small_parts: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """A narrow cnn-small trained for 2 epochs on `small_parts`: fast, not accurate."""
    import torch

    from edgewise.studio.train import TrainConfig, train

    torch.set_num_threads(2)
    out_dir = tmp_path_factory.mktemp("train")
    config = TrainConfig(arch="cnn-small", epochs=2, width=0.5, batch_size=32, num_threads=2, device="cpu")
    result = train(config, small_parts, out_dir, progress=False)
    return TrainedRun(small_parts, out_dir, result.checkpoint_path, result.classes, result.test_accuracy,
                      result.history)


@pytest.fixture(scope="session")
def exported_small(trained_small: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgewise.studio.checkpoints import load_checkpoint
    from edgewise.studio.export import export_onnx

    loaded = load_checkpoint(trained_small.checkpoint)
    path = tmp_path_factory.mktemp("onnx") / "small.onnx"
    export_onnx(loaded.model, path, image_size=32, dynamic_batch=True, classes=loaded.classes)
    return path
