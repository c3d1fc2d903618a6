"""Training and fine-tuning a zoo model on an image folder.

`train(config, data_dir, out_dir)` writes `best.pt` (best validation accuracy), `last.pt` and
`metrics.json`, and returns the best model. `on_epoch(epoch, metrics)` is called after every
epoch; whatever it raises (e.g. an Optuna prune signal) propagates to the caller.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from edgewise.core.errors import ModelError
from edgewise.studio.checkpoints import HEAD_PREFIX, load_checkpoint, load_state_strict, save_checkpoint
from edgewise.studio.datasets import dataset_digest, load_splits
from edgewise.studio.device import resolve_device, set_threads
from edgewise.studio.zoo import create_model

EpochCallback = Callable[[int, dict[str, Any]], None]


class TrainConfig(BaseModel):
    """Every training option; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")

    arch: str = "cnn-small"
    epochs: int = Field(15, ge=1, le=1000)
    batch_size: int = Field(64, ge=1, le=4096)
    lr: float = Field(3e-3, gt=0, le=10)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    schedule: Literal["cosine", "step", "none"] = "cosine"
    weight_decay: float = Field(1e-4, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    augment: bool = True
    early_stopping_patience: int | None = Field(None, ge=1)
    freeze_backbone: bool = False
    init_checkpoint: Path | None = None
    weights: Path | None = Field(None, description="pretrained weights: a state dict (.pt/.pth, torchvision/timm "
                                 "layouts too) or .safetensors; the head is replaced for the data's classes")
    freeze_stages: int | None = Field(None, ge=0, description="freeze the first N blocks of the backbone")
    backbone_lr_scale: float = Field(1.0, gt=0, le=1, description="backbone learning rate = lr x this")
    image_size: int = Field(32, ge=8, le=1024)
    width: float = Field(1.0, ge=0.1, le=4.0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int | None = Field(None, ge=1)


@dataclass
class TrainResult:
    model: nn.Module
    classes: list[str]
    best_val_accuracy: float
    test_accuracy: float
    history: list[dict[str, Any]]
    checkpoint_path: Path


def train(config: TrainConfig, data_dir: Path, out_dir: Path, *, on_epoch: EpochCallback | None = None,
          progress: bool = True) -> TrainResult:
    """Train `config.arch` on `data_dir`, keep the best epoch by validation accuracy, test it."""
    started = time.perf_counter()
    set_threads(config.num_threads)
    _seed_everything(config.seed)
    device = resolve_device(config.device)
    splits = load_splits(Path(data_dir), config.image_size, config.batch_size, augment=config.augment,
                         seed=config.seed)
    model_kwargs = {"width": config.width}
    start = build_model(config, splits.classes, model_kwargs)
    model = start.model.to(device)
    optimizer = _optimizer(config, model)
    scheduler = _scheduler(config, optimizer)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    best_path, last_path = out_dir / "best.pt", out_dir / "last.pt"
    history: list[dict[str, Any]] = []
    best_val, best_val_loss, best_epoch, improved_epoch = -1.0, math.inf, 0, 0
    bar = tqdm(total=config.epochs * len(splits.train), desc=f"train {config.arch}", unit="batch",
               disable=not progress, leave=False)
    try:
        for epoch in range(1, config.epochs + 1):
            epoch_started = time.perf_counter()
            train_loss, train_acc = _train_epoch(model, splits.train, optimizer, loss_fn, device, config, bar,
                                                 start.frozen)
            val_loss, val_acc = run_epoch_eval(model, splits.val, loss_fn, device)
            metrics = {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc, "val_loss": val_loss,
                       "val_accuracy": val_acc, "lr": optimizer.param_groups[0]["lr"],
                       "seconds": round(time.perf_counter() - epoch_started, 3)}
            history.append(metrics)
            bar.set_postfix(epoch=epoch, loss=f"{train_loss:.3f}", val_acc=f"{val_acc:.3f}")
            if scheduler is not None:
                scheduler.step()
            meta = {"epoch": epoch, "val_accuracy": val_acc}
            if val_acc > best_val:
                improved_epoch = epoch  # early stopping counts only real accuracy gains
            # Ties in accuracy (common on small val sets) go to the lower validation loss.
            if val_acc > best_val or (val_acc == best_val and val_loss < best_val_loss):
                best_val, best_val_loss, best_epoch = val_acc, val_loss, epoch
                save_checkpoint(best_path, model, config.arch, splits.classes, config.image_size, meta,
                                model_kwargs=model_kwargs)
            save_checkpoint(last_path, model, config.arch, splits.classes, config.image_size, meta,
                            model_kwargs=model_kwargs)
            if on_epoch is not None:
                on_epoch(epoch, dict(metrics))
            patience = config.early_stopping_patience
            if patience is not None and epoch - improved_epoch >= patience:
                break
    finally:
        bar.close()
    best = load_checkpoint(best_path).model.to(device)
    _, test_acc = run_epoch_eval(best, splits.test, loss_fn, device)
    summary = {
        "config": json.loads(config.model_dump_json()), "classes": splits.classes, "best_epoch": best_epoch,
        "best_val_accuracy": best_val, "test_accuracy": test_acc, "epochs_run": len(history),
        "device": str(device), "seconds": round(time.perf_counter() - started, 2),
        "dataset_digest": dataset_digest(Path(data_dir)), "history": history,
        "pretrained": start.pretrained, "frozen_blocks": start.frozen,
    }
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    return TrainResult(best.cpu().eval(), splits.classes, best_val, test_acc, history, best_path)


@dataclass
class StartingPoint:
    model: nn.Module
    frozen: list[str]  # names of the frozen backbone blocks
    pretrained: str | None  # what was loaded from --weights, for metrics.json


def build_model(config: TrainConfig, classes: list[str], model_kwargs: dict[str, Any]) -> StartingPoint:
    """A fresh model, or one started from `init_checkpoint` (head kept when the classes are the same)
    or from pretrained `weights` (head always new), with the chosen blocks frozen."""
    model = create_model(config.arch, len(classes), **model_kwargs)
    pretrained = None
    if config.init_checkpoint is not None and config.weights is not None:
        raise ModelError("--init and --weights both given", "start from one: --init (an edgewise checkpoint) or "
                         "--weights (any pretrained state dict)")
    if config.init_checkpoint is not None:
        _load_init(model, config, classes)
    if config.weights is not None:
        from edgewise.studio.pretrained import load_pretrained

        found = load_pretrained(model, config.weights)
        pretrained = (f"{found.loaded} tensors from {Path(config.weights).name} ({found.renaming}); its head "
                      f"{found.head_dropped or '(none)'} replaced for {len(classes)} classes")
    frozen: list[str] = []
    if config.freeze_backbone or config.freeze_stages:
        from edgewise.studio.pretrained import freeze

        frozen = freeze(model, None if config.freeze_backbone else config.freeze_stages)
    return StartingPoint(model, frozen, pretrained)


def _load_init(model: nn.Module, config: TrainConfig, classes: list[str]) -> None:
    path = Path(config.init_checkpoint)  # type: ignore[arg-type]
    loaded = load_checkpoint(path, arch=config.arch)
    # Keep the head only when it was trained on the same classes; otherwise start a new one.
    anonymous = loaded.meta.get("source") in {"state_dict", "torchscript"}
    same_head = len(loaded.classes) == len(classes) and (loaded.classes == classes or anonymous)
    skip = () if same_head else (HEAD_PREFIX,)
    load_state_strict(model, loaded.model.state_dict(), config.arch, path, skip_prefixes=skip)


def _train_epoch(model: nn.Module, loader: DataLoader[Any], optimizer: torch.optim.Optimizer, loss_fn: nn.Module,
                 device: torch.device, config: TrainConfig, bar: tqdm, frozen: list[str]) -> tuple[float, float]:
    model.train()
    if frozen:
        from edgewise.studio.pretrained import frozen_blocks

        for block in frozen_blocks(model, frozen):
            block.eval()  # frozen BatchNorm statistics stay those of the checkpoint
    total_loss, correct, seen = 0.0, 0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad(set_to_none=True)
        logits = model(images)
        loss = loss_fn(logits, labels)
        if not math.isfinite(loss.item()):
            raise ModelError(f"training diverged (loss {loss.item()}) at lr {config.lr}", "lower --lr")
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(labels)
        correct += int((logits.argmax(1) == labels).sum())
        seen += len(labels)
        bar.update(1)
    return total_loss / seen, correct / seen


@torch.no_grad()
def run_epoch_eval(model: nn.Module, loader: DataLoader[Any], loss_fn: nn.Module,
                   device: torch.device) -> tuple[float, float]:
    """Mean loss and accuracy of `model` over `loader`."""
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        logits = model(images)
        total_loss += loss_fn(logits, labels).item() * len(labels)
        correct += int((logits.argmax(1) == labels).sum())
        seen += len(labels)
    return total_loss / max(seen, 1), correct / max(seen, 1)


def _optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Discriminative learning rates: the head at `lr`, the (pretrained) backbone at lr x backbone_lr_scale."""
    head = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith(HEAD_PREFIX)]
    body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(HEAD_PREFIX)]
    parameters: list[dict[str, Any]] = [{"params": head, "lr": config.lr}]
    if body:
        parameters.append({"params": body, "lr": config.lr * config.backbone_lr_scale})
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=0.9, nesterov=True,
                               weight_decay=config.weight_decay)
    return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)


def _scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, config.epochs // 3), gamma=0.1)
    return None


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
