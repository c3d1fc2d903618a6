"""Forwarding: events and device-status changes pushed to external systems as they arrive.

Sinks are plug-ins (`SINKS`): a signed HTTP webhook (HMAC-SHA256 of the body in
`X-Edgewise-Webhook-Signature`, retried with exponential backoff) and an MQTT topic (paho). Each
sink has its own queue and worker thread, so a slow or dead receiver never slows ingest; a full
queue drops the oldest message and counts it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from typing import Any
from urllib.parse import urlparse

from edgewise.core.errors import ConfigError
from edgewise.core.plugins import Registry
from edgewise.fleet.settings import ForwardingSettings

log = logging.getLogger("edgewise.fleet.devices.forwarding")
WEBHOOK_SIGNATURE_HEADER = "X-Edgewise-Webhook-Signature"


def webhook_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Sink(ABC):
    name: str = "sink"

    def __init__(self, settings: ForwardingSettings) -> None:
        self.settings = settings
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue(maxsize=10_000)
        self._thread = threading.Thread(target=self._run, name=f"forward-{self.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, kind: str, payload: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait((kind, payload))
        except queue.Full:
            self.dropped += 1

    def stop(self, timeout_s: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout_s)
        self.close()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            kind, payload = item
            try:
                self.send(kind, payload)
                self.sent += 1
            except Exception as error:  # a receiver's failure must never stop the forwarding thread
                self.failed += 1
                log.warning("forwarding %s to %s failed: %s", kind, self.name, error)

    @abstractmethod
    def send(self, kind: str, payload: dict[str, Any]) -> None: ...

    def close(self) -> None:
        return None




class WebhookSink(Sink):
    """POST each message as JSON, signed with HMAC-SHA256; retry 5xx and network errors with backoff."""

    name = "webhook"

    def __init__(self, settings: ForwardingSettings) -> None:
        super().__init__(settings)
        import httpx

        self._client = httpx.Client(timeout=10.0)

    def send(self, kind: str, payload: dict[str, Any]) -> None:
        import httpx

        body = json.dumps({"kind": kind, "data": payload}, default=str).encode()
        headers = {"Content-Type": "application/json", "X-Edgewise-Event": kind}
        if self.settings.webhook_secret:
            headers[WEBHOOK_SIGNATURE_HEADER] = webhook_signature(self.settings.webhook_secret, body)
        delay = self.settings.webhook_backoff_s
        for attempt in range(1, self.settings.webhook_max_attempts + 1):
            try:
                response = self._client.post(str(self.settings.webhook_url), content=body, headers=headers)
                if response.status_code < 500 and response.status_code != 429:
                    return
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as error:
                problem = str(error)
            if attempt == self.settings.webhook_max_attempts:
                raise ConnectionError(f"gave up after {attempt} attempts: {problem}")
            time.sleep(delay)
            delay *= 2

    def close(self) -> None:
        self._client.close()


class MqttSink(Sink):
    """Publish each message to `<prefix>/<device_id>/<kind>` (QoS 1) on an MQTT broker."""

    name = "mqtt"

    def __init__(self, settings: ForwardingSettings) -> None:
        super().__init__(settings)
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        parsed = urlparse(str(settings.mqtt_url))
        if parsed.scheme not in ("mqtt", "tcp") or not parsed.hostname:
            raise ConfigError(f"bad MQTT URL {settings.mqtt_url!r}", "use mqtt://HOST:PORT")
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"edgewise-server-{id(self):x}")
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.connect_async(parsed.hostname, parsed.port or 1883)
        self._client.loop_start()

    def send(self, kind: str, payload: dict[str, Any]) -> None:
        device = payload.get("device_id") or "server"
        topic = f"{self.settings.mqtt_topic_prefix}/{device}/{kind}"
        info = self._client.publish(topic, json.dumps(payload, default=str), qos=1)
        info.wait_for_publish(timeout=10)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


SINKS: Registry[type[Sink]] = Registry.of("forwarding sink", {"webhook": WebhookSink, "mqtt": MqttSink})


class Forwarder:
    """Fans each message out to every configured sink."""

    def __init__(self, settings: ForwardingSettings) -> None:
        self.sinks: list[Sink] = []
        if settings.webhook_url:
            self.sinks.append(SINKS.get("webhook")(settings))
        if settings.mqtt_url:
            self.sinks.append(SINKS.get("mqtt")(settings))

    def start(self) -> None:
        for sink in self.sinks:
            sink.start()

    def emit(self, kind: str, payload: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.put(kind, payload)

    def stop(self) -> None:
        for sink in self.sinks:
            sink.stop()
