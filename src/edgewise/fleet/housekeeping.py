"""Work no request triggers: rollout bake timers and timeouts, devices going offline, retention."""

from __future__ import annotations

import time
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select

from edgewise.fleet.context import ServerContext
from edgewise.fleet.db.models import Device, Event, Telemetry
from edgewise.fleet.rollouts.engine import advance_all

RETENTION_EVERY_S = 3600.0


class Housekeeper:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self._last_tick = time.time()
        self._next_retention = 0.0

    def tick(self) -> None:
        """One round; runs in a worker thread every `settings.tick_s`."""
        now = time.time()
        changes = self.ctx.db.transact(advance_all)
        self.ctx.announce(changes)
        self._announce_offline(self._last_tick, now)
        self.ctx.db.checkpoint()
        self._last_tick = now
        if now >= self._next_retention:
            self.apply_retention(now)
            self._next_retention = now + RETENTION_EVERY_S

    def _announce_offline(self, previous: float, now: float) -> None:
        offline_after = self.ctx.settings.offline_after_s
        with self.ctx.db.session(write=False) as session:
            gone = session.execute(
                select(Device.id, Device.name, Device.last_seen)
                .where(Device.last_seen >= previous - offline_after, Device.last_seen < now - offline_after)
            ).all()
        for device_id, name, last_seen in gone:
            change = {"device_id": device_id, "name": name, "online": False, "last_seen": last_seen, "ts": now}
            self.ctx.forwarder.emit("device.status", change)
            self.ctx.notifier.publish("device", change)

    def apply_retention(self, now: float) -> int:
        cutoff = now - self.ctx.settings.retention_days * 86400
        with self.ctx.db.session() as session:
            removed = 0
            for table in (Event, Telemetry):  # a DELETE's result has a row count
                deleted = cast(CursorResult[Any], session.execute(delete(table).where(table.ts < cutoff)))
                removed += deleted.rowcount or 0
        return int(removed or 0)
