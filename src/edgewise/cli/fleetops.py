"""Operator commands against a running fleet server: devices, deploy, deployments, events, simulate.

Every command takes --server (EDGEWISE_SERVER) and --token (EDGEWISE_TOKEN).
"""

from __future__ import annotations

import json
import time
from typing import Any

import typer

from edgewise.cli.output import JSON_OUT, print_json, print_table

devices_app = typer.Typer(help="Enrolled devices.", no_args_is_help=True)
deployments_app = typer.Typer(help="Deployments (rollouts) of bundles to devices.", no_args_is_help=True)
events_app = typer.Typer(help="Events sent by devices.", no_args_is_help=True)

SERVER = typer.Option("http://127.0.0.1:8400", "--server", envvar="EDGEWISE_SERVER", help="fleet server URL")
TOKEN = typer.Option(None, "--token", envvar="EDGEWISE_TOKEN", help="operator token")


def _client(server: str, token: str | None) -> Any:
    from edgewise.fleet.tools.operator_client import OperatorClient

    return OperatorClient(server, token)


def _ago(ts: float | None) -> str:
    if not ts:
        return "never"
    seconds = max(0.0, time.time() - ts)
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago" if seconds < 7200 \
        else f"{seconds / 3600:.0f}h ago"


@devices_app.command("list")
def devices_list(group: str | None = typer.Option(None, "--group"),
                 tag: list[str] = typer.Option([], "--tag", help="KEY=VALUE; repeatable"),
                 online: bool | None = typer.Option(None, "--online/--offline"),
                 limit: int = typer.Option(200, "--limit"), as_json: bool = JSON_OUT,
                 server: str = SERVER, token: str | None = TOKEN) -> None:
    """List devices with their group, bundle, health and last contact."""
    params: dict[str, Any] = {"limit": limit, "tag": tag}
    if group:
        params["group"] = group
    if online is not None:
        params["online"] = online
    with _client(server, token) as client:
        page = client.call("GET", "/devices", params=params)
    if as_json:
        return print_json(page)
    rows = [[d["id"], d["name"], d["group"], "online" if d["online"] else "offline", d["current_version"] or "-",
             d["health"], _update_cell(d), _ago(d["last_seen"])] for d in page["items"]]
    print_table(f"{page['total']} device(s)", ["id", "name", "group", "status", "bundle", "health", "update", "seen"],
           rows)


def _update_cell(device: dict[str, Any]) -> str:
    error = device.get("update_error")
    return f"{device['update_state']}: {error}" if error else device["update_state"]


@devices_app.command("show")
def devices_show(device_id: str, server: str = SERVER, token: str | None = TOKEN) -> None:
    """Everything the server knows about one device."""
    with _client(server, token) as client:
        print_json(client.call("GET", f"/devices/{device_id}"))


@devices_app.command("tag")
def devices_tag(device_id: str, tags: list[str] = typer.Argument(None, help="KEY=VALUE to set"),
                remove: list[str] = typer.Option([], "--remove", help="tag key to remove; repeatable"),
                group: str | None = typer.Option(None, "--group", help="move the device to this group"),
                server: str = SERVER, token: str | None = TOKEN) -> None:
    """Set or remove tags (and optionally the group) of a device."""
    from edgewise.core.errors import ConfigError

    pairs = tags or []
    if any("=" not in pair for pair in pairs):
        raise ConfigError("tags are KEY=VALUE", "e.g. `edgewise devices tag dev-1234 site=paris`")
    body = {"set_tags": dict(p.split("=", 1) for p in pairs), "remove_tags": remove, "group": group}
    with _client(server, token) as client:
        device = client.call("PATCH", f"/devices/{device_id}", json=body)
    typer.echo(f"{device['id']}: group {device['group']}, tags {device['tags']}")


