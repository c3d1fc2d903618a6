"""Server + N agents as real processes; enroll, canary rollout of bundle 1, then bundle 2."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgewise.core.errors import EdgewiseError, ServiceUnavailable
from edgewise.demo.processes import ProcessGroup, free_port, run_edgewise, wait_http_ok
from edgewise.fleet.tools.operator_client import OperatorClient

FINISHED = {"completed", "succeeded", "done", "halted", "failed", "rolled-back", "rolled_back"}
SUCCEEDED = {"completed", "succeeded", "done"}


@dataclass
class FleetPlan:
    devices: int = 3
    fps: float = 8.0
    videos: list[Path] | None = None  # detection: one traffic video per camera (else synthetic conveyors)
    canary_percent: float = 33.0  # one camera of the default three goes first
    bake_s: float = 4.0
    rollout_timeout_s: float = 240.0


class DemoFleet:
    def __init__(self, work: Path, store_url: str, publisher_pub: Path, plan: FleetPlan,
                 say: Callable[[str], None]) -> None:
        self.work, self.store_url, self.publisher_pub, self.plan, self.say = work, store_url, publisher_pub, plan, say
        self.group = ProcessGroup(work / "logs")
        self.db_url = f"sqlite:///{work / 'fleet.db'}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.operator: OperatorClient | None = None
        self.dashboard_token = ""

    def start(self) -> None:
        self.say(f"starting the fleet server on {self.url} (SQLite, local bundle store)")
        self.group.start("server", ["server", "--db", self.db_url, "--store", self.store_url, "--port", str(self.port),
                                    "--trust", str(self.publisher_pub), "--offline-after", "15"])
        wait_http_ok(self.url + "/healthz", 60, self.group)
        log = self.group.log_dir / "operator.log"
        token = run_edgewise("server", "token", "create", "--scope", "admin", "--name", "demo", "--db", self.db_url,
                             log=log).strip().splitlines()[-1]
        self.operator = OperatorClient(self.url, token)
        # A read-only token for the browser: the dashboard asks for one at /ui/login.
        self.dashboard_token = run_edgewise("server", "token", "create", "--scope", "read", "--name",
                                            "demo-dashboard", "--db", self.db_url, log=log).strip().splitlines()[-1]
        enroll = run_edgewise("server", "enroll-token", "create", "--uses", str(self.plan.devices), "--db",
                              self.db_url, log=log).strip().splitlines()[-1]
        for index in range(self.plan.devices):
            self._start_agent(index, enroll, log)
        self._wait(lambda: len(self.operator.devices()) >= self.plan.devices, 90, "devices to enroll")  # type: ignore[union-attr]
        camera = "traffic camera (a looping video)" if self.plan.videos else "synthetic conveyor camera"
        self.say(f"{self.plan.devices} agents enrolled, each on its own {camera}")

    def _start_agent(self, index: int, enroll_token: str, log: Path) -> None:
        name = f"camera-{index + 1}"
        data_dir = self.work / "devices" / name
        data_dir.mkdir(parents=True, exist_ok=True)
        if not (data_dir / "identity.json").exists() and not any(data_dir.glob("device*")):
            run_edgewise("agent", "enroll", "--server", self.url, "--token", enroll_token, "--data-dir", str(data_dir),
                         "--name", name, log=log)
        config = data_dir / "agent.toml"
        if self.plan.videos:
            video = self.plan.videos[index % len(self.plan.videos)]
            config.write_text(detection_agent_toml(data_dir, self.url, video=video, fps=self.plan.fps))
        else:
            config.write_text(agent_toml(data_dir, self.url, seed=index + 1, fps=self.plan.fps))
        self.group.start(name, ["agent", "run", "--config", str(config)])

    def roll_out(self, bundle_ref: str) -> dict[str, Any]:
        assert self.operator is not None  # noqa: S101 - start() ran
        strategy = {"name": "canary", "percent": self.plan.canary_percent, "bake_s": self.plan.bake_s,
                    "failure_threshold": 0.0}
        deployment = self.operator.deploy(bundle_ref, strategy)
        self.say(f"deploying {bundle_ref}: canary {self.plan.canary_percent:.0f}% then the rest "
                 f"(deployment {deployment['id'][:8]})")
        deadline = time.monotonic() + self.plan.rollout_timeout_s
        last = ""
        while time.monotonic() < deadline:
            self.group.check_alive()
            deployment = self.operator.deployment(deployment["id"])
            line = f"  {deployment['status']}: batch {deployment['current_batch'] + 1}/{deployment['batch_count']} " \
                   + " ".join(f"{k}={v}" for k, v in sorted(deployment.get("progress", {}).items()))
            if line != last:
                self.say(line)
                last = line
            if deployment["status"] in FINISHED:
                if deployment["status"] not in SUCCEEDED:
                    raise EdgewiseError(f"deployment of {bundle_ref} ended {deployment['status']}: "
                                        f"{deployment.get('reason', '')}", f"see {self.group.log_dir}")
                return deployment
            time.sleep(1.0)
        raise ServiceUnavailable(f"deployment of {bundle_ref} did not finish in {self.plan.rollout_timeout_s:.0f}s",
                                 f"see the agent logs in {self.group.log_dir}")

    def _wait(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.group.check_alive()
            if condition():
                return
            time.sleep(0.5)
        raise ServiceUnavailable(f"timed out waiting for {what}", f"see the logs in {self.group.log_dir}")

    def stop(self) -> None:
        self.group.stop_all()


def _device_toml(data_dir: Path, server_url: str, hardware: str, families: list[str]) -> str:
    """The part of a demo device's config every camera shares: where it keeps state, its server."""
    return f"""data_dir = "{data_dir}"
server = "{server_url}"
hardware = "{hardware}"
target_families = {json.dumps(families)}
threads = 1
sync_interval_s = 1.0
long_poll_s = 5.0
heartbeat_interval_s = 2.0
telemetry_interval_s = 3.0
"""


