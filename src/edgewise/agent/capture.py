"""Data capture for retraining: keep the frames worth a human's label, within exact budgets.

A frame is selected for one or more reasons:

    low-confidence  the serving model's top score is below `low_confidence`; for a detector, its
                    weakest box's score (a frame where it found nothing is not low-confidence)
    disagreement    the shadow candidate (agent/shadow.py) does not fully agree (agent/agreement.py):
                    another top-1 label, or for a detector a box that one model found and the other not
    novelty         its colour histogram is far (Hellinger distance > `novelty`) from every one
                    of the last `novelty_memory` frames seen: a scene the camera has not shown lately

Selected frames are downscaled, optionally blurred where classes in `blur_labels` were found (the
detection boxes; for a classifier the whole frame, since the class is a property of all of it),
JPEG-encoded, tagged with device, camera, bundle and reasons (and a detector's boxes, in the source
frame's pixels, with that frame's size), and written to a SQLite spool beside the outbox, so they
survive restarts and offline hours.

Budgets count encoded image bytes and are enforced exactly:
- storage: the spool never holds more than `storage_bytes`; a frame that does not fit is dropped
  (and counted), never an earlier one evicted, because an earlier frame may be mid-upload;
- bandwidth: the bytes uploaded in any sliding `upload_window_s` never exceed `upload_bytes`; the
  uploads are logged in the spool, so a restart does not reset the allowance.
"""

from __future__ import annotations

