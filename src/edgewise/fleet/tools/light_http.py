"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for the simulator and the benchmark.

A load generator that shares the server's CPUs must cost far less per request than the server,
or it measures itself: httpx spends about 0.9 ms of CPU per request, this client about 0.1 ms
(`benchmarks/http_client.py` prints the comparison).
One `Connection` carries one request at a time, like a device's own socket; it reconnects when
the server has closed an idle keep-alive connection. Bodies are read by Content-Length or chunked.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from edgewise.core.errors import ServiceUnavailable


class TransportError(ServiceUnavailable):
    """The connection failed, closed early or timed out; the request may or may not have arrived."""

    default_fix = "check that the server runs and the URL is right; the request may be retried"


@dataclass
class Reply:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased
    content: bytes = b""

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class Connection:
    def __init__(self, base_url: str, tls: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http(s)://host:port URL, got {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = (tls or ssl.create_default_context()) if parts.scheme == "https" else None
        self.host_header = parts.netloc
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                      timeout: float = 60.0) -> Reply:
        async with self._lock:
            try:
                return await asyncio.wait_for(self._exchange(method, path, body, headers or {}), timeout)
            except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as error:
                await self.close()
                raise TransportError(f"{method} {path}: {type(error).__name__} {error}") from None

    async def _exchange(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        head = self._head(method, path, body, headers)
        reused = self._writer is not None
        try:
            return await self._send_and_read(head, body)
        except (OSError, asyncio.IncompleteReadError):
            if not reused:
                raise
        # The server closed the idle keep-alive connection before our request: send it once more.
        await self.close()
        return await self._send_and_read(head, body)

    def _head(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host_header}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _send_and_read(self, head: bytes, body: bytes) -> Reply:
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.tls, server_hostname=self.host if self.tls else None)
        reader, writer = self._reader, self._writer
        writer.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            writer.write(body)
        await writer.drain()
        reply = await _read_reply(reader)
        if reply.headers.get("connection", "").lower() == "close":
            await self.close()
        return reply

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass


async def _read_reply(reader: asyncio.StreamReader) -> Reply:
    status_line = await reader.readuntil(b"\r\n")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP response: {status_line[:60]!r}")
    reply = Reply(int(parts[1]))
    while True:
        line = await reader.readuntil(b"\r\n")
        if line == b"\r\n":
            break
        name, _, value = line.decode("latin-1").partition(":")
        reply.headers[name.strip().lower()] = value.strip()
    if reply.status_code in (204, 304) or 100 <= reply.status_code < 200:
        return reply
    if reply.headers.get("transfer-encoding", "").lower() == "chunked":
        reply.content = await _read_chunked(reader)
    else:
        reply.content = await reader.readexactly(int(reply.headers.get("content-length", "0")))
    return reply


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, if any
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
