"""Telemetry: fps, inference latency p50/p95, queue depth, CPU, memory, temperature, versions."""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import psutil

import edgewise

THERMAL_ROOT = Path("/sys/class/thermal")


def read_temperature_c(root: Path = THERMAL_ROOT) -> float | None:
    """The hottest thermal zone the kernel exposes, or None (containers, most VMs)."""
    readings = []
    for zone in root.glob("thermal_zone*/temp"):
        try:
            readings.append(int(zone.read_text().strip()) / 1000.0)
        except (OSError, ValueError):
            continue
    return max(readings) if readings else None


class TelemetryCollector:
    def __init__(self, window: int = 512) -> None:
        self._lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=window)
        self._frame_times: deque[float] = deque(maxlen=window)
        self.errors = 0
        self.dropped_frames = 0
        self.frames = 0
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # prime: the first call always returns 0

    def record(self, latency_ms: float) -> None:
        with self._lock:
            self._latencies.append(latency_ms)
            self._frame_times.append(time.monotonic())
            self.frames += 1

    def record_error(self) -> None:
        with self._lock:
            self.errors += 1

    def snapshot(self, queue_depth: int, model_version: str | None, bundle_name: str | None = None) -> dict[str, Any]:
        with self._lock:
            latencies = list(self._latencies)
            times = list(self._frame_times)
            errors, self.errors = self.errors, 0
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        return {
            "ts": time.time(),
            "fps": round(fps, 2),
            "latency_p50_ms": float(np.percentile(latencies, 50)) if latencies else None,
            "latency_p95_ms": float(np.percentile(latencies, 95)) if latencies else None,
            "cpu_percent": self._process.cpu_percent(None),
            "memory_mb": self._process.memory_info().rss / 2**20,
            "temperature_c": read_temperature_c(),
            "queue_depth": queue_depth,
            "errors": errors,
            "bundle_name": bundle_name,
            "model_version": model_version,
            "agent_version": edgewise.__version__,
            "extra": {"dropped_frames": float(self.dropped_frames), "frames": float(self.frames)},
        }
