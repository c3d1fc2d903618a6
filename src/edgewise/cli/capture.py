"""`edgewise capture export`: captured frames -> an image-folder dataset for `edgewise train --init`."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from edgewise.core.errors import ConfigError

capture_app = typer.Typer(help="Frames the agents captured for labelling.", no_args_is_help=True)


@capture_app.command("export")
def export(
    out: Path = typer.Option(..., "--out", help="folder to write (train/ val/ test/, one folder per label)"),
    server: str | None = typer.Option(None, "--server", help="fleet server URL to read captures from"),
    token: str | None = typer.Option(None, "--token", help="operator token (or EDGEWISE_TOKEN)"),
    source: Path | None = typer.Option(None, "--from", help="an agent data dir or its capture.sqlite3"),
    labels: str = typer.Option("predicted", "--labels", help="predicted (the model's label) or unlabelled"),
    min_confidence: float = typer.Option(0.0, "--min-confidence", help="below it a frame goes to unlabelled/"),
    val_share: float = typer.Option(0.15, "--val-share"),
    test_share: float = typer.Option(0.15, "--test-share"),
    min_per_class: int = typer.Option(3, "--min-per-class", help="smaller labels are folded into unlabelled/"),
    seed: int = typer.Option(0, "--seed", help="seed of the deterministic split"),
) -> None:
    """Write captured frames as an image-folder dataset; labels are suggestions for a human to review."""
    from edgewise.studio.capture_export import export_dataset, fetch_from_server, read_spool

    if (server is None) == (source is None):
        raise ConfigError("give exactly one of --server or --from", "e.g. --server http://fleet:8080 --token T")
    if labels not in ("predicted", "unlabelled"):
        raise ConfigError(f"--labels {labels!r} is not predicted or unlabelled")
    if server is not None:
        frames = fetch_from_server(server, token or os.environ.get("EDGEWISE_TOKEN", ""))
    else:
        frames = read_spool(source)  # type: ignore[arg-type]
    summary = export_dataset(frames, out, labels=labels, min_confidence=min_confidence,  # type: ignore[arg-type]
                             val_share=val_share, test_share=test_share, min_per_class=min_per_class, seed=seed)
    typer.echo(f"wrote {summary.written} of {summary.frames} frames to {out} ({summary.left_out} left out)")
    for split, counts in summary.counts.items():
        typer.echo(f"  {split:5s} " + ", ".join(f"{label} {n}" for label, n in counts.items()))
    typer.echo(f"note: {summary.note}")
    typer.echo(f"fine-tune: edgewise train --data {out} --init CKPT --epochs 5")


def register(app: typer.Typer) -> None:
    app.add_typer(capture_app, name="capture")
