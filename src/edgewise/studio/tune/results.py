"""Results of a study: trial table, best (or Pareto) trials, parameter importance, plots.

`write_report(study, out_dir)` writes `trials.csv`, `summary.json`, `history.png`,
`pareto.png` (multi-objective), and `report.html` (Optuna's interactive plots when plotly is
installed; otherwise a self-contained table with the PNGs embedded).
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from edgewise.core.errors import ConfigError


def feasible(trial: FrozenTrial) -> bool:
    return trial.user_attrs.get("feasible", True) is not False


def completed(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values is not None]


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best feasible trial (single objective) or the feasible Pareto set (multi-objective)."""
    candidates = [t for t in completed(study) if feasible(t)]
    if not candidates:
        return []
    signs = [1.0 if d == optuna.study.StudyDirection.MAXIMIZE else -1.0 for d in study.directions]
    oriented = {t.number: [v * s for v, s in zip(t.values, signs, strict=True)] for t in candidates}
    if len(signs) == 1:
        return [max(candidates, key=lambda t: (oriented[t.number][0], -t.number))]
    def dominated(a: list[float]) -> bool:
        return any(all(x >= y for x, y in zip(b, a, strict=True)) and b != a for b in oriented.values())
    return [t for t in candidates if not dominated(oriented[t.number])]


def importances(study: optuna.Study) -> dict[str, float]:
    """fANOVA importance per parameter for the first objective ({} with too few trials)."""
    trials = completed(study)
    if len(trials) < 3 or not any(t.params for t in trials):
        return {}
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)  # direction-agnostic, unlike PED-ANOVA
        found = optuna.importance.get_param_importances(study, evaluator=evaluator, target=lambda t: t.values[0])
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}
    return {name: round(float(value), 4) for name, value in found.items()}


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    names = [f"value_{i}" for i in range(len(study.directions))]
    rows = []
    for trial in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": trial.number, "state": trial.state.name.lower()}
        values = trial.values or [None] * len(names)
        row.update(dict(zip(names, values, strict=True)))
        row.update({f"param_{k}": v for k, v in sorted(trial.params.items())})
        row["worker"] = trial.user_attrs.get("worker", "")
        row["feasible"] = feasible(trial)
        duration = trial.duration.total_seconds() if trial.duration else None
        row["seconds"] = round(duration, 2) if duration is not None else None
        rows.append(row)
    return rows


def summary(study: optuna.Study) -> dict[str, Any]:
    best = best_trials(study)
    states = {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,))) for state in TrialState}
    return {
        "study": study.study_name,
        "directions": [d.name.lower() for d in study.directions],
        "trials": {k: v for k, v in states.items() if v},
        "best": [{"number": t.number, "values": t.values, "params": t.params,
                  "user_attrs": {k: v for k, v in t.user_attrs.items() if k != "worker"}} for t in best],
        "importances": importances(study),
    }


def write_report(study: optuna.Study, out_dir: Path) -> dict[str, Path]:
    """Write the table, summary and plots; returns what was written."""
    if not study.get_trials(deepcopy=False):
        raise ConfigError(f"study {study.study_name!r} has no trials yet", "run `edgewise tune` first")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {"csv": out_dir / "trials.csv", "summary": out_dir / "summary.json"}
    _write_csv(trial_rows(study), written["csv"])
    written["summary"].write_text(json.dumps(summary(study), indent=2, default=str))
    written["history"] = plot_history(study, out_dir / "history.png")
    if len(study.directions) >= 2 and completed(study):
        written["pareto"] = plot_pareto(study, out_dir / "pareto.png")
    written["html"] = _write_html(study, out_dir, written)
    return written


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    import csv

    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def plot_history(study: optuna.Study, path: Path) -> Path:
    """Objective value per trial and the best so far (first objective)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = completed(study)
    numbers = [t.number for t in trials]
    values = [t.values[0] for t in trials]
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    best, running = [], -math.inf if maximize else math.inf
    for value in values:
        running = max(running, value) if maximize else min(running, value)
        best.append(running)
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.scatter(numbers, values, s=14, label="trial", alpha=0.7)
    axis.plot(numbers, best, color="C3", label="best so far")
    axis.set_xlabel("trial")
    axis.set_ylabel("objective 0")
    axis.set_title(f"{study.study_name}: optimisation history")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_pareto(study: optuna.Study, path: Path) -> Path:
    """First two objectives of every completed trial, Pareto set highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = {t.number for t in best_trials(study)}
    trials = completed(study)
    figure, axis = plt.subplots(figsize=(5, 4))
    for on_front, color, label in ((False, "C0", "trial"), (True, "C3", "Pareto set")):
        chosen = [t for t in trials if (t.number in front) == on_front]
        axis.scatter([t.values[0] for t in chosen], [t.values[1] for t in chosen], c=color, s=18, label=label)
    axis.set_xlabel(f"objective 0 ({study.directions[0].name.lower()})")
    axis.set_ylabel(f"objective 1 ({study.directions[1].name.lower()})")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _write_html(study: optuna.Study, out_dir: Path, written: dict[str, Path]) -> Path:
    path = out_dir / "report.html"
    try:
        import plotly  # noqa: F401
    except ImportError:
        plotly_parts: list[str] = []
    else:
        figures = [optuna.visualization.plot_optimization_history(study, target=lambda t: t.values[0])]
        if len(study.directions) >= 2:
            figures.append(optuna.visualization.plot_pareto_front(study))
        plotly_parts = [f.to_html(full_html=False, include_plotlyjs="cdn") for f in figures]
    images = "".join(
        f'<img alt="{key}" src="data:image/png;base64,{base64.b64encode(written[key].read_bytes()).decode()}">'
        for key in ("history", "pareto") if key in written
    )
    rows = trial_rows(study)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    table = "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>" for c in columns) + "</tr>" for row in rows
    )
    info = html.escape(json.dumps(summary(study), indent=2, default=str))
    path.write_text(
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(study.study_name)}</title>"
        f"<h1>Study {html.escape(study.study_name)}</h1>{''.join(plotly_parts)}{images}"
        f"<h2>Best and importances</h2><pre>{info}</pre><h2>Trials</h2><table border=1>{table}</table>"
    )
    return path
