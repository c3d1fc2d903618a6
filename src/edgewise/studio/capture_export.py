"""Captured frames -> an image-folder dataset that `edgewise train --init CKPT` fine-tunes on.

Frames come from a fleet server (`GET /api/v1/captures`, operator token) or from a device's
capture spool (`capture.sqlite3` in the agent's data dir, or a copy of it). The layout written:

    OUT/train/<label>/<capture_id>.jpg     OUT/val/...  OUT/test/...
    OUT/captures.jsonl                     one CapturedFrame per line (tags, reasons, no image)
    OUT/export.json                        counts per split and label, and how labels were chosen

Labels: with `labels="predicted"` a frame goes to the folder of the serving model's top label
when its score is at least `min_confidence`, otherwise to `unlabelled/`; with `labels="unlabelled"`
every frame goes to `unlabelled/`. Either way the folders are a starting point for a human: move
files between label folders (and out of `unlabelled/`) before training on them for real, since a
model's own predictions teach it nothing new.

Splits are deterministic (by a hash of the capture id), and every split gets every label, since the
trainer requires it: a label with fewer than `min_per_class` frames is folded into `unlabelled/`,
and an `unlabelled/` that is still too small is left out (and counted in export.json).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import ValidationError

from edgewise.core.errors import ConfigError, DatasetError, ServiceUnavailable
from edgewise.core.wire import API_PREFIX, CapturedFrame

if TYPE_CHECKING:
    import httpx

UNLABELLED = "unlabelled"
SPOOL_FILE = "capture.sqlite3"  # the agent's capture spool (edgewise.agent.capture), a documented format
LabelMode = Literal["predicted", "unlabelled"]
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class ExportSummary:
    out_dir: str
    frames: int
    written: int
    left_out: int
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    labels: str = "predicted"
    min_confidence: float = 0.0
    note: str = ("labels are the serving model's predictions (or 'unlabelled'): review and move files "
                 "between label folders before training on them")


def read_spool(path: Path) -> list[CapturedFrame]:
    """Every frame in an agent's capture spool (the file, or the data dir that holds it)."""
    spool = path / SPOOL_FILE if path.is_dir() else path
    if not spool.is_file():
        raise DatasetError(f"no capture spool at {spool}", f"point --from at an agent data dir holding {SPOOL_FILE}")
    try:
        with sqlite3.connect(f"file:{spool}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT meta, jpeg FROM frames ORDER BY created, capture_id").fetchall()
    except sqlite3.DatabaseError as error:
        raise DatasetError(f"{spool} is not a capture spool: {error}", "copy the file again from the device") from None
    return [_with_image(meta, jpeg) for meta, jpeg in rows]


def _with_image(meta: str, jpeg: bytes) -> CapturedFrame:
    frame = CapturedFrame.model_validate_json(meta)
    return frame.model_copy(update={"jpeg_b64": base64.b64encode(jpeg).decode()})


def fetch_from_server(server: str, token: str, page_size: int = 200,
                      transport: httpx.BaseTransport | None = None) -> list[CapturedFrame]:
    """Every captured frame the server stores, page by page (`?offset=&limit=`)."""
    import httpx  # only this path talks to a server; a studio install need not carry httpx

    if not token:
        raise ConfigError("no operator token given", "pass --token (create one with `edgewise server token create`)")
    frames: list[CapturedFrame] = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=60.0, transport=transport) as http:
        for page in _pages(http, page_size):
            frames.extend(page)
    return frames


def _pages(http: httpx.Client, page_size: int) -> Iterator[list[CapturedFrame]]:
    import httpx

    offset = 0
    while True:
        try:
            response = http.get(f"{API_PREFIX}/captures", params={"offset": offset, "limit": page_size,
                                                                    "images": "true"})
        except httpx.HTTPError as error:
            raise ServiceUnavailable(f"GET {API_PREFIX}/captures: {error}") from None
        if response.status_code >= 400:
            raise ServiceUnavailable(f"GET {API_PREFIX}/captures: HTTP {response.status_code}: {response.text[:200]}",
                                     "check the server URL and that the token has the read scope")
        try:
            page = [CapturedFrame.model_validate(item) for item in response.json()["captures"]]
        except (ValueError, KeyError, TypeError, ValidationError) as error:
            raise ServiceUnavailable(f"unexpected /captures response: {error}") from None
        if page:
            yield page
        if len(page) < page_size:
            return
        offset += len(page)


