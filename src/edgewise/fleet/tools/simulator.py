"""`edgewise simulate`: many lightweight simulated devices in one process, speaking the real protocol.

Each device enrolls with its own ed25519 key, long-polls its desired state, reports state (the
heartbeat), sends batched events and telemetry, and accepts updates by reporting the new bundle as
installed (or as failed, for digests listed in `failing_digests`). It uses only `edgewise.core`
and a minimal HTTP client (`light_http`), so that a thousand devices cost the machine little
beside the server they measure. Latencies of every request are recorded for the benchmark.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from edgewise.core.auth import signed_headers
from edgewise.core.errors import AuthError, ServiceUnavailable
from edgewise.core.signing import PrivateKey
from edgewise.core.wire import API_PREFIX
from edgewise.fleet.tools.light_http import Connection, Reply, TransportError

_TLS = ssl.create_default_context()  # shared: building one per device costs milliseconds each


@dataclass
class SimulationConfig:
    server: str
    devices: int
    enroll_token: str
    duration_s: float = 60.0
    event_rate: float = 1.0
    heartbeat_s: float = 10.0
    batch_interval_s: float = 5.0
    long_poll_s: float = 30.0
    failing_digests: list[str] = field(default_factory=list)
    enroll_concurrency: int = 50
    start_spread_s: float = 0.0  # devices start at random points of this window, as a real fleet does


@dataclass
class SimulationStats:
    started: float = field(default_factory=time.monotonic)
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    events_acked: int = 0
    errors: int = 0
    updates: dict[str, float] = field(default_factory=dict)  # device id -> when it reported the new bundle

    def record(self, kind: str, elapsed_s: float) -> None:
        self.latencies_ms.setdefault(kind, []).append(elapsed_s * 1000.0)

    def percentile(self, q: float, kinds: tuple[str, ...] = ("state", "ingest", "desired")) -> float:
        values = sorted(v for k in kinds for v in self.latencies_ms.get(k, []))
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(q / 100.0 * len(values)))]

    def summary(self) -> str:
        elapsed = time.monotonic() - self.started
        count = sum(len(v) for v in self.latencies_ms.values())
        return (f"{count} requests in {elapsed:.0f}s, {self.events_acked} events acked "
                f"({self.events_acked / max(elapsed, 1e-9):.0f}/s), p50 {self.percentile(50):.1f} ms, "
                f"p99 {self.percentile(99):.1f} ms, {len(self.updates)} device(s) updated, {self.errors} error(s)")


class SimulatedDevice:
    def __init__(self, index: int, config: SimulationConfig, stats: SimulationStats) -> None:
        self.index = index
        # Two connections, like a real device: one held by the long poll, one for everything else.
        self.http = Connection(config.server, _TLS)
        self.poll_http = Connection(config.server, _TLS)
        self.config = config
        self.stats = stats
        self.key = PrivateKey.generate()
        self.device_id = ""
        self.seq = 0
        self.current: dict[str, str] | None = None
        self.update: dict[str, Any] = {"state": "idle"}
        self.health = "ok"

    async def _send(self, kind: str, method: str, path: str, body: Any = None,
                    headers: dict[str, str] | None = None, timeout: float = 30.0) -> Reply:
        content = b"" if body is None else json.dumps(body).encode()
        full = API_PREFIX + path
        all_headers = {**signed_headers(self.device_id, self.key, method, full, content), **(headers or {})}
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        started = time.monotonic()
        http = self.poll_http if kind == "desired" else self.http
        try:
            response = await http.request(method, full, content, all_headers, timeout)
        except TransportError:
            self.stats.errors += 1
            return Reply(599)  # no answer: the loops carry on as a device would, and retry later
        if kind != "desired":  # long polls wait on purpose; their latency is measured without `wait`
            self.stats.record(kind, time.monotonic() - started)
        if response.status_code >= 400:
            self.stats.errors += 1
        return response

    async def enroll(self) -> None:
        body = {"token": self.config.enroll_token, "public_key": self.key.public.b64, "name": f"sim-{self.index:05d}",
                "hardware": "x86-host", "agent_version": "sim"}  # tags come from the token
        started = time.monotonic()
        try:
            response = await self.http.request("POST", f"{API_PREFIX}/enroll", json.dumps(body).encode(),
                                               {"Content-Type": "application/json"})
        except TransportError as error:
            raise ServiceUnavailable(f"cannot reach the fleet server at {self.config.server}: {error}",
                                     "start it with `edgewise server` and check --server") from None
        self.stats.record("enroll", time.monotonic() - started)
        if response.status_code != 200:
            try:
                problem = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                problem = response.text[:200]
            raise AuthError(f"simulated device {self.index} could not enroll: {problem}",
                            "pass an enrollment token with at least --devices uses")
        self.device_id = response.json()["device_id"]

    async def report(self) -> None:
        body = {"agent_version": "sim", "hardware": "x86-host", "current_bundle": self.current,
                "update": self.update, "health": {"status": self.health}}
        await self._send("state", "PUT", "/device/state", body)

    async def heartbeat_loop(self, until: float) -> None:
        await asyncio.sleep(random.uniform(0, self.config.heartbeat_s))  # spread devices over the period
        while time.monotonic() < until:
            await self.report()
            await asyncio.sleep(self.config.heartbeat_s)

    async def ingest_loop(self, until: float) -> None:
        await asyncio.sleep(random.uniform(0, self.config.batch_interval_s))
        while time.monotonic() < until:
            count = max(1, round(self.config.event_rate * self.config.batch_interval_s))
            now = time.time()
            events = []
            for _ in range(count):
                self.seq += 1
                events.append({"seq": self.seq, "ts": now, "type": "detection", "label": "person",
                               "score": round(random.random(), 3)})
            self.seq += 1
            telemetry = [{"seq": self.seq, "ts": now, "fps": 15.0, "latency_p50_ms": 20.0, "cpu_percent": 30.0}]
            response = await self._send("ingest", "POST", "/device/ingest", {"events": events, "telemetry": telemetry})
            if response.status_code == 200:
                self.stats.events_acked += len(events)
            await asyncio.sleep(self.config.batch_interval_s)

    async def desired_loop(self, until: float) -> None:
        etag: str | None = None
        while True:
            left = until - time.monotonic()
            if left < 1.0:  # a poll shorter than the server's resolution would just spin
                await asyncio.sleep(max(0.0, left))
                return
            wait = min(self.config.long_poll_s, left)
            headers = {"If-None-Match": etag} if etag else None
            started = time.monotonic()
            response = await self._send("desired", "GET", f"/device/desired?wait={wait:.0f}", headers=headers,
                                        timeout=wait + 30)
            if etag is None:
                self.stats.record("desired", time.monotonic() - started)
            if response.status_code == 200:
                etag = response.headers.get("etag")
                await self.apply(response.json())
            elif response.status_code != 304:
                await asyncio.sleep(1.0)

    async def apply(self, desired: dict[str, Any]) -> None:
        bundle = desired.get("bundle")
        if bundle is None or (self.current and self.current["digest"] == bundle["digest"]):
            return
        target = {"state": "download", "deployment_id": desired.get("deployment_id"),
                  "target_digest": bundle["digest"]}
        self.update = target
        await self.report()
        if bundle["digest"] in self.config.failing_digests:
            self.update = {**target, "state": "failed", "error": "simulated health-check failure"}
        else:
            self.current = {"name": bundle["name"], "version": bundle["version"], "digest": bundle["digest"]}
            self.update = {**target, "state": "idle"}
            self.stats.updates[self.device_id] = time.monotonic()
        await self.report()

    async def run(self, until: float) -> None:
        await asyncio.sleep(random.uniform(0, self.config.start_spread_s))
        await self.report()
        await asyncio.gather(self.heartbeat_loop(until), self.ingest_loop(until), self.desired_loop(until))


async def enroll_all(config: SimulationConfig, stats: SimulationStats) -> list[SimulatedDevice]:
    devices = [SimulatedDevice(i, config, stats) for i in range(config.devices)]
    gate = asyncio.Semaphore(config.enroll_concurrency)

    async def enroll(device: SimulatedDevice) -> None:
        async with gate:
            await device.enroll()

    await asyncio.gather(*(enroll(d) for d in devices))
    return devices




async def close_all(devices: list[SimulatedDevice]) -> None:
    await asyncio.gather(*(c.close() for device in devices for c in (device.http, device.poll_http)))


async def run_simulation(config: SimulationConfig, stats: SimulationStats | None = None) -> SimulationStats:
    stats = stats or SimulationStats()
    devices = await enroll_all(config, stats)
    try:
        stats.started = time.monotonic()
        until = stats.started + config.duration_s
        await asyncio.gather(*(device.run(until) for device in devices))
    finally:
        await close_all(devices)
    return stats
