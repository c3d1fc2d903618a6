"""The agent process: source -> pipeline -> rules -> outbox, with sync and updates on the side.

The inference loop runs on the main thread and never touches the network: it reads frames
(latest-frame-wins when the model is slower than the camera), runs the model of the `current`
slot, and appends events and telemetry to the outbox. Sync threads do the talking.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np

import edgewise
from edgewise.agent.capture import CaptureSpool, FrameCapture
from edgewise.agent.client import DeviceClient
from edgewise.agent.config import AgentSettings, SourceSettings
from edgewise.agent.fault_injection import crash_hook_from_env
from edgewise.agent.health import check_model_health
from edgewise.agent.identity import IDENTITY_FILE, Identity, load_identity, write_json_atomic
from edgewise.agent.outbox import Outbox
from edgewise.agent.pipeline import Pipeline
from edgewise.agent.rules import RuleEngine
from edgewise.agent.scene import Scene
from edgewise.agent.shadow_slot import ShadowSlot
from edgewise.agent.sources import create_source
from edgewise.agent.sync import DesiredStateLoop, Uplink
from edgewise.agent.telemetry import TelemetryCollector
from edgewise.agent.update import UpdateMachine, UpdateRecord
from edgewise.core.errors import EdgewiseError, InvalidBundle
from edgewise.core.hashing import sha256_file
from edgewise.core.manifest import Manifest
from edgewise.core.signing import PublicKey, load_public_key
from edgewise.core.wire import SHADOW_EVENT_TYPE, BundleRef, DesiredState, Health, ReportedState

log = logging.getLogger(__name__)
STATUS_FILE = "status.json"
ON_TRIAL = ("activate", "health-check")  # update states in which the current model is not yet vetted


class LatestFrame:
    """A one-slot mailbox fed by a reader thread: a slow consumer always gets the newest frame."""

    def __init__(self, frames: Iterator[np.ndarray], stop: threading.Event) -> None:
        self._frames, self._stop = frames, stop
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._done = False
        self.dropped = 0
        threading.Thread(target=self._read, name="frame-reader", daemon=True).start()

    def _read(self) -> None:
        try:
            for frame in self._frames:
                if self._stop.is_set():
                    break
                with self._cond:
                    if self._frame is not None:
                        self.dropped += 1
                    self._frame = frame
                    self._cond.notify()
        finally:
            with self._cond:
                self._done = True
                self._cond.notify()

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            with self._cond:
                while self._frame is None and not self._done and not self._stop.is_set():
                    self._cond.wait(0.5)
                if self._frame is None:
                    return
                frame, self._frame = self._frame, None
            yield frame


class AgentRunner:
    def __init__(self, settings: AgentSettings, identity: Identity | None = None) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if identity is None and (self.data_dir / IDENTITY_FILE).is_file():
            identity = load_identity(self.data_dir)
        self.identity = identity
        self.stop = threading.Event()
        self.outbox = Outbox(self.data_dir / "outbox.sqlite3", settings.outbox.max_items, settings.outbox.max_bytes)
        self.telemetry = TelemetryCollector()
        self.scene = Scene.for_settings(settings)  # None: no rule needs tracking, so no tracker runs
        self.rules = RuleEngine(settings.rules, self.scene)
        self.probe_frames: deque[np.ndarray] = deque(maxlen=8)
        self.pipeline: Pipeline | None = None
        self._reload = threading.Event()
        self._reload.set()
        self._health = Health(status="unknown")
        self.skipped_frames = 0  # frames that arrived while no model was installed
        self.client = self._client() if identity else None
        self.shadow = ShadowSlot(self.data_dir / "shadow", settings.shadow, self._download, self._trusted_keys,
                                 self._load_pipeline)
        self.capture: FrameCapture | None = None
        if settings.capture.enabled:
            spool = CaptureSpool(self.data_dir / "capture.sqlite3", settings.capture)
            self.capture = FrameCapture(spool, settings.capture, identity.device_id if identity else None)
        self.machine = UpdateMachine(
            self.data_dir, self._trusted_keys(), self._download, self._check_health,
            on_transition=self._report_transition, on_activate=self._reload.set,
            target_families=settings.target_families, boot_loop_limit=settings.health.boot_loop_limit,
            after_persist=crash_hook_from_env(),
        )

    def _trusted_keys(self) -> list[PublicKey]:
        if self.settings.trusted_keys is not None:  # pinned locally: the device trusts only these
            return [load_public_key(k) for k in self.settings.trusted_keys]
        return self.identity.trusted_keys if self.identity else []

    def _client(self) -> DeviceClient:
        identity = assert_identity(self.identity)
        server = self.settings.server or identity.server
        return DeviceClient(server, identity.device_id, identity.key,
                            self.settings.request_timeout_s)

    # --- update machine hooks ----------------------------------------------------------------
    def _download(self, target: BundleRef, dest: Path) -> Path:
        if self.client is None:
            raise EdgewiseError("no server to download from", "enroll the device")
        announced = self.client.download(target.url, dest)
        if announced and sha256_file(dest) != announced:
            dest.unlink(missing_ok=True)  # corrupt: start over rather than resume
            raise InvalidBundle(f"downloaded archive of {target.name}:{target.version} does not match its sha256")
        return dest

    def _check_health(self, bundle_dir: Path, manifest: Manifest) -> object:
        s = self.settings
        report = check_model_health(bundle_dir, manifest, self._probe_frames, s.health, s.target_families,
                                    s.providers, s.threads)
        log.info("health check of %s passed: %s", manifest.ref, report)
        return report

    def _probe_frames(self) -> list[np.ndarray]:
        frames = list(self.probe_frames)
        if frames:
            return frames
        # No live frames yet (e.g. recovering at boot): probe with synthetic conveyor frames.
        synthetic = create_source(SourceSettings(kind="synthetic", frames=8, width=self.settings.source.width,
                                                 height=self.settings.source.height))
        return list(synthetic.frames())

    def _report_transition(self, record: UpdateRecord) -> None:
        log.info("update: %s %s", record.state, record.error or "")
        if self.client is None:
            return
        try:  # best effort, right away; the heartbeat carries the latest state if this fails
            self.client.report_state(self.reported_state())
        except EdgewiseError as error:
            log.info("could not report transition: %s", error.message)

    def reported_state(self) -> ReportedState:
        slots = self.machine.slots
        try:
            current, previous = slots.installed("current"), slots.installed("previous")
        except EdgewiseError:
            current = previous = None
        return ReportedState(
            agent_version=edgewise.__version__, hardware=self.settings.hardware,
            current_bundle=current, previous_bundle=previous, update=self.machine.record.progress(),
            health=self._reported_health(), extra={"frames": self.telemetry.frames, "queue_depth": self.outbox.depth(),
                                        "update_history": self.machine.record.history[-20:], **self._extras()},
        )

    def _extras(self) -> dict[str, object]:
        extras: dict[str, object] = {}
        if self.shadow.target is not None:
            extras["shadow"] = {"digest": self.shadow.target.digest, "loaded": self.shadow.evaluator is not None,
                                "error": self.shadow.error}
        if self.capture is not None:
            extras["capture"] = vars(self.capture.spool.stats())
        return extras

    # --- shadow evaluation and capture (docs/quality-gates.md) -------------------------------
    def _load_pipeline(self, bundle_dir: Path) -> Pipeline:
        s = self.settings
        return Pipeline.from_dir(bundle_dir, s.target_families, s.providers, s.threads, self._spin())

    def _spin(self) -> bool:
        """ORT's threads may spin only where nothing runs beside inference: a file or folder source
        (read in turn with inference), with more than one thread to spin."""
        return self.settings.threads != 1 and self.settings.source.kind in ("video-file", "image-folder")

    def on_desired(self, desired: DesiredState) -> None:
        serving = self.pipeline.manifest.version if self.pipeline else None
        self.shadow.offer(desired.shadow, desired.shadow_share, serving)

    def _emit_shadow_reports(self, force: bool = False) -> None:
        for report in self.shadow.due_reports(self.settings.camera, force):
            self.outbox.append("event", "event", {
                "ts": time.time(), "type": SHADOW_EVENT_TYPE, "bundle_version": report.serving_version,
                "label": report.candidate_version, "score": report.top1_agreement,
                "data": report.model_dump(mode="json")})

    def _upload_captures(self, client: DeviceClient) -> None:
        if self.capture is not None:
            self.capture.upload(client.ingest)

    def _reported_health(self) -> Health:
        # A model on trial already sits in the `current` slot, but it is not healthy until its
        # health check passes: saying "ok" now would let a rollout count an untested canary as done.
        state = self.machine.record.state
        if state in ON_TRIAL:
            return Health(status="unknown", detail=f"new model on trial ({state}); {self._health.detail}")
        return self._health

    # --- inference ---------------------------------------------------------------------------
    def _load_current(self) -> None:
        self._reload.clear()
        current = self.machine.slots.pointer("current")
        if current is None:
            self.pipeline = None
            self._health = Health(status="unknown", detail="no model installed")
            return
        try:
            s = self.settings
            self.pipeline = Pipeline.from_dir(current, s.target_families, s.providers, s.threads, self._spin())
            self._health = Health(status="ok", detail=f"serving {self.pipeline.manifest.ref}")
        except EdgewiseError as error:
            self.pipeline = None
            self._health = Health(status="failed", detail=error.message)
        log.info("model: %s", self._health.detail)

    def _frames(self, once: bool) -> Iterator[np.ndarray]:
        settings = self.settings.source.model_copy(update={"loop": False}) if once else self.settings.source
        source = create_source(settings)
        # Only a live source outruns a slow model (the newest frame wins); a file or folder waits
        # for it, and a batch run (--once) wants every frame of whatever it reads.
        if self.settings.drop_policy == "latest" and source.live and not (once and settings.frames is not None):
            mailbox = LatestFrame(source.frames(), self.stop)
            self._mailbox = mailbox
            return iter(mailbox)
        return source.frames()

    def process(self, frame: np.ndarray) -> None:
        if self._reload.is_set():
            self._load_current()
        self.probe_frames.append(frame)
        if self.pipeline is None:
            self.skipped_frames += 1
            if self.skipped_frames in (1, 100) or self.skipped_frames % 1000 == 0:
                log.warning("no model to run (%s): %d frame(s) not processed so far", self._health.detail,
                            self.skipped_frames)
            return
        try:
            result = self.pipeline.run(frame)
        except EdgewiseError:
            self.telemetry.record_error()
            return
        self.telemetry.record(result.latency_ms)
        manifest = self.pipeline.manifest
        now = time.time()
        if self.scene is not None and result.task == "detect":
            result = self.scene.observe(result, now)  # track ids on the detections; zones updated
        for event in self.rules.evaluate(result, frame, manifest.version, now=now, bundle_name=manifest.name):
            self.outbox.append("event", event.priority, event.payload)
        candidate = self.shadow.observe(frame, result, self.settings.camera, manifest.version)
        if self.capture is not None:
            self.capture.consider(frame, result, candidate, bundle_name=manifest.name,
                                  bundle_version=manifest.version, camera=self.settings.camera)

    def _emit_telemetry(self) -> None:
        manifest = self.pipeline.manifest if self.pipeline else None
        if hasattr(self, "_mailbox"):
            self.telemetry.dropped_frames = self._mailbox.dropped
        snapshot = self.telemetry.snapshot(self.outbox.depth(), manifest.version if manifest else None,
                                           manifest.name if manifest else None)
        self.outbox.append("telemetry", "telemetry", snapshot)
        log.info("%s: %d frames, %.1f fps, latency p50 %s / p95 %s ms, %d dropped, %d queued to send",
                 self.pipeline.manifest.ref if self.pipeline else "no model", self.telemetry.frames, snapshot["fps"],
                 _ms(snapshot["latency_p50_ms"]), _ms(snapshot["latency_p95_ms"]), self.telemetry.dropped_frames,
                 snapshot["queue_depth"])

    def _write_status(self) -> None:
        write_json_atomic(self.data_dir / STATUS_FILE, self.reported_state().model_dump(mode="json"))

    def stop_on_signals(self) -> None:
        """SIGTERM/SIGINT end the loop cleanly (systemd, docker stop); call from the main thread."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop.set())

    def run(self, once: bool = False) -> None:
        self.machine.recover()
        if self.client is None:
            log.warning("device is not enrolled: running offline (enroll with `edgewise agent enroll`)")
            self.machine.run_until_rest()  # nothing to download; finishes or rolls back local work
        elif once:
            self._sync_before_batch(self.client)
        uplink = self._start_sync()
        last_telemetry = last_status = time.monotonic()
        try:
            for frame in self._frames(once):
                self.process(frame)
                now = time.monotonic()
                if now - last_telemetry >= self.settings.telemetry_interval_s:
                    self._emit_telemetry()
                    self._emit_shadow_reports()
                    last_telemetry = now
                if now - last_status >= 1.0:
                    self._write_status()
                    last_status = now
                if self.stop.is_set():
                    break
        finally:
            self._emit_telemetry()
            self._emit_shadow_reports(force=once)
            self._write_status()
            if once and uplink is not None:
                self._final_flush(uplink)
            self.stop.set()

    def _start_sync(self) -> Uplink | None:
        if self.identity is None or self.client is None:
            return None
        s = self.settings
        DesiredStateLoop(self.client, self.machine, self.stop, s.long_poll_s, s.sync_interval_s,
                         on_desired=self.on_desired).start()
        uplink = Uplink(self._client(), self.outbox, self.reported_state, self.stop, s.sync_interval_s,
                        s.heartbeat_interval_s, s.outbox.batch_size, captures=self._upload_captures)
        uplink.start()
        return uplink

    def _sync_before_batch(self, client: DeviceClient) -> None:
        """--once: the model the server wants is installed and health-checked before the first frame."""
        s = self.settings
        loop = DesiredStateLoop(client, self.machine, self.stop, 0.0, s.sync_interval_s,
                                on_desired=self.on_desired)
        try:
            loop.poll_once(0.0)
        except EdgewiseError as error:
            log.warning("could not sync before the batch (%s); running with the installed model", error.message)
        installed = self.machine.slots.installed("current")
        log.info("batch run with %s", f"{installed.name}:{installed.version}" if installed else "no model installed")

    def _final_flush(self, uplink: Uplink) -> None:
        try:
            uplink.heartbeat()
            uplink.flush()
            self._upload_captures(uplink.client)
        except EdgewiseError as error:
            log.warning("could not send the outbox before exit (%s); it is kept for next time", error.message)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def assert_identity(identity: Identity | None) -> Identity:
    if identity is None:
        raise EdgewiseError("device is not enrolled", "run `edgewise agent enroll` first")
    return identity
