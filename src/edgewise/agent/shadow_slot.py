"""The shadow slot: fetch, verify and load the candidate bundle a deployment asks to shadow.

The candidate is downloaded beside (never into) the update slots, verified against the trusted
publisher keys exactly like an update, and loaded on a thread of its own so the inference loop
never waits for it. It never becomes `current`: the update machine alone decides what serves.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgewise.agent.config import ShadowSettings
from edgewise.agent.pipeline import Pipeline, Result
from edgewise.agent.shadow import ShadowEvaluator
from edgewise.agent.update import digest_hex
from edgewise.core.archive import extract_bundle
from edgewise.core.bundle import verify_bundle
from edgewise.core.errors import EdgewiseError, InvalidBundle
from edgewise.core.signing import PublicKey
from edgewise.core.wire import BundleRef, ShadowReport

log = logging.getLogger(__name__)
Downloader = Callable[[BundleRef, Path], Path]


def install_candidate(target: BundleRef, root: Path, download: Downloader, trusted: list[PublicKey]) -> Path:
    """The verified bundle dir of `target` under root/<hex>, downloading it when not there yet."""
    hex_digest = digest_hex(target.digest)
    bundle_dir = root / hex_digest
    if (bundle_dir / "bundle.json").is_file():
        verify_bundle(bundle_dir, trusted)
        return bundle_dir
    root.mkdir(parents=True, exist_ok=True)
    archive = download(target, root / f"{hex_digest}.tar")
    staging = root / f".{hex_digest}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        extract_bundle(archive, staging)
        manifest = verify_bundle(staging, trusted)
        if manifest.digest != target.digest:
            raise InvalidBundle(f"shadow bundle is {manifest.digest}, the server asked for {target.digest}")
        staging.rename(bundle_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        archive.unlink(missing_ok=True)
    return bundle_dir


class ShadowSlot:
    """Holds at most one ShadowEvaluator; `offer` switches it, `observe` feeds it."""

    def __init__(self, root: Path, settings: ShadowSettings, download: Downloader,
                 trusted: Callable[[], list[PublicKey]], load: Callable[[Path], Pipeline]) -> None:
        self.root, self.settings = root, settings
        self._download, self._trusted, self._load = download, trusted, load
        self._lock = threading.Lock()
        self.evaluator: ShadowEvaluator | None = None
        self.target: BundleRef | None = None
        self.error: str | None = None
        self._finished: list[ShadowReport] = []

    def offer(self, target: BundleRef | None, share: float, serving_version: str | None) -> None:
        """The desired shadow changed (or not): start loading a new candidate, or stop shadowing."""
        if target is not None and self.target is not None and target.digest == self.target.digest:
            return
        with self._lock:
            if self.evaluator is not None:
                self._finished.extend(self.evaluator.report())
            self.evaluator, self.target, self.error = None, target, None
        if target is not None:
            settings = self.settings.model_copy(update={"share": share}) if share > 0 else self.settings
            threading.Thread(target=self._prepare, args=(target, settings, serving_version or "?"),
                             name="shadow-load", daemon=True).start()

    def _prepare(self, target: BundleRef, settings: ShadowSettings, serving_version: str) -> None:
        try:
            bundle_dir = install_candidate(target, self.root, self._download, self._trusted())
            pipeline = self._load(bundle_dir)
        except EdgewiseError as error:
            log.warning("shadow candidate %s:%s not loaded: %s", target.name, target.version, error.message)
            self.error = error.message
            return
        with self._lock:
            if self.target is not None and self.target.digest == target.digest:
                self.evaluator = ShadowEvaluator(settings, pipeline, serving_version, target.version, target.digest)
                log.info("shadowing %s:%s on %.0f%% of frames", target.name, target.version, settings.share * 100)

    def observe(self, frame: np.ndarray, serving: Result, camera: str, serving_version: str) -> Result | None:
        evaluator = self.evaluator
        if evaluator is None:
            return None
        evaluator.serving_version = serving_version  # an update may have committed since the candidate loaded
        return evaluator.observe(frame, serving, camera)

    def due_reports(self, camera: str, force: bool = False) -> list[ShadowReport]:
        """Finished windows: those of a replaced candidate, and the current one when due (or forced)."""
        with self._lock:
            reports, self._finished = self._finished, []
            if self.evaluator is not None and (force or self.evaluator.due(camera)):
                reports.extend(self.evaluator.report())
        return reports
