"""Device requests from many connections, checked and committed together by one thread.

Devices send the most requests by far (heartbeats, event batches, long polls). Giving each its own
worker thread, SQLite write lock and transaction spent most of the server's CPU on handing the GIL
and the lock between threads and on per-transaction bookkeeping, not on the work. Here one thread
takes every request queued so far, looks up all their devices in one query, checks each signature
and nonce, and hands the requests of each kind (heartbeats, event batches, desired-state reads) to
that kind's handler together, so that a hundred heartbeats are one UPDATE executed a hundred times
rather than a hundred transactions; all in one transaction, a group commit. Each request is
answered only after that commit, so "acknowledged" still means "stored".

A batch that fails as a whole is rolled back and run again one request per transaction, so one bad
request fails alone and never takes its neighbours with it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgewise.core.errors import EdgewiseError, ServiceUnavailable
from edgewise.fleet.auth import AuthedDevice, DeviceAuthenticator, SignedRequest
from edgewise.fleet.db import Database
from edgewise.fleet.db.models import Device

log = logging.getLogger("edgewise.fleet")

MAX_BATCH = 256
# handler(session, [(device, payload), ...]) -> one result per request, in the same order
Handler = Callable[[Session, list[tuple[AuthedDevice | None, Any]]], list[Any]]


@dataclass
class _Job:
    kind: str
    payload: Any
    signed: SignedRequest | None  # None: for a device already authenticated (a long poll's recheck)
    future: asyncio.Future[Any]


@dataclass
class _Outcome:
    job: _Job
    result: Any = None
    error: BaseException | None = None
    nonce_counted: bool = False  # a retry alone must not take its own nonce for a replay


def lock_devices(session: Session, device_ids: list[str]) -> None:
    if device_ids:
        session.execute(select(Device.id).where(Device.id.in_(sorted(set(device_ids)))).order_by(Device.id)
                        .with_for_update())


class GroupCommit:
    def __init__(self, db: Database, devices: DeviceAuthenticator, handlers: dict[str, Handler],
                 prepare: dict[str, Callable[[Any], Any]] | None = None, max_batch: int = MAX_BATCH,
                 begin: Callable[[Session], None] | None = None, finish: Callable[[Session], Any] | None = None,
                 after: Callable[[Any], None] | None = None) -> None:
        """`prepare[kind](payload)` runs before the transaction and may raise an EdgewiseError to
        refuse that request alone (a corrupt snapshot); what it returns is the handler's payload.
        `begin(session)` and `finish(session)` open and close each group transaction (work that
        should run once per batch, not once per request); `after(finished)` gets what `finish`
        returned, on the event loop, after the commit."""
        self.db = db
        self.devices = devices
        self.handlers = handlers
        self.prepare = prepare or {}
        self.max_batch = max_batch
        self.begin, self.finish, self.after = begin, finish, after
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.requests = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._serve, name="edgewise-group-commit", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(30)
            self._thread = None

    async def submit(self, kind: str, payload: Any, signed: SignedRequest | None = None) -> Any:
        """Handle one request of `kind` in the next group transaction; its result, after the commit.

        `signed` is verified first; the handler then sees the device it proved to be (or None).
        """
        if self._thread is None or self._loop is None:
            raise ServiceUnavailable("the server is starting or stopping", "retry in a moment")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put(_Job(kind, payload, signed, future))
        return await future

    # --- the committing thread -----------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                break
            jobs = [first]
            stopping = False
            while len(jobs) < self.max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                jobs.append(job)
            try:
                outcomes, finished = self._run(jobs)
            except Exception as error:  # a bug here must fail this batch, never the thread every request waits on
                log.exception("group commit failed")
                outcomes, finished = [_Outcome(job, error=error) for job in jobs], []
            self.batches, self.requests = self.batches + 1, self.requests + len(jobs)
            self._hand_back(outcomes, finished)
            if stopping:
                break
        self._refuse_leftovers()

    def _hand_back(self, outcomes: list[_Outcome], finished: list[Any]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._settle, outcomes, finished)

    def _refuse_leftovers(self) -> None:
        """Requests still queued when the server stops are answered 503, not left hanging."""
        leftovers = []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                leftovers.append(_Outcome(job, error=ServiceUnavailable("the server is stopping", "retry in a moment")))
        if leftovers:
            self._hand_back(leftovers, [])

    def _run(self, jobs: list[_Job]) -> tuple[list[_Outcome], list[Any]]:
        outcomes = [_Outcome(job) for job in jobs]
        ready: list[_Outcome] = []
        for outcome in outcomes:
            prepare = self.prepare.get(outcome.job.kind)
            try:
                if prepare is not None:
                    outcome.job.payload = prepare(outcome.job.payload)
                ready.append(outcome)
            except Exception as error:  # an EdgewiseError (a corrupt image) or a bug: this request alone fails
                if not isinstance(error, EdgewiseError):
                    log.exception("preparing a device request failed")
                outcome.error = error
        finished: list[Any] = []
        if ready:
            self._commit(ready, finished)
        return outcomes, finished

    def _commit(self, batch: list[_Outcome], finished: list[Any]) -> None:
        try:
            with self.db.session() as session:
                if self.begin is not None:
                    self.begin(session)
                by_kind: dict[str, list[tuple[_Outcome, AuthedDevice | None]]] = {}
                passed = self._authenticate(session, batch)
                for outcome, device in passed:
                    by_kind.setdefault(outcome.job.kind, []).append((outcome, device))
                if not self.db.is_sqlite:
                    # Lock every device row this batch may write, in id order, before writing any:
                    # an operator's rollout updates device rows in id order too, so neither can
                    # hold one row the other needs while waiting for another (no deadlock).
                    lock_devices(session, [device.id for _, device in passed if device is not None])
                for kind, items in by_kind.items():
                    results = self.handlers[kind](session, [(device, o.job.payload) for o, device in items])
                    for (outcome, _device), result in zip(items, results, strict=True):
                        outcome.result = result
                result = self.finish(session) if self.finish is not None else None
            if self.finish is not None:
                finished.append(result)
        except Exception as error:
            if len(batch) == 1:
                batch[0].result, batch[0].error = None, error
                if not isinstance(error, EdgewiseError):
                    log.exception("device request failed")
                return
            for outcome in batch:  # find the one that broke the batch: each alone, in its own transaction
                if outcome.error is None or outcome.nonce_counted:
                    outcome.result, outcome.error = None, None
                    self._commit([outcome], finished)

    def _authenticate(self, session: Session, batch: list[_Outcome]
                      ) -> list[tuple[_Outcome, AuthedDevice | None]]:
        """The requests whose signature verifies (or that carry none), with their devices."""
        found = self.devices.lookup_many(session, [o.job.signed.device_id for o in batch if o.job.signed])
        passed: list[tuple[_Outcome, AuthedDevice | None]] = []
        for outcome in batch:
            signed = outcome.job.signed
            if signed is None:
                passed.append((outcome, None))
                continue
            try:
                device = self.devices.check(signed, found.get(signed.device_id), nonce=not outcome.nonce_counted)
            except EdgewiseError as error:
                outcome.error = error
                continue
            outcome.nonce_counted = True
            passed.append((outcome, device))
        return passed

    def _settle(self, outcomes: list[_Outcome], finished: list[Any]) -> None:
        """On the event loop, after the commit: answer every request of the batch."""
        for result in finished:
            if self.after is not None:
                self.after(result)
        for outcome in outcomes:
            future = outcome.job.future
            if future.done():  # the client went away and the request was cancelled
                continue
            if outcome.error is not None:
                future.set_exception(outcome.error)
            else:
                future.set_result(outcome.result)
