"""Device requests from many connections, checked and answered together, in two threads.

Devices send the most requests by far (heartbeats, event batches, long polls). Giving each its own
worker thread, SQLite write lock and transaction spent most of the server's CPU on handing the GIL
and the lock between threads and on per-transaction bookkeeping, not on the work. Here requests
are queued and taken in batches by a pipeline of two threads:

- the checking thread takes every request queued so far, looks up all their devices in one read,
  checks each signature and nonce, and answers the requests that only read (desired-state polls)
  from a read-only transaction, which never waits for the writer;
- the committing thread hands the requests that write, of each kind together, to that kind's
  handler, so that a hundred heartbeats are one UPDATE executed a hundred times rather than a
  hundred transactions; all in one transaction, a group commit. Each is answered only after that
  commit, so "acknowledged" still means "stored".

While one batch commits, the next is being checked: signature checks (which release the GIL) and
the writer's SQLite work run side by side on two cores. A device revoked while its request sits
between the two threads is refused from its next request on, as it would be had the request come
a moment earlier.

A batch that fails as a whole is rolled back and run again one request per transaction, so one bad
request fails alone and never takes its neighbours with it.

The engine knows nothing of the event loop that asked: each job carries a `ticket`, and `deliver`
gets every batch's outcomes back from the worker threads. `edgewise.fleet.gateway.device_requests` hands
them to waiting requests in the same process; `edgewise.fleet.gateway.device_process` runs the engine in a
process of its own and sends them back over a socket.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from edgewise.core.errors import EdgewiseError, ServiceUnavailable
from edgewise.fleet.auth import AuthedDevice, DeviceAuthenticator, SignedRequest
from edgewise.fleet.db import Database
from edgewise.fleet.db.ids import dialect_of, ids_match
from edgewise.fleet.db.models import Device

log = logging.getLogger("edgewise.fleet")

MAX_BATCH = 256
# handler(session, [(device, payload), ...]) -> one result per request, in the same order. The
# engine is blind to what kinds and payloads are: `edgewise.fleet.gateway.device_requests` gives
# it typed handlers, keyed by the request's type.
JobKind = type | str  # which handler a job goes to: its request's type (or a name, in the engine's tests)
Handler = Callable[["Transaction", list[tuple[AuthedDevice | None, object]]], Sequence[object]]
# lock(session, device ids) -> the rows it locked (and read), by device id, for the handlers
Lock = Callable[[Session, list[str]], Mapping[str, Mapping[str, object]]]


@dataclass
class Transaction:
    """What a handler works in: the session, and the device rows `lock` locked (and read) first,
    in this transaction: on PostgreSQL for the writes, empty otherwise."""

    session: Session
    locked: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
Prepare = Callable[[object], object]


@dataclass
class Job:
    kind: JobKind
    payload: object
    signed: SignedRequest | None  # None: for a device already authenticated (a long poll's recheck)
    ticket: int  # how its answer finds the request that waits for it (see `deliver`)


@dataclass
class Outcome:
    job: Job
    result: object = None
    error: BaseException | None = None


# deliver(outcomes, finished, written): a batch's answers, from a worker thread; `finished` is what
# `finish` returned for each committed transaction; `written` tells writes (answered after their
# commit) from reads and refusals.
Deliver = Callable[[list[Outcome], list[object], bool], None]
_Checked = tuple[Outcome, AuthedDevice | None]  # a request that passed its checks, and its device


def lock_device_rows(session: Session, device_ids: list[str]) -> Mapping[str, Mapping[str, object]]:
    """Lock only: the handlers read what they need themselves (nothing is handed to them)."""
    if device_ids:
        session.execute(_lock_statement(dialect_of(session)), {"ids": sorted(set(device_ids))})
    return {}


@functools.cache
def _lock_statement(dialect: str) -> Select[tuple[str]]:
    table = Device.__table__
    return select(table.c.id).where(ids_match(table.c.id, dialect)).order_by(table.c.id).with_for_update()


class GroupCommit:
    def __init__(self, db: Database, devices: DeviceAuthenticator, handlers: dict[JobKind, Handler],
                 prepare: dict[JobKind, Prepare] | None = None, max_batch: int = MAX_BATCH,
                 begin: Callable[[Session], None] | None = None, finish: Callable[[Session], object] | None = None,
                 readers: dict[JobKind, Handler] | None = None,
                 lock: Lock | None = None, deliver: Deliver | None = None) -> None:
        """`handlers[kind]` write, in the group transaction; `readers[kind]` only read, in the
        checking thread's read-only transaction.
        `prepare[kind](payload)` runs before any database work and may raise an EdgewiseError to
        refuse that request alone (a corrupt snapshot); what it returns is the handler's payload.
        `begin(session)` and `finish(session)` open and close each group transaction (work that
        should run once per batch, not once per request); what `finish` returns goes to `deliver`
        with the batch's outcomes, after the commit. `lock(session, device_ids)` locks the rows of
        a batch's devices first, on PostgreSQL (default: `lock_device_rows`, which only locks)."""
        self.db = db
        self.devices = devices
        self.handlers = handlers
        self.readers = readers or {}
        self.prepare = prepare or {}
        self.max_batch = max_batch
        self.begin, self.finish = begin, finish
        self.lock = lock or lock_device_rows
        self.deliver = deliver
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._writes: queue.SimpleQueue[list[_Checked] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self.batches = 0
        self.requests = 0

    @property
    def running(self) -> bool:
        return bool(self._threads)

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._check_loop, name="edgewise-device-check", daemon=True),
                         threading.Thread(target=self._commit_loop, name="edgewise-group-commit", daemon=True)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        if self._threads:
            self._queue.put(None)  # the checking thread passes the stop on to the committing one
            for thread in self._threads:
                thread.join(30)
            self._threads = []

    def put(self, job: Job) -> None:
        """Queue `job` for the next batch (from any thread); its outcome goes to `deliver`.

        `job.signed` is verified first; the handler then sees the device it proved to be (or None).
        """
        self._queue.put(job)

    # --- the checking thread -------------------------------------------------------------------

    def _check_loop(self) -> None:
        while True:
            jobs, stopping = _take(self._queue, self.max_batch)
            if jobs:
                try:
                    writes = self._check(jobs)
                except Exception as error:  # a bug here must fail this batch, never the thread every request waits on
                    log.exception("checking device requests failed")
                    self._hand_back([Outcome(job, error=error) for job in jobs], [])
                    writes = []
                self.batches, self.requests = self.batches + 1, self.requests + len(jobs)
                if writes:
                    self._writes.put(writes)
            if stopping:
                break
        self._writes.put(None)
        self._refuse_leftovers()

    def _check(self, jobs: list[Job]) -> list[_Checked]:
        """Prepare and authenticate `jobs`, answer the failed and the read-only ones; the rest, to write."""
        outcomes = [Outcome(job) for job in jobs]
        ready: list[Outcome] = []
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
        reads: list[_Checked] = []
        writes: list[_Checked] = []
        if ready:
            with self.db.session(write=False) as session:
                for checked in self._authenticate(session, ready):
                    (reads if checked[0].job.kind in self.readers else writes).append(checked)
                if reads:
                    self._run_reads(session, reads)
        self._hand_back([o for o in outcomes if o.error is not None or o.job.kind in self.readers], [])
        return writes

    def _authenticate(self, session: Session, batch: list[Outcome]) -> list[_Checked]:
        """The requests whose signature verifies (or that carry none), with their devices."""
        found = self.devices.lookup_many(session, [o.job.signed.device_id for o in batch if o.job.signed])
        passed: list[_Checked] = []
        for outcome in batch:
            signed = outcome.job.signed
            if signed is None:
                passed.append((outcome, None))
                continue
            try:
                device = self.devices.check(signed, found.get(signed.device_id))
            except EdgewiseError as error:
                outcome.error = error
                continue
            except Exception as error:  # a bug on one request's input: that request fails, never its batch
                log.exception("authenticating a device request failed")
                outcome.error = error
                continue
            passed.append((outcome, device))
        return passed

    def _run_reads(self, session: Session, reads: list[_Checked]) -> None:
        try:
            _run_handlers(Transaction(session), self.readers, reads)
        except Exception:
            for one in reads:  # find the one that broke the batch: each alone, in its own transaction
                try:
                    with self.db.session(write=False) as alone:
                        _run_handlers(Transaction(alone), self.readers, [one])
                except Exception as error:
                    if not isinstance(error, EdgewiseError):
                        log.exception("device request failed")
                    one[0].result, one[0].error = None, error

    # --- the committing thread -----------------------------------------------------------------

    def _commit_loop(self) -> None:
        while True:
            first = self._writes.get()
            if first is None:
                break
            batch, stopping = list(first), False
            while len(batch) < self.max_batch:  # whatever else was checked meanwhile joins this commit
                try:
                    more = self._writes.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.extend(more)
            finished: list[object] = []
            try:
                self._commit(batch, finished)
            except Exception as error:  # a bug here must fail this batch, never the thread every request waits on
                log.exception("group commit failed")
                for outcome, _device in batch:
                    outcome.result, outcome.error = None, error
            self._hand_back([outcome for outcome, _device in batch], finished, timed=True)
            if stopping:
                break

    def _commit(self, batch: list[_Checked], finished: list[object]) -> None:
        try:
            with self.db.session() as session:
                if self.begin is not None:
                    self.begin(session)
                locked: Mapping[str, Mapping[str, object]] = {}
                if not self.db.is_sqlite:
                    # Lock every device row this batch may write, in id order, before writing any:
                    # an operator's rollout updates device rows in id order too, so neither can
                    # hold one row the other needs while waiting for another (no deadlock).
                    locked = self.lock(session, [device.id for _, device in batch if device is not None])
                _run_handlers(Transaction(session, locked), self.handlers, batch)
                result = self.finish(session) if self.finish is not None else None
            if self.finish is not None:
                finished.append(result)
        except Exception as error:
            if len(batch) == 1:
                batch[0][0].result, batch[0][0].error = None, error
                if not isinstance(error, EdgewiseError):
                    log.exception("device request failed")
                return
            for one in batch:  # find the one that broke the batch: each alone, in its own transaction
                one[0].result, one[0].error = None, None
                self._commit([one], finished)

    # --- answers ---------------------------------------------------------------------------------

    def _hand_back(self, outcomes: list[Outcome], finished: list[object], timed: bool = False) -> None:
        if (outcomes or finished) and self.deliver is not None:
            try:
                self.deliver(outcomes, finished, timed)
            except Exception:  # whoever waits is gone (the server stopping): the worker threads live on
                log.exception("handing back device request outcomes failed")

    def _refuse_leftovers(self) -> None:
        """Requests still queued when the server stops are answered 503, not left hanging."""
        leftovers, _ = _take(self._queue, None, block=False)
        self._hand_back([Outcome(job, error=ServiceUnavailable("the server is stopping", "retry in a moment"))
                         for job in leftovers], [])


def _take(jobs: queue.SimpleQueue[Job | None], limit: int | None, block: bool = True
          ) -> tuple[list[Job], bool]:
    """Up to `limit` queued jobs (waiting for the first if `block`); and whether a stop came."""
    taken: list[Job] = []
    while limit is None or len(taken) < limit:
        try:
            job = jobs.get() if block and not taken else jobs.get_nowait()
        except queue.Empty:
            break
        if job is None:
            return taken, True
        taken.append(job)
    return taken, False


def _run_handlers(transaction: Transaction, handlers: dict[JobKind, Handler], batch: list[_Checked]) -> None:
    """Each kind's handler once, on all the requests of that kind; results onto their outcomes."""
    by_kind: dict[JobKind, list[_Checked]] = {}
    for checked in batch:
        by_kind.setdefault(checked[0].job.kind, []).append(checked)
    for kind, items in by_kind.items():
        results = handlers[kind](transaction, [(device, outcome.job.payload) for outcome, device in items])
        for (outcome, _device), result in zip(items, results, strict=True):
            outcome.result = result
