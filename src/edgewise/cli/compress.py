"""`edgewise compress` (run a recipe for a target, with a report) and `edgewise targets`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgewise.cli.output import console as output_console
from edgewise.cli.output import print_json
from edgewise.core.errors import ConfigError

if TYPE_CHECKING:  # the studio (and torch) loads only when a command runs
    from edgewise.studio.compress.recipe import Recipe


def compress(
    model: Path | None = typer.Argument(None, help="trained checkpoint (.pt) or ONNX file; never modified"),
    data: Path | None = typer.Option(None, "--data", help="image folder with train/ val/ test/"),
    target: str = typer.Option("x86-host", "--target", help="hardware target (see `edgewise targets`)"),
    recipe: str = typer.Option("balanced", "--recipe", help="built-in recipe name or a recipe YAML file"),
    out: Path = typer.Option(Path("compress-out"), "--out", help="output folder: steps/, report.*, pareto.png"),
    max_drop: float | None = typer.Option(None, "--max-drop", help="accuracy budget (points) for int8 steps"),
    list_recipes: bool = typer.Option(False, "--list-recipes", help="list the built-in recipes and exit"),
    as_json: bool = typer.Option(False, "--json", help="with --list-recipes: print the recipes as JSON"),
    allow_incompatible: bool = typer.Option(False, "--allow-incompatible",
                                            help="write the report even if the target cannot run the result"),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    latency_runs: int = typer.Option(60, "--latency-runs", min=5, help="timed runs per host latency measurement"),
    card: Path | None = typer.Option(None, "--card", help="model card of an ONNX model (default: MODEL.card.yaml "
                                     "beside it, or the one an edgewise export recorded)"),
) -> None:
    """Compress MODEL for --target with --recipe, measuring every step (accuracy, size, latency)."""
    from edgewise.studio.compress import RunOptions, builtin_recipes, load_recipe, run_compression

    if list_recipes:
        if as_json:
            return print_json([recipe_entry.model_dump(mode="json") for recipe_entry in builtin_recipes().values()])
        for recipe_entry in builtin_recipes().values():
            steps = " -> ".join(spec.step for spec in recipe_entry.steps)
            typer.echo(f"{recipe_entry.name:<16} {steps:<34} {recipe_entry.description}")
        from edgewise.studio.detect.compress_run import DETECTION_RECIPES

        typer.echo("\nfor detectors (a detector checkpoint picks these):")
        for name, summary in DETECTION_RECIPES.items():
            typer.echo(f"{name:<16} {summary}")
        return
    if model is None or data is None:
        raise ConfigError("compress needs MODEL and --data", "e.g. `edgewise compress best.pt --data data/parts "
                          "--target rpi4 --recipe balanced --out out/`")
    from edgewise.cli.detect import compress_detector_command, is_detector_checkpoint

    if model.suffix == ".pt" and is_detector_checkpoint(model):
        return compress_detector_command(model, data, target, recipe, out, max_drop, latency_runs)
    chosen = load_recipe(recipe)
    if max_drop is not None:
        chosen = _with_max_drop(chosen, max_drop)
    report = run_compression(model, data, target, chosen, out,
                             RunOptions(batch_size=batch_size, latency_runs=latency_runs,
                                        allow_incompatible=allow_incompatible), card=card)
    _print_summary(report, out)


def _with_max_drop(recipe: Recipe, max_drop: float) -> Recipe:
    steps = []
    for spec, step in zip(recipe.steps, recipe.build(), strict=True):
        params = dict(spec.params)
        if step.takes_accuracy_budget():
            params["max_drop"] = max_drop
        steps.append(spec.model_copy(update={"params": params}))
    updated = recipe.model_copy(update={"steps": steps})
    updated.build()
    return updated


def _print_summary(report, out: Path) -> None:
    from rich.table import Table

    from edgewise.studio.compress.report import COLUMNS, _row

    console = output_console()
    table = Table(title=f"{report.recipe['name']} for {report.target['name']} (host: measured; target: estimate)")
    for column in COLUMNS[:-2]:
        table.add_column(column, overflow="fold")
    table.add_column("target", overflow="fold")
    for record in report.steps:
        cells = _row(record)[:-2] + ["ok" if record.target_check.ok else "FAIL"]
        table.add_row(*cells, style="red" if record.flags or not record.target_check.ok else None)
    console.print(table)
    for record in report.steps:
        for problem in [*record.flags, *record.target_check.issues]:
            console.print(f"[red]step {record.index} {record.name}: {problem}[/red]")
        for note in record.notes:
            console.print(f"step {record.index} {record.name}: {note}")
    console.print(f"report: {out / 'report.html'}  {out / 'report.md'}  {out / 'report.json'}  {out / 'pareto.png'}")


def targets(as_json: bool = typer.Option(False, "--json", help="print the catalog as JSON")) -> None:
    """List the hardware targets: precisions, runtime, memory budget, peak compute, power."""
    from rich.table import Table

    from edgewise.core.targets import list_targets

    catalog = list_targets()
    if as_json:
        typer.echo(json.dumps([t.model_dump(mode="json") for t in catalog], indent=2))
        return
    table = Table(title="hardware targets (peak figures: vendor numbers, dense)")
    for column in ("name", "device", "family", "runtime", "precisions", "memory MB", "peak GOPS", "GB/s", "W"):
        table.add_column(column)
    for t in catalog:
        precisions = ", ".join(t.precisions) + (" (full int8 only)" if t.full_int8_required else "")
        peaks = ", ".join(f"{p} {v:g}" for p, v in t.peak_gops.items())
        table.add_row(t.name, t.display_name, t.family, t.runtime, precisions, f"{t.memory_budget_mb:g}", peaks,
                      f"{t.memory_bandwidth_gbs:g}", f"{t.typical_power_w:g}")
    output_console().print(table)


def register(app: typer.Typer) -> None:
    app.command("compress")(compress)
    app.command("targets")(targets)
