"""The events page in headless Chromium, over SQLite and PostgreSQL: detection events posted through
the device API show in the table with their frames and boxes, filter by class, page, and count per
class on a chart; a fresh fleet says how to get events. And the frame endpoint's access and caching."""

from __future__ import annotations

import base64
import time
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from tests.fleet.conftest import DeviceClient, RunningServer
from tests.services import CHROMIUM_ARGS

BICYCLES = 50  # with the others, more events than one page (50) holds


def frame_jpeg_b64() -> str:
    """A real JPEG of a frame with a detection's box drawn, as a device's snapshot is."""
    frame = np.full((120, 160, 3), 60, np.uint8)
    cv2.rectangle(frame, (40, 20), (100, 110), (0, 0, 255), 2)
    ok, encoded = cv2.imencode(".jpg", frame)
    assert ok
    return base64.b64encode(encoded.tobytes()).decode()


def post_events(device: DeviceClient, events: list[dict[str, Any]]) -> None:
    for seq, event in enumerate(events, start=1):
        event.setdefault("seq", seq)
    response = device.request("POST", "/device/ingest", {"events": events})
    assert response.status_code == 200, response.text
    assert response.json()["duplicates"] == 0


def door_events(now: float) -> list[dict[str, Any]]:
    """What the agent sends for a crowded zone with `snapshot = true` (the event and its snapshot
    companion) and for three people crossing a door line (running counts in `in`/`out`)."""
    crowded = {"rule": "crowded-bay", "zone": "bay", "track_ids": [3, 4], "boxes": [[40, 20, 100, 110], [5, 5, 30, 60]],
               "inside": 2, "held_s": 10.0}
    zone = {"ts": now - 60, "type": "zone_count", "priority": "alarm", "label": "person", "data": crowded}
    companion = {**zone, "type": "snapshot", "priority": "snapshot", "snapshot_jpeg_b64": frame_jpeg_b64()}
    crossings = [{"ts": now - 50 + i, "type": "line_cross", "priority": "event", "label": "person", "score": 0.8,
                  "data": {"rule": "door-count", "line": "door", "track_id": 12 + i, "box": [200.5, 80, 260, 210],
                           "direction": direction, "in": counted_in, "out": counted_out}}
                 for i, (direction, counted_in, counted_out) in enumerate([("in", 1, 0), ("out", 1, 1), ("in", 2, 1)])]
    return [zone, companion, *crossings]


def bay_events(now: float) -> list[dict[str, Any]]:
    """A dwell without a snapshot (its box listed as text), an alarm carrying its own snapshot, and
    older bicycles enough to need a second page."""
    dwell = {"ts": now - 40, "type": "dwell", "priority": "alarm", "label": "car", "score": 0.9,
             "data": {"rule": "parked-too-long", "zone": "bay", "track_id": 9, "box": [10, 20, 150, 110],
                      "dwell_s": 312.0}}
    truck = {"ts": now - 30, "type": "alarm", "priority": "alarm", "label": "truck", "score": 0.95,
             "data": {"rule": "trucks"}, "snapshot_jpeg_b64": frame_jpeg_b64()}
    bicycles = [{"ts": now - 900 - 20 * i, "type": "alarm", "priority": "alarm", "label": "bicycle", "score": 0.7,
                 "data": {"rule": "bikes"}} for i in range(BICYCLES)]
    return [dwell, truck, *bicycles]


def sign_in(page: Any, fleet: RunningServer) -> None:
    page.goto(fleet.url + "/ui/login")
    page.fill("#token", fleet.admin_token)
    page.click("button[type=submit]")
    page.wait_for_url(fleet.url + "/ui/")


def rows(page: Any) -> list[dict[str, str]]:
    return page.eval_on_selector_all("#events tr.event", """rows => rows.map(r => ({
        id: r.dataset.id, type: r.querySelector('.type').textContent, label: r.querySelector('.label').textContent,
        text: r.textContent}))""")