def folder_label(frame: CapturedFrame, labels: LabelMode, min_confidence: float) -> str:
    if labels == "unlabelled" or frame.label is None or (frame.score or 0.0) < min_confidence:
        return UNLABELLED
    return _UNSAFE.sub("_", frame.label).strip("._") or UNLABELLED


def _order_key(capture_id: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{capture_id}".encode()).hexdigest()


def assign_splits(by_label: dict[str, list[CapturedFrame]], val_share: float, test_share: float,
                  seed: int) -> dict[str, dict[str, list[CapturedFrame]]]:
    """split -> label -> frames, at least one frame of each label in each split."""
    splits: dict[str, dict[str, list[CapturedFrame]]] = {"train": {}, "val": {}, "test": {}}
    for label, frames in by_label.items():
        ordered = sorted(frames, key=lambda f: _order_key(f.capture_id, seed))
        n_val = max(1, round(len(ordered) * val_share))
        n_test = max(1, round(len(ordered) * test_share))
        splits["val"][label] = ordered[:n_val]
        splits["test"][label] = ordered[n_val:n_val + n_test]
        splits["train"][label] = ordered[n_val + n_test:]
    return splits


def export_dataset(frames: list[CapturedFrame], out_dir: Path, *, labels: LabelMode = "predicted",
                   min_confidence: float = 0.0, val_share: float = 0.15, test_share: float = 0.15,
                   min_per_class: int = 3, seed: int = 0) -> ExportSummary:
    """Write `frames` as OUT/{train,val,test}/<label>/*.jpg; see the module docstring."""
    if not (0 < val_share < 1 and 0 < test_share < 1 and val_share + test_share < 1):
        raise ConfigError(f"val share {val_share} and test share {test_share} must be in (0, 1) and sum below 1")
    if min_per_class < 3:
        raise ConfigError(f"min per class {min_per_class} is below 3", "every split needs one frame of each label")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"{out_dir} exists and is not empty", "choose a new --out folder")
    if not frames:
        raise DatasetError("there are no captured frames to export", "enable capture on the agents and wait")
    by_label: dict[str, list[CapturedFrame]] = defaultdict(list)
    for frame in frames:
        by_label[folder_label(frame, labels, min_confidence)].append(frame)
    for label in [name for name, group in by_label.items() if len(group) < min_per_class and name != UNLABELLED]:
        by_label[UNLABELLED].extend(by_label.pop(label))  # too few to split: a human sorts them
    left_out = 0
    if len(by_label.get(UNLABELLED, [])) < min_per_class:
        left_out = len(by_label.pop(UNLABELLED, []))
    if not by_label:
        raise DatasetError(f"only {len(frames)} captured frames, fewer than {min_per_class} of any label",
                           "capture more frames, or lower --min-per-class (3 at least)")
    summary = ExportSummary(str(out_dir), len(frames), 0, left_out, labels=labels, min_confidence=min_confidence)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "captures.jsonl", "w") as index:
        for split, groups in assign_splits(by_label, val_share, test_share, seed).items():
            for label, group in sorted(groups.items()):
                folder = out_dir / split / label
                folder.mkdir(parents=True, exist_ok=True)
                for frame in group:
                    name = _UNSAFE.sub("_", frame.capture_id) + ".jpg"
                    (folder / name).write_bytes(base64.b64decode(frame.jpeg_b64))
                    tags = frame.model_dump(mode="json", exclude={"jpeg_b64"})
                    index.write(json.dumps({"split": split, "folder": label, "file": name, **tags}) + "\n")
                summary.counts.setdefault(split, {})[label] = len(group)
                summary.written += len(group)
    (out_dir / "export.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary
