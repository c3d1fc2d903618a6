"""A hostile client beside real devices: malformed unauthenticated requests as fast as one process
can send them must not starve the devices (>= 99 % of their requests succeed, p99 within 3x)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tests.fleet.conftest import DeviceClient, RunningServer

HOSTILE = textwrap.dedent("""
    import itertools, random, sys, time
    import httpx
    url, seconds = sys.argv[1], float(sys.argv[2])
    shapes = [
        {"X-Edgewise-Device": "dev-0", "X-Edgewise-Timestamp": "9" * 400, "X-Edgewise-Nonce": "ab" * 16,
         "X-Edgewise-Signature": "A" * 86 + "=="},
        {"X-Edgewise-Device": "dev-x", "X-Edgewise-Timestamp": "1", "X-Edgewise-Nonce": "n"},
        {},
        {"X-Edgewise-Device": "x" * 5000},
    ]
    sent = 0
    end = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=5) as client:
        for shape in itertools.cycle(shapes):
            if time.monotonic() > end:
                break
            headers = dict(shape)
            if headers.get("X-Edgewise-Timestamp") == "1":  # well-formed, fresh, with a signature that is wrong
                headers.update({"X-Edgewise-Timestamp": str(int(time.time())),
                                "X-Edgewise-Device": f"dev-{random.getrandbits(64):016x}",
                                "X-Edgewise-Nonce": f"{random.getrandbits(128):032x}",
                                "X-Edgewise-Signature": "B" * 86 + "=="})
            try:
                client.put("/api/v1/device/state", content=b'{"health": {"status": "ok"}}', headers=headers)
                sent += 1
            except httpx.HTTPError:
                pass
    print(sent)
""")


def _heartbeat(devices: list[DeviceClient], seconds: float) -> tuple[list[float], int, int]:
    """Every device heartbeats every 50 ms for `seconds`: (latencies, successes, requests)."""
    latencies: list[float] = []
    counts = [0, 0]
    lock = threading.Lock()

    def run(device: DeviceClient) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.monotonic()
            try:
                ok = device.report(health="ok").status_code == 204
            except Exception:
                ok = False
            with lock:
                latencies.append(time.monotonic() - started)
                counts[0] += ok
                counts[1] += 1
            time.sleep(0.05)

    threads = [threading.Thread(target=run, args=(device,)) for device in devices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, counts[0], counts[1]


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_devices_are_served_while_a_hostile_client_hammers_the_server(fleet: RunningServer) -> None:
    devices = [fleet.device(f"cam-{i}") for i in range(6)]
    _heartbeat(devices, 1.0)  # warm up: connections open, each device proven from this address
    quiet, quiet_ok, quiet_sent = _heartbeat(devices, 6.0)
    hostile = subprocess.Popen([sys.executable, "-c", HOSTILE, fleet.url, "9"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # the hostile client is at full speed (and over its failure budget) before measuring
        loud, loud_ok, loud_sent = _heartbeat(devices, 6.0)
    finally:
        out, _ = hostile.communicate(timeout=30)
    hostile_sent = int(out.strip() or 0)
    print(f"hostile client: {hostile_sent} requests; devices: {loud_ok}/{loud_sent} served under attack, "  # -s
          f"p99 {_p99(loud) * 1000:.1f} ms vs {_p99(quiet) * 1000:.1f} ms without "
          f"({_p99(loud) / _p99(quiet):.2f}x); limiter refused {fleet.ctx.auth_limiter.refused}")
    assert quiet_ok == quiet_sent
    assert hostile_sent > 10 * loud_sent, f"the hostile client sent only {hostile_sent} requests"
    assert loud_ok >= 0.99 * loud_sent, f"{loud_sent - loud_ok} of {loud_sent} device requests failed"
    assert _p99(loud) <= 3 * _p99(quiet), f"p99 {_p99(loud) * 1000:.1f} ms under attack vs " \
                                          f"{_p99(quiet) * 1000:.1f} ms without"
    assert fleet.ctx.device_requests.restarts == 0
    assert fleet.ctx.auth_limiter.refused > 0  # the guard, not luck, kept the devices served
