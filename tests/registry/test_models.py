"""The model registry view: versions, stages, lineage and metrics over any store."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewise.core.bundle import create_bundle
from edgewise.core.errors import ConfigError, RegistryError
from edgewise.core.manifest import Lineage, Metrics
from edgewise.registry import Store
from edgewise.registry.models import ModelRegistry
from tests.registry.bundles import manifest_for, tiny_onnx

pytestmark = pytest.mark.parametrize("store_url", ["local", "oci"], indirect=True)


def _publish(store: Store, tmp: Path, version: str, parent: str | None, accuracy: float) -> None:
    manifest = manifest_for(version=version)
    manifest.metrics = Metrics(accuracy=accuracy, size_bytes=285)
    manifest.lineage = Lineage(parent=parent, recipe=["prune(amount=0.3)", "quantize()"], dataset_digest="sha256:d")
    model = tiny_onnx(tmp / f"{version}.onnx", seed=len(version))
    create_bundle(tmp / f"b-{version}", manifest, {"model.onnx": model})
    store.publish(tmp / f"b-{version}")


def test_versions_carry_stages_metrics_and_lineage(store: Store, tmp_path: Path) -> None:
    _publish(store, tmp_path, "1.0.0", None, 0.91)
    _publish(store, tmp_path, "1.1.0", "tiny:1.0.0", 0.93)
    models = ModelRegistry(store)
    models.promote("tiny:1.1.0", "staging")
    models.promote("tiny:1.0.0", "production")
    versions = models.versions("tiny")
    assert [(v.published.version, v.aliases, v.metrics.accuracy) for v in versions] == [
        ("1.0.0", ["production"], 0.91), ("1.1.0", ["staging"], 0.93)]
    assert versions[1].lineage.recipe == ["prune(amount=0.3)", "quantize()"]
    assert models.names() == ["tiny"]


def test_promote_moves_production_and_show_reports_it(store: Store, tmp_path: Path) -> None:
    _publish(store, tmp_path, "1.0.0", None, 0.91)
    _publish(store, tmp_path, "1.1.0", "tiny:1.0.0", 0.93)
    models = ModelRegistry(store)
    models.promote("tiny:1.0.0")
    models.promote("tiny:1.1.0")  # production moves on; the old version stays published
    shown = models.show("tiny:production")
    assert shown.published.version == "1.1.0" and shown.aliases == ["production"]
    assert models.lineage_chain("tiny:production") == ["tiny:1.1.0", "tiny:1.0.0"]
    assert [v.published.version for v in models.versions("tiny")] == ["1.0.0", "1.1.0"]


def test_promoting_something_unpublished_or_to_a_bad_stage_fails(store: Store, tmp_path: Path) -> None:
    _publish(store, tmp_path, "1.0.0", None, 0.9)
    models = ModelRegistry(store)
    with pytest.raises(RegistryError, match="tiny:3.0.0 is not in"):
        models.promote("tiny:3.0.0")
    with pytest.raises(ConfigError, match="bad alias"):
        models.promote("tiny:1.0.0", "prod/uction")
