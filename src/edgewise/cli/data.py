"""`edgewise data sample NAME DIR`: write a bundled sample dataset as an image folder."""

from __future__ import annotations

from pathlib import Path

import typer

from edgewise.cli.output import JSON_OUT, print_json

data_app = typer.Typer(help="Sample datasets and dataset utilities.", no_args_is_help=True)


@data_app.command("sample")
def sample(
    name: str = typer.Argument(..., help="sample dataset: digits or parts"),
    out_dir: Path = typer.Argument(..., help="folder to write (train/ val/ test/ with one folder per class)"),
    size: int | None = typer.Option(None, "--size", help="number of images in all (default: the sample's own)"),
    seed: int = typer.Option(0, "--seed", help="random seed; the same seed writes the same files"),
    image_size: int = typer.Option(32, "--image-size", help="side of the square images in pixels"),
) -> None:
    """Write sample dataset NAME into DIR as PNG files."""
    from rich.progress import Progress

    from edgewise.studio.datasets import dataset_digest
    from edgewise.studio.samples import write_sample

    with Progress(transient=True, console=_stderr_console()) as progress:
        task = progress.add_task(f"writing {name}", total=None)
        written = write_sample(name, out_dir, size=size, seed=seed, image_size=image_size,
                               on_image=lambda done, total: progress.update(task, completed=done, total=total))
    counts = {split: sum(1 for _ in (written / split).rglob("*.png")) for split in ("train", "val", "test")}
    typer.echo(f"wrote {name} to {written}: " + ", ".join(f"{split} {n}" for split, n in counts.items()))
    typer.echo(f"digest {dataset_digest(written)}")


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


@data_app.command("list")
def list_samples(as_json: bool = JSON_OUT) -> None:
    """List the bundled sample datasets."""
    from edgewise.studio.samples import SAMPLES

    if as_json:
        return print_json([{"name": entry.name, "summary": entry.summary} for entry in SAMPLES])
    for entry in SAMPLES:
        typer.echo(f"{entry.name:10s} {entry.summary}")


@data_app.command("digest")
def digest(data_dir: Path = typer.Argument(..., help="dataset folder")) -> None:
    """Print the dataset digest recorded in bundles' lineage."""
    from edgewise.studio.datasets import dataset_digest

    typer.echo(dataset_digest(data_dir))


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
