"""Everything a request handler needs, built once per app by `create_app` and kept on `app.state`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from edgewise.fleet.auth import DeviceAuthenticator
from edgewise.fleet.db import Database
from edgewise.fleet.devices.forwarding import Forwarder
from edgewise.fleet.gateway.device_requests import DeviceRequests
from edgewise.fleet.gateway.notify import Notifier
from edgewise.fleet.http_guard import FailedAuthLimiter
from edgewise.fleet.rollouts.bundles import BundleCatalog
from edgewise.fleet.rollouts.changes import Changes
from edgewise.fleet.settings import ServerSettings


@dataclass
class ServerContext:
    settings: ServerSettings
    db: Database
    catalog: BundleCatalog
    devices: DeviceAuthenticator
    notifier: Notifier
    forwarder: Forwarder
    device_requests: DeviceRequests
    metrics: Any = None
    auth_limiter: FailedAuthLimiter = field(default_factory=FailedAuthLimiter)

    def announce(self, changes: Changes) -> None:
        """After commit: wake the devices whose desired state changed and tell the dashboard."""
        self.notifier.desired_changed(changes.desired_changed)
        for entry in changes.history:
            self.notifier.publish("deployment", entry)
            if entry.get("device_id") is None:
                self.forwarder.emit("deployment.status", entry)


def context_of(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx
