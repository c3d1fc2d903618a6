"""The health check of a freshly activated model: it must run on probe frames within the
latency and error limits for a whole window before the update is committed."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgewise.agent.config import HealthSettings
from edgewise.agent.pipeline import Pipeline
from edgewise.core.errors import EdgewiseError, ModelError
from edgewise.core.manifest import Manifest

PROBE_INTERVAL_S = 1 / 50


@dataclass
class HealthReport:
    frames: int
    errors: int
    latency_p95_ms: float
    first_error: str = ""

    def __str__(self) -> str:
        p95 = "-" if self.latency_p95_ms == float("inf") else f"{self.latency_p95_ms:.1f} ms"
        return f"{self.frames} probe frames, {self.errors} errors, p95 {p95}"


def check_model_health(
    bundle_dir: Path,
    manifest: Manifest,
    probe_frames: Callable[[], list[np.ndarray]],
    settings: HealthSettings,
    families: list[str],
    providers: list[str],
    threads: int = 0,
) -> HealthReport:
    """Raise ModelError unless the model stays within limits for `settings.window_s`."""
    pipeline = Pipeline(bundle_dir, manifest, families, providers, threads)
    frames = probe_frames()
    if not frames:
        raise ModelError("no probe frames to check the model with", "configure a video source")
    latencies: list[float] = []
    errors = 0
    first_error = ""
    deadline = time.monotonic() + settings.window_s
    index = 0
    while len(latencies) + errors < settings.min_frames or time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            pipeline.run(frames[index % len(frames)])
            latencies.append((time.perf_counter() - started) * 1000)
        except EdgewiseError as error:
            errors += 1
            first_error = first_error or error.message
        index += 1
        time.sleep(max(0.0, PROBE_INTERVAL_S - (time.perf_counter() - started)))  # leave CPU for live inference
        total = len(latencies) + errors
        if errors / total > settings.max_error_rate and total >= settings.min_frames:
            break  # already over the limit: no point running out the window
        if latencies and total >= settings.min_frames and np.percentile(latencies, 50) > settings.max_latency_ms * 4:
            break  # hopelessly slow: fail fast
    total = len(latencies) + errors
    report = HealthReport(total, errors, float(np.percentile(latencies, 95)) if latencies else float("inf"),
                          first_error)
    # Each failure names the check, the measured value, the limit and (for errors) what went wrong:
    # the message travels as the update's error to the server, the CLI and the dashboard.
    if errors / total > settings.max_error_rate:
        raise ModelError(f"health check failed on error rate: {errors} of {total} probe frames failed "
                         f"({errors / total:.0%}, limit {settings.max_error_rate:.0%}); first error: {first_error}",
                         "check that the bundle's model card (input size, layout, colour order) fits the model")
    if report.latency_p95_ms > settings.max_latency_ms:
        raise ModelError(f"health check failed on latency: p95 {report.latency_p95_ms:.1f} ms over the limit of "
                         f"{settings.max_latency_ms:g} ms ({report.frames} probe frames)",
                         "use a smaller or quantized variant for this device, or raise health.max_latency_ms")
    return report
