"""The kinds of device request: one request type and one answer type each.

`DeviceRequests.submit(request, signed)` answers a `ReadDesired` with a `DesiredAnswer`, a
`ReportState` with a `ReportOutcome`, an `Ingest` with an `IngestAnswer`: the type checker knows
which. The wire bodies inside (`ReportedState`, `IngestBatch`) carry the bounds every field has
(`edgewise.core.wire`), so a request that reaches the gateway is already a valid one.

Requests are frozen dataclasses: they cross to the device process pickled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from edgewise.core.wire import DesiredState, IngestAck, IngestBatch, ReportedState
from edgewise.fleet.devices.ingest import DecodedImages, ForwardedEvent
from edgewise.fleet.devices.twin import ReportOutcome

AnswerT = TypeVar("AnswerT", covariant=True)


class DeviceRequest(Generic[AnswerT]):
    """A device request of one kind, answered with an `AnswerT`.

    `writes`: whether its handler writes (it then runs in the group transaction and is answered
    after the commit) or only reads (answered from the checking thread's read-only transaction)."""

    writes: ClassVar[bool]


@dataclass(frozen=True)
class DesiredAnswer:
    state: DesiredState | None  # None while the revision is still the one the device has seen
    revision: str


@dataclass(frozen=True)
class ReadDesired(DeviceRequest[DesiredAnswer]):
    """GET /device/desired: the signed device's desired state, unless it has seen this revision."""

    seen_revision: str | None
    writes: ClassVar[bool] = False


@dataclass(frozen=True)
class RecheckDesired(DeviceRequest[DesiredAnswer]):
    """A long poll reading again for a device its first read already authenticated (unsigned)."""

    device_id: str
    seen_revision: str | None
    writes: ClassVar[bool] = False


@dataclass(frozen=True)
class ReportState(DeviceRequest[ReportOutcome]):
    """PUT /device/state: what the device runs and how it is (also its heartbeat)."""

    report: ReportedState
    writes: ClassVar[bool] = True


@dataclass(frozen=True)
class IngestAnswer:
    ack: IngestAck
    new_events: list[ForwardedEvent]  # the events stored for the first time, to forward


@dataclass(frozen=True)
class Ingest(DeviceRequest[IngestAnswer]):
    """POST /device/ingest: events, telemetry and captures; images decoded before any database work."""

    batch: IngestBatch
    images: DecodedImages | None = None
    writes: ClassVar[bool] = True
