"""Device requests as the HTTP endpoints see them: `await requests.submit(ReportState(body), signed)`.

Each kind of request is a type with its answer's type (`edgewise.fleet.gateway.requests`); the
work itself is the group commit's (`edgewise.fleet.gateway.group_commit`), and what each kind
does is its handler in `device_handlers` below, registered by the request's type. It runs
either here, in the server's own process (`InProcessDeviceRequests`), or in a process of its own
(`edgewise.fleet.gateway.device_process`), so that the HTTP server and the device work each have
a core and a GIL. Both answer the waiting request the same way (`DeviceRequests`), on the event
loop, and time the written ones: a rollout paces itself by `latency()`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TypeVar, cast

from sqlalchemy.orm import Session

from edgewise.core.errors import AuthError, InternalError, ServiceUnavailable
from edgewise.fleet.auth import AuthedDevice, DeviceAuthenticator, SignedRequest
from edgewise.fleet.db import Database
from edgewise.fleet.devices.ingest import decode_images, store_batches
from edgewise.fleet.devices.twin import ReportOutcome, apply_reports, lock_and_read_reporting_devices, read_desired_many
from edgewise.fleet.gateway.group_commit import GroupCommit, Handler, Job, JobKind, Outcome, Prepare, Transaction
from edgewise.fleet.gateway.requests import (
    DesiredAnswer,
    DeviceRequest,
    Ingest,
    IngestAnswer,
    ReadDesired,
    RecheckDesired,
    ReportState,
)
from edgewise.fleet.rollouts.changes import Changes
from edgewise.fleet.rollouts.engine import defer_evaluation, evaluate_deferred
from edgewise.fleet.settings import ServerSettings

LATENCY_WEIGHT = 0.05  # `latency()` averages written requests, each weighing this much (about the last 20)
LATENCY_MEMORY_S = 0.5  # and forgets them when none was answered for this long
# An answer: (ticket, result, error), as it comes back from the group commit.
Answer = tuple[int, object, BaseException | None]

RequestT = TypeVar("RequestT", bound=DeviceRequest[object])
AnswerT = TypeVar("AnswerT")
# A handler of one kind: every request of that kind in a batch, with the device each proved to be
# (None only for an unsigned kind), to one answer each, in order.
TypedHandler = Callable[[Transaction, list[tuple[AuthedDevice | None, RequestT]]], Sequence[object]]


class HandlerTable:
    """The group commit's handlers, registered by request type: writers, readers and preparers."""

    def __init__(self) -> None:
        self.writers: dict[JobKind, Handler] = {}
        self.readers: dict[JobKind, Handler] = {}
        self.prepare: dict[JobKind, Prepare] = {}

    def add(self, kind: type[RequestT], handler: TypedHandler[RequestT],
            prepare: Callable[[RequestT], RequestT] | None = None) -> None:
        def checked(transaction: Transaction, items: list[tuple[AuthedDevice | None, object]]) -> Sequence[object]:
            for _device, request in items:  # the engine is untyped: a request of another kind is a bug
                if not isinstance(request, kind):
                    raise InternalError(f"a {type(request).__name__} reached the {kind.__name__} handler")
            return handler(transaction, cast(list[tuple[AuthedDevice | None, RequestT]], items))

        (self.writers if kind.writes else self.readers)[kind] = checked
        if prepare is not None:
            self.prepare[kind] = cast(Prepare, prepare)


def device_handlers(settings: ServerSettings) -> HandlerTable:
    """What each kind of device request does."""
    table = HandlerTable()

    def desired(work: Transaction, items: list[tuple[AuthedDevice | None, ReadDesired]]) -> list[DesiredAnswer]:
        return _desired(work.session, [(_authed(device).id, request.seen_revision) for device, request in items])

    def recheck(work: Transaction, items: list[tuple[AuthedDevice | None, RecheckDesired]]) -> list[DesiredAnswer]:
        # already authenticated by the long poll's first read
        return _desired(work.session, [(request.device_id, request.seen_revision) for _, request in items])

    def state(work: Transaction, items: list[tuple[AuthedDevice | None, ReportState]]) -> list[ReportOutcome]:
        return apply_reports(work.session, [(_authed(device).id, request.report) for device, request in items],
                             settings.offline_after_s, locked=work.locked)

    def ingest(work: Transaction, items: list[tuple[AuthedDevice | None, Ingest]]) -> list[IngestAnswer]:
        stored = store_batches(work.session, [(_authed(device).id, request.batch, request.images or decode_images(
            request.batch)) for device, request in items])
        return [IngestAnswer(ack, new_events) for ack, new_events in stored]

    def decode(request: Ingest) -> Ingest:  # before any database work: a corrupt image fails its batch alone
        return Ingest(request.batch, decode_images(request.batch))

    table.add(ReadDesired, desired)
    table.add(RecheckDesired, recheck)
    table.add(ReportState, state)
    table.add(Ingest, ingest, prepare=decode)
    return table


