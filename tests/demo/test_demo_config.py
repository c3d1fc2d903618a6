"""The demo's generated files must stay valid as the parts they configure evolve."""

from __future__ import annotations

from pathlib import Path

import yaml

from edgewise.agent.config import load_settings
from edgewise.demo.fleet_stage import agent_toml
from edgewise.demo.summary import DeviceSummary, problems

ROOT = Path(__file__).resolve().parents[2]


def test_demo_agent_config_is_accepted_by_the_agent(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(agent_toml(tmp_path, "http://127.0.0.1:1", seed=3, fps=8.0))
    settings = load_settings(config)
    assert settings.source.kind == "synthetic" and settings.source.seed == 3
    assert {rule.priority for rule in settings.rules} == {"alarm", "event"}


def test_demo_summary_flags_devices_behind_or_silent() -> None:
    rows = [DeviceSummary("camera-1", "2.0.0", "ok", 5, 2, 8.0, 0.6),
            DeviceSummary("camera-2", "1.0.0", "ok", 0, 0, 8.0, 0.6)]
    found = problems(rows, "2.0.0", devices=3)
    assert "2 of 3 devices enrolled" in found
    assert "camera-2 runs 1.0.0, not 2.0.0" in found
    assert "camera-2 sent no events" in found
    assert not problems(rows[:1], "2.0.0", devices=1)


def test_kubernetes_manifests_parse_and_use_real_server_flags() -> None:
    documents = list(yaml.safe_load_all((ROOT / "deploy/kubernetes/server.yaml").read_text()))
    kinds = {doc["kind"] for doc in documents}
    assert {"Deployment", "Service", "Ingress", "PodDisruptionBudget"} <= kinds
    deployment = next(doc for doc in documents if doc["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    from typer.main import get_command

    from edgewise.cli.main import app

    server = get_command(app).commands["server"]  # type: ignore[attr-defined]
    known = {opt for param in server.params for opt in param.opts}
    for arg in args:
        assert arg.split("=")[0] in known, f"{arg} is not an `edgewise server` option"
