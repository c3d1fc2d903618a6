"""The compression report: one stable JSON schema, rendered as Markdown, HTML and a Pareto PNG.

Schema `edgewise.compress.report/v1` (documented in docs/compress.md); the bundle command reads
metrics and lineage from it, so fields are only ever added, never renamed.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from edgewise.studio.compress.targetcheck import TargetCheck

SCHEMA = "edgewise.compress.report/v1"


class StepMetrics(BaseModel):
    accuracy: float
    delta_accuracy: float
    params: int
    macs: int
    file_size_bytes: int
    host_latency_ms: float
    host_latency_p95_ms: float
    host_speedup: float = Field(description="baseline host p50 / this step's host p50 (measured)")
    size_ratio: float = Field(description="this file size / baseline file size")
    est_target_latency_ms: float | None
    est_energy_mj: float | None


class StepRecord(BaseModel):
    index: int
    name: str
    params: dict[str, Any]
    dir: str
    model_path: str
    checkpoint_path: str | None
    precision: str
    metrics: StepMetrics
    target_check: TargetCheck
    flags: list[str]
    notes: list[str]
    details: dict[str, Any]
    seconds: float


class CompressionReport(BaseModel):
    schema_: str = Field(SCHEMA, alias="schema")
    created_at: str
    input: dict[str, Any]
    target: dict[str, Any]
    recipe: dict[str, Any]
    data: dict[str, Any]
    host: dict[str, Any]
    steps: list[StepRecord]
    final_step: int
    best_step: int = Field(description="step with the lowest measured host latency within max_report_drop")
    notes: list[str]

    model_config = {"populate_by_name": True}

    def to_json(self) -> str:
        return json.dumps(self.model_dump(by_alias=True, mode="json"), indent=2)


COLUMNS = ["#", "step", "precision", "accuracy %", "Δacc pt", "params", "MACs", "file", "host p50 ms",
           "est. target ms", "target check", "flags"]


def _row(record: StepRecord) -> list[str]:
    m = record.metrics
    est = f"{m.est_target_latency_ms:.3f}" if m.est_target_latency_ms is not None else "n/a"
    check = "ok" if record.target_check.ok else "FAIL: " + "; ".join(record.target_check.issues)
    return [str(record.index), record.name, record.precision, f"{m.accuracy:.2f}", f"{m.delta_accuracy:+.2f}",
            f"{m.params:,}", f"{m.macs:,}", _size(m.file_size_bytes), f"{m.host_latency_ms:.3f}", est, check,
            "; ".join(record.flags)]


def _size(size: int) -> str:
    return f"{size / 1024:.1f} KiB" if size < 1024**2 else f"{size / 1024**2:.2f} MiB"


def to_markdown(report: CompressionReport) -> str:
    lines = [f"# Compression report: {report.recipe['name']} for {report.target['name']}", "",
             f"Input `{report.input['path']}` (sha256 {report.input['sha256'][:12]}...), data `{report.data['dir']}`. "
             "Host latency is MEASURED on this machine at batch 1; target latency and energy are ESTIMATES "
             "(roofline from MACs and bytes moved).", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_row(r)).replace("\n", " ") + " |" for r in report.steps]
    lines += ["", "## Notes per step", ""]
    for record in report.steps:
        for note in [*record.notes, *[f"**FLAG** {f}" for f in record.flags]]:
            lines.append(f"- {record.index} {record.name}: {note}")
    lines += ["", *[f"- {note}" for note in report.notes], "", "![pareto](pareto.png)", ""]
    return "\n".join(lines)


def to_html(report: CompressionReport) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    rows = []
    for record in report.steps:
        cells = _row(record)
        flagged = bool(record.flags)
        tds = "".join(
            f"<td style=\"color:{'#c00' if (flagged and i == len(cells) - 1) or c.startswith('FAIL') else 'inherit'}\">"
            f"{html.escape(c)}</td>" for i, c in enumerate(cells))
        rows.append(f"<tr{' class=flagged' if flagged else ''}>{tds}</tr>")
    notes = "".join(f"<li>{record.index} {html.escape(record.name)}: {html.escape(n)}</li>"
                    for record in report.steps for n in record.notes)
    title = html.escape(f"Compression report: {report.recipe['name']} for {report.target['name']}")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title><style>"
            "body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px}"
            "tr.flagged{background:#fee}</style></head><body>"
            f"<h1>{title}</h1><p>Host latency is measured on this machine at batch 1; target latency and energy "
            f"are estimates.</p><table><tr>{head}</tr>{''.join(rows)}</table><h2>Notes</h2><ul>{notes}</ul>"
            "<img src=pareto.png alt='accuracy vs latency and size'></body></html>")


def plot_pareto(report: CompressionReport, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for record in report.steps:
        m = record.metrics
        label = f"{record.index} {record.name}"
        color = "red" if record.flags else "tab:blue"
        left.scatter(m.host_latency_ms, m.accuracy, color=color)
        left.annotate(label, (m.host_latency_ms, m.accuracy), fontsize=8)
        right.scatter(m.file_size_bytes / 1024, m.accuracy, color=color)
        right.annotate(label, (m.file_size_bytes / 1024, m.accuracy), fontsize=8)
    for axis, cost in ((left, lambda m: m.host_latency_ms), (right, lambda m: m.file_size_bytes / 1024)):
        front = pareto_front([(cost(r.metrics), r.metrics.accuracy) for r in report.steps])
        costs, accuracies = [c for c, _ in front], [a for _, a in front]
        axis.plot(costs, accuracies, color="tab:green", linestyle="--", marker="s", markersize=9, fillstyle="none",
                  linewidth=1, label="Pareto front")
        axis.legend(loc="lower right", fontsize=8)
    left.set(xlabel="host latency, batch 1 (ms, measured)", ylabel="accuracy (%)", title="accuracy vs latency")
    right.set(xlabel="file size (KiB)", ylabel="accuracy (%)", title="accuracy vs size")
    figure.suptitle(f"{report.recipe['name']} for {report.target['name']} (red: flagged step)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(cost, accuracy) points no other point beats on both: lower cost and higher accuracy."""
    front: list[tuple[float, float]] = []
    for cost, accuracy in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or accuracy > front[-1][1]:
            front.append((cost, accuracy))
    return front


def write_report(report: CompressionReport, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md", "html": out_dir / "report.html",
             "pareto": out_dir / "pareto.png"}
    paths["json"].write_text(report.to_json())
    paths["markdown"].write_text(to_markdown(report))
    paths["html"].write_text(to_html(report))
    plot_pareto(report, paths["pareto"])
    return paths


def load_report(path: Path) -> CompressionReport:
    return CompressionReport.model_validate_json(Path(path).read_text())
