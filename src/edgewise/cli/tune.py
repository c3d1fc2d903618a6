"""`edgewise tune`: hyperparameter search on Optuna (grid, random, tpe, tt), resumable and distributed.

    edgewise tune --data DIR --space SPACE.yaml --sampler tt --trials 12 --storage tune.db --study s1
    edgewise tune best --study s1 --storage tune.db --out best/
    edgewise tune report --study s1 --storage tune.db --out report/
"""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from edgewise.core.errors import ConfigError

tune_app = typer.Typer(help="Search training (and compression) settings with Optuna.", invoke_without_command=True)

STORAGE_HELP = "study storage: a SQLite file path (default edgewise-tune.db), sqlite:/// or postgresql:// URL"


@tune_app.callback()
def tune(
    ctx: typer.Context,
    data: Path | None = typer.Option(None, "--data", help="image folder with train/ val/ test/ splits"),
    space: Path | None = typer.Option(None, "--space", help="search space YAML (see docs/tune.md)"),
    sampler: str = typer.Option("tpe", "--sampler", help="grid, random, tpe or tt"),
    trials: int = typer.Option(12, "--trials", min=1, help="total trials the study should hold (all workers)"),
    storage: str | None = typer.Option(None, "--storage", help=STORAGE_HELP),
    study: str = typer.Option("edgewise", "--study", help="study name; rerun or add workers with the same name"),
    objectives: str = typer.Option("acc", "--objectives", help="comma list of acc, latency, size"),
    constraint: str | None = typer.Option(None, "--constraint", help="hard limit, e.g. rpi4:latency<=50 or size<=4"),
    out: Path | None = typer.Option(None, "--out", help="folder for trial runs (default runs/tune/STUDY)"),
    seed: int | None = typer.Option(None, "--seed", help="sampler seed"),
    pruner: str = typer.Option("median", "--pruner", help="median, hyperband or none (single objective only)"),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch threads per trial"),
    objective: str | None = typer.Option(
        None, "--objective", help="test function (ackley, rastrigin, ...) instead of training; for smoke tests"),
    dims: int = typer.Option(4, "--dims", min=1, help="dimensions of the --objective test function"),
    levels: int = typer.Option(8, "--levels", min=2, help="grid points per dimension for --objective"),
    trial_sleep: float = typer.Option(0.0, "--trial-sleep", min=0.0, help="seconds each --objective trial takes"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
) -> None:
    """Run (or resume, or join as a worker) a study: `edgewise tune --data DIR --space SPACE.yaml ...`."""
    if ctx.invoked_subcommand is not None:
        return
    from edgewise.studio.tune.objective import (
        OBJECTIVES,
        TestFunctionObjective,
        TrainingObjective,
        parse_constraint,
        parse_objectives,
    )
    from edgewise.studio.tune.results import best_trials
    from edgewise.studio.tune.runner import TuneRequest, default_out_root, run_tune
    from edgewise.studio.tune.samplers import SAMPLERS

    SAMPLERS.get(sampler)  # unknown sampler fails before touching the storage
    if objective is not None:
        test_objective = TestFunctionObjective(objective, dims, levels, sleep_s=trial_sleep)
        directions, run_objective, distributions = ["minimize"], test_objective, test_objective.space()
    else:
        if data is None or space is None:
            raise ConfigError("`edgewise tune` needs --data DIR and --space SPACE.yaml", "see `edgewise tune --help`")
        from edgewise.studio.tune.space import load_space

        names = parse_objectives(objectives)
        search_space = load_space(space)
        out_root = out or default_out_root(study)
        if search_space.kind == "recipe":
            from edgewise.studio.tune.recipe import RecipeObjective

            run_objective = RecipeObjective(search_space, data, out_root, objectives=names,
                                            constraint=parse_constraint(constraint))
        else:
            run_objective = TrainingObjective(search_space, data, out_root, objectives=names,
                                              constraint=parse_constraint(constraint), num_threads=threads)
        directions = [OBJECTIVES[n] for n in names]
        distributions = search_space.distributions()
    request = TuneRequest(study, storage, sampler, trials, directions, seed=seed, pruner=pruner)
    result = run_tune(request, distributions, run_objective, show_progress=progress)
    for trial in best_trials(result):
        typer.echo(f"best trial {trial.number}: values={trial.values} params={trial.params}")
    where = f" --storage {shlex.quote(storage)}" if storage else ""  # the hint must work exactly as printed
    typer.echo(f"study {study!r}: {len(result.trials)} trials; "
               f"`edgewise tune report --study {shlex.quote(study)}{where}` for details")


@tune_app.command("best")
def best(
    study: str = typer.Option(..., "--study", help="study name"),
    storage: str | None = typer.Option(None, "--storage", help=STORAGE_HELP),
    out: Path = typer.Option(Path("tune-best"), "--out", help="folder for model.pt, model.onnx, trial.json"),
    trial: int | None = typer.Option(None, "--trial", help="trial number (needed to pick from a Pareto set)"),
) -> None:
    """Export the chosen trial's model: checkpoint + ONNX."""
    from edgewise.studio.tune.best import export_best
    from edgewise.studio.tune.study import load_study

    exported = export_best(load_study(study, storage), out, trial)
    typer.echo(f"trial {exported.trial_number}: {exported.checkpoint_path}, {exported.onnx_path}")


@tune_app.command("report")
def report(
    study: str = typer.Option(..., "--study", help="study name"),
    storage: str | None = typer.Option(None, "--storage", help=STORAGE_HELP),
    out: Path = typer.Option(Path("tune-report"), "--out", help="folder for trials.csv, summary.json, plots"),
    as_json: bool = typer.Option(False, "--json", help="print the summary (trials, best, importances) as JSON"),
) -> None:
    """Trial table, best parameters, importances, history and Pareto plots (PNG + HTML)."""
    from edgewise.studio.tune.results import summary, write_report
    from edgewise.studio.tune.study import load_study

    loaded = load_study(study, storage)
    written = write_report(loaded, out)
    info = summary(loaded)
    if as_json:
        from edgewise.cli.output import print_json

        return print_json({**info, "written": {key: str(path) for key, path in written.items()}})
    typer.echo(f"trials: {info['trials']}")
    for entry in info["best"]:
        typer.echo(f"best trial {entry['number']}: values={entry['values']} params={entry['params']}")
    if info["importances"]:
        typer.echo("importance: " + ", ".join(f"{k}={v:.2f}" for k, v in info["importances"].items()))
    typer.echo("wrote " + ", ".join(str(p) for p in written.values()))


def register(app: typer.Typer) -> None:
    app.add_typer(tune_app, name="tune")
