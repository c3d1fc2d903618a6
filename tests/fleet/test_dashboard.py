"""The dashboard in headless Chromium (Debian's, through Playwright): sign in, see a device and a deployment."""

from __future__ import annotations

import base64
import time

import pytest

from tests.fleet.conftest import RunningServer
from tests.services import CHROMIUM_ARGS


@pytest.fixture
def populated(sqlite_fleet: RunningServer, bundles) -> tuple[RunningServer, str, str]:
    device = sqlite_fleet.device("front-door")
    published = bundles.publish()
    device.report(current=published, health="ok")
    now = time.time()
    telemetry = [{"seq": 100 + i, "ts": now - 60 + i * 10, "fps": 10.0 + i, "cpu_percent": 20.0 + 3 * i,
                  "latency_p50_ms": 15.0} for i in range(6)]
    jpeg = base64.b64encode(b"\xff\xd8\xff\xe0fake\xff\xd9").decode()
    events = [{"seq": 1, "ts": now, "type": "intrusion", "priority": "alarm", "label": "person", "score": 0.93,
               "snapshot_jpeg_b64": jpeg}]
    assert device.request("POST", "/device/ingest", {"events": events, "telemetry": telemetry}).status_code == 200
    deployment = sqlite_fleet.operator("deploy").post("/deployments", json={"bundle": published.ref}).json()
    return sqlite_fleet, device.device_id, deployment["id"]


def test_dashboard_pages_show_device_and_deployment(populated, chromium_executable: str) -> None:
    from playwright.sync_api import sync_playwright

    fleet, device_id, deployment_id = populated
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(fleet.url + "/ui/")
        assert page.url.endswith("/ui/login")  # not signed in: sent to the sign-in form
        page.fill("#token", "ewo_wrong")
        page.click("button[type=submit]")
        assert "unknown or revoked" in page.inner_text(".error")
        page.fill("#token", fleet.admin_token)
        page.click("button[type=submit]")
        page.wait_for_url(fleet.url + "/ui/")
        assert page.inner_text("#total") == "1" and page.inner_text("#online") == "1"
        assert "intrusion" in page.inner_text("body")

        # a failed health check shows which check failed, its measured value and the limit
        reason = "health check 'latency' failed: p95 412.0 ms over the limit 250.0 ms"
        garage = fleet.device("garage")
        garage.report(health="failed", update_state="failed", update_error=reason)
        page.goto(fleet.url + "/ui/devices")
        assert reason in page.inner_text("main")
        page.goto(fleet.url + f"/ui/devices/{garage.device_id}")
        assert f"last update failed: {reason}" in page.inner_text(".update-error")

        page.goto(fleet.url + "/ui/devices")
        page.click("text=front-door")
        page.wait_for_url(f"**/ui/devices/{device_id}")
        assert "1.0.0" in page.inner_text("main")
        assert page.locator("svg polyline").count() >= 2  # fps and CPU charts have data
        assert "person" in page.inner_text("#events")
        assert page.locator("img.thumb").count() == 1

        page.goto(fleet.url + "/ui/deployments")
        row = page.locator(f'tr[data-id="{deployment_id}"]')
        assert "rolling" in row.inner_text() or "completed" in row.inner_text()
        page.wait_for_function(  # live progress: the polled row shows the device's success
            f"document.querySelector('tr[data-id=\"{deployment_id}\"] .progress').textContent.includes('succeeded=1')",
            timeout=10_000)
        page.click(f"text={deployment_id}")
        assert "detector:1.0.0" in page.inner_text("main")
        page.goto(fleet.url + "/ui/bundles")
        assert "detector:1.0.0" in page.inner_text("#bundles")
        browser.close()
