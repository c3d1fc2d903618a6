"""Forwarding to real receivers: a signed webhook (with retries) and a real Mosquitto broker."""

from __future__ import annotations

import json
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from edgewise.fleet.devices.forwarding import WEBHOOK_SIGNATURE_HEADER, webhook_signature
from edgewise.fleet.settings import ForwardingSettings
from tests.fleet.conftest import make_settings, start_server
from tests.services import free_port


class WebhookReceiver:
    """Answers 503 to the first `failures` requests, then records every signed body."""

    def __init__(self, failures: int) -> None:
        self.received: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                if receiver.attempts <= failures:
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.received.put((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next(self, kind: str, timeout_s: float = 15.0) -> tuple[dict[str, str], bytes]:
        deadline = time.monotonic() + timeout_s
        while True:
            headers, body = self.received.get(timeout=max(0.01, deadline - time.monotonic()))
            if json.loads(body)["kind"] == kind:
                return headers, body


def test_webhook_is_signed_and_retried(tmp_path: Path, publisher_key) -> None:
    receiver = WebhookReceiver(failures=2)
    forwarding = ForwardingSettings(webhook_url=receiver.url, webhook_secret="s3cret", webhook_backoff_s=0.05)
    fleet = start_server(make_settings(f"sqlite:///{tmp_path / 'f.db'}", tmp_path, publisher_key,
                                       forwarding=forwarding))
    try:
        device = fleet.device("gate")
        batch = {"events": [{"seq": 7, "ts": time.time(), "type": "alarm", "priority": "alarm", "label": "fire"}]}
        assert device.request("POST", "/device/ingest", batch).status_code == 200
        headers, body = receiver.next("event")
        assert headers[WEBHOOK_SIGNATURE_HEADER] == webhook_signature("s3cret", body)
        assert headers[WEBHOOK_SIGNATURE_HEADER] != webhook_signature("other", body)
        data = json.loads(body)["data"]
        assert (data["device_id"], data["seq"], data["label"]) == (device.device_id, 7, "fire")
        assert receiver.attempts >= 3  # two 503s, then delivered
        device.report(health="failed")
        _headers, status = receiver.next("device.status")
        assert json.loads(status)["data"]["health"] == "failed"
    finally:
        fleet.stop()
        receiver.server.shutdown()


def test_events_reach_a_real_mqtt_broker(tmp_path: Path, publisher_key, mqtt_broker) -> None:
    import paho.mqtt.client as mqtt

    messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
    subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    subscribed = threading.Event()
    subscriber.on_connect = lambda client, *_: client.subscribe("fleet/#", qos=1)
    subscriber.on_subscribe = lambda *_: subscribed.set()
    subscriber.on_message = lambda _c, _u, message: messages.put((message.topic, message.payload))
    subscriber.connect("127.0.0.1", mqtt_broker.port)
    subscriber.loop_start()
    assert subscribed.wait(10)
    forwarding = ForwardingSettings(mqtt_url=f"mqtt://127.0.0.1:{mqtt_broker.port}", mqtt_topic_prefix="fleet")
    fleet = start_server(make_settings(f"sqlite:///{tmp_path / 'f.db'}", tmp_path, publisher_key,
                                       forwarding=forwarding))
    try:
        device = fleet.device("dock")
        batch = {"events": [{"seq": 1, "ts": time.time(), "type": "detection", "label": "truck", "score": 0.8}]}
        assert device.request("POST", "/device/ingest", batch).status_code == 200
        deadline = time.monotonic() + 15
        while True:
            topic, payload = messages.get(timeout=max(0.01, deadline - time.monotonic()))
            if topic == f"fleet/{device.device_id}/event":
                break
        assert json.loads(payload)["label"] == "truck"
    finally:
        fleet.stop()
        subscriber.loop_stop()
        subscriber.disconnect()
