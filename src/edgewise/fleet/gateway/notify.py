"""In-process wake-ups: long-polling devices wait for their desired state to change, and the
dashboard's live stream waits for fleet changes. Writers run in worker threads, so they hand the
wake-up to the event loop with `call_soon_threadsafe`.

Several server replicas do not share these: a waiting device also re-reads the database every
`long_poll_recheck_s`, so a change made by another replica reaches it within that period.

A rollout's wake-ups are paced (see `Notifier`): devices are told of their change in turn, as
fast as the server keeps up.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from typing import Any

WAKE_SLICE_S = 0.05
# While device writes take longer than this on average, telling more devices would only queue them deeper.
BUSY_LATENCY_S = 0.05
MIN_WAKE_SHARE = 0.05  # the pace never falls below this share of the most: a rollout always moves on
START_SHARE = 0.25  # a rollout starts at this share of the most, and climbs while the server keeps up


class Notifier:
    def __init__(self, wake_rate_per_s: float = 100.0, latency: Callable[[], float] | None = None) -> None:
        # A rollout that changes a thousand devices at once must not wake a thousand long polls in
        # the same millisecond: they would all fetch their state, report and download together.
        # Devices are woken at most `wake_rate_per_s`, in slices, in the order the change lists them;
        # and slower while the server is busy: `latency()` is how long device requests take now.
        # The pace halves on every busy slice and climbs back by a tenth of the most on every calm
        # one (additive increase, multiplicative decrease, as TCP paces its sending).
        self.wake_rate_per_s = wake_rate_per_s
        self.latency = latency
        self._pace = wake_rate_per_s
        self._credit = 0.0
        self._pending: list[str] = []  # devices whose change is announced, not yet their turn to learn of it
        self._pending_set: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._device_waiters: dict[str, set[asyncio.Event]] = {}
        self._subscribers: set[asyncio.Queue[str]] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    # --- devices waiting for their desired state ---------------------------------------------

    def waiter(self, device_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._device_waiters.setdefault(device_id, set()).add(event)
        return event

    def forget(self, device_id: str, event: asyncio.Event) -> None:
        waiters = self._device_waiters.get(device_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._device_waiters[device_id]

    def desired_changed(self, device_ids: Iterable[str]) -> None:
        ids = sorted(device_ids)  # sets arrive unordered; a stable order keeps the pacing fair
        if ids:
            self._call(self._queue_wakes, ids)

    def is_pending(self, device_id: str) -> bool:
        """Whether this device's change waits for its turn: a poll that reads it meanwhile holds it
        back until then, or a fleet's re-reads would outrun the pacing."""
        return device_id in self._pending_set

    def _queue_wakes(self, device_ids: list[str]) -> None:
        idle = not self._pending
        fresh = [d for d in device_ids if d not in self._pending_set]
        self._pending.extend(fresh)
        self._pending_set.update(fresh)
        if idle:
            self._credit, self._pace = 0.0, min(self._pace, self.wake_rate_per_s * START_SHARE)
            self._wake_slice(first=True)

    def _wake_slice(self, first: bool = False) -> None:
        most = self.wake_rate_per_s
        if self.latency is not None and self.latency() > BUSY_LATENCY_S:
            self._pace = max(most * MIN_WAKE_SHARE, self._pace / 2)
        else:
            self._pace = min(most, self._pace + most / 10)
        self._credit += self._pace * WAKE_SLICE_S
        count = max(1, int(self._credit)) if first else int(self._credit)  # a change is never left waiting a slice
        self._credit = max(0.0, self._credit - count)
        woken, self._pending = self._pending[:count], self._pending[count:]
        self._pending_set.difference_update(woken)
        for device_id in woken:
            for event in self._device_waiters.get(device_id, ()):
                event.set()
        if self._pending and self._loop is not None:
            self._loop.call_later(WAKE_SLICE_S, self._wake_slice)

    # --- live stream for the dashboard ---------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=500)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        self._subscribers.discard(queue)

    def publish(self, kind: str, payload: dict[str, Any]) -> None:
        if self._subscribers:
            self._call(self._broadcast, json.dumps({"kind": kind, **payload}, default=str))

    def _broadcast(self, message: str) -> None:
        for queue in list(self._subscribers):
            if queue.full():  # a slow browser loses old messages rather than slowing the server
                queue.get_nowait()
            queue.put_nowait(message)

    def _call(self, function: Any, argument: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            function(argument)
        else:
            loop.call_soon_threadsafe(function, argument)
