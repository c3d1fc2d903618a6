"""Fleet server benchmark: N simulated devices over loopback HTTP against a real server.

    .venv/bin/python benchmarks/fleet.py                       # N = 100 and 1000, SQLite and PostgreSQL
    .venv/bin/python benchmarks/fleet.py --devices 100 --db sqlite --duration 20
    .venv/bin/python benchmarks/fleet.py --devices 1000 --single-process   # what the device process buys

Each device heartbeats (PUT state) every 10 s, produces 1 event/s sent in batches every 5 s
(the agent's default sync interval), and long-polls its desired state. Devices connect over a
10 s warm-up, which is not measured; a third of the way into the measured window the benchmark
deploys a signed bundle to every device (all-at-once; the server tells devices at most 100 a
second, slower while it is busy) and times until the last device reports it installed ("-": not
within the window). p50/p99 are over every heartbeat and ingest request of the measured window,
the rollout included.

The server runs as `edgewise server` does (one uvicorn worker and its device process;
`--single-process` adds rows with both in one process); the "ceiling" row is a minimal FastAPI
endpoint under the same request pattern, the best the stack could do, and "p99 / ceiling's" is
each row's p99 as a multiple of the ceiling's at the same N. "server CPU ms/request" is the
CPU time of the server and its device process over the measured window (all threads, long polls
and the rollout included) divided by its heartbeat and ingest requests (Linux only). The
simulated devices use a minimal HTTP client (`edgewise.fleet.tools.light_http`) so that the load
generator, which shares the machine's cores with the server, costs a fifth of what httpx would.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.services import create_database, free_port, start_postgres, wait_for_port  # noqa: E402

from edgewise.core.bundle import create_bundle, sign_bundle  # noqa: E402
from edgewise.core.manifest import InputSpec, Manifest, Variant  # noqa: E402
from edgewise.core.signing import PrivateKey  # noqa: E402
from edgewise.core.wire import API_PREFIX  # noqa: E402
from edgewise.fleet.auth import create_operator_token  # noqa: E402
from edgewise.fleet.db import open_database  # noqa: E402
from edgewise.fleet.devices.enrollment import create_enrollment_token  # noqa: E402
from edgewise.fleet.gateway.gc_tuning import tune_gc  # noqa: E402
from edgewise.fleet.tools.light_http import Connection, TransportError  # noqa: E402
from edgewise.fleet.tools.simulator import SimulationConfig, SimulationStats, close_all, enroll_all  # noqa: E402

# Devices connect at random points of the first heartbeat period, as a running fleet has; that
# ramp is not measured (the numbers are for a fleet held, not for a thousand devices arriving).
WARM_UP_S = 10.0

CEILING_APP = '''
from fastapi import FastAPI, Request
app = FastAPI()
@app.api_route("/{path:path}", methods=["GET", "PUT", "POST"])
async def echo(path: str, request: Request) -> dict:
    await request.body()
    return {"ok": True}
'''


@dataclass
class Row:
    target: str
    devices: int
    events_per_s: float
    p50_ms: float
    p99_ms: float
    rollout_s: float | None
    errors: int
    server_cpu_ms: float | None  # the server process's CPU per heartbeat/ingest request, all its work included


class ServerCpu:
    """CPU time of the server process and its children (the device process) over the measured
    window (Linux: /proc; elsewhere, none)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.started: float | None = None
        self.used_s: float | None = None

    @staticmethod
    def _stat(pid: int | str) -> list[str] | None:
        try:  # the command name, in parentheses, may hold spaces: split after it
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None

    def _now(self) -> float | None:
        own = self._stat(self.pid)
        if own is None:
            return None
        ticks = int(own[11]) + int(own[12])  # utime and stime, in clock ticks
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and entry.name != str(self.pid):
                fields = self._stat(entry.name)
                if fields is not None and fields[1] == str(self.pid):  # a child of the server
                    ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def start(self) -> None:
        self.started = self._now()

    def stop(self) -> None:
        now = self._now()
        if now is not None and self.started is not None:
            self.used_s = now - self.started

    def per_request_ms(self, stats: SimulationStats, kinds: tuple[str, ...]) -> float | None:
        requests = sum(len(stats.latencies_ms.get(kind, [])) for kind in kinds)
        return None if self.used_s is None or not requests else 1000 * self.used_s / requests


