"""What the rollout engine makes of a device's report, driven by a scripted device (no agent process)."""

from __future__ import annotations

import pytest

from edgewise.agent.client import DeviceClient
from edgewise.agent.identity import load_identity
from edgewise.core.wire import Health, InstalledBundle, ReportedState, UpdateProgress
from tests.reliability.harness import deploy, deployment, enroll_devices

pytestmark = pytest.mark.reliability


def test_a_canary_still_in_its_health_check_has_not_succeeded(live_server, tmp_path, publisher) -> None:
    (device,) = enroll_devices(live_server, tmp_path, 1, publisher.public.b64, "scripted")
    deployment_id = deploy(live_server, "parts:v2", [device], name="canary", percent=100, bake_s=60)
    digest = deployment(live_server, deployment_id)["bundle_digest"]
    identity = load_identity(device.agent.data_dir)
    client = DeviceClient(live_server.url, identity.device_id, identity.key, 5)
    try:
        client.report_state(ReportedState(
            current_bundle=InstalledBundle(name="parts", version="v2", digest=digest),
            update=UpdateProgress(state="health-check", deployment_id=deployment_id, target_digest=digest),
            health=Health(status="ok", detail="serving parts:v2"),
        ))
    finally:
        client.close()
    targets = deployment(live_server, deployment_id)["targets"]
    assert [t["status"] for t in targets] == ["updating"]
