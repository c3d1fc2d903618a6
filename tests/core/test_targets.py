"""The hardware target catalog and its roofline estimates."""

from __future__ import annotations

import pytest

from edgewise.core.errors import ConfigError
from edgewise.core.targets import TARGETS, Target, energy_mj, estimate_latency_ms, get_target, list_targets

ISSUE_DEVICES = {"jetson-nano", "jetson-xavier-nx", "jetson-agx-xavier", "jetson-orin-nano", "coral-dev-board",
                 "coral-usb", "rpi4", "rpi5", "phone-6gb", "x86-host"}


def test_catalog_has_the_ten_devices_of_the_issue() -> None:
    assert set(TARGETS.names()) == ISSUE_DEVICES
    assert {t.family for t in list_targets()} == {"jetson", "coral", "rpi", "phone", "cpu"}


@pytest.mark.parametrize("name", sorted(ISSUE_DEVICES))
def test_every_target_is_complete_and_consistent(name: str) -> None:
    target = get_target(name)
    assert target.precisions and target.formats and target.runtime
    assert set(target.peak_gops) >= set(target.precisions)  # every precision has a throughput
    assert target.memory_budget_mb > 0 and target.memory_bandwidth_gbs > 0 and target.typical_power_w > 0


def test_edge_tpu_is_int8_only() -> None:
    for name in ("coral-dev-board", "coral-usb"):
        target = get_target(name)
        assert target.precisions == ["int8"] and target.full_int8_required
        assert not target.supports("fp32")
        assert target.best_precision() == "int8"


def test_unknown_target_lists_known_names() -> None:
    with pytest.raises(ConfigError) as caught:
        get_target("jetson-tx9")
    assert "jetson-tx9" in caught.value.message and "rpi4" in caught.value.fix


def test_roofline_is_compute_bound_for_many_macs_and_memory_bound_for_many_bytes() -> None:
    target = get_target("rpi4")
    compute = estimate_latency_ms(target, macs=1e9, bytes_moved=1e3, precision="fp32")
    memory = estimate_latency_ms(target, macs=1e3, bytes_moved=1e9, precision="fp32")
    assert compute == pytest.approx(2e9 / (24e9 * 0.4) * 1e3)
    assert memory == pytest.approx(1e9 / (4e9 * 0.4) * 1e3)
    assert estimate_latency_ms(target, 1e9, 1e3, "int8") < compute  # int8 throughput is higher


def test_estimate_refuses_a_precision_the_target_lacks() -> None:
    with pytest.raises(ConfigError, match="no fp16"):
        estimate_latency_ms(get_target("rpi4"), 1e6, 1e6, "fp16")
    with pytest.raises(ConfigError):
        estimate_latency_ms(get_target("rpi4"), -1, 1e6, "fp32")


def test_energy_is_power_times_latency() -> None:
    target = get_target("jetson-orin-nano")
    assert energy_mj(target, 2.0) == pytest.approx(30.0)


def test_target_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError):
        Target.model_validate({**get_target("rpi5").model_dump(), "turbo": True})