def agent_toml(data_dir: Path, server_url: str, *, seed: int, fps: float) -> str:
    """A device's config: its synthetic conveyor camera and an alarm rule for defects."""
    return _device_toml(data_dir, server_url, "rpi4", ["rpi", "cpu"]) + f"""
[source]
kind = "synthetic"
fps = {fps}
seed = {seed}
defect_rate = 0.3

[[rules]]
name = "defect-alarm"
labels = ["scratch", "crack", "hole"]
min_score = 0.8
consecutive = 2
cooldown_s = 3.0
event_type = "alarm"
priority = "alarm"

[[rules]]
name = "defect-seen"
labels = ["scratch", "crack", "hole"]
min_score = 0.5
consecutive = 1
cooldown_s = 0.5
event_type = "defect"
priority = "event"

[health]
window_s = 2.0
min_frames = 5
max_latency_ms = 250.0
"""


def detection_agent_toml(data_dir: Path, server_url: str, *, video: Path, fps: float) -> str:
    """A traffic camera: its video, the counting line and zone, and rules on them (with frames)."""
    from edgewise.studio.samples.traffic_video import counting_zones

    zones = "".join(f"""
[[zones]]
name = "{zone['name']}"
kind = "{zone['kind']}"
points = {[[float(x), float(y)] for x, y in zone['points']]}
anchor = "{zone['anchor']}"
""" for zone in counting_zones())
    line, area = counting_zones()[0]["name"], counting_zones()[1]["name"]
    return _device_toml(data_dir, server_url, "x86-host", ["cpu"]) + f"""
[source]
kind = "video-file"
path = "{video}"
loop = true
fps = {fps}

# The demo's detectors train for minutes: they score a far (12 px) vehicle lower than ByteTrack's
# defaults (0.5 / 0.6) expect, so tracks start and continue from lower scores here.
[tracking]
high_score = 0.3
new_track_score = 0.4
low_score = 0.1
{zones}
[[rules]]
name = "vehicle-crossed"
kind = "line_cross"
zone = "{line}"
labels = ["car", "van", "truck", "motorbike"]
direction = "both"

[[rules]]
name = "queue-near-right"
kind = "zone_count"
zone = "{area}"
labels = ["car", "van", "truck", "motorbike"]
more_than = 2
duration_s = 2.0
cooldown_s = 10.0
snapshot = true
event_type = "alarm"
priority = "alarm"

[health]
window_s = 2.0
min_frames = 5
max_latency_ms = 250.0
"""
