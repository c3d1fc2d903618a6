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
