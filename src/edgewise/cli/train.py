"""`edgewise train`, `export`, `bench`, `evaluate`: the studio's first path, as thin commands."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgewise.core.errors import ConfigError
from edgewise.core.validation import describe_validation


def train_command(
    data: Path | None = typer.Option(None, "--data", help="image folder with train/ val/ test/, or a detection "
                                     "dataset (train/annotations.json, COCO): then a detector is trained"),
    arch: str | None = typer.Option(None, "--arch", help="zoo architecture (see --list-archs; default cnn-small, "
                                    "detector-nano for detection data)"),
    epochs: int | None = typer.Option(None, "--epochs", help="default 15 (detection 16)"),
    batch_size: int | None = typer.Option(None, "--batch-size", help="default 64 (detection 32)"),
    lr: float | None = typer.Option(None, "--lr", help="learning rate (default 3e-3)"),
    optimizer: str = typer.Option("adamw", "--optimizer", help="sgd or adamw"),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine, step or none"),
    weight_decay: float = typer.Option(1e-4, "--weight-decay"),
    label_smoothing: float = typer.Option(0.0, "--label-smoothing"),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="random shifts and lighting"),
    patience: int | None = typer.Option(None, "--early-stopping", help="stop after N epochs without improvement"),
    init: Path | None = typer.Option(None, "--init", help="start from this checkpoint (fine-tuning)"),
    freeze_backbone: bool = typer.Option(False, "--freeze-backbone", help="train only the (new) head"),
    weights: Path | None = typer.Option(None, "--weights", help="pretrained weights on disk: a state dict "
                                        "(.pt/.pth; torchvision/timm layouts too) or .safetensors; new head"),
    freeze_stages: int | None = typer.Option(None, "--freeze-stages", help="freeze the first N backbone blocks"),
    backbone_lr_scale: float = typer.Option(1.0, "--backbone-lr-scale", help="backbone lr = --lr x this (e.g. 0.1)"),
    image_size: int = typer.Option(32, "--image-size"),
    input_size: str | None = typer.Option(None, "--input-size", help="detection: HxW of the model input "
                                          "(multiples of 32; default 192x256); frames are letterboxed to it"),
    mosaic: float | None = typer.Option(None, "--mosaic", help="detection: share of mosaic samples (default 0.5)"),
    allow_bad_annotations: bool = typer.Option(False, "--allow-bad-annotations",
                                               help="detection: train although `edgewise data check` finds problems"),
    width: float = typer.Option(1.0, "--width", help="width multiplier of the architecture"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda"),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for torch"),
    out: Path = typer.Option(Path("runs/train"), "--out", help="output folder for best.pt, last.pt, metrics.json"),
    list_archs: bool = typer.Option(False, "--list-archs", help="list the architectures and exit"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train or fine-tune a zoo model on an image folder; writes OUT/best.pt, last.pt, metrics.json."""
    from pydantic import ValidationError

    from edgewise.cli.detect import is_detection_data, train_detector_command
    from edgewise.studio.detect.model import DETECTORS
    from edgewise.studio.train import TrainConfig, train
    from edgewise.studio.zoo import ARCHS

    if list_archs:
        for entry in [*ARCHS, *DETECTORS]:
            typer.echo(f"{entry.name:22s} {entry.summary}")
        return
    if data is None:
        raise ConfigError("--data is required", "pass --data DIR (write one with `edgewise data sample parts DIR`)")
    if is_detection_data(data):
        options = {"arch": arch, "epochs": epochs, "batch_size": batch_size, "lr": lr, "augment": augment,
                   "input_size": parse_size(input_size) if input_size else None, "mosaic": mosaic, "seed": seed,
                   "num_threads": threads, "init_checkpoint": init, "allow_bad_annotations": allow_bad_annotations}
        return train_detector_command(data, out, options, progress)
    arch, epochs, batch_size, lr = arch or "cnn-small", epochs or 15, batch_size or 64, lr or 3e-3
    ARCHS.get(arch)  # an unknown architecture fails before any data is read
    try:
        config = TrainConfig(
            arch=arch, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, schedule=schedule,
            weight_decay=weight_decay, label_smoothing=label_smoothing, augment=augment,
            early_stopping_patience=patience, freeze_backbone=freeze_backbone, init_checkpoint=init, weights=weights,
            freeze_stages=freeze_stages, backbone_lr_scale=backbone_lr_scale,
            image_size=image_size, width=width, seed=seed, device=device, num_threads=threads,
        )
    except ValidationError as error:
        raise ConfigError(f"invalid option {describe_validation(error, first_only=True)}") from None
    result = train(config, data, out, progress=progress)
    typer.echo(f"best val accuracy {result.best_val_accuracy:.4f}, test accuracy {result.test_accuracy:.4f} "
               f"after {len(result.history)} epochs")
    typer.echo(f"checkpoint {result.checkpoint_path}; metrics {out / 'metrics.json'}")


