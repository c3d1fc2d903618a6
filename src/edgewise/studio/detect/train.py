"""Training a zoo detector on a dataset in the native layout (COCO per split).

`train_detector(config, data_dir, out_dir)` writes `best.pt` (best validation mAP@[.5:.95], of
the weights' moving average, which is what detectors are evaluated and shipped with) and
`metrics.json`, and returns the best model with its validation and test metrics. The input is
fitted by the card's letterbox, so frames of any size train and serve the same way.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from tqdm.auto import tqdm

from edgewise.core.errors import ConfigError, DatasetError, ModelError
from edgewise.core.manifest import InputSpec
from edgewise.studio.datasets import dataset_digest
from edgewise.studio.detect.annotations import DetectionSet
from edgewise.studio.detect.data import Augment, FittedFrames, collate
from edgewise.studio.detect.loss import detection_loss
from edgewise.studio.detect.metrics import DetectionMetrics
from edgewise.studio.detect.model import Detector, create_detector, points
from edgewise.studio.detect.predict import evaluate_fitted
from edgewise.studio.device import set_threads

EpochCallback = Callable[[int, dict[str, Any]], None]
CHECKPOINT_FORMAT = "edgewise-detector"


class DetectTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arch: str = "detector-nano"
    epochs: int = Field(16, ge=1, le=1000)
    batch_size: int = Field(32, ge=1, le=1024)
    lr: float = Field(3e-3, gt=0, le=1)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(100, ge=0)
    input_size: tuple[int, int] = (192, 256)  # height, width; multiples of 32
    mosaic: float = Field(0.5, ge=0, le=1)
    plain_last_epochs: int = Field(3, ge=0, description="the last N epochs without mosaic")
    augment: bool = True
    ema_decay: float = Field(0.998, ge=0, lt=1)
    eval_every: int = Field(2, ge=1)
    seed: int = 0
    num_threads: int | None = Field(None, ge=1)
    init_checkpoint: Path | None = Field(None, description="start from this detector checkpoint (same classes)")
    allow_bad_annotations: bool = Field(False, description="train although `data check` finds broken boxes")


def input_spec(size: tuple[int, int]) -> InputSpec:
    """The card of every zoo detector: letterboxed (grey 114, as YOLO pads), RGB, scaled to [-1, 1]."""
    height, width = size
    if height % 32 or width % 32:
        raise ConfigError(f"input size {height}x{width} is not a multiple of 32",
                          "use sides that are multiples of 32, e.g. 192x256 or 320x320")
    return InputSpec(shape=[1, 3, height, width], resize=[height, width], resize_mode="letterbox", pad_value=114,
                     mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])


@dataclass
class DetectTrainResult:
    model: Detector
    labels: list[str]
    spec: InputSpec
    val: DetectionMetrics
    test: DetectionMetrics | None
    history: list[dict[str, Any]]
    checkpoint_path: Path
    seconds: float


class WeightAverage:
    """Exponential moving average of the weights (YOLOv5/YOLOX's ModelEMA), warmed up so the
    first updates are not averaged with the random start."""

    def __init__(self, model: nn.Module, decay: float, tau: float = 200.0) -> None:
        self.model = copy.deepcopy(model).eval()
        self.decay, self.tau, self.updates = decay, tau, 0
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = self.decay * (1 - math.exp(-self.updates / self.tau))
        current = model.state_dict()
        for name, value in self.model.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(decay).add_(current[name].detach(), alpha=1 - decay)
            else:
                value.copy_(current[name])


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decayed = [p for n, p in model.named_parameters() if p.ndim > 1]
    plain = [p for n, p in model.named_parameters() if p.ndim <= 1]  # biases and norms are not decayed
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def save_detector(path: Path, model: Detector, arch: str, labels: list[str], spec: InputSpec,
                  meta: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": CHECKPOINT_FORMAT, "arch": arch, "labels": labels, "input": spec.model_dump(),
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "meta": meta}, path)
    return path


def load_detector(path: Path) -> tuple[Detector, str, list[str], InputSpec, dict[str, Any]]:
    """(model in eval mode, arch, labels, input spec, meta) of a `train_detector` checkpoint."""
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as error:
        raise ModelError(f"cannot read detector checkpoint {path}: {error}", "point at OUT/best.pt") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{path} is not a detector checkpoint", "train one with `edgewise train --task detect`")
    model = create_detector(payload["arch"], len(payload["labels"]))
    model.load_state_dict(payload["state_dict"])
    return model.eval(), payload["arch"], list(payload["labels"]), InputSpec(**payload["input"]), payload["meta"]


def refuse_broken(data_dir: Path, splits: dict[str, DetectionSet]) -> None:
    """Broken annotations (boxes outside the image, empty boxes, duplicates, missing images) teach
    a detector wrong things quietly: training stops and says which, unless told otherwise."""
    from edgewise.studio.detect.check import check_splits

    report = check_splits(splits)
    if not report.ok:
        found = ", ".join(f"{kind} {count}" for kind, count in report.error_counts().items())
        raise DatasetError(f"{data_dir} has broken annotations: {found}",
                           f"see `edgewise data check {data_dir}`; fix them, train on a cleaned copy "
                           f"(`edgewise data check {data_dir} --clean OUT`), or pass --allow-bad-annotations")


def train_detector(config: DetectTrainConfig, data_dir: Path, out_dir: Path, *, on_epoch: EpochCallback | None = None,
                   progress: bool = True) -> DetectTrainResult:
    from edgewise.studio.detect.formats.coco import read_native

    started = time.perf_counter()
    set_threads(config.num_threads)
    torch.manual_seed(config.seed)
    splits = read_native(Path(data_dir))
    for needed in ("train", "val"):
        if needed not in splits:
            raise DatasetError(f"{data_dir} has no {needed}/ split", "add train/ and val/ (see docs/detection-data.md)")
    if not config.allow_bad_annotations:
        refuse_broken(Path(data_dir), splits)
    labels = splits["train"].labels
    spec = input_spec(config.input_size)
    train_frames = FittedFrames(splits["train"], spec)
    val_frames = FittedFrames(splits["val"], spec)
    if splits["train"].box_count == 0:
        raise DatasetError(f"{data_dir}/train has no boxes",
                           "annotate some objects (`edgewise data check` counts them)")
    model = create_detector(config.arch, len(labels))
    if config.init_checkpoint is not None:
        start, arch, start_labels, _, _ = load_detector(config.init_checkpoint)
        if arch != config.arch or start_labels != labels:
            raise ConfigError(f"{config.init_checkpoint} is a {arch} for {start_labels}, not a {config.arch} for "
                              f"{labels}", "start from a checkpoint of the same architecture and classes")
        model.load_state_dict(start.state_dict())
    meta = {"dataset_digest": dataset_digest(Path(data_dir)), "config": config.model_dump(mode="json"),
            "task": "detect"}
    best_path = Path(out_dir) / "best.pt"

    def keep(best: Detector, epoch: int) -> None:
        save_detector(best_path, best, config.arch, labels, spec, {**meta, "epoch": epoch})

    _, history = fit_detector(model, train_frames, val_frames, config, on_best=keep, on_epoch=on_epoch,
                              progress=progress)
    out_dir = Path(out_dir)
    best, _, _, _, _ = load_detector(best_path)
    val = evaluate_fitted(best, val_frames)
    test = evaluate_fitted(best, FittedFrames(splits["test"], spec)) if "test" in splits else None
    seconds = time.perf_counter() - started
    summary = {"arch": config.arch, "labels": labels, "val": val.as_dict(), "test": test.as_dict() if test else None,
               "history": history, "seconds": round(seconds, 1)}
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    return DetectTrainResult(best, labels, spec, val, test, history, best_path, seconds)


def fit_detector(model: Detector, train_frames: FittedFrames, val_frames: FittedFrames, config: DetectTrainConfig, *,
                 on_best: Callable[[Detector, int], None] | None = None, on_epoch: EpochCallback | None = None,
                 progress: bool = True, loss_fn: Callable[..., Any] | None = None
                 ) -> tuple[Detector, list[dict[str, Any]]]:
    """Train `model` in place for `config.epochs`; returns (the best weight average by val
    mAP@[.5:.95], the history). Used by training, pruning's fine-tune and distillation
    (`loss_fn(raw, inputs, centres, strides, boxes, classes, valid)` replaces the loss)."""
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    centres, strides = points(train_frames.height, train_frames.width)
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr)
    steps_per_epoch = max(1, len(train_frames) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs

    def warm_cosine(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
        return warm * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warm_cosine)
    # A short run (a test's, a fine-tune's) warms the average up faster, or it would still be
    # mostly the starting weights when the run ends.
    average = WeightAverage(model, config.ema_decay, tau=min(200.0, max(10.0, total_steps / 10)))
    best_map, best_state, history = -1.0, copy.deepcopy(average.model.state_dict()), []
    bar = tqdm(total=total_steps, desc=f"train {config.arch}", disable=not progress, unit="step")
    for epoch in range(1, config.epochs + 1):
        model.train()
        plain_phase = epoch > config.epochs - config.plain_last_epochs
        augment = Augment(mosaic=0.0 if plain_phase else config.mosaic, enabled=config.augment)
        order = rng.permutation(len(train_frames))
        sums: dict[str, float] = {"loss": 0.0, "class_loss": 0.0, "box_loss": 0.0}
        for step in range(steps_per_epoch):
            batch = [train_frames.sample(int(i), rng, augment)
                     for i in order[step * config.batch_size:(step + 1) * config.batch_size]]
            inputs, boxes, classes, valid = collate(batch, train_frames.preprocess)
            if loss_fn is None:
                loss, parts = detection_loss(model(inputs), centres, strides, boxes, classes, valid)
            else:
                loss, parts = loss_fn(model(inputs), inputs, centres, strides, boxes, classes, valid)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            schedule.step()
            average.update(model)
            sums["loss"] += float(loss.detach())
            sums["class_loss"] += parts["class_loss"]
            sums["box_loss"] += parts["box_loss"]
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{float(loss.detach()):.3f}")
        record: dict[str, Any] = {"epoch": epoch, **{k: v / steps_per_epoch for k, v in sums.items()},
                                  "seconds": round(time.perf_counter() - started, 1)}
        if epoch % config.eval_every == 0 or epoch == config.epochs:
            metrics = evaluate_fitted(average.model, val_frames)
            record.update(val_map=metrics.map, val_map50=metrics.map50)
            if metrics.map > best_map:
                best_map = metrics.map
                best_state = copy.deepcopy(average.model.state_dict())
                if on_best is not None:
                    on_best(average.model, epoch)
        history.append(record)
        if on_epoch is not None:
            on_epoch(epoch, record)
    bar.close()
    average.model.load_state_dict(best_state)
    return average.model, history
