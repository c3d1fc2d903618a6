"""The operator CLI and `edgewise server` token commands against a real server, and /metrics."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from edgewise.cli.main import main
from edgewise.fleet.auth import operator_from_token
from edgewise.fleet.db import open_database
from tests.fleet.conftest import RunningServer


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_server_token_commands_write_usable_tokens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    code, out, _ = run_cli(capsys, "server", "token", "create", "--scope", "deploy", "--db", url)
    assert code == 0
    operator = operator_from_token(open_database(url), out.strip(), "deploy")
    assert operator.scope == "deploy"
    code, _, err = run_cli(capsys, "server", "token", "create", "--scope", "root", "--db", url)
    assert code == 1 and "unknown scope 'root'" in err
    code, out, _ = run_cli(capsys, "server", "enroll-token", "create", "--uses", "3", "--tag", "site=paris",
                           "--db", url)
    assert code == 0 and out.startswith("ewe_")


def test_operator_cli_round_trip(sqlite_fleet: RunningServer, bundles, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEWISE_SERVER", sqlite_fleet.url)
    monkeypatch.setenv("EDGEWISE_TOKEN", sqlite_fleet.admin_token)
    device = sqlite_fleet.device("porch")
    device.report()
    published = bundles.publish()
    code, out, _ = run_cli(capsys, "devices", "list", "--json")
    assert code == 0 and json.loads(out)["items"][0]["name"] == "porch"
    code, out, _ = run_cli(capsys, "devices", "tag", device.device_id, "site=paris", "--group", "lobby")
    assert code == 0 and "'site': 'paris'" in out
    code, out, err = run_cli(capsys, "deploy", published.ref, "--to", "group=lobby,tag:site=paris",
                             "--strategy", "canary", "--percent", "50")
    assert code == 0, err
    deployment_id = out.split()[1].rstrip(":")
    code, out, _ = run_cli(capsys, "deployments", "list", "--json")
    assert json.loads(out)[0]["id"] == deployment_id
    code, out, _ = run_cli(capsys, "deployments", "halt", deployment_id)
    assert code == 0 and "halted" in out
    code, out, _ = run_cli(capsys, "deployments", "rollback", deployment_id)
    assert code == 0 and "rolled back (1 device(s))" in out
    device.request("POST", "/device/ingest", {"events": [{"seq": 1, "ts": 1e9, "type": "alarm", "label": "fox"}]})
    code, out, _ = run_cli(capsys, "events", "tail", "-n", "5")
    assert code == 0 and "fox" in out
    code, _, err = run_cli(capsys, "devices", "show", "dev-nope")
    assert code == 1 and "not found" in err
    code, _, err = run_cli(capsys, "deploy", published.ref, "--to", "colour=red")
    assert code == 1 and "unknown selector key" in err
    code, _, err = run_cli(capsys, "devices", "revoke", device.device_id, "--token", "ewo_bad")
    assert code == 1 and "unknown or revoked" in err
    code, out, _ = run_cli(capsys, "devices", "revoke", device.device_id)
    assert code == 0 and device.report().status_code == 403


def test_listings_are_whole_when_piped_and_json_on_request(sqlite_fleet: RunningServer,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # the new user's case: piped into a file, rich squeezed the table to 80 columns and folded every cell
    monkeypatch.setenv("EDGEWISE_SERVER", sqlite_fleet.url)
    monkeypatch.setenv("EDGEWISE_TOKEN", sqlite_fleet.admin_token)
    name = "loading-dock-north-entrance-camera-07"
    device = sqlite_fleet.device(name)
    reason = "health check 'latency' failed: p95 412.0 ms over the limit 250.0 ms"
    assert device.report(health="failed", update_state="failed", update_error=reason).status_code == 204
    code, out, _ = run_cli(capsys, "devices", "list")
    assert code == 0
    row = next(line for line in out.splitlines() if device.device_id in line)
    assert name in row and reason in row  # one line per device, no cell folded
    code, out, _ = run_cli(capsys, "devices", "list", "--json")
    assert json.loads(out)["items"][0]["update_error"] == reason
    assert sqlite_fleet.operator("read").get(f"/devices/{device.device_id}").json()["update_error"] == reason
    device.request("POST", "/device/ingest", {"events": [{"seq": 1, "ts": 1e9, "type": "alarm", "label": "fox"},
                                                         {"seq": 2, "ts": 1e9 + 1, "type": "alarm", "label": "owl"}]})
    code, out, _ = run_cli(capsys, "events", "tail", "--json")
    assert code == 0 and [json.loads(line)["label"] for line in out.splitlines()] == ["fox", "owl"]
    code, out, _ = run_cli(capsys, "deployments", "list", "--json")
    assert code == 0 and json.loads(out) == []


def test_metrics_expose_requests_and_fleet_gauges(sqlite_fleet: RunningServer) -> None:
    device = sqlite_fleet.device()
    device.report(health="ok")
    device.request("POST", "/device/ingest", {"events": [{"seq": 1, "ts": 1e9, "type": "x"}]})
    text = httpx.get(sqlite_fleet.url + "/metrics").text
    assert 'edgewise_devices{state="online"} 1.0' in text
    assert 'edgewise_devices_by_health{health="ok"} 1.0' in text
    assert 'edgewise_ingested_total{kind="event"} 1.0' in text
    assert 'method="PUT",route="/device/state",status="204"' in text


def test_simulate_command_runs_devices_against_the_server(sqlite_fleet: RunningServer,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    token = sqlite_fleet.enrollment_token(uses=3)
    code, out, err = run_cli(capsys, "simulate", "--server", sqlite_fleet.url, "--devices", "3", "--enroll-token",
                             token, "--duration", "2", "--heartbeat", "0.5")
    assert code == 0, err
    assert "events acked" in out and "0 error(s)" in out
    assert sqlite_fleet.operator("read").get("/devices").json()["total"] == 3
    code, _, err = run_cli(capsys, "simulate", "--server", sqlite_fleet.url, "--devices", "1", "--enroll-token",
                           token, "--duration", "1")
    assert code == 1 and "could not enroll" in err  # the token is used up: enrollment is refused
