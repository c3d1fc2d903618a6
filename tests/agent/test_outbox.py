from __future__ import annotations

import sqlite3

from edgewise.agent.outbox import EVICTION_ORDER, Outbox


def event(label: str = "scratch", priority: str = "event") -> dict:
    return {"ts": 1.0, "priority": priority, "type": "alarm" if priority == "alarm" else "classification",
            "label": label, "score": 0.9}


def test_seq_is_monotonic_across_restarts_and_deletes(tmp_path) -> None:
    box = Outbox(tmp_path / "o.db")
    seqs = [box.append("event", "event", event()) for _ in range(3)]
    box.ack(seqs)
    box.close()
    reopened = Outbox(tmp_path / "o.db")
    later = reopened.append("event", "event", event())
    assert seqs == sorted(seqs) and later > max(seqs)
    assert reopened.depth() == 1


def test_wal_mode_and_items_survive_reopen(tmp_path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.append("telemetry", "telemetry", {"ts": 1.0, "fps": 10.0})
    box.close()
    mode = sqlite3.connect(tmp_path / "o.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    batch = Outbox(tmp_path / "o.db").batch(10)
    assert batch is not None and batch.telemetry[0].fps == 10.0


def test_batches_go_by_priority_then_seq_and_delete_only_after_ack(tmp_path) -> None:
    box = Outbox(tmp_path / "o.db")
    t = box.append("telemetry", "telemetry", {"ts": 1.0})
    e1 = box.append("event", "event", event())
    a = box.append("event", "alarm", event(priority="alarm"))
    e2 = box.append("event", "event", event())
    assert [i.seq for i in box.peek(10)] == [a, e1, e2, t]
    batch = box.batch(2)
    assert [e.seq for e in batch.events] == [a, e1] and batch.telemetry == []
    assert box.depth() == 4  # sending is not deleting
    box.ack([a])  # partial ack: only that one goes
    assert [i.seq for i in box.peek(10)] == [e1, e2, t]
    box.ack([a, 99999])  # duplicate and unknown acks are harmless
    assert box.depth() == 3


def test_full_queue_evicts_in_declared_order_and_counts_drops(tmp_path) -> None:
    assert EVICTION_ORDER == ("snapshot", "telemetry", "event", "alarm")
    box = Outbox(tmp_path / "o.db", max_items=4)
    snap = box.append("event", "snapshot", event(priority="snapshot"))
    tel = box.append("telemetry", "telemetry", {"ts": 1.0})
    ev = box.append("event", "event", event())
    al = box.append("event", "alarm", event(priority="alarm"))
    box.append("event", "alarm", event(priority="alarm"))  # evicts the snapshot
    box.append("event", "alarm", event(priority="alarm"))  # then the telemetry
    remaining = [i.seq for i in box.peek(10)]
    assert snap not in remaining and tel not in remaining and ev in remaining and al in remaining
    assert box.append("telemetry", "telemetry", {"ts": 2.0}) is None  # nothing lower to evict: new one dropped
    box.append("event", "alarm", event(priority="alarm"))  # evicts the event
    box.append("event", "alarm", event(priority="alarm"))  # evicts the oldest alarm
    assert ev not in [i.seq for i in box.peek(10)] and al not in [i.seq for i in box.peek(10)]
    assert box.dropped() == {"snapshot": 1, "telemetry": 2, "event": 1, "alarm": 1}
    assert box.batch(10).dropped == box.dropped()
    assert box.depth() == 4


def test_byte_bound(tmp_path) -> None:
    box = Outbox(tmp_path / "o.db", max_items=1000, max_bytes=2048)
    for _ in range(50):
        box.append("event", "event", dict(event(), data={"pad": "x" * 200}))
    assert box.depth() < 10 and box.dropped()["event"] > 40
