"""Shared fixtures. Services a test needs are started for real on loopback; on a laptop without
one the test skips, but in CI (CI=true) a missing service fails the run."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_service(available: bool, what: str) -> None:
    """Skip a test on a laptop that lacks `what`; fail in CI, where every service must exist."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is missing in CI: scripts/install-system-deps.sh must install it")
    pytest.skip(f"{what} not installed (run scripts/install-system-deps.sh)")


@pytest.fixture(autouse=True)
def _few_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    # The suite runs on 2 cores; oversubscribed BLAS threads make it slower, not faster.
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server on a free loopback port, for the whole session."""
    from tests import services

    require_service(services.postgres_bin_dir() is not None, "PostgreSQL")
    server = services.start_postgres()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    import re
    import uuid

    from tests import services

    name = re.sub(r"[^a-z0-9_]", "_", f"t_{request.node.name.lower()}")[:40] + "_" + uuid.uuid4().hex[:8]
    return services.create_database(postgres_server, name)


@pytest.fixture(scope="session")
def oci_registry():
    """A real OCI registry (Debian's docker-registry) on loopback; `.url` is host:port."""
    from tests import services

    require_service(services.registry_binary() is not None, "docker-registry (OCI registry)")
    registry = services.start_oci_registry()
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def mqtt_broker():
    """A real Mosquitto broker on loopback; `.port` is its port."""
    from tests import services

    require_service(services.mosquitto_binary() is not None, "mosquitto")
    broker = services.start_mosquitto()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    from tests import services

    path = services.chromium_path()
    require_service(path is not None, "chromium")
    assert path is not None
    return path