import base64
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgewise.agent.agreement import compare
from edgewise.agent.config import CaptureSettings
from edgewise.agent.pipeline import Result
from edgewise.core.errors import EdgewiseError
from edgewise.core.wire import (
    MAX_CAPTURE_DETECTIONS,
    CapturedDetection,
    CapturedFrame,
    CaptureReason,
    IngestAck,
    IngestBatch,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    capture_id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    meta TEXT NOT NULL,
    jpeg BLOB NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (ts REAL NOT NULL, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, count INTEGER NOT NULL);
"""
HIST_BINS = 8


def colour_histogram(frame: np.ndarray) -> np.ndarray:
    """A normalised 8x8x8 BGR histogram of a thumbnail: cheap, and enough to notice a new scene."""
    thumb = cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA)
    hist = cv2.calcHist([thumb], [0, 1, 2], None, [HIST_BINS] * 3, [0, 256] * 3).reshape(-1)
    return hist / max(float(hist.sum()), 1.0)


def hellinger(a: np.ndarray, b: np.ndarray) -> float:
    """0 for identical histograms, 1 for disjoint ones."""
    return float(np.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(a * b))))))


class NoveltyMemory:
    def __init__(self, size: int) -> None:
        self._recent: deque[np.ndarray] = deque(maxlen=size)

    def score(self, frame: np.ndarray) -> float:
        """Distance to the nearest remembered histogram (1.0 when nothing is remembered); remembers it."""
        hist = colour_histogram(frame)
        distance = min((hellinger(hist, seen) for seen in self._recent), default=1.0)
        self._recent.append(hist)
        return distance


def blur_regions(frame: np.ndarray, result: Result, labels: list[str]) -> list[str]:
    """Blur (in place) the regions of `labels`; the classes actually blurred."""
    wanted = set(labels)
    if not wanted:
        return []
    blurred: set[str] = set()
    height, width = frame.shape[:2]
    if result.detections:
        for det in result.detections:
            if det.label not in wanted:
                continue
            x1, y1, x2, y2 = det.box  # the frame's own pixels (the pipeline undid letterbox and resize)
            left, right = int(max(0, x1)), int(min(width, np.ceil(x2)))
            top, bottom = int(max(0, y1)), int(min(height, np.ceil(y2)))
            if right > left and bottom > top:
                frame[top:bottom, left:right] = _blur(frame[top:bottom, left:right])
                blurred.add(det.label)
    elif result.label in wanted:
        frame[:] = _blur(frame)
        blurred.add(result.label)
    return sorted(blurred)


def confidence(result: Result) -> float | None:
    """The score low-confidence looks at: a classifier's top one, a detector's weakest box (None: no box)."""
    if result.task == "detect":
        return min((d.score for d in result.detections), default=None)
    return result.score


def captured_detections(result: Result) -> list[CapturedDetection] | None:
    """A detector's boxes, best first (at most MAX_CAPTURE_DETECTIONS); None for a classifier."""
    if result.task != "detect":
        return None
    best = sorted(result.detections, key=lambda d: -d.score)[:MAX_CAPTURE_DETECTIONS]
    return [CapturedDetection(label=d.label, score=d.score, box=d.box, track_id=d.track_id) for d in best]


def _blur(region: np.ndarray) -> np.ndarray:
    # A kernel relative to the region's size makes faces unreadable whatever the resolution.
    side = max(3, (max(region.shape[:2]) // 4) | 1)
    return cv2.GaussianBlur(region, (side, side), 0)


@dataclass
class CaptureStats:
    stored_bytes: int
    pending: int
    dropped_storage: int
    uploaded_bytes_in_window: int
    uploaded: int


class CaptureSpool:
    """Selected frames on disk, with the storage and bandwidth budgets."""

    def __init__(self, path: Path, settings: CaptureSettings, clock: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.settings, self._clock = settings, clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _count(self, name: str, by: int = 1) -> None:
        self._db.execute("INSERT INTO counters (name, count) VALUES (?, ?) "
                         "ON CONFLICT(name) DO UPDATE SET count = count + ?", (name, by, by))

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT count FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def add(self, frame: CapturedFrame, jpeg: bytes) -> bool:
        """Spool one frame; False (and counted) when it would break the storage budget."""
        meta = frame.model_copy(update={"jpeg_b64": ""}).model_dump_json()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            used = int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM frames").fetchone()[0])
            if used + len(jpeg) > self.settings.storage_bytes:
                self._count("dropped_storage")
                self._db.execute("COMMIT")
                return False
            self._db.execute("INSERT INTO frames VALUES (?, ?, ?, ?, ?)",
                             (frame.capture_id, frame.ts, meta, jpeg, len(jpeg)))
            self._db.execute("COMMIT")
            return True

    def frames(self, limit: int | None = None) -> list[CapturedFrame]:
        """Spooled frames, oldest first, with their images."""
        with self._lock:
            rows = self._db.execute("SELECT meta, jpeg FROM frames ORDER BY created, capture_id LIMIT ?",
                                    (-1 if limit is None else limit,)).fetchall()
        return [CapturedFrame.model_validate_json(meta).model_copy(
            update={"jpeg_b64": base64.b64encode(jpeg).decode()}) for meta, jpeg in rows]

    def upload_allowance(self) -> int:
        """Bytes that may still be uploaded in the current sliding window."""
        since = self._clock() - self.settings.upload_window_s
        with self._lock:
            self._db.execute("DELETE FROM uploads WHERE ts <= ?", (since,))
            sent = int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM uploads").fetchone()[0])
        return max(0, self.settings.upload_bytes - sent)

    def next_batch(self) -> list[CapturedFrame]:
        """The oldest frames that fit both the batch size and the remaining bandwidth allowance."""
        allowance = self.upload_allowance()
        with self._lock:
            rows = self._db.execute("SELECT capture_id, size FROM frames ORDER BY created, capture_id").fetchall()
        chosen: list[str] = []
        for capture_id, size in rows:
            if len(chosen) >= self.settings.batch_size or size > allowance:
                break  # strictly oldest first: a small later frame does not jump the queue
            chosen.append(capture_id)
            allowance -= size
        wanted = set(chosen)
        return [f for f in self.frames(len(rows)) if f.capture_id in wanted]

    def mark_uploaded(self, capture_ids: list[str]) -> int:
        """The server stored these: charge their bytes to the window and free their storage."""
        charged = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for capture_id in capture_ids:
                row = self._db.execute("SELECT size FROM frames WHERE capture_id = ?", (capture_id,)).fetchone()
                if row is None:
                    continue  # acked twice: already charged
                self._db.execute("INSERT INTO uploads VALUES (?, ?)", (self._clock(), row[0]))
                self._db.execute("DELETE FROM frames WHERE capture_id = ?", (capture_id,))
                charged += 1
            self._count("uploaded", charged)
            self._db.execute("COMMIT")
        return charged

    def stats(self) -> CaptureStats:
        allowance = self.upload_allowance()
        with self._lock:
            pending, stored = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM frames").fetchone()
            return CaptureStats(int(stored), int(pending), self._counter("dropped_storage"),
                                self.settings.upload_bytes - allowance, self._counter("uploaded"))


class FrameCapture:
    """Decides which frames to keep and spools them; `upload` sends what the bandwidth allows."""

    def __init__(self, spool: CaptureSpool, settings: CaptureSettings, device_id: str | None = None) -> None:
        self.spool, self.settings, self.device_id = spool, settings, device_id
        self.novelty = NoveltyMemory(settings.novelty_memory)

    def reasons(self, frame: np.ndarray, serving: Result,
                candidate: Result | None) -> tuple[list[CaptureReason], float]:
        s = self.settings
        reasons: list[CaptureReason] = []
        score = confidence(serving)
        if score is not None and score < s.low_confidence:
            reasons.append("low-confidence")
        if s.disagreement and candidate is not None and compare(serving, candidate).value < 1.0:
            reasons.append("disagreement")
        novelty = self.novelty.score(frame)
        if novelty > s.novelty:
            reasons.append("novelty")
        return reasons, novelty

    def consider(self, frame: np.ndarray, serving: Result, candidate: Result | None = None, *,
                 bundle_name: str | None = None, bundle_version: str | None = None,
                 camera: str = "default") -> CapturedFrame | None:
        """Spool `frame` when it is worth labelling and fits the storage budget; the spooled record."""
        reasons, novelty = self.reasons(frame, serving, candidate)
        if not reasons:
            return None
        image = frame.copy()  # the caller's frame may still be in use; blur a copy
        blurred = blur_regions(image, serving, self.settings.blur_labels)
        jpeg = encode_jpeg(image, self.settings.max_side, self.settings.jpeg_quality)
        detections = captured_detections(serving)
        height, width = frame.shape[:2]
        record = CapturedFrame(
            capture_id=uuid.uuid4().hex, ts=time.time(), camera=camera, device_id=self.device_id,
            bundle_name=bundle_name, bundle_version=bundle_version, reasons=reasons, label=serving.label,
            score=serving.score, candidate_label=candidate.label if candidate else None,
            candidate_score=candidate.score if candidate else None, novelty=novelty, blurred=blurred,
            detections=detections, frame_size=(width, height) if detections is not None else None, jpeg_b64="",
        )
        return record if self.spool.add(record, jpeg) else None

    def upload(self, send: Callable[[IngestBatch], IngestAck]) -> int:
        """Send spooled frames while the bandwidth allows; how many the server stored. Raises on network errors."""
        stored = 0
        while batch := self.spool.next_batch():
            ack = send(IngestBatch(captures=batch))
            if not ack.captured:
                break  # a server that does not store captures yet: keep them for later
            stored += self.spool.mark_uploaded(ack.captured)
        return stored


def encode_jpeg(frame: np.ndarray, max_side: int, quality: int) -> bytes:
    """A BGR frame downscaled to `max_side` and JPEG-encoded."""
    height, width = frame.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        frame = cv2.resize(frame, (max(1, int(width * scale)), max(1, int(height * scale))),
                           interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise EdgewiseError("could not encode a frame as JPEG", "check the video source")
    return encoded.tobytes()
