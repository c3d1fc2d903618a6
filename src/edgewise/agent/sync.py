"""Talking to the server, on threads of their own so inference never waits for the network.

- DesiredStateLoop: long-polls the desired state (ETag / If-None-Match) and drives the update
  machine; network failures back off with jitter and never lose the machine's place.
- Uplink: sends outbox batches (deleting only acked seqs) and heartbeats (ReportedState).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from edgewise.agent.client import Backoff, DeviceClient
from edgewise.agent.outbox import Outbox
from edgewise.agent.update import UpdateMachine
from edgewise.core.errors import EdgewiseError, ServiceUnavailable
from edgewise.core.wire import DesiredState, ReportedState

log = logging.getLogger(__name__)


class DesiredStateLoop(threading.Thread):
    def __init__(self, client: DeviceClient, machine: UpdateMachine, stop: threading.Event,
                 long_poll_s: float, interval_s: float,
                 on_desired: Callable[[DesiredState], None] | None = None) -> None:
        super().__init__(name="desired-state", daemon=True)
        self.client, self.machine, self.stop = client, machine, stop
        self.on_desired = on_desired  # e.g. the shadow slot, which follows desired.shadow
        self.long_poll_s, self.interval_s = long_poll_s, interval_s
        self.etag: str | None = None
        self.backoff = Backoff(base_s=min(1.0, interval_s), cap_s=max(interval_s * 6, 5.0))

    def poll_once(self, wait_s: float = 0.0) -> None:
        """Finish an interrupted update, then look for a new target; raises ServiceUnavailable."""
        self.machine.run_until_rest()
        desired, etag = self.client.desired_state(self.etag, wait_s)
        if desired is not None:
            self.etag = etag
            if self.on_desired is not None:
                self.on_desired(desired)
            if self.machine.offer(desired.bundle, desired.deployment_id, desired.allow_downgrade):
                self.machine.run_until_rest()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.poll_once(self.long_poll_s)
                self.backoff.reset()
                delay = 0.0 if self.long_poll_s else self.interval_s
            except ServiceUnavailable as error:
                log.info("server unreachable (%s); retrying", error.message)
                delay = self.backoff.next_delay()
            except EdgewiseError as error:
                log.warning("desired state: %s", error)
                delay = self.backoff.next_delay()
            self.stop.wait(delay)


class Uplink(threading.Thread):
    def __init__(self, client: DeviceClient, outbox: Outbox, reported: Callable[[], ReportedState],
                 stop: threading.Event, interval_s: float, heartbeat_s: float, batch_size: int,
                 captures: Callable[[DeviceClient], object] | None = None) -> None:
        super().__init__(name="uplink", daemon=True)
        self.client, self.outbox, self.reported, self.stop = client, outbox, reported, stop
        self.captures = captures  # uploads captured frames (agent/capture.py) after the outbox
        self.interval_s, self.heartbeat_s, self.batch_size = interval_s, heartbeat_s, batch_size
        self.wake = threading.Event()
        self.backoff = Backoff(base_s=min(1.0, interval_s), cap_s=max(interval_s * 6, 5.0))
        self._since_heartbeat = heartbeat_s  # send one at once

    def flush(self) -> int:
        """Send every queued item; returns how many were acked. Raises ServiceUnavailable."""
        sent = 0
        while (batch := self.outbox.batch(self.batch_size)) is not None:
            ack = self.client.ingest(batch)
            if not ack.acked:
                break
            self.outbox.ack(ack.acked)
            sent += len(ack.acked)
        return sent

    def heartbeat(self) -> None:
        self.client.report_state(self.reported())

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                if self._since_heartbeat >= self.heartbeat_s:
                    self.heartbeat()
                    self._since_heartbeat = 0.0
                self.flush()
                if self.captures is not None:
                    self.captures(self.client)
                self.backoff.reset()
                delay = self.interval_s
            except EdgewiseError as error:
                log.info("uplink: %s", error.message)
                delay = self.backoff.next_delay()
            self.wake.wait(delay)
            self.wake.clear()
            self._since_heartbeat += delay
