"""Acceptance: a real server and subprocess agents; the quality gate rolls back a worse candidate
(with the reason in the history and on the dashboard) and promotes a better one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgewise.core.signing import PrivateKey
from tests.agent import models
from tests.agent.conftest import bundles, publisher, stranger  # noqa: F401 - fixtures
from tests.agent.fleet import ROOT, Agent, FleetServer, wait_until

pytestmark = pytest.mark.reliability

AGENT_TOML = """
data_dir = "{data_dir}"
trusted_keys = ["{trusted}"]
threads = 1
sync_interval_s = 0.3
long_poll_s = 2
heartbeat_interval_s = 1
telemetry_interval_s = 1
camera = "{camera}"
[source]
kind = "synthetic"
fps = 20
width = 64
height = 48
[health]
window_s = 0.5
min_frames = 3
max_latency_ms = 50
[shadow]
share = 0.5
cpu_budget = 0.5
report_interval_s = 1.5
alarm_labels = ["scratch", "crack"]
[capture]
enabled = true
low_confidence = 0.5
novelty = 2.0
storage_bytes = 200000
upload_bytes = 50000
"""
CRITERIA = {"min_agreement": 0.8, "max_alarm_rate_shift": 0.3, "max_latency_p95_ms": 200, "min_shadow_frames": 20}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, bundles, publisher: PrivateKey) -> Iterator[FleetServer]:  # noqa: F811
    from edgewise.registry import open_store

    root = tmp_path_factory.mktemp("gate")
    store = open_store(root / "store")
    better = models.make_archive(root, "v2-better", models.classifier(root / "better.onnx", seed=1), publisher)
    for archive, _manifest in [bundles["v1"], bundles["scratch"], better]:
        store.publish(archive.with_suffix(""))
    (root / "publisher.pub").write_text(publisher.public.b64 + "\n")
    server = FleetServer(root, root / "store", [root / "publisher.pub"])
    server.start()
    yield server
    server.stop()


def enroll(fleet: FleetServer, root: Path, name: str, publisher: PrivateKey) -> tuple[Agent, str]:  # noqa: F811
    data_dir = root / name
    result = subprocess.run(
        [sys.executable, "-m", "edgewise", "agent", "enroll", "--server", fleet.url, "--token",
         fleet.enrollment_token(), "--data-dir", str(data_dir), "--name", name],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    config = root / f"{name}.toml"
    config.write_text(AGENT_TOML.format(data_dir=data_dir, trusted=publisher.public.b64, camera=f"{name}-cam"))
    return Agent(data_dir, config), result.stdout.split("enrolled as ")[1].split(";")[0]


def deploy(fleet: FleetServer, ref: str, ids: list[str], **strategy: Any) -> str:
    with fleet.api() as api:
        response = api.post("/deployments", json={"bundle": ref, "selector": {"ids": ids}, "strategy": strategy})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


def deployment(fleet: FleetServer, deployment_id: str) -> dict[str, Any]:
    with fleet.api() as api:
        return dict(api.get(f"/deployments/{deployment_id}").json())


def serving(agents: list[Agent], version: str) -> bool:
    def one(agent: Agent) -> bool:
        status = agent.status()
        return (status.get("current_bundle") or {}).get("version") == version and status["health"]["status"] == "ok"
    return all(one(a) for a in agents)


def test_the_gate_rolls_back_a_worse_candidate_and_promotes_a_better_one(fleet, tmp_path, publisher) -> None:  # noqa: F811
    (a, id_a), (b, id_b) = enroll(fleet, tmp_path, "cam-a", publisher), enroll(fleet, tmp_path, "cam-b", publisher)
    agents = [a, b]
    for agent in agents:
        agent.start()
    try:
        deploy(fleet, "parts:v1", [id_a, id_b])
        wait_until(lambda: serving(agents, "v1"), 90, "both serving v1")

        worse = deploy(fleet, "parts:scratch", [id_a, id_b], name="canary", percent=50, shadow_share=1.0,
                       quality=CRITERIA, gate_timeout_s=120)
        assert deployment(fleet, worse)["status"] == "shadowing"
        wait_until(lambda: deployment(fleet, worse)["status"] == "rolled_back", 90, "the worse candidate rolled back")
        detail = deployment(fleet, worse)
        assert detail["reason"].startswith("quality gate failed") and "agreement" in detail["reason"], detail
        assert any(h["to_state"] == "rolled_back" and "agreement" in h["detail"] for h in detail["history"])
        assert serving(agents, "v1")  # the candidate never served
        assert all("scratch" not in (x.update_record().get("history") or []) for x in agents)
        with httpx.Client(base_url=fleet.url, headers={"Authorization": f"Bearer {fleet.token}"}) as ui:
            assert "quality gate failed" in ui.get(f"/ui/deployments/{worse}").text
            assert "v1 → scratch" in ui.get("/ui/shadow").text

        better = deploy(fleet, "parts:v2-better", [id_a, id_b], name="canary", percent=50, shadow_share=1.0,
                        quality=CRITERIA, gate_timeout_s=120)
        wait_until(lambda: deployment(fleet, better)["status"] == "completed", 120, "the better candidate promoted")
        detail = deployment(fleet, better)
        assert any(h["to_state"] == "promoted" and "quality gate passed" in h["detail"] for h in detail["history"])
        wait_until(lambda: serving(agents, "v2-better"), 60, "both serving the better candidate")

        with fleet.api() as api:
            page = api.get("/captures", params={"limit": 1000}).json()
        assert page["total"] > 0 and {c["device_id"] for c in page["captures"]} <= {id_a, id_b}
        for agent in agents:  # the upload budget is exact on the server's side too
            stats = agent.status()["extra"]["capture"]
            assert 0 < stats["uploaded_bytes_in_window"] <= 50_000 and stats["stored_bytes"] <= 200_000
        with httpx.Client(base_url=fleet.url, headers={"Authorization": f"Bearer {fleet.token}"}) as ui:
            assert f"/api/v1/captures/{page['captures'][0]['device_id']}/" in ui.get("/ui/captures").text
        exported = subprocess.run([sys.executable, "-m", "edgewise", "capture", "export", "--server", fleet.url,
                                   "--token", fleet.token, "--out", str(tmp_path / "dataset")],
                                  cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert exported.returncode == 0, exported.stderr
        assert len(list((tmp_path / "dataset" / "train").rglob("*.jpg"))) > 0
    finally:
        for agent in agents:
            agent.stop()
