"""`edgewise data ...`: sample datasets, dataset digests, and detection datasets' check and conversion."""

from __future__ import annotations

from pathlib import Path

import typer

from edgewise.cli.output import JSON_OUT, print_json, print_table

data_app = typer.Typer(help="Sample datasets and dataset utilities.", no_args_is_help=True)


@data_app.command("sample")
def sample(
    name: str = typer.Argument(..., help="sample dataset (see `edgewise data list`)"),
    out_dir: Path = typer.Argument(..., help="folder to write (train/ val/ test/ with one folder per class)"),
    size: int | None = typer.Option(None, "--size", help="number of images in all (default: the sample's own)"),
    seed: int = typer.Option(0, "--seed", help="random seed; the same seed writes the same files"),
    image_size: int | None = typer.Option(
        None, "--image-size", help="side of the square images in pixels (classification samples; default 32)"
    ),
) -> None:
    """Write sample dataset NAME into DIR as PNG files."""
    from rich.progress import Progress

    from edgewise.studio.datasets import dataset_digest
    from edgewise.studio.samples import VIDEO_SAMPLES, write_sample

    with Progress(transient=True, console=_stderr_console()) as progress:
        task = progress.add_task(f"writing {name}", total=None)
        written = write_sample(
            name,
            out_dir,
            size=size,
            seed=seed,
            image_size=image_size,
            on_image=lambda done, total: progress.update(task, completed=done, total=total),
        )
    if name in VIDEO_SAMPLES:  # a video and its ground truth: no PNGs to count
        from edgewise.studio.samples.traffic_video import summary

        typer.echo(f"wrote {name} to {written}: {summary(written)}")
    else:
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
        typer.echo(f"{entry.name:14s} {entry.summary}")


@data_app.command("digest")
def digest(data_dir: Path = typer.Argument(..., help="dataset folder")) -> None:
    """Print the dataset digest recorded in bundles' lineage."""
    from edgewise.studio.datasets import dataset_digest

    typer.echo(dataset_digest(data_dir))


CLEAN_HINT = "fix the files, or pass --clean OUT to write a cleaned copy to train on"


@data_app.command("check")
def check(
    data_dir: Path = typer.Argument(..., help="detection dataset: a folder, a COCO .json or a YOLO data.yaml"),
    data_format: str | None = typer.Option(None, "--format", help="coco, yolo or voc (default: told from the path)"),
    clean_out: Path | None = typer.Option(
        None, "--clean", help="write a cleaned copy here (native COCO layout): broken boxes clipped or dropped"
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Count a detection dataset's problems by kind, with example files; exit 1 if any is an error."""
    from edgewise.core.errors import DatasetError
    from edgewise.studio.detect.check import KIND_BY_NAME, check_splits, clean_splits
    from edgewise.studio.detect.formats import read_dataset, write_dataset

    splits = read_dataset(data_dir, data_format, strict=False)  # lenient: count what a strict read refuses
    report = check_splits(splits)
    if as_json:
        print_json(report.to_dict())
    else:
        rows = [
            [name, count, "error" if KIND_BY_NAME[name].is_error else "info", ", ".join(report.examples[name])]
            for name, count in report.counts.items()
        ]
        print_table(
            f"{data_dir}: {report.images} images, {report.boxes} boxes ({', '.join(splits)})",
            ["problem", "count", "kind", "examples"],
            rows,
        )
    if clean_out is not None:
        cleaned, changes = clean_splits(splits)
        write_dataset(cleaned, clean_out, "coco")
        summary = ", ".join(f"{name.replace('_', ' ')} {count}" for name, count in changes.items())
        typer.echo(f"wrote a cleaned copy to {clean_out}: {summary}", err=as_json)
    elif not report.ok:
        # An error, not typer.Exit(1): the entry point turns it into `error:` + `fix:` lines and exit code 1.
        found = ", ".join(f"{kind} {count}" for kind, count in report.error_counts().items())
        raise DatasetError(f"{data_dir} has problems: {found}", CLEAN_HINT)


@data_app.command("convert")
def convert(
    source: Path = typer.Argument(..., help="detection dataset: a folder, a COCO .json or a YOLO data.yaml"),
    out: Path = typer.Argument(..., help="new folder to write"),
    to: str = typer.Option(..., "--to", help="coco (the native layout), yolo or voc"),
    source_format: str | None = typer.Option(None, "--from", help="coco, yolo or voc (default: told from the path)"),
) -> None:
    """Convert a detection dataset between COCO, YOLO and Pascal VOC; images are hard-linked or copied."""
    from edgewise.core.errors import ConfigError
    from edgewise.studio.detect.formats import FORMATS, not_kept_by, read_dataset, write_dataset

    if to not in FORMATS:  # before reading a large dataset for nothing
        raise ConfigError(f"unknown dataset format {to!r}", f"use --to {' or '.join(FORMATS)}")
    splits = read_dataset(source, source_format)
    written = write_dataset(splits, out, to)
    counts = ", ".join(
        f"{split} {len(dataset.images)} images {dataset.box_count} boxes" for split, dataset in splits.items()
    )
    typer.echo(f"wrote {to} to {written}: {counts}")
    lost = not_kept_by(to, splits)
    if lost:
        typer.echo(f"note: {to} has no place for {' or '.join(lost)}; they were not written", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
