"""The demo from start to end; `edgewise demo` calls `run_demo`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from edgewise.core.errors import EdgewiseError
from edgewise.core.signing import PrivateKey, load_private_key, write_key_pair
from edgewise.demo import summary
from edgewise.demo.detection_stage import DetectionPlan, build_detectors, write_videos
from edgewise.demo.fleet_stage import DemoFleet, FleetPlan
from edgewise.demo.studio_stage import BUNDLE_NAME, StudioPlan, build_bundles


@dataclass
class DemoOptions:
    work_dir: Path = Path("demo-run")
    keep_running: bool = False
    run_seconds_after_rollout: float = 10.0
    task: str = "detect"  # the detection story (traffic cameras); "classify": the parts conveyor
    studio: StudioPlan = field(default_factory=StudioPlan)
    detection: DetectionPlan = field(default_factory=DetectionPlan)
    fleet: FleetPlan = field(default_factory=FleetPlan)


def run_demo(options: DemoOptions, console: Console | None = None) -> list[summary.DeviceSummary]:
    console = console or Console()
    started = time.monotonic()

    def say(message: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:6.1f}s[/dim] {message}")

    work = options.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    _clear_previous_run(work)
    key_path = work / "publisher.key"
    key = load_private_key(key_path) if key_path.exists() else _new_key(key_path)
    store_url = str(work / "registry")
    detect = options.task == "detect"
    built: list = build_detectors(work, key, store_url, options.detection, say) if detect \
        else build_bundles(work, key, store_url, options.studio, say)
    if detect:
        options.fleet.videos = write_videos(work, options.fleet.devices, options.detection.video_seconds, say)
        options.fleet.fps = 10.0  # the videos' own rate
    fleet = DemoFleet(work, store_url, key_path.with_name(key_path.name + ".pub"), options.fleet, say)
    try:
        fleet.start()
        for bundle in built:
            fleet.roll_out(bundle.published.ref)
        say(f"both bundles rolled out; letting the cameras run {options.run_seconds_after_rollout:.0f}s more")
        time.sleep(options.run_seconds_after_rollout)
        assert fleet.operator is not None  # noqa: S101 - start() ran
        rows = summary.collect(fleet.operator)
        summary.render(rows, console)
        for bundle in built:
            if detect:
                console.print(f"  {bundle.published.ref}: test mAP@[.5:.95] {bundle.test_map:.3f} / mAP@.5 "
                              f"{bundle.test_map50:.3f} (fp32), deployed int8 mAP@[.5:.95] "
                              f"{_map(bundle.int8_test_map)}, size {_kb(bundle.size_bytes)}, "
                              f"host latency {_ms(bundle.host_latency_ms)} (batch 1, 1 thread)")
                continue
            console.print(f"  {bundle.published.ref}: test accuracy {bundle.test_accuracy:.1%} (fp32), "
                          f"deployed int8 accuracy {_pct(bundle.int8_accuracy)}, size {_kb(bundle.size_bytes)}, "
                          f"host latency {_ms(bundle.host_latency_ms)} (batch 1, 1 thread)")
        issues = summary.problems(rows, built[-1].published.version, options.fleet.devices)
        if issues:
            raise EdgewiseError("demo finished with problems: " + "; ".join(issues), f"see the logs in {work / 'logs'}")
        # soft_wrap: a URL or a token broken over two lines cannot be copied
        console.print(f"[green]done in {time.monotonic() - started:.0f}s[/green]. Dashboard: {fleet.url}/ui/ "
                      f"(work dir {work})", soft_wrap=True)
        console.print(f"  sign in at {fleet.url}/ui/login with the read-only token {fleet.dashboard_token}"
                      + ("" if options.keep_running else " (run `edgewise demo --keep-running` to keep it up)"),
                      soft_wrap=True)
        if options.keep_running:
            console.print("--keep-running: the server and agents stay up; press Ctrl-C to stop")
            while True:
                fleet.group.check_alive()
                time.sleep(2)
        return rows
    finally:
        fleet.stop()


KEPT_BETWEEN_RUNS = {"data", "publisher.key", "publisher.key.pub"}


def _clear_previous_run(work: Path) -> None:
    """A rerun starts a fresh fleet and registry (a published version never changes, so the
    retrained 1.0.0 could not be published over the old one); the dataset and key are reused."""
    import shutil

    for child in work.iterdir():
        if child.name in KEPT_BETWEEN_RUNS:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _new_key(path: Path) -> PrivateKey:
    key = PrivateKey.generate()
    write_key_pair(key, path)
    return key


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}" if value <= 1 else f"{value:.1f}%"


def _map(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} ms"


def _kb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 1024:.0f} KiB"


__all__ = ["BUNDLE_NAME", "DemoOptions", "run_demo"]  # DETECTOR_BUNDLE: demo/detection_stage.py