def test_events_page_lists_filters_pages_and_counts(fleet: RunningServer, chromium_executable: str) -> None:
    from playwright.sync_api import sync_playwright

    door, bay = fleet.device("front-door"), fleet.device("loading-bay")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        sign_in(page, fleet)
        page.click("header nav >> text=Events")  # linked from every page's navigation
        page.wait_for_url("**/ui/events")
        empty = page.inner_text("#empty-state")  # a fresh fleet says why it is empty and how to fill it
        assert "No events yet" in empty and "snapshot = true" in empty
        assert "no events in this range" in page.text_content("#class-counts")

        now = time.time()
        post_events(door, door_events(now))
        post_events(bay, bay_events(now))
        page.reload()
        first = rows(page)
        assert len(first) == 50 and page.locator("#next-page").count() == 1
        newest = first[:5]  # the companion snapshot is not a row: its frame is in its event's row
        assert [r["type"] for r in newest] == ["alarm", "dwell", "line_cross", "line_cross", "line_cross"]
        assert "loading-bay" in newest[0]["text"] and "front-door" in newest[2]["text"]  # names, not ids
        assert "#9 [10, 20, 150, 110]" in newest[1]["text"]  # boxes as text where there is no frame
        assert "line door · direction in · in 2 · out 1" in newest[2]["text"]

        frames = page.locator("#events img.frame")
        assert frames.count() == 2  # the truck's own snapshot, the crowded zone's companion
        for index in range(frames.count()):
            frames.nth(index).scroll_into_view_if_needed()
        page.wait_for_function("""() => [...document.querySelectorAll('#events img.frame')]
            .every(img => img.complete && img.naturalWidth === 160 && img.naturalHeight === 120)""", timeout=10_000)

        chart = page.locator("svg#class-counts")
        labels = chart.locator("g.series").evaluate_all("groups => groups.map(g => g.dataset.label)")
        assert labels == ["bicycle", "person", "car", "truck"]  # one series per class, most frequent first
        assert chart.locator("g.series[data-label=person] rect").count() >= 1
        assert chart.locator(".x-axis text").count() >= 4 and "time (UTC" in chart.inner_html()
        assert "events / 1 h" in chart.locator(".y-axis .axis-title").text_content()
        assert "bicycle 50" in page.inner_text("#class-legend")

        lines = page.inner_text("#line-counts")
        assert "front-door\tdoor\t2\t1\t2 / 1" in lines  # 2 in, 1 out in the range; the device's running count

        page.click("#next-page")  # older events, none shown twice
        second = rows(page)
        assert len(second) == 56 - 50 and not {r["id"] for r in second} & {r["id"] for r in first}
        assert {r["label"] for r in second} == {"bicycle"}

        page.goto(fleet.url + "/ui/events")
        page.select_option("select[name=label]", "person")
        page.click("#filters button[type=submit]")
        page.wait_for_url("**label=person**")
        person = rows(page)
        assert len(person) == 4 and {r["label"] for r in person} == {"person"}
        assert page.locator("#next-page").count() == 0
        page.select_option("select[name=range]", "15m")  # the bicycles are older than 15 minutes
        page.select_option("select[name=label]", "bicycle")
        page.click("#filters button[type=submit]")
        assert "No events match these filters in the last 15 min" in page.inner_text("#empty-state")

        page.goto(fleet.url + f"/ui/devices/{door.device_id}")  # the device's own counts
        series = page.locator("svg#class-counts g.series")
        assert series.evaluate_all("groups => groups.map(g => g.dataset.label)") == ["person"]
        assert "door" in page.inner_text("#line-counts")
        page.click("text=last 1 h")
        assert "events / 5 min" in page.locator("svg#class-counts .y-axis .axis-title").text_content()
        browser.close()


@pytest.mark.parametrize("token", [None, "ewo_not-a-token"])
def test_frames_are_refused_without_a_session_or_token(sqlite_fleet: RunningServer, token: str | None) -> None:
    device = sqlite_fleet.device("cam")
    post_events(device, [{"ts": time.time(), "type": "alarm", "label": "person",
                          "snapshot_jpeg_b64": frame_jpeg_b64()}])
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for path in ("/ui/events/1/snapshot.jpg", "/ui/events/999999/snapshot.jpg"):
        response = httpx.get(sqlite_fleet.url + path, headers=headers, follow_redirects=False)
        assert response.status_code in (401, 403), response.text  # refused, not sent to the sign-in form
        assert response.json()["error"]["code"] and "image" not in response.headers["content-type"]


def test_frames_are_cached_and_unknown_ones_are_404(sqlite_fleet: RunningServer) -> None:
    device = sqlite_fleet.device("cam")
    now = time.time()
    post_events(device, [{"ts": now, "type": "alarm", "label": "person", "snapshot_jpeg_b64": frame_jpeg_b64()},
                         {"ts": now, "type": "alarm", "label": "car"}])
    ui = httpx.Client(base_url=sqlite_fleet.url, cookies={"edgewise_token": sqlite_fleet.admin_token})
    with ui:
        frame = ui.get("/ui/events/1/snapshot.jpg")
        assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
        assert frame.content == base64.b64decode(frame_jpeg_b64())
        assert "private" in frame.headers["cache-control"] and "max-age" in frame.headers["cache-control"]
        again = ui.get("/ui/events/1/snapshot.jpg", headers={"If-None-Match": frame.headers["etag"]})
        assert again.status_code == 304 and not again.content
        for path in ("/ui/events/2/snapshot.jpg", "/ui/events/999999/snapshot.jpg"):  # no frame; no such event
            missing = ui.get(path)
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert ui.get("/ui/events/nine/snapshot.jpg").status_code == 422
        assert ui.get("/ui/events?range=3y").status_code == 422  # an unknown range is refused, not a 500
