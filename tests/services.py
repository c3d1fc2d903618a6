"""Real services started on free loopback ports for the tests: PostgreSQL, an OCI registry
(Debian's docker-registry), Mosquitto, and the path of Debian's Chromium.

Each `start_*` returns a handle whose `stop()` ends the process; the fixtures in conftest.py
call them once per session. A missing binary makes the fixture skip on a laptop and fail in CI.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"service exited with code {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listened on port {port} within {timeout_s}s")


@dataclass
class Service:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    extra: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


# --- PostgreSQL -------------------------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_postgres_user(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; in a root container run them as `postgres`.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def start_postgres() -> Service:
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL (initdb) not found")
    workdir = Path(tempfile.mkdtemp(prefix="edgewise-pg-"))
    data_dir = workdir / "data"
    data_dir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        shutil.chown(data_dir, "postgres")
    subprocess.run(
        _as_postgres_user(
            [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "edgewise", "-A", "trust", "-E", "UTF8"]
        ),
        check=True,
        capture_output=True,
    )
    port = free_port()
    process = subprocess.Popen(
        _as_postgres_user(
            [
                str(bin_dir / "postgres"),
                "-D", str(data_dir),
                "-p", str(port),
                "-h", "127.0.0.1",
                "-k", str(workdir),
                "-c", "fsync=off",
                "-c", "max_connections=200",
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, process=process)
    _wait_until_accepting(bin_dir, port)
    return Service(f"postgresql://edgewise@127.0.0.1:{port}/postgres", port, process, workdir)


def _wait_until_accepting(bin_dir: Path, port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready = subprocess.run(
            [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
        )
        if ready.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError("PostgreSQL did not accept connections in time")


def create_database(service: Service, name: str) -> str:
    """A fresh database on the running server; returns its URL."""
    bin_dir = postgres_bin_dir()
    assert bin_dir is not None
    subprocess.run(
        [str(bin_dir.parent / "bin" / "createdb"), "-h", "127.0.0.1", "-p", str(service.port), "-U", "edgewise", name],
        check=True,
        capture_output=True,
    )
    return f"postgresql://edgewise@127.0.0.1:{service.port}/{name}"


# --- OCI registry -----------------------------------------------------------------------------


def registry_binary() -> str | None:
    debian_path = Path("/usr/bin/docker-registry")
    return shutil.which("docker-registry") or (str(debian_path) if debian_path.exists() else None)


def start_oci_registry() -> Service:
    binary = registry_binary()
    if binary is None:
        raise FileNotFoundError("docker-registry not found")
    workdir = Path(tempfile.mkdtemp(prefix="edgewise-oci-"))
    port = free_port()
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process=process)
    return Service(f"127.0.0.1:{port}", port, process, workdir)


# --- Mosquitto --------------------------------------------------------------------------------


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def start_mosquitto() -> Service:
    binary = mosquitto_binary()
    if binary is None:
        raise FileNotFoundError("mosquitto not found")
    workdir = Path(tempfile.mkdtemp(prefix="edgewise-mqtt-"))
    port = free_port()
    config = workdir / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
    if os.geteuid() == 0:
        lines.append("user root")
    config.write_text("\n".join(lines) + "\n")
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process=process)
    return Service(f"mqtt://127.0.0.1:{port}", port, process, workdir)


# --- Chromium ---------------------------------------------------------------------------------


def chromium_path() -> str | None:
    for candidate in ("chromium", "chromium-browser"):
        found = shutil.which(candidate)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
