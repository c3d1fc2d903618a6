"""Client CPU per request: httpx against edgewise.fleet.tools.light_http, the simulator's client.

    .venv/bin/python benchmarks/http_client.py --requests 3000 --clients 100

Both send the same JSON POST over keep-alive connections to the same minimal FastAPI endpoint (in
its own process) from one asyncio loop, like the simulator's devices. The client process's CPU
time is what a load generator takes away from the server it shares a machine with.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.services import free_port, wait_for_port  # noqa: E402

from edgewise.fleet.tools.light_http import Connection  # noqa: E402

APP = '''
from fastapi import FastAPI, Request
app = FastAPI()
@app.post("/{path:path}")
async def echo(path: str, request: Request) -> dict:
    await request.body()
    return {"ok": True}
'''
BODY = b'{"events": [{"seq": 1, "ts": 0.0, "type": "detection"}]}'
HEADERS = {"Content-Type": "application/json"}


async def drive(send: Callable[[int], Awaitable[int]], clients: int, requests: int) -> tuple[float, float]:
    """(CPU ms per request, wall s) for `requests` spread over `clients` concurrent senders."""
    per_client = requests // clients

    async def client(index: int) -> None:
        for _ in range(per_client):
            if await send(index) != 200:
                raise RuntimeError("the endpoint did not answer 200")

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return (time.process_time() - cpu) * 1000 / (per_client * clients), time.perf_counter() - wall


async def with_httpx(url: str, clients: int, requests: int) -> tuple[float, float]:
    pool = [httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=1)) for _ in range(clients)]
    try:
        return await drive(lambda i: _status(pool[i].post("/ingest", content=BODY, headers=HEADERS)), clients,
                           requests)
    finally:
        await asyncio.gather(*(c.aclose() for c in pool))


async def with_light(url: str, clients: int, requests: int) -> tuple[float, float]:
    pool = [Connection(url) for _ in range(clients)]
    try:
        async def send(i: int) -> int:
            return (await pool[i].request("POST", "/ingest", BODY, HEADERS)).status_code

        return await drive(send, clients, requests)
    finally:
        await asyncio.gather(*(c.close() for c in pool))


async def _status(response: Awaitable[httpx.Response]) -> int:
    return (await response).status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "bench_app.py").write_text(APP)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench_app:app", "--port", str(port),
                                   "--log-level", "warning"], cwd=tmp)
        try:
            wait_for_port(port, 60, server)
            url = f"http://127.0.0.1:{port}"
            asyncio.run(with_light(url, args.clients, args.clients))  # warm both paths up
            asyncio.run(with_httpx(url, args.clients, args.clients))
            rows = [("httpx", *asyncio.run(with_httpx(url, args.clients, args.requests))),
                    ("light_http", *asyncio.run(with_light(url, args.clients, args.requests)))]
        finally:
            server.terminate()
            server.wait(30)
    base = rows[0][1]
    print(f"| client | CPU ms / request | x httpx | wall s for {args.requests} |")
    print("|---|---:|---:|---:|")
    for name, cpu_ms, wall_s in rows:
        print(f"| {name} | {cpu_ms:.3f} | {cpu_ms / base:.2f} | {wall_s:.1f} |")


if __name__ == "__main__":
    main()
