"""The detection side of `edgewise train`, `export` and `evaluate`: chosen by the data (a split
with `annotations.json`), the checkpoint (a detector's) or the card (`task: detect`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from edgewise.core.errors import ConfigError
from edgewise.core.validation import describe_validation


def is_detection_data(data: Path) -> bool:
    return any((Path(data) / split / "annotations.json").is_file() for split in ("train", "val", "test"))


def is_detector_checkpoint(path: Path) -> bool:
    import torch

    from edgewise.studio.detect.train import CHECKPOINT_FORMAT

    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception:  # not ours to judge here: the classifier loader names the problem
        return False
    return isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT


def train_detector_command(data: Path, out: Path, options: dict[str, Any], progress: bool) -> None:
    from pydantic import ValidationError

    from edgewise.studio.detect.model import DETECTORS
    from edgewise.studio.detect.train import DetectTrainConfig, train_detector

    DETECTORS.get(options.get("arch") or "detector-nano")
    chosen = {key: value for key, value in options.items() if value is not None}
    try:
        config = DetectTrainConfig(**chosen)
    except ValidationError as error:
        raise ConfigError(f"invalid option {describe_validation(error, first_only=True)}") from None
    result = train_detector(config, data, out, progress=progress)
    test = result.test
    typer.echo(f"best val mAP@[.5:.95] {result.val.map:.4f}, mAP@.5 {result.val.map50:.4f}"
               + (f"; test mAP@[.5:.95] {test.map:.4f}, mAP@.5 {test.map50:.4f}" if test else "")
               + f" after {len(result.history)} epochs in {result.seconds / 60:.1f} min")
    typer.echo(f"checkpoint {result.checkpoint_path}; metrics {out / 'metrics.json'}")


def export_detector_command(checkpoint: Path, out: Path, form: str) -> None:
    from edgewise.studio.detect.export import export_detector
    from edgewise.studio.detect.train import load_detector

    if form not in ("nms", "raw"):
        raise ConfigError(f"unknown --form {form!r}", "use nms (NMS in the graph) or raw (decode on the host)")
    model, _, labels, spec, _ = load_detector(checkpoint)
    result = export_detector(model, spec, labels, out, form=form)  # type: ignore[arg-type]
    typer.echo(f"wrote {result.path} ({result.path.stat().st_size} bytes, {form} form) and its card "
               f"{result.card_path}; ONNX Runtime vs torch max diff {result.max_abs_diff:.2e}")


def print_detection_metrics(metrics: Any, split: str, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(metrics.as_dict(), indent=2))
        return
    typer.echo(f"mAP@[.5:.95] {metrics.map:.4f}  mAP@.5 {metrics.map50:.4f}  mAP@.75 {metrics.map75:.4f}  "
               f"AR@100 {metrics.ar100:.4f} on {metrics.images} {split} images ({metrics.boxes} boxes)")
    width = max(len(name) for name in metrics.per_class_ap)
    typer.echo(f"  {'class':{width}s}  AP@[.5:.95]  AP@.5")
    for name, ap in metrics.per_class_ap.items():
        typer.echo(f"  {name:{width}s}  {ap:11.4f}  {metrics.per_class_ap50[name]:.4f}")


def evaluate_detector_command(model: Path, data: Path, split: str, card_path: Path | None, as_json: bool) -> None:
    from edgewise.core.model_card import card_beside, load_card
    from edgewise.studio.detect.formats.coco import read_native

    splits = read_native(data)
    if split not in splits:
        raise ConfigError(f"{data} has no {split}/ split", f"use --split with one of: {', '.join(splits)}")
    if model.suffix == ".onnx":
        from edgewise.studio.detect.evaluate import evaluate_detector_onnx

        card_file = card_path or card_beside(model)
        if not card_file.is_file():
            raise ConfigError(f"{model} has no model card", f"write {card_file} (see docs/bring-your-own-model.md)")
        metrics = evaluate_detector_onnx(model, load_card(card_file), splits[split])
    else:
        from edgewise.studio.detect.data import FittedFrames
        from edgewise.studio.detect.predict import evaluate_fitted
        from edgewise.studio.detect.train import load_detector

        detector, _, _, spec, _ = load_detector(model)
        metrics = evaluate_fitted(detector, FittedFrames(splits[split], spec))
    print_detection_metrics(metrics, split, as_json)


def compress_detector_command(checkpoint: Path, data: Path, target: str, recipe: str, out: Path,
                              max_drop: float | None, latency_runs: int) -> None:
    from edgewise.studio.detect.compress_run import compress_detector

    reports = compress_detector(checkpoint, data, target, recipe, out, max_drop=max_drop, latency_runs=latency_runs)
    reference = reports[0]
    typer.echo(f"{'variant':<16} {'form':<5} {'size KiB':>9} {'x smaller':>9} {'val mAP':>8} {'test mAP':>8} "
               f"{'mAP@.5':>7} {'latency ms':>10}")
    for report in reports:
        test = f"{report.test_map:8.4f}" if report.test_map is not None else f"{'-':>8}"
        test50 = f"{report.test_map50:7.4f}" if report.test_map50 is not None else f"{'-':>7}"
        typer.echo(f"{report.name:<16} {report.form:<5} {report.size_bytes / 1024:9.1f} "
                   f"{reference.size_bytes / report.size_bytes:9.2f} {report.val_map:8.4f} {test} {test50} "
                   f"{report.host_latency_ms:10.2f}")
        for note in report.notes:
            typer.echo(f"  {note}")
    typer.echo(f"variants in {out / 'steps'}; report {out / 'report.json'}; bundle one with "
               f"`edgewise bundle create --onnx {out}/steps/02-{recipe}-int8/model.onnx ...`")
