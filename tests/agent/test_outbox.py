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


def test_a_full_disk_drops_and_counts_instead_of_crashing(tmp_path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.append("event", "alarm", event(priority="alarm"))
    real = box._db

    class FullDisk:
        def execute(self, sql, *args):
            if sql.startswith("INSERT INTO items"):
                raise sqlite3.OperationalError("database or disk is full")
            return real.execute(sql, *args)

    box._db = FullDisk()  # type: ignore[assignment]
    assert box.append("event", "alarm", event(priority="alarm")) is None
    box._db = real
    assert box.dropped() == {"alarm": 1} and box.depth() == 1


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PRIORITIES = ["alarm", "event", "telemetry", "snapshot"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(PRIORITIES), min_size=1, max_size=40), st.integers(min_value=1, max_value=8))
def test_eviction_invariants(tmp_path_factory, priorities: list[str], bound: int) -> None:
    box = Outbox(tmp_path_factory.mktemp("o") / "o.db", max_items=bound)
    for priority in priorities:
        kind = "telemetry" if priority == "telemetry" else "event"
        payload = {"ts": 1.0} if kind == "telemetry" else event(priority=priority)
        box.append(kind, priority, payload)
        assert box.depth() <= bound
    kept = box.peek(1000)
    assert box.depth() + sum(box.dropped().values()) == len(priorities)  # nothing vanishes uncounted
    # what is kept is the best `bound` items: no kept item ranks below a dropped one's class
    ranks = sorted(PRIORITIES.index(p) for p in priorities)
    assert sorted(PRIORITIES.index(i.payload.get("priority", "telemetry")) for i in kept) == ranks[:len(kept)]
