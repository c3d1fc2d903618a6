"""`edgewise agent`: the device runtime (run, enroll). Imports only edgewise.agent, lazily."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import typer

agent_app = typer.Typer(help="The device runtime: inference, updates, store-and-forward.", invoke_without_command=True)

CONFIG_OPTION = typer.Option(None, "--config", "-c", help="agent.toml (see docs/agent.md)")


def _run(config: Path | None, data_dir: Path | None, once: bool, verbose: bool) -> None:
    from edgewise.agent.config import load_settings
    from edgewise.agent.runner import AgentRunner

    # State changes, activations and a periodic fps/latency line at INFO by default; -v adds DEBUG.
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the agent's own log
    overrides = {"data_dir": str(data_dir)} if data_dir else {}
    settings = load_settings(config, overrides)
    runner = AgentRunner(settings)
    runner.stop_on_signals()
    runner.run(once=once)


@agent_app.callback()
def agent_main(
    ctx: typer.Context,
    config: Path | None = CONFIG_OPTION,
    once: bool = typer.Option(False, "--once", help="process a finite source, flush the outbox, exit"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the agent (same as `edgewise agent run`)."""
    if ctx.invoked_subcommand is None:
        _run(config, None, once, verbose)


@agent_app.command("run")
def run_command(
    config: Path | None = CONFIG_OPTION,
    data_dir: Path | None = typer.Option(None, "--data-dir", help="overrides data_dir of the config"),
    once: bool = typer.Option(False, "--once", help="process a finite source, flush the outbox, exit"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run inference, sync and updates until stopped (or, with --once, until the source ends)."""
    _run(config, data_dir, once, verbose)


@agent_app.command("enroll")
def enroll_command(
    server: str = typer.Option(..., "--server", help="server URL, e.g. http://127.0.0.1:8080"),
    token: str = typer.Option(..., "--token", help="one-time enrollment token from the operator"),
    data_dir: Path = typer.Option(..., "--data-dir", help="where the device key and identity are kept"),
    name: str = typer.Option(socket.gethostname(), "--name", help="device name shown to operators"),
    hardware: str = typer.Option("x86-host", "--hardware", help="target catalog name"),
) -> None:
    """Create the device key pair here and enroll; the private key never leaves the device."""
    from edgewise.agent.identity import enroll

    identity = enroll(server, token, data_dir, name, hardware)
    typer.echo(f"enrolled as {identity.device_id}; trusting {len(identity.trusted_keys)} publisher key(s)")


def register(app: typer.Typer) -> None:
    app.add_typer(agent_app, name="agent")
