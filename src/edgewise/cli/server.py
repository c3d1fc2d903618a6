"""`edgewise server`: run the fleet control plane, and create operator and enrollment tokens."""

from __future__ import annotations

from pathlib import Path

import typer

server_app = typer.Typer(help="The fleet control plane (HTTP API, dashboard, rollouts).",
                         invoke_without_command=True)
token_app = typer.Typer(help="Operator API tokens.", no_args_is_help=True)
enroll_app = typer.Typer(help="Device enrollment tokens.", no_args_is_help=True)
server_app.add_typer(token_app, name="token")
server_app.add_typer(enroll_app, name="enroll-token")

DB_HELP = "database URL: sqlite:///PATH (default ~/.edgewise/fleet.db) or postgresql://user@host/db"


def _db_url(db: str | None) -> str:
    from edgewise.fleet.settings import default_db_url

    return db or default_db_url()


@server_app.callback()
def serve(
    ctx: typer.Context,
    db: str | None = typer.Option(None, "--db", envvar="EDGEWISE_DB", help=DB_HELP),
    store: str | None = typer.Option(None, "--store", envvar="EDGEWISE_STORE", help="bundle store URL or directory"),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8400, "--port"),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="PEM certificate (enables HTTPS)"),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="PEM private key of the certificate"),
    trust: list[str] = typer.Option([], "--trust", help="trusted publisher key (.pub file or base64); repeatable"),
    offline_after: float = typer.Option(35.0, "--offline-after", help="seconds of silence before offline"),
    retention_days: float = typer.Option(30.0, "--retention-days", help="delete events/telemetry older than this"),
    webhook_url: str | None = typer.Option(None, "--webhook-url", help="POST events and status changes here"),
    webhook_secret: str = typer.Option("", "--webhook-secret", envvar="EDGEWISE_WEBHOOK_SECRET",
                                       help="HMAC key for the webhook signature"),
    mqtt_url: str | None = typer.Option(None, "--mqtt-url", help="publish events to this broker (mqtt://HOST:PORT)"),
    mqtt_topic: str = typer.Option("edgewise", "--mqtt-topic", help="topic prefix"),
    wake_rate: float = typer.Option(100.0, "--wake-rate", min=0.1,
                                    help="most devices per second a rollout tells (slower while the server is busy)"),
    single_process: bool = typer.Option(False, "--single-process",
                                        help="work device requests in the server's own process, not a second one "
                                             "(one core; for debugging, or where a process cannot be started)"),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Run the server (unless a subcommand is given)."""
    if ctx.invoked_subcommand is not None:
        return
    from edgewise.fleet.server import serve as run_server
    from edgewise.fleet.settings import ForwardingSettings, ServerSettings, default_store_url

    settings = ServerSettings(
        db_url=_db_url(db), store_url=store or default_store_url(), host=host, port=port, tls_cert=tls_cert,
        tls_key=tls_key, trusted_keys=list(trust), offline_after_s=offline_after, retention_days=retention_days,
        wake_rate_per_s=wake_rate, device_process=not single_process,
        forwarding=ForwardingSettings(webhook_url=webhook_url, webhook_secret=webhook_secret, mqtt_url=mqtt_url,
                                      mqtt_topic_prefix=mqtt_topic),
    )
    scheme = "https" if tls_cert else "http"
    typer.echo(f"edgewise server on {scheme}://{host}:{port}  (dashboard /ui/, API docs /docs, db {settings.db_url})")
    run_server(settings, log_level)


@token_app.command("create")
def token_create(
    scope: str = typer.Option("read", "--scope", help="read, deploy or admin (each includes the ones before)"),
    name: str = typer.Option("", "--name", help="who or what uses the token"),
    db: str | None = typer.Option(None, "--db", envvar="EDGEWISE_DB", help=DB_HELP),
) -> None:
    """Create an operator token; it is printed once and stored only as a hash."""
    from edgewise.fleet.auth import create_operator_token
    from edgewise.fleet.db import open_database

    database = open_database(_db_url(db))
    token = create_operator_token(database, scope, name)
    database.dispose()
    typer.echo(token)


@enroll_app.command("create")
def enroll_token_create(
    ttl: float = typer.Option(3600.0, "--ttl", help="seconds until the token expires"),
    uses: int = typer.Option(1, "--uses", help="how many devices may enroll with it"),
    group: str = typer.Option("default", "--group", help="group of the devices that enroll with it"),
    tag: list[str] = typer.Option([], "--tag", help="KEY=VALUE given to enrolling devices; repeatable"),
    db: str | None = typer.Option(None, "--db", envvar="EDGEWISE_DB", help=DB_HELP),
) -> None:
    """Create a device enrollment token (one-time by default, expiring after --ttl)."""
    from edgewise.core.errors import ConfigError
    from edgewise.fleet.db import open_database
    from edgewise.fleet.devices.enrollment import create_enrollment_token

    if any("=" not in t for t in tag):
        raise ConfigError("--tag takes KEY=VALUE", "e.g. --tag site=paris")
    database = open_database(_db_url(db))
    token, _row = create_enrollment_token(database, ttl, uses, group, dict(t.split("=", 1) for t in tag))
    database.dispose()
    typer.echo(token)


def register(app: typer.Typer) -> None:
    app.add_typer(server_app, name="server")
