"""`edgewise inspect MODEL.onnx`: what the file says, and a proposed model card for the rest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from edgewise.core.errors import ConfigError


def _floats(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"bad {what} {text!r}", "write numbers separated by commas, e.g. 0.485,0.456,0.406") from None


def inspect_command(
    model: Path = typer.Argument(..., help="an ONNX model file"),
    out: Path | None = typer.Option(None, "--out", help="write the proposed card here (e.g. MODEL.card.yaml)"),
    color_order: str | None = typer.Option(None, "--color-order", help="RGB, BGR or GRAY"),
    size: str | None = typer.Option(None, "--size", help="HxW the model runs at (needed for dynamic height/width)"),
    resize_mode: str | None = typer.Option(None, "--resize-mode", help="stretch, letterbox or center-crop"),
    pad_value: int | None = typer.Option(None, "--pad-value", help="letterbox padding value 0-255"),
    crop_fraction: float | None = typer.Option(None, "--crop-fraction", help="center-crop share (timm's crop_pct)"),
    scale: float | None = typer.Option(None, "--scale", help="pixel multiplier before mean/std, e.g. 0.003921568627"),
    mean: str | None = typer.Option(None, "--mean", help="per-channel mean, e.g. 0.485,0.456,0.406"),
    std: str | None = typer.Option(None, "--std", help="per-channel std, e.g. 0.229,0.224,0.225"),
    decode: str | None = typer.Option(None, "--decode", help="logits, probabilities or sigmoid (default: the graph's)"),
    labels: str | None = typer.Option(None, "--labels", help="class names in output order, comma separated"),
    as_json: bool = typer.Option(False, "--json", help="print the inspection as JSON"),
) -> None:
    """Read an ONNX file (inputs, outputs, opset, dynamic dimensions, softmax in the graph) and
    propose a model card; what the file cannot say stays null until you give it."""
    from edgewise.cli.train import parse_size
    from edgewise.core.model_card import card_from_dict, dump_card
    from edgewise.studio.cards import inspect_onnx

    given_input: dict[str, Any] = {"color_order": color_order, "resize_mode": resize_mode, "pad_value": pad_value,
                                   "crop_fraction": crop_fraction, "scale": scale, "mean": _floats(mean, "--mean"),
                                   "std": _floats(std, "--std")}
    if size is not None:
        given_input["resize"] = list(parse_size(size))
    given = {"input": given_input, "output": {"decode": decode},
             "labels": [v.strip() for v in labels.split(",")] if labels else None}
    found = inspect_onnx(model, given)
    if as_json:
        typer.echo(json.dumps({"path": str(found.path), "opset": found.opset, "last_op": found.last_op,
                               "inputs": [vars(t) for t in found.inputs], "outputs": [vars(t) for t in found.outputs],
                               "card": found.proposal, "undecided": found.undecided, "notes": found.notes}, indent=2))
    else:
        _print(found)
    if out is not None:
        if not found.undecided:
            card_from_dict(found.proposal, "the proposed card")  # a complete card must also be a valid one
        out.write_text(dump_card(found.proposal), encoding="utf-8")
        state = f"fill in {', '.join(found.undecided)} before use" if found.undecided else "complete"
        typer.echo(f"wrote {out} ({state})", err=as_json)


def _print(found: Any) -> None:
    from edgewise.core.model_card import dump_card

    typer.echo(f"{found.path}: opset {found.opset}")
    for kind, tensors in (("input", found.inputs), ("output", found.outputs)):
        for tensor in tensors:
            dynamic = ", ".join(str(tensor.shape[i]) for i in tensor.dynamic)
            typer.echo(f"  {kind:6s} {tensor.name}: {tensor.dtype} {tensor.shape}"
                       + (f"  dynamic: {dynamic}" if dynamic else ""))
    endings = {"Softmax": "a Softmax (its outputs are probabilities)", "Sigmoid": "a Sigmoid"}
    ending = endings.get(found.last_op) or f"{found.last_op or 'an op not recognised'} (outputs read as logits)"
    typer.echo(f"  the graph ends in {ending}")
    for note in found.notes:
        typer.echo(f"  note: {note}")
    typer.echo("proposed card:")
    typer.echo("  " + dump_card(found.proposal).rstrip().replace("\n", "\n  "))
    if found.undecided:
        typer.echo("could not decide (the file does not say; give them as options or edit the card): "
                   + ", ".join(found.undecided))


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_command)
