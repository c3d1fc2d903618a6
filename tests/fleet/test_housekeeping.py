"""Retention and offline detection, the work no request triggers."""

from __future__ import annotations

import time

from sqlalchemy import update

from edgewise.fleet.db.models import Device
from edgewise.fleet.housekeeping import Housekeeper
from tests.fleet.conftest import RunningServer


def test_retention_deletes_only_old_rows(sqlite_fleet: RunningServer) -> None:
    device = sqlite_fleet.device()
    now = time.time()
    old, new = now - 40 * 86400, now - 3600
    batch = {"events": [{"seq": 1, "ts": old, "type": "x"}, {"seq": 2, "ts": new, "type": "x"}],
             "telemetry": [{"seq": 3, "ts": old, "fps": 1.0}, {"seq": 4, "ts": new, "fps": 2.0}]}
    assert device.request("POST", "/device/ingest", batch).status_code == 200
    removed = Housekeeper(sqlite_fleet.ctx).apply_retention(now)  # default retention: 30 days
    assert removed == 2
    reader = sqlite_fleet.operator("read")
    assert [e["seq"] for e in reader.get("/events").json()["items"]] == [2]
    assert [t["seq"] for t in reader.get("/telemetry").json()] == [4]
    # A retried batch of deleted items is acknowledged (not an error), stored again only if still in range.
    assert device.request("POST", "/device/ingest", batch).json()["acked"] == [1, 2, 3, 4]


def test_silent_device_goes_offline_and_is_announced(sqlite_fleet: RunningServer) -> None:
    device = sqlite_fleet.device()
    device.report()
    queue = sqlite_fleet.ctx.notifier.subscribe()
    with sqlite_fleet.ctx.db.session() as session:
        session.execute(update(Device).where(Device.id == device.device_id).values(last_seen=time.time() - 34.5))
    reader = sqlite_fleet.operator("read")
    time.sleep(0.6)  # now silent for longer than offline_after_s (35 s)
    assert reader.get(f"/devices/{device.device_id}").json()["online"] is False
    assert reader.get("/devices", params={"online": "false"}).json()["total"] == 1
    deadline = time.monotonic() + 10
    messages: list[str] = []
    while time.monotonic() < deadline and not any('"online": false' in m for m in messages):
        time.sleep(0.1)
        while not queue.empty():
            messages.append(queue.get_nowait())
    assert any(device.device_id in m and '"online": false' in m for m in messages)
