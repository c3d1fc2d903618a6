"""The agent process end to end without a server: inference, rules, outbox, telemetry, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import tomllib

from edgewise.agent.config import AgentSettings, HealthSettings, RuleSettings, SourceSettings
from edgewise.agent.outbox import Outbox
from edgewise.agent.runner import AgentRunner
from tests.agent.conftest import ref_for

ROOT = Path(__file__).parents[2]


def installed(tmp_path, make_machine, bundles, name: str) -> Path:
    data_dir = tmp_path / "agent"
    machine = make_machine(data_dir)
    machine.offer(ref_for(*bundles[name]))
    machine.run_until_rest()
    assert machine.record.state == "idle"
    return data_dir


def test_once_turns_frames_into_alarms_and_telemetry(tmp_path, make_machine, bundles) -> None:
    data_dir = installed(tmp_path, make_machine, bundles, "scratch")
    settings = AgentSettings(
        data_dir=data_dir, threads=1, drop_policy="none",
        source=SourceSettings(kind="synthetic", frames=20, width=64, height=48),
        rules=[RuleSettings(consecutive=3, cooldown_s=0, snapshot=True)],
        health=HealthSettings(max_latency_ms=50),
    )
    AgentRunner(settings).run(once=True)
    box = Outbox(data_dir / "outbox.sqlite3")
    batch = box.batch(1000)
    alarms = [e for e in batch.events if e.priority == "alarm"]
    assert len(alarms) == 20 // 3 and all(e.label == "scratch" and e.bundle_version == "scratch" for e in alarms)
    assert len([e for e in batch.events if e.priority == "snapshot"]) == len(alarms)
    assert batch.telemetry and batch.telemetry[-1].model_version == "scratch"
    name = json.loads((data_dir / "status.json").read_text())["current_bundle"]["name"]
    assert name and batch.telemetry[-1].bundle_name == name and all(e.bundle_name == name for e in alarms)
    assert batch.telemetry[-1].latency_p95_ms is not None
    status = json.loads((data_dir / "status.json").read_text())
    assert status["current_bundle"]["version"] == "scratch" and status["health"]["status"] == "ok"


def test_without_a_model_it_keeps_running_and_reports_it(tmp_path) -> None:
    settings = AgentSettings(data_dir=tmp_path, source=SourceSettings(frames=5, width=32, height=32))
    runner = AgentRunner(settings)
    runner.run(once=True)
    assert runner.reported_state().health.detail == "no model installed"


def test_latest_frame_wins_when_the_model_is_slower_than_the_camera(tmp_path, make_machine, bundles) -> None:
    data_dir = installed(tmp_path, make_machine, bundles, "v1")
    settings = AgentSettings(data_dir=data_dir, threads=1, drop_policy="latest",
                             source=SourceSettings(kind="synthetic", fps=500, width=32, height=32))
    runner = AgentRunner(settings)
    original = runner.process

    def slow_process(frame) -> None:
        import time

        time.sleep(0.01)
        original(frame)

        if runner.telemetry.frames >= 20:
            runner.stop.set()

    runner.process = slow_process
    runner.run(once=True)
    assert runner.telemetry.frames == 20
    assert runner._mailbox.dropped > 10  # the reader kept only the newest frame while the model was busy


def test_once_over_a_folder_processes_every_image_and_says_so_at_info(tmp_path, make_machine, bundles,
                                                                      caplog) -> None:
    # the new user's case: 38 images, default settings, a model slower than the disk: 2 were processed
    import logging
    import time

    import cv2
    import numpy as np

    data_dir = installed(tmp_path, make_machine, bundles, "v1")
    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(38):
        cv2.imwrite(str(folder / f"{index:03d}.png"), np.full((48, 64, 3), index * 6, dtype=np.uint8))
    settings = AgentSettings(data_dir=data_dir, threads=1, source=SourceSettings(kind="image-folder", path=str(folder)))
    assert settings.drop_policy == "latest" and settings.source.loop  # the defaults the user had
    runner = AgentRunner(settings)
    original = runner.process

    def slow_process(frame) -> None:
        time.sleep(0.01)
        original(frame)

    runner.process = slow_process
    with caplog.at_level(logging.INFO, logger="edgewise"):
        runner.run(once=True)
    assert runner.telemetry.frames == 38  # every image once: no drop, no loop
    lines = [record.getMessage() for record in caplog.records if record.levelno == logging.INFO]
    assert any("38 frames" in line and "fps" in line and "latency p50" in line for line in lines), lines


def test_agent_extra_does_not_depend_on_torch() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    agent_deps = extras["dependencies"] + extras["optional-dependencies"]["agent"]
    assert not [d for d in agent_deps if d.lower().startswith(("torch", "onnxscript", "optuna"))]


def test_the_agent_process_never_imports_torch(tmp_path, make_machine, bundles) -> None:
    data_dir = installed(tmp_path, make_machine, bundles, "v1")
    config = tmp_path / "agent.toml"
    config.write_text(f'data_dir = "{data_dir}"\nthreads = 1\n[source]\nframes = 5\nwidth = 32\nheight = 32\n')
    script = (
        "import sys\nfrom edgewise.cli.main import main\n"
        f"code = main(['agent', 'run', '--once', '--config', {str(config)!r}])\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or "
        "m.startswith(('edgewise.studio', 'edgewise.fleet', 'edgewise.registry')))\n"
        "print('LOADED', bad)\nsys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LOADED []" in done.stdout, done.stdout
    assert json.loads((data_dir / "status.json").read_text())["extra"]["frames"] == 5


def test_detections_are_tracked_and_counted_across_a_line(tmp_path) -> None:
    """The runner tracks detection results before the rules see them; without zone rules no tracker runs."""
    from types import SimpleNamespace

    import numpy as np

    from edgewise.agent.config import ZoneSettings
    from edgewise.agent.pipeline import Detection, Result

    assert AgentRunner(AgentSettings(data_dir=tmp_path / "plain")).scene is None
    settings = AgentSettings(
        data_dir=tmp_path / "door", zones=[ZoneSettings(name="door", kind="line", points=[(0, 100), (200, 100)])],
        rules=[RuleSettings(name="door-count", kind="line_cross", zone="door", labels=["person"])],
    )
    runner = AgentRunner(settings)
    feet = iter(range(160, 40, -10))  # a person walking up the frame through the line

    class WalkingPerson:  # stands in for a detection bundle's Pipeline
        manifest = SimpleNamespace(name="people", version="1")

        def run(self, frame: np.ndarray) -> Result:
            y = next(feet)
            return Result("detect", "person", 0.9, 1.0, detections=[Detection("person", 0.9, (90, y - 60, 110, y))])

    runner._reload.clear()
    runner.pipeline = WalkingPerson()
    for _ in range(12):
        runner.process(np.zeros((200, 200, 3), dtype=np.uint8))
    events = runner.outbox.batch(100).events
    assert [(e.type, e.priority, e.data["direction"], e.data["in"], e.data["track_id"]) for e in events] == [
        ("line_cross", "event", "in", 1, 1)]
