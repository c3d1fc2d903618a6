"""The device's identity: its ed25519 key pair (made here, never sent anywhere), its id, and
the publisher keys it trusts, all kept under the data directory.

    <data_dir>/device.key        private key, mode 0600
    <data_dir>/identity.json     device id, server URL, trusted publisher keys, server-given config
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import httpx

import edgewise
from edgewise.core.errors import AuthError, ConfigError, ProtocolError, ServiceUnavailable
from edgewise.core.signing import PrivateKey, PublicKey, load_private_key, write_key_pair
from edgewise.core.wire import API_PREFIX, AgentConfig, EnrollRequest, EnrollResponse, parse_wire

KEY_FILE = "device.key"
IDENTITY_FILE = "identity.json"


@dataclass
class Identity:
    device_id: str
    server: str
    key: PrivateKey
    trusted_keys: list[PublicKey]
    config: AgentConfig


def write_json_atomic(path: Path, payload: object) -> None:
    """Write, fsync, rename: a reader (or a power cut) sees the old file or the new one."""
    temp = path.with_name(path.name + ".tmp")
    with open(temp, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def device_key(data_dir: Path) -> PrivateKey:
    """The device key, created on first use."""
    path = data_dir / KEY_FILE
    if path.exists():
        return load_private_key(path)
    key = PrivateKey.generate()
    write_key_pair(key, path)
    return key


def load_identity(data_dir: Path) -> Identity:
    path = data_dir / IDENTITY_FILE
    if not path.is_file():
        raise ConfigError(
            f"device is not enrolled ({path} is missing)",
            "run `edgewise agent enroll --server URL --token TOKEN --data-dir DIR` first",
        )
    raw = json.loads(path.read_text())
    return Identity(
        device_id=raw["device_id"],
        server=raw["server"],
        key=load_private_key(data_dir / KEY_FILE),
        trusted_keys=[PublicKey.from_b64(k) for k in raw["trusted_keys"]],
        config=AgentConfig.model_validate(raw.get("config", {})),
    )


def enroll(
    server: str, token: str, data_dir: Path, name: str, hardware: str = "x86-host", tags: dict[str, str] | None = None
) -> Identity:
    """Enroll with a one-time token: send only the public key, keep the private key here."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fresh = not (data_dir / KEY_FILE).exists()
    key = device_key(data_dir)
    try:
        return _enroll_with(key, server, token, data_dir, name, hardware, tags)
    except BaseException:
        if fresh:  # a key no server knows would only confuse the next attempt: it starts clean
            for leftover in (data_dir / KEY_FILE, data_dir / (KEY_FILE + ".pub")):
                leftover.unlink(missing_ok=True)
        raise


def _server_error(response: httpx.Response) -> tuple[str, str | None]:
    """The server's one-line message and fix from its JSON error shape (or the start of the body)."""
    try:
        error = json.loads(response.content)["error"]
        return str(error["message"]), (str(error.get("fix") or "") or None)
    except (ValueError, KeyError, TypeError):
        return response.text[:200], None


def _enroll_with(key: PrivateKey, server: str, token: str, data_dir: Path, name: str, hardware: str,
                 tags: dict[str, str] | None) -> Identity:
    request = EnrollRequest(
        token=token, public_key=key.public.b64, name=name, hardware=hardware,
        agent_version=edgewise.__version__, tags=tags or {},
    )
    url = server.rstrip("/") + API_PREFIX + "/enroll"
    try:
        response = httpx.post(url, content=request.model_dump_json(), headers={"Content-Type": "application/json"})
    except httpx.HTTPError as error:
        raise ServiceUnavailable(f"cannot reach {url}: {error}") from None
    if response.status_code >= 400:
        message, fix = _server_error(response)
        if response.status_code in (401, 403):
            raise AuthError(f"enrollment refused: {message}", fix or "ask the operator for a fresh enrollment token")
        raise ProtocolError(f"enrollment failed (HTTP {response.status_code}): {message}", fix)
    answer = parse_wire(EnrollResponse, response.content, "the server's enrollment answer")
    write_json_atomic(
        data_dir / IDENTITY_FILE,
        {
            "device_id": answer.device_id,
            "server": server.rstrip("/"),
            "trusted_keys": [k.public_key for k in answer.trusted_publisher_keys],
            "config": answer.config.model_dump(mode="json"),
        },
    )
    return load_identity(data_dir)
