"""Store-and-forward queue: a SQLite (WAL) file that survives restarts and network outages.

Every item gets the next per-device sequence number (AUTOINCREMENT never reuses one, even after
deletes), is sent in batches, and is deleted only when the server acks its seq; the server stores
each seq once, so a retried batch is harmless. When the queue is full, the declared eviction
order decides what goes:

    EVICTION_ORDER = snapshot, telemetry, event, alarm

A new item may evict only an item of its own or a lower class (oldest first); otherwise the new
item itself is dropped. Every drop is counted per class and reported in IngestBatch.dropped.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edgewise.core.wire import EventIn, EventPriority, IngestBatch, TelemetryIn

PRIORITY_RANK: dict[str, int] = {"alarm": 0, "event": 1, "telemetry": 2, "snapshot": 3}
EVICTION_ORDER: tuple[EventPriority, ...] = ("snapshot", "telemetry", "event", "alarm")
Kind = Literal["event", "telemetry"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rank INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS items_rank_seq ON items (rank, seq);
CREATE TABLE IF NOT EXISTS dropped (priority TEXT PRIMARY KEY, count INTEGER NOT NULL);
"""


@dataclass
class Item:
    seq: int
    kind: Kind
    payload: dict[str, Any]


class Outbox:
    def __init__(self, path: Path, max_items: int = 100_000, max_bytes: int = 256 << 20) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.max_items, self.max_bytes = max_items, max_bytes
        self._lock = threading.Lock()
        self._unrecorded: dict[str, int] = {}  # drops that could not even be written down
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an appended alarm survives a power cut
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def append(self, kind: Kind, priority: EventPriority, payload: dict[str, Any]) -> int | None:
        """Queue one item; its seq, or None when the full queue dropped it."""
        body = json.dumps(payload, separators=(",", ":"))
        rank = PRIORITY_RANK[priority]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    if not self._make_room(rank, len(body)):
                        self._count_drop(priority)
                        self._db.execute("COMMIT")
                        return None
                    cursor = self._db.execute(
                        "INSERT INTO items (rank, kind, payload, size) VALUES (?, ?, ?, ?)",
                        (rank, kind, body, len(body)),
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError:
                # Disk full or I/O error: inference must go on; count the loss in memory instead.
                self._unrecorded[priority] = self._unrecorded.get(priority, 0) + 1
                return None
            return int(cursor.lastrowid or 0)

    def _make_room(self, rank: int, size: int) -> bool:
        while True:
            count, used = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM items").fetchone()
            if count < self.max_items and used + size <= self.max_bytes:
                return True
            victim = self._db.execute(
                "SELECT seq, rank FROM items WHERE rank >= ? ORDER BY rank DESC, seq ASC LIMIT 1", (rank,)
            ).fetchone()
            if victim is None:
                return False
            self._db.execute("DELETE FROM items WHERE seq = ?", (victim[0],))
            self._count_drop(EVICTION_ORDER[len(EVICTION_ORDER) - 1 - victim[1]])

    def _count_drop(self, priority: str) -> None:
        self._db.execute(
            "INSERT INTO dropped (priority, count) VALUES (?, 1) "
            "ON CONFLICT(priority) DO UPDATE SET count = count + 1", (priority,)
        )

    def peek(self, limit: int) -> list[Item]:
        """The next batch: highest priority first, in seq order within a class."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, kind, payload FROM items ORDER BY rank ASC, seq ASC LIMIT ?", (limit,)
            ).fetchall()
        return [Item(seq, kind, json.loads(payload)) for seq, kind, payload in rows]

    def ack(self, seqs: list[int]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM items WHERE seq = ?", [(s,) for s in seqs])

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def dropped(self) -> dict[str, int]:
        with self._lock:
            counts = dict(self._db.execute("SELECT priority, count FROM dropped").fetchall())
        for priority, lost in self._unrecorded.items():
            counts[priority] = counts.get(priority, 0) + lost
        return counts

    def batch(self, limit: int) -> IngestBatch | None:
        """The next IngestBatch to send, or None when the queue is empty."""
        items = self.peek(limit)
        if not items:
            return None
        events = [EventIn(seq=i.seq, **i.payload) for i in items if i.kind == "event"]
        telemetry = [TelemetryIn(seq=i.seq, **i.payload) for i in items if i.kind == "telemetry"]
        return IngestBatch(events=events, telemetry=telemetry, dropped=self.dropped())