def _desired(session: Session, reads: list[tuple[str, str | None]]) -> list[DesiredAnswer]:
    return [DesiredAnswer(state, revision) for state, revision in read_desired_many(session, reads)]


def _authed(device: AuthedDevice | None) -> AuthedDevice:
    if device is None:
        raise AuthError("this request must be signed by a device")
    return device


def build_group_commit(db: Database, devices: DeviceAuthenticator, settings: ServerSettings) -> GroupCommit:
    """The group commit every device request goes through, in whichever process runs it."""
    table = device_handlers(settings)
    return GroupCommit(db, devices, table.writers, table.prepare, begin=defer_evaluation, finish=evaluate_deferred,
                       readers=table.readers, lock=lock_and_read_reporting_devices)


def answers_of(outcomes: list[Outcome]) -> list[Answer]:
    return [(outcome.job.ticket, outcome.result, outcome.error) for outcome in outcomes]


class DeviceRequests(ABC):
    """Requests waiting on the event loop for their answers; `after(changes)` gets the rollout
    changes each group transaction made (a batch done, the next one assigned), after its commit.

    Subclasses say where the group commit runs: `_send` a job to it, and have its answers
    `_settle`d on the event loop."""

    def __init__(self) -> None:
        self.after: Callable[[Changes], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: dict[int, tuple[asyncio.Future[object], float]] = {}  # ticket -> (its future, when queued)
        self._tickets = itertools.count()
        self._latency = (0.0, 0.0)  # (moving average of written requests' seconds, when last answered)
        self.restarts = 0  # how often the device work was lost and started again (a device process's crashes)

    @property
    @abstractmethod
    def running(self) -> bool:
        """Whether requests are worked now (False while starting, stopping, or restarting)."""

    def prepare(self) -> None:  # noqa: B027 - a hook: most ways of running need nothing here
        """Whatever can fail at start, done before the server serves (blocking); nothing by default."""

    @abstractmethod
    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start working requests; answers are settled on `loop`."""

    @abstractmethod
    async def stop(self) -> None:
        """Answer what is held, then stop."""

    @abstractmethod
    def _send(self, job: Job) -> None:
        """Hand `job` to the group commit (from the event loop)."""

    async def submit(self, request: DeviceRequest[AnswerT], signed: SignedRequest | None = None) -> AnswerT:
        """Handle `request` in the next batch; its answer, after the commit for a write.

        `signed` is verified first; the handler then sees the device it proved to be (or None).
        """
        return cast(AnswerT, await self.submit_job(type(request), request, signed))

    async def submit_job(self, kind: JobKind, payload: object, signed: SignedRequest | None = None) -> object:
        """The untyped form of `submit`, for a group commit built with other handlers (tests)."""
        if not self.running or self._loop is None:
            raise ServiceUnavailable("the server is starting or stopping", "retry in a moment")
        ticket = next(self._tickets)
        future: asyncio.Future[object] = self._loop.create_future()
        self._waiting[ticket] = (future, time.monotonic())
        try:
            self._send(Job(kind, payload, signed, ticket))
            return await future
        finally:
            self._waiting.pop(ticket, None)

    def latency(self) -> float:
        """How long written requests take lately, queueing included: a moving average (0 when idle)."""
        average, at = self._latency
        return average if time.monotonic() - at < LATENCY_MEMORY_S else 0.0

    def _settle(self, answers: list[Answer], finished: Sequence[object], written: bool) -> None:
        """On the event loop: answer every request of a batch (after the commit, for writes)."""
        if self.after is not None:
            for changes in finished:
                if isinstance(changes, Changes):
                    self.after(changes)
        now = time.monotonic()
        average, at = self._latency
        if written and answers:
            if now - at >= LATENCY_MEMORY_S:
                average = 0.0
        for ticket, result, error in answers:
            waiting = self._waiting.get(ticket)
            if waiting is None:  # the client went away and the request was cancelled
                continue
            future, queued_at = waiting
            if written:
                average += LATENCY_WEIGHT * (now - queued_at - average)
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
        if written and answers:
            self._latency = (average, now)

    def _fail_waiting(self, error: BaseException) -> None:
        """Every request still waiting gets `error` (the device work stopped under it)."""
        for future, _queued_at in list(self._waiting.values()):
            if not future.done():
                future.set_exception(error)


class InProcessDeviceRequests(DeviceRequests):
    """The group commit's threads in this process: one GIL for them and the HTTP server."""

    def __init__(self, group_commit: GroupCommit) -> None:
        super().__init__()
        self.group_commit = group_commit
        group_commit.deliver = self._deliver

    @property
    def running(self) -> bool:
        return self.group_commit.running

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.group_commit.start()

    async def stop(self) -> None:
        await asyncio.to_thread(self.group_commit.stop)

    def _send(self, job: Job) -> None:
        self.group_commit.put(job)

    def _deliver(self, outcomes: list[Outcome], finished: list[object], written: bool) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._settle, answers_of(outcomes), finished, written)
