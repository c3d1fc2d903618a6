"""Device requests as the HTTP endpoints see them: `await requests.submit(kind, payload, signed)`.

The work itself is the group commit's (`edgewise.fleet.gateway.group_commit`): what each kind of request
does is `device_handlers` below. It runs either here, in the server's own process
(`InProcessDeviceRequests`), or in a process of its own (`edgewise.fleet.gateway.device_process`), so that
the HTTP server and the device work each have a core and a GIL. Both answer the waiting request
the same way (`DeviceRequests`), on the event loop, and time the written ones: a rollout paces
itself by `latency()`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from edgewise.core.errors import AuthError, ServiceUnavailable
from edgewise.fleet.auth import AuthedDevice, DeviceAuthenticator, SignedRequest
from edgewise.fleet.db import Database
from edgewise.fleet.devices.ingest import decode_images, store_batches
from edgewise.fleet.devices.twin import apply_reports, lock_devices, read_desired_many
from edgewise.fleet.gateway.group_commit import GroupCommit, Handler, Job, Outcome
from edgewise.fleet.rollouts.engine import Changes, defer_evaluation, evaluate_deferred
from edgewise.fleet.settings import ServerSettings

DESIRED, DESIRED_RECHECK, STATE, INGEST = "desired", "desired-recheck", "state", "ingest"
LATENCY_WEIGHT = 0.05  # `latency()` averages written requests, each weighing this much (about the last 20)
LATENCY_MEMORY_S = 0.5  # and forgets them when none was answered for this long
# An answer: (ticket, result, error), as it comes back from the group commit.
Answer = tuple[int, Any, BaseException | None]


def device_handlers(settings: ServerSettings
                    ) -> tuple[dict[str, Handler], dict[str, Handler], dict[str, Callable[[Any], Any]]]:
    """The group commit's writers, readers and preparers for the device endpoints."""

    def desired(session: Session, items: list[tuple[AuthedDevice | None, Any]]) -> list[Any]:
        return read_desired_many(session, [(_authed(device).id, seen) for device, seen in items])

    def recheck(session: Session, items: list[tuple[AuthedDevice | None, Any]]) -> list[Any]:
        return read_desired_many(session, [payload for _, payload in items])  # already authenticated

    def state(session: Session, items: list[tuple[AuthedDevice | None, Any]]) -> list[Any]:
        return apply_reports(session, [(_authed(device).id, body) for device, body in items],
                             settings.offline_after_s)

    def ingest(session: Session, items: list[tuple[AuthedDevice | None, Any]]) -> list[Any]:
        return store_batches(session, [(_authed(device).id, body, images) for device, (body, images) in items])

    writers: dict[str, Handler] = {STATE: state, INGEST: ingest}
    readers: dict[str, Handler] = {DESIRED: desired, DESIRED_RECHECK: recheck}
    return writers, readers, {INGEST: lambda body: (body, decode_images(body))}


def _authed(device: AuthedDevice | None) -> AuthedDevice:
    if device is None:
        raise AuthError("this request must be signed by a device")
    return device


def build_group_commit(db: Database, devices: DeviceAuthenticator, settings: ServerSettings) -> GroupCommit:
    """The group commit every device request goes through, in whichever process runs it."""
    writers, readers, prepare = device_handlers(settings)
    return GroupCommit(db, devices, writers, prepare, begin=defer_evaluation, finish=evaluate_deferred,
                       readers=readers, lock=lock_devices)


def answers_of(outcomes: list[Outcome]) -> list[Answer]:
    return [(outcome.job.ticket, outcome.result, outcome.error) for outcome in outcomes]


class DeviceRequests:
    """Requests waiting on the event loop for their answers; `after(changes)` gets the rollout
    changes each group transaction made (a batch done, the next one assigned), after its commit."""

    def __init__(self) -> None:
        self.after: Callable[[Changes], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: dict[int, tuple[asyncio.Future[Any], float]] = {}  # ticket -> (its future, when queued)
        self._tickets = itertools.count()
        self._latency = (0.0, 0.0)  # (moving average of written requests' seconds, when last answered)
        self.restarts = 0  # how often the device work was lost and started again (a device process's crashes)

    @property
    def running(self) -> bool:
        raise NotImplementedError

    def prepare(self) -> None:
        """Whatever can fail at start, done before the server serves (blocking); nothing by default."""

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def _send(self, job: Job) -> None:
        raise NotImplementedError

    async def submit(self, kind: str, payload: Any, signed: SignedRequest | None = None) -> Any:
        """Handle one request of `kind` in the next batch; its result, after the commit.

        `signed` is verified first; the handler then sees the device it proved to be (or None).
        """
        if not self.running or self._loop is None:
            raise ServiceUnavailable("the server is starting or stopping", "retry in a moment")
        ticket = next(self._tickets)
        future: asyncio.Future[Any] = self._loop.create_future()
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

    def _settle(self, answers: list[Answer], finished: list[Changes], written: bool) -> None:
        """On the event loop: answer every request of a batch (after the commit, for writes)."""
        if self.after is not None:
            for changes in finished:
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

    def _deliver(self, outcomes: list[Outcome], finished: list[Any], written: bool) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._settle, answers_of(outcomes), finished, written)
