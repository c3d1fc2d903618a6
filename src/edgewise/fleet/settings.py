"""Settings of the fleet server, passed into `create_app` (never read from the environment deep inside)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from edgewise.core.settings import StrictSettings, default_home
from edgewise.core.wire import AgentConfig


def default_db_url() -> str:
    return f"sqlite:///{default_home() / 'fleet.db'}"


def default_store_url() -> str:
    return str(default_home() / "registry")


class ForwardingSettings(StrictSettings):
    """Where events and device-status changes are pushed as they arrive (both optional)."""

    webhook_url: str | None = None
    webhook_secret: str = Field(default="", description="HMAC-SHA256 key; signature in X-Edgewise-Webhook-Signature")
    webhook_max_attempts: int = Field(default=5, ge=1, le=20)
    webhook_backoff_s: float = Field(default=0.5, gt=0, description="first retry delay; doubles at each retry")
    mqtt_url: str | None = Field(default=None, description="mqtt://host:port")
    mqtt_topic_prefix: str = "edgewise"


class ServerSettings(StrictSettings):
    db_url: str = Field(default_factory=default_db_url)
    store_url: str = Field(default_factory=default_store_url)
    cache_dir: Path = Field(default_factory=lambda: default_home() / "server-cache")
    host: str = "127.0.0.1"
    port: int = 8400
    tls_cert: Path | None = None
    tls_key: Path | None = None
    trusted_keys: list[str] = Field(default_factory=list, description="publisher public keys (base64 or .pub paths)")
    agent_config: AgentConfig = Field(default_factory=AgentConfig)
    offline_after_s: float = Field(default=35.0, gt=0, description="a device not heard from this long is offline")
    long_poll_max_s: float = Field(default=60.0, ge=0)
    long_poll_recheck_s: float = Field(default=30.0, gt=0, description="a long poll re-reads the database this "
                                       "often (jittered), to see changes made by other replicas")
    wake_rate_per_s: float = Field(default=100.0, gt=0, description="devices whose desired state changed are "
                                   "told at most this fast, slower while the server is busy, so a rollout does "
                                   "not stampede it")
    retention_days: float = Field(default=30.0, gt=0, description="events and telemetry older than this are deleted")
    device_process: bool = Field(default=True, description="work device requests (signatures, heartbeats, "
                                  "ingest, long-poll reads) in a second process beside the HTTP server, so each has "
                                  "a core and a GIL of its own")
    tick_s: float = Field(default=1.0, gt=0, description="how often rollouts, offline checks and retention run")
    forwarding: ForwardingSettings = Field(default_factory=lambda: ForwardingSettings())
    max_body_bytes: int = Field(default=8 << 20, description="largest request body accepted (ingest with snapshots)")