@devices_app.command("revoke")
def devices_revoke(device_id: str, server: str = SERVER, token: str | None = TOKEN) -> None:
    """Refuse every further request from this device, at once."""
    with _client(server, token) as client:
        client.call("POST", f"/devices/{device_id}/revoke")
    typer.echo(f"{device_id} revoked")


def deploy(
    bundle: str = typer.Argument(..., help="bundle reference in the server's store, e.g. detector:1.2.0"),
    to: str = typer.Option("all", "--to", help="selector: all, or group=G,tag:K=V,id=DEVICE (all terms must hold)"),
    strategy: str = typer.Option("all-at-once", "--strategy", help="all-at-once, canary or staged"),
    percent: float = typer.Option(10.0, "--percent", help="canary: share of devices first"),
    batches: int = typer.Option(3, "--batches", help="staged: number of batches"),
    bake: float = typer.Option(0.0, "--bake", help="seconds to watch a finished batch before the next"),
    failure_threshold: float = typer.Option(0.0, "--failure-threshold", help="halt above this failed share"),
    no_health: bool = typer.Option(False, "--no-health", help="count an installed bundle as success without 'ok'"),
    min_agreement: float | None = typer.Option(None, "--min-agreement", help="quality gate: top-1 agreement in shadow"),
    max_latency_ms: float | None = typer.Option(None, "--max-latency-ms", help="quality gate: candidate p95 latency"),
    max_alarm_shift: float | None = typer.Option(None, "--max-alarm-shift", help="quality gate: alarm-rate shift"),
    shadow_share: float = typer.Option(0.5, "--shadow-share", help="quality gate: share of frames shadowed"),
    allow_downgrade: bool = typer.Option(False, "--allow-downgrade",
                                         help="let devices install an older version than they run (recorded)"),
    server: str = SERVER, token: str | None = TOKEN,
) -> None:
    """Roll BUNDLE out to the devices the selector matches (only signature-verified bundles)."""
    from edgewise.fleet.rollouts.selectors import parse_selector
    from edgewise.fleet.rollouts.strategies import StrategySpec

    bounds = {"min_agreement": min_agreement, "max_latency_p95_ms": max_latency_ms,
              "max_alarm_rate_shift": max_alarm_shift}
    quality = {k: v for k, v in bounds.items() if v is not None} or None
    spec = StrategySpec.model_validate({"name": strategy, "percent": percent, "batches": batches, "bake_s": bake,
                                        "failure_threshold": failure_threshold, "require_health": not no_health,
                                        "quality": quality, "shadow_share": shadow_share,
                                        "allow_downgrade": allow_downgrade})
    body = {"bundle": bundle, "selector": parse_selector(to).model_dump(), "strategy": spec.model_dump()}
    with _client(server, token) as client:
        deployment = client.call("POST", "/deployments", json=body)
    typer.echo(f"deployment {deployment['id']}: {deployment['bundle_ref']} to {len(deployment['targets'])} "
               f"device(s), {deployment['batch_count']} batch(es), status {deployment['status']}")


@deployments_app.command("list")
def deployments_list(status: str | None = typer.Option(None, "--status"), as_json: bool = JSON_OUT,
                     server: str = SERVER, token: str | None = TOKEN) -> None:
    """Recent deployments with their progress."""
    with _client(server, token) as client:
        items = client.call("GET", "/deployments", params={"status": status} if status else {})
    if as_json:
        return print_json(items)
    rows = [[d["id"], d["bundle_ref"], d["strategy"]["name"], d["status"],
             f"{d['current_batch'] + 1}/{d['batch_count']}",
             " ".join(f"{k}={v}" for k, v in sorted(d["progress"].items())), _ago(d["created_at"])] for d in items]
    print_table("deployments", ["id", "bundle", "strategy", "status", "batch", "progress", "created"], rows)


@deployments_app.command("show")
def deployments_show(deployment_id: str, server: str = SERVER, token: str | None = TOKEN) -> None:
    """A deployment's targets and its full history."""
    with _client(server, token) as client:
        print_json(client.call("GET", f"/deployments/{deployment_id}"))


