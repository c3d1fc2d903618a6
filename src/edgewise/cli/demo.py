"""`edgewise demo`: data -> model -> signed bundles -> a fleet of agents, on one machine."""

from __future__ import annotations

import signal
from pathlib import Path

import typer


def demo(
    devices: int = typer.Option(3, "--devices", min=1, max=50, help="how many agent processes to start"),
    keep_running: bool = typer.Option(False, "--keep-running", help="leave server and agents up for the browser"),
    work_dir: Path = typer.Option(Path("demo-run"), "--dir", help="where data, models, bundles and logs go"),
    task: str = typer.Option("detect", "--task", help="detect: traffic cameras counting vehicles (default); "
                             "classify: a conveyor's parts inspector"),
) -> None:
    """Run the whole story: sample data, train, compress, sign, publish, deploy to N agents (canary)."""
    from edgewise.demo.fleet_stage import FleetPlan
    from edgewise.demo.run import DemoOptions, run_demo

    # SIGTERM (a supervisor, `kill`, a closed terminal session) must stop the server and agents the
    # demo started, as Ctrl-C does: turned into KeyboardInterrupt, it runs the demo's cleanup.
    signal.signal(signal.SIGTERM, _interrupt)
    from edgewise.core.errors import ConfigError

    if task not in ("detect", "classify"):
        raise ConfigError(f"unknown --task {task!r}", "use detect or classify")
    run_demo(DemoOptions(work_dir=work_dir, keep_running=keep_running, task=task, fleet=FleetPlan(devices=devices)))


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