def export_command(
    checkpoint: Path = typer.Argument(..., help="checkpoint (OUT/best.pt, a state dict with --arch, TorchScript)"),
    out: Path = typer.Option(..., "--out", help="ONNX file to write"),
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="leave the batch dimension free"),
    opset: int | None = typer.Option(None, "--opset"),
    arch: str | None = typer.Option(None, "--arch", help="architecture of a plain state dict"),
    num_classes: int | None = typer.Option(None, "--num-classes", help="classes of a plain state dict"),
    image_size: int | None = typer.Option(None, "--image-size", help="input size (default: the checkpoint's)"),
    form: str = typer.Option("nms", "--form", help="detectors: nms (NMS in the graph, for CPU/GPU runtimes) or "
                             "raw (boxes and scores; NMS on the host, for Edge TPU / NPUs)"),
) -> None:
    """Export a checkpoint to a single ONNX file, verified against torch in ONNX Runtime."""
    from edgewise.cli.detect import export_detector_command, is_detector_checkpoint

    if is_detector_checkpoint(checkpoint):
        return export_detector_command(checkpoint, out, form)
    from edgewise.studio.checkpoints import load_checkpoint
    from edgewise.studio.export import export_onnx

    loaded = load_checkpoint(checkpoint, arch=arch, num_classes=num_classes)
    size = image_size or loaded.image_size or 32
    anonymous = loaded.meta.get("source") in {"state_dict", "torchscript"}
    result = export_onnx(loaded.model, out, image_size=size, dynamic_batch=dynamic_batch, opset=opset,
                         classes=None if anonymous else loaded.classes)
    typer.echo(f"wrote {result.path} ({result.path.stat().st_size} bytes); ONNX Runtime vs torch max abs diff "
               f"{result.max_abs_diff:.2e} (tolerance {result.tolerance:g})")


def bench_command(
    model: Path = typer.Argument(..., help="ONNX model"),
    threads: int = typer.Option(1, "--threads"),
    batch: int = typer.Option(1, "--batch"),
    warmup: int = typer.Option(10, "--warmup"),
    runs: int = typer.Option(50, "--runs"),
    card: Path | None = typer.Option(None, "--card", help="model card: its input shape fills dynamic dimensions "
                                     "(default: MODEL.card.yaml beside the model, when there is one)"),
    input_size: str | None = typer.Option(None, "--input-size", help="HxW for a model with dynamic height and width"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Measure latency (p50/p95/p99) and throughput on this host; report params, MACs, size."""
    from dataclasses import asdict

    from edgewise.core.model_card import card_beside, load_card
    from edgewise.studio.bench import benchmark_onnx
    from edgewise.studio.cards import fixed_input_shape

    card_path = card or (card_beside(model) if card_beside(model).is_file() and input_size is None else None)
    shape = fixed_input_shape(load_card(card_path)) if card_path is not None else None
    result = benchmark_onnx(model, threads=threads, batch=batch, warmup=warmup, runs=runs, input_shape=shape,
                            input_size=parse_size(input_size) if input_size else None)
    if as_json:
        typer.echo(json.dumps(asdict(result), indent=2))
        return
    typer.echo(f"{model}: threads {threads}, batch {batch}, {runs} runs" + (f", card {card_path}" if card_path else ""))
    typer.echo(f"  latency ms  p50 {result.p50_ms:.3f}  p95 {result.p95_ms:.3f}  p99 {result.p99_ms:.3f}  "
               f"mean {result.mean_ms:.3f}")
    typer.echo(f"  throughput  {result.throughput_fps:.1f} images/s")
    typer.echo(f"  params {result.params:,}  MACs {result.macs:,}  file {result.file_size_bytes:,} bytes")


def evaluate_command(
    model: Path = typer.Argument(..., help="checkpoint or .onnx file"),
    data: Path = typer.Argument(..., help="image folder"),
    split: str = typer.Option("test", "--split"),
    image_size: int | None = typer.Option(None, "--image-size", help="input size of a checkpoint that does not "
                                          "record it (an ONNX model's is on its card)"),
    arch: str | None = typer.Option(None, "--arch", help="architecture of a plain state dict"),
    card: Path | None = typer.Option(None, "--card", help="model card of an ONNX model (default: MODEL.card.yaml "
                                     "beside it, or the one an edgewise export recorded)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Accuracy, per-class precision/recall and the confusion matrix on one split; for a detector,
    COCO mAP@[.5:.95], mAP@.5, mAP@.75, AR@100 and per-class AP."""
    from edgewise.cli.detect import evaluate_detector_command, is_detection_data
    from edgewise.studio.evaluate import evaluate

    if is_detection_data(data):
        return evaluate_detector_command(model, data, split, card, as_json)

    result = evaluate(model, data, split=split, image_size=image_size, arch=arch, card_path=card)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    typer.echo(f"accuracy {result.accuracy:.4f} on {result.num_samples} {split} images")
    width = max(len(c) for c in result.classes)
    typer.echo(f"  {'class':{width}s}  precision  recall")
    for name in result.classes:
        typer.echo(f"  {name:{width}s}  {result.precision[name]:9.3f}  {result.recall[name]:6.3f}")
    typer.echo("  confusion (rows true, columns predicted):")
    for name, row in zip(result.classes, result.confusion, strict=True):
        typer.echo(f"  {name:{width}s}  " + " ".join(f"{v:4d}" for v in row))


def parse_size(text: str) -> tuple[int, int]:
    """`48x192` -> (48, 192)."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"bad size {text!r}", "write HEIGHTxWIDTH, e.g. 224x224 or 48x192")
    return int(parts[0]), int(parts[1])


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("export")(export_command)
    app.command("bench")(bench_command)
    app.command("evaluate")(evaluate_command)
