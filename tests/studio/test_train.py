"""Training: outputs, callbacks, early stopping, fine-tuning with a frozen backbone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from edgewise.core.errors import ConfigError, ModelError
from edgewise.studio.checkpoints import load_checkpoint
from edgewise.studio.train import TrainConfig, train
from tests.studio.conftest import TrainedRun

FAST = {"arch": "cnn-small", "width": 0.5, "batch_size": 32, "num_threads": 2, "device": "cpu"}


def test_training_writes_checkpoints_and_metrics(trained_small: TrainedRun) -> None:
    out = trained_small.out_dir
    assert {"best.pt", "last.pt", "metrics.json"} <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["crack", "hole", "ok", "scratch"]
    assert metrics["epochs_run"] == 2 and len(metrics["history"]) == 2
    assert metrics["dataset_digest"].startswith("sha256:")
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert set(metrics["history"][0]) >= {"epoch", "train_loss", "val_accuracy", "lr"}
    loaded = load_checkpoint(trained_small.checkpoint)
    assert loaded.arch == "cnn-small" and loaded.meta["kwargs"] == {"width": 0.5}


def test_on_epoch_sees_metrics_and_its_exception_propagates(small_parts: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, float]] = []

    class Prune(Exception):
        pass

    def on_epoch(epoch: int, metrics: dict) -> None:
        seen.append((epoch, metrics["val_accuracy"]))
        raise Prune

    with pytest.raises(Prune):
        train(TrainConfig(epochs=3, **FAST), small_parts, tmp_path, on_epoch=on_epoch, progress=False)
    assert len(seen) == 1 and seen[0][0] == 1


def test_early_stopping_stops_before_the_last_epoch(small_parts: Path, tmp_path: Path) -> None:
    # lr ~ 0 means validation accuracy never improves after epoch 1.
    config = TrainConfig(epochs=6, lr=1e-9, schedule="none", early_stopping_patience=1, augment=False, **FAST)
    result = train(config, small_parts, tmp_path, progress=False)
    assert len(result.history) == 2


def test_config_rejects_unknown_and_invalid_keys() -> None:
    with pytest.raises(ValidationError, match="extra"):
        TrainConfig(epoch=3)
    with pytest.raises(ValidationError):
        TrainConfig(optimizer="lion")


def test_cuda_without_gpu_is_a_clear_error(small_parts: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        train(TrainConfig(epochs=1, **{**FAST, "device": "cuda"}), small_parts, tmp_path, progress=False)


def test_fine_tune_new_classes_with_frozen_backbone(trained_small: TrainedRun, tmp_path: Path) -> None:
    three = Path(shutil.copytree(trained_small.data_dir, tmp_path / "three"))
    for split in ("train", "val", "test"):
        shutil.rmtree(three / split / "crack")
    config = TrainConfig(epochs=1, init_checkpoint=trained_small.checkpoint, freeze_backbone=True, **FAST)
    result = train(config, three, tmp_path / "out", progress=False)
    assert result.classes == ["hole", "ok", "scratch"]
    assert result.model.classifier.out_features == 3
    start = load_checkpoint(trained_small.checkpoint).model.state_dict()
    tuned = result.model.state_dict()
    backbone = [name for name in start if name.startswith("features.")]
    assert backbone and all(torch.equal(start[name], tuned[name]) for name in backbone)


def test_fine_tune_from_other_arch_is_refused(trained_small: TrainedRun, tmp_path: Path) -> None:
    config = TrainConfig(epochs=1, init_checkpoint=trained_small.checkpoint,
                         **{**FAST, "arch": "resnet-tiny", "width": 1.0})
    with pytest.raises(ModelError, match="holds a 'cnn-small' model"):
        train(config, trained_small.data_dir, tmp_path, progress=False)
