"""The demo's closing table: devices, versions, events and alarms per device, fps, latency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from edgewise.fleet.tools.operator_client import OperatorClient


@dataclass
class DeviceSummary:
    name: str
    version: str
    health: str
    events: int
    alarms: int
    fps: float | None
    latency_p50_ms: float | None
    crossings: int = 0  # line_cross events (the detection story)


def collect(operator: OperatorClient) -> list[DeviceSummary]:
    rows = []
    for device in sorted(operator.devices(), key=lambda d: d["name"]):
        events = operator.events_of(device["id"])
        telemetry = operator.telemetry_of(device["id"])
        latest: dict[str, Any] = max(telemetry, key=lambda t: t["ts"]) if telemetry else {}
        rows.append(DeviceSummary(
            name=device["name"], version=device.get("current_version") or "none", health=device.get("health", "?"),
            events=len(events), alarms=sum(1 for e in events if e.get("priority") == "alarm"),
            fps=latest.get("fps"), latency_p50_ms=latest.get("latency_p50_ms"),
            crossings=sum(1 for e in events if e.get("type") == "line_cross"),
        ))
    return rows


def render(rows: list[DeviceSummary], console: Console) -> None:
    table = Table(title="edgewise demo: the fleet")
    numbers = {"events", "alarms", "line crossings", "fps", "latency p50"}
    for column in ("device", "bundle", "health", "events", "alarms", "line crossings", "fps", "latency p50"):
        table.add_column(column, justify="right" if column in numbers else "left")
    for row in rows:
        table.add_row(row.name, row.version, row.health, str(row.events), str(row.alarms), str(row.crossings),
                      f"{row.fps:.1f}" if row.fps is not None else "-",
                      f"{row.latency_p50_ms:.2f} ms" if row.latency_p50_ms is not None else "-")
    console.print(table)


def problems(rows: list[DeviceSummary], expected_version: str, devices: int) -> list[str]:
    """What makes the demo a failure: a device missing, not on the last bundle, or silent."""
    found = []
    if len(rows) != devices:
        found.append(f"{len(rows)} of {devices} devices enrolled")
    found += [f"{r.name} runs {r.version}, not {expected_version}" for r in rows if r.version != expected_version]
    found += [f"{r.name} sent no events" for r in rows if r.events == 0]
    return found
