"""Rollout strategies: each splits the selected devices into ordered batches.

A strategy is a plug-in (`STRATEGIES`): a function from the spec and the device ids (online and
healthy devices first) to a list of batches. The rollout engine (`engine.py`) then assigns batch
after batch, baking between them, and halts past the failure threshold, whatever the strategy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from pydantic import Field

from edgewise.core.plugins import Registry
from edgewise.core.settings import StrictSettings
from edgewise.core.wire import QualityCriteria

StrategyName = Literal["all-at-once", "canary", "staged"]


class StrategySpec(StrictSettings):
    name: StrategyName = "all-at-once"
    percent: float = Field(default=10.0, gt=0, le=100, description="canary: share of devices in the first batch")
    batches: int = Field(default=3, ge=1, le=100, description="staged: number of equal batches")
    bake_s: float = Field(default=0.0, ge=0, le=7 * 86400, description="wait after a batch finishes before the next")
    failure_threshold: float = Field(
        default=0.0, ge=0, le=1, description="halt when failed / assigned devices exceeds this share"
    )
    require_health: bool = Field(default=True, description="a device succeeds only once it reports health 'ok'")
    device_timeout_s: float = Field(default=900.0, gt=0, description="assigned and silent this long = failed")
    quality: QualityCriteria | None = Field(
        default=None, description="model signals the first batch must meet in shadow before it serves (quality gate)"
    )
    shadow_share: float = Field(default=0.5, gt=0, le=1, description="quality gate: share of frames shadowed")
    gate_timeout_s: float = Field(default=3600.0, gt=0, description="quality gate: roll back without a verdict")
    allow_downgrade: bool = Field(default=False, description="devices may install this bundle although it is an "
                                  "older version of the one they run (recorded in the deployment; devices refuse "
                                  "older versions otherwise)")


Planner = Callable[[StrategySpec, list[str]], list[list[str]]]
def all_at_once(_spec: StrategySpec, device_ids: list[str]) -> list[list[str]]:
    return [device_ids]


def canary(spec: StrategySpec, device_ids: list[str]) -> list[list[str]]:
    size = max(1, math.ceil(len(device_ids) * spec.percent / 100.0))
    return [batch for batch in (device_ids[:size], device_ids[size:]) if batch]


def staged(spec: StrategySpec, device_ids: list[str]) -> list[list[str]]:
    count = min(spec.batches, len(device_ids))
    size = math.ceil(len(device_ids) / count)
    return [device_ids[start : start + size] for start in range(0, len(device_ids), size)]


STRATEGIES: Registry[Planner] = Registry.of("rollout strategy", {
    "all-at-once": (all_at_once, "every selected device at once"),
    "canary": (canary, "a percentage first, then (after the bake time, if healthy) the rest"),
    "staged": (staged, "N equal batches, one after the other"),
})


def plan(spec: StrategySpec, device_ids: list[str]) -> list[list[str]]:
    return [batch for batch in STRATEGIES.get(spec.name)(spec, device_ids) if batch]
