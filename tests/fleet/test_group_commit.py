"""The group commit (many device requests, one transaction) and the batched handlers behind it,
on a real SQLite database: each request still succeeds or fails on its own."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from edgewise.core.auth import signed_headers
from edgewise.core.errors import AuthError, ProtocolError, ServiceUnavailable
from edgewise.core.signing import PrivateKey
from edgewise.core.wire import AgentConfig, EnrollRequest, EventIn, IngestBatch, ReportedState, TelemetryIn
from edgewise.fleet.auth import DeviceAuthenticator, SignedRequest
from edgewise.fleet.db import Database, open_database
from edgewise.fleet.db.models import Bundle, Device, Event, Telemetry
from edgewise.fleet.devices.enrollment import create_enrollment_token, enroll
from edgewise.fleet.devices.ingest import decode_images, store_batches
from edgewise.fleet.devices.twin import apply_reports, read_desired_many
from edgewise.fleet.gateway.device_requests import InProcessDeviceRequests
from edgewise.fleet.gateway.group_commit import GroupCommit, Job, Outcome
from edgewise.fleet.gateway.notify import Notifier


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """SQLite and a real PostgreSQL: their batched statements differ (PostgreSQL's are pipelined)."""
    database = open_database(db_url)
    yield database
    database.dispose()


def enroll_device(db: Database, name: str = "cam") -> tuple[str, PrivateKey]:
    key = PrivateKey.generate()
    token, _ = create_enrollment_token(db)
    response = enroll(db, EnrollRequest(token=token, public_key=key.public.b64, name=name), AgentConfig())
    return response.device_id, key


def signed(device_id: str, key: PrivateKey, body: bytes = b"{}") -> SignedRequest:
    path = "/api/v1/device/state"
    headers = {k.lower(): v for k, v in signed_headers(device_id, key, "PUT", path, body).items()}
    return SignedRequest(device_id, "PUT", path, headers, body)


def answered_on(loop: asyncio.AbstractEventLoop, futures: dict[int, asyncio.Future[Any]]) -> Any:
    """A `deliver` that answers the futures of these tickets on `loop`."""

    def settle(outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            future = futures[outcome.job.ticket]
            if outcome.error is not None:
                future.set_exception(outcome.error)
            else:
                future.set_result(outcome.result)

    return lambda outcomes, _finished, _written: loop.call_soon_threadsafe(settle, outcomes)


def run_batch(commit: GroupCommit, requests: list[tuple[str, Any, SignedRequest | None]]) -> list[Any]:
    """Queue all requests before the group commit's threads start, so they form one batch."""

    async def go() -> list[Any]:
        loop = asyncio.get_running_loop()
        futures = {ticket: loop.create_future() for ticket in range(len(requests))}
        commit.deliver = answered_on(loop, futures)
        for ticket, (kind, payload, request) in enumerate(requests):
            commit.put(Job(kind, payload, request, ticket))
        commit.start()
        try:
            return await asyncio.gather(*futures.values(), return_exceptions=True)
        finally:
            await asyncio.to_thread(commit.stop)

    return asyncio.run(go())


def echo_commit(db: Database, **options: Any) -> GroupCommit:
    def echo(_session: Any, items: list[tuple[Any, Any]]) -> list[Any]:
        if any(payload == "boom" for _, payload in items):
            raise ProtocolError("this payload breaks its batch")
        return [(device.id if device else None, payload) for device, payload in items]

    return GroupCommit(db, DeviceAuthenticator(db), {"echo": echo}, **options)


def test_one_bad_request_fails_alone_and_the_rest_of_its_batch_succeeds(db: Database) -> None:
    device_id, key = enroll_device(db)
    stranger = PrivateKey.generate()
    commit = echo_commit(db)
    results = run_batch(commit, [("echo", "a", signed(device_id, key)), ("echo", "boom", signed(device_id, key)),
                                 ("echo", "b", signed(device_id, stranger)), ("echo", "c", None)])
    assert results[0] == (device_id, "a")
    assert isinstance(results[1], ProtocolError)
    assert isinstance(results[2], AuthError) and "signature" in str(results[2])
    assert results[3] == (None, "c")
    assert commit.batches == 1 and commit.requests == 4


def test_a_request_replayed_inside_one_batch_is_refused(db: Database) -> None:
    device_id, key = enroll_device(db)
    request = signed(device_id, key)
    results = run_batch(echo_commit(db), [("echo", "first", request), ("echo", "again", request)])
    assert results[0] == (device_id, "first")
    assert isinstance(results[1], AuthError) and "replay" in str(results[1])


def test_a_prepare_error_refuses_that_request_before_any_database_work(db: Database) -> None:
    device_id, key = enroll_device(db)

    def prepare(payload: str) -> str:
        if payload == "corrupt":
            raise ProtocolError("corrupt snapshot")
        if payload == "bug":
            raise RuntimeError("a bug in a preparer")
        return payload.upper()

    results = run_batch(echo_commit(db, prepare={"echo": prepare}),
                        [("echo", "corrupt", signed(device_id, key)), ("echo", "bug", signed(device_id, key)),
                         ("echo", "ok", signed(device_id, key))])
    assert isinstance(results[0], ProtocolError)
    assert isinstance(results[1], RuntimeError)  # fails alone; the committing thread lives on
    assert results[2] == (device_id, "OK")


def batch(seqs: list[int], telemetry: list[int] = ()) -> IngestBatch:  # type: ignore[assignment]
    return IngestBatch(events=[EventIn(seq=s, ts=1.0, type="detection", label="x") for s in seqs],
                       telemetry=[TelemetryIn(seq=s, ts=1.0, fps=10.0) for s in telemetry])


def test_store_batches_stores_each_item_once_across_batches_of_one_group(db: Database) -> None:
    a, _ = enroll_device(db, "a")
    b, _ = enroll_device(db, "b")
    first, retry, other = batch([1, 2], [3]), batch([2, 1, 4]), batch([1], [2])
    with db.session() as session:
        for device_id in (a, b):
            session.get(Device, device_id).last_seen = 1.0
    with db.session() as session:
        results = store_batches(session, [(a, first, decode_images(first)), (a, retry, decode_images(retry)),
                                          (b, other, decode_images(other))])
    (ack1, fwd1), (ack2, fwd2), (ack3, fwd3) = results
    assert (ack1.acked, ack1.duplicates, [e["seq"] for e in fwd1]) == ([1, 2, 3], 0, [1, 2])
    assert (ack2.acked, ack2.duplicates, [e["seq"] for e in fwd2]) == ([1, 2, 4], 2, [4])
    assert (ack3.acked, ack3.duplicates, [e["seq"] for e in fwd3]) == ([1, 2], 0, [1])
    with db.session() as session:  # and once more, as a later retry: all duplicates
        (ack4, fwd4), = store_batches(session, [(a, first, decode_images(first))])
        assert (ack4.duplicates, fwd4) == (3, [])
        assert session.scalar(select(func.count()).select_from(Event)) == 4
        assert session.scalar(select(func.count()).select_from(Telemetry)) == 2
        assert all(session.get(Device, d).last_seen > 1.0 for d in (a, b))  # seen, with their batches


def test_two_reports_from_one_device_in_a_batch_follow_each_other(db: Database) -> None:
    device_id, _ = enroll_device(db)
    unhealthy = ReportedState.model_validate({"health": {"status": "failed"}})
    healthy = ReportedState.model_validate({"health": {"status": "ok"}})
    with db.session() as session:
        first, second, third = apply_reports(session, [(device_id, unhealthy), (device_id, unhealthy),
                                                       (device_id, healthy)], offline_after_s=30)
    assert first.status_change is not None and first.status_change["health"] == "failed"
    assert second.status_change is None  # same as the report just before it, in the same batch
    assert third.status_change is not None and third.status_change["health"] == "ok"
    with db.session() as session:
        (state, revision), (unchanged, same) = read_desired_many(session, [(device_id, None), (device_id, "1")])
    assert state is not None and state.device_id == device_id and revision == "1"
    assert unchanged is None and same == "1"


def test_desired_reads_take_each_bundle_from_the_database_once(db: Database) -> None:
    """A rollout wakes every device of a batch for the same bundle: its reference is read once."""
    device_id, _ = enroll_device(db)
    digest = "sha256:" + "c" * 64
    with db.session() as session:
        session.add(Bundle(digest=digest, name="pests", version="2.0", ref="pests:2.0", size_bytes=123,
                           registered_at=time.time()))
        device = session.get(Device, device_id)
        device.desired_digest, device.desired_revision = digest, 7
    statements: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        for _ in range(3):
            with db.session(write=False) as session:
                (state, revision), = read_desired_many(session, [(device_id, "1")])
            assert state is not None and revision == "7"
            assert (state.bundle.digest, state.bundle.version, state.bundle.size_bytes) == (digest, "2.0", 123)
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    assert sum("FROM bundles" in s for s in statements) == 1 and len(statements) == 4


def test_transact_retries_a_deadlock_victim_and_gives_up_on_other_errors(db: Database) -> None:
    calls = []

    class Deadlock(Exception):
        sqlstate = "40P01"

    def work(_session: Any) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("UPDATE devices", {}, Deadlock())
        return "done"

    assert db.transact(work) == "done" and len(calls) == 3

    def broken(_session: Any) -> None:
        raise OperationalError("SELECT", {}, Exception("no such table"))

    with pytest.raises(OperationalError):
        db.transact(broken)


def test_a_large_wake_up_is_paced() -> None:
    async def go() -> tuple[int, int]:
        notifier = Notifier(wake_rate_per_s=1000)  # at most 50 devices per 50 ms slice
        notifier.bind(asyncio.get_running_loop())
        events = {f"dev-{i:03d}": notifier.waiter(f"dev-{i:03d}") for i in range(120)}
        notifier.desired_changed(events)
        woken_at_once = sum(e.is_set() for e in events.values())
        await asyncio.sleep(0.5)
        return woken_at_once, sum(e.is_set() for e in events.values())

    at_once, later = asyncio.run(go())
    assert at_once == 17  # a quarter of the most, plus a tenth: the pace starts low and climbs
    assert later == 120


def test_reported_state_json_round_trips_through_the_batched_update(db: Database) -> None:
    device_id, _ = enroll_device(db)
    report = ReportedState.model_validate({"agent_version": "9.9", "health": {"status": "ok"},
                                           "update": {"state": "download", "target_digest": "sha256:abc"}})
    with db.session() as session:
        apply_reports(session, [(device_id, report)], offline_after_s=30)
    with db.session() as session:
        row = session.execute(select(Device)).scalar_one()
        assert row.agent_version == "9.9" and row.update_state == "download"
        assert json.loads(json.dumps(row.reported))["update"]["target_digest"] == "sha256:abc"


def test_requests_queued_behind_a_stop_are_refused_not_left_hanging(db: Database) -> None:
    device_id, key = enroll_device(db)
    commit = echo_commit(db)

    async def go() -> list[Any]:
        loop = asyncio.get_running_loop()
        futures = {0: loop.create_future(), 1: loop.create_future()}
        commit.deliver = answered_on(loop, futures)
        commit.put(Job("echo", "before", signed(device_id, key), 0))
        commit._queue.put(None)  # the stop signal
        commit.put(Job("echo", "behind", signed(device_id, key), 1))
        commit.start()
        results = await asyncio.wait_for(asyncio.gather(*futures.values(), return_exceptions=True), 10)
        await asyncio.to_thread(commit.stop)
        return results

    first, second = asyncio.run(go())
    assert first == (device_id, "before")
    assert isinstance(second, ServiceUnavailable) and "stopping" in str(second)


def test_reads_are_answered_while_a_write_holds_the_writer(db: Database) -> None:
    """Long polls only read: they are answered by the checking thread while a write transaction (an
    operator's rollout, here held open) keeps the committing thread waiting."""
    device_id, key = enroll_device(db)

    def read(_session: Any, items: list[tuple[Any, Any]]) -> list[Any]:
        if any(payload == "boom" for _, payload in items):
            raise ProtocolError("this read breaks its batch")
        return [("read", device.id if device else None, payload) for device, payload in items]

    def write(_session: Any, items: list[tuple[Any, Any]]) -> list[Any]:
        return [("written", payload) for _, payload in items]

    commit = InProcessDeviceRequests(GroupCommit(db, DeviceAuthenticator(db), {"write": write}, readers={"read": read}))

    async def go() -> tuple[list[Any], Any]:
        await commit.start(asyncio.get_running_loop())
        try:
            with db.session() as holder:  # the writer is taken (SQLite), the device's row locked (PostgreSQL)
                holder.execute(select(Device.id).where(Device.id == device_id).with_for_update())
                writing = asyncio.ensure_future(commit.submit_job("write", "w", signed(device_id, key)))
                reads = await asyncio.wait_for(asyncio.gather(
                    commit.submit_job("read", "a", signed(device_id, key)), commit.submit_job("read", "boom", None),
                    commit.submit_job("read", "b", None), return_exceptions=True), 10)
                await asyncio.sleep(0.2)
                assert not writing.done()  # still waiting for the writer
            return reads, await asyncio.wait_for(writing, 10)
        finally:
            await commit.stop()

    reads, written = asyncio.run(go())
    assert reads[0] == ("read", device_id, "a")
    assert isinstance(reads[1], ProtocolError)  # fails alone
    assert reads[2] == ("read", None, "b")
    assert written == ("written", "w")


def test_wake_ups_slow_down_while_the_server_is_busy_and_never_stop() -> None:
    async def woken_after(latency_s: float) -> tuple[int, bool, bool]:
        notifier = Notifier(wake_rate_per_s=1000, latency=lambda: latency_s)  # at most 50 per 50 ms slice
        notifier.bind(asyncio.get_running_loop())
        events = {f"dev-{i:04d}": notifier.waiter(f"dev-{i:04d}") for i in range(1000)}
        notifier.desired_changed(events)
        await asyncio.sleep(0.5)
        woken = sum(e.is_set() for e in events.values())
        return woken, notifier.is_pending("dev-0000"), notifier.is_pending("dev-0999")

    calm, busy = asyncio.run(woken_after(0.001)), asyncio.run(woken_after(1.0))
    assert 300 <= calm[0] <= 500  # climbing from 17 to 50 per slice
    assert 1 <= busy[0] <= 100  # the pace halves on every busy slice, down to 5% of the most
    assert busy[1:] == (False, True)  # the first is told, the last still waits for its turn
