"""Starting and stopping the demo's real processes: one server, N agents, each logging to a file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from edgewise.core.errors import ServiceUnavailable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def edgewise_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgewise", *args]


def run_edgewise(*args: str, log: Path) -> str:
    """Run one edgewise command to completion; its stdout, or ServiceUnavailable with the log's tail."""
    result = subprocess.run(edgewise_command(*args), capture_output=True, text=True, timeout=300)
    with open(log, "a") as handle:
        handle.write(f"$ edgewise {' '.join(args)}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        raise ServiceUnavailable(f"`edgewise {args[0]} {args[1] if len(args) > 1 else ''}` failed: "
                                 f"{result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ''}",
                                 f"see {log}")
    return result.stdout


@dataclass
class Managed:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class ProcessGroup:
    """Every process the demo started, so each is stopped however the demo ends."""

    log_dir: Path
    members: list[Managed] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Managed:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        handle = open(log, "ab")  # noqa: SIM115 - the child owns it for its whole life
        process = subprocess.Popen(edgewise_command(*args), stdout=handle, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})}, start_new_session=True)
        member = Managed(name, process, log)
        self.members.append(member)
        return member

    def check_alive(self) -> None:
        for member in self.members:
            if member.process.poll() is not None:
                tail = member.log.read_text(errors="replace").strip().splitlines()[-3:]
                raise ServiceUnavailable(f"{member.name} exited with code {member.process.returncode}: "
                                         + " | ".join(tail), f"see {member.log}")

    def stop_all(self) -> None:
        for member in reversed(self.members):
            if member.process.poll() is None:
                member.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for member in self.members:
            try:
                member.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                member.process.kill()
                member.process.wait()


def wait_http_ok(url: str, timeout_s: float, group: ProcessGroup) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        group.check_alive()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise ServiceUnavailable(f"{url} did not answer within {timeout_s:.0f}s", f"see the logs in {group.log_dir}")
