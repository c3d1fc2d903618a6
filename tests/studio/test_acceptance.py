"""Issue 2's training acceptance, measured: cnn-small on `digits` >= 97 % test accuracy in under
3 minutes of 2-thread CPU training, and on `parts` (default size) >= 95 %.

The time is checked as CPU seconds / 2 threads: on a shared CI machine wall time measures the
neighbours, CPU time measures us. Both are printed (`pytest -s -m slow tests/studio`).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edgewise.studio.samples import write_sample
from edgewise.studio.train import TrainConfig, train

# Wall time on a shared machine can be far above the CPU budget; the budget is checked below.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
THREADS = 2
BUDGET_S = 180


def _train_and_time(name: str, tmp_path: Path, epochs: int) -> tuple[float, float, float]:
    data = write_sample(name, tmp_path / name, seed=0)
    config = TrainConfig(arch="cnn-small", epochs=epochs, num_threads=THREADS, device="cpu", seed=0)
    wall, cpu = time.perf_counter(), time.process_time()
    result = train(config, data, tmp_path / f"out-{name}", progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"\n{name}: test accuracy {result.test_accuracy:.4f}, wall {wall:.0f} s, cpu {cpu:.0f} s "
          f"({cpu / THREADS:.0f} s per thread), {len(result.history)} epochs")
    return result.test_accuracy, wall, cpu


def test_cnn_on_digits_reaches_97_percent_within_3_minutes(tmp_path: Path) -> None:
    accuracy, _wall, cpu = _train_and_time("digits", tmp_path, epochs=12)
    assert accuracy >= 0.97
    assert cpu / THREADS < BUDGET_S


def test_cnn_on_parts_reaches_95_percent(tmp_path: Path) -> None:
    accuracy, _wall, cpu = _train_and_time("parts", tmp_path, epochs=10)
    assert accuracy >= 0.95
    assert cpu / THREADS < BUDGET_S
