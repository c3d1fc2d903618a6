"""Registry fixtures: every store implementation behind one `store` fixture, so the shared
contract in test_store_contract.py runs against each (like optuna's StorageTestCase)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from edgewise.core.signing import PrivateKey
from edgewise.registry import Store, open_store

STORE_KINDS = ["local", "oci"]


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    kind = getattr(request, "param", "local")
    if kind == "local":
        return str(tmp_path / "store")
    registry = request.getfixturevalue("oci_registry")
    return f"oci://{registry.url}/t{uuid.uuid4().hex[:10]}"  # a fresh namespace per test


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Store:
    return open_store(store_url, cache_dir=tmp_path / "cache")


@pytest.fixture
def make_store(store_url: str, tmp_path: Path) -> Callable[[], Store]:
    """A second client of the same store, with its own cache (another machine, say)."""
    counter = iter(range(100))
    return lambda: open_store(store_url, cache_dir=tmp_path / f"cache-{next(counter)}")