@deployments_app.command("halt")
def deployments_halt(deployment_id: str, server: str = SERVER, token: str | None = TOKEN) -> None:
    """Stop a rollout where it is: devices not reached yet are never touched."""
    with _client(server, token) as client:
        client.call("POST", f"/deployments/{deployment_id}/halt")
    typer.echo(f"{deployment_id} halted")


@deployments_app.command("rollback")
def deployments_rollback(deployment_id: str, server: str = SERVER, token: str | None = TOKEN) -> None:
    """Give every device the deployment touched its previous desired bundle back."""
    with _client(server, token) as client:
        result = client.call("POST", f"/deployments/{deployment_id}/rollback")
    typer.echo(f"{deployment_id} rolled back ({result['progress'].get('rolled_back', 0)} device(s))")


def _event_line(event: dict[str, Any]) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(event["ts"]))
    score = f" {event['score']:.2f}" if event.get("score") is not None else ""
    return f"{when} {event['device_id']} {event['priority']:<8} {event['type']} {event.get('label') or ''}{score}"


@events_app.command("tail")
def events_tail(device: str | None = typer.Option(None, "--device"), type_: str | None = typer.Option(None, "--type"),
                lines: int = typer.Option(20, "-n", "--lines"), follow: bool = typer.Option(False, "-f", "--follow"),
                as_json: bool = typer.Option(False, "--json", help="one JSON object per line (JSON Lines)"),
                server: str = SERVER, token: str | None = TOKEN) -> None:
    """The latest events; with --follow, keep printing new ones as they arrive."""
    show = (lambda event: typer.echo(json.dumps(event, sort_keys=True))) if as_json else \
        (lambda event: typer.echo(_event_line(event)))
    params: dict[str, Any] = {"limit": lines}
    if device:
        params["device_id"] = device
    if type_:
        params["type"] = type_
    with _client(server, token) as client:
        page = client.call("GET", "/events", params=params)
        for event in reversed(page["items"]):
            show(event)
        if not follow:
            return
        for message in client.stream("/stream"):
            item = json.loads(message)
            if item.get("kind") != "event" or (device and item.get("device_id") != device) or \
                    (type_ and item.get("type") != type_):
                continue
            show(item)


def simulate(
    server: str = typer.Option("http://127.0.0.1:8400", "--server", envvar="EDGEWISE_SERVER"),
    devices: int = typer.Option(10, "--devices", help="how many simulated devices"),
    enroll_token: str = typer.Option(..., "--enroll-token", envvar="EDGEWISE_ENROLL_TOKEN",
                                     help="an enrollment token with at least --devices uses"),
    duration: float = typer.Option(60.0, "--duration", help="seconds to run"),
    event_rate: float = typer.Option(1.0, "--event-rate", help="events per second per device"),
    heartbeat: float = typer.Option(10.0, "--heartbeat", help="seconds between state reports"),
    fail_digest: list[str] = typer.Option([], "--fail", help="bundle digest whose update 'fails'; repeatable"),
) -> None:
    """Many lightweight simulated devices in one process: enroll, sync, report, send events, update."""
    import asyncio

    from edgewise.fleet.tools.simulator import SimulationConfig, run_simulation

    config = SimulationConfig(server=server, devices=devices, enroll_token=enroll_token, duration_s=duration,
                              event_rate=event_rate, heartbeat_s=heartbeat, failing_digests=list(fail_digest))
    stats = asyncio.run(run_simulation(config))
    typer.echo(stats.summary())


def register(app: typer.Typer) -> None:
    app.add_typer(devices_app, name="devices")
    app.add_typer(deployments_app, name="deployments")
    app.add_typer(events_app, name="events")
    app.command("deploy")(deploy)
    app.command("simulate")(simulate)