def make_bundle(workdir: Path, key: PrivateKey) -> tuple[Path, str]:
    from edgewise.registry import open_store

    model = workdir / "model.onnx"
    model.write_bytes(os.urandom(64 * 1024))
    manifest = Manifest(name="bench", version="1.0.0", labels=["x"], input=InputSpec(shape=[1, 3, 32, 32],
                        resize=[32, 32]), variants=[Variant(name="cpu", file="model.onnx")])
    create_bundle(workdir / "bundle", manifest, {"model.onnx": model})
    sign_bundle(workdir / "bundle", key)
    store = workdir / "store"
    published = open_store(store).publish(workdir / "bundle")
    return store, published.ref


def start_process(argv: list[str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_port(port, 60, process)
    return process


async def warm_up(stats: SimulationStats, seconds: float, cpu: ServerCpu | None = None) -> None:
    """Measure from here on: the devices have connected (they start spread over `seconds`)."""
    await asyncio.sleep(seconds)
    stats.latencies_ms.clear()
    stats.events_acked = 0
    stats.started = time.monotonic()
    if cpu is not None:
        cpu.start()


async def drive(config: SimulationConfig, deploy: tuple[str, str, float] | None, cpu: ServerCpu | None = None
                ) -> tuple[SimulationStats, float | None]:
    """Run the devices; with `deploy=(admin_token, bundle_ref, at_s)` roll the bundle out mid-run.

    `config.duration_s` includes a warm-up of `config.start_spread_s`, which is not measured.
    """
    stats = SimulationStats()
    devices = await enroll_all(config, stats)
    tune_gc()  # the load generator's own pauses would count as the server's latency
    until = time.monotonic() + config.duration_s
    runs = asyncio.gather(*(device.run(until) for device in devices))
    await warm_up(stats, config.start_spread_s, cpu)
    rollout_s: float | None = None
    if deploy is not None:
        token, ref, at_s = deploy
        await asyncio.sleep(at_s)
        started = time.monotonic()
        # In a thread, not on this event loop: building the client and reading the deployment it
        # returns (every target, every history entry) would stall every simulated device here.
        await asyncio.to_thread(start_rollout, config.server, token, ref)
        while len(stats.updates) < config.devices and time.monotonic() < until:
            await asyncio.sleep(0.05)
        if len(stats.updates) == config.devices:
            rollout_s = max(stats.updates.values()) - started
    await runs
    if cpu is not None:
        cpu.stop()
    await close_all(devices)
    return stats, rollout_s


def start_rollout(server: str, token: str, ref: str) -> None:
    with httpx.Client(base_url=server + API_PREFIX, timeout=120, headers={"Authorization": f"Bearer {token}"}) as op:
        op.post("/deployments", json={"bundle": ref, "selector": {}}).raise_for_status()


async def drive_ceiling(url: str, devices: int, duration_s: float, cpu: ServerCpu | None = None
                        ) -> SimulationStats:
    """The same request pattern (heartbeat 10 s, batch every 5 s) against the minimal endpoint,
    measured after the same warm-up."""
    import json
    import random

    stats = SimulationStats()
    body = json.dumps({"events": [{"seq": i, "ts": 0.0, "type": "detection"} for i in range(5)]}).encode()

    async def loop(kind: str, period: float, connection: Connection) -> None:
        await asyncio.sleep(random.uniform(0, period))
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                response = await connection.request("POST", f"/{kind}", body, {"Content-Type": "application/json"})
            except TransportError:
                stats.errors += 1
                await asyncio.sleep(period)
                continue
            stats.record(kind, time.monotonic() - started)
            if kind == "ingest" and response.status_code == 200:
                stats.events_acked += 5
            await asyncio.sleep(period)

    connections = [Connection(url) for _ in range(devices)]
    until = time.monotonic() + WARM_UP_S + duration_s
    await asyncio.gather(warm_up(stats, WARM_UP_S, cpu),
                         *(loop(k, p, c) for c in connections for k, p in (("state", 10.0), ("ingest", 5.0))))
    if cpu is not None:
        cpu.stop()
    await asyncio.gather(*(c.close() for c in connections))
    return stats


def run_fleet(db_kind: str, devices: int, duration_s: float, workdir: Path, pg_url: str | None,
              single_process: bool = False) -> Row:
    key = PrivateKey.generate()
    (workdir / "key.pub").write_text(key.public.b64)
    store, ref = make_bundle(workdir, key)
    db_url = f"sqlite:///{workdir / 'fleet.db'}" if db_kind == "sqlite" else str(pg_url)
    database = open_database(db_url)
    admin = create_operator_token(database, "admin", "bench")
    enroll, _row = create_enrollment_token(database, ttl_s=3600, uses=devices)
    database.dispose()
    port = free_port()
    server = start_process([sys.executable, "-m", "edgewise", "server", "--db", db_url, "--store", str(store),
                            "--port", str(port), "--trust", str(workdir / "key.pub"), "--log-level", "warning",
                            *(["--single-process"] if single_process else [])], port)
    try:
        config = SimulationConfig(server=f"http://127.0.0.1:{port}", devices=devices, enroll_token=enroll,
                                  duration_s=WARM_UP_S + duration_s, event_rate=1.0, heartbeat_s=10.0,
                                  batch_interval_s=5.0, start_spread_s=WARM_UP_S)
        cpu = ServerCpu(server.pid)
        stats, rollout_s = asyncio.run(drive(config, (admin, ref, duration_s / 3), cpu))
    finally:
        server.terminate()
        server.wait(30)
    kinds = ("state", "ingest")
    label = f"{db_kind}, --single-process" if single_process else db_kind
    return Row(f"edgewise ({label})", devices, stats.events_acked / duration_s, stats.percentile(50, kinds),
               stats.percentile(99, kinds), rollout_s, stats.errors, cpu.per_request_ms(stats, kinds))


def run_ceiling(devices: int, duration_s: float, workdir: Path) -> Row:
    (workdir / "ceiling_app.py").write_text(CEILING_APP)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "ceiling_app:app", "--port", str(port),
                               "--log-level", "warning", "--no-access-log"], cwd=workdir,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, 60, server)
    try:
        cpu = ServerCpu(server.pid)
        stats = asyncio.run(drive_ceiling(f"http://127.0.0.1:{port}", devices, duration_s, cpu))
    finally:
        server.terminate()
        server.wait(30)
    kinds = ("state", "ingest")
    return Row("minimal FastAPI (ceiling)", devices, stats.events_acked / duration_s, stats.percentile(50, kinds),
               stats.percentile(99, kinds), None, stats.errors, cpu.per_request_ms(stats, kinds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--db", nargs="*", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--duration", type=float, default=45.0, help="seconds of load per configuration")
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument("--single-process", action="store_true",
                        help="also run each configuration with `edgewise server --single-process` (device work in "
                             "the server's own process, one GIL), to show what the device process buys")
    args = parser.parse_args()
    rows: list[Row] = []
    postgres = start_postgres() if "postgresql" in args.db else None
    try:
        for devices in args.devices:
            if not args.no_ceiling:
                with tempfile.TemporaryDirectory() as tmp:
                    rows.append(run_ceiling(devices, args.duration, Path(tmp)))
                    print(rows[-1], flush=True)
            for db_kind in args.db:
                with tempfile.TemporaryDirectory() as tmp:
                    pg_url = create_database(postgres, f"bench_{devices}_{int(time.time())}") if postgres else None
                    rows.append(run_fleet(db_kind, devices, args.duration, Path(tmp), pg_url))
                    print(rows[-1], flush=True)
                if args.single_process:
                    with tempfile.TemporaryDirectory() as tmp:
                        pg_url = create_database(postgres, f"bench_{devices}_single_{int(time.time())}") \
                            if postgres and db_kind == "postgresql" else None
                        rows.append(run_fleet(db_kind, devices, args.duration, Path(tmp), pg_url, single_process=True))
                        print(rows[-1], flush=True)
    finally:
        if postgres is not None:
            postgres.stop()
    print()
    print_table(rows)


def print_table(rows: list[Row]) -> None:
    """The rows as Markdown; p99 also as a multiple of the ceiling's at the same N, where it ran."""
    ceilings = {row.devices: row.p99_ms for row in rows if row.target.endswith("(ceiling)")}
    print("| server | devices | events/s | p50 ms | p99 ms | p99 / ceiling's | rollout to all (s) | errors "
          "| server CPU ms/request |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        rollout = "-" if row.rollout_s is None else f"{row.rollout_s:.1f}"
        cpu = "-" if row.server_cpu_ms is None else f"{row.server_cpu_ms:.2f}"
        ceiling = ceilings.get(row.devices)
        ratio = f"{row.p99_ms / ceiling:.1f}x" if ceiling else "-"
        print(f"| {row.target} | {row.devices} | {row.events_per_s:.0f} | {row.p50_ms:.1f} | {row.p99_ms:.1f} | "
              f"{ratio} | {rollout} | {row.errors} | {cpu} |")


if __name__ == "__main__":
    main()
